"""Is a target observable from a site within a window? Airmass and darkness on a time grid.

Earth rotation (GMST, IAU 2006) and the Sun's position (the Earth's heliocentric position, VSOP-based ``epv00``)
come from ERFA, the IAU SOFA library behind astropy; the rest is the textbook altitude formula. UTC stands in for
UT1 (under a second of error) and J2000 coordinates for coordinates of date (precession moves a target by less
than half a degree by 2030): plenty for deciding whether a target clears an airmass limit in a night, which is all
the check is for. The facility itself checks again with its own scheduler where it can (an OCS portal does).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import erfa
import numpy as np

DEFAULT_STEP_MINUTES = 10.0
_TT_MINUS_UTC_DAYS = 69.184 / 86400  # TAI-UTC (37 s since 2017) + 32.184 s


@dataclass(frozen=True, slots=True)
class SiteVisibility:
    """How long a target is observable from one site within a window."""

    site: str
    hours: float
    min_airmass: float | None
    """Lowest airmass reached while the Sun is down (None if the target never rises in the dark)."""
    longest_s: float = 0.0
    """The longest uninterrupted stretch observable, in seconds."""


def _julian(start: datetime, end: datetime, step_minutes: float) -> np.ndarray:
    start_jd = start.astimezone(UTC).timestamp() / 86400 + 2440587.5
    end_jd = end.astimezone(UTC).timestamp() / 86400 + 2440587.5
    return np.arange(start_jd, end_jd, step_minutes / 1440.0)


def _altitude(ra_deg: float | np.ndarray, dec_deg: float | np.ndarray, lst: np.ndarray, lat_deg: float) -> np.ndarray:
    lat, dec = np.radians(lat_deg), np.radians(dec_deg)
    hour_angle = lst - np.radians(ra_deg)
    return np.arcsin(np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(hour_angle))


def _sun_radec(jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # epv00 gives the Earth's heliocentric position in ICRS-aligned axes: the Sun is seen the other way. It costs
    # ~30 us a call and the Sun moves 1 deg a day, so it is computed every 6 hours and interpolated (< 0.01 deg).
    coarse = np.arange(jd[0], jd[-1] + 0.25, 0.25)
    heliocentric, _barycentric = erfa.epv00(np.full_like(coarse, 2400000.5), coarse - 2400000.5 + _TT_MINUS_UTC_DAYS)
    x, y, z = (-heliocentric["p"][:, i] for i in range(3))
    ra = np.unwrap(np.arctan2(y, x))
    dec = np.arctan2(z, np.hypot(x, y))
    return np.degrees(np.interp(jd, coarse, ra)) % 360, np.degrees(np.interp(jd, coarse, dec))


def visibility(
    ra: float,
    dec: float,
    sites: Sequence[tuple[str, float, float]],
    start: datetime,
    end: datetime,
    *,
    max_airmass: float = 2.0,
    sun_altitude_max: float = -12.0,
    step_minutes: float = DEFAULT_STEP_MINUTES,
) -> list[SiteVisibility]:
    """Hours within ``[start, end)`` when the target is below ``max_airmass`` and the Sun below ``sun_altitude_max``.

    Args:
        ra: right ascension (J2000, degrees).
        dec: declination (J2000, degrees).
        sites: ``(code, latitude, longitude)`` in degrees, longitude positive east.
        start: window start (timezone-aware; naive means UTC).
        end: window end.
        max_airmass: the airmass limit (sec z).
        sun_altitude_max: the Sun must be below this altitude (-12: nautical twilight).
        step_minutes: the time grid.

    Returns:
        One :class:`SiteVisibility` per site, in the order given.
    """
    out = []
    for code, alt, good, dark in _grid(ra, dec, sites, start, end, max_airmass, sun_altitude_max, step_minutes):
        up_in_dark = dark & (alt > 0)
        best = float(1.0 / np.sin(alt[up_in_dark].max())) if up_in_dark.any() else None
        out.append(SiteVisibility(code, float(good.sum()) * step_minutes / 60.0, best,
                                  _longest_run(good) * step_minutes * 60.0))
    return out


def _grid(
    ra: float, dec: float, sites: Sequence[tuple[str, float, float]], start: datetime, end: datetime,
    max_airmass: float, sun_altitude_max: float, step_minutes: float,
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per site: (code, target altitude in radians, observable mask, dark mask) on the time grid."""
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    jd = _julian(start, end, step_minutes)
    tt = jd + _TT_MINUS_UTC_DAYS
    gmst = erfa.gmst06(np.full_like(jd, 2400000.5), jd - 2400000.5, np.full_like(tt, 2400000.5), tt - 2400000.5)
    sun_ra, sun_dec = _sun_radec(jd) if jd.size else (jd, jd)
    min_alt = np.radians(90.0) - np.arccos(1.0 / max_airmass)
    for code, lat, lon in sites:
        lst = gmst + np.radians(lon)
        alt = _altitude(ra, dec, lst, lat)
        dark = _altitude(sun_ra, sun_dec, lst, lat) < np.radians(sun_altitude_max)
        yield code, alt, dark & (alt >= min_alt), dark


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return int((edges[1::2] - edges[::2]).max())


def now_utc() -> datetime:
    """The current time, timezone-aware (a seam for tests)."""
    return datetime.now(UTC)
