"""HTTP for facility adapters, on top of :mod:`alertmux.http`, with retries that know what is safe to repeat.

Clients come from :func:`alertmux.http.make_client` (timeouts, the token as a header that is never logged, the
loopback-only guard of the test suite, secret query parameters redacted from httpx's log lines). Retries are
decided here rather than by :func:`alertmux.http.request`, which retries every transport error: that is right for
reads, and wrong for a call that creates an observation request, which must not be sent twice.

So: an idempotent call (GET, a validation) is retried on any transport error, on 429 and on 5xx. A call that
creates something is retried only when the server certainly did not act on it: the connection was never made, or
it answered 429/503; a timeout after sending, a dropped connection or another 5xx raise
:class:`AmbiguousSubmission`, and the adapter decides (look the request up by name, or tell the user). Waits follow
the server's ``Retry-After`` when it sends one, else grow exponentially.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from alertmux import http as core_http
from alertmux.followup.errors import AmbiguousSubmission, FacilityAuthError, FacilityError, FacilityUnavailable

log = logging.getLogger(__name__)


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def make_client(
    base_url: str, *, token: str | None = None, headers: dict[str, str] | None = None, timeout_s: float = 10.0
) -> httpx.Client:
    """A client with a timeout on every phase (connect at most 5 s), TLS verified, redirects not followed.

    Args:
        base_url: the facility's base URL.
        token: an API token, sent as ``Authorization: Token <token>`` (never logged, never in a URL).
        headers: extra headers.
        timeout_s: read/write timeout per call.
    """
    return core_http.make_client(
        base_url, token=token, timeout=timeout_s, connect_timeout=min(5.0, timeout_s),
        headers={"Accept": "application/json", **(headers or {})}, follow_redirects=False,
    )


def _wait(max_wait: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, max_wait)
        return min(0.25 * 2 ** (state.attempt_number - 1), max_wait)

    return wait


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    facility: str,
    idempotent: bool,
    attempts: int = 4,
    max_wait: float = 30.0,
    **kwargs: Any,
) -> httpx.Response:
    """Send one call with retries; return any answer the caller must interpret (2xx, 400, 404...).

    Raises:
        FacilityAuthError: HTTP 401/403 (the facility's ``detail`` is quoted, the credential never is).
        FacilityUnavailable: still failing transiently after ``attempts`` tries.
        AmbiguousSubmission: a non-idempotent call may have been acted on (see the module docstring).
        NetworkPolicyError: the loopback-only policy forbids the host (tests).
    """
    shown = core_http.redact_url(url)

    def once() -> httpx.Response:
        try:
            response = http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(f"cannot connect ({type(exc).__name__}: {exc})") from None
        except httpx.TransportError as exc:
            if idempotent:
                raise _Transient(f"{type(exc).__name__}: {exc}") from None
            raise AmbiguousSubmission(
                f"{facility}: {method} {shown} got no answer ({type(exc).__name__}); it may have been received"
            ) from None
        code = response.status_code
        if code in (429, 503) or (idempotent and code >= 500):
            raise _Transient(f"HTTP {code}: {_detail(response)}", core_http.retry_after_seconds(response))
        if code >= 500:
            raise AmbiguousSubmission(f"{facility}: {method} {shown} answered HTTP {code}; it may have been received")
        return response

    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(_Transient), stop=stop_after_attempt(attempts), wait=_wait(max_wait),
            reraise=True,
            before_sleep=lambda s: log.info("%s: %s %s failed (%s), retrying", facility, method, shown,
                                            s.outcome.exception() if s.outcome else "?"),
        ):
            with attempt:
                response = once()
    except _Transient as exc:
        raise FacilityUnavailable(f"{facility}: {method} {shown} failed after {attempts} tries: {exc.reason}") from None
    if response.status_code in (401, 403):
        raise FacilityAuthError(
            f"{facility} refused the credentials (HTTP {response.status_code}: {_detail(response)}); "
            f"check the token in [facilities] of alertmux.toml"
        )
    return response


def json_body(response: httpx.Response, facility: str) -> Any:
    """The JSON of a response, or a clear error naming the facility and the status."""
    try:
        return response.json()
    except ValueError:
        raise FacilityError(
            f"{facility}: expected JSON from {response.request.url.path}, got HTTP {response.status_code} "
            f"{response.headers.get('content-type', '')!r}"
        ) from None
