"""alertmux-gemini: Gemini target-of-opportunity triggers as an alertmux follow-up facility.

A trigger clones a template observation of your program (prepared "On Hold" in the Gemini OT) with the target,
exposure time and window alertmux chose, and marks it Ready. Gemini's trigger API has no validation, status,
cancel, data products or lookup: alertmux checks locally, records the new observation id, and tells you what it
cannot do::

    [facilities.gemini]
    site = "GS"
    proposal = "GS-2026B-Q-101"          # the program id
    email = "pi@example.org"             # the OT user key's email...
    password = "${GEMINI_USER_KEY}"      # ...and its password, from the environment
    template_observation = 12
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alertmux import FacilitySpec, hookimpl
from alertmux_gemini.emulator import GeminiTooEmulator
from alertmux_gemini.too import GeminiSettings, GeminiToo

__version__ = "0.1.0"
NAME = "gemini"


@contextmanager
def emulator(**options: Any) -> Iterator[dict[str, Any]]:
    """An emulated trigger endpoint on loopback; yields the settings that point ``gemini`` at it."""
    options.pop("complete_after_s", None)  # a trigger is never reported observed: there is no status to change
    with GeminiTooEmulator(**options) as portal:
        yield portal.settings()


_verbs = GeminiToo()


@hookimpl
def alertmux_facilities() -> Iterator[FacilitySpec]:
    """Gemini ToO triggers."""
    yield FacilitySpec(
        name=NAME,
        description="Gemini ToO trigger (clone an On Hold template, make it Ready); no status, cancel or lookup API",
        validate=_verbs.validate, submit=_verbs.submit, status=_verbs.status, cancel=None, data_products=None,
        config_model=GeminiSettings, lookup=None, emulator=emulator, aperture_m=8.1, status_api=False,
        homepage="https://www.gemini.edu/observing/phase-ii/useful-know#ToO",
    )
