"""alertmux-soar: the SOAR 4.1 m telescope as an alertmux follow-up facility.

SOAR is scheduled in AEON mode through the same OCS Observation Portal as LCO, with the same API token, its own
instruments (the Goodman spectrograph by default) and its own proposals; this plugin reuses ``alertmux-lco``'s
OCS client and emulator with SOAR's defaults::

    [facilities.soar]
    token = "${LCO_TOKEN}"
    proposal = "SOAR2026B-001"
    instrument_type = "SOAR_GHTS_REDCAM"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alertmux_lco.catalogue import SITES, soar_catalogue
from alertmux_lco.emulator import OcsPortalEmulator
from alertmux_lco.ocs import OcsFacility, OcsSettings
from pydantic import Field

from alertmux import FacilitySpec, hookimpl
from alertmux.followup.settings import Site

__version__ = "0.1.0"
NAME = "soar"


class SoarSettings(OcsSettings):
    """``[facilities.soar]``: LCO's portal, the Goodman red camera, Cerro Pachon."""

    instrument_type: str = Field("SOAR_GHTS_REDCAM", description="a key of the portal's /api/instruments/")
    sites: tuple[Site, ...] = (Site(code="sor", latitude=SITES["sor"][1], longitude=SITES["sor"][2]),)


@contextmanager
def emulator(**options: Any) -> Iterator[dict[str, Any]]:
    """An emulated portal offering SOAR's instruments; yields the settings that point ``soar`` at it."""
    with OcsPortalEmulator(soar_catalogue(), name="soar-emulator", **options) as portal:
        yield portal.settings()


_verbs = OcsFacility("SOAR")


@hookimpl
def alertmux_facilities() -> Iterator[FacilitySpec]:
    """SOAR through the OCS portal."""
    yield FacilitySpec(
        name=NAME,
        description="SOAR 4.1 m (AEON) through the OCS Observation Portal: Goodman spectra, status, cancel, frames",
        validate=_verbs.validate, submit=_verbs.submit, status=_verbs.status, cancel=_verbs.cancel,
        data_products=_verbs.data_products, config_model=SoarSettings, lookup=_verbs.lookup,
        instruments=_verbs.instruments, emulator=emulator, aperture_m=4.1, cancel_scope="group",
        homepage="https://noirlab.edu/science/observing-noirlab/observing-soar/aeon",
    )
