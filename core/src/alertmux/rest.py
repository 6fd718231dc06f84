"""The REST polling loop: read a broker's REST API incrementally into the store, as the Kafka loop reads topics.

A broker plugin's :class:`~alertmux.specs.RestTransport` knows its API (paths, pagination, what a page's cursor
is); this loop owns the rest: the HTTP client (timeouts, retries honouring Retry-After, the loopback guard, the
token), decoding through the :class:`~alertmux.ingest.Ingestor`, dead letters, and the cursor, which is saved only
after the page it ends is committed. A crash therefore re-reads a page rather than skipping one, and the store's
content-hash key makes the re-read add nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from alertmux.errors import AlertmuxError, UsageError
from alertmux.http import DEFAULT_POLICY, HttpError, RetryPolicy, describe_status, make_client, redact_url, request
from alertmux.ingest import Ingestor
from alertmux.specs import RestContext, RestTransport

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PollOptions:
    """How ``alertmux poll`` runs (every option has the CLI's meaning)."""

    base_url: str | None = None
    """Overrides the transport's default base URL."""
    token: str | None = None
    token_scheme: str = "Token"
    stream: str = "default"
    """Name of the cursor (one broker may be polled for several queries)."""
    once: bool = False
    """One pass over what is new, then return."""
    interval: float | None = None
    """Seconds between passes (default: the transport's)."""
    max_pages: int | None = None
    timeout: float = 30.0
    policy: RetryPolicy = DEFAULT_POLICY
    verify: bool | str = True
    settings: Mapping[str, Any] = field(default_factory=dict)
    transport: httpx.BaseTransport | None = None
    """An httpx transport to use instead of the network (tests)."""


@dataclass(slots=True)
class PollStats:
    """What a poll did."""

    passes: int = 0
    pages: int = 0
    payloads: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    errors: int = 0
    cursor: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the poll started."""
        return time.monotonic() - self.started


def context_getter(client: httpx.Client, policy: RetryPolicy) -> Callable[..., Any]:
    """The ``get_json`` a :class:`RestContext` carries: GET with retries, JSON back, 404 as None when asked."""

    def get_json(path: str, params: Mapping[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        response = request(client, "GET", path, params=params, policy=policy, raise_for_status=False)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise HttpError(f"GET {redact_url(response.request.url)}: {describe_status(response)}",
                            status=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise HttpError(f"GET {response.request.url.path}: the answer is not JSON "
                            f"({response.headers.get('content-type', 'no content type')})") from None

    return get_json


def open_context(transport: RestTransport, options: PollOptions, cursor: str | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> tuple[httpx.Client, RestContext]:
    """A client and a :class:`RestContext` for one pass (the caller closes the client)."""
    base_url = options.base_url or transport.base_url
    if not base_url:
        raise UsageError("no API base URL: set api_url in the broker's table of alertmux.toml or pass --base-url")
    client = make_client(base_url, token=options.token, token_scheme=options.token_scheme, timeout=options.timeout,
                         verify=options.verify, transport=options.transport)
    ctx = RestContext(base_url=base_url, get_json=context_getter(client, options.policy), cursor=cursor,
                      settings=options.settings, should_stop=should_stop)
    return client, ctx


def poll(
    ingestor: Ingestor,
    transport: RestTransport,
    options: PollOptions,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_page: Callable[[PollStats], None] | None = None,
    hook: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PollStats:
    """Poll until stopped (or one pass with ``options.once``); returns the counts.

    A pass that fails (the API is down after the retries) is logged and retried at the next interval; with
    ``once`` the error is raised, so a one-shot run says plainly what went wrong.
    """
    store = ingestor.store
    assert store is not None, "poll needs an ingestor with a store"
    stats = PollStats(cursor=store.rest_cursor(ingestor.broker, options.stream))  # type: ignore[attr-defined]
    interval = options.interval if options.interval is not None else transport.interval
    while not should_stop():
        stats.passes += 1
        try:
            _one_pass(ingestor, transport, options, stats, should_stop, on_page, hook)
        except AlertmuxError as exc:
            stats.errors += 1
            if options.once:
                raise
            log.warning("poll of %s failed, next try in %g s: %s", ingestor.broker, interval, exc)
        if options.once or (options.max_pages is not None and stats.pages >= options.max_pages):
            break
        deadline = time.monotonic() + interval
        while not should_stop() and time.monotonic() < deadline:  # wake up often enough to honour a stop
            sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return stats


def _one_pass(ingestor: Ingestor, transport: RestTransport, options: PollOptions, stats: PollStats,
              should_stop: Callable[[], bool], on_page: Callable[[PollStats], None] | None, hook: Any) -> None:
    store: Any = ingestor.store
    client, ctx = open_context(transport, options, stats.cursor, should_stop)
    try:
        for page in transport.poll(ctx):
            rows: list[tuple[Any, ...]] = []
            dead = []
            for payload, delivery in page.payloads:
                try:
                    rows.extend(ingestor.rows(ingestor.decode(payload, delivery, transport.decode), delivery))
                except Exception as exc:  # noqa: BLE001 - anything a payload provokes ends in the dead-letter table
                    dead.append(ingestor.dead_letter(payload, delivery, exc))
            stored = store.write_batch(rows, dead)
            if page.cursor is not None:
                store.set_rest_cursor(ingestor.broker, options.stream, page.cursor)
                stats.cursor = page.cursor
            stats.pages += 1
            stats.payloads += len(page.payloads)
            stats.stored += stored
            stats.duplicates += len(rows) - stored
            stats.dead_letters += len(dead)
            if hook is not None and stored:
                try:
                    hook.alertmux_classifications_stored(store=store, run_id=ingestor.run_id,
                                                         broker=ingestor.broker, count=stored)
                except Exception:  # noqa: BLE001 - a plugin's event handler must not stop ingestion
                    log.exception("alertmux_classifications_stored hook failed")
            if on_page:
                on_page(stats)
            if should_stop() or (options.max_pages is not None and stats.pages >= options.max_pages):
                break
    finally:
        client.close()
