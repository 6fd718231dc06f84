"""N ``alertmux listen`` workers in one consumer group over a partitioned topic, into one PostgreSQL.

A worker killed with SIGKILL mid-stream and restarted, or a worker joining and leaving mid-stream: every message
ends up stored exactly once, and every bad payload is exactly one dead letter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from alertmux.embedded import local_client_config
from alertmux.harness import ensure_topics
from alertmux.kafka import make_producer
from alertmux.serde import load_schema, schemaless_encode

PARTITIONS = 4
GARBAGE = [b"\x00not a classification %d\xff" % i for i in range(6)]


def classification(alert_id: int) -> bytes:
    record = {
        "alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
        "brokerIngestTimestamp": None, "brokerName": "B", "brokerVersion": "1", "classifierName": "C",
        "classifierParams": "P", "classifications": [{"classId": 2222, "probability": 0.75},
                                                     {"classId": 2223, "probability": 0.25}],
    }
    return schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification"))


class Stream:
    """Produces classifications (keyed by object, 8 alerts per object) and the garbage, spread over ``seconds``."""

    def __init__(self, bootstrap: str, topic: str, n: int, seconds: float, pauses: tuple[int, ...] = ()) -> None:
        self.n = n
        items = [(str(a // 8).encode(), classification(a)) for a in range(1, n + 1)]
        step = max(1, n // len(GARBAGE))
        for i, junk in enumerate(GARBAGE):  # bad payloads in the middle of the stream, on several partitions
            items.insert((i + 1) * step - 1, (f"junk-{i}".encode(), junk))
        self.items = items
        self.sent = 0
        self.errors: list[str] = []
        # One record per batch: tansu's ListOffsets reports the last batch's base offset + 1 as the high watermark
        # (shared/research/alerts_perf.md), which only then is the true one, as the watchdog's lag needs.
        self._producer = make_producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
        self._topic, self._seconds = topic, seconds
        # The stream holds before these items until the test lets it go on (resume()).
        self._gates = {at: threading.Event() for at in pauses}
        self.paused = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        for i, (key, value) in enumerate(self.items):
            gate = self._gates.get(i)
            if gate is not None:
                self._producer.flush(30)
                self.paused.set()
                held = time.monotonic()
                gate.wait(120)
                self.paused.clear()
                started += time.monotonic() - held
            delay = started + self._seconds * i / len(self.items) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._producer.produce(self._topic, value, key=key,
                                   on_delivery=lambda err, _m: self.errors.append(str(err)) if err else None)
            self._producer.poll(0)
            self.sent = i + 1
        left = self._producer.flush(30)
        if left:
            self.errors.append(f"{left} not flushed")

    def resume(self) -> None:
        """Let a paused stream go on."""
        for at in sorted(self._gates):
            if not self._gates[at].is_set():
                self._gates[at].set()
                return

    def done(self) -> bool:
        return not self.thread.is_alive()


def counts(url: str) -> tuple[int, int]:
    """(messages, dead letters) in the store (0, 0 before the first worker created the tables)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return (conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0],  # type: ignore[index]
                    conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])  # type: ignore[index]
    except psycopg.errors.UndefinedTable:
        return 0, 0
    except psycopg.OperationalError:
        return -1, -1  # the server is down (the restart test)


def assigned(worker: Any) -> set[int]:
    """The partitions a worker holds, from its log."""
    held: set[int] = set()
    for line in worker.logs().splitlines():
        numbers = {int(n) for n in re.findall(r"\[(\d+)\]", line)}
        if "partitions assigned" in line:
            held |= numbers
        elif "partitions revoked" in line or "partitions lost" in line:
            held -= numbers
    return held


def stored_in(url: str, partitions: set[int]) -> int:
    """Messages stored from these partitions."""
    if not partitions:
        return 0
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute('SELECT COUNT(*) FROM messages WHERE "partition" = ANY(%s)', (sorted(partitions),))
            return int(row.fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def assert_exactly_once(url: str, stream: Stream) -> None:
    with psycopg.connect(url) as conn:
        alert_ids = [r[0] for r in conn.execute("SELECT alert_id FROM messages ORDER BY alert_id")]
        dead = conn.execute('SELECT payload, "partition", "offset", error FROM dead_letters').fetchall()
    assert alert_ids == list(range(1, stream.n + 1)), "a message was lost or stored twice"
    assert sorted(bytes(d[0]) for d in dead) == sorted(GARBAGE), "a bad payload was lost or dead-lettered twice"
    assert len({(d[1], d[2]) for d in dead}) == len(GARBAGE) and all("DecodeError" in d[3] for d in dead)


@pytest.fixture
def setup(kafka_broker: Any, pg_url: str) -> dict[str, Any]:
    topic = f"workers-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, [topic], {}, partitions=PARTITIONS)
    args = ["-v", "listen", "--broker", "elasticc", "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
            "--group", f"g-{topic}", "--db", pg_url]
    return {"bootstrap": kafka_broker.bootstrap, "topic": topic, "url": pg_url, "args": args}


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    setup: dict[str, Any], spawn: Callable[..., Any], worker_env: Callable[..., dict[str, str]]
) -> None:
    # Auto-commit every 60 s: the killed worker commits nothing, so all it stored is redelivered to the others.
    env = worker_env(**{"auto.commit.interval.ms": "60000"})
    a, b = spawn(setup["args"], env), spawn(setup["args"], env)
    stream = Stream(setup["bootstrap"], setup["topic"], n=2400, seconds=8).start()
    # Killed once it has stored a good part of its own partitions (which it has not committed).
    wait_for(lambda: stored_in(setup["url"], assigned(a)) >= 150, 40, "the first worker to store some of the stream")
    stored_at_kill = counts(setup["url"])[0]
    a.kill()
    assert not stream.done() and stored_at_kill < stream.n, "the kill did not land mid-stream"
    restarted = spawn(setup["args"], env)
    wait_for(lambda: stream.done() and counts(setup["url"]) == (stream.n, len(GARBAGE)), 60,
             f"every message stored (now {counts(setup['url'])})")
    reports = [b.stop(), restarted.stop()]
    assert stream.errors == []
    assert_exactly_once(setup["url"], stream)
    # What the killed worker had stored was read again and recognized as stored: a redelivery, absorbed.
    assert sum(int(r["duplicates"]) for r in reports) > 0, (reports, a.logs(), b.logs(), restarted.logs())


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_joining_and_leaving_mid_stream_loses_and_doubles_nothing(
    setup: dict[str, Any], spawn: Callable[..., Any], worker_env: Callable[..., dict[str, str]]
) -> None:
    env = worker_env()
    first = spawn(setup["args"], env)
    # The stream holds (unfinished) at a third until the second worker has joined: a group join takes seconds.
    stream = Stream(setup["bootstrap"], setup["topic"], n=3000, seconds=6, pauses=(1000,)).start()
    wait_for(lambda: counts(setup["url"])[0] >= 100, 40, "the first worker to store some of the stream")
    joiner = spawn(setup["args"], env)
    # It joins (a rebalance: the first worker commits, then hands partitions over), works, and leaves (another).
    wait_for(lambda: "partitions assigned" in joiner.logs(), 40, "the second worker to be assigned partitions")
    stream.resume()
    wait_for(lambda: counts(setup["url"])[0] >= 1800, 40, "both workers to store more of the stream")
    assert not stream.done(), "the stream ended before the second worker left"
    joined = joiner.stop()
    wait_for(lambda: stream.done() and counts(setup["url"]) == (stream.n, len(GARBAGE)), 60,
             f"every message stored (now {counts(setup['url'])})")
    stayed = first.stop()
    assert stream.errors == []
    assert_exactly_once(setup["url"], stream)
    assert int(joined["consumed"]) > 0 and int(stayed["consumed"]) > 0, (joined, stayed)
    assert "partitions revoked" in first.logs() and "partitions revoked" in joiner.logs()
    # Graceful hand-overs commit before partitions move: nothing, or next to nothing, is read twice.
    total = stream.n + len(GARBAGE)
    assert total <= int(joined["consumed"]) + int(stayed["consumed"]) <= total + 50, (joined, stayed)


@pytest.mark.kafka
@pytest.mark.slow
def test_postgres_restarting_mid_ingest_the_worker_waits_and_resumes(
    kafka_broker: Any, private_pg: Any, private_pg_url: str, spawn: Callable[..., Any],
    worker_env: Callable[..., dict[str, str]]
) -> None:
    topic = f"pg-restart-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, [topic], {}, partitions=2)
    worker = spawn(["listen", "--broker", "elasticc", "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
                    "--db", private_pg_url], worker_env())
    # The stream holds at half way until the server is down, so the rest arrives while it is: the crash lands
    # mid-ingest even when a slow worker joins late and would otherwise read the whole stream in one batch.
    stream = Stream(kafka_broker.bootstrap, topic, n=2000, seconds=5, pauses=(1000,)).start()
    wait_for(lambda: stream.paused.is_set() and counts(private_pg_url)[0] >= 300, 40,
             "the worker to store some of the stream")
    stored_at_crash = counts(private_pg_url)[0]
    private_pg.stop("immediate")  # a crash: transactions in flight are lost, clients cut off
    assert 0 < stored_at_crash < stream.n, "the crash did not land mid-ingest"
    stream.resume()  # batches keep arriving from Kafka meanwhile
    time.sleep(2.5)
    assert worker.proc.poll() is None, f"the worker gave up: {worker.logs()[-2000:]}"
    private_pg.start()
    wait_for(lambda: stream.done() and counts(private_pg_url) == (stream.n, len(GARBAGE)), 60,
             f"every message stored after the restart (now {counts(private_pg_url)})")
    report = worker.stop()
    assert_exactly_once(private_pg_url, stream)
    assert "unavailable" in worker.logs() and "retrying" in worker.logs()
    assert int(report["stored"]) == stream.n


# -- operations: alertmux status and the watchdog ------------------------------------------------------------------
@pytest.mark.kafka
@pytest.mark.slow
def test_status_shows_lag_last_message_and_dead_letters(kafka_broker: Any, pg_url: str, run_cli: Any,
                                                        kafka_client_config: dict[str, str]) -> None:
    from alertmux.builtin import elasticc
    from alertmux.host import PluginHost
    from alertmux.ingest import Ingestor
    from alertmux.kafka import ListenOptions, listen
    from alertmux.store import open_store

    topic = f"status-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, [topic], {}, partitions=2)
    producer = make_producer(kafka_broker.bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})  # see Stream
    for i in range(1, 51):
        producer.produce(topic, classification(i) if i % 10 else GARBAGE[0] + bytes([i]), key=str(i).encode())
    producer.flush(30)
    store = open_store(pg_url)
    group = f"g-{topic}"
    before = time.time() * 1000
    stats = listen(Ingestor(PluginHost(load_entrypoints=False, plugins=[elasticc]), "elasticc", store),
                   ListenOptions(bootstrap=kafka_broker.bootstrap, topics=(topic,), group_id=group, max_messages=30,
                                 client_config=kafka_client_config))
    store.close()
    assert stats.consumed == 30
    result = run_cli("status", "--db", pg_url, "--broker", "elasticc", "--bootstrap", kafka_broker.bootstrap,
                     "--topic", topic, "--group", group, "--json")
    assert result.code == 0, result.err
    [entry] = json.loads(result.out)["brokers"]
    assert entry["lag"] == 20 and sum(p["lag"] for p in entry["partitions"]) == 20
    assert {(p["topic"], p["partition"]) for p in entry["partitions"]} == {(topic, 0), (topic, 1)}
    assert entry["dead_letters"] == stats.dead_letters > 0
    assert before <= entry["last_message_ms"] <= time.time() * 1000 and entry["kafka_error"] is None
    table = run_cli("status", "--db", pg_url, "--bootstrap", kafka_broker.bootstrap, "--topic", topic, "--group",
                    group)
    assert table.code == 0 and "elasticc" in table.out and "20" in table.out


def test_status_without_kafka_still_reports_the_store(tmp_path: Any, run_cli: Any) -> None:
    from alertmux.store import DeadLetter, open_store

    store = open_store(tmp_path / "s.db")
    store.write_batch([], [DeadLetter("elasticc", "t", b"x", "bad")])
    store.close()
    result = run_cli("status", "--db", str(tmp_path / "s.db"), "--json")
    assert result.code == 0, result.err
    [entry] = json.loads(result.out)["brokers"]
    assert (entry["broker"], entry["dead_letters"], entry["lag"]) == ("elasticc", 1, None)
    assert "bootstrap" in entry["kafka_error"]


@pytest.mark.kafka
@pytest.mark.slow
def test_the_watchdog_restarts_a_worker_silent_with_messages_waiting(
    kafka_broker: Any, pg_url: str, spawn: Callable[..., Any], worker_env: Callable[..., dict[str, str]]
) -> None:
    topic = f"watchdog-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, [topic], {}, partitions=2)
    supervisor = spawn(["-v", "supervise", "--broker", "elasticc", "--workers", "1", "--silent-after", "3",
                        "--grace", "1", "--check-every", "0.5", "--bootstrap", kafka_broker.bootstrap,
                        "--topic", topic, "--db", pg_url], worker_env())
    stream = Stream(kafka_broker.bootstrap, topic, n=1600, seconds=8).start()
    wait_for(lambda: counts(pg_url)[0] >= 100, 40, "the worker to store some of the stream")
    first_pid = int(re.findall(r"worker 0 started \(pid (\d+)\)", supervisor.logs())[0])
    os.kill(first_pid, signal.SIGSTOP)  # hung: alive, silent, its partitions' messages piling up
    wait_for(lambda: stream.done() and counts(pg_url) == (stream.n, len(GARBAGE)), 60,
             f"a restarted worker to store the rest (now {counts(pg_url)})")
    report = supervisor.stop()
    logs = supervisor.logs()
    assert "stored nothing for" in logs and "messages waiting" in logs, logs[-3000:]
    assert report["restarts"] >= 1
    assert len(set(re.findall(r"worker 0 started \(pid (\d+)\)", logs))) >= 2
    assert_exactly_once(pg_url, stream)


# -- the streamer and the emulators on partitioned topics --------------------------------------------------------
def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, **local_client_config()})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got += [m for m in consumer.consume(500, timeout=0.2) if m.error() is None]
        return got
    finally:
        consumer.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_streamer_and_emulator_keep_each_objects_messages_in_one_partition_in_order(
    kafka_broker: Any, pg_url: str
) -> None:
    from alertmux.emulation import alert_head
    from alertmux.harness import record_source, stream_alerts
    from alertmux.host import PluginHost
    from alertmux.specs import EmulatorContext
    from alertmux.store import open_store

    host = PluginHost()
    store = open_store(pg_url)
    run_id = store.start_run("test", {})
    alerts = record_source(store, run_id, host.alert_source("simulated").open(objects=30, seed=2,
                                                                               class_mix="uniform"))
    spec = host.broker("elasticc")
    assert spec.emulator is not None
    topic, (answers,) = f"alerts-{run_id}", spec.emulator.output_topics(run_id)
    ensure_topics(kafka_broker.bootstrap, [topic, answers], {}, partitions=PARTITIONS)
    stats = stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=topic,
                          client_config=local_client_config())
    assert stats.sent == len(alerts) > 100
    spec.emulator.run(EmulatorContext(bootstrap=kafka_broker.bootstrap, alert_topics=(topic,), store=store,
                                      run_id=run_id, client_config=local_client_config(), stop=lambda: True,
                                      expected_alerts=lambda: stats.sent))
    store.close()
    mjd = {a["alertId"]: a["diaSource"]["midPointTai"] for a in alerts}
    placed: dict[int, set[int]] = {}
    last_mjd: dict[tuple[int, int], float] = {}
    for m in sorted(_read_all(kafka_broker.bootstrap, topic, stats.sent), key=lambda m: (m.partition(), m.offset())):
        alert_id, _, object_id = alert_head(m.value())
        assert m.key() == str(object_id).encode()
        placed.setdefault(object_id, set()).add(m.partition())
        # Within its partition an object's alerts come in the order they were observed.
        assert mjd[alert_id] >= last_mjd.get((m.partition(), object_id), float("-inf"))
        last_mjd[(m.partition(), object_id)] = mjd[alert_id]
    assert all(len(p) == 1 for p in placed.values()) and len(placed) == 30
    assert len({p for ps in placed.values() for p in ps}) > 1  # the objects are spread over the partitions
    answered: dict[bytes, set[int]] = {}
    for m in _read_all(kafka_broker.bootstrap, answers, stats.sent):
        answered.setdefault(m.key(), set()).add(m.partition())
    assert sum(1 for _ in answered) == 30 and all(len(p) == 1 for p in answered.values())
