"""``alertmux stream``: real sources through the real Kafka path, DESC's night-by-night and {part} modes, resuming."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertmux.errors import UsageError
from alertmux.hookspecs import hookimpl
from alertmux.serde import load_schema, schemaless_decode, schemaless_encode
from alertmux.sources import Nights, night_of
from alertmux.sources.rubin import decode_wire, schema_id
from alertmux.sources.streaming import LIMITED_DAYS, limit_history, route
from alertmux.specs import AlertSourceSpec, SimulatedTruth, SourceObject
from alertmux.testing import RunCli

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SNIB = SHARED / "elasticc" / "snana_elasticc2_train_1percent" / "ELASTICC2_TRAIN_01_1percent_SNIb-Templates"
HEAD = SNIB / "ELASTICC2_TRAIN_01_1percent_NONIaMODEL0-0013_HEAD.FITS.gz"
EXAMPLE = SHARED / "elasticc" / "derived" / "example_alert_elasticc2_v0_9_1_alertId102879800007.json"
PITT = SHARED / "brokers" / "pittgoogle" / "sample_alerts" / "lsst"
needs_shared = pytest.mark.skipif(not HEAD.exists(), reason=f"reference data not found in {SHARED}")


@pytest.fixture
def run(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunCli:
    """``alertmux ARGS`` in an empty directory, without ALERTMUX__ variables from the caller."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("ALERTMUX__")]:
        monkeypatch.delenv(key)
    return run_cli


def first_alert_arrived(bootstrap: str, topic: str, timeout: float = 60.0) -> None:
    """Wait until ``topic`` holds a message (the streamer's first alert), without creating the topic ourselves."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from alertmux.embedded import local_client_config

    consumer = Consumer({**local_client_config(), "bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4()}",
                         "enable.auto.commit": False, "allow.auto.create.topics": False})
    deadline = time.monotonic() + timeout
    try:
        while topic not in consumer.list_topics(timeout=5).topics:  # the producer creates it with its first alert
            assert time.monotonic() < deadline, f"{topic} never appeared"
            time.sleep(0.05)
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while not [m for m in consumer.consume(10, 0.1) if m.error() is None]:
            assert time.monotonic() < deadline, f"nothing arrived on {topic}"
    finally:
        consumer.close()


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every message of ``topic`` (all partitions, from the start), waiting until ``expected`` arrived, then a
    little longer so that duplicates would show."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from alertmux.embedded import local_client_config

    consumer = Consumer({**local_client_config(), "bootstrap.servers": bootstrap, "group.id": f"v-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    settle: float | None = None
    while time.monotonic() < deadline:
        messages += [m for m in consumer.consume(2000, 0.2) if m.error() is None]
        if len(messages) >= expected:
            settle = settle or time.monotonic() + 1.0
            if time.monotonic() > settle:
                break
    consumer.close()
    return messages


def db_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


# -- routing, nights, history: no Kafka --------------------------------------------------------------------------
def elasticc_alert(alert_id: int, object_id: int, mjd: float, history_days: tuple[float, ...] = ()) -> dict[str, Any]:
    def source(i: int, t: float) -> dict[str, Any]:
        return {"diaSourceId": i, "diaObjectId": object_id, "midPointTai": t, "filterName": "r", "ra": 1.0,
                "decl": 2.0, "psFlux": 10.0, "psFluxErr": 1.0, "snr": 10.0}

    prv = [source(alert_id * 100 + k, mjd - d) for k, d in enumerate(history_days)]
    forced = [{k: v for k, v in s.items() if k not in ("ra", "decl", "snr", "diaSourceId")}
              | {"diaForcedSourceId": s["diaSourceId"]} for s in prv]
    return {"alertId": alert_id, "diaSource": source(alert_id, mjd), "prvDiaSources": prv,
            "prvDiaForcedSources": forced, "diaObject": None}


def test_part_placeholder_routes_like_desc() -> None:
    wide = elasticc_alert(1, 10, 60100.0, (1.0, 40.0))
    deep = elasticc_alert(2, 20, 60100.0, (1.0, 29.0, 31.0, 300.0))
    routed = dict(route([wide, deep], "elasticc2-{part}", ddf_objects={20}))
    assert list(routed) == ["elasticc2-wfd", "elasticc2-ddf-full", "elasticc2-ddf-limited"]
    assert routed["elasticc2-wfd"] == [wide] and routed["elasticc2-ddf-full"] == [deep]
    [limited] = routed["elasticc2-ddf-limited"]
    assert [s["midPointTai"] for s in limited["prvDiaSources"]] == [60099.0, 60071.0]  # within 30 days
    assert len(limited["prvDiaForcedSources"]) == 2 and len(deep["prvDiaSources"]) == 4  # the original is untouched
    assert route([wide, deep], "plain", ddf_objects={20}) == [("plain", [wide, deep])]
    assert dict(route([wide], "x-{part}", ddf_objects=()))  == {"x-wfd": [wide]}
    assert limit_history(deep, LIMITED_DAYS)["alertId"] == 2


def test_nights_are_cut_at_noon_utc_and_parsed_from_the_command_line() -> None:
    assert night_of(60100.49) == 60099 and night_of(60100.5) == 60100 and night_of(60101.2) == 60100
    assert Nights.parse("60100:60102") == Nights(60100, 60102) and Nights.parse("60100") == Nights(60100, 60100)
    assert Nights.parse(":60102") == Nights(None, 60102) and Nights.parse(None) is None
    window = Nights(60100, 60102)
    assert window.has_mjd(60100.6) and window.has_mjd(60103.4) and not window.has_mjd(60103.6)
    for bad in ("a:b", "60102:60100"):
        with pytest.raises(UsageError):
            Nights.parse(bad)


# -- through Kafka -----------------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_ten_thousand_alerts_arrive_once_each_with_their_sent_time(run: RunCli, kafka_broker: Any, tmp_path: Path,
                                                                    unique_topic: str) -> None:
    db = tmp_path / "s.db"
    started_ms = time.time_ns() // 1_000_000
    result = run("stream", "--source", "simulated", "--objects", "330", "--seed", "7", "--bootstrap",
                 kafka_broker.bootstrap, "--topic", unique_topic, "--db", str(db))
    assert result.code == 0, result.err
    [summary] = result.json_lines
    assert summary["alerts"] == summary["sent"] >= 10_000 and summary["failed"] == summary["skipped"] == 0
    messages = consume(kafka_broker.bootstrap, unique_topic, summary["sent"])
    schema = load_schema("elasticc.v0_9_1.alert", logical_types=False)
    arrived = Counter(schemaless_decode(m.value(), schema)["alertId"] for m in messages)
    assert set(arrived.values()) == {1}, "an alert arrived twice"
    recorded = dict(db_rows(db, "SELECT alert_id, sent_ms FROM alerts_sent WHERE run_id = ? AND topic = ?",
                            summary["run_id"], unique_topic))
    planned = {row[0] for row in db_rows(db, "SELECT alert_id FROM alerts WHERE run_id = ?", summary["run_id"])}
    assert set(arrived) == set(recorded) == planned and len(arrived) == summary["sent"]
    finished_ms = time.time_ns() // 1_000_000
    assert all(started_ms <= ms <= finished_ms for ms in recorded.values())
    # Sent times come from each alert's delivery report, not from one stamp per flush.
    assert len(set(recorded.values())) > 10


@pytest.mark.kafka
def test_a_restarted_stream_sends_only_what_was_not_acknowledged(run: RunCli, kafka_broker: Any, tmp_path: Path,
                                                                   unique_topic: str) -> None:
    db = tmp_path / "s.db"
    args = ("stream", "--objects", "12", "--seed", "3", "--bootstrap", kafka_broker.bootstrap, "--topic",
            unique_topic, "--db", str(db))
    first = run(*args).json_lines[0]
    run_id = first["run_id"]
    lost = [r[0] for r in db_rows(db, "SELECT alert_id FROM alerts_sent WHERE run_id = ? ORDER BY alert_id", run_id)]
    lost = lost[::3]  # as if the first run had died before Kafka acknowledged these
    with sqlite3.connect(db) as conn:
        conn.executemany("DELETE FROM alerts_sent WHERE alert_id = ?", [(a,) for a in lost])
    second = run(*args, "--run", run_id)
    assert second.code == 0, second.err
    again = second.json_lines[0]
    assert (again["sent"], again["skipped"]) == (len(lost), first["sent"] - len(lost))
    messages = consume(kafka_broker.bootstrap, unique_topic, first["sent"] + len(lost))
    ids = Counter(schemaless_decode(m.value(), load_schema("elasticc.v0_9_1.alert"))["alertId"] for m in messages)
    assert sorted(a for a, n in ids.items() if n == 2) == lost
    assert db_rows(db, "SELECT COUNT(*) FROM alerts_sent WHERE run_id = ?", run_id) == [(first["sent"],)]


@pytest.mark.kafka
def test_an_interrupted_stream_records_what_kafka_acknowledged(kafka_broker: Any, tmp_path: Path,
                                                                unique_topic: str) -> None:
    from alertmux.embedded import local_client_config
    from alertmux.harness import stream_alerts
    from alertmux.store import open_store

    alerts = [elasticc_alert(i, i % 50, 60100.0 + i / 1000) for i in range(1, 901)]
    store = open_store(tmp_path / "s.db")
    run_id = store.start_run("stream", {})

    def interrupt(_stage: str, done: int, _total: int | None) -> None:
        if done >= 600:  # mid-stream, before the 1000-alert batch of sent times would have been recorded
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=unique_topic,
                      client_config=local_client_config(), progress=interrupt, processes=1)
    recorded = store.sent_alert_ids(run_id, unique_topic)
    assert len(recorded) >= 600  # every alert produced before the interruption was acknowledged and recorded
    resumed = stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=unique_topic,
                            client_config=local_client_config(), processes=1)
    assert (resumed.skipped, resumed.sent) == (len(recorded), len(alerts) - len(recorded))
    schema = load_schema("elasticc.v0_9_1.alert")
    arrived = Counter(schemaless_decode(m.value(), schema)["alertId"] for m in consume(kafka_broker.bootstrap,
                                                                                      unique_topic, len(alerts)))
    assert sorted(arrived) == list(range(1, 901)) and set(arrived.values()) == {1}, "resent after the interrupt"
    store.close()


@pytest.mark.kafka
def test_sigterm_stops_a_stream_that_then_resumes_without_resending(kafka_broker: Any, tmp_path: Path,
                                                                     unique_topic: str) -> None:
    import signal
    import subprocess
    import sys

    db = tmp_path / "s.db"
    args = [str(Path(sys.executable).parent / "alertmux"), "stream", "--objects", "15", "--seed", "5", "--rate",
            "200", "--bootstrap", kafka_broker.bootstrap, "--topic", unique_topic, "--db", str(db)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTMUX__")}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    planned = 0
    while time.monotonic() < deadline and not planned:  # the source is read and recorded before streaming starts
        time.sleep(0.1)
        try:
            planned = db_rows(db, "SELECT COUNT(*) FROM alerts")[0][0] if db.exists() else 0
        except sqlite3.OperationalError:
            planned = 0  # the table is not there yet
    first_alert_arrived(kafka_broker.bootstrap, unique_topic)  # a fixed sleep could end before anything was sent
    time.sleep(0.5)  # at 200 alerts/s: under way, far from done (sent times are recorded per 1000 alerts)
    assert proc.poll() is None, "the stream ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "--run" in err, err
    [(run_id, planned)] = db_rows(db, "SELECT run_id, COUNT(*) FROM alerts GROUP BY run_id")
    recorded = db_rows(db, "SELECT COUNT(*) FROM alerts_sent")[0][0]
    assert 0 < recorded < planned
    resumed = subprocess.run([*args, "--run", run_id], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.splitlines()[-1])
    assert summary["skipped"] == recorded and summary["sent"] == planned - recorded
    schema = load_schema("elasticc.v0_9_1.alert")
    arrived = Counter(schemaless_decode(m.value(), schema)["alertId"] for m in consume(kafka_broker.bootstrap,
                                                                                      unique_topic, planned))
    assert len(arrived) == planned and set(arrived.values()) == {1}, "alerts sent before SIGTERM were resent"


class DeepAndWide:
    """A source plugin with one wide-survey and one deep-drilling object (registered like any third party's)."""

    @hookimpl
    def alertmux_alert_sources(self) -> Iterator[AlertSourceSpec]:
        def open_(**_: Any) -> Iterator[SourceObject]:
            yield SourceObject([elasticc_alert(1, 10, 60100.6, (1.0, 40.0)), elasticc_alert(2, 10, 60101.6, (2.0,))],
                               SimulatedTruth(10, 2222))
            yield SourceObject([elasticc_alert(3, 20, 60100.7, (1.0, 29.0, 31.0)),
                                elasticc_alert(4, 20, 60103.7, (3.0, 100.0))], SimulatedTruth(20, 2232), ddf=True)

        yield AlertSourceSpec(name="deep-and-wide", description="two objects", open=open_)


@pytest.mark.kafka
def test_desc_night_by_night_mode_with_parts(run: RunCli, plugin_host: Any, kafka_broker: Any, tmp_path: Path,
                                             unique_topic: str) -> None:
    db = tmp_path / "s.db"
    template = unique_topic + "-{part}"
    result = run("stream", "--source", "deep-and-wide", "--nights", "60100:60101", "--bootstrap",
                 kafka_broker.bootstrap, "--topic", template, "--db", str(db), host=plugin_host(DeepAndWide()))
    assert result.code == 0, result.err
    [summary] = result.json_lines
    # Alert 4 falls on night 60103: outside the window, not sent.
    assert summary["topics"] == {
        f"{unique_topic}-wfd": {"alerts": 2, "sent": 2, "skipped": 0, "failed": 0},
        f"{unique_topic}-ddf-full": {"alerts": 1, "sent": 1, "skipped": 0, "failed": 0},
        f"{unique_topic}-ddf-limited": {"alerts": 1, "sent": 1, "skipped": 0, "failed": 0},
    }
    assert summary["nights"] == [60100, 60101]
    schema = load_schema("elasticc.v0_9_1.alert")
    [full] = consume(kafka_broker.bootstrap, f"{unique_topic}-ddf-full", 1)
    [limited] = consume(kafka_broker.bootstrap, f"{unique_topic}-ddf-limited", 1)
    assert len(schemaless_decode(full.value(), schema)["prvDiaSources"]) == 3
    assert len(schemaless_decode(limited.value(), schema)["prvDiaSources"]) == 2  # 31 days back is cut
    sent = db_rows(db, "SELECT alert_id, topic FROM alerts_sent ORDER BY alert_id, topic")
    assert sent == [(1, f"{unique_topic}-wfd"), (2, f"{unique_topic}-wfd"), (3, f"{unique_topic}-ddf-full"),
                    (3, f"{unique_topic}-ddf-limited")]
    assert db_rows(db, "SELECT dia_object_id, class_id FROM truth ORDER BY 1") == [(10, 2222), (20, 2232)]


@pytest.mark.kafka
@needs_shared
def test_snana_to_rubin_wire_format(run: RunCli, kafka_broker: Any, tmp_path: Path, unique_topic: str) -> None:
    db = tmp_path / "s.db"
    result = run("stream", "--source", "snana", "--path", str(HEAD), "--schema", "lsst.v11_1", "--bootstrap",
                 kafka_broker.bootstrap, "--topic", unique_topic, "--db", str(db), "--rate", "2000")
    assert result.code == 0, result.err
    [summary] = result.json_lines
    messages = consume(kafka_broker.bootstrap, unique_topic, summary["sent"])
    assert len(messages) == summary["sent"] == summary["alerts"] > 0
    decoded = [decode_wire(m.value()) for m in messages]
    assert {m.value()[1:5] for m in messages} == {schema_id("lsst.v11_1").to_bytes(4, "big")}
    assert {v for v, _ in decoded} == {"lsst.v11_1"}
    by_id = {r["diaSourceId"]: r for _, r in decoded}
    example = json.loads(EXAMPLE.read_text())
    rubin = by_id[example["alertId"]]
    assert rubin["diaSource"]["diaObjectId"] == 1028798 and rubin["diaSource"]["band"] == "i"
    assert [r["diaSourceId"] for r in rubin["prvDiaSources"]] == [r["diaSourceId"] for r in example["prvDiaSources"]]
    truth = db_rows(db, "SELECT class_id, gentype FROM truth WHERE dia_object_id = 1028798")
    assert truth == [(2223, 20)]
    assert summary["seconds"] >= (summary["sent"] - 1) / 2000  # --rate held it back


@pytest.mark.kafka
@needs_shared
def test_a_bad_file_in_a_directory_is_reported_and_the_rest_streams(run: RunCli, kafka_broker: Any, tmp_path: Path,
                                                                     unique_topic: str) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    example = json.loads(EXAMPLE.read_text())
    schema = load_schema("elasticc.v0_9_1.alert")
    for i in range(3):
        src = dict(example["diaSource"], diaSourceId=500 + i, midPointTai=60282.3 + i)
        (alerts / f"a{i}.avro").write_bytes(schemaless_encode(dict(example, alertId=500 + i, diaSource=src), schema))
    (alerts / "a9.avro").write_bytes(b"\x02\x04 not an alert")
    result = run("stream", "--source", "elasticc-files", "--path", str(alerts), "--bootstrap",
                 kafka_broker.bootstrap, "--topic", unique_topic, "--db", str(tmp_path / "s.db"))
    assert result.code == 0, result.err
    [summary] = result.json_lines
    assert (summary["sent"], summary["bad_inputs"]) == (3, 1)
    assert "a9.avro" in result.err and "skipped" in result.err
    ids = sorted(schemaless_decode(m.value(), schema)["alertId"] for m in consume(kafka_broker.bootstrap,
                                                                                  unique_topic, 3))
    assert ids == [500, 501, 502]


@pytest.mark.kafka
@needs_shared
def test_kafka_topic_as_a_source(run: RunCli, kafka_broker: Any, produce: Any, tmp_path: Path,
                                 unique_topic: str) -> None:
    upstream = unique_topic + "-upstream"
    samples = [p.read_bytes() for p in sorted(PITT.glob("lsst.v*.avro"))[-3:]]
    produce(upstream, [samples[0], b"\x00\x00\x00\x03\x84garbage", *samples[1:]])
    db = tmp_path / "s.db"
    result = run("stream", "--source", "kafka", "--source-option", f"bootstrap={kafka_broker.bootstrap}",
                 "--source-option", f"topic={upstream}", "--source-option", "idle_exit=1.5", "--source-option",
                 "kafka.session.timeout.ms=6000", "--source-option", "token=hunter2", "--schema", "lsst.v11_1",
                 "--bootstrap", kafka_broker.bootstrap, "--topic", unique_topic, "--db", str(db))
    assert result.code == 0, result.err
    [summary] = result.json_lines
    assert summary["bad_inputs"] == 1 and f"{upstream}[0]@1" in result.err
    assert summary["sent"] == summary["alerts"] == len(samples)
    out = consume(kafka_broker.bootstrap, unique_topic, len(samples))
    assert len(out) == len(samples) and {decode_wire(m.value())[0] for m in out} == {"lsst.v11_1"}
    assert sorted(decode_wire(m.value())[1]["diaSource"]["diaSourceId"] for m in out) == sorted(
        decode_wire(s)[1]["diaSource"]["diaSourceId"] for s in samples)
    [(options,)] = db_rows(db, "SELECT options FROM runs WHERE run_id = ?", summary["run_id"])
    assert "hunter2" not in options and json.loads(options)["options"]["token"] == "***"


def test_consumer_group_must_start_with_the_sasl_username() -> None:
    from alertmux.sources.kafka_topic import consumer_group

    assert consumer_group({"sasl.username": "fink"}, None) == "fink-alertmux"
    assert consumer_group({"sasl.username": "fink"}, "fink-usdf-1") == "fink-usdf-1"
    assert consumer_group({}, None) == "alertmux-source"
    with pytest.raises(UsageError, match="must start with the SASL username"):
        consumer_group({"sasl.username": "fink", "sasl.password": "pw"}, "other-group")


def test_bad_stream_options_are_one_clear_line(run: RunCli) -> None:
    for args, message in (
        (("--schema", "lsst.v2_0"), "--schema must be elasticc.v0_9_1 or one of"),
        (("--nights", "x"), "--nights must be D1:D2"),
        (("--source-option", "novalue"), "--source-option must be KEY=VALUE"),
        (("--source", "nope"), "unknown alert source 'nope'"),
    ):
        result = run("stream", "--bootstrap", "127.0.0.1:9", "--topic", "t", *args)
        assert result.code == 2 and message in result.err and "Traceback" not in result.err, (args, result.err)
