"""The records of the follow-up loop: requests as alertmux sends them, what facilities answer, what is stored.

Request states are normalized across facilities; the facility's own state is always kept beside, verbatim:

=============  ==========================================================================================
state          meaning
=============  ==========================================================================================
submitted      the facility accepted it and reports nothing more (a Gemini ToO trigger)
pending        accepted and waiting to be observed (OCS ``PENDING``)
completed      observed (OCS ``COMPLETED``)
expired        its window closed before it was observed (OCS ``WINDOW_EXPIRED``)
canceled       canceled by a user (OCS ``CANCELED``)
failed         rejected at submission, or the facility gave up (OCS ``FAILURE_LIMIT_REACHED``)
unconfirmed    alertmux's own: sent, but no answer came back; resolved by a lookup where the facility offers one
=============  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RequestState = Literal["submitted", "pending", "completed", "expired", "canceled", "failed", "unconfirmed"]
STATES: tuple[RequestState, ...] = ("submitted", "pending", "completed", "expired", "canceled", "failed",
                                    "unconfirmed")
TERMINAL: frozenset[str] = frozenset({"completed", "expired", "canceled", "failed"})
OPEN: frozenset[str] = frozenset({"submitted", "pending", "unconfirmed"})
CHARGED: frozenset[str] = frozenset({"submitted", "pending", "completed", "unconfirmed"})
"""States whose time counts against a proposal's cap (requested or spent)."""


@dataclass(frozen=True, slots=True)
class ObservationRequest:
    """What alertmux asks a facility for: a spectrum of one object, in a facility-neutral shape."""

    name: str
    """Unique per facility: the idempotency key (an OCS requestgroup name, at most 50 characters)."""
    dia_object_id: int
    target_name: str
    ra: float
    dec: float
    exposure_s: float
    window_start: datetime
    window_end: datetime
    max_airmass: float
    priority: int = 3
    mag: float | None = None
    band: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Validation:
    """A dry run: the exact payload that would be sent (secrets redacted) and what the facility thinks of it."""

    ok: bool
    payload: Mapping[str, Any]
    errors: Any = None
    """The facility's error tree, verbatim (an OCS ``errors`` dict), or a list of messages."""
    duration_s: float | None = None
    """Telescope time the facility would charge, when it says."""
    server_checked: bool = True
    """False where the facility offers no validation and only local checks ran (Gemini)."""
    notes: tuple[str, ...] = ()

    def error_lines(self) -> list[str]:
        """The errors as ``path: message`` lines."""
        return flatten_errors(self.errors)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a submitted request: an OCS requestgroup's request."""

    part_id: str
    state: RequestState
    native_state: str


@dataclass(frozen=True, slots=True)
class Submission:
    """What a facility answered to a submission (or to a lookup by name)."""

    facility_id: str
    state: RequestState
    native_state: str
    parts: tuple[Part, ...] = ()
    url: str = ""
    duration_s: float | None = None
    response: Mapping[str, Any] | None = None
    found_existing: bool = False
    """True when the request was already at the facility (a repeated or retried submit found it by name)."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A stored observation request."""

    request_id: int
    facility: str
    name: str
    state: RequestState
    proposal: str | None = None
    dia_object_id: int | None = None
    native_state: str | None = None
    facility_id: str | None = None
    parts: tuple[Part, ...] = ()
    url: str | None = None
    priority: int | None = None
    duration_s: float | None = None
    exposure_s: float | None = None
    created_ms: int = 0
    submitted_ms: int | None = None
    updated_ms: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A facility's current view of one record."""

    request_id: int
    state: RequestState
    native_state: str
    parts: tuple[Part, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DataProduct:
    """A file the facility produced for a request (an LCO archive frame)."""

    product_id: str
    filename: str
    url: str
    created: str | None = None
    kind: str = ""


@dataclass(frozen=True, slots=True)
class RankedTarget:
    """One row of a stored ranking."""

    rank: int
    dia_object_id: int
    priority: int
    score: float
    reason: str
    telescope: str | None = None
    exposure_s: float | None = None
    ra: float | None = None
    dec: float | None = None
    last_mag: float | None = None
    last_band: str | None = None


@dataclass(frozen=True, slots=True)
class Ranking:
    """A stored ranking: what ``alertmux followup submit`` acts on."""

    ranking_id: int
    created_ms: int
    strategy: str
    options: Mapping[str, Any]
    mjd_now: float | None
    candidates: int
    targets: tuple[RankedTarget, ...] = field(default_factory=tuple)


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """An error tree (DRF's nested dicts and lists of messages) as ``path: message`` lines.

    >>> flatten_errors({"requests": [{"windows": [{"non_field_errors": ["end before start"]}]}]})
    ['requests[0].windows[0]: end before start']
    """
    if errors is None or errors == {} or errors == []:
        return []
    if isinstance(errors, str):
        return [f"{prefix}: {errors}" if prefix else errors]
    if isinstance(errors, Mapping):
        lines = []
        for key, value in errors.items():
            path = prefix if key in ("non_field_errors", "detail") else (f"{prefix}.{key}" if prefix else str(key))
            lines += flatten_errors(value, path)
        return lines
    if isinstance(errors, list | tuple):
        if all(isinstance(e, str) for e in errors):
            return [f"{prefix}: {e}" if prefix else e for e in errors]
        lines = []
        for i, item in enumerate(errors):
            lines += flatten_errors(item, f"{prefix}[{i}]")
        return lines
    return [f"{prefix}: {errors}" if prefix else str(errors)]
