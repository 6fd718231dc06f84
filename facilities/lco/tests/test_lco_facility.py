"""The ``lco`` verbs against the portal emulator: validate, idempotent submit, bulk status, cancel, frames."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import alertmux_lco
import pytest
from alertmux_lco.catalogue import lco_catalogue
from alertmux_lco.emulator import OcsPortalEmulator

from alertmux.followup.emulator import Fault
from alertmux.followup.errors import FacilityAuthError, FacilityError, RequestRejected
from alertmux.followup.models import ObservationRequest, RequestRecord
from alertmux.followup.service import open_facility
from alertmux.followup.visibility import now_utc, visibility
from alertmux.host import PluginHost

TOKEN = "lco-test-token-5f2e"
FLOYDS_SITES = (("ogg", 20.7069, -156.2575), ("coj", -31.2733, 149.0707))


@functools.cache
def visible_position(sites: tuple[tuple[str, float, float], ...], hours: float = 72) -> tuple[float, float]:
    """A position observable for a good while from one of ``sites`` in the coming days."""
    start = now_utc()
    best = max(
        ((ra, dec) for ra in range(0, 360, 10) for dec in (-40, -10, 15)),
        key=lambda p: max(v.hours for v in visibility(p[0], p[1], sites, start, start + timedelta(hours=hours))),
    )
    return float(best[0]), float(best[1])


@pytest.fixture
def portal() -> Iterator[OcsPortalEmulator]:
    with OcsPortalEmulator(lco_catalogue(), tokens={TOKEN: "observer"}, complete_after_s=600) as emulator:
        yield emulator


@pytest.fixture
def lco(portal: OcsPortalEmulator) -> Any:
    host = PluginHost(load_entrypoints=False, plugins=[alertmux_lco])
    return open_facility(host, "lco", portal.settings(token=TOKEN), {"timeout_s": 1.0, "max_retry_wait_s": 0.2})


def request(name: str = "alertmux-1", exposure: float = 600.0, position: tuple[float, float] | None = None,
            max_airmass: float = 2.0) -> ObservationRequest:
    ra, dec = position or visible_position(FLOYDS_SITES)
    start = now_utc().replace(microsecond=0)
    return ObservationRequest(name=name, dia_object_id=1, target_name="alertmux-1", ra=ra, dec=dec,
                              exposure_s=exposure, window_start=start, window_end=start + timedelta(days=3),
                              max_airmass=max_airmass, mag=18.5, band="r", note="test")


def record_of(submission: Any, request_id: int = 1) -> RequestRecord:
    return RequestRecord(request_id=request_id, facility="lco", name="x", state=submission.state,
                         facility_id=submission.facility_id, parts=submission.parts,
                         created_ms=int((now_utc() - timedelta(minutes=1)).timestamp() * 1000))


def test_validate_builds_the_group_from_the_portals_instrument_list(lco: Any, portal: OcsPortalEmulator) -> None:
    validation = lco.spec.validate(lco.settings, request())
    assert validation.ok and validation.server_checked
    configuration = validation.payload["requests"][0]["configurations"][0]
    assert configuration["type"] == "SPECTRUM" and configuration["instrument_type"] == "2M0-FLOYDS-SCICAM"
    assert configuration["instrument_configs"][0]["optical_elements"] == {"slit": "slit_2.0as"}
    assert configuration["instrument_configs"][0]["rotator_mode"] == "VFLOAT"
    assert validation.payload["requests"][0]["location"] == {"telescope_class": "2m0"}
    # 600 s + 25 s readout + 0.5 s per exposure, + 16 s config padding, + 300 s per request (the catalogue's)
    assert validation.duration_s == 942
    assert [r.path for r in portal.server.requests] == ["/api/instruments/", "/api/requestgroups/validate/"]


def test_an_instrument_the_portal_does_not_offer_is_a_clear_validation_error(lco: Any) -> None:
    settings = lco.settings.model_copy(update={"instrument_type": "2M0-NOT-THERE"})
    validation = lco.spec.validate(settings, request())
    assert not validation.ok and "2M0-FLOYDS-SCICAM" in validation.error_lines()[0]


def test_portal_validation_errors_come_back_as_lines(lco: Any) -> None:
    settings = lco.settings.model_copy(update={"optical_elements": {"slit": "slit_9as"}})
    validation = lco.spec.validate(settings, request())
    assert not validation.ok
    assert any("instrument_configs[0]" in line and "slit_9as" in line for line in validation.error_lines())
    with pytest.raises(RequestRejected) as caught:
        lco.spec.submit(settings, request())
    assert "slit_9as" in str(caught.value.errors)


def test_a_repeated_submit_finds_the_group_instead_of_creating_another(lco: Any, portal: OcsPortalEmulator) -> None:
    first = lco.spec.submit(lco.settings, request())
    assert first.state == "pending" and first.native_state == "PENDING" and not first.found_existing
    assert len(first.parts) == 1 and first.parts[0].native_state == "PENDING"
    again = lco.spec.submit(lco.settings, request())
    assert again.found_existing and again.facility_id == first.facility_id
    assert len(portal.groups) == 1


@pytest.mark.parametrize("fault", [Fault("POST", "/api/requestgroups/", "drop"),
                                   Fault("POST", "/api/requestgroups/", "slow", seconds=1.5)],
                         ids=["dropped", "timed-out"])
def test_an_ambiguous_failure_is_resolved_by_name_never_by_sending_twice(lco: Any, portal: OcsPortalEmulator,
                                                                         fault: Fault) -> None:
    portal.inject(fault)
    submission = lco.spec.submit(lco.settings, request())
    assert submission.found_existing and len(portal.groups) == 1
    posts = [r for r in portal.server.requests if r.method == "POST" and r.path == "/api/requestgroups/"]
    assert len(posts) == 1


def test_a_refused_create_is_retried_and_created_once(lco: Any, portal: OcsPortalEmulator) -> None:
    portal.inject(Fault("POST", "/api/requestgroups/", "status", status=503))
    submission = lco.spec.submit(lco.settings, request())
    assert not submission.found_existing and len(portal.groups) == 1


def test_throttling_is_waited_out(portal: OcsPortalEmulator, lco: Any) -> None:
    portal.limiter.limit, portal.limiter.period_s = 2, 0.5
    submission = lco.spec.submit(lco.settings, request())  # instruments, lookup, create: 3 calls, 2 allowed per 0.5 s
    assert submission.state == "pending" and len(portal.groups) == 1


def test_a_wrong_token_stops_with_the_portals_words_and_no_token(portal: OcsPortalEmulator, lco: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = lco.settings.model_copy(update={"token": lco.settings.token.__class__("wrong-secret-token")})
    with pytest.raises(FacilityAuthError) as caught:
        lco.spec.validate(settings, request())
    assert "Invalid token." in str(caught.value) and "wrong-secret-token" not in str(caught.value)
    assert not any("wrong-secret-token" in r.getMessage() or TOKEN in r.getMessage() for r in caplog.records)


def test_status_of_many_records_takes_one_listing(lco: Any, portal: OcsPortalEmulator) -> None:
    position = visible_position(FLOYDS_SITES)
    portal.outcomes["alertmux-3"] = "FAILURE_LIMIT_REACHED"
    records = [record_of(lco.spec.submit(lco.settings, request(f"alertmux-{i}", position=position)), i)
               for i in (1, 2, 3)]
    before = len(portal.server.requests)
    updates = lco.spec.status(lco.settings, records)
    calls = portal.server.requests[before:]
    assert [(c.method, c.path) for c in calls] == [("GET", "/api/requestgroups/")]
    assert {u.state for u in updates} == {"pending"}
    portal.clock.advance(601)
    updates = {u.request_id: u for u in lco.spec.status(lco.settings, records)}
    assert (updates[1].state, updates[1].native_state) == ("completed", "COMPLETED")
    assert updates[1].parts[0].state == "completed"
    assert (updates[3].state, updates[3].native_state) == ("failed", "FAILURE_LIMIT_REACHED")
    portal.clock.advance(-601)


def test_an_unobserved_window_expires(lco: Any, portal: OcsPortalEmulator) -> None:
    portal.complete_after_s = 10 * 86400  # never observed within its 3-day window
    record = record_of(lco.spec.submit(lco.settings, request()))
    portal.clock.advance(4 * 86400)
    (update,) = lco.spec.status(lco.settings, [record])
    assert (update.state, update.native_state) == ("expired", "WINDOW_EXPIRED")


def test_cancel_takes_the_group_and_a_completed_one_cannot_be(lco: Any, portal: OcsPortalEmulator) -> None:
    record = record_of(lco.spec.submit(lco.settings, request("alertmux-1")))
    update = lco.spec.cancel(lco.settings, record)
    assert (update.state, update.native_state) == ("canceled", "CANCELED")
    done = record_of(lco.spec.submit(lco.settings, request("alertmux-2")), 2)
    portal.clock.advance(601)
    with pytest.raises(FacilityError, match="Cannot transition from request state COMPLETED to CANCELED"):
        lco.spec.cancel(lco.settings, done)


def test_frames_of_a_completed_request_come_from_the_archive(lco: Any, portal: OcsPortalEmulator) -> None:
    record = record_of(lco.spec.submit(lco.settings, request()))
    assert lco.spec.data_products(lco.settings, record) == []
    portal.clock.advance(601)
    products = lco.spec.data_products(lco.settings, record)
    assert sorted(p.kind for p in products) == ["ARC", "LAMP_FLAT", "SPECTRUM"]
    assert all(p.filename.endswith(".fits.fz") and p.url.startswith(portal.url) for p in products)
    listing = lco.spec.instruments(lco.settings)
    assert sorted(listing) == ["1M0-SCICAM-SINISTRO", "2M0-FLOYDS-SCICAM"]
