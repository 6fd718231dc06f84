"""A seeded generator of plausible ``elasticc.v0_9_1`` alerts for tests, demos and benchmarks.

Each simulated object gets an LSST-like schedule (WFD or, for ~5% of objects, a much denser DDF cadence), a
class-typical light curve in difference flux (nJy, zero point 31.4), Gaussian noise from a sky-limited depth, and
one alert per detection (S/N > 5). Identifiers follow ELAsTiCC2: forced source id = object id * 100000 + row.

The physics is deliberately simple (Bazin transients, harmonic pulsators, Gaussian eclipses, a damped random walk
for AGN, Paczynski microlensing); it aims at plausible shapes, timescales and colours, not at SNANA fidelity.
Pure Python on ``random.Random`` so that output depends only on (n_objects, seed, class_mix, window).

Nested records are shared: a detection's ``diaSource`` dict is the same object inside every later alert's
``prvDiaSources``, and all alerts of an object share one ``diaObject`` dict. Copy before mutating.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

__all__ = ["ELASTICC_TRUE_CLASS_COUNTS", "SIMULATED_CLASSES", "SIM_VERSION", "SimulatedObject", "simulate"]

SIM_VERSION = "alertmux-sim-1"
ZERO_POINT = 31.4  # flux_nJy = 10**((31.4 - mag) / 2.5)
BANDS = ("u", "g", "r", "i", "z", "Y")
_BAND_WEIGHTS = (0.07, 0.10, 0.22, 0.22, 0.20, 0.19)  # rough LSST WFD share of visits per filter
_DEPTH5 = (23.6, 24.5, 24.3, 23.9, 23.3, 23.0)  # single-visit 5-sigma depths, softened from the LSST SRD values
_AMP_SCALE = (1.4, 1.2, 1.0, 0.85, 0.75, 0.7)  # variability amplitude grows towards the blue
_FALL_SCALE = (0.7, 0.85, 1.0, 1.15, 1.25, 1.3)  # transients fade faster in the blue, so they redden with time
_DETECTION_SNR = 5.0
_MAX_ATTEMPTS = 10  # brighten by 0.5 mag per retry: an undetected object is re-realised at most 4.5 mag brighter

# Colour at peak (or mean, for variables) relative to r, in magnitudes, per band u..Y.
_COLOURS = {
    "sn": (0.6, 0.15, 0.0, 0.05, 0.15, 0.25),
    "II": (0.3, 0.05, 0.0, 0.1, 0.15, 0.2),
    "red": (1.2, 0.5, 0.0, -0.2, -0.3, -0.35),
    "blue": (-0.4, -0.2, 0.0, 0.15, 0.25, 0.3),
    "tde": (-0.8, -0.4, 0.0, 0.3, 0.5, 0.6),
    "flare": (-2.0, -1.0, 0.0, 0.6, 0.9, 1.1),
    "kstar": (1.6, 0.7, 0.0, -0.3, -0.45, -0.55),
    "fstar": (0.9, 0.3, 0.0, -0.1, -0.15, -0.2),
    "agn": (0.1, 0.05, 0.0, 0.0, -0.05, -0.1),
}


class _Spec(NamedTuple):
    name: str
    gentype: int
    kind: str  # light-curve model, see _MODELS
    abs_mag: float | None  # peak (or mean) absolute magnitude; None = galactic, no redshift and no host
    mag: tuple[float, float]  # r-band peak difference magnitude (transients) or mean magnitude (variables)
    p1: tuple[float, float]  # bazin/flare: rise; dwarf nova: decay; uLens: t_E; periodic: period; AGN: tau [days]
    p2: tuple[float, float]  # bazin/flare: fall; dwarf nova: recurrence; uLens: u0; periodic: amp/depth; AGN: SF
    colour: str


# Bazin rise/fall are e-folding times in the rest frame; the visible rise lasts ~4.5 x the rise e-folding time.
_SPECS: dict[int, _Spec] = {
    2222: _Spec("Ia", 10, "bazin", -19.3, (19.5, 24.0), (3.3, 4.5), (20.0, 35.0), "sn"),
    2223: _Spec("Ib/c", 20, "bazin", -17.5, (19.5, 23.5), (2.5, 4.0), (15.0, 30.0), "sn"),
    2224: _Spec("II", 30, "bazin", -16.8, (19.5, 23.5), (2.0, 5.0), (50.0, 120.0), "II"),
    2225: _Spec("Iax", 12, "bazin", -17.0, (19.5, 23.5), (2.0, 3.5), (12.0, 25.0), "sn"),
    2226: _Spec("91bg", 11, "bazin", -17.5, (19.5, 23.5), (2.0, 3.0), (10.0, 18.0), "red"),
    2232: _Spec("KN", 50, "bazin", -16.0, (19.5, 22.5), (0.15, 0.4), (0.8, 2.5), "blue"),
    2233: _Spec("M-dwarf Flare", 82, "flare", None, (17.5, 21.5), (0.003, 0.02), (0.02, 0.2), "flare"),
    2234: _Spec("Dwarf Novae", 84, "dwarf_nova", None, (17.0, 21.5), (2.0, 6.0), (20.0, 120.0), "blue"),
    2235: _Spec("uLens", 87, "ulens", None, (19.0, 22.5), (10.0, 80.0), (0.05, 0.8), "kstar"),
    2242: _Spec("SLSN", 40, "bazin", -21.5, (20.5, 24.0), (8.0, 15.0), (40.0, 90.0), "blue"),
    2243: _Spec("TDE", 42, "bazin", -20.0, (20.0, 23.5), (5.0, 12.0), (30.0, 80.0), "tde"),
    2244: _Spec("ILOT", 45, "bazin", -13.0, (19.5, 23.0), (2.0, 6.0), (15.0, 50.0), "red"),
    2245: _Spec("CART", 46, "bazin", -16.5, (19.5, 23.5), (3.0, 8.0), (15.0, 40.0), "II"),
    2246: _Spec("PISN", 59, "bazin", -20.5, (21.0, 24.0), (25.0, 50.0), (80.0, 200.0), "blue"),
    2322: _Spec("Cepheid", 90, "pulsator", None, (17.0, 21.0), (2.0, 50.0), (0.4, 1.0), "fstar"),
    2323: _Spec("RR Lyrae", 80, "pulsator", None, (17.0, 21.5), (0.4, 0.8), (0.5, 1.0), "fstar"),
    2324: _Spec("Delta Scuti", 91, "pulsator", None, (15.5, 19.0), (0.04, 0.2), (0.1, 0.4), "fstar"),
    2325: _Spec("EB", 83, "eclipsing", None, (15.0, 19.5), (0.3, 10.0), (0.2, 0.7), "fstar"),
    2332: _Spec("AGN", 60, "drw", -23.0, (19.0, 21.5), (100.0, 400.0), (0.15, 0.35), "agn"),
}
SIMULATED_CLASSES: dict[int, str] = {cid: spec.name for cid, spec in _SPECS.items()}

# True-class totals of ELAsTiCC (2022): the row sums of one broker's "last classification" confusion matrix in
# /work/shared/data/elasticc/seed_talk/confusion_last_classification.csv (also alertmux/data/), R. Knop, TVU 2023.
ELASTICC_TRUE_CLASS_COUNTS: dict[int, int] = {
    2222: 1710682, 2223: 354637, 2224: 1781598, 2225: 48079, 2226: 39145, 2232: 48, 2233: 1321, 2234: 2866,
    2235: 1798, 2242: 34223, 2243: 14491, 2244: 1177, 2245: 8946, 2246: 350, 2322: 1268, 2323: 46689,
    2324: 8813, 2325: 108638, 2332: 96240,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SimulatedObject:
    """One simulated object, its truth and its alerts."""

    dia_object_id: int
    class_id: int  # ELAsTiCC2 4-digit leaf class id (e.g. 2222 = Ia)
    gentype: int  # SNANA gentype that the class maps to (e.g. 10 for Ia)
    peak_mjd: float | None  # time of peak brightness; None for periodic and stochastic classes
    redshift: float | None  # true redshift; None for galactic classes
    is_ddf: bool  # deep-drilling field object (denser cadence)
    alerts: tuple[dict, ...]  # elasticc.v0_9_1 alert dicts in time order


def _distance_modulus_grid() -> tuple[list[float], list[float]]:
    # Flat LCDM (H0 = 70, Om = 0.3), cumulative trapezoid on a log grid; inverted by interpolation in _redshift_for.
    zs = [10 ** (-3 + 3.6 * k / 399) for k in range(400)]  # 0.001 .. ~4
    mus, integral, prev_z, prev_f = [], 0.0, 0.0, 1.0
    for z in zs:
        f = 1.0 / math.sqrt(0.3 * (1 + z) ** 3 + 0.7)
        integral += 0.5 * (f + prev_f) * (z - prev_z)
        prev_z, prev_f = z, f
        mus.append(5 * math.log10((1 + z) * 299792.458 / 70.0 * integral) + 25)
    return zs, mus


_Z_GRID, _MU_GRID = _distance_modulus_grid()
_Q_LEVELS = tuple(range(0, 101, 10))
# q000/q100 of a Gaussian are infinite: use the 0.1% and 99.9% points instead.
_Q_SIGMAS = tuple(NormalDist().inv_cdf(min(max(q / 100, 0.001), 0.999)) for q in _Q_LEVELS)
_HOST_SUFFIXES = (
    ["ellipticity", "sqradius", "zspec", "zspec_err", "zphot", "zphot_err"]
    + [f"zphot_q{q:03d}" for q in _Q_LEVELS]
    + [f"mag_{b}" for b in BANDS]
    + ["ra", "dec", "snsep"]
    + [f"magerr_{b}" for b in BANDS]
)
_SIN_DEC_MIN, _SIN_DEC_MAX = math.sin(math.radians(-70.0)), math.sin(math.radians(10.0))  # uniform per area
_HOST_COLOURS = (1.3, 0.7, 0.0, -0.35, -0.55, -0.65)  # typical galaxy colours relative to r


def _redshift_for(mu: float) -> float:
    k = min(max(bisect.bisect_left(_MU_GRID, mu), 1), len(_MU_GRID) - 1)
    m0, m1, z0, z1 = _MU_GRID[k - 1], _MU_GRID[k], _Z_GRID[k - 1], _Z_GRID[k]
    return min(max(z0 + (z1 - z0) * (mu - m0) / (m1 - m0), _Z_GRID[0]), _Z_GRID[-1])


def _schedule(rng: random.Random, ra: float, is_ddf: bool, start: float, end: float) -> list[tuple[float, int]]:
    """Visits (mjd, band index) in time order: nights in the object's observing season, a few visits per night."""
    # A field is best placed at opposition; the Sun's mean longitude stands in for its RA.
    sun = (280.46 + 0.9856474 * (start - 51544.5)) % 360
    centre = start + ((ra - sun - 180) % 360) / 0.9856474
    half_season = rng.uniform(90.0, 120.0)
    gap_mean, per_night = (1.5, (2, 4)) if is_ddf else (3.0, (1, 2))
    visits: list[tuple[float, int]] = []
    for ignore_season in (False, True):  # a short window may miss the season entirely: then observe anyway
        day = start + rng.uniform(0.0, 1.0 + gap_mean)
        while day < end:
            offset = (day - centre + 182.625) % 365.25 - 182.625
            if ignore_season or abs(offset) < half_season:
                t = math.floor(day) + rng.uniform(0.0, 0.33)
                band = rng.choices(range(6), _BAND_WEIGHTS)[0]
                for _ in range(rng.randint(*per_night)):
                    if start <= t < end:
                        visits.append((round(t, 5), band))
                    # Same-night revisits use a neighbouring filter ~30 min later, as LSST pairs do.
                    t += rng.uniform(0.015, 0.03)
                    band = min(max(band + rng.choice((-1, 1)), 0), 5)
            day += 1.0 + rng.expovariate(1.0 / gap_mean)
        if visits:
            return visits
    return [(round(rng.uniform(start, end), 5), 2)]  # a window shorter than a night still gets one visit


def _bazin(dt: float, rise: float, fall: float) -> float:
    # Bazin et al. (2009), written so that neither exponential overflows far from peak.
    if dt < 0:
        return math.exp(dt * (1 / rise - 1 / fall)) / (1 + math.exp(dt / rise))
    return math.exp(-dt / fall) / (1 + math.exp(-dt / rise))


def _peak_near_visit(rng: random.Random, times: Sequence[float], jitter: float, start: float, end: float) -> float:
    # Peaks are placed near a visit so that the survey has a fair chance to see them; SNANA also only keeps
    # events that trigger. Uniform over observed seasons rather than over the calendar.
    return min(max(rng.choice(times) + rng.uniform(-jitter, jitter), start), end)


# Every model returns fluxes relative to the reference (r-band peak or mean) flux, and the true peak time or None.
_LightCurve = tuple[list[float], float | None]
_Model = Callable[[random.Random, _Spec, list[float], list[int], float, float, float], _LightCurve]


def _lc_bazin(
    rng: random.Random, spec: _Spec, times: list[float], bands: list[int], dil: float, start: float, end: float
) -> _LightCurve:
    rise, fall = rng.uniform(*spec.p1) * dil, rng.uniform(*spec.p2) * dil
    fall = max(fall, 2.5 * rise)
    peak = _peak_near_visit(rng, times, min(3 * rise, 20.0), start, end)
    falls = [fall * s for s in _FALL_SCALE]
    shifts = [rise * math.log(f / rise - 1) for f in falls]  # puts each band's Bazin maximum at `peak`
    norms = [1.0 / _bazin(s, rise, f) for s, f in zip(shifts, falls, strict=True)]
    return [norms[b] * _bazin(t - peak + shifts[b], rise, falls[b]) for t, b in zip(times, bands, strict=True)], peak


def _lc_flare(
    rng: random.Random, spec: _Spec, times: list[float], bands: list[int], dil: float, start: float, end: float
) -> _LightCurve:
    rise, decay = rng.uniform(*spec.p1), rng.uniform(*spec.p2)
    # Minutes-long flares are invisible to a few-day cadence unless a visit lands on the decay.
    peak = max(rng.choice(times) - rng.uniform(0.0, 1.5 * decay), start)
    return [math.exp((t - peak) / rise) if t < peak else math.exp((peak - t) / decay) for t in times], peak


def _lc_dwarf_nova(
    rng: random.Random, spec: _Spec, times: list[float], bands: list[int], dil: float, start: float, end: float
) -> _LightCurve:
    decay, recurrence = rng.uniform(*spec.p1), rng.uniform(*spec.p2)
    rise = rng.uniform(0.3, 1.0)
    outbursts, t0 = [], start - rng.uniform(0.0, recurrence)
    while t0 < end + recurrence:
        outbursts.append((t0, rng.uniform(0.5, 1.0)))
        t0 += recurrence * rng.uniform(0.7, 1.3)
    inside = [o for o in outbursts if start <= o[0] <= end]
    if not inside:  # a window shorter than the recurrence time: force one outburst into it
        inside = [(_peak_near_visit(rng, times, 1.0, start, end), 1.0)]
        outbursts += inside
    peak, top = max(inside, key=lambda o: o[1])

    def flux(t: float) -> float:
        return sum(a * (math.exp((t - o) / rise) if t < o else math.exp((o - t) / decay)) for o, a in outbursts)

    return [flux(t) / top for t in times], peak


def _lc_ulens(
    rng: random.Random, spec: _Spec, times: list[float], bands: list[int], dil: float, start: float, end: float
) -> _LightCurve:
    t_e = math.exp(rng.uniform(*map(math.log, spec.p1)))
    u0 = rng.uniform(*spec.p2)
    peak = _peak_near_visit(rng, times, 0.5 * t_e, start, end)

    def excess(u: float) -> float:  # Paczynski (1986) magnification minus the baseline
        return (u * u + 2) / (u * math.sqrt(u * u + 4)) - 1

    a0 = excess(u0)
    return [excess(math.hypot(u0, (t - peak) / t_e)) / a0 for t in times], peak


def _template_subtracted(wave: Callable[[float], float], amp: float) -> Callable[[float], float]:
    # Difference imaging against a template at the mean flux: variables give positive and negative fluxes.
    mean = sum(10 ** (0.4 * amp * wave(k / 64)) for k in range(64)) / 64
    return lambda phase: 10 ** (0.4 * amp * wave(phase)) - mean


def _lc_periodic(
    rng: random.Random, spec: _Spec, times: list[float], bands: list[int], dil: float, start: float, end: float
) -> _LightCurve:
    period = math.exp(rng.uniform(*map(math.log, spec.p1)))
    phase0, amp = rng.random(), rng.uniform(*spec.p2)
    if spec.kind == "pulsator":
        # Three harmonics give the sawtooth-like fast rise and slow decline of Cepheids and RR Lyrae.
        def wave(p: float) -> float:
            x = 2 * math.pi * p
            return (math.sin(x) + 0.5 * math.sin(2 * x) + 0.25 * math.sin(3 * x)) / 2.775  # peak-to-peak 1

        per_band = [_template_subtracted(wave, amp * _AMP_SCALE[b]) for b in range(6)]
    else:  # eclipsing binary: flat out-of-eclipse light, a primary and a shallower secondary Gaussian dip
        width, secondary, ellipsoidal = rng.uniform(0.01, 0.04), amp * rng.uniform(0.1, 0.8), rng.uniform(0.0, 0.03)

        def wave(p: float) -> float:
            d1, d2 = min(p, 1 - p), abs(p - 0.5)
            rel = 1 - amp * math.exp(-0.5 * (d1 / width) ** 2) - secondary * math.exp(-0.5 * (d2 / width) ** 2)
            return 2.5 * math.log10(max(rel - ellipsoidal * math.cos(4 * math.pi * p), 0.05))

        per_band = [_template_subtracted(wave, 1.0)] * 6
    return [per_band[b](((t - start) / period + phase0) % 1.0) for t, b in zip(times, bands, strict=True)], None


def _lc_drw(
    rng: random.Random, spec: _Spec, times: list[float], bands: list[int], dil: float, start: float, end: float
) -> _LightCurve:
    # Damped random walk (Ornstein-Uhlenbeck) in magnitude, exact update between irregular epochs.
    tau, sigma = rng.uniform(*spec.p1), rng.uniform(*spec.p2) / math.sqrt(2)
    x, last, fluxes = rng.gauss(0.0, sigma), times[0], []
    for t, b in zip(times, bands, strict=True):
        decay = math.exp(-(t - last) / tau)
        x, last = x * decay + sigma * math.sqrt(1 - decay * decay) * rng.gauss(0.0, 1.0), t
        fluxes.append(10 ** (0.4 * x * _AMP_SCALE[b]) - 1)
    return fluxes, None


_MODELS: dict[str, _Model] = {
    "bazin": _lc_bazin, "flare": _lc_flare, "dwarf_nova": _lc_dwarf_nova, "ulens": _lc_ulens,
    "pulsator": _lc_periodic, "eclipsing": _lc_periodic, "drw": _lc_drw,
}  # fmt: skip


def _host(rng: random.Random, ra: float, decl: float, z: float) -> dict[str, float]:
    err = rng.uniform(0.02, 0.1) * (1 + z)
    zphot = max(z + rng.gauss(0.0, err), 0.005)
    host: dict[str, float] = {"ellipticity": rng.uniform(0.0, 0.8), "sqradius": rng.lognormvariate(1.0, 0.8)}
    has_spec = rng.random() < 0.3
    host["zspec"], host["zspec_err"] = (z + rng.gauss(0.0, 0.0002), 0.0005) if has_spec else (-9.0, -9.0)
    host["zphot"], host["zphot_err"] = zphot, err
    for q, s in zip(_Q_LEVELS, _Q_SIGMAS, strict=True):
        host[f"zphot_q{q:03d}"] = max(zphot + s * err, 0.0)
    mag_r = rng.gauss(-20.5, 1.0) + _MU_GRID[min(bisect.bisect_left(_Z_GRID, z), len(_Z_GRID) - 1)]
    for b, colour in zip(BANDS, _HOST_COLOURS, strict=True):
        mag = mag_r + colour + rng.gauss(0.0, 0.15)
        host[f"mag_{b}"], host[f"magerr_{b}"] = mag, 0.01 + 10 ** (0.4 * (mag - 26.5))
    sep, angle = rng.uniform(0.05, 3.0), rng.uniform(0.0, 2 * math.pi)  # arcsec
    host["ra"] = (ra + sep / 3600 * math.cos(angle) / math.cos(math.radians(decl))) % 360
    host["dec"], host["snsep"] = decl + sep / 3600 * math.sin(angle), sep
    return {f"hostgal_{k}": round(v, 6) for k, v in host.items()}


def _simulate_object(seed: int, index: int, class_id: int, start: float, end: float) -> SimulatedObject:
    # One RNG per object, seeded from (seed, index): an object does not depend on how many came before it.
    rng = random.Random(f"alertmux-sim:{seed}:{index}")
    spec = _SPECS[class_id]
    oid = (seed % 100000) * 1_000_000 + index + 1
    ra, decl = rng.uniform(0.0, 360.0), math.degrees(math.asin(rng.uniform(_SIN_DEC_MIN, _SIN_DEC_MAX)))
    is_ddf = rng.random() < 0.05
    visits = _schedule(rng, ra, is_ddf, start, end)
    times, bands = [v[0] for v in visits], [v[1] for v in visits]
    errs = [10 ** (0.4 * (ZERO_POINT - _DEPTH5[b] - (0.5 if is_ddf else 0.0) - rng.gauss(0.0, 0.2))) / 5 for b in bands]
    base_mag = rng.uniform(*spec.mag)
    colour = [10 ** (-0.4 * c) for c in _COLOURS[spec.colour]]
    rows: list[tuple[float, float]] = []
    redshift: float | None = None
    peak: float | None = None
    for attempt in range(_MAX_ATTEMPTS):  # retry brighter (and, for extragalactic classes, nearer) until detected
        mag = base_mag - 0.5 * attempt
        if spec.abs_mag is not None:
            redshift = round(_redshift_for(mag - spec.abs_mag - rng.gauss(0.0, 0.3)), 5)
        rel, peak = _MODELS[spec.kind](rng, spec, times, bands, 1 + (redshift or 0.0), start, end)
        scale = 10 ** (0.4 * (ZERO_POINT - mag))
        # Rounded before the S/N cut so that the float32 copy in Avro still has snr > 5.
        noisy = (scale * colour[b] * r + rng.gauss(0.0, e) for r, b, e in zip(rel, bands, errs, strict=True))
        rows = [(round(f, 3), round(e, 3)) for f, e in zip(noisy, errs, strict=True)]
        if any(f / e > _DETECTION_SNR for f, e in rows):
            break
    host = _host(rng, ra, decl, redshift) if redshift is not None else {}
    ebv = rng.expovariate(1 / 0.05)
    dia_object: dict = {
        "diaObjectId": oid, "simVersion": SIM_VERSION, "ra": ra, "decl": decl, "mwebv": ebv, "mwebv_err": 0.05 * ebv,
        "z_final": host.get("hostgal_zphot"), "z_final_err": host.get("hostgal_zphot_err"),
    }  # fmt: skip
    dia_object.update({f"{p}_{s}": host.get(f"{p}_{s}") for p in ("hostgal", "hostgal2") for s in _HOST_SUFFIXES})
    alerts, forced, detections = [], [], []
    for row, (t, band, (flux, err)) in enumerate(zip(times, bands, rows, strict=True)):
        fid, name = oid * 100000 + row, BANDS[band]
        snr = round(flux / err, 4)
        if snr > _DETECTION_SNR:
            source = {
                "diaSourceId": fid, "diaObjectId": oid, "midPointTai": t, "filterName": name, "ra": ra, "decl": decl,
                "psFlux": flux, "psFluxErr": err, "snr": snr,
            }  # fmt: skip
            alerts.append({
                "alertId": fid, "diaSource": source, "prvDiaSources": detections.copy() or None,
                "prvDiaForcedSources": forced.copy() or None, "diaObject": dia_object,
            })  # fmt: skip
            detections.append(source)
        forced.append({
            "diaForcedSourceId": fid, "diaObjectId": oid, "midPointTai": t, "filterName": name,
            "psFlux": flux, "psFluxErr": err,
        })  # fmt: skip
    return SimulatedObject(oid, class_id, spec.gentype, peak, redshift, is_ddf, tuple(alerts))


def simulate(
    n_objects: int,
    *,
    seed: int = 0,
    class_mix: str = "uniform",
    start_mjd: float = 60796.0,
    duration_days: float = 365.0,
) -> Iterator[SimulatedObject]:
    """Generate simulated objects and their ``elasticc.v0_9_1`` alerts, deterministically for a seed.

    Every object is re-realised up to 4.5 mag brighter until it has at least one detection, so in practice every
    object carries at least one alert (an object that still has none is yielded with an empty ``alerts`` tuple).

    Args:
        n_objects: Number of objects to generate (0 to 999,999; ids must stay unique within a seed).
        seed: Seed of all randomness; ids are ``(seed % 100000) * 1_000_000 + index + 1``.
        class_mix: ``"uniform"`` for equal counts per class (round robin over a seeded shuffle of the 19 classes)
            or ``"elasticc"`` to draw classes with ELAsTiCC's true-class frequencies.
        start_mjd: Start of the simulated window (MJD, TAI).
        duration_days: Length of the simulated window in days.

    Returns:
        A lazy iterator over one ``SimulatedObject`` per index, in index order. Arguments are checked at the call.

    Raises:
        ValueError: For an unknown ``class_mix``, a bad ``n_objects`` or a non-positive ``duration_days``.
    """
    if class_mix not in ("uniform", "elasticc"):
        raise ValueError(f"unknown class_mix {class_mix!r}: expected 'uniform' or 'elasticc'")
    if not 0 <= n_objects < 1_000_000:
        raise ValueError(f"n_objects must be in [0, 999999], got {n_objects}")
    if not duration_days > 0:
        raise ValueError(f"duration_days must be positive, got {duration_days}")
    return _generate(n_objects, seed, class_mix, float(start_mjd), float(start_mjd) + duration_days)


def _generate(n_objects: int, seed: int, class_mix: str, start: float, end: float) -> Iterator[SimulatedObject]:
    # A generator of its own so that simulate() can check its arguments eagerly.
    rng = random.Random(f"alertmux-sim-classes:{seed}")
    ids = list(_SPECS)
    if class_mix == "uniform":
        rng.shuffle(ids)
    weights = [ELASTICC_TRUE_CLASS_COUNTS[c] for c in ids]
    for index in range(n_objects):
        class_id = ids[index % len(ids)] if class_mix == "uniform" else rng.choices(ids, weights)[0]
        yield _simulate_object(seed, index, class_id, start, end)
