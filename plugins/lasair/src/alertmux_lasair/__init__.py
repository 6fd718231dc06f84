"""alertmux-lasair: the Lasair broker (https://lasair.lsst.ac.uk) as an alertmux plugin.

* Kafka: one JSON topic per user filter, ``lasair_<userId><filter>``, no authentication to read, about 7 days of
  retention (:mod:`alertmux_lasair.decoders`).
* REST: ``alertmux poll --broker lasair`` reads ``query/`` with ``Authorization: Token``, within the hourly quota
  (a client-side limiter, and a 429 waits instead of failing); annotations (:mod:`alertmux_lasair.api`).
* Two normalizers: Sherlock's context classes and annotators' labels (:mod:`alertmux_lasair.vocabulary`).
* An emulator running one filter over the alert stream (:mod:`alertmux_lasair.emulator`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from alertmux import BrokerSpec, EmulatorSpec, KafkaTransport, NormalizerSpec, hookimpl
from alertmux.config import BrokerSettings
from alertmux.emulation import AlertSeen
from alertmux.specs import RestTransport, SamplePayload
from alertmux_lasair import api, decoders, emulator, vocabulary

__version__ = "0.1.0"
NAME = "lasair"
TOPIC_PATTERN = "^lasair_[0-9]+.+"
"""Every filter topic (``lasair_<userId><filter>``); set ``topics`` to your filters'."""


class LasairSettings(BrokerSettings):
    """``[brokers.lasair]``: the common broker keys plus the REST poll's.

    Kafka needs only ``bootstrap`` (port 9092; Lasair's documentation spells the host two ways, check yours),
    ``group`` and ``topics = ["lasair_<userId><filter>"]``: reading is not authenticated. REST needs
    ``token = "${LASAIR_TOKEN}"``.
    """

    conditions: str | None = None
    """REST: more SQL conditions for ``query/``, ANDed with the time window."""
    page_size: int = 1000
    since_mjd: float | None = None
    rate_limit: str = api.DEFAULT_RATE
    """REST: the client-side quota (``limits`` notation): Lasair allows 100 calls an hour, 10,000 to power users."""
    quota_wait: float = 300.0
    """REST: seconds to wait after a 429 before asking again."""


def _samples() -> Iterator[SamplePayload]:
    """Payloads shaped as Lasair's own test data (the real files are read from ../shared by the tests)."""
    alert = AlertSeen(alert_id=313637921267122001, dia_source_id=313637921267122001, dia_object_id=313637921267122191,
                      published_ms=None, true_class=2222, detections=8)
    yield SamplePayload("filter-full", json.dumps(emulator.record(alert, "SN", 1_770_000_000_000)).encode(), "json",
                        "synthesized in the shape of lasair-lsst tests/unit/pipeline/filter/sample_alerts/*.json")
    plain = {"diaObjectId": 169760235333878021, "decl": -38.16173726666955, "ra": 221.87087177320953,
             "classification": "AGN", "UTC": "2026-01-29 11:40:14"}
    yield SamplePayload("filter-plain", json.dumps(plain).encode(), "json",
                        "the plain-level example of alert-streams.md, with sherlock_classifications.classification "
                        "SELECTed")
    rows = [{"diaObjectId": 1, "lastDiaSourceMjdTai": 61000.5, "classification": "CV"},
            {"diaObjectId": 2, "lastDiaSourceMjdTai": 61000.7, "classification": "NULL"}]
    yield SamplePayload("rest-query", json.dumps(rows).encode(), "json", "synthesized: a query/ answer (api.SELECTED)")
    annotation = api.annotation(1234, "test", "TEST", version="1", explanation="testing",
                                classdict={"ra": 149.934, "dec": 2.821})
    yield SamplePayload("annotation", json.dumps(annotation).encode(), "json",
                        "as lasair-lsst tests/system/sample_annotation.json")


@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """Lasair: JSON filter topics, the token-authenticated REST API, annotations."""
    yield BrokerSpec(
        name=NAME,
        description="Lasair: JSON filter topics lasair_<userId><filter> (no auth to read) and the REST API "
                    "(Authorization: Token, hourly quota), Sherlock context and annotations",
        kafka=KafkaTransport(decode=decoders.decode_json, topic_pattern=TOPIC_PATTERN,
                             description="one JSON object per alert that passed the filter (plain, lite or full)"),
        decoders={"json": decoders.decode_json},
        rest=RestTransport(poll=api.poll, decode=decoders.decode_json, base_url=api.BASE_URL, interval=900.0,
                           probe=api.probe, description="query/ by lastDiaSourceMjdTai with Sherlock's class, within "
                                                        "the hourly quota"),
        config_model=LasairSettings,
        emulator=EmulatorSpec(run=emulator.run_emulator, output_topics=emulator.output_topics, answers_per_alert=1),
        homepage="https://lasair.lsst.ac.uk",
        samples=_samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """Sherlock's classes and annotators' labels onto ELAsTiCC2 (context)."""
    yield NormalizerSpec(scheme=vocabulary.SHERLOCK, description="Sherlock context classes (not probabilities)",
                         table=vocabulary.SHERLOCK_TABLE)
    yield NormalizerSpec(scheme=vocabulary.ANNOTATION, description="Lasair annotators' free-text labels (context)",
                         lookup=vocabulary.annotation_label)
