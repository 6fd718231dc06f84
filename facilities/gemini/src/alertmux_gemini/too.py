"""Gemini's URL-based ToO trigger: clone a template observation ("On Hold") with a new target and make it Ready.

The interface (Bryan Miller and Shane Walker, "Gemini URL-based Submission of ToO Triggers", 2019, in
bryanmiller/gsselect ``urltoo_readme.txt``; used by TOM Toolkit's ``GEMFacility``): ``{portal}/too`` with the
parameters ``prog, email, password, obsnum, target, ra ('HH:MM:SS.SS'), dec ('DD:MM:SS.SSS'), mags
('value/band/system', comma-separated), note, posangle, exptime (integer 1-1200 s), group, ready,
windowDate ('YYYY-MM-DD'), windowTime ('HH:MM'), windowDuration (integer hours), elevationType, elevationMin,
elevationMax`` (and the guide star ``gs*`` set). The answer is the new observation's id as text; a bad request
is an HTTP 400 with a message.

What it does not offer, and alertmux says so: no validation endpoint (checks are local), no status, no cancel,
no data products, and no way to look a trigger up. So a trigger that timed out after it was sent is never sent
again automatically: it is recorded ``unconfirmed`` and the user checks the program in the Gemini OT.

The user key's password is sent in the form body of a POST, not in the URL, so it never reaches a log line or a
proxy's access log (the servlet reads form parameters from either place).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from alertmux.followup.errors import RequestRejected
from alertmux.followup.http import make_client, send
from alertmux.followup.models import ObservationRequest, RequestRecord, StatusUpdate, Submission, Validation
from alertmux.followup.settings import FacilitySettings, Site, redact, secret_value

PORTALS = {"GS": "https://gsodb.gemini.edu:8443", "GN": "https://gnodb.gemini.edu:8443"}
SITES = {"GS": Site(code="gs", latitude=-30.2407, longitude=-70.7366),  # Cerro Pachon
         "GN": Site(code="gn", latitude=19.8238, longitude=-155.4690)}  # Maunakea
BANDS = ("u", "U", "B", "g", "V", "UC", "r", "R", "i", "I", "z", "Y", "J", "H", "K", "L", "M", "N", "Q", "AP")
"""Bands the trigger accepts for magnitudes (urltoo_readme.txt)."""
MAX_EXPTIME_S = 1200


class GeminiSettings(FacilitySettings):
    """``[facilities.gemini]``: the program (``proposal``), the user key and the template observation."""

    site: Literal["GS", "GN"] = "GS"
    portal_url: str | None = Field(None, description="default: the site's ODB (gsodb/gnodb.gemini.edu:8443)")
    email: str = Field("", description="the email address of the OT user key")
    password: SecretStr | None = Field(None, description="the user key's password (site specific)")
    template_observation: int = Field(0, ge=0, description="number of the 'On Hold' template observation")
    template_exposures: int = Field(1, ge=1, description="exposures in the template's sequence")
    group: str | None = None
    posangle: float | None = None
    ready: bool = Field(True, description="true: the clone is made Ready (triggers the ToO); false: On Hold")
    max_airmass: float = Field(2.0, ge=1.0, le=2.5, description="Gemini accepts 1.0 to 2.5")
    sites: tuple[Site, ...] = ()

    @model_validator(mode="after")
    def _site_defaults(self) -> GeminiSettings:
        if not self.sites:
            object.__setattr__(self, "sites", (SITES[self.site],))
        if self.portal_url is None:
            object.__setattr__(self, "portal_url", PORTALS[self.site])
        return self


def sexagesimal(value: float, hours: bool) -> str:
    """RA in hours as ``HH:MM:SS.SS`` or Dec as ``+DD:MM:SS.SSS``, the trigger's formats."""
    sign = "-" if value < 0 else ("" if hours else "+")
    total = abs(value) / (15.0 if hours else 1.0)
    decimals = 2 if hours else 3
    scale = 10**decimals
    units = round(total * 3600 * scale)  # in 1/scale seconds, rounded once so 59.995 s carries over
    whole, fraction = divmod(units, scale)
    degrees, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        degrees %= 24
    return f"{sign}{degrees:02d}:{minutes:02d}:{seconds:02d}.{fraction:0{decimals}d}"


def trigger_parameters(settings: GeminiSettings, request: ObservationRequest) -> dict[str, str]:
    """The trigger's parameters for one request (the password included: redact before showing)."""
    exptime = math.ceil(request.exposure_s / settings.template_exposures)
    hours = max(1, math.ceil((request.window_end - request.window_start).total_seconds() / 3600))
    params = {
        "prog": settings.proposal, "email": settings.email, "password": secret_value(settings.password),
        "obsnum": str(settings.template_observation), "target": request.target_name,
        "ra": sexagesimal(request.ra, hours=True), "dec": sexagesimal(request.dec, hours=False),
        "note": request.note, "exptime": str(exptime), "ready": "true" if settings.ready else "false",
        "windowDate": request.window_start.strftime("%Y-%m-%d"), "windowTime": request.window_start.strftime("%H:%M"),
        "windowDuration": str(hours), "elevationType": "airmass", "elevationMin": "1.0",
        "elevationMax": f"{request.max_airmass:g}",
    }
    if request.mag is not None and request.band:
        params["mags"] = f"{request.mag:.2f}/{request.band}/AB"
    if settings.group:
        params["group"] = settings.group
    if settings.posangle is not None:
        params["posangle"] = f"{settings.posangle:g}"
    return params


def local_problems(settings: GeminiSettings, params: dict[str, str]) -> list[str]:
    """What the trigger would refuse, checked here (Gemini has no validation endpoint)."""
    problems = []
    if not settings.proposal:
        problems.append("proposal (the Gemini program id, e.g. GS-2026B-Q-101) is not set")
    if not settings.email or settings.password is None:
        problems.append("email and password (the OT user key) are not set")
    if settings.template_observation < 1:
        problems.append("template_observation (the number of the 'On Hold' template) is not set")
    exptime = int(params["exptime"])
    if not 1 <= exptime <= MAX_EXPTIME_S:
        problems.append(f"exptime {exptime} s per exposure is outside 1..{MAX_EXPTIME_S} s: use a template with more "
                        f"exposures (template_exposures = {settings.template_exposures})")
    band = params.get("mags", "//").split("/")[1]
    if "mags" in params and band not in BANDS:
        problems.append(f"band {band!r} is not one Gemini accepts for magnitudes")
    return problems


class GeminiToo:
    """The facility verbs of the Gemini ToO trigger."""

    label = "Gemini"

    def validate(self, settings: GeminiSettings, request: ObservationRequest) -> Validation:
        """Local checks only: Gemini offers no validation endpoint."""
        params = trigger_parameters(settings, request)
        problems = local_problems(settings, params)
        return Validation(not problems, redact(params), problems or None, request.exposure_s, server_checked=False,
                          notes=("Gemini has no validation API: only local checks ran",))

    def submit(self, settings: GeminiSettings, request: ObservationRequest) -> Submission:
        """Send the trigger once (retried only when it certainly did not arrive: no connection, 429, 503)."""
        params = trigger_parameters(settings, request)
        problems = local_problems(settings, params)
        if problems:
            raise RequestRejected("; ".join(problems), errors=problems)
        with make_client(settings.portal_url or PORTALS[settings.site], timeout_s=settings.timeout_s,
                         headers={"Accept": "text/plain"}) as http:
            response = send(http, "POST", "/too", facility=self.label, idempotent=False, attempts=settings.attempts,
                            max_wait=settings.max_retry_wait_s, data=params)
        text = response.text.strip()
        if response.status_code != 200:
            raise RequestRejected(f"Gemini refused the trigger (HTTP {response.status_code}): {text[:300]}",
                                  errors=[text[:300]])
        return Submission(facility_id=text, state="submitted", native_state="READY" if settings.ready else "ON_HOLD",
                          response={"observation": text}, duration_s=request.exposure_s)

    def status(self, settings: GeminiSettings, records: Sequence[RequestRecord]) -> list[StatusUpdate]:
        """Nothing: the trigger API reports no status (the records stay ``submitted``)."""
        return []
