"""`alertmux listen` stops cleanly on SIGTERM/SIGINT: the batch in hand stored, offsets committed, a summary."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alertmux.embedded import EmbeddedKafka
from alertmux.serde import load_schema, schemaless_encode

ALERTMUX = str(Path(sys.executable).with_name("alertmux"))
SCHEMA = load_schema("elasticc.v0_9_1.brokerClassification")


def classification(alert_id: int) -> bytes:
    record = {
        "alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
        "brokerIngestTimestamp": None, "brokerName": "B", "brokerVersion": "1", "classifierName": "C",
        "classifierParams": "", "classifications": [{"classId": 2222, "probability": 0.75},
                                                    {"classId": 2223, "probability": 0.25}],
    }
    return schemaless_encode(record, SCHEMA)


def listen(kafka: EmbeddedKafka, topic: str, db: Path, *extra: str) -> subprocess.Popen[str]:
    # The local broker joins a consumer group in ~3 s with this (23 s with librdkafka's default).
    env = dict(os.environ, ALERTMUX__KAFKA__SESSION_TIMEOUT_MS="6000")
    return subprocess.Popen(
        [ALERTMUX, "listen", "--broker", "elasticc", "--bootstrap", kafka.bootstrap, "--topic", topic,
         "--group", f"g-{topic}", "--db", str(db), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    except sqlite3.OperationalError:  # the listener has not created its tables yet
        return 0


@pytest.mark.kafka
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_listen_stops_on_a_signal_with_everything_stored_and_committed(
    kafka_broker: EmbeddedKafka, produce, unique_topic: str, tmp_path: Path, signum: int
) -> None:
    produce(unique_topic, [classification(i) for i in range(1, 501)])
    db = tmp_path / "a.db"
    proc = listen(kafka_broker, unique_topic, db, "--from", "earliest")
    deadline = time.monotonic() + 60
    while stored(db) < 500 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert stored(db) == 500, proc.stderr.read() if proc.poll() is not None else "not all stored in 60 s"

    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["consumed"] == 500 and summary["stored"] == 500

    # The offsets were committed on the way out: the same group, from its committed offsets, has nothing left.
    again = listen(kafka_broker, unique_topic, db, "--from", "committed", "--idle-exit", "3")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["consumed"] == 0
