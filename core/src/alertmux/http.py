"""HTTP for every REST-speaking plugin: one client factory, one retry policy, one network guard.

* :func:`make_client` builds an ``httpx.Client`` with timeouts, a User-Agent, an optional API token sent as a header
  (never logged: it lives in an :class:`httpx.Auth` whose repr hides it) and the loopback guard.
* :func:`request` sends a request with tenacity retries on transport errors, 408, 429 and 5xx, waiting what the
  server's ``Retry-After`` says (seconds or an HTTP date, capped) and exponential backoff with jitter otherwise.
* With ``ALERTMUX_LOOPBACK_ONLY=1`` (the test suite sets it) any connection to a host other than loopback fails
  before it is attempted: tests can never reach a real broker, whatever a plugin's defaults say.
* Secret query parameters (``token=``, ``api_key=``...) are replaced by ``***`` in httpx's log lines and in every
  error message this module writes (:func:`redact_url`).
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import os
import random
import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import tenacity

from alertmux import __version__
from alertmux.errors import AlertmuxError

log = logging.getLogger(__name__)
LOOPBACK_ENV = "ALERTMUX_LOOPBACK_ONLY"
USER_AGENT = f"alertmux/{__version__}"
_SECRET_PARAM = re.compile(r"(?i)\b(token|api[_-]?key|apikey|password|passwd|secret|access_token)=([^&\s\"'#]+)")


class NetworkPolicyError(AlertmuxError):
    """A connection that the loopback-only policy forbids (``ALERTMUX_LOOPBACK_ONLY=1``)."""

    exit_code = 2


class HttpError(AlertmuxError):
    """An HTTP request that failed for good: no answer after the retries, or an error status."""

    exit_code = 3

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def loopback_only() -> bool:
    """Whether the loopback-only policy is on (``ALERTMUX_LOOPBACK_ONLY`` set to 1/true/yes)."""
    return os.environ.get(LOOPBACK_ENV, "").strip().lower() in ("1", "true", "yes")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (names are not resolved: resolving is network)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_allowed(host: str, what: str = "connection") -> None:
    """Raise :class:`NetworkPolicyError` if the loopback-only policy forbids reaching ``host``."""
    if loopback_only() and not is_loopback(host):
        raise NetworkPolicyError(
            f"{what} to {host} refused: {LOOPBACK_ENV}=1 allows loopback hosts only (tests never reach real services)"
        )


def ensure_bootstrap_allowed(bootstrap: str) -> None:
    """The loopback-only policy for a Kafka bootstrap list (``host:port,host:port``)."""
    for server in filter(None, (s.strip() for s in bootstrap.split(","))):
        ensure_allowed(_host_of(server), f"Kafka connection to {server}")


def _host_of(server: str) -> str:
    server = server.split("://", 1)[-1]
    if server.startswith("["):  # [::1]:9092
        return server[1 : server.index("]")]
    if server.count(":") == 1:  # host:port
        return server.split(":")[0]
    return server  # a bare host, or a bare IPv6 address


def redact_url(url: str | httpx.URL) -> str:
    """The URL with the values of secret query parameters replaced by ``***`` (and user info dropped)."""
    text = str(url)
    text = re.sub(r"//[^/@\s]+@", "//", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", text)


class _RedactSecrets(logging.Filter):
    """Rewrites httpx's request log lines so a token sent as a query parameter never reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


for _name in ("httpx", "httpcore"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactSecrets) for f in _logger.filters):
        _logger.addFilter(_RedactSecrets())


class TokenAuth(httpx.Auth):
    """An API token sent as a header (``Authorization: Token <key>`` by default); its repr shows no secret."""

    def __init__(self, token: str, scheme: str = "Token", header: str = "Authorization") -> None:
        """Send ``token`` on every request as ``header: scheme token`` (no scheme when ``scheme`` is empty)."""
        self._token = token
        self._scheme = scheme
        self._header = header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:  # noqa: D102
        request.headers[self._header] = f"{self._scheme} {self._token}" if self._scheme else self._token
        yield request

    def __repr__(self) -> str:
        return f"TokenAuth(header={self._header!r}, scheme={self._scheme!r}, token=***)"


class _GuardedTransport(httpx.BaseTransport):
    """Checks the loopback-only policy on every request, redirects included, before any connection is made."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        ensure_allowed(request.url.host, f"HTTP request {request.method} {redact_url(request.url)}")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def make_client(
    base_url: str = "",
    *,
    token: str | None = None,
    token_scheme: str = "Token",
    token_header: str = "Authorization",
    timeout: float | httpx.Timeout = 30.0,
    connect_timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    verify: bool | str = True,
    follow_redirects: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` for a broker API: timeouts, User-Agent, token auth and the loopback guard.

    Args:
        base_url: prefix of relative request URLs.
        token: an API token, sent as ``token_header: token_scheme token`` and never logged.
        token_scheme: ``Token`` (Django REST framework, the DESC TOM, Lasair), ``Bearer``..., or "" for none.
        token_header: the header that carries it.
        timeout: read/write/pool timeout in seconds (or a full ``httpx.Timeout``).
        connect_timeout: seconds to establish a connection.
        headers: extra headers for every request.
        verify: TLS verification: True, False, or the path of a CA bundle.
        follow_redirects: follow 3xx answers (each hop is checked by the loopback guard).
        transport: the transport to wrap (tests may pass ``httpx.MockTransport``).
    """
    if not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout, connect=connect_timeout)
    inner = transport or httpx.HTTPTransport(verify=verify)
    return httpx.Client(
        base_url=base_url,
        auth=TokenAuth(token, token_scheme, token_header) if token else None,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout,
        follow_redirects=follow_redirects,
        transport=_GuardedTransport(inner),
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to retry a request.

    Retried: transport errors (connection refused or reset, timeouts) and the statuses in ``statuses`` (408, 425,
    429 and every 5xx except 501 and 505). The wait is the server's ``Retry-After`` when it sends one (capped at
    ``max_retry_after``), else exponential backoff with jitter from ``backoff`` up to ``backoff_max`` seconds.
    """

    attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    statuses: frozenset[int] = frozenset({408, 425, 429} | set(range(500, 600)) - {501, 505})
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    """How to wait (tests pass a recorder)."""

    def retryable(self, response: httpx.Response) -> bool:
        """Whether this response is worth another attempt."""
        return response.status_code in self.statuses


DEFAULT_POLICY = RetryPolicy()


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds (delta-seconds or HTTP-date); None without one."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    raise_for_status: bool = True,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request with the retry policy.

    Args:
        client: from :func:`make_client`.
        method: HTTP method.
        url: absolute, or relative to the client's base URL.
        policy: what to retry and how long to wait.
        raise_for_status: raise :class:`HttpError` for a 4xx/5xx answer (after retries); else return it.
        **kwargs: passed to ``client.request`` (params, json, data, headers...).

    Raises:
        HttpError: no answer after the retries (with the last transport error), or an error status.
        NetworkPolicyError: the loopback-only policy forbids the host.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            asked = retry_after_seconds(outcome.result())
            if asked is not None:
                return min(asked, policy.max_retry_after)
        exponential = policy.backoff * 2 ** (state.attempt_number - 1)
        return min(policy.backoff_max, exponential + random.uniform(0, policy.backoff))  # noqa: S311 - jitter

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        why = (f"{type(outcome.exception()).__name__}" if outcome is not None and outcome.failed
               else f"HTTP {outcome.result().status_code}" if outcome is not None else "?")
        wait_s = state.next_action.sleep if state.next_action else 0.0
        log.info("%s %s: %s, retry %d/%d in %.1f s", method, shown, why, state.attempt_number,
                 policy.attempts - 1, wait_s)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=wait,
        retry=(tenacity.retry_if_exception_type(httpx.TransportError)
               | tenacity.retry_if_result(policy.retryable)),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,  # type: ignore[union-attr]
    )
    shown = redact_url(client.build_request(method, url, params=kwargs.get("params")).url)
    try:
        response: httpx.Response = retrying(client.request, method, url, **kwargs)
    except httpx.TransportError as exc:
        raise HttpError(f"{method} {shown}: no answer after {policy.attempts} attempt(s): {_transport_reason(exc)}"
                        ) from None
    if raise_for_status and response.status_code >= 400:
        raise HttpError(f"{method} {redact_url(response.request.url)}: {describe_status(response)}",
                        status=response.status_code)
    return response


def describe_status(response: httpx.Response) -> str:
    """``HTTP 404 Not Found: <the server's own message>`` in one line, for errors a person reads."""
    text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("error") or body.get("errors") or body.get("message") or "")
    except ValueError:
        detail = response.text.strip().splitlines()[0] if response.text.strip() else ""
    hint = {401: "credentials missing or rejected", 403: "not allowed with these credentials",
            429: "rate limited: try again later or poll less often"}.get(response.status_code)
    parts = [text] + [p for p in (hint, redact_url(detail[:300])) if p]
    return ": ".join(parts)


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.ReadTimeout):
        return "the server did not answer in time (read timeout)"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "host name does not resolve"
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return f"TLS handshake failed ({text})"
        if "refused" in text.lower():
            return "connection refused"
        return text or type(exc).__name__
    return redact_url(str(exc)) or type(exc).__name__
