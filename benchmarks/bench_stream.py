#!/usr/bin/env python3
"""How long a Rubin visit takes to go out through ``alertmux stream``'s path: 10,000 full-size alerts in < 30 s.

    .venv/bin/python benchmarks/bench_stream.py [--alerts 10000] [--history 30] [--schema lsst.v11_1]
                                                [--processes N] [--budget 30] [--bootstrap HOST:PORT]

Setup: an embedded broker (tansu) unless ``--bootstrap`` is given, a fresh SQLite store, and N distinct
``lsst.v11_1`` alerts with *every* field filled (nullable ones too), ``--history`` prvDiaSources and as many
prvDiaForcedSources, a diaObject and no cutouts: the "alert30" of shared/research/alerts_perf.md, ~16.6 KB of Avro,
which fastavro encodes at ~255 alerts/s on one core (a visit is then ~39 s of one core).

Measured, each from alert dicts in memory to the last delivery report recorded in the store:

* **visit**: :func:`alertmux.harness.stream_alerts` as ``alertmux stream`` calls it: Confluent wire-format encoding
  on every core, pipelined with producing (sending starts after the first chunk), per-alert sent time recorded
  from Kafka's acknowledgements. This is the number held against the budget.
* **pre-encoded**: the same alerts encoded first (:func:`alertmux.harness.encode_alerts`), then sent: the send
  alone, as when a visit is prepared before its time comes (Rubin's own simulator replays pre-serialized alerts).

Prints one line per measurement and a JSON line; exits 1 when the visit took longer than ``--budget`` seconds.
The machine's cores may be shared: the visit's CPU time and its share of the cores' time are printed too, so a
visit slowed by other processes (share well below 100 %) can be told from a slow streamer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _value(avro_type: Any, rng: random.Random, named: dict[str, Any]) -> Any:
    """A random value of an Avro type, nullable unions filled with their non-null branch."""
    if isinstance(avro_type, list):
        return _value(next(t for t in avro_type if t != "null"), rng, named)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if avro_type.get("logicalType") in ("timestamp-micros", "timestamp-millis"):
            return 1_700_000_000_000_000 + rng.randrange(10**9)
        if kind == "record":
            return {f["name"]: _value(f["type"], rng, named) for f in avro_type["fields"]}
        if kind == "array":
            return [_value(avro_type["items"], rng, named)]
        return _value(kind, rng, named)
    if avro_type in named:
        return _value(named[avro_type], rng, named)
    return {
        "long": lambda: rng.randrange(1, 2**60), "int": lambda: rng.randrange(1, 2**30),
        "double": lambda: rng.uniform(-1e3, 1e3), "float": lambda: rng.uniform(-1e3, 1e3),
        "boolean": lambda: rng.random() < 0.5, "string": lambda: "band-or-name",
        "bytes": lambda: b"\x00" * 16,
    }[avro_type]()


def full_alerts(n: int, history: int, version: str, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct alerts of ``version`` with every field filled and ``history`` + ``history`` previous points.

    Field values come from a pool of random records (drawing ~3,700 random values per alert would take longer
    than the measurement); ids, times and bands are the alert's own, and no two alerts share a dict.
    """
    from alertmux.sources.rubin import rubin_schema

    schema = rubin_schema(version)
    named = schema["__named_schemas"]
    rng = random.Random(seed)
    pool = {kind: [_value(named[f"{version}.{kind}"], rng, named) for _ in range(64)]
            for kind in ("diaSource", "diaForcedSource", "diaObject")}

    def record(kind: str, **ids: Any) -> dict[str, Any]:
        return rng.choice(pool[kind]) | ids

    alerts = []
    for i in range(n):
        object_id = 10_000_000 + i
        source = record("diaSource", diaSourceId=object_id * 1000 + history, diaObjectId=object_id,
                        midpointMjdTai=61000.0 + history, band="r")
        prv = [record("diaSource", diaSourceId=object_id * 1000 + k, diaObjectId=object_id,
                      midpointMjdTai=61000.0 + k, band="g") for k in range(history)]
        forced = [record("diaForcedSource", diaForcedSourceId=object_id * 1000 + k, diaObjectId=object_id,
                         midpointMjdTai=61000.0 + k, band="i") for k in range(history)]
        alerts.append({
            "diaSourceId": source["diaSourceId"], "observation_reason": "bench", "target_name": "bench",
            "diaSource": source, "prvDiaSources": prv, "prvDiaForcedSources": forced,
            "diaObject": record("diaObject", diaObjectId=object_id), "ssSource": None, "mpc_orbits": None,
            "cutoutDifference": None, "cutoutScience": None, "cutoutTemplate": None,
        })
    return alerts


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=30)
    parser.add_argument("--schema", default="lsst.v11_1")
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds a visit may take")
    parser.add_argument("--bootstrap", help="an existing Kafka; default: an embedded tansu broker")
    args = parser.parse_args()

    from alertmux.embedded import EmbeddedKafka, local_client_config
    from alertmux.harness import encode_alerts, stream_alerts
    from alertmux.serde import schemaless_encode
    from alertmux.sources.rubin import rubin_schema
    from alertmux.store import open_store

    made = time.monotonic()
    alerts = full_alerts(args.alerts, args.history, args.schema)
    size = len(schemaless_encode(alerts[0], rubin_schema(args.schema)))
    print(f"{len(alerts)} {args.schema} alerts, {args.history}+{args.history} history, every field filled: "
          f"{size:,} B each (made in {time.monotonic() - made:.1f} s); {os.cpu_count()} cores", file=sys.stderr)

    results: dict[str, Any] = {"alerts": len(alerts), "bytes_per_alert": size, "cores": os.cpu_count()}
    broker = EmbeddedKafka() if not args.bootstrap else _Given(args.bootstrap)
    with tempfile.TemporaryDirectory() as tmp, broker as kafka:
        client_config = local_client_config() if not args.bootstrap else {}
        store = open_store(Path(tmp) / "bench.db")
        run_id = store.start_run("bench", {"alerts": len(alerts)})

        load = os.getloadavg()[0]
        cpu_before = _cpu_seconds()
        started = time.monotonic()
        stats = stream_alerts(store, run_id, alerts, bootstrap=kafka.bootstrap, topic="bench-visit",
                              client_config=client_config, schema=args.schema, processes=args.processes)
        visit = time.monotonic() - started
        cpu = _cpu_seconds() - cpu_before
        # The cores are shared with other processes: the CPU the visit got, over what its cores could give,
        # says whether a slow visit was slow code (share near 1) or a busy machine (share well below 1).
        share = cpu / (visit * (os.cpu_count() or 1))
        recorded = len(store.sent_alert_ids(run_id, "bench-visit"))
        assert stats.sent == recorded == len(alerts), (stats, recorded)
        print(f"visit (encode on every core, pipelined with sending): {visit:.1f} s "
              f"= {len(alerts) / visit:,.0f} alerts/s; budget {args.budget:g} s", file=sys.stderr)
        print(f"  it used {cpu:.1f} s of CPU, {share:.0%} of its {os.cpu_count()} cores' time (load before: "
              f"{load:.2f}); on idle cores that CPU is a visit of ~{cpu / (os.cpu_count() or 1):.1f} s",
              file=sys.stderr)

        started = time.monotonic()
        payloads = encode_alerts(alerts, args.processes, schema=args.schema)
        encoded = time.monotonic() - started
        started = time.monotonic()
        stats = stream_alerts(store, run_id, alerts, bootstrap=kafka.bootstrap, topic="bench-pre-encoded",
                              client_config=client_config, payloads=payloads)
        sent = time.monotonic() - started
        assert stats.sent == len(alerts), stats
        print(f"pre-encoded: encoding {encoded:.1f} s, then sending {sent:.1f} s "
              f"= {len(alerts) / sent:,.0f} alerts/s", file=sys.stderr)
        store.close()
    results |= {"visit_seconds": round(visit, 2), "visit_cpu_seconds": round(cpu, 2),
                "visit_cpu_share": round(share, 2), "load_before": round(load, 2), "budget_seconds": args.budget,
                "encode_seconds": round(encoded, 2), "pre_encoded_send_seconds": round(sent, 2)}
    print(json.dumps(results))
    return 0 if visit <= args.budget else 1


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped children (the encoding pool, joined at the end)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Given:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def __enter__(self) -> _Given:
        return self

    def __exit__(self, *_: Any) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
