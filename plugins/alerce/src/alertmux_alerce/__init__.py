"""alertmux-alerce: the ALeRCE broker (https://alerce.science) as an alertmux plugin.

* Kafka: ALeRCE's ELAsTiCC output, SASL_SSL with SCRAM-SHA-512, one topic per classifier per day
  (``lc_classifier_<clf>_YYYYMMDD``), found by a regex whose date window starts 36 days back and stays open, so new
  days join while ``alertmux listen --broker alerce`` runs (:mod:`alertmux_alerce.topics`).
* REST: ``alertmux poll --broker alerce`` reads object probabilities from the LSST or ZTF API, incrementally
  (:mod:`alertmux_alerce.api`).
* Decoders for the ELAsTiCC Avro messages, the REST answers and ALeRCE's pipeline records
  (:mod:`alertmux_alerce.decoders`); the ``alerce`` normalizer for its class words (:mod:`alertmux_alerce.vocabulary`).
* An emulator speaking the same topics, Avro and REST routes (:mod:`alertmux_alerce.emulator`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Literal

import fastavro

from alertmux import (
    BrokerSpec,
    EmulatorSpec,
    KafkaTransport,
    NormalizerSpec,
    hookimpl,
)
from alertmux.config import BrokerSettings
from alertmux.emulation import AlertSeen
from alertmux.serde import load_schema, schemaless_encode
from alertmux.specs import RestTransport, SamplePayload
from alertmux_alerce import api, decoders, emulator, topics, vocabulary

__version__ = "0.1.0"
NAME = "alerce"


class AlerceSettings(BrokerSettings):
    """``[brokers.alerce]``: the common broker keys plus the REST poll's.

    For ALeRCE's ELAsTiCC Kafka output set ``bootstrap`` (DESC used ``kafka.alerce.science:9093``),
    ``security_protocol = "SASL_SSL"``, ``sasl_mechanism = "SCRAM-SHA-512"``, ``username`` and
    ``password = "${ALERCE_KAFKA_PASSWORD}"``. The REST APIs need no credentials.
    """

    survey: Literal["lsst", "ztf"] = "lsst"
    """Which REST API ``alertmux poll`` reads."""
    classifier: str | None = None
    """Object-list filter (the API's default is ``lc_classifier``)."""
    class_name: str | None = None
    page_size: int = 100
    since_mjd: float | None = None
    """Where the first poll starts (default: one day ago); later polls resume from the stored cursor."""


def _samples() -> Iterator[SamplePayload]:
    """Payloads synthesized from the schemas ALeRCE publishes (no captured ALeRCE message is public)."""
    alert = AlertSeen(alert_id=102879800007, dia_source_id=102879800007, dia_object_id=1028798,
                      published_ms=1_700_000_000_000, true_class=2222, detections=3)
    vector = {2222: 0.71, 2223: 0.12, 2224: 0.09, 2242: 0.05, 2332: 0.03}
    record = emulator.elasticc_record(alert, emulator.CLASSIFIERS[0], vector, 1_700_000_003_210)
    schema = load_schema("elasticc.v0_9_1.brokerClassification")
    yield SamplePayload("elasticc-balto", schemaless_encode(record, schema), "elasticc",
                        "synthesized from elasticc.v0_9_1.brokerClassification with the field mapping of "
                        "ALeRCE's ElasticcParser (alercebroker/pipeline lc_classification_step)")
    probabilities = emulator.lc_probabilities(vector)
    ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
    rows = [{"oid": "1028798", "classifier_name": "lc_classifier", "classifier_version": "1.1.0", "class_name": c,
             "probability": p, "ranking": i} for i, (c, p) in enumerate(ranked, 1)]
    yield SamplePayload("rest-lsst", json.dumps(rows).encode(), "rest",
                        "synthesized: probability_api/probability answer (web-services probability_api models)")
    yield SamplePayload("rest-ztf", json.dumps({"oid": "ZTF20aaelulu", "survey": "ztf", "probabilities": [
        {k: v for k, v in r.items() if k != "oid"} for r in rows]}).encode(), "rest",
        "synthesized: /ztf/v1/objects/{oid}/probabilities rows, wrapped with the oid as alertmux poll stores them")
    children = {"Transient": {"SNIa": 0.7, "SNIbc": 0.1, "SNII": 0.15, "SLSN": 0.05},
                "Stochastic": {"QSO": 0.2, "AGN": 0.3, "Blazar": 0.1, "CV/Nova": 0.3, "YSO": 0.1},
                "Periodic": {"LPV": 0.2, "E": 0.2, "DSCT": 0.1, "RRL": 0.3, "CEP": 0.1, "Periodic-Other": 0.1}}
    lc = {"oid": "ZTF20aaelulu", "features": None, "lc_classification": {
        "probabilities": {c: p for group in children.values() for c, p in group.items()}, "class": "SNIa",
        "hierarchical": {"top": {"Transient": 0.8, "Stochastic": 0.15, "Periodic": 0.05}, "children": children}}}
    yield SamplePayload("lc-classification-ocf", _container(lc, "lc_classification_step__output_ztf"),
                        "lc_classification", "synthesized from ALeRCE's output_ztf.avsc, one Avro container per "
                        "message as ALeRCE's KafkaConsumer reads them")
    stamp = {"objectId": "ZTF20aaelulu", "candid": 1234567890123456789, "probabilities": {
        "SN": 0.6, "AGN": 0.1, "VS": 0.1, "asteroid": 0.05, "bogus": 0.1, "satellite": 0.05}}
    yield SamplePayload("stamp-schemaless", schemaless_encode(stamp, decoders.pipeline_schema(
        "stamp_classifier_2025_step__output")), "stamp", "synthesized from stamp_classifier_2025_step output.avsc")


def _container(record: dict, schema: str) -> bytes:
    buffer = io.BytesIO()
    fastavro.writer(buffer, decoders.pipeline_schema(schema), [record])
    return buffer.getvalue()


@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """ALeRCE: ELAsTiCC Kafka topics, REST APIs and its own pipeline records."""
    yield BrokerSpec(
        name=NAME,
        description="ALeRCE: ELAsTiCC classifications on daily Kafka topics (SASL_SSL, SCRAM-SHA-512) and object "
                    "probabilities from its LSST/ZTF REST APIs",
        kafka=KafkaTransport(decode=decoders.decode_elasticc, topic_pattern=topics.window_pattern(),
                             moving_pattern=topics.window_pattern,
                             description="schemaless Avro elasticc.v0_9_1 brokerClassification on "
                                         "lc_classifier_<clf>_YYYYMMDD dated [today-36, today+2], the window "
                                         "moving as days pass"),
        decoders={"elasticc": decoders.decode_elasticc, "rest": decoders.decode_rest,
                  "lc_classification": decoders.decode_lc_classification, "stamp": decoders.decode_stamp},
        rest=RestTransport(poll=api.poll, decode=decoders.decode_rest, base_url=api.APIS["lsst"].base_url,
                           interval=600.0, probe=api.probe,
                           description="object_api/list_objects by lastmjd, then probability_api/probability"),
        config_model=AlerceSettings,
        emulator=EmulatorSpec(run=emulator.run_emulator, output_topics=emulator.output_topics,
                              answers_per_alert=len(emulator.CLASSIFIERS)),
        homepage="https://alerce.science",
        samples=_samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """ALeRCE's class words (light-curve, BHRF/ATAT and stamp classifiers) onto ELAsTiCC2."""
    yield NormalizerSpec(scheme=vocabulary.SCHEME, description="ALeRCE class names (lc_classifier, BHRF/ATAT, stamp)",
                         table=vocabulary.TABLE)
