"""alertmux-lco: Las Cumbres Observatory's Observation Portal as an alertmux follow-up facility.

Spectra with FLOYDS on the 2 m telescopes by default; any instrument type the portal's ``/api/instruments/``
lists can be configured. The portal software (OCS) also runs at other observatories: ``portal_url``,
``archive_url``, ``token`` and ``proposal`` are configuration::

    [facilities.lco]
    token = "${LCO_TOKEN}"
    proposal = "LCO2026B-001"
    instrument_type = "2M0-FLOYDS-SCICAM"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alertmux import FacilitySpec, hookimpl
from alertmux.followup.settings import Site
from alertmux_lco.catalogue import SITES, lco_catalogue
from alertmux_lco.emulator import OcsPortalEmulator
from alertmux_lco.ocs import OcsFacility, OcsSettings

__version__ = "0.1.0"
NAME = "lco"


def _sites(*codes: str) -> tuple[Site, ...]:
    return tuple(Site(code=SITES[c][0], latitude=SITES[c][1], longitude=SITES[c][2]) for c in codes)


class LcoSettings(OcsSettings):
    """``[facilities.lco]``: an OCS portal, FLOYDS at Haleakala and Siding Spring by default."""

    sites: tuple[Site, ...] = _sites("ogg", "coj")


@contextmanager
def emulator(**options: Any) -> Iterator[dict[str, Any]]:
    """An emulated LCO portal on loopback; yields the settings that point ``lco`` at it."""
    with OcsPortalEmulator(lco_catalogue(), name="lco-emulator", **options) as portal:
        yield portal.settings()


_verbs = OcsFacility("LCO")


@hookimpl
def alertmux_facilities() -> Iterator[FacilitySpec]:
    """The LCO Observation Portal."""
    yield FacilitySpec(
        name=NAME,
        description="Las Cumbres Observatory Observation Portal (OCS): requestgroups, status, cancel, archive frames",
        validate=_verbs.validate, submit=_verbs.submit, status=_verbs.status, cancel=_verbs.cancel,
        data_products=_verbs.data_products, config_model=LcoSettings, lookup=_verbs.lookup,
        instruments=_verbs.instruments, emulator=emulator, aperture_m=2.0, cancel_scope="group",
        homepage="https://observe.lco.global",
    )
