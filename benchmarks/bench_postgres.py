#!/usr/bin/env python3
"""The scale-out path: messages/s into PostgreSQL by 1 and 2 `alertmux listen` workers, against a bare COPY loop.

    .venv/bin/python benchmarks/bench_postgres.py [--messages 100000] [--db postgresql://...] [--bootstrap H:P]

Setup: an embedded broker (tansu) unless ``--bootstrap`` is given; PostgreSQL at ``--db`` (default: the local
server, postgresql://postgres@127.0.0.1:5432/test), every run in a fresh schema dropped afterwards. One topic
with two partitions holds N pre-encoded ``elasticc.v0_9_1`` brokerClassification messages (20 classes each, N/4
alertIds each classified by 4 classifiers), produced once. Then, in this order, each from the start of the topic:

* **bare**: one process, confluent-kafka ``assign()`` + ``consume(2000, 0.05)``, ``fastavro.schemaless_reader``,
  psycopg COPY of one row per message (``smallint[]``/``real[]`` arrays) straight into a table with the unique
  index on (classifier, alert), one transaction per batch. No staging, no conflict handling, no dead letters.
* **listen x1**: ``alertmux listen --broker elasticc --db postgresql://...``, a fresh consumer group.
* **listen x2**: two such workers in one consumer group, one partition each.

**Rate** = messages after the first second of storing / time from then to the last row stored, read from the rows'
own ingest times (``ingested_ms``), so process start, imports and the group join are left out on every side alike.
On 2 shared cores the second worker competes with the first and with PostgreSQL for the same CPUs: what it adds
is reported, not assumed. Prints one line per run, the ratios, and a JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

CLASS_IDS = (2222, 2223, 2224, 2225, 2226, 2232, 2233, 2234, 2235, 2242,
             2243, 2244, 2245, 2246, 2322, 2323, 2324, 2325, 2326, 2332)  # fmt: skip
CLASSIFIERS = (("AMPEL", "v0.9.2", "ElasticcLive", "SNGuess"), ("FINK", "3.1.0", "SuperNNova_v1.3", "e2"),
               ("ALeRCE", "5.2.1", "balto_classifier_lc", "v0.4"), ("Pitt-Google Broker", "v0.7", "SNN", "e2"))
WORKER_MAIN = "import sys; from alertmux.cli import main; sys.argv[0] = 'alertmux'; main()"
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"


def records(n: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        alert_id = 1_000_000 + i // len(CLASSIFIERS)
        identity = CLASSIFIERS[i % len(CLASSIFIERS)]
        weights = [rng.random() for _ in CLASS_IDS]
        total = sum(weights)
        yield {"alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
               "brokerIngestTimestamp": 1_700_000_000_100, "brokerName": identity[0], "brokerVersion": identity[1],
               "classifierName": identity[2], "classifierParams": identity[3],
               "classifications": [{"classId": c, "probability": w / total} for c, w in zip(CLASS_IDS, weights,
                                                                                            strict=True)]}


def produce(bootstrap: str, topic: str, n: int) -> None:
    from alertmux.harness import ensure_topics
    from alertmux.kafka import make_producer
    from alertmux.serde import load_schema, schemaless_encode

    ensure_topics(bootstrap, [topic], {}, partitions=2)
    schema = load_schema("elasticc.v0_9_1.brokerClassification")
    producer = make_producer(bootstrap)
    for i, record in enumerate(records(n)):
        while True:
            try:
                producer.produce(topic, schemaless_encode(record, schema), partition=i % 2,
                                 key=str(record["alertId"]).encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


def schema_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"


def bare(bootstrap: str, topic: str, n: int, url: str) -> None:
    """Consume, decode and COPY: the least any loop into PostgreSQL can do."""
    import fastavro
    import psycopg
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from alertmux.embedded import local_client_config
    from alertmux.serde import load_schema

    schema = load_schema("elasticc.v0_9_1.brokerClassification", logical_types=False)  # epoch ms stay integers
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS " + url.rsplit("%3D", 1)[1])
        conn.execute("CREATE TABLE bare (id bigint GENERATED ALWAYS AS IDENTITY, classifier_id int, alert_id bigint,"
                     " class_ids smallint[], probabilities real[], ingested_ms bigint)")
        conn.execute("CREATE UNIQUE INDEX ON bare (classifier_id, alert_id)")
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bare-{uuid.uuid4().hex[:6]}",
                             "enable.auto.commit": False, **local_client_config()})
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
        classifiers: dict[tuple[str, ...], int] = {}
        done = 0
        copy_sql = "COPY bare (classifier_id, alert_id, class_ids, probabilities, ingested_ms) FROM STDIN"

        while done < n:
            batch = consumer.consume(2000, timeout=0.05)
            rows = []
            for msg in batch:
                if msg.error():
                    continue
                r = fastavro.schemaless_reader(io.BytesIO(msg.value()), schema)
                key = (r["brokerName"], r["brokerVersion"], r["classifierName"], r["classifierParams"])
                cid = classifiers.setdefault(key, len(classifiers) + 1)
                entries = r["classifications"]
                # Arrays as PostgreSQL text literals: cheaper than letting psycopg adapt Python lists.
                rows.append((cid, r["alertId"], "{" + ",".join([str(e["classId"]) for e in entries]) + "}",
                             "{" + ",".join(["%.7g" % e["probability"] for e in entries]) + "}",  # noqa: UP031
                             time.time_ns() // 1_000_000))
            if rows:
                with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                done += len(rows)
        consumer.close()


def rate(url: str, table: str) -> tuple[int, float]:
    """(rows, rows/s from one second after the first row to the last), from the rows' own ingest times."""
    import psycopg

    with psycopg.connect(url) as conn:
        first, last, count = conn.execute(f"SELECT MIN(ingested_ms), MAX(ingested_ms), COUNT(*) FROM {table}"
                                          ).fetchone()  # type: ignore[misc]
        (after,) = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE ingested_ms > %s", (first + 1000,)).fetchone()
    span = (last - first - 1000) / 1000
    return count, (after / span if span > 0 else float("nan"))


def listen(bootstrap: str, topic: str, n: int, url: str, workers: int) -> None:
    from alertmux.embedded import local_client_config

    env = dict(os.environ)
    for key, value in local_client_config().items():
        env["ALERTMUX__KAFKA__" + key.replace(".", "_").upper()] = value
    group = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_MAIN, "-q", "listen", "--broker", "elasticc",
                               "--bootstrap", bootstrap, "--topic", topic, "--group", group, "--db", url,
                               "--idle-exit", "3"], env=env, stdout=subprocess.PIPE) for _ in range(workers)]
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        if proc.returncode:
            raise SystemExit(f"a worker failed with code {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--db", default=os.environ.get("ALERTMUX_BENCH_PG_URL", DEFAULT_DB))
    parser.add_argument("--bootstrap")
    args = parser.parse_args(argv)
    import psycopg

    from alertmux.embedded import EmbeddedKafka

    kafka = None
    if not args.bootstrap:
        kafka = EmbeddedKafka().start()
    bootstrap = args.bootstrap or kafka.bootstrap  # type: ignore[union-attr]
    topic = f"bench-pg-{uuid.uuid4().hex[:6]}"
    results: dict[str, float] = {}
    schemas: list[str] = []
    try:
        print(f"producing {args.messages} messages to {topic} (2 partitions)", file=sys.stderr)
        produce(bootstrap, topic, args.messages)
        for name, table, run in (
            ("bare", "bare", lambda url: bare(bootstrap, topic, args.messages, url)),
            ("listen x1", "messages", lambda url: listen(bootstrap, topic, args.messages, url, 1)),
            ("listen x2", "messages", lambda url: listen(bootstrap, topic, args.messages, url, 2)),
        ):
            schema = f"alertmux_bench_{uuid.uuid4().hex[:8]}"
            schemas.append(schema)
            url = schema_url(args.db, schema)
            started = time.perf_counter()
            run(url)
            count, per_second = rate(url, table)
            results[name] = per_second
            print(f"{name:<10} {count:>8} rows  {per_second:>9.0f} msg/s  ({time.perf_counter() - started:.1f} s"
                  " wall, start-up included)", file=sys.stderr)
            if count != args.messages:
                raise SystemExit(f"{name}: {count} rows stored, {args.messages} expected")
    finally:
        with psycopg.connect(args.db, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if kafka is not None:
            kafka.stop()
    ratios = {"listen_x1/bare": results["listen x1"] / results["bare"],
              "listen_x2/listen_x1": results["listen x2"] / results["listen x1"]}
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}", file=sys.stderr)
    print(json.dumps({"messages": args.messages, "rates": {k: round(v) for k, v in results.items()},
                      "ratios": {k: round(v, 3) for k, v in ratios.items()}, "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
