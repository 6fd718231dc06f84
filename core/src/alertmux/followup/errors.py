"""Errors of the follow-up loop. Their text never carries a credential: facilities' answers and our own words only."""

from __future__ import annotations

from typing import Any

from alertmux.errors import AlertmuxError


class FacilityError(AlertmuxError):
    """A facility answered in a way alertmux cannot use (an unexpected status, a malformed body)."""

    exit_code = 4


class FacilityAuthError(FacilityError):
    """The facility refused the credentials (HTTP 401/403)."""


class FacilityUnavailable(FacilityError):
    """The facility did not answer usefully after every retry (connection refused, timeouts, 5xx, rate limit)."""


class RequestRejected(FacilityError):
    """The facility refused the request itself (HTTP 400): ``errors`` is its error tree, verbatim."""

    def __init__(self, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.errors = errors


class AmbiguousSubmission(FacilityError):
    """A submission was sent and no answer came back: the facility may or may not have created the request."""
