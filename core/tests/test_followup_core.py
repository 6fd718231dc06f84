"""The follow-up building blocks: exposure times, visibility, settings, HTTP retries, storage, spectra in scoring."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alertmux.builtin import elasticc
from alertmux.errors import ConfigError
from alertmux.followup.emulator import Fault, Faults, LoopbackServer, Reply, Request
from alertmux.followup.errors import AmbiguousSubmission, FacilityAuthError, FacilityUnavailable
from alertmux.followup.exptime import MAX_EXPOSURE_S, exposure_time, feasible_exposure, telescope_costs
from alertmux.followup.http import make_client, send
from alertmux.followup.models import Part, flatten_errors
from alertmux.followup.settings import FacilitySettings, load_settings, redact
from alertmux.followup.storage import SPECTROSCOPY_BROKER, FollowupStore
from alertmux.followup.visibility import visibility
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.scoring import open_scoring
from alertmux.specs import BrokerMessage, Delivery
from alertmux.store import TruthRow, open_store

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REAL = SHARED / "data" / "facilities" / "lco_observation_portal" / "real_responses"
CTIO = ("lsc", -30.1674, -70.8047)


# -- exposure times ------------------------------------------------------------------------------------------------
def test_exposure_times_follow_the_documented_model() -> None:
    assert exposure_time(20.0, 4.0) == pytest.approx(329, rel=0.01)
    assert exposure_time(22.0, 4.0) == pytest.approx(4794, rel=0.01)
    assert exposure_time(22.0, 8.1) == pytest.approx(1169, rel=0.01)
    # Fainter by 1 mag costs more than 2.5x near the sky limit, and a bigger mirror always helps.
    assert exposure_time(21.0, 4.0) / exposure_time(20.0, 4.0) > 2.5
    assert exposure_time(21.0, 8.1) < exposure_time(21.0, 4.0)


def test_feasibility_window_is_resspects() -> None:
    assert feasible_exposure(14.0, 8.1) == 60.0  # floor
    assert feasible_exposure(22.3, 4.0) is None  # over two hours
    assert feasible_exposure(None, 4.0) is None
    costs = telescope_costs(22.5)
    assert costs["4m"] is None and costs["8m"] is not None and costs["8m"] <= MAX_EXPOSURE_S


# -- visibility ------------------------------------------------------------------------------------------------------
def test_a_target_opposite_the_sun_is_up_all_night_and_one_near_it_never() -> None:
    june = datetime(2026, 6, 21, tzinfo=UTC)  # the Sun is at RA ~90 deg
    night = visibility(270.0, -30.0, [CTIO], june, june + timedelta(days=1))[0]
    assert night.hours > 8 and night.min_airmass == pytest.approx(1.0, abs=0.01)
    assert night.longest_s <= night.hours * 3600 + 1
    assert visibility(90.0, -30.0, [CTIO], june, june + timedelta(days=1))[0].hours == 0.0


def test_the_airmass_limit_is_respected() -> None:
    june = datetime(2026, 6, 21, tzinfo=UTC)
    # Dec +40 from latitude -30 culminates at altitude 20 deg: airmass 2.9, never below 2.
    high_north = visibility(270.0, 40.0, [CTIO], june, june + timedelta(days=1), max_airmass=2.0)[0]
    assert high_north.hours == 0.0 and high_north.min_airmass == pytest.approx(2.92, abs=0.05)
    loose = visibility(270.0, 40.0, [CTIO], june, june + timedelta(days=1), max_airmass=3.0)[0]
    assert loose.hours > 0


# -- settings ----------------------------------------------------------------------------------------------------------
class TokenSettings(FacilitySettings):
    token: SecretStr | None = None


def test_settings_errors_name_keys_never_values() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(TokenSettings, "x", {"token": "s3cr3t-value", "max_hours": "lots", "colour": "blue"})
    message = str(caught.value)
    assert "max_hours" in message and "colour" in message and "s3cr3t" not in message
    settings = load_settings(TokenSettings, "x", {"token": "s3cr3t-value"})
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in settings.model_dump_json()
    assert redact({"password": "pw", "nested": [{"api_key": "k"}], "note": "fine", "token": None}) == {
        "password": "***", "nested": [{"api_key": "***"}], "note": "fine", "token": None}


def test_flatten_errors_on_the_portals_recorded_error_tree() -> None:
    recorded = json.loads((REAL / "validate_invalid.json").read_text())
    lines = flatten_errors(recorded["errors"])
    assert "requests[0].configurations[0].instrument_configs[0].exposure_time: Ensure this value is greater " \
           "than or equal to 0.0." in lines
    assert any(line.startswith("requests[0].windows[0]: Window end") for line in lines)
    assert any(line.startswith("requests[0].configurations[0].instrument_type: Invalid instrument type") for line in
               lines)


# -- HTTP retries ----------------------------------------------------------------------------------------------------
class Flaky:
    """A server that fails ``failures`` times in a chosen way, then answers 200."""

    def __init__(self, failures: int, how: str) -> None:
        self.failures, self.how, self.acted = failures, how, 0
        self.faults = Faults()

    def __call__(self, request: Request) -> Reply:
        if self.failures > 0:
            self.failures -= 1
            if self.how == "429":
                return Reply.json(429, {"detail": "Request was throttled. Expected available in 1 second."},
                                  headers={"Retry-After": "0"})
            if self.how == "503":
                return Reply.json(503, {"detail": "down"})
            if self.how == "drop":
                self.acted += 1
                return Reply.json(200, {}, drop=True)
            if self.how == "403":
                return Reply.json(403, {"detail": "Invalid token."})
        self.acted += 1
        return Reply.json(200, {"ok": True})


@pytest.mark.parametrize("how", ["429", "503"])
def test_transient_answers_are_retried_even_for_a_create(how: str) -> None:
    handler = Flaky(2, how)
    with LoopbackServer(handler) as server, make_client(server.url) as http:
        started = time.monotonic()
        response = send(http, "POST", "/x", facility="T", idempotent=False, attempts=3, max_wait=1)
        assert response.json() == {"ok": True} and handler.acted == 1
        assert time.monotonic() - started < 0.7 or how == "503"  # Retry-After 0 honoured: no exponential wait
        assert len(server.requests) == 3


def test_a_dropped_create_is_ambiguous_and_not_retried_but_a_read_is() -> None:
    handler = Flaky(1, "drop")
    with LoopbackServer(handler) as server, make_client(server.url) as http:
        with pytest.raises(AmbiguousSubmission):
            send(http, "POST", "/x", facility="T", idempotent=False, attempts=3)
        assert len(server.requests) == 1
        handler.failures = 1
        assert send(http, "GET", "/x", facility="T", idempotent=True, attempts=3).status_code == 200
        assert len(server.requests) == 3


def test_giving_up_and_refused_credentials_are_clear_errors(caplog: pytest.LogCaptureFixture) -> None:
    with LoopbackServer(Flaky(5, "503")) as server, make_client(server.url) as http:
        with pytest.raises(FacilityUnavailable, match="after 2 tries"):
            send(http, "GET", "/x", facility="T", idempotent=True, attempts=2, max_wait=0.01)
    secret = "tok-abc-123"
    caplog.set_level(logging.DEBUG)
    with LoopbackServer(Flaky(1, "403")) as server, \
            make_client(server.url, headers={"Authorization": f"Token {secret}"}) as http:
        with pytest.raises(FacilityAuthError) as caught:
            send(http, "GET", "/x", facility="T", idempotent=True)
    assert "Invalid token." in str(caught.value) and secret not in str(caught.value)
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_connection_refused_is_unavailable_not_ambiguous() -> None:
    with LoopbackServer(Flaky(0, "")) as server:
        url = server.url
    with make_client(url, timeout_s=1) as http, pytest.raises(FacilityUnavailable, match="cannot connect"):
        send(http, "POST", "/x", facility="T", idempotent=False, attempts=2, max_wait=0.01)


def test_faults_fire_once_on_the_matching_call() -> None:
    faults = Faults()
    faults.inject(Fault("POST", "/api/requestgroups/", "drop"))
    get = Request("GET", "/api/requestgroups/", {}, {}, b"")
    post = Request("POST", "/api/requestgroups/", {}, {}, b"")
    assert faults.take(get) is None
    assert faults.take(post) is not None and faults.take(post) is None


# -- storage ---------------------------------------------------------------------------------------------------------
def test_request_history_records_changes_only(tmp_store: Any) -> None:
    followup = FollowupStore(tmp_store)
    record = followup.create_request(facility="lco", name="alertmux-7", proposal="P", dia_object_id=7,
                                     ranking_id=None, priority=2, payload={"name": "alertmux-7"}, exposure_s=600,
                                     duration_s=900)
    assert record.state == "unconfirmed"
    parts = (Part("11", "pending", "PENDING"),)
    assert followup.update_request(record.request_id, state="pending", native_state="PENDING", facility_id="5",
                                   parts=parts, submitted=True)
    assert not followup.update_request(record.request_id, state="pending", native_state="PENDING", parts=parts)
    assert followup.update_request(record.request_id, state="completed", native_state="COMPLETED",
                                   parts=(Part("11", "completed", "COMPLETED"),))
    history = followup.history(record.request_id)
    assert [(h["part_id"], h["state"]) for h in history] == [
        (None, "unconfirmed"), (None, "pending"), ("11", "pending"), (None, "completed"), ("11", "completed")]
    stored = followup.request(record.request_id)
    assert stored is not None and stored.facility_id == "5" and stored.parts[0].native_state == "COMPLETED"
    assert followup.open_requests() == [] and followup.usage("lco", "P") == (1, 0.25)
    with pytest.raises(Exception):  # noqa: B017 - the unique (facility, name) key
        followup.create_request(facility="lco", name="alertmux-7", proposal="P", dia_object_id=7, ranking_id=None,
                                priority=2, payload={}, exposure_s=600, duration_s=None)


def test_a_reported_spectrum_is_scored_beside_the_brokers(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    store.record_objects("run", [TruthRow(1, 2222, 10, 100.0, 0.1), TruthRow(2, 2224, 30, 100.0, 0.1)], [
        {"alertId": 101 + oid * 1000, "diaSource": {"diaSourceId": 101 + oid * 1000, "diaObjectId": oid,
                                                    "midPointTai": 99.0, "filterName": "r", "psFlux": 1e4,
                                                    "psFluxErr": 100.0}}
        for oid in (1, 2)
    ])
    host = PluginHost(load_entrypoints=False, plugins=[elasticc])
    rows = Ingestor(host, "elasticc", store, "run").rows([
        BrokerMessage(("B", "1", "C", ""), "elasticc2", [2224, 2222], [0.6, 0.4], alert_id=1101, dia_source_id=1101),
        BrokerMessage(("B", "1", "C", ""), "elasticc2", [2224, 2222], [0.6, 0.4], alert_id=2101, dia_source_id=2101),
    ], Delivery("t"))
    store.write_batch(rows)
    followup = FollowupStore(store)
    sid, new = followup.report_spectrum(dia_object_id=1, facility="lco", mjd=100.5, class_id=2222, redshift=0.05)
    assert new and followup.report_spectrum(dia_object_id=1, facility="lco", mjd=100.5, class_id=2222) == (sid, False)
    followup.report_spectrum(dia_object_id=2, facility="lco", mjd=100.5, class_id=2222)  # a wrong typing
    summary = store.summary("run")
    assert summary["brokers"][SPECTROSCOPY_BROKER]["top1_accuracy"] == pytest.approx(0.5)
    assert summary["brokers"]["elasticc"]["top1_accuracy"] == pytest.approx(0.5)
    assert followup.spectra(1)[0]["redshift"] == 0.05
    store.close()
    scoring = open_scoring(path, "run")
    classifiers = scoring.classifiers()
    spectro = classifiers[classifiers["broker"] == SPECTROSCOPY_BROKER]
    assert list(spectro["broker_name"]) == ["lco"] and list(spectro["classifier_name"]) == [
        "SpectroscopicClassification"]
    confusion = scoring.confusion("last")
    mine = confusion[confusion["classifier_id"] == int(spectro["classifier_id"].iloc[0])]
    assert sorted(zip(mine["true_class"], mine["predicted_class"], strict=True)) == [(2222, 2222), (2224, 2222)]
