"""Lasair's REST API: an incremental ``query/`` poll within the hourly quota, and annotations.

The API (lsst-uk/lasair-lsst ``webserver/lasairapi``; lasair 0.1.4 ``lasair.py``) authenticates with
``Authorization: Token <token>`` and throttles every user: 100 calls an hour (10,000 for power users), answering 429
beyond (``docs/source/core_functions/rest-api.md``). So the poll

* spaces its own calls with a client-side limiter, :class:`Quota` (``rate_limit``, default ``100/hour``, in the
  notation of the ``limits`` library), and
* on a 429 that still comes (another client on the same token), waits (``quota_wait`` seconds, default 5 minutes)
  and asks again instead of failing, until told to stop.

``query/`` takes ``selected``, ``tables``, ``conditions``, ``limit`` and ``offset`` (lasair.py ``query``); the poll asks
for objects whose ``lastDiaSourceMjdTai`` is past the cursor, with Sherlock's class, page by page (``offset``), and
moves the cursor to the newest ``lastDiaSourceMjdTai`` seen once the pass is complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from alertmux import Delivery
from alertmux.errors import DecodeError
from alertmux.http import HttpError
from alertmux.specs import RestContext, RestPage

log = logging.getLogger(__name__)
BASE_URL = "https://api.lasair.lsst.ac.uk/api/"
DEFAULT_RATE = "100/hour"
SELECTED = "objects.diaObjectId, objects.lastDiaSourceMjdTai, sherlock_classifications.classification"
TABLES = "objects, sherlock_classifications"
MJD_UNIX_EPOCH = 40587.0


class Quota:
    """A client-side limit on calls (moving window): :meth:`wait` blocks until one more call is allowed."""

    def __init__(self, rate: str = DEFAULT_RATE, sleep: Callable[[float], None] = time.sleep) -> None:
        """``rate`` in the ``limits`` notation: ``100/hour``, ``10 per minute``..."""
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.sleep = sleep

    def wait(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Take one call from the quota, waiting as long as needed; False if told to stop meanwhile."""
        while not self.limiter.hit(self.item, "lasair"):
            if should_stop():
                return False
            reset = self.limiter.get_window_stats(self.item, "lasair").reset_time
            self.sleep(min(1.0, max(0.01, reset - time.time())))
        return True


def _get(ctx: RestContext, quota: Quota, path: str, params: Mapping[str, Any], quota_wait: float) -> Any:
    """GET within the quota; a 429 waits ``quota_wait`` seconds and tries again, for as long as it takes."""
    while True:
        if not quota.wait(ctx.should_stop):
            return None
        try:
            return ctx.get_json(path, params)
        except HttpError as exc:
            if exc.status != 429:
                raise
            log.warning("Lasair says the hourly quota is spent; waiting %g s before asking again", quota_wait)
            deadline = time.monotonic() + quota_wait
            while time.monotonic() < deadline:
                if ctx.should_stop():
                    return None
                quota.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def poll(ctx: RestContext) -> Iterator[RestPage]:
    """Pages of objects (with Sherlock's class) whose latest detection is past the cursor.

    Settings (``[brokers.lasair]``): ``conditions`` (more SQL conditions, ANDed), ``page_size`` (``limit``, default
    1000), ``since_mjd`` (first poll's start, default one day ago), ``rate_limit`` (default ``100/hour``),
    ``quota_wait`` (seconds to wait after a 429, default 300).
    """
    settings = ctx.settings
    quota = Quota(str(settings.get("rate_limit", DEFAULT_RATE)))
    quota_wait = float(settings.get("quota_wait", 300.0))
    limit = int(settings.get("page_size", 1000))
    start = float(ctx.cursor) if ctx.cursor else float(settings.get("since_mjd", time.time() / 86400
                                                                    + MJD_UNIX_EPOCH - 1.0))
    conditions = f"objects.lastDiaSourceMjdTai > {start!r}"
    if settings.get("conditions"):
        conditions += f" AND ({settings['conditions']})"
    newest, offset = start, 0
    while not ctx.should_stop():
        params = {"selected": SELECTED, "tables": TABLES, "conditions": conditions, "limit": limit, "offset": offset}
        rows = _get(ctx, quota, "query/", params, quota_wait)
        if rows is None:
            return
        if not isinstance(rows, list):
            raise DecodeError(f"query/ answered {type(rows).__name__}, not a list of rows")
        newest = max([newest, *(float(r["lastDiaSourceMjdTai"]) for r in rows if r.get("lastDiaSourceMjdTai"))])
        payloads = [(json.dumps(row).encode(), Delivery(source=f"{ctx.base_url.rstrip('/')}/query/")) for row in rows]
        if len(rows) < limit:
            yield RestPage(payloads, cursor=repr(newest))
            return
        yield RestPage(payloads)
        offset += limit


def probe(ctx: RestContext) -> str:
    """One small query: proves the API answers and the token is accepted."""
    rows = ctx.get_json("query/", {"selected": "objects.diaObjectId", "tables": "objects", "conditions": "",
                                   "limit": 1, "offset": 0})
    if not isinstance(rows, list):
        raise DecodeError("query/ did not answer a list of rows: not Lasair's API?")
    return f"query/ answers with the token ({len(rows)} row)"


def annotation(object_id: int, topic: str, classification: str, *, version: str = "", explanation: str = "",
               classdict: Mapping[str, Any] | None = None, url: str = "") -> dict[str, Any]:
    """The body ``annotate/`` takes (lasair.py ``annotate``), checked as Lasair checks it."""
    if len(version) > 16:
        raise ValueError(f"Lasair keeps annotation versions of at most 16 characters, not {len(version)}")
    return {"diaObjectId": int(object_id), "topic": topic, "classification": classification, "version": version,
            "explanation": explanation, "classdict": json.dumps(dict(classdict or {})), "url": url}


def annotate(client: Any, body: Mapping[str, Any]) -> Any:
    """POST one annotation (an ``httpx.Client`` from :func:`alertmux.http.make_client` with the Lasair token)."""
    from alertmux.http import request

    return request(client, "POST", "annotate/", data=dict(body)).json()
