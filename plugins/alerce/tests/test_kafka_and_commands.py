"""ALeRCE through the real Kafka path (daily topics found by the window regex, the emulator round trip) and the
`check` command, against the local Kafka-protocol broker and the REST emulator."""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing
from datetime import timedelta

import pytest
from alertmux_alerce import emulator, topics
from alertmux_alerce.emulator import LC_CLASSES

from alertmux.emulation import AlertSeen
from alertmux.harness import DemoOptions, run_demo
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, listen
from alertmux.serde import load_schema, schemaless_encode
from alertmux.testing import PluginConformance


@pytest.mark.kafka
def test_daily_topics_are_found_by_the_date_window(kafka_broker, produce, tmp_store, kafka_client_config) -> None:
    host = PluginHost()
    schema = load_schema("elasticc.v0_9_1.brokerClassification")

    def payload(alert_id: int) -> bytes:
        alert = AlertSeen(alert_id, alert_id, 7, 1_700_000_000_000, None, 1)
        return schemaless_encode(emulator.elasticc_record(alert, emulator.CLASSIFIERS[0], {2222: 1.0}, 1), schema)

    prefix = f"lc_classifier_t{uuid.uuid4().hex[:8]}_"  # this test's own topics only
    today = topics.today()
    inside = [f"{prefix}balto_{today:%Y%m%d}", f"{prefix}messi_{today + timedelta(days=1):%Y%m%d}",
              f"{prefix}balto_{today - timedelta(days=36):%Y%m%d}"]
    outside = [f"{prefix}balto_{today - timedelta(days=37):%Y%m%d}",
               f"{prefix}balto_{today + timedelta(days=3):%Y%m%d}", f"{prefix}balto_notadate"]
    for alert_id, topic in enumerate(inside + outside, 1):
        produce(topic, [payload(alert_id)])
    options = ListenOptions(bootstrap=kafka_broker.bootstrap, topic_pattern=topics.window_pattern(prefix=prefix),
                            group_id=f"t-{uuid.uuid4().hex}", start="earliest", idle_exit=2.0,
                            client_config=kafka_client_config)
    stats = listen(Ingestor(host, "alerce", tmp_store), options)
    assert stats.dead_letters == 0
    assert stats.consumed == len(inside)  # librdkafka applied the regex: the old and undated topics stayed out
    read = {row[0] for row in tmp_store.conn.execute("SELECT topic FROM messages")}
    assert read == set(inside)


@pytest.mark.kafka
def test_the_window_moves_while_listening(kafka_broker, kafka_client_config, produce, tmp_store) -> None:
    schema = load_schema("elasticc.v0_9_1.brokerClassification")
    alert = AlertSeen(1, 1, 7, 1_700_000_000_000, None, 1)
    payload = schemaless_encode(emulator.elasticc_record(alert, emulator.CLASSIFIERS[0], {2222: 1.0}, 1), schema)
    prefix = f"lc_classifier_m{uuid.uuid4().hex[:8]}_"
    today = topics.today()
    later = f"{prefix}balto_{today + timedelta(days=5):%Y%m%d}"  # outside today's window, inside one 3 days on
    produce(later, [payload])
    clock = {"today": today}
    options = ListenOptions(
        bootstrap=kafka_broker.bootstrap, topic_pattern=topics.window_pattern(today, prefix=prefix),
        moving_pattern=lambda: topics.window_pattern(clock["today"], prefix=prefix), resubscribe_interval=1.0,
        group_id=f"t-{uuid.uuid4().hex}", start="earliest", client_config=kafka_client_config, max_messages=1,
    )
    started = time.monotonic()

    def should_stop() -> bool:
        if time.monotonic() - started > 6:  # well past a join: nothing came while the topic was outside
            clock["today"] = today + timedelta(days=3)
        return time.monotonic() - started > 60

    stats = listen(Ingestor(PluginHost(), "alerce", tmp_store), options, should_stop=should_stop)
    assert stats.consumed == 1 and time.monotonic() - started > 6
    assert {row[0] for row in tmp_store.conn.execute("SELECT topic FROM messages")} == {later}


@pytest.mark.kafka
def test_emulator_round_trip_through_kafka(kafka_broker, kafka_client_config, tmp_path) -> None:
    db = tmp_path / "demo.db"
    summary = run_demo(PluginHost(), DemoOptions(db=db, objects=3, seed=2, bootstrap=kafka_broker.bootstrap,
                                                 brokers=("alerce",), client_config=kafka_client_config))
    sent = summary["alerts_sent"]
    info = summary["brokers"]["alerce"]
    assert sent > 0 and info["messages"] == 2 * sent and info["dead_letters"] == 0
    with closing(sqlite3.connect(db)) as conn:
        by_topic = dict(conn.execute("SELECT topic, COUNT(*) FROM messages GROUP BY topic").fetchall())
        names = {r[0] for r in conn.execute("SELECT classifier_name FROM classifiers")}
        unknown = conn.execute("SELECT COUNT(*) FROM classifications WHERE class_id IS NULL").fetchone()[0]
    assert set(by_topic) == set(emulator.output_topics(summary["run_id"]))
    assert all(topics.topic_date(t) == topics.today() for t in by_topic) and set(by_topic.values()) == {sent}
    assert names == {"BaltoClassifier", "MessiClassifier"} and unknown == 0


@pytest.mark.kafka
def test_check_reports_what_works(kafka_broker, rest_emulator, run_cli, monkeypatch) -> None:
    rest, url = rest_emulator
    rest.update(1, 60100.0, dict.fromkeys(LC_CLASSES, 0.0) | {"SNIa": 1.0})
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__API_URL", url)
    result = run_cli("check", "alerce", "--bootstrap", kafka_broker.bootstrap, "--timeout", "5")
    assert result.code == 0, result.out + result.err
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert lines["config"].startswith("ok") and lines["kafka"].startswith("ok") and lines["rest"].startswith("ok")
    assert "lastmjd 60100.0" in lines["rest"]


def test_check_says_plainly_what_is_wrong(run_cli, monkeypatch) -> None:
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__BOOTSTRAP", "kafka.alerce.science:9093")
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__USERNAME", "desc")
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__API_URL", "http://127.0.0.1:9/")  # nothing listens on port 9
    result = run_cli("check", "alerce", "--timeout", "1")
    assert result.code != 0
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert lines["credentials"].startswith("FAIL") and "password is missing" in lines["credentials"]
    assert lines["kafka"].startswith("FAIL") and "loopback" in lines["kafka"]
    assert lines["rest"].startswith("FAIL") and "connection refused" in lines["rest"]


def test_check_rejects_an_invalid_config_without_echoing_secrets(run_cli, monkeypatch) -> None:
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__SASL_MECHANISM", "MD5")
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__PASSWORD", "hunter2-secret")
    result = run_cli("check", "alerce")
    assert result.code != 0
    assert "sasl_mechanism" in result.out and "hunter2-secret" not in result.out + result.err


class TestConformance(PluginConformance):
    plugin = "alerce"


@pytest.mark.kafka
def test_emulate_command_answers_on_alerces_real_topic_names(kafka_broker, kafka_client_config, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from confluent_kafka import Consumer, TopicPartition

    from alertmux.harness import record_source, stream_alerts
    from alertmux.store import open_store

    db = tmp_path / "emulate.db"
    store = open_store(db)
    run_id = store.start_run("stream", {})
    alerts = record_source(store, run_id, PluginHost().alert_source("simulated").open(objects=2, seed=5))
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    sent = stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=topic,
                         client_config=kafka_client_config).sent
    store.close()
    alertmux = Path(sys.executable).with_name("alertmux")
    child = subprocess.Popen([str(alertmux), "emulate", "alerce", "--bootstrap", kafka_broker.bootstrap,
                              "--alert-topic", topic, "--db", str(db)], stderr=subprocess.PIPE, text=True,
                             env=os.environ | {"ALERTMUX_LOOPBACK_ONLY": "1"})
    output = topics.daily_topic("balto", topics.today())  # standalone: ALeRCE's own names, no run id
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "t", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"}
                        | kafka_client_config)
    read = 0
    try:
        deadline = time.monotonic() + 30
        while read < sent and time.monotonic() < deadline:
            if output in consumer.list_topics(timeout=5).topics:
                if not consumer.assignment():
                    consumer.assign([TopicPartition(output, 0, 0)])
                read += sum(1 for m in consumer.consume(500, timeout=0.5) if m.error() is None)
            else:
                time.sleep(0.3)
    finally:
        consumer.close()
        interrupted = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
        stopping = time.monotonic() - interrupted
    assert read == sent, err
    assert child.returncode == 0, err
    # Ctrl-C stops the emulator at once: not after its 5 s grace, nor its 60 s wait for an idle stream.
    assert stopping < 4, f"took {stopping:.1f} s to stop"
    assert "publishing to lc_classifier_balto_" in err
