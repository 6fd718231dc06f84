"""The ``soar`` facility: SOAR's instruments through the same OCS portal, with its own defaults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import alertmux_soar
import pytest

from alertmux.followup.models import ObservationRequest, RequestRecord
from alertmux.followup.service import open_facility
from alertmux.followup.visibility import now_utc, visibility
from alertmux.host import PluginHost

SOR = (("sor", -30.2379, -70.7337),)


@pytest.fixture
def soar() -> Iterator[tuple[Any, Any]]:
    host = PluginHost(load_entrypoints=False, plugins=[alertmux_soar])
    spec = host.facility("soar")
    with spec.emulator(complete_after_s=5.0) as settings:
        yield open_facility(host, "soar", settings), settings


def observable_request() -> ObservationRequest:
    start = now_utc().replace(microsecond=0)
    ra, dec = max(((float(ra), -30.0) for ra in range(0, 360, 15)),
                  key=lambda p: visibility(p[0], p[1], SOR, start, start + timedelta(days=3))[0].hours)
    return ObservationRequest(name="alertmux-77", dia_object_id=77, target_name="alertmux-77", ra=ra, dec=dec,
                              exposure_s=1200.0, window_start=start, window_end=start + timedelta(days=3),
                              max_airmass=2.0, mag=20.5, band="r")


def test_defaults_are_soars_and_sites_cerro_pachon(soar: tuple[Any, Any]) -> None:
    facility, _ = soar
    assert facility.settings.instrument_type == "SOAR_GHTS_REDCAM"
    assert [s.code for s in facility.settings.sites] == ["sor"]
    assert facility.spec.aperture_m == 4.1 and facility.spec.cancel_scope == "group"
    assert sorted(facility.spec.instruments(facility.settings)) == ["SOAR_GHTS_REDCAM", "SOAR_GHTS_REDCAM_IMAGER"]


def test_a_goodman_spectrum_is_built_from_the_portals_instrument_entry(soar: tuple[Any, Any]) -> None:
    facility, _ = soar
    validation = facility.spec.validate(facility.settings, observable_request())
    assert validation.ok, validation.error_lines()
    configuration = validation.payload["requests"][0]["configurations"][0]
    assert validation.payload["requests"][0]["location"] == {"telescope_class": "4m0"}
    assert configuration["type"] == "SPECTRUM"
    assert configuration["instrument_configs"][0]["optical_elements"] == {"slit": "slit_1.0as", "grating": "SYZY_400"}
    assert configuration["instrument_configs"][0]["mode"] == "GHTS_R_400m1_2x2"


def test_submit_status_and_lookup_through_the_portal(soar: tuple[Any, Any]) -> None:
    facility, settings = soar
    submission = facility.spec.submit(facility.settings, observable_request())
    assert submission.state == "pending" and submission.url.startswith(settings["portal_url"])
    record = RequestRecord(1, "soar", "alertmux-77", "pending", facility_id=submission.facility_id,
                           parts=submission.parts, created_ms=int(now_utc().timestamp() * 1000) - 1000)
    assert facility.spec.status(facility.settings, [record])[0].state == "pending"
    assert facility.spec.lookup(facility.settings, "alertmux-77").facility_id == submission.facility_id
    assert facility.spec.lookup(facility.settings, "alertmux-7") is None  # "contains" on the portal, exact here
