"""A local Fink: classifies the harness's alerts and publishes them on a livestream topic, as Fink does.

For each alert it publishes one Fink-enriched alert on ``fink_<filter>_lsst`` (an emulated filter that lets every
alert through; a harness run's id goes into the filter name so runs on one cluster stay apart): schemaless Avro of
:data:`alertmux_fink.schemas.LIVESTREAM_LSST`, the schema as JSON in the message key, keyed exactly as fink-broker's
``get_kafka_df`` keys its messages. The fields are filled the way fink-broker's ``rubin/science.py`` fills them:

* ``clf.cats_class``: the argmax of CATS's five broad categories as its 2022 parent code (11, 12, 13, 21, 22) and
  ``cats_score`` its probability; ``-1`` (not processed) for an object's first detection, as Fink does for a
  single-point alert.
* ``clf.snnSnVsOthers_score``: the probability of the SN-like category; ``clf.earlySNIa_score``: that of SN Ia.
* ``pred.main_label_classifier``: a copy of ``cats_class``; ``pred.is_first``: whether it is the first detection.

The probabilities come from :func:`alertmux.emulation.behaviour`'s confusion matrices (option ``mode``), seeded by
``seed``. Each alert therefore decodes into four messages (CATS, SuperNNova, early SN Ia, main label).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from alertmux import EmulatorContext
from alertmux.emulation import AlertSeen, alert_batches, behaviour
from alertmux.harness import ensure_topics
from alertmux.kafka import make_producer
from alertmux.serde import schemaless_encode
from alertmux.store import now_ms
from alertmux.taxonomy import CROSSWALK_2_TO_2022, ELASTICC2, taxonomy
from alertmux_fink.decoders import MJD_UNIX_EPOCH
from alertmux_fink.schemas import livestream_key, livestream_schema

log = logging.getLogger(__name__)
FILTER = "emulated"
"""The emulated filter's name in the topic (``fink_<filter>_lsst``)."""
CATEGORIES = (2220, 2230, 2240, 2320, 2330)
"""ELAsTiCC2 parents of CATS's five classes, in CATS's own order (0..4 -> 11, 12, 13, 21, 22)."""
VERSIONS = {"fink_broker_version": "4.1", "fink_science_version": "8.39.0", "lsst_schema_version": "lsst.v10_0"}
"""The versions of Fink's real LSST sample (research/brokers.md §3), so the emulated identity matches the real one."""
ANSWERS_PER_ALERT = 4


def topic(run_id: str = "") -> str:
    """The livestream topic of the emulated filter (with the run id when the harness gives one)."""
    return f"fink_{FILTER}{'_' + run_id if run_id else ''}_lsst"


def output_topics(run_id: str) -> tuple[str, ...]:
    """The topics the emulator publishes to."""
    return (topic(run_id),)


def categories(vector: Mapping[int, float]) -> dict[int, float]:
    """An ELAsTiCC2 probability vector summed onto CATS's five broad categories."""
    tax = taxonomy(ELASTICC2)
    out = dict.fromkeys(CATEGORIES, 0.0)
    for class_id, p in vector.items():
        for category in CATEGORIES:
            if class_id == category or category in tax.ancestors(class_id):
                out[category] += p
    return out


def lsst_record(alert: AlertSeen, vector: Mapping[int, float], ingest_ms: int) -> dict[str, Any]:
    """The Fink-enriched alert fink-broker would publish for this alert and these class probabilities."""
    broad = categories(vector)
    first = (alert.detections or 1) <= 1
    best = max(broad, key=broad.__getitem__)
    cats_class = -1 if first else CROSSWALK_2_TO_2022[best]
    stamp = datetime.fromtimestamp(ingest_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return {
        "diaSourceId": alert.dia_source_id,
        "observation_reason": None, "target_name": None,
        "diaSource": {"diaSourceId": alert.dia_source_id, "visit": None, "detector": None,
                      "diaObjectId": alert.dia_object_id, "ssObjectId": None, "midpointMjdTai": None, "ra": None,
                      "dec": None, "band": None, "psfFlux": None, "psfFluxErr": None},
        "diaObject": {"diaObjectId": alert.dia_object_id, "ra": None, "dec": None, "nDiaSources": alert.detections},
        "brokerIngestMjd": ingest_ms / 86_400_000 + MJD_UNIX_EPOCH,
        "brokerStartProcessTimestamp": stamp, "publisher": "Fink (alertmux emulator)", **VERSIONS,
        "clf": {"snnSnVsOthers_score": broad[2220], "cats_class": cats_class,
                "cats_score": None if first else broad[best], "earlySNIa_score": float(vector.get(2222, 0.0)),
                "elephant_kstest_science": None, "elephant_kstest_template": None},
        "xm": {"simbad_otype": None, "gaiadr3_DR3Name": None, "legacydr8_zphot": None, "tns_fullname": None,
               "tns_type": None},
        "pred": {"is_sso": False, "is_first": first, "is_cataloged": False, "main_label_classifier": cats_class,
                 "main_label_crossmatch": None},
        "misc": {"firstDiaSourceMjdTaiFink": None},
        "brokerEndProcessTimestamp": stamp, "timestamp": stamp, "tns_type_recomputed": None,
    }


def encode(record: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(value, key) of a livestream message: schemaless Avro, and the schema as JSON, as Fink sends them."""
    return schemaless_encode(record, livestream_schema()), livestream_key()


def run_emulator(ctx: EmulatorContext) -> None:
    """Answer every alert of the stream with one Fink-enriched alert on the livestream topic."""
    early, late, switch_after = behaviour(ctx.options.get("mode", "last"))
    rng = random.Random(f"fink-{ctx.options.get('seed', 0)}")
    (out,) = output_topics(ctx.run_id)
    ensure_topics(ctx.bootstrap, [out], ctx.client_config)  # Fink creates its filter topics; so do we
    producer = make_producer(ctx.bootstrap, ctx.client_config)
    try:
        for batch in alert_batches(ctx):
            ingest_ms = now_ms()
            for alert in batch:
                matrix = early if (alert.detections or 0) <= switch_after else late
                vector = dict(matrix.classify(alert.true_class, rng))
                value, key = encode(lsst_record(alert, vector, ingest_ms))
                producer.produce(out, value, key=key)
                producer.poll(0)
            producer.flush()
    finally:
        producer.flush()
