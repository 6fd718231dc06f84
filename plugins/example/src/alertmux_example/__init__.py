"""The example broker for alertmux: a whole broker plugin in one file, and the template of `alertmux new-plugin`.

The example broker is made up; the plugin is real. The broker publishes one JSON object per classified alert on
the Kafka topic ``example-classifications``::

    {"alertId": 102879800007, "diaSourceId": 102879800007, "diaObjectId": 1028798,
     "brokerVersion": "1.0", "classifier": "rf", "classifierVersion": "2024-05",
     "publishedMs": 1732147345655, "probabilities": {"SNIa": 0.81, "SNII": 0.17, "bogus": 0.02}}

This module gives alertmux the decoder of that format, the broker's labels mapped onto ELAsTiCC2 classes, an
emulator that answers the harness's alert stream in the same format, and sample payloads for the tests. To write
a plugin for a real broker, replace those four with the broker's own (docs/write-a-broker-plugin.md).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from alertmux import (
    BrokerMessage,
    BrokerSpec,
    DecodeError,
    Delivery,
    EmulatorContext,
    EmulatorSpec,
    KafkaTransport,
    NormalizedLabel,
    NormalizerSpec,
    hookimpl,
)
from alertmux.emulation import AlertSeen, ConfusionMatrix, alert_batches, behaviour
from alertmux.kafka import make_producer
from alertmux.specs import SamplePayload
from alertmux.taxonomy import ELASTICC2, taxonomy

NAME = "example"
"""What users type after --broker, and the name of the broker's label scheme."""
TOPIC = "example-classifications"
BROKER_NAME = "Example"

LABELS: dict[int | str, NormalizedLabel] = {
    "SNIa": NormalizedLabel(2222, source="example broker label SNIa: a type Ia supernova, ELAsTiCC2 2222 Ia"),
    "SNIbc": NormalizedLabel(2223, source="example broker label SNIbc: a type Ib/c supernova, ELAsTiCC2 2223 Ib/c"),
    "SNII": NormalizedLabel(2224, source="example broker label SNII: a type II supernova, ELAsTiCC2 2224 II"),
    "SLSN": NormalizedLabel(2242, source="example broker label SLSN: ELAsTiCC2 2242 SLSN"),
    "TDE": NormalizedLabel(2243, source="example broker label TDE: ELAsTiCC2 2243 TDE"),
    "KN": NormalizedLabel(2232, source="example broker label KN: a kilonova, ELAsTiCC2 2232 KN"),
    "AGN": NormalizedLabel(2332, source="example broker label AGN: ELAsTiCC2 2332 AGN"),
    # The broker does not say which kind of periodic variable: its parent category, not a guessed leaf.
    "Periodic": NormalizedLabel(2320, source="example broker label Periodic: any periodic variable, ELAsTiCC2 2320"),
    "Other": NormalizedLabel(200, source="example broker label Other: none of its classes, ELAsTiCC2 200 Residual"),
    # A real/bogus probability says nothing about the class: kept verbatim as context, never ranked.
    "bogus": NormalizedLabel(None, kind="context", source="example broker label bogus: P(artifact), not a class"),
}
"""The broker's labels and where each lands in the ELAsTiCC2 taxonomy (docs/taxonomy.md)."""


def decode(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Turn one Kafka message of the example broker into a broker message; raise on anything else.

    Raises:
        DecodeError: the payload is not an example classification (the core dead-letters it).
    """
    try:
        message = json.loads(payload)
        probabilities = message["probabilities"]
        if not isinstance(probabilities, dict) or not probabilities:
            raise DecodeError("probabilities must be a non-empty object of label: probability")
        return [
            BrokerMessage(
                classifier=(BROKER_NAME, str(message["brokerVersion"]), str(message["classifier"]),
                            str(message["classifierVersion"])),
                scheme=NAME,
                labels=list(probabilities),
                values=[float(p) for p in probabilities.values()],
                alert_id=int(message["alertId"]),
                dia_source_id=int(message["diaSourceId"]),
                dia_object_id=_int_or_none(message.get("diaObjectId")),
                broker_publish_ms=_int_or_none(message.get("publishedMs")),
            )
        ]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(f"not a classification of the example broker: {type(exc).__name__}: {exc}") from None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# -- emulator -----------------------------------------------------------------------------------------------------
def output_topics(run_id: str) -> tuple[str, ...]:
    """The emulator's topic for a harness run (one per run, so runs never read each other's answers)."""
    return (f"{TOPIC}-{run_id}",)


def _native_label(class_id: int) -> str:
    for label, row in LABELS.items():
        if row.class_id == class_id:
            return str(label)
    if 2320 in taxonomy(ELASTICC2).ancestors(class_id):
        return "Periodic"
    return "Other"


def answer(alert: AlertSeen, matrix: ConfusionMatrix, rng: random.Random) -> dict[str, Any]:
    """What the example broker would publish for an alert, its class drawn from a confusion matrix row."""
    bogus = rng.uniform(0.0, 0.05)
    probabilities: dict[str, float] = {}
    for class_id, p in matrix.classify(alert.true_class, rng):
        label = _native_label(class_id)
        probabilities[label] = probabilities.get(label, 0.0) + p * (1.0 - bogus)
    probabilities["bogus"] = bogus
    return {
        "alertId": alert.alert_id,
        "diaSourceId": alert.dia_source_id,
        "diaObjectId": alert.dia_object_id,
        "brokerVersion": "1.0",
        "classifier": "emulated",
        "classifierVersion": "confusion-matrix",
        "publishedMs": time.time_ns() // 1_000_000,
        "probabilities": {label: round(p, 6) for label, p in probabilities.items()},
    }


def run_emulator(ctx: EmulatorContext) -> None:
    """Answer every alert of the harness's stream on :func:`output_topics`, as the example broker would.

    Options: ``mode`` (``last`` or ``after3``, see :func:`alertmux.emulation.behaviour`) and ``seed``.
    """
    early, late, switch_after = behaviour(ctx.options.get("mode", "last"))
    rng = random.Random(ctx.options.get("seed", 0))
    (topic,) = output_topics(ctx.run_id)
    producer = make_producer(ctx.bootstrap, ctx.client_config)
    try:
        for batch in alert_batches(ctx):
            for alert in batch:
                matrix = early if (alert.detections or 0) <= switch_after else late
                body = json.dumps(answer(alert, matrix, rng)).encode()
                producer.produce(topic, body, key=str(alert.dia_object_id).encode())
                producer.poll(0)
    finally:
        producer.flush()


# -- samples ------------------------------------------------------------------------------------------------------
def samples() -> Iterator[SamplePayload]:
    """The payloads in ``samples/``, for the conformance suite (capture a real broker's with `alertmux record`)."""
    for path in sorted(files(__name__).joinpath("samples").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".json"):
            yield SamplePayload(path.name, path.read_bytes(), decoder="kafka",
                                origin="written for this template: the example broker is made up")


# -- hooks --------------------------------------------------------------------------------------------------------
@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """The example broker: its Kafka topic and decoder, its emulator and its samples."""
    yield BrokerSpec(
        name=NAME,
        description="The example broker (made up): JSON classifications on one Kafka topic; the plugin template",
        kafka=KafkaTransport(decode, topics=(TOPIC,), description="one JSON object per classified alert"),
        emulator=EmulatorSpec(run=run_emulator, output_topics=output_topics),
        samples=samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """The example broker's labels onto ELAsTiCC2."""
    yield NormalizerSpec(scheme=NAME, description="Labels of the example broker", table=LABELS)
