"""The whole local harness through the command line: simulate, stream, emulate, ingest, summarize, score."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alertmux.testing import RunCli

pytestmark = pytest.mark.kafka
ALERTMUX = Path(sys.executable).with_name("alertmux")


def summary_row(out: str, broker: str) -> dict[str, str]:
    """The broker's row of the summary table (rich box drawing: columns separated by '│')."""
    header = next(line for line in out.splitlines() if "messages" in line and "broker" in line)
    names = [c.strip() for c in header.strip("┃│ ").split("┃")]
    row = next(line for line in out.splitlines() if re.match(rf"^│\s*{broker}\s*│", line))
    return dict(zip(names, (c.strip() for c in row.strip("│ ").split("│")), strict=True))


def check_demo_database(db: Path, objects: int, sent: int) -> None:
    with sqlite3.connect(db) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert one("SELECT COUNT(*) FROM truth") == objects
        assert one("SELECT COUNT(*) FROM alerts_sent") == one("SELECT COUNT(*) FROM alerts") == sent
        assert one("SELECT COUNT(*) FROM alerts LEFT JOIN alerts_sent USING (alert_id) WHERE sent_ms IS NULL") == 0
        # Every alert sent was answered exactly once: no loss, no duplicate.
        per_alert = conn.execute(
            "SELECT s.alert_id, COUNT(m.message_id) FROM alerts_sent s LEFT JOIN messages m USING (alert_id)"
            " GROUP BY s.alert_id HAVING COUNT(m.message_id) != 1"
        ).fetchall()
        assert per_alert == []
        assert one("SELECT COUNT(*) FROM messages") == sent
        assert one("SELECT COUNT(*) FROM dead_letters") == 0
        assert one("SELECT COUNT(*) FROM runs WHERE kind = 'demo' AND finished_ms IS NOT NULL") == 1
        # The emulator answers with probability vectors over known classes: the top class is always set.
        assert one("SELECT COUNT(*) FROM messages WHERE top_class_id IS NULL") == 0


def check_summary(out: str) -> int:
    match = re.search(r"alerts sent: (\d+)\s+dead letters: (\d+)", out)
    assert match, out
    sent, dead = int(match.group(1)), int(match.group(2))
    assert sent > 0 and dead == 0
    row = summary_row(out, "elasticc")
    assert int(row["messages"]) == sent
    assert row["dead letters"] == "0"
    assert 0.0 <= float(row["top-1 accuracy"]) <= 1.0  # "-" when nothing could be scored
    return sent


def test_demo_on_its_own_embedded_broker(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = subprocess.run([str(ALERTMUX), "demo", "--objects", "20", "--db", str(db)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    sent = check_summary(result.stdout)
    check_demo_database(db, objects=20, sent=sent)


def test_demo_against_a_given_bootstrap(run_cli: RunCli, kafka_broker: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # With --bootstrap the client settings come from the configuration; these make tansu answer quickly.
    monkeypatch.setenv("ALERTMUX__KAFKA__SESSION.TIMEOUT.MS", "6000")
    monkeypatch.setenv("ALERTMUX__KAFKA__FETCH.WAIT.MAX.MS", "25")
    db = tmp_path / "given.db"
    result = run_cli("demo", "--objects", "8", "--seed", "3", "--bootstrap", kafka_broker.bootstrap, "--db", str(db))
    assert result.code == 0, result.err
    sent = check_summary(result.out)
    check_demo_database(db, objects=8, sent=sent)
