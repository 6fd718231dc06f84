"""The ``gemini`` facility against its trigger emulator: local validation, one trigger per request, no blind retry."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import alertmux_gemini
import pytest
from alertmux_gemini.emulator import GeminiTooEmulator, Program
from alertmux_gemini.too import sexagesimal

from alertmux.followup.emulator import Fault
from alertmux.followup.errors import AmbiguousSubmission, FacilityAuthError, RequestRejected
from alertmux.followup.models import ObservationRequest, RankedTarget
from alertmux.followup.service import open_facility, poll, submit_ranking
from alertmux.followup.storage import FollowupStore
from alertmux.followup.visibility import now_utc, visibility
from alertmux.host import PluginHost
from alertmux.store import open_store

PASSWORD = "gemini-user-key-7731"
GS = (("gs", -30.2407, -70.7366),)


@functools.cache
def visible_position() -> tuple[float, float]:
    start = now_utc()
    return max(((float(ra), float(dec)) for ra in range(0, 360, 10) for dec in (-50, -25, 0)),
               key=lambda p: visibility(p[0], p[1], GS, start, start + timedelta(hours=72))[0].hours)


@pytest.fixture
def portal() -> Iterator[GeminiTooEmulator]:
    programs = {"GS-2026B-Q-101": Program(users={"pi@example.org": PASSWORD}, observations={1: "On Hold", 2: "Ready"})}
    with GeminiTooEmulator(programs) as emulator:
        yield emulator


@pytest.fixture
def gemini(portal: GeminiTooEmulator) -> Any:
    host = PluginHost(load_entrypoints=False, plugins=[alertmux_gemini])
    return open_facility(host, "gemini", portal.settings(), {"timeout_s": 0.5, "max_retry_wait_s": 0.1})


def request(exposure: float = 1800.0, mag: float | None = 21.3) -> ObservationRequest:
    ra, dec = visible_position()
    start = now_utc().replace(second=0, microsecond=0)
    return ObservationRequest(name="alertmux-9", dia_object_id=9, target_name="alertmux-9", ra=ra, dec=dec,
                              exposure_s=exposure, window_start=start, window_end=start + timedelta(hours=48),
                              max_airmass=1.8, mag=mag, band="r", note="rank 1: P(Ia)=0.9")


def test_positions_in_the_triggers_formats() -> None:
    assert sexagesimal(204.253, hours=True) == "13:37:00.72"
    assert sexagesimal(-29.865, hours=False) == "-29:51:54.000"
    assert sexagesimal(5.5, hours=False) == "+05:30:00.000"
    assert sexagesimal(359.99999999, hours=True) == "00:00:00.00"  # rounds up and wraps, never 24:00:00
    assert sexagesimal(0.0, hours=True) == "00:00:00.00"


def test_validation_is_local_and_hides_the_password(gemini: Any, portal: GeminiTooEmulator) -> None:
    validation = gemini.spec.validate(gemini.settings, request())
    assert validation.ok and not validation.server_checked
    payload = validation.payload
    assert payload["password"] == "***" and payload["exptime"] == "450"  # 1800 s over the template's 4 exposures
    assert payload["mags"] == "21.30/r/AB" and payload["elevationType"] == "airmass"
    assert payload["elevationMax"] == "1.8" and payload["windowDuration"] == "48"
    assert portal.server.requests == []  # nothing was sent
    too_long = gemini.spec.validate(gemini.settings, request(exposure=6000.0))
    assert not too_long.ok and "outside 1..1200" in too_long.error_lines()[0]


def test_a_trigger_clones_the_template_and_keeps_the_password_out_of_the_url(gemini: Any,
                                                                            portal: GeminiTooEmulator) -> None:
    submission = gemini.spec.submit(gemini.settings, request())
    assert submission.facility_id == "GS-2026B-Q-101-3" and submission.state == "submitted"
    assert submission.native_state == "READY"
    (sent,) = portal.server.requests
    assert sent.method == "POST" and sent.query == {}
    body = parse_qs(sent.body.decode())
    assert body["password"] == [PASSWORD] and body["obsnum"] == ["1"] and body["ra"][0].count(":") == 2
    assert portal.programs["GS-2026B-Q-101"].observations[3] == "Ready"


def test_the_servers_refusals_are_clear(gemini: Any) -> None:
    wrong = gemini.settings.model_copy(update={"template_observation": 2})  # Ready, not On Hold
    with pytest.raises(RequestRejected, match="not 'On hold'"):
        gemini.spec.submit(wrong, request())
    bad_key = gemini.settings.model_copy(update={"password": gemini.settings.password.__class__("nope-nope")})
    with pytest.raises(FacilityAuthError) as caught:
        gemini.spec.submit(bad_key, request())
    assert "nope-nope" not in str(caught.value) and PASSWORD not in str(caught.value)


def test_a_refused_connection_or_503_is_retried_once_sent_never(gemini: Any, portal: GeminiTooEmulator) -> None:
    portal.inject(Fault("POST", "/too", "status", status=503))
    assert gemini.spec.submit(gemini.settings, request()).facility_id == "GS-2026B-Q-101-3"
    assert len(portal.clones) == 1
    portal.inject(Fault("POST", "/too", "slow", seconds=0.8))
    with pytest.raises(AmbiguousSubmission):
        gemini.spec.submit(gemini.settings, request())
    assert len(portal.clones) == 2  # it did arrive; alertmux must not send it again
    assert sum(1 for r in portal.server.requests if r.method == "POST") == 3


def test_an_unanswered_trigger_is_recorded_and_never_resent_blindly(tmp_path: Path, gemini: Any,
                                                                    portal: GeminiTooEmulator) -> None:
    store = open_store(tmp_path / "g.db")
    followup = FollowupStore(store)
    ra, dec = visible_position()
    followup.save_ranking("near-peak", {}, 100.0, 1, [RankedTarget(1, 9, 1, 0.9, "best", "8m", 900.0, ra, dec,
                                                                   21.0, "r")])
    portal.inject(Fault("POST", "/too", "slow", seconds=0.8))
    (first,) = submit_ranking(followup, gemini, top=1, confirm=True)
    assert first.action == "unconfirmed" and "will not send it again" in first.reason
    assert first.record is not None and first.record.state == "unconfirmed"
    (again,) = submit_ranking(followup, gemini, top=1, confirm=True)
    assert again.action == "skipped" and "--retry-unconfirmed" in again.reason
    assert len(portal.clones) == 1
    (forced,) = submit_ranking(followup, gemini, top=1, confirm=True, retry_unconfirmed=True)
    assert forced.action == "submitted" and forced.record.request_id == first.record.request_id
    assert len(portal.clones) == 2
    assert poll(followup, gemini) == []  # no status API: nothing to ask
    assert followup.request(first.record.request_id).state == "submitted"
    stored = json.dumps([followup.history(first.record.request_id), store.conn.execute(
        "SELECT payload, response FROM followup_requests").fetchall()])
    assert PASSWORD not in stored and "***" in stored


def test_cancel_and_status_say_what_gemini_cannot_do(tmp_path: Path, run_cli: Any, portal: GeminiTooEmulator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_USER_KEY", PASSWORD)
    settings = portal.settings()
    config = tmp_path / "alertmux.toml"
    config.write_text(f"""[facilities.gemini]
portal_url = "{settings['portal_url']}"
proposal = "{settings['proposal']}"
email = "{settings['email']}"
password = "${{GEMINI_USER_KEY}}"
template_observation = 1
template_exposures = 4
""")
    db = tmp_path / "g.db"
    ra, dec = visible_position()
    FollowupStore(open_store(db)).save_ranking("near-peak", {}, 100.0, 1, [
        RankedTarget(1, 9, 1, 0.9, "best", "8m", 900.0, ra, dec, 21.0, "r")])
    common = ("--config", str(config), "followup")
    dry = run_cli(*common, "submit", "--db", str(db), "--facility", "gemini")
    assert dry.code == 0 and dry.json_lines[0]["payload"]["password"] == "***"
    assert dry.json_lines[0]["server_checked"] is False and PASSWORD not in dry.out + dry.err
    sent = run_cli(*common, "submit", "--db", str(db), "--facility", "gemini", "--confirm")
    assert sent.json_lines[0]["action"] == "submitted" and sent.json_lines[0]["facility_id"] == "GS-2026B-Q-101-3"
    status = run_cli(*common, "status", "--db", str(db), "--json")
    assert status.json_lines[0]["state"] == "submitted" and "no status API" in status.err
    cancel = run_cli(*common, "cancel", "--db", str(db), str(status.json_lines[0]["request_id"]))
    assert cancel.code == 2 and "offers no cancel" in cancel.err
