#!/usr/bin/env python3
"""Where `alertmux listen` spends its time per message, without a profiler's distortion: a cumulative ladder.

    .venv/bin/python benchmarks/listen_breakdown.py [--messages 100000] [--repeat 5]

The same messages as ``run.py`` are built in memory as ``confluent_kafka.Message`` objects (no broker: the Kafka fetch
is the same for both loops and off the main thread), then each rung runs over all of them in batches of 2000, adding
one step of the path at a time. Each rung is timed in CPU seconds of this thread (steady when other processes share
the cores) and the best of ``--repeat`` is kept. A rung's increase over the one before it is what that step costs.

The listen rungs call the library's own functions, private ones included (``kafka._handle_batch``): they follow
the hot path as it is, so update them when it changes.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Message
from run import BATCH_SIZE, classification_records

import alertmux
from alertmux.builtin.elasticc import decode_avro, messages_from_record
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenStats, _handle_batch
from alertmux.serde import load_schema, schemaless_decode, schemaless_encode
from alertmux.specs import Delivery
from alertmux.store import open_store

Batches = list[list[Message]]


class _NoOffsets:
    """Stands in for the consumer in ``_handle_batch``: offsets are stored nowhere."""

    def store_offsets(self, offsets: Any) -> None:
        pass


def bare_rung(stage: int) -> Callable[[Batches, Path], None]:
    """The bare loop of run.py up to ``stage``: 1 decode, 2 + pack the row, 3 + insert (the whole loop)."""
    schema = load_schema("elasticc.v0_9_1.brokerClassification", logical_types=False)
    reader, BytesIO = fastavro.schemaless_reader, io.BytesIO  # noqa: N806 - a local alias of the class

    def rung(batches: Batches, workdir: Path) -> None:
        db = sqlite3.connect(workdir / f"bare-{time.perf_counter_ns()}.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE messages (message_id INTEGER PRIMARY KEY, classifier_id INTEGER, alert_id INTEGER,"
            " dia_source_id INTEGER, class_ids TEXT, probabilities TEXT, alert_published_ms INTEGER,"
            " broker_ingest_ms INTEGER)"
        )
        db.execute("CREATE UNIQUE INDEX messages_by_alert ON messages (classifier_id, alert_id)")
        classifiers: dict[tuple[str, str, str, str], int] = {}
        for batch in batches:
            rows = []
            for msg in batch:
                if msg.error() is not None:
                    continue
                r = reader(BytesIO(msg.value()), schema, None)
                if stage < 2:
                    continue
                key = (r["brokerName"], r["brokerVersion"], r["classifierName"], r["classifierParams"])
                classifier_id = classifiers.get(key) or classifiers.setdefault(key, len(classifiers) + 1)
                entries = r["classifications"]
                rows.append((
                    classifier_id,
                    r["alertId"],
                    r["diaSourceId"],
                    "[" + ",".join(map(str, [e["classId"] for e in entries])) + "]",
                    "[" + ",".join(["%.7g" % e["probability"] for e in entries]) + "]",  # noqa: UP031 - the fastest
                    r["elasticcPublishTimestamp"],
                    r["brokerIngestTimestamp"],
                ))  # fmt: skip
            if stage >= 3:
                db.execute("BEGIN")
                db.executemany("INSERT OR IGNORE INTO messages VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
        db.close()

    return rung


def listen_rung(stage: int, host: PluginHost) -> Callable[[Batches, Path], None]:
    """listen's path up to ``stage`` (see RUNGS); the last stage is ``kafka._handle_batch`` itself."""
    schema = load_schema("elasticc.v0_9_1.brokerClassification", logical_types=False)

    def rung(batches: Batches, workdir: Path) -> None:
        store = open_store(workdir / f"listen-{time.perf_counter_ns()}.db")
        ingestor = Ingestor(host, "elasticc", store)
        stats, consumer = ListenStats(), _NoOffsets()
        for batch in batches:
            if stage == 7:
                _handle_batch(consumer, ingestor, batch, stats, host.hook)  # type: ignore[arg-type]
                continue
            rows: list[tuple[Any, ...]] = []
            for msg in batch:
                if msg.error() is not None:
                    continue
                payload = msg.value() or b""
                if stage == 1:
                    schemaless_decode(payload, schema)
                    continue
                if stage == 2:
                    messages_from_record(schemaless_decode(payload, schema), Delivery(msg.topic()))
                    continue
                kind, stamp = msg.timestamp()
                delivery = Delivery(msg.topic(), msg.partition(), msg.offset(), stamp if kind else None, msg.key())
                if stage == 3:
                    decode_avro(payload, delivery)
                elif stage == 4:
                    ingestor.decode(payload, delivery)
                else:
                    rows.extend(ingestor.rows(ingestor.decode(payload, delivery), delivery))
            if stage == 6:
                store.write_batch(rows)
        store.close()

    return rung


RUNGS = (
    ("bare: fastavro.schemaless_reader", 1, "bare"),
    ("bare: + row tuple, JSON text", 2, "bare"),
    ("bare: + executemany, commit = the bare loop", 3, "bare"),
    ("listen: serde.schemaless_decode", 1, "listen"),
    ("listen: + messages_from_record", 2, "listen"),
    ("listen: decode_avro + Delivery per message", 3, "listen"),
    ("listen: Ingestor.decode (decoder dispatch)", 4, "listen"),
    ("listen: + Ingestor.rows", 5, "listen"),
    ("listen: + SqliteStore.write_batch", 6, "listen"),
    ("listen: kafka._handle_batch = the loop", 7, "listen"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # plugins that fail to load are not this script's business
    n = args.messages
    schema = load_schema("elasticc.v0_9_1.brokerClassification")
    messages = [
        Message(topic="bench", partition=0, offset=i, value=schemaless_encode(r, schema),
                key=str(r["diaSourceId"]).encode(), timestamp=(1, 1_760_000_000_000 + i))
        for i, r in enumerate(classification_records(n))
    ]  # fmt: skip
    batches = [messages[i : i + BATCH_SIZE] for i in range(0, n, BATCH_SIZE)]
    host = PluginHost()
    rungs = [(label, bare_rung(stage) if side == "bare" else listen_rung(stage, host)) for label, stage, side in RUNGS]
    best = dict.fromkeys((label for label, _ in rungs), float("inf"))
    with tempfile.TemporaryDirectory(prefix="alertmux-breakdown-") as tmp:
        for _ in range(args.repeat):
            for label, rung in rungs:
                started = time.thread_time()
                rung(batches, Path(tmp))
                best[label] = min(best[label], time.thread_time() - started)
    print(f"{n:,} messages, best of {args.repeat}, CPU microseconds per message ({alertmux.__file__})")
    previous = None
    for label, stage, _ in RUNGS:
        us = best[label] / n * 1e6
        step = f"{us - previous:+6.2f}" if previous is not None and stage > 1 else ""
        print(f"  {label:<46} {us:6.2f}  {step}")
        previous = us
    bare, listen = best[RUNGS[2][0]], best[RUNGS[-1][0]]
    print(json.dumps({"bare_us": round(bare / n * 1e6, 2), "listen_us": round(listen / n * 1e6, 2),
                      "cpu_ratio": round(bare / listen, 3)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
