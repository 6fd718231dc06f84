"""`alertmux poll --broker alerce`: ALeRCE's REST APIs read incrementally, against the REST emulator on loopback."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alertmux_alerce import api
from alertmux_alerce.emulator import LC_CLASSES, AlerceRestEmulator

from alertmux.host import PluginHost
from alertmux.http import RetryPolicy
from alertmux.ingest import Ingestor
from alertmux.rest import PollOptions, poll
from alertmux.store import open_store


def fill(emulator: AlerceRestEmulator, oids: range, mjd: float, top: str = "SNIa") -> None:
    for oid in oids:
        probabilities = {label: 0.0 for label in LC_CLASSES} | {top: 0.8, "AGN": 0.2}
        emulator.update(oid, mjd + oid / 1000.0, probabilities)


def run_poll(db: Path, url: str, survey: str = "lsst", **options):
    host = PluginHost()
    store = open_store(db)
    try:
        ingestor = Ingestor(host, "alerce", store)
        settings = {"survey": survey, "page_size": 10, "since_mjd": 60000.0}
        options.setdefault("policy", RetryPolicy(backoff=0.01, backoff_max=0.05))
        stats = poll(ingestor, host.broker("alerce").rest, PollOptions(base_url=url, once=True, settings=settings,
                                                                       **options))
        return stats, ingestor
    finally:
        store.close()


@pytest.mark.parametrize("survey", ["lsst", "ztf"])
def test_poll_is_incremental_paginated_and_never_stores_twice(rest_emulator, tmp_path, survey) -> None:
    emulator, url = rest_emulator
    fill(emulator, range(1, 26), 60100.0)
    db = tmp_path / "poll.db"

    first, ingestor = run_poll(db, url, survey)
    assert first.stored == 25 and first.dead_letters == 0 and first.errors == 0
    assert first.pages >= 3  # 25 objects, 10 per page
    assert not ingestor.unknown_labels
    listed = [q for path, q in emulator.requests if path.endswith(("list_objects", "/objects"))]
    assert all(q["order_by"] == "lastmjd" and q["order_mode"] == "ASC" for q in listed)
    assert float(listed[0]["lastmjd"]) == 60000.0

    again, _ = run_poll(db, url, survey)
    assert again.stored == 0  # same content: nothing new, nothing stored twice
    requests_before = len(emulator.requests)

    # Three objects are reclassified later: only they come back, from the saved cursor on.
    fill(emulator, range(7, 10), 60200.0, top="SNII")
    third, _ = run_poll(db, url, survey)
    assert third.stored == 3
    later = [q for path, q in emulator.requests[requests_before:] if path.endswith(("list_objects", "/objects"))]
    assert float(later[0]["lastmjd"]) >= 60100.0  # resumed from the cursor, not from since_mjd

    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT dia_object_id, top_class_id, content_hash FROM messages").fetchall()
    assert len(rows) == 28 and all(h for _, _, h in rows)
    assert {top for oid, top, _ in rows if oid in (7, 8, 9)} == {2222, 2224}


def test_poll_retries_429_and_503_honouring_retry_after(rest_emulator, tmp_path) -> None:
    emulator, url = rest_emulator
    fill(emulator, range(1, 4), 60100.0)
    emulator.fail_next(503, retry_after="0")
    emulator.fail_next(429, retry_after="0", times=2)
    stats, _ = run_poll(tmp_path / "retry.db", url)
    assert stats.stored == 3 and stats.errors == 0
    assert len(emulator.requests) == 3 + 1 + 3  # three refused, one list, three objects


def test_poll_gives_up_with_a_plain_error_after_the_retries(rest_emulator, tmp_path) -> None:
    from alertmux.http import HttpError

    emulator, url = rest_emulator
    emulator.fail_next(503, retry_after="0", times=10)
    with pytest.raises(HttpError, match="503"):
        run_poll(tmp_path / "down.db", url, policy=RetryPolicy(attempts=3, backoff=0.01))


def test_poll_command_resumes_from_the_stored_cursor(rest_emulator, tmp_path, run_cli, monkeypatch) -> None:
    emulator, url = rest_emulator
    fill(emulator, range(1, 13), 60100.0)
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__SINCE_MJD", "60000")
    monkeypatch.setenv("ALERTMUX__BROKERS__ALERCE__PAGE_SIZE", "5")
    db = str(tmp_path / "cli.db")
    first = run_cli("poll", "--broker", "alerce", "--base-url", url, "--db", db, "--once")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert report["stored"] == 12 and report["cursor"] == "60100.012:1"
    second = json.loads(run_cli("poll", "--broker", "alerce", "--base-url", url, "--db", db, "--once").out)
    assert second["stored"] == 0 and second["cursor"] == report["cursor"]


def test_poll_refuses_alerces_real_host_under_the_loopback_policy(tmp_path) -> None:
    from alertmux.http import NetworkPolicyError

    with pytest.raises(NetworkPolicyError, match="loopback"):
        run_poll(tmp_path / "real.db", api.APIS["lsst"].base_url)
