"""Polling ANTARES's REST API v2 for loci updated since the last poll.

``GET <base>/loci`` (antares-client 2.0.2 ``_api/v2/utils.py``, ``search.py``) takes ``limit``, ``sort`` and
``elasticsearch_query`` (an Elasticsearch query as a JSON string) and answers a JSON:API envelope
``{"data": [{"id", "type": "locus", "attributes": {...}}], "meta": {...}, "links": {"self", "next"}}``; the next page is
wherever ``links.next`` points (followed as given, until it is null). No authentication.

The poll asks for loci whose ``properties.newest_alert_observation_time`` (MJD) is at or after the cursor, oldest
first, optionally restricted to a tag (``tag``) and by a further Elasticsearch clause (``query``, JSON). After the last
page the cursor moves to the newest observation time seen; loci met again are stored once (keyed by newest alert id).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from alertmux import Delivery
from alertmux.errors import DecodeError, UsageError
from alertmux.specs import RestContext, RestPage

BASE_URL = "https://api.antares.noirlab.edu/v2/"
TIME_FIELD = "properties.newest_alert_observation_time"
MJD_UNIX_EPOCH = 40587.0


def query(since_mjd: float, tag: str | None = None, extra: Any = None) -> dict[str, Any]:
    """The Elasticsearch query of one poll: observed since the cursor, with the tag, and the user's clause."""
    clauses: list[Any] = [{"range": {TIME_FIELD: {"gte": since_mjd}}}]
    if tag:
        clauses.append({"term": {"tags": tag}})
    if extra:
        clauses.append(extra)
    return {"query": {"bool": {"filter": clauses}}}


def poll(ctx: RestContext) -> Iterator[RestPage]:
    """Pages of loci observed since the cursor.

    Settings (``[brokers.antares]``): ``tag`` (only loci with it, e.g. ``superphot_plus_classified``), ``query`` (an
    Elasticsearch clause as JSON, ANDed), ``page_size`` (``limit``, default 100), ``since_mjd`` (the first poll's start,
    default one day ago).
    """
    settings = ctx.settings
    start = float(ctx.cursor) if ctx.cursor else float(settings.get("since_mjd", time.time() / 86400 + MJD_UNIX_EPOCH
                                                                    - 1.0))
    extra = settings.get("query")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise UsageError(f"[brokers.antares] query is not JSON: {exc}") from None
    params: dict[str, Any] | None = {
        "limit": int(settings.get("page_size", 100)), "sort": TIME_FIELD,
        "elasticsearch_query": json.dumps(query(start, settings.get("tag"), extra), separators=(",", ":")),
    }
    path = "loci"
    newest = start
    while not ctx.should_stop():
        page = ctx.get_json(path, params)
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise DecodeError("loci answered without a 'data' list: not ANTARES's API v2?")
        payloads = []
        for item in page["data"]:
            observed = ((item.get("attributes") or {}).get("properties") or {}).get("newest_alert_observation_time")
            if observed is not None:
                newest = max(newest, float(observed))
            payloads.append((json.dumps(item).encode(), Delivery(source=f"{ctx.base_url.rstrip('/')}/loci")))
        following = (page.get("links") or {}).get("next")
        if not following:
            yield RestPage(payloads, cursor=repr(newest))
            return
        yield RestPage(payloads)  # the cursor moves once every page of the pass is stored
        path, params = following, None  # the link carries its own query


def probe(ctx: RestContext) -> str:
    """The tag statistics (``loci/statistics``): proves the API answers."""
    stats = ctx.get_json("loci/statistics")
    if not isinstance(stats, dict):
        raise DecodeError("loci/statistics did not answer a JSON object: not ANTARES's API v2?")
    data = stats.get("data", stats)
    return f"API v2 answers; statistics for {len(data)} item(s)"
