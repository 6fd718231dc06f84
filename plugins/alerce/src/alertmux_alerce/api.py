"""Polling ALeRCE's REST APIs: object lists by last detection, then each object's probabilities.

Two APIs (alerce 2.3.1 ``default_config.json``; server code alercebroker/web-services ``multisurveys-apis``):

* ``lsst`` (multi-survey, ``https://api-lsst.alerce.online/``): ``object_api/list_objects`` and
  ``probability_api/probability?oid=&survey_id=lsst`` (404 "Probability not found" when an object has none).
* ``ztf`` (``https://api.alerce.online/``): ``ztf/v1/objects`` and ``ztf/v1/objects/{oid}/probabilities``.

Both list endpoints take ``lastmjd`` (a single value is a lower bound), ``order_by``/``order_mode``, ``page`` and
``page_size``, and answer ``{"items": [...], "has_next": ...}`` (the server fetches page_size+1 rows to know).
The poll is incremental and keyset-like: it asks for objects with ``lastmjd >= cursor`` in ascending order; after a
page it moves the cursor to the page's last ``lastmjd`` and starts again from page 1, so objects that moved while it
read (their ``lastmjd`` grew) are met again later, never skipped. Only a page of objects all sharing the cursor's
``lastmjd`` makes it step to the next page number. Objects met twice are harmless: a classifier's probabilities for
an object are stored once per distinct content.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from alertmux import Delivery
from alertmux.errors import DecodeError, UsageError
from alertmux.specs import RestContext, RestPage

MJD_UNIX_EPOCH = 40587.0


@dataclass(frozen=True, slots=True)
class Api:
    """Where one of ALeRCE's APIs keeps its object list and probabilities."""

    name: str
    base_url: str
    objects: str
    probabilities: str
    """Path of an object's probabilities; ``{oid}`` is replaced, else the oid goes in the query."""
    extra: tuple[tuple[str, str], ...] = ()
    """Query parameters the probabilities request needs besides the oid."""

    def probability_request(self, oid: Any) -> tuple[str, dict[str, Any]]:
        """Path and query of an object's probabilities."""
        if "{oid}" in self.probabilities:
            return self.probabilities.format(oid=oid), dict(self.extra)
        return self.probabilities, {"oid": oid, **dict(self.extra)}


APIS = {
    "lsst": Api("lsst", "https://api-lsst.alerce.online/", "object_api/list_objects", "probability_api/probability",
                (("survey_id", "lsst"),)),
    "ztf": Api("ztf", "https://api.alerce.online/", "ztf/v1/objects", "ztf/v1/objects/{oid}/probabilities"),
}


def api_of(settings: Any) -> Api:
    """The API named by ``survey`` in the broker's settings (default ``lsst``)."""
    name = str(settings.get("survey", "lsst")).lower()
    if name not in APIS:
        raise UsageError(f"[brokers.alerce] survey must be one of {', '.join(APIS)}, not {name!r}")
    return APIS[name]


def mjd_now() -> float:
    """The current time as an MJD."""
    return time.time() / 86400.0 + MJD_UNIX_EPOCH


def _cursor(text: str | None, default_mjd: float) -> tuple[float, int]:
    if not text:
        return default_mjd, 1
    mjd, _, page = text.partition(":")
    return float(mjd), int(page or 1)


def poll(ctx: RestContext) -> Iterator[RestPage]:
    """Pages of probabilities for every object whose last detection is at or after the cursor.

    Settings (``[brokers.alerce]``): ``survey`` (lsst | ztf), ``classifier`` and ``class_name`` (list filters),
    ``page_size`` (default 100), ``since_mjd`` (where the first poll starts; default one day ago).
    """
    settings = ctx.settings
    api = api_of(settings)
    page_size = int(settings.get("page_size", 100))
    mjd, page = _cursor(ctx.cursor, float(settings.get("since_mjd", mjd_now() - 1.0)))
    filters = {k: settings[k] for k in ("classifier", "class_name") if settings.get(k)}
    if api.name == "ztf" and "class_name" in filters:
        filters["class"] = filters.pop("class_name")  # the ZTF API's name (alerce client ztf_search.py)
    if api.name == "lsst":
        filters["survey"] = "lsst"
    while not ctx.should_stop():
        params = {**filters, "lastmjd": mjd, "order_by": "lastmjd", "order_mode": "ASC", "page": page,
                  "page_size": page_size}
        listing = ctx.get_json(api.objects, params)
        items = listing.get("items", []) if isinstance(listing, dict) else []
        payloads = []
        for item in items:
            path, query = api.probability_request(item["oid"])
            rows = ctx.get_json(path, query, missing_ok=True)
            if not rows:  # 404 or []: no classification yet, nothing to store
                continue
            body = json.dumps({"oid": item["oid"], "survey": api.name, "probabilities": rows}).encode()
            payloads.append((body, Delivery(source=f"{ctx.base_url.rstrip('/')}/{path}?oid={item['oid']}")))
        last = max((float(item["lastmjd"]) for item in items), default=mjd)
        if last > mjd:
            mjd, page = last, 1
        elif items:
            page += 1  # a full page of ties at the cursor: step through them
        has_next = bool(isinstance(listing, dict) and listing.get("has_next"))
        yield RestPage(payloads, cursor=f"{mjd!r}:{page if has_next else 1}")
        if not has_next:
            return


def probe(ctx: RestContext) -> str:
    """One small object-list request: proves the API answers and the filters are accepted."""
    api = api_of(ctx.settings)
    params: dict[str, Any] = {"page": 1, "page_size": 1, "order_by": "lastmjd", "order_mode": "DESC"}
    if api.name == "lsst":
        params["survey"] = "lsst"
    listing = ctx.get_json(api.objects, params)
    if not isinstance(listing, dict) or "items" not in listing:
        raise DecodeError(f"{api.objects} answered without 'items': not ALeRCE's {api.name} API?")
    latest = listing["items"][0].get("lastmjd") if listing["items"] else None
    return f"{api.name} API answers; latest object lastmjd {latest}"
