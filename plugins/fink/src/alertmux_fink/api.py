"""Polling Fink's REST APIs for the latest alerts of a class (ZTF) or a tag (LSST), or for objects, politely.

Routes (astrolabsoftware/fink-object-api@17051cac1e, ``apps/routes/v1``):

* ZTF (``https://api.ztf.fink-portal.org``): ``/api/v1/latests`` with ``class`` (a Fink class, e.g. ``Early SN Ia
  candidate``), ``n``, ``startdate``, ``stopdate`` (UTC iso, JD or MJD), ``columns``, ``output-format``;
  ``/api/v1/classes`` lists the classes.
* LSST (``https://api.lsst.fink-portal.org``): no ``/latests``; ``/api/v1/tags`` with ``tag`` (a livestream filter,
  e.g. ``cataloged``) and the same ``n``/``startdate``/``stopdate``; a bare ``/api/v1/tags`` lists the tags.

With ``objects`` set (a list of object ids), a pass instead asks ``/api/v1/objects`` (both APIs; GET with
``objectId``) for each object's alerts, one page per object: what tom_fink does to follow known objects.

``latests`` and ``tags`` answer the *last* ``n`` alerts of the window, newest first. A pass therefore reads the
window [cursor, now]; when a page comes back full it narrows the window's end to the oldest alert of the page and
asks again, until a page is not full; the cursor then moves to the newest alert seen. Windows overlap at their edges
on purpose: a row read twice is stored once (rows are keyed by alert id). Requests of one pass are spaced by
``request_pause`` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from alertmux import Delivery
from alertmux.errors import DecodeError, UsageError
from alertmux.specs import RestContext, RestPage

log = logging.getLogger(__name__)
MJD_UNIX_EPOCH = 40587.0
JD_MJD = 2400000.5


@dataclass(frozen=True, slots=True)
class Api:
    """Where one of Fink's APIs serves the latest alerts of a class or tag."""

    name: str
    base_url: str
    path: str
    selector: str
    """The query parameter naming the class or tag."""
    setting: str
    """The ``[brokers.fink]`` key holding it."""
    listing: str
    """What the probe asks for (the list of classes or tags)."""


APIS = {
    "lsst": Api("lsst", "https://api.lsst.fink-portal.org", "api/v1/tags", "tag", "tag", "api/v1/tags"),
    "ztf": Api("ztf", "https://api.ztf.fink-portal.org", "api/v1/latests", "class", "fink_class", "api/v1/classes"),
}


def api_of(settings: Any) -> Api:
    """The API named by ``survey`` (default ``lsst``)."""
    name = str(settings.get("survey", "lsst")).lower()
    if name not in APIS:
        raise UsageError(f"[brokers.fink] survey must be one of {', '.join(APIS)}, not {name!r}")
    return APIS[name]


def mjd_now() -> float:
    """The current time as an MJD."""
    return time.time() / 86400.0 + MJD_UNIX_EPOCH


def row_mjd(row: dict[str, Any]) -> float:
    """When an API row's alert was observed, as an MJD (``r:midpointMjdTai`` on LSST, ``i:jd`` on ZTF)."""
    for key, value in row.items():
        name = key.split(":", 1)[-1]
        if name == "midpointMjdTai" and value is not None:
            return float(value)
        if name == "jd" and value is not None:
            return float(value) - JD_MJD
    raise DecodeError("a Fink API row without its time (r:midpointMjdTai or i:jd): add it to `columns`")


def poll(ctx: RestContext) -> Iterator[RestPage]:
    """Pages of the alerts of ``tag`` (LSST) or ``fink_class`` (ZTF) observed since the cursor.

    Settings (``[brokers.fink]``): ``survey`` (lsst | ztf), ``tag`` or ``fink_class``, ``page_size`` (the API's
    ``n``, default 100), ``since_mjd`` (first poll's start, default one day ago), ``columns`` (default: all),
    ``request_pause`` (seconds between requests, default 1); or ``objects`` (object ids: :func:`poll_objects`).
    """
    settings = ctx.settings
    api = api_of(settings)
    if settings.get("objects"):
        yield from poll_objects(ctx, api)
        return
    wanted = settings.get(api.setting)
    if not wanted:
        raise UsageError(f"[brokers.fink] set {api.setting} (the {api.selector} to poll on the {api.name} API)")
    n = int(settings.get("page_size", 100))
    pause = float(settings.get("request_pause", 1.0))
    start = float(ctx.cursor) if ctx.cursor else float(settings.get("since_mjd", mjd_now() - 1.0))
    stop = mjd_now()
    newest = start
    first = True
    while not ctx.should_stop():
        if not first and pause:
            time.sleep(pause)
        first = False
        params: dict[str, Any] = {api.selector: wanted, "n": n, "startdate": f"{start:.8f}",
                                  "stopdate": f"{stop:.8f}", "output-format": "json"}
        if settings.get("columns"):
            params["columns"] = settings["columns"]
        rows = ctx.get_json(api.path, params)
        if not isinstance(rows, list):
            raise DecodeError(f"{api.path} answered {type(rows).__name__}, not a list of rows")
        times = [row_mjd(row) for row in rows]
        newest = max([newest, *times])
        full = len(rows) >= n
        oldest = min(times, default=stop)
        payloads = [(json.dumps(row).encode(), Delivery(source=f"{ctx.base_url.rstrip('/')}/{api.path}"))
                    for row in rows]
        if full and oldest >= stop:
            log.warning("Fink %s: more than %d alerts at MJD %.6f: raise page_size to read them all", api.name, n,
                        oldest)
            full = False
        if not full:
            yield RestPage(payloads, cursor=repr(newest))
            return
        yield RestPage(payloads)  # the cursor moves only once the whole window was read
        stop = oldest


OBJECTS_PATH = "api/v1/objects"
"""Every alert of one object, on both APIs (fink-object-api ``apps/routes/v1/{ztf,lsst}/objects``)."""


def object_ids(value: Any) -> list[str]:
    """The ``objects`` setting as a list: a TOML list, or one comma-separated string (as an environment variable)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def poll_objects(ctx: RestContext, api: Api) -> Iterator[RestPage]:
    """One page per object of ``objects``: its alerts from ``/api/v1/objects``.

    No cursor: the API returns an object's whole history each time, and rows are keyed by alert id, so a later pass
    stores only the alerts that are new.
    """
    settings = ctx.settings
    pause = float(settings.get("request_pause", 1.0))
    for index, object_id in enumerate(object_ids(settings["objects"])):
        if ctx.should_stop():
            return
        if index and pause:
            time.sleep(pause)  # polite: Fink publishes no rate limit, so space the requests as tom_fink users do
        params: dict[str, Any] = {"objectId": object_id, "output-format": "json"}
        if settings.get("columns"):
            params["columns"] = settings["columns"]
        rows = ctx.get_json(OBJECTS_PATH, params)
        if not isinstance(rows, list):
            raise DecodeError(f"{OBJECTS_PATH} answered {type(rows).__name__}, not a list of rows")
        source = f"{ctx.base_url.rstrip('/')}/{OBJECTS_PATH}"
        yield RestPage([(json.dumps(row).encode(), Delivery(source=source)) for row in rows])


def probe(ctx: RestContext) -> str:
    """Ask for the list of classes (ZTF) or tags (LSST): proves the API answers."""
    api = api_of(ctx.settings)
    listing = ctx.get_json(api.listing)
    if not isinstance(listing, dict | list):
        raise DecodeError(f"{api.listing} answered {type(listing).__name__}: not Fink's {api.name} API?")
    return f"{api.name} API answers; {len(listing)} {api.selector}s offered"
