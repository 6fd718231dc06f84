"""alertmux-fink: the Fink broker (https://fink-broker.org) as an alertmux plugin.

* Kafka: Fink's livestream topics ``fink_<filter>_lsst`` / ``fink_<filter>_ztf`` (SASL_PLAINTEXT, SCRAM-SHA-512),
  schemaless Avro whose writer schema travels in the message key; the data-transfer topics ``ftransfer_*``; the 2022
  ELAsTiCC stream (:mod:`alertmux_fink.decoders`).
* REST: ``alertmux poll --broker fink`` reads the latest alerts of a class (ZTF ``/api/v1/latests``) or a tag (LSST
  ``/api/v1/tags``), politely (:mod:`alertmux_fink.api`).
* Six normalizers: CATS parent codes, the main label, the binary scores, ``finkclass``, SIMBAD types and the 2022
  ELAsTiCC ids (:mod:`alertmux_fink.vocabulary`).
* An emulator publishing Fink-enriched alerts on a livestream topic, schema in the key (:mod:`alertmux_fink.emulator`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

from alertmux import BrokerSpec, EmulatorSpec, KafkaTransport, NormalizerSpec, hookimpl
from alertmux.config import BrokerSettings
from alertmux.emulation import AlertSeen
from alertmux.serde import load_schema, schemaless_encode
from alertmux.specs import RestTransport, SamplePayload
from alertmux_fink import api, decoders, emulator, vocabulary

__version__ = "0.1.0"
NAME = "fink"
TOPIC_PATTERN = "^fink_.*_lsst$"
"""Every LSST livestream topic (POSIX regex, as librdkafka reads it); Fink serves only the ones you registered."""


class FinkSettings(BrokerSettings):
    """``[brokers.fink]``: the common broker keys plus the REST poll's.

    For the livestream set ``bootstrap`` (given with your Fink credentials), ``security_protocol =
    "SASL_PLAINTEXT"``, ``sasl_mechanism = "SCRAM-SHA-512"``, ``username``, ``password = "${FINK_PASSWORD}"``,
    ``group`` (your registered group id) and ``topics`` (e.g. ``["fink_most_likely_sn_lsst"]``).
    """

    survey: Literal["lsst", "ztf"] = "lsst"
    """Which REST API ``alertmux poll`` reads."""
    tag: str | None = None
    """LSST API: the tag (livestream filter) to poll, e.g. ``cataloged``."""
    fink_class: str | None = None
    """ZTF API: the Fink class to poll, e.g. ``Early SN Ia candidate``."""
    page_size: int = 100
    since_mjd: float | None = None
    request_pause: float = 1.0
    """Seconds between two requests of one pass: Fink's API is shared, be polite."""
    objects: list[str] | str | None = None
    """Object ids to follow through ``/api/v1/objects`` instead of a tag or class (a list, or comma-separated)."""


ELASTICC_IDENTITY = {"brokerName": "Fink", "brokerVersion": "4.1"}
ELASTICC_CLASSIFIERS = (
    ("AGN classifier", "version 2.0", 221), ("SuperNNova SN Ia classifier", "version 1.1", 111),
    ("EarlySN classifier", "version 1.0", 111),
)
"""The binary classifiers of Fink's 2022 ELAsTiCC message, each sent as (class, p) and (0, 1 - p)."""


def elasticc2022_record(alert_id: int, dia_source_id: int, published_ms: int, ingest_ms: int,
                        scores: dict[str, float], snn_broad: tuple[int, float], cats_fine: tuple[int, float]
                        ) -> dict:
    """The ``elasticc.v0_9`` brokerClassification fink-broker's ``distribute_elasticc.py`` built for one alert."""
    entries = []
    for name, params, code in ELASTICC_CLASSIFIERS:
        p = scores[name]
        entries += [{"classifierName": name, "classifierParams": params, "classId": code, "probability": p},
                    {"classifierName": name, "classifierParams": params, "classId": 0, "probability": 1.0 - p}]
    entries.insert(4, {"classifierName": "SuperNNova broad classifier", "classifierParams": "version 1.1",
                       "classId": snn_broad[0], "probability": snn_broad[1]})
    entries.insert(5, {"classifierName": "CATS fine classifier", "classifierParams": "version 3.0",
                       "classId": cats_fine[0], "probability": cats_fine[1]})
    return {"alertId": alert_id, "diaSourceId": dia_source_id, "elasticcPublishTimestamp": published_ms,
            "brokerIngestTimestamp": ingest_ms, **ELASTICC_IDENTITY, "classifications": entries}


ZTF_SAMPLE_SCHEMA = {
    "type": "record", "name": "topLevelRecord", "fields": [
        {"name": n, "type": [t, "null"]} for n, t in (
            ("candid", "long"), ("objectId", "string"), ("brokerIngestTimestamp", "string"),
            ("fink_broker_version", "string"), ("fink_science_version", "string"), ("cdsxmatch", "string"),
            ("finkclass", "string"), ("snn_snia_vs_nonia", "double"), ("snn_sn_vs_all", "double"),
            ("rf_snia_vs_nonia", "double"), ("rf_kn_vs_nonkn", "double"))]}
"""A cut of Fink's ZTF record (the fields alertmux reads, as ``fink/ztf/part-*.avro`` types them)."""


def _samples() -> Iterator[SamplePayload]:
    """Payloads synthesized from Fink's schemas and code (the captured ZTF files are read from ../shared by tests)."""
    alert = AlertSeen(alert_id=170094456272322680, dia_source_id=170094456272322680, dia_object_id=170028485706776685,
                      published_ms=1_770_000_000_000, true_class=2222, detections=3)
    vector = {2222: 0.62, 2223: 0.1, 2232: 0.08, 2242: 0.1, 2332: 0.1}
    value, key = emulator.encode(emulator.lsst_record(alert, vector, 1_770_000_004_000))
    yield SamplePayload("livestream-lsst", value, "kafka", "synthesized: a Fink LSST livestream message (schemaless "
                        "Avro, schema JSON in the key) as fink-broker rubin/science.py fills clf and pred", key=key)
    first = AlertSeen(alert.alert_id + 1, alert.dia_source_id + 1, alert.dia_object_id, 1_770_000_000_000, 2222, 1)
    value, key = emulator.encode(emulator.lsst_record(first, vector, 1_770_000_004_000))
    yield SamplePayload("livestream-lsst-first-detection", value, "kafka", "synthesized: a single-point alert, "
                        "cats_class -1 (not processed)", key=key)
    record = elasticc2022_record(1494043010, 1494043, 1_664_000_000_000, 1_664_000_002_000,
                                 {"AGN classifier": 0.02, "SuperNNova SN Ia classifier": 0.81,
                                  "EarlySN classifier": 0.4}, (11, 0.9), (111, 0.7))
    yield SamplePayload("elasticc-2022", schemaless_encode(record, load_schema("elasticc.v0_9.brokerClassification")),
                        "kafka", "synthesized: Fink's 2022 ELAsTiCC message as bin/elasticc/distribute_elasticc.py "
                        "built it (8 entries, 2022 ids, 0 = Others), keyed by versions", key=b"4.1_8.39.0")
    ztf = {"candid": 3367463101415010117, "objectId": "ZTF26aamcbly", "brokerIngestTimestamp":
           "2026-03-22 13:23:01.082696", "fink_broker_version": "4.1", "fink_science_version": "8.41.0",
           "cdsxmatch": "Unknown", "finkclass": "SN candidate", "snn_snia_vs_nonia": 0.54, "snn_sn_vs_all": 0.0044,
           "rf_snia_vs_nonia": 0.0, "rf_kn_vs_nonkn": 0.0}
    yield SamplePayload("transfer-ztf-ocf", decoders.container_bytes([ztf], ZTF_SAMPLE_SCHEMA), "kafka",
                        "synthesized from the first record of fink-client datatest/ztf/part-3-305711.avro (a cut of "
                        "its fields), as an Avro container file")
    rest = [{"i:candid": ztf["candid"], "i:objectId": ztf["objectId"], "i:jd": 2461121.56,
             "d:snn_snia_vs_nonia": 0.54, "d:cdsxmatch": "RRLyr", "v:classification": "RRLyr"}]
    yield SamplePayload("rest-ztf-latests", json.dumps(rest).encode(), "rest",
                        "synthesized: /api/v1/latests rows (HBase column families i:, d:, v:)")


@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """Fink: livestream and data-transfer Kafka topics, the 2022 ELAsTiCC stream, the REST APIs."""
    yield BrokerSpec(
        name=NAME,
        description="Fink: LSST/ZTF livestream and data-transfer topics (schema in the message key, SASL_PLAINTEXT "
                    "SCRAM-SHA-512), its 2022 ELAsTiCC stream and its REST APIs",
        kafka=KafkaTransport(decode=decoders.decode_kafka, topic_pattern=TOPIC_PATTERN,
                             description="schemaless Avro with the writer schema as JSON in the key (livestream, "
                                         "ftransfer_*), Avro container files, 2022 elasticc.v0_9 messages"),
        decoders={"kafka": decoders.decode_kafka, "elasticc2022": decoders.decode_elasticc2022,
                  "rest": decoders.decode_rest},
        rest=RestTransport(poll=api.poll, decode=decoders.decode_rest, base_url=api.APIS["lsst"].base_url,
                           interval=600.0, probe=api.probe,
                           description="latest alerts of a tag (LSST /api/v1/tags) or class (ZTF /api/v1/latests)"),
        config_model=FinkSettings,
        emulator=EmulatorSpec(run=emulator.run_emulator, output_topics=emulator.output_topics,
                              answers_per_alert=emulator.ANSWERS_PER_ALERT),
        homepage="https://fink-broker.org",
        samples=_samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """Fink's vocabularies onto ELAsTiCC2."""
    yield NormalizerSpec(scheme=vocabulary.CATS, description="Fink CATS broad classes (2022 parent codes, -1)",
                         table=vocabulary.CATS_TABLE)
    yield NormalizerSpec(scheme=vocabulary.MAIN_LABEL, description="Fink main label (pred.main_label_classifier)",
                         table=vocabulary.MAIN_LABEL_TABLE)
    yield NormalizerSpec(scheme=vocabulary.SCORES, description="Fink binary scores (SN, Ia, KN) and their complement",
                         table=vocabulary.SCORES_TABLE)
    yield NormalizerSpec(scheme=vocabulary.FINKCLASS, description="Fink ZTF finkclass labels and SIMBAD fallbacks",
                         table=vocabulary.finkclass_table())
    yield NormalizerSpec(scheme=vocabulary.SIMBAD, description="SIMBAD object types (Fink cross-match)",
                         table=vocabulary.simbad_table())
    yield NormalizerSpec(scheme=vocabulary.ELASTICC_2022, description="Fink's 2022 ELAsTiCC ids (0 = Others)",
                         table=vocabulary.elasticc2022_table())
