"""The follow-up verbs the command line and the demo share: submit a ranking, poll, cancel, fetch, report.

Telescope time costs money, so ``submit`` is a dry run unless ``confirm``: it validates every request (at the
facility where it can) and shows what would be sent. Before anything is sent the core checks, for every facility
alike, that the object's position is known, that the exposure is feasible for the telescope's aperture, that the
target is observable (airmass and darkness) within the window from one of the facility's sites, and that the
proposal stays within its caps on requests and hours. A request is recorded (``unconfirmed``) before it is sent
and updated with the answer, so a crash never loses track of what may be at the telescope.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from alertmux.errors import UsageError
from alertmux.followup.errors import AmbiguousSubmission, FacilityError, RequestRejected
from alertmux.followup.exptime import MAX_EXPOSURE_S, exposure_time, feasible_exposure
from alertmux.followup.http import make_client, send
from alertmux.followup.models import (
    OPEN,
    TERMINAL,
    ObservationRequest,
    RankedTarget,
    RequestRecord,
    StatusUpdate,
    Submission,
    Validation,
    flatten_errors,
)
from alertmux.followup.settings import FacilitySettings, load_settings, redact
from alertmux.followup.storage import FollowupStore
from alertmux.followup.visibility import now_utc, visibility
from alertmux.host import PluginHost
from alertmux.specs import FacilitySpec

log = logging.getLogger(__name__)
Action = Literal["would submit", "submitted", "exists", "skipped", "invalid", "rejected", "unconfirmed", "failed"]


@dataclass(frozen=True, slots=True)
class Facility:
    """A facility plugin with its validated settings."""

    spec: FacilitySpec
    settings: FacilitySettings

    @property
    def name(self) -> str:
        """The facility's plugin name."""
        return self.spec.name


def open_facility(host: PluginHost, name: str, table: Mapping[str, Any], overrides: Mapping[str, Any] = ()) -> Facility:
    """The facility ``name`` with its ``[facilities.NAME]`` table (plus ``overrides``) validated."""
    spec = host.facility(name)
    return Facility(spec, load_settings(spec.config_model, name, {**dict(table), **dict(overrides)}))


@dataclass(frozen=True, slots=True)
class Planned:
    """What ``submit`` did (or would do) with one ranked object."""

    dia_object_id: int
    rank: int
    action: Action
    reason: str
    request: ObservationRequest | None = None
    validation: Validation | None = None
    record: RequestRecord | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-able summary (payloads are already redacted)."""
        out: dict[str, Any] = {"object": self.dia_object_id, "rank": self.rank, "action": self.action,
                               "reason": self.reason}
        if self.request is not None:
            out["exposure_s"] = round(self.request.exposure_s, 1)
            out["window"] = [self.request.window_start.isoformat(), self.request.window_end.isoformat()]
            out["name"] = self.request.name
        if self.validation is not None:
            out["duration_s"] = self.validation.duration_s
            out["server_checked"] = self.validation.server_checked
            out["payload"] = dict(self.validation.payload)
            if self.validation.errors:
                out["errors"] = self.validation.error_lines()
        if self.record is not None:
            out["request_id"] = self.record.request_id
            out["state"] = self.record.state
            out["native_state"] = self.record.native_state
            out["facility_id"] = self.record.facility_id
        return out


def request_name(dia_object_id: int, attempt: int = 1) -> str:
    """The unique name of the request for an object (its idempotency key at the facility, <= 50 characters)."""
    return f"alertmux-{dia_object_id}" + (f"-{attempt}" if attempt > 1 else "")


def _too_faint(mag: float | None, aperture: float, snr: float) -> str:
    if mag is None:
        return "no magnitude known"
    hours = exposure_time(mag, aperture, snr) / 3600
    return f"too faint: {mag:.2f} mag needs {hours:.1f} h on a {aperture:g} m at S/N {snr:g} (limit 2 h)"


def submit_ranking(
    followup: FollowupStore,
    facility: Facility,
    *,
    top: int,
    ranking_id: int | None = None,
    confirm: bool = False,
    resubmit: bool = False,
    retry_unconfirmed: bool = False,
    on_result: Callable[[Planned], None] | None = None,
) -> list[Planned]:
    """Submit (or, without ``confirm``, validate only) up to ``top`` objects of a stored ranking, best first.

    Objects are taken in rank order; one that fails a check is skipped with its reason and the next one is tried,
    until ``top`` requests would be (or were) sent. An object with a live request at any facility is skipped; one
    whose earlier requests all ended (expired, canceled, failed) only with ``resubmit``.

    Raises:
        UsageError: No ranking stored, or no proposal configured for a real submission.
        FacilityAuthError: The facility refused the credentials (nothing more is sent).
        FacilityUnavailable: The facility did not answer (the request is recorded as failed, not sent).
    """
    ranking = followup.ranking(ranking_id)
    if ranking is None:
        what = "no ranking stored" if ranking_id is None else f"no ranking {ranking_id}"
        raise UsageError(f"{what}: run `alertmux followup rank` first")
    settings = facility.settings
    if confirm and not settings.proposal:
        raise UsageError(f"set proposal in [facilities.{facility.name}] before submitting")
    used_requests, used_hours = followup.usage(facility.name, settings.proposal)
    results: list[Planned] = []
    counted = 0

    def emit(planned: Planned) -> None:
        results.append(planned)
        if on_result:
            on_result(planned)

    for target in ranking.targets:
        if counted >= top:
            break
        planned = _plan_one(followup, facility, target, ranking.ranking_id, resubmit, retry_unconfirmed)
        if isinstance(planned, Planned):
            emit(planned)
            continue
        request, attempt_record = planned
        validation = facility.spec.validate(settings, request)
        if not validation.ok:
            emit(Planned(target.dia_object_id, target.rank, "invalid", "; ".join(validation.error_lines())[:2000]
                         or "the facility found it invalid", request, validation))
            continue
        hours = (validation.duration_s or request.exposure_s) / 3600
        if used_requests + 1 > settings.max_requests or used_hours + hours > settings.max_hours:
            emit(Planned(target.dia_object_id, target.rank, "skipped",
                         f"cap reached for proposal {settings.proposal or '(none)'}: {used_requests} requests and "
                         f"{used_hours:.2f} h used of {settings.max_requests} and {settings.max_hours:g} h (set "
                         f"max_requests / max_hours in [facilities.{facility.name}])", request, validation))
            continue
        if not confirm:
            used_requests, used_hours, counted = used_requests + 1, used_hours + hours, counted + 1
            emit(Planned(target.dia_object_id, target.rank, "would submit", "dry run: pass --confirm to send",
                         request, validation))
            continue
        result = _send(followup, facility, target, ranking.ranking_id, request, validation, attempt_record)
        emit(result)
        if result.action in ("submitted", "exists", "unconfirmed"):
            used_requests, used_hours, counted = used_requests + 1, used_hours + hours, counted + 1
    return results


def _plan_one(
    followup: FollowupStore, facility: Facility, target: RankedTarget, ranking_id: int, resubmit: bool,
    retry_unconfirmed: bool,
) -> Planned | tuple[ObservationRequest, RequestRecord | None]:
    settings = facility.settings
    skip = lambda reason: Planned(target.dia_object_id, target.rank, "skipped", reason)  # noqa: E731
    earlier = followup.requests_for_object(target.dia_object_id)
    retry_record: RequestRecord | None = None
    for record in earlier:
        if record.state == "unconfirmed" and record.facility == facility.name:
            if facility.spec.lookup is None and not retry_unconfirmed:
                return skip(f"request {record.request_id} was sent without an answer and {facility.name} cannot be "
                            "asked whether it arrived: check at the facility, then pass --retry-unconfirmed to send "
                            "it again")
            retry_record = record
        elif record.state not in TERMINAL:
            return skip(f"already requested: request {record.request_id} at {record.facility} is {record.state}")
    if retry_record is None and earlier and not resubmit:
        last = earlier[-1]
        return skip(f"requested before (request {last.request_id} at {last.facility}: {last.state}); pass "
                    "--resubmit to ask again")
    if target.ra is None or target.dec is None:
        return skip("no position known for the object (positions are recorded from the alerts)")
    aperture = facility.spec.aperture_m
    if aperture is not None:
        exposure = feasible_exposure(target.last_mag, aperture, settings.snr)
        if exposure is None:
            return skip(_too_faint(target.last_mag, aperture, settings.snr))
    else:
        exposure = target.exposure_s
        if exposure is None or exposure > MAX_EXPOSURE_S:
            return skip("no feasible exposure time in the ranking")
    start = now_utc().replace(microsecond=0)
    end = start + timedelta(hours=settings.window_hours)
    if settings.sites:
        seen = visibility(target.ra, target.dec, [(s.code, s.latitude, s.longitude) for s in settings.sites], start,
                          end, max_airmass=settings.max_airmass, sun_altitude_max=settings.twilight_deg)
        best = max(seen, key=lambda v: v.hours)
        needed = max(settings.min_visible_hours, exposure / 3600)
        if best.hours < needed:
            sites = ", ".join(s.code for s in settings.sites)
            return skip(f"not observable: at most {best.hours:.1f} h below airmass {settings.max_airmass:g} in the "
                        f"dark from {sites} in the next {settings.window_hours:g} h (needs {needed:.1f} h)")
    attempt = 1 + sum(1 for r in earlier if r.facility == facility.name and r is not retry_record)
    name = retry_record.name if retry_record else request_name(target.dia_object_id, attempt)
    request = ObservationRequest(
        name=name, dia_object_id=target.dia_object_id, target_name=f"alertmux-{target.dia_object_id}",
        ra=target.ra, dec=target.dec, exposure_s=float(math.ceil(exposure)), window_start=start, window_end=end,
        max_airmass=settings.max_airmass, priority=target.priority, mag=target.last_mag, band=target.last_band,
        note=f"alertmux ranking {ranking_id}, rank {target.rank}: {target.reason}"[:255],
    )
    return request, retry_record


def _send(
    followup: FollowupStore, facility: Facility, target: RankedTarget, ranking_id: int, request: ObservationRequest,
    validation: Validation, record: RequestRecord | None,
) -> Planned:
    settings = facility.settings
    payload = redact(validation.payload)
    if record is None:
        record = followup.create_request(
            facility=facility.name, name=request.name, proposal=settings.proposal, dia_object_id=target.dia_object_id,
            ranking_id=ranking_id, priority=target.priority, payload=payload, exposure_s=request.exposure_s,
            duration_s=validation.duration_s,
        )
    try:
        submission = facility.spec.submit(settings, request)
    except RequestRejected as exc:
        followup.update_request(record.request_id, state="failed", native_state="REJECTED",
                                detail="; ".join(flatten_errors(exc.errors)) or str(exc))
        return Planned(target.dia_object_id, target.rank, "rejected", str(exc), request, validation,
                       followup.request(record.request_id))
    except AmbiguousSubmission as exc:
        if facility.spec.lookup is not None:
            hint = "alertmux looks it up by name before any new attempt (`alertmux followup status` does it)"
        else:
            hint = (f"{facility.name} offers no way to look it up, so alertmux will not send it again by itself: "
                    "check at the facility, then `alertmux followup submit --retry-unconfirmed` if it did not arrive")
        followup.update_request(record.request_id, state="unconfirmed", native_state="NO_ANSWER",
                                detail=f"{exc}; {hint}")
        return Planned(target.dia_object_id, target.rank, "unconfirmed", f"{exc}; {hint}", request, validation,
                       followup.request(record.request_id))
    except FacilityError as exc:
        # Auth errors and "never got through" (connection refused, 429/503 to the end): nothing was created.
        followup.update_request(record.request_id, state="failed", native_state="NOT_SENT", detail=str(exc))
        raise
    _apply(followup, record.request_id, submission)
    action: Action = "exists" if submission.found_existing else "submitted"
    reason = (f"already at {facility.name} as {submission.facility_id} (found by name; not sent again)"
              if submission.found_existing else f"{facility.name} accepted it as {submission.facility_id}")
    return Planned(target.dia_object_id, target.rank, action, reason, request, validation,
                   followup.request(record.request_id))


def _apply(followup: FollowupStore, request_id: int, submission: Submission) -> None:
    followup.update_request(
        request_id, state=submission.state, native_state=submission.native_state,
        facility_id=submission.facility_id, url=submission.url or None, parts=submission.parts,
        duration_s=submission.duration_s, response=redact(submission.response) if submission.response else None,
        submitted=True, detail="found at the facility by name" if submission.found_existing else "accepted",
    )


def resolve_unconfirmed(followup: FollowupStore, facility: Facility) -> list[RequestRecord]:
    """Look every ``unconfirmed`` request of the facility up by name (where it can be asked) and record the answer.

    A request found is recorded with the facility's state; one not found stays ``unconfirmed`` with a note (the
    next ``submit`` sends it again under the same name). Returns the records as they are afterwards.
    """
    records = followup.requests(facility.name, ["unconfirmed"])
    if facility.spec.lookup is None:
        return records
    out = []
    for record in records:
        found = facility.spec.lookup(facility.settings, record.name)
        if found is not None:
            _apply(followup, record.request_id, replace(found, found_existing=True))
        else:
            followup.update_request(record.request_id, state="unconfirmed", native_state="NOT_FOUND",
                                    detail=f"not at {facility.name} under its name: it never arrived; the next "
                                           "submit sends it again")
        out.append(followup.request(record.request_id))  # type: ignore[arg-type]
    return out


def poll(followup: FollowupStore, facility: Facility) -> list[StatusUpdate]:
    """Bring every open request of the facility up to date (one bulk status call where the facility allows it).

    Returns:
        The updates the facility gave (records already stored). A facility without a status API gives none.
    """
    resolve_unconfirmed(followup, facility)
    records = [r for r in followup.open_requests(facility.name) if r.state != "unconfirmed"]
    if not records or not facility.spec.status_api:
        return []
    updates = list(facility.spec.status(facility.settings, records))
    for update in updates:
        followup.update_request(update.request_id, state=update.state, native_state=update.native_state,
                                parts=update.parts, detail=update.detail)
    return updates


def cancel(followup: FollowupStore, facility: Facility, request_id: int) -> StatusUpdate:
    """Cancel a request at the facility and record the outcome.

    Raises:
        UsageError: Unknown request, another facility's, already ended, or the facility offers no cancel.
    """
    record = followup.request(request_id)
    if record is None or record.facility != facility.name:
        raise UsageError(f"no {facility.name} request {request_id} in the store")
    if facility.spec.cancel is None:
        raise UsageError(f"{facility.name} offers no cancel: withdraw request {record.facility_id or record.name} "
                         "at the facility itself")
    if record.state in TERMINAL:
        raise UsageError(f"request {request_id} is already {record.state}")
    if record.state not in OPEN or record.facility_id is None:
        raise UsageError(f"request {request_id} was never confirmed by {facility.name}: run `alertmux followup "
                         "status` first")
    update = facility.spec.cancel(facility.settings, record)
    followup.update_request(request_id, state=update.state, native_state=update.native_state, parts=update.parts,
                            detail=update.detail or "canceled by the user")
    return update


def fetch_products(
    followup: FollowupStore, facility: Facility, request_id: int, download_dir: Path | None = None
) -> list[dict[str, Any]]:
    """List a request's data products at the facility, record them and optionally download them."""
    record = followup.request(request_id)
    if record is None or record.facility != facility.name:
        raise UsageError(f"no {facility.name} request {request_id} in the store")
    if facility.spec.data_products is None:
        raise UsageError(f"{facility.name} gives no data products through an API")
    products = list(facility.spec.data_products(facility.settings, record))
    followup.add_products(request_id, products)
    out = []
    for product in products:
        entry = {"request_id": request_id, "product_id": product.product_id, "filename": product.filename,
                 "url": product.url, "created": product.created, "kind": product.kind}
        if download_dir is not None:
            path = download(product.url, download_dir / Path(product.filename).name, facility.settings)
            followup.set_product_path(request_id, product.product_id, str(path))
            entry["path"] = str(path)
        out.append(entry)
    return out


def download(url: str, path: Path, settings: FacilitySettings) -> Path:
    """Stream one file to ``path`` (through a temporary name, so a failure leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with make_client("", timeout_s=settings.timeout_s) as http:
        response = send(http, "GET", url, facility="download", idempotent=True, attempts=settings.attempts,
                        max_wait=settings.max_retry_wait_s)
        if response.status_code != 200:
            raise FacilityError(f"download of {path.name} failed: HTTP {response.status_code}")
        partial.write_bytes(response.content)
    partial.replace(path)
    return path


def status_rows(followup: FollowupStore, facility: str | None = None) -> list[dict[str, Any]]:
    """Stored requests as rows for ``alertmux followup status``."""
    return [
        {"request_id": r.request_id, "facility": r.facility, "object": r.dia_object_id, "state": r.state,
         "native_state": r.native_state, "facility_id": r.facility_id, "name": r.name, "priority": r.priority,
         "parts": [{"id": p.part_id, "state": p.state, "native_state": p.native_state} for p in r.parts],
         "hours": round((r.duration_s or r.exposure_s or 0) / 3600, 3), "url": r.url, "detail": r.detail}
        for r in followup.requests(facility)
    ]


__all__ = [
    "Facility", "Planned", "cancel", "download", "fetch_products", "open_facility", "poll",
    "request_name", "resolve_unconfirmed", "status_rows", "submit_ranking",
]
