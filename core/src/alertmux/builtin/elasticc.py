"""The generic ``elasticc`` broker: any topic of ELAsTiCC brokerClassification messages, whoever wrote them.

It reads both versions (2023 ``elasticc.v0_9_1``, one classifier per message, and 2022 ``elasticc.v0_9``,
classifiers inside each entry), registers the two ELAsTiCC taxonomies as normalizers, and ships an emulator that
classifies the harness's alert stream with a confusion matrix from the ELAsTiCC talk. It is built in, but goes
through the same hooks and entry point as any third-party plugin.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from alertmux import __version__
from alertmux.emulation import alert_batches, behaviour
from alertmux.errors import DecodeError
from alertmux.hookspecs import hookimpl
from alertmux.kafka import make_producer
from alertmux.serde import container_decode, is_container, load_schema, schemaless_decode, schemaless_encode
from alertmux.specs import (
    BrokerMessage,
    BrokerSpec,
    Delivery,
    EmulatorContext,
    EmulatorSpec,
    KafkaTransport,
    NormalizedLabel,
    NormalizerSpec,
)
from alertmux.store import now_ms
from alertmux.taxonomy import ELASTICC, ELASTICC2, crosswalk, taxonomy

log = logging.getLogger(__name__)
NAME = "elasticc"


def _ms(value: Any) -> int | None:
    if value is None or type(value) is int:
        return value
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def messages_from_record(record: dict[str, Any], delivery: Delivery) -> list[BrokerMessage]:
    """Turn one decoded brokerClassification record (either version, Avro or JSON form) into broker messages."""
    entries = record["classifications"]
    get = record.get
    # Avro without logical types gives ints: _ms (datetimes, JSON numbers) only for the rest.
    alert_published_ms = v if type(v := get("elasticcPublishTimestamp")) is int else _ms(v)
    broker_ingest_ms = v if type(v := get("brokerIngestTimestamp")) is int else _ms(v)
    broker_publish_ms = v if type(v := get("brokerPublishTimestamp")) is int else _ms(v)
    if "classifierName" in record:  # v0_9_1: one classifier per message (the hot path: positional arguments)
        identity = (str(record["brokerName"]), str(record["brokerVersion"]), str(record["classifierName"]),
                    str(record["classifierParams"]))
        return [
            BrokerMessage(
                identity, ELASTICC2, [e["classId"] for e in entries], [e["probability"] for e in entries],
                record["alertId"], record["diaSourceId"], None, alert_published_ms, broker_ingest_ms,
                broker_publish_ms,
            )
        ]
    common = {
        "alert_id": record["alertId"],
        "dia_source_id": record["diaSourceId"],
        "alert_published_ms": alert_published_ms,
        "broker_ingest_ms": broker_ingest_ms,
        "broker_publish_ms": broker_publish_ms,
    }
    # v0_9 (2022): every entry names its classifier; a message may carry several.
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        grouped.setdefault((entry["classifierName"], entry["classifierParams"]), []).append(entry)
    return [
        BrokerMessage(
            classifier=(str(record["brokerName"]), str(record["brokerVersion"]), name, params),
            scheme=ELASTICC,
            labels=[e["classId"] for e in group],
            values=[e["probability"] for e in group],
            **common,
        )
        for (name, params), group in grouped.items()
    ]


def decode_avro(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Decode schemaless Avro (v0_9_1, then v0_9) or an Avro container file of brokerClassification records."""
    if is_container(payload):
        return [m for record in container_decode(payload) for m in messages_from_record(record, delivery)]
    try:
        record = schemaless_decode(payload, load_schema("elasticc.v0_9_1.brokerClassification", logical_types=False))
    except DecodeError as newer:
        try:
            record = schemaless_decode(payload, load_schema("elasticc.v0_9.brokerClassification", logical_types=False))
        except DecodeError:
            raise DecodeError(f"neither elasticc.v0_9_1 nor elasticc.v0_9 brokerClassification ({newer})") from None
    return messages_from_record(record, delivery)


def decode_json(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Decode the JSON form (a message or a list of them) that brokers PUT to the DESC TOM."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    items = body if isinstance(body, list) else [body]
    try:
        return [m for item in items for m in messages_from_record(item, delivery)]
    except (KeyError, TypeError) as exc:
        raise DecodeError(f"not a brokerClassification message: missing or wrong field {exc}") from None


# -- normalizers --------------------------------------------------------------------------------------------------
def _elasticc2_table() -> dict[int | str, NormalizedLabel]:
    return {c.code: NormalizedLabel(c.code, source="ELAsTiCC2 taxonomy (tom_desc elasticc2 migration 0016)")
            for c in taxonomy(ELASTICC2)}


def _elasticc_table() -> dict[int | str, NormalizedLabel]:
    return {
        c.code: NormalizedLabel(
            crosswalk(c.code, from_scheme=ELASTICC, to_scheme=ELASTICC2),
            source="2022 ELAsTiCC taxonomy, crosswalked by class path (alertmux.taxonomy)",
        )
        for c in taxonomy(ELASTICC)
    }


# -- emulator -----------------------------------------------------------------------------------------------------
def output_topics(run_id: str) -> tuple[str, ...]:
    """The emulator's classification topic for a run."""
    return (f"alertmux-{run_id}-elasticc",)


def run_emulator(ctx: EmulatorContext) -> None:
    """Classify every alert of the stream and publish ``elasticc.v0_9_1`` brokerClassification messages.

    Options: ``mode`` (see :func:`alertmux.emulation.behaviour`) and ``seed``.
    """
    mode = ctx.options.get("mode", "last")
    early, late, switch_after = behaviour(mode)
    rng = random.Random(ctx.options.get("seed", 0))
    schema = load_schema("elasticc.v0_9_1.brokerClassification")
    (topic,) = output_topics(ctx.run_id)
    identity = {
        "brokerName": "alertmux-emulator",
        "brokerVersion": __version__,
        "classifierName": f"ConfusionMatrix-{mode}",
        "classifierParams": "ELAsTiCC talk 2023-06-20 confusion matrices",
    }
    producer = make_producer(ctx.bootstrap, ctx.client_config)
    try:
        for batch in alert_batches(ctx):
            ingest_ms = now_ms()
            for alert in batch:
                matrix = early if (alert.detections or 0) <= switch_after else late
                record = identity | {
                    "alertId": alert.alert_id,
                    "diaSourceId": alert.dia_source_id,
                    "elasticcPublishTimestamp": alert.published_ms,
                    "brokerIngestTimestamp": ingest_ms,
                    "classifications": [
                        {"classId": c, "probability": p} for c, p in matrix.classify(alert.true_class, rng)
                    ],
                }
                producer.produce(topic, schemaless_encode(record, schema), key=str(alert.dia_object_id).encode())
                producer.poll(0)
            producer.flush()
    finally:
        producer.flush()


@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """The generic ELAsTiCC broker."""
    yield BrokerSpec(
        name=NAME,
        description="Any topic of ELAsTiCC brokerClassification messages (v0_9_1 and 2022 v0_9), with an emulator",
        kafka=KafkaTransport(decode=decode_avro, description="schemaless Avro brokerClassification, any topic"),
        decoders={"avro": decode_avro, "json": decode_json},
        emulator=EmulatorSpec(run=run_emulator, output_topics=output_topics, answers_per_alert=1),
        homepage="https://github.com/LSSTDESC/elasticc",
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """The two ELAsTiCC taxonomies: ELAsTiCC2 ids as they are, 2022 ids through the crosswalk."""
    yield NormalizerSpec(scheme=ELASTICC2, description="ELAsTiCC2 class ids (canonical)", table=_elasticc2_table())
    yield NormalizerSpec(scheme=ELASTICC, description="2022 ELAsTiCC class ids, crosswalked", table=_elasticc_table())
