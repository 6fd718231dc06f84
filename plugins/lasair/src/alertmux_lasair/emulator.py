"""A local Lasair: runs one filter over the harness's alerts and publishes its JSON on a ``lasair_`` topic.

The emulated filter lets every alert through and sends the full record, shaped as Lasair's own filter test data
(lsst-uk/lasair-lsst ``tests/unit/pipeline/filter/sample_alerts/313637921267122191.json``): ``diaObject``,
``diaSourcesList`` (here the alert's source), the empty forced-source and non-detection lists, ``annotations`` with
Sherlock's classification, and the ``UTC`` time the filter ran. The topic is named as Lasair names them,
``lasair_<userId><filter>`` (user 0, filter ``emulated``; a harness run's id is appended).

Sherlock's class depends on where a transient sits, not on its light curve, so it is not drawn from a confusion
matrix: each true class has the association Sherlock would most often make (:data:`CONTEXT`), replaced 15% of the
time by ``ORPHAN`` or ``UNCLEAR`` (faint or crowded hosts), seeded by ``seed``. One message per alert.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from alertmux import EmulatorContext
from alertmux.emulation import AlertSeen, alert_batches
from alertmux.harness import ensure_topics
from alertmux.kafka import make_producer
from alertmux.store import now_ms
from alertmux.taxonomy import ELASTICC2, taxonomy

USER_ID = 0
FILTER = "emulated"
SHERLOCK_VERSION = "https://github.com/thespacedoctor/sherlock/releases/tag/v3.1.0"
"""The annotator of Lasair's real sample."""
CONTEXT: Mapping[int, str] = {2332: "AGN", 2234: "CV", 2233: "VS", 2300: "VS", 2200: "SN", 2243: "NT"}
"""True class (or its nearest listed ancestor) -> Sherlock's usual association for it."""
DESCRIPTIONS = {
    "SN": "The transient is possibly associated with a galaxy but is not at its nucleus",
    "AGN": "The transient is synonymous with a known AGN/QSO",
    "CV": "The transient is synonymous with a known cataclysmic variable",
    "VS": "The transient is synonymous with a variable star",
    "NT": "The transient sits at the nucleus of a galaxy",
    "ORPHAN": "No contexual information is available for this transient",
    "UNCLEAR": "The transient's association is unclear",
}


def topic(run_id: str = "") -> str:
    """``lasair_<userId><filter>`` (with the run id when the harness gives one)."""
    return f"lasair_{USER_ID}{FILTER}{'_' + run_id if run_id else ''}"


def output_topics(run_id: str) -> tuple[str, ...]:
    """The topics the emulator publishes to."""
    return (topic(run_id),)


def sherlock_class(true_class: int | None, rng: random.Random) -> str:
    """The Sherlock class of an object of ``true_class``."""
    if true_class is None or rng.random() < 0.15:
        return rng.choice(("ORPHAN", "UNCLEAR"))
    tax = taxonomy(ELASTICC2)
    for code in (true_class, *tax.ancestors(true_class)) if true_class in tax else ():
        if code in CONTEXT:
            return CONTEXT[code]
    return "ORPHAN"


def record(alert: AlertSeen, classification: str, now: int) -> dict[str, Any]:
    """The full-level filter message for this alert."""
    return {
        "diaObject": {"diaObjectId": alert.dia_object_id, "ra": None, "decl": None},
        "diaSourcesList": [{"diaSourceId": alert.dia_source_id, "diaObjectId": alert.dia_object_id,
                            "midpointMjdTai": None, "band": None, "psfFlux": None, "psfFluxErr": None}],
        "diaForcedSourcesList": [],
        "diaNondetectionLimitsList": [],
        "annotations": {"sherlock": [{"classification": classification, "description": DESCRIPTIONS[classification],
                                      "annotator": SHERLOCK_VERSION,
                                      "additional_output": f"http://lasair-lsst.lsst.ac.uk/api/sherlock/object/"
                                                           f"{alert.dia_object_id}"}]},
        "UTC": datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }


def run_emulator(ctx: EmulatorContext) -> None:
    """Send every alert of the stream through the emulated filter."""
    rng = random.Random(f"lasair-{ctx.options.get('seed', 0)}")
    (out,) = output_topics(ctx.run_id)
    ensure_topics(ctx.bootstrap, [out], ctx.client_config)
    producer = make_producer(ctx.bootstrap, ctx.client_config)
    try:
        for batch in alert_batches(ctx):
            now = now_ms()
            for alert in batch:
                body = record(alert, sherlock_class(alert.true_class, rng), now)
                producer.produce(out, json.dumps(body).encode(), key=str(alert.dia_object_id).encode())
                producer.poll(0)
            producer.flush()
    finally:
        producer.flush()
