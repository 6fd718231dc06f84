"""What every broker emulator shares: reading the harness's alert stream and a confusion-matrix behaviour.

A broker plugin's emulator only decides what its broker would send for each alert and how (its topics, its
wire format, its REST calls); :func:`alert_batches` does the consuming and knows when the stream is done, and
:class:`ConfusionMatrix` makes a real broker's ELAsTiCC performance the emulator's behaviour.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from alertmux.specs import EmulatorContext
from alertmux.taxonomy import ELASTICC2, taxonomy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertSeen:
    """One alert as an emulator sees it: its ids, when it was published, and (from the store) its truth."""

    alert_id: int
    dia_source_id: int
    dia_object_id: int | None
    published_ms: int | None
    true_class: int | None
    """From the harness's store by diaObjectId, never from the payload."""
    detections: int | None
    """Detections of the object up to and including this alert."""


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    # Avro long: zig-zag varint.
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def alert_head(payload: bytes) -> tuple[int, int, int | None]:
    """(alertId, diaSourceId, diaObjectId) read from the head of a schemaless ``elasticc.v0_9_1`` alert.

    An emulator needs only these three fields, which the schema puts first; decoding the whole alert (with its
    history) would cost a hundred times more and make the emulator, not the broker under test, the bottleneck.
    """
    alert_id, pos = _read_long(payload, 0)
    source_id, pos = _read_long(payload, pos)
    branch, pos = _read_long(payload, pos)
    object_id = _read_long(payload, pos)[0] if branch == 1 else None
    return alert_id, source_id, object_id


def alert_batches(ctx: EmulatorContext, *, idle_timeout: float | None = None) -> Iterator[list[AlertSeen]]:
    """Yield the harness's alerts in batches until the stream is done and every alert of it was yielded.

    Partitions are assigned directly (no consumer group: no join delay, and every emulator sees every alert).
    Done means ``ctx.expected_alerts()`` alerts were read, or, when the harness cannot say how many, that
    ``ctx.stop()`` is true and nothing arrived for ``idle_timeout`` seconds (default: the ``idle_timeout``
    emulator option, else 60; ``alertmux emulate`` sets 0, since its stop is the user's Ctrl-C).
    """
    if idle_timeout is None:
        idle_timeout = float(ctx.options.get("idle_timeout", 60.0))
    consumer = Consumer(
        {"bootstrap.servers": ctx.bootstrap, "group.id": f"alertmux-emulator-{ctx.run_id}",
         "enable.auto.commit": False} | dict(ctx.client_config)
    )
    try:
        partitions = _partitions(consumer, ctx.alert_topics)
        consumer.assign(partitions)
        truth: dict[int | None, int | None] = {None: None}
        seen = 0
        last = time.monotonic()
        while True:
            expected = ctx.expected_alerts()
            if expected is not None and seen >= expected:
                return
            if ctx.stop() and expected is None and time.monotonic() - last > idle_timeout:
                return
            messages = consumer.consume(1000, timeout=0.05)
            batch = []
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("emulator: %s", error.str())
                    continue
                seen += 1
                try:
                    alert_id, source_id, object_id = alert_head(msg.value())
                except IndexError:
                    log.warning("emulator: skipping a payload that is not an elasticc alert")
                    continue
                if object_id not in truth:
                    truth[object_id] = ctx.store.truth_class(object_id)  # type: ignore[arg-type]
                kind, stamp = msg.timestamp()
                batch.append(AlertSeen(alert_id, source_id, object_id, stamp if kind else None, truth[object_id],
                                       ctx.store.detection_count(source_id)))
            if batch:
                last = time.monotonic()
                yield batch
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topics: tuple[str, ...], timeout: float = 30.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        metadata = consumer.list_topics(timeout=10)
        found = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            if t in metadata.topics and metadata.topics[t].error is None
            for p in metadata.topics[t].partitions
        ]
        if len({tp.topic for tp in found}) == len(topics) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)  # the streamer has not created the topic yet


@dataclass(frozen=True, slots=True)
class ConfusionMatrix:
    """A confusion matrix as a classifier's behaviour: row = true class, columns = predicted classes."""

    predicted_classes: tuple[int, ...]
    rows: dict[int, tuple[float, ...]]
    """Row-normalized: P(predicted | true), by true class."""

    @classmethod
    def from_csv(cls, text: str) -> ConfusionMatrix:
        """Read the ``seed_talk`` layout: first column the true class name, header the predicted class names."""
        reader = csv.reader(text.splitlines())
        header = next(reader)
        tax = taxonomy(ELASTICC2)
        predicted = tuple(tax.code_for_name(name) for name in header[1:])
        rows = {}
        for line in reader:
            counts = [float(x) for x in line[1:]]
            rows[tax.code_for_name(line[0])] = tuple(c / sum(counts) for c in counts)
        return cls(predicted, rows)

    @staticmethod
    @cache
    def shipped(name: str) -> ConfusionMatrix:
        """``last`` or ``after3``: the ELAsTiCC talk's matrices (one 2022 broker classifier), shipped with alertmux."""
        file = {"last": "confusion_last_classification.csv", "after3": "confusion_after_three_detections.csv"}[name]
        return ConfusionMatrix.from_csv(files("alertmux").joinpath(f"data/{file}").read_text())

    def classify(self, true_class: int | None, rng: random.Random) -> list[tuple[int, float]]:
        """A full probability vector over the predicted classes, summing to 1, its top class drawn from the row.

        The drawn class gets a probability in [0.5, 0.95], so it is always the top class and the scored matrix
        recovers this one; the rest is spread over the other classes with random weights. An object without
        truth draws its class uniformly.
        """
        row = self.rows.get(true_class) if true_class is not None else None
        predicted = rng.choices(self.predicted_classes, weights=row)[0] if row else rng.choice(self.predicted_classes)
        top = rng.uniform(0.5, 0.95)
        others = [c for c in self.predicted_classes if c != predicted]
        weights = [rng.expovariate(1.0) for _ in others]
        scale = (1.0 - top) / sum(weights)
        return [(predicted, top)] + [(c, w * scale) for c, w in zip(others, weights, strict=True)]


def behaviour(mode: str) -> tuple[ConfusionMatrix, ConfusionMatrix, int]:
    """(early matrix, late matrix, detections up to which the early one applies) for an emulator mode.

    ``last``: the last-classification matrix for every alert. ``after3``: the after-three-detections matrix up to
    the third detection, then the last-classification one.
    """
    last = ConfusionMatrix.shipped("last")
    if mode == "last":
        return last, last, 0
    if mode == "after3":
        return ConfusionMatrix.shipped("after3"), last, 3
    raise ValueError(f"unknown emulator mode {mode!r} (known: last, after3)")
