"""A loopback emulator of an OCS Observation Portal and its science archive, answering as the real server does.

The answers follow the portal server's own (``shared/data/facilities/lco_observation_portal/real_responses``,
recorded from observation-portal 4.18.9): validation always 200 with ``{"request_durations", "errors"}``; a submit
201 with the stored group (defaults filled in) or 400 with the same nested error tree (a ``{}`` for each list
item without errors, ``non_field_errors`` for object-level problems); the visibility check; cancel 200 (also
when repeated); 404 ``{"detail": "No RequestGroup matches the given query."}``; 403 ``{"detail": "Invalid
token."}``; throttling 429 with ``Retry-After``, as Django REST framework does. Everything is built by this code;
nothing is copied from the recordings.

Time is a :class:`~alertmux.followup.emulator.Clock`: a request completes ``complete_after_s`` after submission
(or ends as ``outcomes`` says, by group name), its window can expire, and tests move the clock instead of
sleeping. A completed request gets archive frames. ``inject`` makes the next matching call fail in a chosen way
(drop the connection after acting, answer slowly, answer 5xx) to test what a client does about it.
"""

from __future__ import annotations

import copy
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from alertmux.followup.emulator import Clock, Fault, Faults, LoopbackServer, RateLimiter, Reply, Request
from alertmux.followup.visibility import visibility
from alertmux_lco.catalogue import Catalogue

REQUIRED = "This field is required."
STATES = ("PENDING", "COMPLETED", "WINDOW_EXPIRED", "FAILURE_LIMIT_REACHED", "CANCELED")
TERMINAL = ("COMPLETED", "WINDOW_EXPIRED", "FAILURE_LIMIT_REACHED", "CANCELED")
PAGE_SIZE = 10
_ROUTE = re.compile(r"^/api/(requestgroups|requests)/(\d+)/(cancel/)?$")
_FRAME = re.compile(r"^/archive/frames/(\d+)/$")
_DOWNLOAD = re.compile(r"^/archive/download/(\d+)/([^/]+)$")


def _now_iso(moment: datetime, micro: bool = True) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: Any, *, integer: bool = False) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if integer and number != int(number):
        return None
    return number


def _check_number(errors: dict[str, Any], data: Mapping[str, Any], key: str, *, required: bool = True,
                  minimum: float | None = None, maximum: float | None = None, integer: bool = False) -> None:
    if key not in data or data[key] is None:
        if required:
            errors[key] = [REQUIRED if key not in data else "This field may not be null."]
        return
    number = _number(data[key], integer=integer)
    if number is None:
        errors[key] = ["A valid integer is required." if integer else "A valid number is required."]
    elif minimum is not None and number < minimum:
        errors[key] = [f"Ensure this value is greater than or equal to {minimum}."]
    elif maximum is not None and number > maximum:
        errors[key] = [f"Ensure this value is less than or equal to {maximum}."]


def _check_choice(errors: dict[str, Any], data: Mapping[str, Any], key: str, choices: Sequence[str],
                  required: bool = True) -> None:
    if key not in data:
        if required:
            errors[key] = [REQUIRED]
    elif data[key] not in choices:
        errors[key] = [f'"{data[key]}" is not a valid choice.']


def _list_errors(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return items if any(items) else None


class OcsPortalEmulator:
    """An OCS portal on 127.0.0.1; use as a context manager, then point a client at :attr:`url`."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        tokens: Mapping[str, str] | None = None,
        proposals: Mapping[str, float] | None = None,
        members: Mapping[str, Sequence[str]] | None = None,
        complete_after_s: float = 3600.0,
        outcomes: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
        rate_period_s: float = 1.0,
        semester: str = "2026B",
        name: str = "ocs-portal-emulator",
    ) -> None:
        """Configure the portal.

        Args:
            catalogue: the instruments it offers and the sites of each telescope class.
            tokens: API token -> username (default ``{"test-token": "observer"}``).
            proposals: proposal id -> hours allocated (default ``{"LocalTestProposal": 100}``).
            members: username -> proposals they belong to (default: every user in every proposal).
            complete_after_s: how long after submission a request is observed.
            outcomes: requestgroup name -> its final state instead of COMPLETED (``FAILURE_LIMIT_REACHED``...).
            rate_limit: calls per ``rate_period_s`` per token before 429 (None: unlimited).
            rate_period_s: the throttling window.
            semester: named in time-allocation errors.
            name: the server's name (thread name, ``Server`` header).
        """
        self.catalogue = catalogue
        self.tokens = dict(tokens or {"test-token": "observer"})
        self.proposals = dict(proposals or {"LocalTestProposal": 100.0})
        self.members = {u: set(p) for u, p in (members or {}).items()}
        self.complete_after_s = complete_after_s
        self.outcomes = dict(outcomes or {})
        self.limiter = RateLimiter(rate_limit, rate_period_s)
        self.semester = semester
        self.clock = Clock()
        self.groups: dict[int, dict[str, Any]] = {}
        self.frames: dict[int, dict[str, Any]] = {}
        self.faults = Faults()
        self._lock = threading.RLock()
        self._next = {"group": 1, "request": 1, "configuration": 1, "frame": 1}
        self.server = LoopbackServer(self.handle, name)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> OcsPortalEmulator:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        """The portal's base URL (the archive is under ``/archive``)."""
        return self.server.url

    def settings(self, token: str | None = None, proposal: str | None = None) -> dict[str, Any]:
        """Settings that point an OCS facility at this emulator."""
        return {"portal_url": self.url, "archive_url": f"{self.url}/archive",
                "token": token or next(iter(self.tokens)), "proposal": proposal or next(iter(self.proposals))}

    def inject(self, fault: Fault) -> None:
        """Fail the next call that matches ``fault`` (once)."""
        self.faults.inject(fault)

    def _id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] += 1
        return value

    # -- dispatch -----------------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        """Answer one HTTP request."""
        auth = request.headers.get("authorization", "")
        user = None
        if auth:
            scheme, _, token = auth.partition(" ")
            user = self.tokens.get(token.strip()) if scheme == "Token" else None
            if user is None:
                return Reply.json(403, {"detail": "Invalid token."})
        wait = self.limiter.wait_needed(auth or "anonymous")
        if wait:
            seconds = max(1, math.ceil(wait))
            unit = "second" if seconds == 1 else "seconds"
            return Reply.json(429, {"detail": f"Request was throttled. Expected available in {seconds} {unit}."},
                              headers={"Retry-After": str(seconds)})
        fault = self.faults.take(request)
        if fault is not None and fault.kind == "status":
            return Reply.json(fault.status, {"detail": "A server error occurred."})
        with self._lock:
            self._advance_states()
            reply = self._route(request, user)
        return Faults.apply(fault, reply)

    def _route(self, request: Request, user: str | None) -> Reply:
        path, method = request.path, request.method
        if path.startswith("/archive/"):
            return self._archive(request, user)
        if path == "/api/instruments/" and method == "GET":
            return self._instruments(request)
        if path == "/api/requestgroups/validate/" and method == "POST":
            return self._validate(request, user)
        if path == "/api/requestgroups/":
            if method == "POST":
                return self._create(request, user)
            if method == "GET":
                return self._list(request, user)
            return self._not_allowed(method)
        match = _ROUTE.match(path)
        if match:
            kind, number, cancel = match.group(1), int(match.group(2)), match.group(3)
            if kind == "requestgroups" and cancel:
                return self._cancel(number, user) if method == "POST" else self._not_allowed(method)
            if method != "GET":
                return self._not_allowed(method)
            return self._get_group(number, user) if kind == "requestgroups" else self._get_request(number, user)
        return Reply.json(404, {"detail": "Not found."})

    @staticmethod
    def _not_allowed(method: str) -> Reply:
        return Reply.json(405, {"detail": f'Method "{method}" not allowed.'})

    @staticmethod
    def _anonymous() -> Reply:
        return Reply.json(403, {"detail": "Authentication credentials were not provided."})

    def _visible_groups(self, user: str | None) -> list[dict[str, Any]]:
        if user is None:
            return []  # anonymous users see public proposals only, and none is public here
        return [g for g in self.groups.values() if self._member(user, g["proposal"])]

    def _member(self, user: str, proposal: str) -> bool:
        return proposal in self.proposals and (user not in self.members or proposal in self.members[user])

    # -- instruments --------------------------------------------------------------------------------------------
    def _instruments(self, request: Request) -> Reply:
        wanted_class, wanted_type = request.param("telescope_class"), request.param("instrument_type")
        return Reply.json(200, {
            code: entry for code, entry in self.catalogue.instruments.items()
            if (wanted_class is None or entry["class"] == wanted_class)
            and (wanted_type is None or code == wanted_type)
        })

    # -- validation ---------------------------------------------------------------------------------------------
    def _validate(self, request: Request, user: str | None) -> Reply:
        if user is None:
            return self._anonymous()
        try:
            body = request.json()
        except ValueError as exc:
            return Reply.json(400, {"detail": f"JSON parse error - {exc}"})
        errors, durations = self.check(body, user)
        return Reply.json(200, {"request_durations": durations if not errors else {}, "errors": errors})

    def check(self, body: Any, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate a requestgroup as the portal's serializers do: (errors, request_durations)."""
        if not isinstance(body, dict):
            return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(body).__name__}."]}, {}
        errors: dict[str, Any] = {}
        if not body.get("name"):
            errors["name"] = [REQUIRED if "name" not in body else "This field may not be blank."]
        elif len(str(body["name"])) > 50:
            errors["name"] = ["Ensure this field has no more than 50 characters."]
        if "proposal" not in body:
            errors["proposal"] = [REQUIRED]
        elif body["proposal"] not in self.proposals:
            errors["proposal"] = [f'Invalid pk "{body["proposal"]}" - object does not exist.']
        _check_number(errors, body, "ipp_value", required=False, minimum=0.5, maximum=2.0)
        _check_choice(errors, body, "operator", ("SINGLE", "MANY"))
        _check_choice(errors, body, "observation_type",
                      ("NORMAL", "RAPID_RESPONSE", "TIME_CRITICAL", "DIRECT", "REAL_TIME"), required=False)
        requests = body.get("requests")
        if requests is None:
            errors["requests"] = [REQUIRED]
        elif not isinstance(requests, list) or not requests:
            errors["requests"] = ["This list may not be empty."]
        else:
            request_errors = _list_errors([self._check_request(r) for r in requests])
            if request_errors:
                errors["requests"] = request_errors
        if errors:
            return errors, {}
        if not self._member(user, body["proposal"]):
            return {"non_field_errors": ["You do not belong to the proposal you are trying to submit with"]}, {}
        if body["operator"] == "SINGLE" and len(requests) != 1:
            return {"non_field_errors": ["'Single' type requestgroups must have exactly one child request."]}, {}
        if body["operator"] == "MANY" and len(requests) < 2:
            return {"non_field_errors": ["'Many' type requestgroups must have more than one child request."]}, {}
        per_request, visibility_errors = [], []
        for r in requests:
            duration, detail = self._durations(r)
            per_request.append(detail)
            visibility_errors.append(self._check_visibility(r, duration))
        if any(visibility_errors):
            return {"requests": visibility_errors}, {}
        total = sum(d["duration"] for d in per_request)
        allocated = self.proposals[body["proposal"]] * 3600 - self._used(body["proposal"])
        if total > allocated:
            classes = sorted({r["location"]["telescope_class"] for r in requests})
            return {"non_field_errors": [
                f"Proposal {body['proposal']} does not have enough {body.get('observation_type', 'NORMAL').lower()} "
                f"time left allocated in semester {self.semester} on {', '.join(classes)} instruments"]}, {}
        return {}, {"requests": per_request, "duration": total}

    def _check_request(self, r: Any) -> dict[str, Any]:
        if not isinstance(r, dict):
            return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(r).__name__}."]}
        errors: dict[str, Any] = {}
        location = r.get("location")
        if not isinstance(location, dict):
            errors["location"] = [REQUIRED] if location is None else {"non_field_errors": ["Invalid data."]}
        elif not location.get("telescope_class"):
            errors["location"] = {"telescope_class": [REQUIRED]}
        configurations = r.get("configurations")
        if not isinstance(configurations, list) or not configurations:
            errors["configurations"] = [REQUIRED if configurations is None else "This list may not be empty."]
        else:
            found = _list_errors([self._check_configuration(c) for c in configurations])
            if found:
                errors["configurations"] = found
        windows = r.get("windows")
        if not isinstance(windows, list) or not windows:
            errors["windows"] = [REQUIRED if windows is None else "This list may not be empty."]
        else:
            found = _list_errors([self._check_window(w) for w in windows])
            if found:
                errors["windows"] = found
        _check_number(errors, r, "acceptability_threshold", required=False, minimum=0.0, maximum=100.0)
        _check_number(errors, r, "configuration_repeats", required=False, minimum=1, integer=True)
        if len(str(r.get("observation_note") or "")) > 255:
            errors["observation_note"] = ["Ensure this field has no more than 255 characters."]
        return errors

    def _check_configuration(self, c: Any) -> dict[str, Any]:
        if not isinstance(c, dict):
            return {"non_field_errors": ["Invalid data."]}
        errors: dict[str, Any] = {}
        configs = c.get("instrument_configs")
        if not isinstance(configs, list) or not configs:
            errors["instrument_configs"] = [REQUIRED if configs is None else "This list may not be empty."]
        else:
            found = _list_errors([self._check_instrument_config(ic, c.get("instrument_type")) for ic in configs])
            if found:
                errors["instrument_configs"] = found
        itype = c.get("instrument_type")
        instrument = self.catalogue.instruments.get(itype) if isinstance(itype, str) else None
        if itype is None:
            errors["instrument_type"] = [REQUIRED]
        elif instrument is None:
            errors["instrument_type"] = [f"Invalid instrument type {itype}. Valid instruments may include: "
                                         + ", ".join(self.catalogue.instruments)]
        if "type" not in c:
            errors["type"] = [REQUIRED]
        elif instrument is not None and c["type"] not in instrument.get("configuration_types", {}):
            errors["type"] = [f"configuration type {c['type']} is not valid for instrument type {itype}"]
        target = c.get("target")
        if not isinstance(target, dict):
            errors["target"] = [REQUIRED] if target is None else {"non_field_errors": ["Invalid data."]}
        else:
            target_errors: dict[str, Any] = {}
            if not target.get("name"):
                target_errors["name"] = [REQUIRED]
            _check_choice(target_errors, target, "type", ("ICRS", "ORBITAL_ELEMENTS", "HOUR_ANGLE", "SATELLITE"))
            if target.get("type") == "ICRS":
                _check_number(target_errors, target, "ra", minimum=0.0, maximum=360.0)
                _check_number(target_errors, target, "dec", minimum=-90.0, maximum=90.0)
            if target_errors:
                errors["target"] = target_errors
        constraints = c.get("constraints") or {}
        constraint_errors: dict[str, Any] = {}
        _check_number(constraint_errors, constraints, "max_airmass", required=False, minimum=1.0, maximum=25.0)
        _check_number(constraint_errors, constraints, "min_lunar_distance", required=False, minimum=0.0,
                      maximum=180.0)
        if constraint_errors:
            errors["constraints"] = constraint_errors
        return errors

    def _check_instrument_config(self, ic: Any, itype: Any) -> dict[str, Any]:
        if not isinstance(ic, dict):
            return {"non_field_errors": ["Invalid data."]}
        errors: dict[str, Any] = {}
        _check_number(errors, ic, "exposure_time", minimum=0.0)
        _check_number(errors, ic, "exposure_count", required=False, minimum=1, integer=True)
        instrument = self.catalogue.instruments.get(itype) if isinstance(itype, str) else None
        if instrument is None:
            return errors
        readout = (instrument.get("modes") or {}).get("readout") or {}
        codes = [m["code"] for m in readout.get("modes", [])]
        if ic.get("mode") is not None and codes and ic["mode"] not in codes:
            errors["mode"] = [f"Invalid readout mode {ic['mode']}. Valid readout modes include: {', '.join(codes)}"]
        for key, value in (ic.get("optical_elements") or {}).items():
            group = (instrument.get("optical_elements") or {}).get(f"{key}s")
            valid = [e["code"] for e in group or ()]
            if group is None or value not in valid:
                errors.setdefault("non_field_errors", []).append(
                    f"Invalid {key} {value} for instrument type {itype}. Valid {key}s: {', '.join(valid) or 'none'}")
        return errors

    @staticmethod
    def _check_window(w: Any) -> dict[str, Any]:
        if not isinstance(w, dict):
            return {"non_field_errors": ["Invalid data."]}
        errors: dict[str, Any] = {}
        start, end = _parse_time(w.get("start")), _parse_time(w.get("end"))
        for key, moment in (("start", start), ("end", end)):
            if key not in w:
                errors[key] = [REQUIRED]
            elif moment is None:
                errors[key] = ["Datetime has wrong format. Use one of these formats instead: "
                               "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."]
        if not errors and start is not None and end is not None and end < start:
            errors["non_field_errors"] = [f"Window end '{end}' cannot be earlier than window start '{start}'"]
        return errors

    def _durations(self, r: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        configurations, total = [], 0.0
        for c in r["configurations"]:
            instrument = self.catalogue.instruments[c["instrument_type"]]
            overhead = self.catalogue.overhead(c["instrument_type"])
            readout = (instrument.get("modes") or {}).get("readout") or {}
            modes = {m["code"]: m.get("overhead", 0.0) for m in readout.get("modes", [])}
            ic_durations = []
            for ic in c["instrument_configs"]:
                mode = ic.get("mode") or readout.get("default")
                per = float(ic["exposure_time"]) + float(modes.get(mode, 0.0)) + overhead.per_exposure
                ic_durations.append({"duration": per * int(ic.get("exposure_count", 1))})
            config_duration = sum(d["duration"] for d in ic_durations) + overhead.config_front_padding
            configurations.append({"instrument_configs": ic_durations, "duration": config_duration})
            total += config_duration
        first = self.catalogue.overhead(r["configurations"][0]["instrument_type"])
        duration = math.ceil((total + first.request) * int(r.get("configuration_repeats", 1)))
        return duration, {"duration": duration, "configurations": configurations,
                          "largest_interval": self._largest_interval(r)}

    def _visible(self, r: dict[str, Any]) -> tuple[float, float]:
        """(most hours observable at one site, longest uninterrupted seconds) over the request's windows."""
        target = r["configurations"][0]["target"]
        max_airmass = float((r["configurations"][0].get("constraints") or {}).get("max_airmass", 1.6))
        sites = self.catalogue.sites.get(r["location"]["telescope_class"], ())
        hours: dict[str, float] = {}
        longest = 0.0
        for w in r["windows"]:
            start, end = _parse_time(w["start"]), _parse_time(w["end"])
            assert start is not None and end is not None
            for seen in visibility(float(target["ra"]), float(target["dec"]), sites, start, end,
                                   max_airmass=max_airmass, step_minutes=5.0):
                hours[seen.site] = hours.get(seen.site, 0.0) + seen.hours
                longest = max(longest, seen.longest_s)
        return max(hours.values(), default=0.0), longest

    def _largest_interval(self, r: dict[str, Any]) -> float:
        return self._visible(r)[1]

    def _check_visibility(self, r: dict[str, Any], duration: int) -> dict[str, Any]:
        # As the portal: a request must fit in one uninterrupted stretch of visibility (its largest_interval).
        _, longest = self._visible(r)
        if longest >= duration:
            return {}
        return {"non_field_errors": [
            f"According to the constraints of the request, the target will only be visible for a maximum of "
            f"{longest / 3600:.2f} hours within the time window. This is less than the duration of your request "
            f"{duration / 3600:.2f} hours. Consider expanding the time window or loosening the airmass or lunar "
            f"separation constraints."]}

    def _used(self, proposal: str) -> float:
        return sum(r["duration"] for g in self.groups.values() if g["proposal"] == proposal
                   for r in g["requests"] if r["state"] in ("PENDING", "COMPLETED"))

    # -- requestgroups ------------------------------------------------------------------------------------------
    def _create(self, request: Request, user: str | None) -> Reply:
        if user is None:
            return self._anonymous()
        try:
            body = request.json()
        except ValueError as exc:
            return Reply.json(400, {"detail": f"JSON parse error - {exc}"})
        errors, durations = self.check(body, user)
        if errors:
            return Reply.json(400, errors)
        group = self._store(body, user, durations)
        return Reply.json(201, group)

    def _store(self, body: dict[str, Any], user: str, durations: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        stamp = _now_iso(now)
        requests = []
        for r, d in zip(body["requests"], durations["requests"], strict=True):
            configurations = []
            for priority, c in enumerate(r["configurations"], 1):
                instrument = self.catalogue.instruments[c["instrument_type"]]
                modes = instrument.get("modes") or {}
                given = c.get("constraints") or {}
                target = c["target"]
                acquisition = c.get("acquisition_config") or {}
                guiding = c.get("guiding_config") or {}
                configurations.append({
                    "id": self._id("configuration"),
                    "constraints": {
                        "max_airmass": float(given.get("max_airmass", 1.6)),
                        "min_lunar_distance": float(given.get("min_lunar_distance", 30.0)),
                        "max_lunar_phase": float(given.get("max_lunar_phase", 1.0)),
                        "max_seeing": given.get("max_seeing"), "min_transparency": given.get("min_transparency"),
                        "extra_params": given.get("extra_params", {}),
                    },
                    "instrument_configs": [self._instrument_config(ic, modes) for ic in c["instrument_configs"]],
                    "acquisition_config": {
                        "mode": acquisition.get("mode") or (modes.get("acquisition") or {}).get("default") or "OFF",
                        "exposure_time": acquisition.get("exposure_time"),
                        "extra_params": acquisition.get("extra_params", {}),
                    },
                    "guiding_config": {
                        "optional": guiding.get("optional", True),
                        "mode": guiding.get("mode") or (modes.get("guiding") or {}).get("default") or "OFF",
                        "optical_elements": guiding.get("optical_elements", {}),
                        "exposure_time": guiding.get("exposure_time"),
                        "extra_params": guiding.get("extra_params", {}),
                    },
                    "target": {
                        "type": target["type"], "name": target["name"], "ra": float(target["ra"]),
                        "dec": float(target["dec"]), "proper_motion_ra": float(target.get("proper_motion_ra", 0.0)),
                        "proper_motion_dec": float(target.get("proper_motion_dec", 0.0)),
                        "parallax": float(target.get("parallax", 0.0)), "epoch": float(target.get("epoch", 2000.0)),
                        "extra_params": target.get("extra_params", {}),
                    },
                    "instrument_type": c["instrument_type"], "type": c["type"],
                    "extra_params": c.get("extra_params", {}), "priority": priority,
                })
            first = self.catalogue.instruments[r["configurations"][0]["instrument_type"]]
            requests.append({
                "id": self._id("request"), "location": dict(r["location"]), "configurations": configurations,
                "windows": [{"start": _now_iso(_parse_time(w["start"]), micro=False),  # type: ignore[arg-type]
                             "end": _now_iso(_parse_time(w["end"]), micro=False)}  # type: ignore[arg-type]
                            for w in r["windows"]],
                "duration": d["duration"], "observation_note": r.get("observation_note", ""),
                "optimization_type": r.get("optimization_type", "TIME"), "state": "PENDING",
                "suspend_until": None, "modified": stamp, "created": stamp,
                "acceptability_threshold": float(r.get("acceptability_threshold",
                                                       first.get("default_acceptability_threshold", 90.0))),
                "configuration_repeats": int(r.get("configuration_repeats", 1)),
                "extra_params": r.get("extra_params", {}),
            })
        group = {
            "id": self._id("group"), "requests": requests, "submitter": user, "name": body["name"],
            "observation_type": body.get("observation_type", "NORMAL"), "operator": body["operator"],
            "ipp_value": float(body.get("ipp_value", 1.0)), "created": stamp, "state": "PENDING",
            "modified": stamp, "proposal": body["proposal"],
        }
        self.groups[group["id"]] = group
        return group

    @staticmethod
    def _instrument_config(ic: dict[str, Any], modes: Mapping[str, Any]) -> dict[str, Any]:
        readout = modes.get("readout") or {}
        mode = ic.get("mode") or readout.get("default")
        extra = {}
        for entry in readout.get("modes", []):
            if entry["code"] == mode:  # fill what the readout mode's schema gives defaults for (binning)
                schema = ((entry.get("validation_schema") or {}).get("extra_params") or {}).get("schema") or {}
                extra = {k: v["default"] for k, v in schema.items() if "default" in v}
        return {
            "optical_elements": ic.get("optical_elements", {}), "mode": mode,
            "exposure_time": float(ic["exposure_time"]), "exposure_count": int(ic.get("exposure_count", 1)),
            "rotator_mode": ic.get("rotator_mode", ""), "extra_params": {**extra, **(ic.get("extra_params") or {})},
        }

    def _list(self, request: Request, user: str | None) -> Reply:
        groups = sorted(self._visible_groups(user), key=lambda g: -g["id"])
        name, proposal = request.param("name"), request.param("proposal")
        states, excluded = request.query.get("state"), request.query.get("exclude_state")
        after, before = _parse_time(request.param("created_after")), _parse_time(request.param("created_before"))
        request_id = request.param("request_id")
        group_id = request.param("id")
        if name:
            groups = [g for g in groups if name.lower() in g["name"].lower()]
        if proposal:
            groups = [g for g in groups if g["proposal"] == proposal]
        if states:
            groups = [g for g in groups if g["state"] in states]
        if excluded:
            groups = [g for g in groups if g["state"] not in excluded]
        if after:
            groups = [g for g in groups if _parse_time(g["created"]) >= after]  # type: ignore[operator]
        if before:
            groups = [g for g in groups if _parse_time(g["created"]) <= before]  # type: ignore[operator]
        if request_id:
            groups = [g for g in groups if any(str(r["id"]) == request_id for r in g["requests"])]
        if group_id:
            groups = [g for g in groups if str(g["id"]) == group_id]
        return Reply.json(200, self._page(request, "/api/requestgroups/", groups))

    def _page(self, request: Request, path: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            limit = max(1, int(request.param("limit") or PAGE_SIZE))
            offset = max(0, int(request.param("offset") or 0))
        except ValueError:
            limit, offset = PAGE_SIZE, 0
        query = {k: v[-1] for k, v in request.query.items() if k not in ("limit", "offset")}

        def link(at: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'limit': limit, 'offset': at})}"

        return {
            "count": len(items),
            "next": link(offset + limit) if offset + limit < len(items) else None,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
            "results": items[offset : offset + limit],
        }

    def _get_group(self, group_id: int, user: str | None) -> Reply:
        group = self.groups.get(group_id)
        if group is None or group not in self._visible_groups(user):
            return Reply.json(404, {"detail": "No RequestGroup matches the given query."})
        return Reply.json(200, group)

    def _get_request(self, request_id: int, user: str | None) -> Reply:
        for group in self._visible_groups(user):
            for r in group["requests"]:
                if r["id"] == request_id:
                    return Reply.json(200, r)
        return Reply.json(404, {"detail": "No Request matches the given query."})

    def _cancel(self, group_id: int, user: str | None) -> Reply:
        if user is None:
            return self._anonymous()
        group = self.groups.get(group_id)
        if group is None or group not in self._visible_groups(user):
            return Reply.json(404, {"detail": "No RequestGroup matches the given query."})
        if group["state"] in ("COMPLETED", "WINDOW_EXPIRED", "FAILURE_LIMIT_REACHED"):
            return Reply.json(400, {"errors": [f"Cannot transition from request state {group['state']} to CANCELED"]})
        stamp = _now_iso(self.clock.now())
        # The portal answers the group as serialized before its requests were updated: the group CANCELED, the
        # requests still in their old state (cancel_requestgroup.json); a GET afterwards shows them CANCELED.
        answer = copy.deepcopy(group)
        for r in group["requests"]:
            if r["state"] == "PENDING":
                r["state"], r["modified"] = "CANCELED", stamp
        if group["state"] != "CANCELED":
            group["state"], group["modified"] = "CANCELED", stamp
        answer["state"], answer["modified"] = group["state"], group["modified"]
        return Reply.json(200, answer)

    # -- time passes --------------------------------------------------------------------------------------------
    def _advance_states(self) -> None:
        now = self.clock.now()
        for group in self.groups.values():
            changed = False
            for r in group["requests"]:
                if r["state"] != "PENDING":
                    continue
                created = _parse_time(r["created"])
                window_end = max(_parse_time(w["end"]) for w in r["windows"])  # type: ignore[type-var]
                done_at = created + timedelta(seconds=self.complete_after_s)  # type: ignore[operator]
                if now >= done_at and done_at <= window_end:
                    r["state"] = self.outcomes.get(group["name"], "COMPLETED")
                elif now > window_end:
                    r["state"] = "WINDOW_EXPIRED"
                else:
                    continue
                r["modified"] = _now_iso(now)
                changed = True
                if r["state"] == "COMPLETED":
                    self._observe(group, r, done_at)
            if changed:
                group["state"] = self._group_state(group)
                group["modified"] = _now_iso(now)

    @staticmethod
    def _group_state(group: dict[str, Any]) -> str:
        states = [r["state"] for r in group["requests"]]
        if any(s == "PENDING" for s in states):
            return "PENDING"
        if any(s == "COMPLETED" for s in states):
            return "COMPLETED"
        return states[0]

    # -- archive ------------------------------------------------------------------------------------------------
    def _observe(self, group: dict[str, Any], r: dict[str, Any], when: datetime) -> None:
        """Archive frames for a completed request: the science exposures, plus an arc and a lamp flat for spectra."""
        site = next(iter(self.catalogue.sites.get(r["location"]["telescope_class"], [("tst", 0, 0)])))[0]
        for c in r["configurations"]:
            instrument = self.catalogue.instruments[c["instrument_type"]]
            kinds = [c["type"]] * sum(ic["exposure_count"] for ic in c["instrument_configs"])
            if instrument.get("type") == "SPECTRA":
                kinds += ["ARC", "LAMP_FLAT"]
            for kind in kinds:
                frame_id = self._id("frame")
                day = when.strftime("%Y%m%d")
                basename = f"{site}{r['location']['telescope_class']}-{c['instrument_type'][:6].lower()}-{day}-" \
                           f"{frame_id:04d}-{'e00' if kind in ('SPECTRUM', 'EXPOSE') else 'a00'}"
                optical = next(iter(c["instrument_configs"][0]["optical_elements"].values()), "")
                exposure = c["instrument_configs"][0]["exposure_time"] if kind in ("SPECTRUM", "EXPOSE") else 30.0
                date_obs = _now_iso(when)
                self.frames[frame_id] = {
                    "id": frame_id, "basename": basename, "area": None, "related_frames": [],
                    "version_set": [{"id": frame_id, "created": date_obs, "key": f"v{frame_id}", "md5": "",
                                     "extension": ".fits.fz"}],
                    "filename": f"{basename}.fits.fz",
                    "url": f"{self.url}/archive/download/{frame_id}/{basename}.fits.fz",
                    "reduction_level": 0, "observation_day": when.strftime("%Y-%m-%d"),
                    "observation_date": date_obs, "proposal_id": group["proposal"],
                    "instrument_id": c["instrument_type"], "target_name": c["target"]["name"], "site_id": site,
                    "telescope_id": f"{r['location']['telescope_class']}a", "exposure_time": exposure,
                    "primary_optical_element": optical, "public_date": _now_iso(when + timedelta(days=365)),
                    "configuration_type": kind, "observation_id": r["id"], "request_id": r["id"],
                    # Legacy upper-case aliases the archive still emits (and TOM Toolkit reads DATE_OBS from).
                    "DATE_OBS": date_obs, "DAY_OBS": when.strftime("%Y-%m-%d"), "PROPID": group["proposal"],
                    "INSTRUME": c["instrument_type"], "OBJECT": c["target"]["name"], "RLEVEL": 0, "SITEID": site,
                    "TELID": f"{r['location']['telescope_class']}a", "EXPTIME": exposure, "FILTER": optical,
                    "L1PUBDAT": _now_iso(when + timedelta(days=365)), "OBSTYPE": kind, "BLKUID": r["id"],
                    "REQNUM": r["id"],
                }

    def _archive(self, request: Request, user: str | None) -> Reply:
        match = _DOWNLOAD.match(request.path)
        if match:
            frame = self.frames.get(int(match.group(1)))
            if frame is None or frame["filename"] != match.group(2):
                return Reply.json(404, {"detail": "Not found."})
            return Reply(200, _fits_header(frame), content_type="application/octet-stream")
        if request.method != "GET":
            return self._not_allowed(request.method)
        proposals = {g["proposal"] for g in self._visible_groups(user)}
        visible = [f for f in sorted(self.frames.values(), key=lambda f: f["id"]) if f["proposal_id"] in proposals]
        match = _FRAME.match(request.path)
        if match:
            frame = next((f for f in visible if f["id"] == int(match.group(1))), None)
            return Reply.json(200, frame) if frame else Reply.json(404, {"detail": "Not found."})
        if request.path != "/archive/frames/":
            return Reply.json(404, {"detail": "Not found."})
        for key in ("request_id", "REQNUM", "observation_id", "BLKUID"):
            value = request.param(key)
            if value is not None:
                visible = [f for f in visible if str(f[key]) == value.lstrip("0")]
        return Reply.json(200, self._page(request, "/archive/frames/", visible))


def _fits_header(frame: Mapping[str, Any]) -> bytes:
    """A minimal FITS primary header (one 2880-byte block) naming the frame, as a stand-in for the file."""
    cards = [("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0"), ("ORIGIN", "'LCOGT'"),
             ("OBJECT", f"'{frame['OBJECT']}'"), ("OBSTYPE", f"'{frame['OBSTYPE']}'"),
             ("REQNUM", f"'{int(frame['REQNUM']):010d}'"), ("DATE-OBS", f"'{frame['DATE_OBS'][:23]}'")]
    text = "".join(f"{key:<8}= {value:>20}".ljust(80) for key, value in cards) + "END".ljust(80)
    return text.ljust(2880).encode("ascii")


@contextmanager
def running(catalogue: Catalogue, **options: Any) -> Iterator[OcsPortalEmulator]:
    """A started emulator, stopped on exit."""
    with OcsPortalEmulator(catalogue, **options) as emulator:
        yield emulator
