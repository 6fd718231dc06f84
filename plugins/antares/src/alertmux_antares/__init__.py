"""alertmux-antares: the ANTARES broker (https://antares.noirlab.edu) as an alertmux plugin.

* Kafka: loci on ``client.<name>`` topics as zlib-compressed BSON (SASL_SSL with PLAIN: the API key and secret, and
  ANTARES's CA, shipped as :func:`ca_file`); ANTARES's ELAsTiCC classification topics
  (:mod:`alertmux_antares.decoders`).
* REST: ``alertmux poll --broker antares`` reads loci from the API v2 with Elasticsearch queries, following
  ``links.next`` (:mod:`alertmux_antares.api`).
* Two normalizers: Superphot+'s classes and the filters' tags (:mod:`alertmux_antares.vocabulary`).
* An emulator streaming loci (:mod:`alertmux_antares.emulator`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path

from alertmux import BrokerSpec, EmulatorSpec, KafkaTransport, NormalizerSpec, hookimpl
from alertmux.config import BrokerSettings
from alertmux.emulation import AlertSeen
from alertmux.serde import load_schema, schemaless_encode
from alertmux.specs import RestTransport, SamplePayload
from alertmux_antares import api, decoders, emulator, vocabulary

__version__ = "0.1.0"
NAME = "antares"
ELASTICC_TOPICS = ("elasticc2-2", "elasticc-2022fall-classifications")
"""ANTARES's ELAsTiCC classification topics (DESC TOM ``_brokerconsumer.py`` AntaresConsumer; research/brokers.md)."""
TOPIC_PATTERN = "^client[.].+"
"""Every user topic (ANTARES prefixes them with ``client.``); set ``topics`` to yours."""


def ca_file() -> Path:
    """The CA certificate ANTARES's Kafka brokers present (from antares-client 2.0.2, MIT): ``ca_file`` for SASL_SSL."""
    with as_file(files("alertmux_antares").joinpath("data/kafka-ca.pem")) as path:
        return Path(path)


class AntaresSettings(BrokerSettings):
    """``[brokers.antares]``: the common broker keys plus the REST poll's.

    For the stream set ``bootstrap = "kafka.antares.noirlab.edu:9092"``, ``security_protocol = "SASL_SSL"``,
    ``sasl_mechanism = "PLAIN"``, ``username`` = your API key, ``password = "${ANTARES_API_SECRET}"``, ``ca_file`` = the
    path ``python -m alertmux_antares`` prints, ``kafka = {"ssl.endpoint.identification.algorithm" = "none"}`` (as
    antares-client does), ``group`` (keeps your offsets) and ``topics = ["client.<your filter>"]``.
    """

    tag: str | None = None
    """REST: only loci carrying this tag."""
    query: str | None = None
    """REST: an Elasticsearch clause (JSON), ANDed with the time window."""
    page_size: int = 100
    since_mjd: float | None = None


def _samples() -> Iterator[SamplePayload]:
    """Payloads built from antares-client's locus schemas (no captured ANTARES message is public)."""
    alert = AlertSeen(alert_id=170094456272322680, dia_source_id=170094456272322680, dia_object_id=170028485706776685,
                      published_ms=1_770_000_000_000, true_class=2222, detections=5)
    body = emulator.locus(alert, {2222: 0.7, 2224: 0.2, 2242: 0.1}, 1_770_000_002_000)
    yield SamplePayload("locus-new-shape", decoders.encode_locus(body), "locus",
                        "synthesized: a LocusMessageToUsers (antares-client _stream/schema/locus.py) as zlib+BSON")
    old = {"data": {"id": "ANT2026abcde", "attributes": {
        "ra": 150.123, "dec": 2.345, "tags": ["superphot_plus_classified", "extragalactic"], "catalogs": ["2mass_psc"],
        "properties": {"superphot_plus_class": "SN Ia", "superphot_plus_class_prob": 0.83,
                       "ztf_object_id": "ZTF26aaaaaaa", "newest_alert_magnitude": 18.9,
                       "newest_alert_id": "ztf_candidate:3367463101415010117"}}}}
    yield SamplePayload("locus-old-shape", decoders.encode_locus(old), "locus",
                        "synthesized: the old marshmallow shape (data.attributes) antares-client still accepts, values "
                        "from research/brokers.md §2")
    record = {"alertId": 1494043010, "diaSourceId": 1494043, "elasticcPublishTimestamp": 1_700_000_000_000,
              "brokerIngestTimestamp": 1_700_000_001_000, "brokerName": "ANTARES", "brokerVersion": "2.10.0",
              "classifierName": "LightGBM", "classifierParams": "elasticc2",
              "classifications": [{"classId": 2222, "probability": 0.6}, {"classId": 2232, "probability": 0.4}]}
    yield SamplePayload("elasticc2", schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification")),
                        "elasticc", "synthesized: an elasticc.v0_9_1 brokerClassification as on elasticc2-2")
    rest = {"id": "ANT2026abcde", "type": "locus", "attributes": old["data"]["attributes"],
            "links": {"self": "https://api.antares.noirlab.edu/v2/loci/ANT2026abcde"}}
    yield SamplePayload("rest-locus", json.dumps(rest).encode(), "rest",
                        "synthesized: one element of a GET /v2/loci answer's data (JSON:API envelope)")


@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """ANTARES: loci on Kafka (zlib+BSON), ELAsTiCC topics, REST API v2."""
    yield BrokerSpec(
        name=NAME,
        description="ANTARES: loci on client.<name> Kafka topics (zlib+BSON, SASL_SSL PLAIN with API key/secret), "
                    "ELAsTiCC classification topics and the REST API v2",
        kafka=KafkaTransport(decode=decoders.decode_locus, topic_pattern=TOPIC_PATTERN,
                             description="zlib-compressed BSON loci (either antares-client shape); ELAsTiCC "
                                         "brokerClassification Avro on elasticc2-2 and elasticc-2022fall-*"),
        decoders={"locus": decoders.decode_locus, "elasticc": decoders.decode_elasticc, "rest": decoders.decode_rest},
        rest=RestTransport(poll=api.poll, decode=decoders.decode_rest, base_url=api.BASE_URL, interval=600.0,
                           probe=api.probe, description="GET loci by newest alert time (Elasticsearch query), "
                                                        "following links.next"),
        config_model=AntaresSettings,
        emulator=EmulatorSpec(run=emulator.run_emulator, output_topics=emulator.output_topics,
                              answers_per_alert=emulator.ANSWERS_PER_ALERT),
        homepage="https://antares.noirlab.edu",
        samples=_samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """Superphot+'s classes and the filters' tags onto ELAsTiCC2."""
    yield NormalizerSpec(scheme=vocabulary.SCHEME, description="ANTARES class properties (Superphot+)",
                         table=vocabulary.TABLE)
    yield NormalizerSpec(scheme=vocabulary.TAG_SCHEME, description="ANTARES locus tags (context)",
                         table=vocabulary.TAG_TABLE)
