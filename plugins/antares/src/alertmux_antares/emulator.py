"""A local ANTARES: classifies the harness's alerts and publishes their loci on a ``client.<name>`` topic.

For each alert it publishes the alert's locus, as ANTARES's stream does after its filters ran: the new
``LocusMessageToUsers`` shape (``id``, ``ra``, ``dec``, ``properties``, ``tags``, ``catalogs``) as BSON,
zlib-compressed, on ``client.<filter>`` (the prefix every ANTARES user topic has; a harness run's id goes into the
name). The locus carries what Superphot+ writes (``superphot_plus_class`` among its five supernova classes, with
``superphot_plus_class_prob`` and ``superphot_plus_classifier``) and the tags filters set: ``superphot_plus_classified``
always, ``microlensing_candidate`` or ``dwarf_nova_outburst`` when the drawn class is one of those. Each alert
therefore decodes into two messages (Superphot+ and the tags).

The probabilities come from :func:`alertmux.emulation.behaviour`'s confusion matrices (option ``mode``), restricted
to Superphot+'s classes and renormalized; the seed is ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from alertmux import EmulatorContext
from alertmux.emulation import AlertSeen, alert_batches, behaviour
from alertmux.harness import ensure_topics
from alertmux.kafka import make_producer
from alertmux.store import now_ms
from alertmux_antares.decoders import encode_locus

FILTER = "emulated"
SUPERPHOT_CLASSES = {"SN Ia": 2222, "SN Ibc": 2223, "SN II": 2224, "SLSN-I": 2242}
"""Superphot+'s classes with their ELAsTiCC2 ids (its "SN IIn" shares II: the emulator writes "SN II")."""
TAGGED = {2235: "microlensing_candidate", 2234: "dwarf_nova_outburst"}
ANSWERS_PER_ALERT = 2
MJD_UNIX_EPOCH = 40587.0


def topic(run_id: str = "") -> str:
    """The emulated user topic (``client.<filter>``, with the run id when the harness gives one)."""
    return f"client.{FILTER}{'_' + run_id if run_id else ''}"


def output_topics(run_id: str) -> tuple[str, ...]:
    """The topics the emulator publishes to."""
    return (topic(run_id),)


def locus_id(object_id: int | None, alert_id: int) -> str:
    """A locus id in ANTARES's style (``ANT`` then letters and digits), one per object."""
    number, letters = object_id if object_id is not None else alert_id, ""
    for _ in range(10):
        number, digit = divmod(number, 36)
        letters += "0123456789abcdefghijklmnopqrstuvwxyz"[digit]
    return f"ANT{letters}"


def locus(alert: AlertSeen, vector: Mapping[int, float], ingest_ms: int) -> dict[str, Any]:
    """The locus ANTARES would stream for this alert, given these class probabilities."""
    weights = {label: float(vector.get(code, 0.0)) for label, code in SUPERPHOT_CLASSES.items()}
    total = sum(weights.values())
    label = max(weights, key=weights.__getitem__)
    probability = weights[label] / total if total > 0 else 1.0 / len(weights)
    tags = ["superphot_plus_classified"]
    top = max(vector, key=vector.__getitem__) if vector else None
    if top in TAGGED:
        tags.append(TAGGED[top])
    properties: dict[str, Any] = {
        "newest_alert_id": alert.dia_source_id,
        "newest_alert_observation_time": ingest_ms / 86_400_000 + MJD_UNIX_EPOCH,
        "num_alerts": alert.detections or 1,
        "superphot_plus_class": label,
        "superphot_plus_class_prob": probability,
        "superphot_plus_classifier": "superphot_plus (alertmux emulator)",
    }
    if alert.dia_object_id is not None:
        properties["survey"] = {"lsst": {"dia_object_id": alert.dia_object_id}}
    return {"id": locus_id(alert.dia_object_id, alert.alert_id), "ra": 0.0, "dec": 0.0, "properties": properties,
            "tags": tags, "catalogs": []}


def run_emulator(ctx: EmulatorContext) -> None:
    """Answer every alert of the stream with its locus on the emulated ``client.`` topic."""
    early, late, switch_after = behaviour(ctx.options.get("mode", "last"))
    rng = random.Random(f"antares-{ctx.options.get('seed', 0)}")
    (out,) = output_topics(ctx.run_id)
    ensure_topics(ctx.bootstrap, [out], ctx.client_config)
    producer = make_producer(ctx.bootstrap, ctx.client_config)
    try:
        for batch in alert_batches(ctx):
            ingest_ms = now_ms()
            for alert in batch:
                matrix = early if (alert.detections or 0) <= switch_after else late
                vector = dict(matrix.classify(alert.true_class, rng))
                body = locus(alert, vector, ingest_ms)
                producer.produce(out, encode_locus(body), key=body["id"].encode())
                producer.poll(0)
            producer.flush()
    finally:
        producer.flush()
