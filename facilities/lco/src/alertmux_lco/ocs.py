"""A client of the Observatory Control System (OCS) portal API, and the facility verbs built on it.

The OCS portal is LCO's Observation Portal, and every other observatory that runs the same software (SOAR and
Blanco through LCO's, SAAO its own): its base URL, token and proposal are configuration.

What it relies on (observatorycontrolsystem/observation-portal; recorded answers in
``shared/data/facilities/lco_observation_portal/real_responses``): ``Authorization: Token <key>``;
``GET /api/instruments/`` (a dict keyed by instrument type); ``POST /api/requestgroups/validate/`` answers 200
with ``{"request_durations", "errors"}`` whether valid or not; ``POST /api/requestgroups/`` answers 201 with the
group, or 400 with the same error tree; ``GET /api/requestgroups/`` filters by ``name`` (contains), ``proposal``,
``state``, ``created_after``... and pages with ``limit``/``offset``; ``POST /api/requestgroups/{id}/cancel/``
cancels the whole group; the science archive's ``GET /frames/?request_id=`` lists a request's frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr

from alertmux.followup.errors import AmbiguousSubmission, FacilityError, RequestRejected
from alertmux.followup.http import json_body, make_client, send
from alertmux.followup.models import (
    DataProduct,
    ObservationRequest,
    Part,
    RequestRecord,
    RequestState,
    StatusUpdate,
    Submission,
    Validation,
)
from alertmux.followup.settings import FacilitySettings, secret_value

STATES: dict[str, RequestState] = {
    "PENDING": "pending",
    "COMPLETED": "completed",
    "WINDOW_EXPIRED": "expired",
    "CANCELED": "canceled",
    "FAILURE_LIMIT_REACHED": "failed",
}
"""OCS request and requestgroup states (requestgroups/models.py STATE_CHOICES) -> alertmux states."""
PAGE_LIMIT = 100


class UnknownInstrument(FacilityError):
    """The portal does not offer the configured instrument type."""


def normalize_state(native: str) -> RequestState:
    """The alertmux state of an OCS state (an unknown one is treated as still pending, and kept verbatim)."""
    return STATES.get(native, "pending")


class OcsSettings(FacilitySettings):
    """``[facilities.NAME]`` of an OCS portal facility. The token is a secret: ``token = "${LCO_TOKEN}"``."""

    portal_url: str = "https://observe.lco.global"
    archive_url: str = "https://archive-api.lco.global"
    token: SecretStr | None = None
    instrument_type: str = Field("2M0-FLOYDS-SCICAM", description="a key of the portal's /api/instruments/")
    configuration_type: str | None = Field(None, description="default: the instrument's default configuration type")
    optical_elements: dict[str, str] = Field(default_factory=dict,
                                             description="e.g. {slit = 'slit_2.0as'}; default: the default ones")
    readout_mode: str | None = None
    acquisition_mode: str | None = None
    rotator_mode: str | None = None
    observation_type: Literal["NORMAL", "RAPID_RESPONSE", "TIME_CRITICAL"] = "NORMAL"
    ipp_value: float = Field(1.05, ge=0.5, le=2.0)
    min_lunar_distance: float = Field(30.0, ge=0, le=180)
    exposure_count: int = Field(1, ge=1)
    instruments_cache_s: float = Field(60.0, ge=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OcsClient:
    """One portal (and its archive) for one token; use as a context manager."""

    _instrument_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    _cache_lock = threading.Lock()

    def __init__(self, settings: OcsSettings, label: str) -> None:
        """Open HTTP clients for the portal and the archive."""
        self.settings = settings
        self.label = label
        self._token = secret_value(settings.token) or None
        self.portal = make_client(settings.portal_url.rstrip("/"), token=self._token, timeout_s=settings.timeout_s)
        self._archive: Any = None

    @property
    def archive(self) -> Any:
        """The science archive's client (the same token), opened on first use."""
        if self._archive is None:
            self._archive = make_client(self.settings.archive_url.rstrip("/"), token=self._token,
                                        timeout_s=self.settings.timeout_s)
        return self._archive

    def __enter__(self) -> OcsClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.portal.close()
        if self._archive is not None:
            self._archive.close()

    def _call(self, method: str, path: str, *, idempotent: bool = True, client: Any = None, **kwargs: Any) -> Any:
        return send(client or self.portal, method, path, facility=self.label, idempotent=idempotent,
                    attempts=self.settings.attempts, max_wait=self.settings.max_retry_wait_s, **kwargs)

    # -- instruments --------------------------------------------------------------------------------------------
    def instruments(self) -> dict[str, Any]:
        """``GET /api/instruments/``, cached per portal for ``instruments_cache_s`` (TOM Toolkit caches 60 s)."""
        key = (self.settings.portal_url, secret_value(self.settings.token)[:6])
        with self._cache_lock:
            cached = self._instrument_cache.get(key)
        if cached and time.monotonic() - cached[0] < self.settings.instruments_cache_s:
            return cached[1]
        response = self._call("GET", "/api/instruments/")
        if response.status_code != 200:
            raise FacilityError(f"{self.label}: /api/instruments/ answered HTTP {response.status_code}")
        found = json_body(response, self.label)
        with self._cache_lock:
            self._instrument_cache[key] = (time.monotonic(), found)
        return found

    def instrument(self, instrument_type: str) -> dict[str, Any]:
        """One instrument type's entry, or a clear error listing what the portal offers."""
        offered = self.instruments()
        if instrument_type not in offered:
            raise UnknownInstrument(
                f"{self.label} does not offer instrument type {instrument_type!r} (it offers: "
                f"{', '.join(sorted(offered)) or 'nothing'}); set instrument_type in [facilities]"
            )
        return offered[instrument_type]

    # -- requestgroups ------------------------------------------------------------------------------------------
    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/requestgroups/validate/`` -> ``{"request_durations", "errors"}``."""
        response = self._call("POST", "/api/requestgroups/validate/", json=payload)
        body = json_body(response, self.label)
        if response.status_code != 200 or not isinstance(body, dict):
            raise FacilityError(f"{self.label}: validate answered HTTP {response.status_code}: {str(body)[:300]}")
        return body

    def create(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Submit a requestgroup at most once: (group, found_existing).

        The group's name is its idempotency key. It is looked up first (a repeated submit finds it), and again
        before every retry after an ambiguous failure (a timeout or a dropped connection after sending), so that
        a request the portal did receive is never sent twice.

        Raises:
            RequestRejected: HTTP 400, with the portal's error tree.
            AmbiguousSubmission: still no answer after every attempt, and not found by name.
        """
        name, proposal = payload["name"], payload.get("proposal")
        existing = self.find_by_name(name, proposal)
        if existing is not None:
            return existing, True
        last: AmbiguousSubmission | None = None
        for _attempt in range(self.settings.attempts):
            try:
                response = self._call("POST", "/api/requestgroups/", idempotent=False, json=payload)
            except AmbiguousSubmission as exc:
                last = exc
                existing = self.find_by_name(name, proposal)
                if existing is not None:
                    return existing, True
                continue
            body = json_body(response, self.label)
            if response.status_code == 201:
                return body, False
            if response.status_code == 400:
                raise RequestRejected(f"{self.label} rejected requestgroup {name!r}", errors=body)
            raise FacilityError(f"{self.label}: submit answered HTTP {response.status_code}: {str(body)[:300]}")
        raise AmbiguousSubmission(f"{last}; not found by name after {self.settings.attempts} attempts")

    def find_by_name(self, name: str, proposal: str | None = None) -> dict[str, Any] | None:
        """The newest requestgroup with exactly this name (the portal's ``name`` filter is "contains")."""
        params = {"name": name, "limit": PAGE_LIMIT}
        if proposal:
            params["proposal"] = proposal
        matches = [g for g in self.list_groups(params) if g.get("name") == name]
        return max(matches, key=lambda g: g["id"]) if matches else None

    def list_groups(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every requestgroup matching ``params``, following the ``next`` links."""
        yield from self._pages(self.portal, "/api/requestgroups/", params)

    def _pages(self, client: Any, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url: str | None = path
        query: dict[str, Any] | None = params
        while url:
            response = self._call("GET", url, client=client, params=query)
            if response.status_code != 200:
                raise FacilityError(f"{self.label}: GET {path} answered HTTP {response.status_code}")
            page = json_body(response, self.label)
            yield from page.get("results", [])
            url, query = page.get("next"), None  # "next" carries the query (absolute URL)

    def group(self, group_id: str | int) -> dict[str, Any] | None:
        """``GET /api/requestgroups/{id}/`` (None on 404)."""
        response = self._call("GET", f"/api/requestgroups/{group_id}/")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise FacilityError(f"{self.label}: requestgroup {group_id} answered HTTP {response.status_code}")
        return json_body(response, self.label)

    def cancel(self, group_id: str | int) -> dict[str, Any]:
        """``POST /api/requestgroups/{id}/cancel/``: cancels every request of the group."""
        response = self._call("POST", f"/api/requestgroups/{group_id}/cancel/")
        body = json_body(response, self.label)
        if response.status_code == 200:
            return body
        detail = "; ".join(body.get("errors", [])) if isinstance(body, dict) and "errors" in body else str(body)
        if response.status_code == 404:
            raise FacilityError(f"{self.label} has no requestgroup {group_id}")
        raise FacilityError(f"{self.label} refused to cancel requestgroup {group_id}: {detail}")

    # -- archive ------------------------------------------------------------------------------------------------
    def frames(self, request_id: str | int) -> Iterator[dict[str, Any]]:
        """The science archive's frames of one request (``GET /frames/?request_id=``)."""
        yield from self._pages(self.archive, "/frames/", {"request_id": request_id, "limit": 1000})


# -- payloads ---------------------------------------------------------------------------------------------------
def _singular(group: str) -> str:
    # /api/instruments/ names element groups in the plural ("filters", "slits"); instrument_configs use the singular.
    return group[:-1] if group.endswith("s") else group


def build_requestgroup(settings: OcsSettings, request: ObservationRequest, instrument: dict[str, Any]) -> dict:
    """The requestgroup for one spectrum (or image) of one target, from the instrument's own defaults.

    Everything instrument-specific comes from the instrument's ``/api/instruments/`` entry (telescope class,
    default configuration type, default optical elements and modes) unless the settings name it.
    """
    optical: dict[str, str] = {}
    for group, elements in (instrument.get("optical_elements") or {}).items():
        chosen = next((e["code"] for e in elements if e.get("default")), None)
        chosen = chosen or next((e["code"] for e in elements if e.get("schedulable")), None)
        if chosen:
            optical[_singular(group)] = chosen
    optical.update(settings.optical_elements)
    modes = instrument.get("modes") or {}
    instrument_config: dict[str, Any] = {
        "exposure_time": request.exposure_s, "exposure_count": settings.exposure_count, "optical_elements": optical,
    }
    readout = settings.readout_mode or (modes.get("readout") or {}).get("default")
    if readout:
        instrument_config["mode"] = readout
    rotator = settings.rotator_mode or (modes.get("rotator") or {}).get("default")
    if rotator:
        instrument_config["rotator_mode"] = rotator
    configuration_type = (settings.configuration_type or instrument.get("default_configuration_type")
                          or ("SPECTRUM" if instrument.get("type") == "SPECTRA" else "EXPOSE"))
    return {
        "name": request.name,
        "proposal": settings.proposal,
        "ipp_value": settings.ipp_value,
        "operator": "SINGLE",
        "observation_type": settings.observation_type,
        "requests": [{
            "configurations": [{
                "type": configuration_type,
                "instrument_type": settings.instrument_type,
                "target": {"name": request.target_name, "type": "ICRS", "ra": round(request.ra, 6),
                           "dec": round(request.dec, 6), "epoch": 2000},
                "constraints": {"max_airmass": request.max_airmass,
                                "min_lunar_distance": settings.min_lunar_distance},
                "instrument_configs": [instrument_config],
                "acquisition_config": {"mode": settings.acquisition_mode} if settings.acquisition_mode else {},
                "guiding_config": {},
            }],
            "windows": [{"start": _iso(request.window_start), "end": _iso(request.window_end)}],
            "location": {"telescope_class": instrument.get("class", "")},
            "observation_note": request.note[:255],
        }],
    }


def submission_from_group(group: dict[str, Any], portal_url: str, found_existing: bool = False) -> Submission:
    """A :class:`Submission` from a portal requestgroup document."""
    parts = tuple(Part(str(r["id"]), normalize_state(r["state"]), r["state"]) for r in group.get("requests", []))
    durations = [r.get("duration") for r in group.get("requests", []) if r.get("duration") is not None]
    return Submission(
        facility_id=str(group["id"]), state=normalize_state(group["state"]), native_state=group["state"],
        parts=parts, url=f"{portal_url.rstrip('/')}/requestgroups/{group['id']}/",
        duration_s=float(sum(durations)) if durations else None, response=group, found_existing=found_existing,
    )


def update_from_group(record: RequestRecord, group: dict[str, Any]) -> StatusUpdate:
    """A :class:`StatusUpdate` from a requestgroup document."""
    parts = tuple(Part(str(r["id"]), normalize_state(r["state"]), r["state"]) for r in group.get("requests", []))
    return StatusUpdate(record.request_id, normalize_state(group["state"]), group["state"], parts)


# -- the facility verbs (shared by every OCS facility plugin) ----------------------------------------------------
class OcsFacility:
    """The facility verbs of one OCS portal facility; its methods are what a ``FacilitySpec`` carries."""

    def __init__(self, label: str) -> None:
        """``label`` names the facility in messages ("LCO", "SOAR")."""
        self.label = label

    def client(self, settings: OcsSettings) -> OcsClient:
        """An open client for these settings."""
        return OcsClient(settings, self.label)

    def validate(self, settings: OcsSettings, request: ObservationRequest) -> Validation:
        """Build the requestgroup and ask the portal's ``/validate/`` what it thinks (nothing is created)."""
        with self.client(settings) as ocs:
            try:
                instrument = ocs.instrument(settings.instrument_type)
            except UnknownInstrument as exc:
                return Validation(False, {}, errors={"instrument_type": [str(exc)]})
            payload = build_requestgroup(settings, request, instrument)
            answer = ocs.validate(payload)
        errors = answer.get("errors") or {}
        duration = (answer.get("request_durations") or {}).get("duration")
        return Validation(not errors, payload, errors or None, float(duration) if duration is not None else None)

    def submit(self, settings: OcsSettings, request: ObservationRequest) -> Submission:
        """Submit the requestgroup (idempotent by its name; see :meth:`OcsClient.create`)."""
        with self.client(settings) as ocs:
            payload = build_requestgroup(settings, request, ocs.instrument(settings.instrument_type))
            group, existing = ocs.create(payload)
        return submission_from_group(group, settings.portal_url, existing)

    def lookup(self, settings: OcsSettings, name: str) -> Submission | None:
        """The requestgroup alertmux submitted under ``name``, if the portal has it."""
        with self.client(settings) as ocs:
            group = ocs.find_by_name(name, settings.proposal or None)
        return submission_from_group(group, settings.portal_url, True) if group else None

    def status(self, settings: OcsSettings, records: Sequence[RequestRecord]) -> list[StatusUpdate]:
        """Every record's state from one paged listing of the proposal's groups created since the oldest record.

        TOM Toolkit makes two calls per record (tom_base issue #1378); this makes one per hundred groups, and
        fetches a group on its own only when the listing misses it (another proposal, say).
        """
        wanted = {r.facility_id: r for r in records if r.facility_id}
        if not wanted:
            return []
        oldest = min(r.created_ms for r in wanted.values())
        since = datetime.fromtimestamp(oldest / 1000, UTC) - timedelta(days=1)
        params: dict[str, Any] = {"created_after": _iso(since), "limit": PAGE_LIMIT}
        if settings.proposal:
            params["proposal"] = settings.proposal
        updates = []
        with self.client(settings) as ocs:
            seen = {}
            for group in ocs.list_groups(params):
                if str(group["id"]) in wanted:
                    seen[str(group["id"])] = group
            for group_id, record in wanted.items():
                group = seen.get(group_id) or ocs.group(group_id)
                if group is None:
                    updates.append(StatusUpdate(record.request_id, "failed", "NOT_FOUND",
                                                detail=f"{self.label} has no requestgroup {group_id}"))
                    continue
                updates.append(update_from_group(record, group))
        return updates

    def cancel(self, settings: OcsSettings, record: RequestRecord) -> StatusUpdate:
        """Cancel the record's requestgroup (every request in it: OCS cancels whole groups)."""
        with self.client(settings) as ocs:
            group = ocs.cancel(record.facility_id or "")
        return update_from_group(record, group)

    def data_products(self, settings: OcsSettings, record: RequestRecord) -> list[DataProduct]:
        """The archive frames of every request in the record's group."""
        products = []
        with self.client(settings) as ocs:
            for part in record.parts:
                for frame in ocs.frames(part.part_id):
                    products.append(DataProduct(
                        product_id=str(frame["id"]), filename=frame.get("filename") or frame.get("basename", ""),
                        url=frame.get("url", ""), created=frame.get("observation_date") or frame.get("DATE_OBS"),
                        kind=frame.get("configuration_type") or frame.get("OBSTYPE") or "",
                    ))
        return products

    def instruments(self, settings: OcsSettings) -> dict[str, Any]:
        """What the portal offers right now."""
        with self.client(settings) as ocs:
            return ocs.instruments()


