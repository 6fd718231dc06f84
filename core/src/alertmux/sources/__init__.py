"""Real alert sources: ELAsTiCC alert files, SNANA simulations, Rubin alerts and live Kafka topics.

Each source is its own module, registered through the ``alertmux_alert_sources`` hook from an entry point in the
``alertmux`` group, exactly as a third-party source would be. A source's ``open(**options)`` yields
:class:`~alertmux.specs.SourceObject` items; every source accepts (and may ignore) these options:

* ``path``: a file, a directory or a glob;
* ``nights``: a :class:`Nights` window, so a source that can skip whole files by night does so;
* ``on_bad_input``: ``on_bad_input(where, reason)``, called for an input it skips (a corrupt file in a directory,
  an undecodable Kafka message) so that the streamer can report it; the stream goes on.

This module holds what the sources and the streamer share: where an alert's id, object and time live in each
survey's record shape, the night an alert belongs to, and input-file discovery.
"""

from __future__ import annotations

import glob
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alertmux.errors import UsageError

log = logging.getLogger(__name__)
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")

OnBadInput = Callable[[str, str], None]
"""``on_bad_input(where, reason)``: a source skipped one input (a file, a Kafka message) and says why."""

NIGHT_OFFSET = 0.5
"""Nights change at MJD x.5 (12:00 UTC, 08:00 at Cerro Pachon), as in DESC's ELAsTiCC2 streamer."""


def night_of(mjd: float) -> int:
    """The simulated night of an observation time: the integer MJD on which that night's evening falls.

    SNANA names alert tarballs ``NITE<n>`` after the sunset MJD at the site; with nights cut at noon UTC this is
    ``floor(mjd - 0.5)`` for an observatory in Chile.
    """
    return math.floor(mjd - NIGHT_OFFSET)


@dataclass(frozen=True, slots=True)
class Nights:
    """An inclusive window of simulated nights, ``D1:D2`` on the command line (either end may be omitted)."""

    first: int | None = None
    last: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> Nights | None:
        """Parse ``D1:D2``, ``D1:``, ``:D2`` or a single ``D`` (one night); None or empty means no window."""
        if not text:
            return None
        first, sep, last = text.partition(":")
        try:
            lo = int(first) if first.strip() else None
            hi = (int(last) if last.strip() else None) if sep else lo
        except ValueError:
            raise UsageError(f"--nights must be D1:D2, integer MJD nights (e.g. 60796:60831), not {text!r}") from None
        if lo is not None and hi is not None and hi < lo:
            raise UsageError(f"--nights {text}: the last night comes before the first")
        return cls(lo, hi)

    def __contains__(self, night: object) -> bool:
        if not isinstance(night, int):
            return False
        return (self.first is None or night >= self.first) and (self.last is None or night <= self.last)

    def has_mjd(self, mjd: float) -> bool:
        """Whether an observation at ``mjd`` falls on a night of the window."""
        return night_of(mjd) in self


# -- record shapes ----------------------------------------------------------------------------------------------
# ELAsTiCC records say midPointTai/filterName/psFlux; Rubin lsst.vX_Y records say midpointMjdTai/band/psfFlux and,
# from v8.0 on, carry no alertId (the triggering diaSourceId identifies the alert).


def is_rubin(alert: Mapping[str, Any]) -> bool:
    """Whether a decoded alert record has the Rubin ``lsst.vX_Y`` shape (otherwise it is ELAsTiCC's)."""
    return "midpointMjdTai" in alert["diaSource"]


def alert_id_of(alert: Mapping[str, Any]) -> int:
    """The alert's id: ``alertId`` (ELAsTiCC, Rubin up to v7.4) or the triggering ``diaSourceId`` (Rubin v8+)."""
    alert_id = alert.get("alertId")
    return int(alert_id if alert_id is not None else alert["diaSourceId"])


def object_id_of(alert: Mapping[str, Any]) -> int | None:
    """The diaObjectId of the alert's triggering source (None for a solar-system source without one)."""
    return alert["diaSource"].get("diaObjectId")


def mjd_of(record: Mapping[str, Any]) -> float:
    """The time (MJD TAI) of a diaSource or diaForcedSource record of either survey."""
    mjd = record.get("midPointTai")
    return float(mjd if mjd is not None else record["midpointMjdTai"])


def alert_mjd(alert: Mapping[str, Any]) -> float:
    """The time of the alert's triggering detection."""
    return mjd_of(alert["diaSource"])


def schema_of(alert: Mapping[str, Any]) -> str:
    """The schema family of a decoded alert: ``elasticc.v0_9``, ``elasticc.v0_9_1`` or ``lsst``.

    Rubin versions share the field names alertmux reads, so the exact ``lsst.vX_Y`` does not matter here.
    """
    if is_rubin(alert):
        return "lsst"
    v09 = "ccdVisitId" in alert["diaSource"] or "prvDiaNondetectionLimits" in alert
    return "elasticc.v0_9" if v09 else "elasticc.v0_9_1"


# -- input files ------------------------------------------------------------------------------------------------


def input_files(path: str | Path | None, patterns: tuple[str, ...], what: str) -> list[Path]:
    """The files a source reads: ``path`` itself, the files of a directory that match ``patterns``, or a glob.

    Raises:
        UsageError: when ``path`` is missing or names nothing.
    """
    if path is None or str(path) == "":
        raise UsageError(f"the {what} source needs --path (a file, a directory or a glob)")
    text = str(path)
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    elif Path(text).is_dir():
        found = sorted(p for pattern in patterns for p in Path(text).rglob(pattern) if p.is_file())
    elif Path(text).is_file():
        found = [Path(text)]
    else:
        raise UsageError(f"{text} does not exist")
    if not found:
        raise UsageError(f"no {what} files in {text} (looked for {', '.join(patterns)})")
    return sorted(set(found))


def report(on_bad_input: OnBadInput | None, where: str, reason: str) -> None:
    """Tell the caller about a skipped input, or log it when nobody listens."""
    if on_bad_input is not None:
        on_bad_input(where, reason)
    else:
        log.warning("skipped %s: %s", where, reason)


def source_settings(config: Any, name: str) -> dict[str, Any]:
    """The ``[sources.NAME]`` table of the configuration (an :class:`alertmux.config.Config`), secrets resolved."""
    return config.source(name)


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options fit for logs and the runs table: secret values (passwords, tokens, keys) replaced by ``***``."""
    from alertmux.config import is_secret

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(str(k), v) for k, v in value.items()}
        if isinstance(value, str) and _URL_CREDENTIALS.search(value):
            return _URL_CREDENTIALS.sub(r"\1***@", value)
        return "***" if is_secret(key) and value not in (None, "") else value

    return {k: clean(k, v) for k, v in options.items()}


__all__ = [
    "NIGHT_OFFSET", "Nights", "OnBadInput", "alert_id_of", "alert_mjd", "input_files", "is_rubin", "mjd_of",
    "night_of", "object_id_of", "redact_options", "report", "schema_of", "source_settings",
]
