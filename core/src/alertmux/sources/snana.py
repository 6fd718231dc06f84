"""The ``snana`` alert source: the SNANA simulations ELAsTiCC2's alerts were built from, turned into alerts.

Input: ``*_HEAD.FITS.gz`` (one row per object) with its ``*_PHOT.FITS.gz`` (every epoch of every object: the
rows ``PTROBS_MIN..PTROBS_MAX`` of a HEAD row). The alerts are the ones the DESC TOM sent for ELAsTiCC2:

* ids, units and columns as ``load_snana_fits`` loaded them (LSSTDESC/tom_desc,
  ``elasticc2/management/commands/load_snana_fits.py``): diaObjectId = SNID; diaForcedSourceId =
  SNID x 100000 + the epoch's index; a detection is an epoch with ``PHOTFLAG & 4096`` and its diaSourceId (and
  alertId) is that forced-source id; fluxes are FLUXCAL moved from zero point 27.5 to 31.4 (nJy); snr =
  flux/error; a source's ra/decl are its object's; an object is deep-drilling (DDF) when it has more than 1000
  epochs; simVersion ``2023-04-01``.
* history as ``BaseAlert.reconstruct(daysprevious=365)`` built it (``elasticc2/models.py``): every earlier
  detection within 365 days; earlier forced photometry from max(t - 365, first detection - 30) on, and none for a
  detection within 0.5 day of the object's first.

The truth recorded for scoring is the object's class (its SNANA gentype through :mod:`alertmux.taxonomy`), its
simulated peak time and CMB redshift, as the TOM's truth table held them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from alertmux.errors import DecodeError
from alertmux.hookspecs import hookimpl
from alertmux.models import DIA_OBJECT_FLOAT_FIELDS
from alertmux.sources import Nights, OnBadInput, input_files, report
from alertmux.specs import AlertSourceSpec, SimulatedTruth, SourceObject

PHOTFLAG_DETECT = 4096
SNANA_ZEROPOINT = 27.5
ALERT_ZEROPOINT = 31.4
MAX_SOURCES_PER_OBJECT = 100_000
DDF_MIN_EPOCHS = 1000
"""More epochs than this makes an object deep-drilling, as load_snana_fits decided it."""
SIM_VERSION = "2023-04-01"
DAYS_PREVIOUS = 365.0
FIRST_NIGHT_WINDOW = 0.5
FORCED_BEFORE_FIRST = 30.0
_FLUX_SCALE = 10 ** ((ALERT_ZEROPOINT - SNANA_ZEROPOINT) / 2.5)

_HOST_COLUMNS = {
    "ellipticity": "ELLIPTICITY", "sqradius": "SQRADIUS", "zspec": "SPECZ", "zspec_err": "SPECZ_ERR",
    "zphot": "PHOTOZ", "zphot_err": "PHOTOZ_ERR", "ra": "RA", "dec": "DEC", "snsep": "SNSEP",
}


def _head_column(field: str) -> str:
    """The HEAD.FITS column of an ``elasticc.v0_9_1.diaObject`` float field (load_snana_fits' ColumnMapper)."""
    fixed = {"mwebv": "MWEBV", "mwebv_err": "MWEBV_ERR", "z_final": "REDSHIFT_FINAL",
             "z_final_err": "REDSHIFT_FINAL_ERR"}
    if field in fixed:
        return fixed[field]
    prefix, _, rest = field.partition("_")  # hostgal / hostgal2
    column = _HOST_COLUMNS.get(rest)
    if column is None:  # zphot_q050, mag_u, magerr_Y keep their band's case
        name, _, suffix = rest.rpartition("_")
        column = f"{name.upper()}_{suffix.upper() if suffix.startswith('q') else suffix}"
    return f"{prefix.upper()}_{column}"


OBJECT_COLUMNS = {field: _head_column(field) for field in DIA_OBJECT_FLOAT_FIELDS}
"""elasticc.v0_9_1.diaObject float field -> HEAD.FITS column."""
HEAD_COLUMNS = ("SNID", "PTROBS_MIN", "PTROBS_MAX", "RA", "DEC", "SIM_TYPE_INDEX", "SIM_PEAKMJD", "SIM_REDSHIFT_CMB",
                *OBJECT_COLUMNS.values())
PHOT_COLUMNS = ("MJD", "BAND", "FLUXCAL", "FLUXCALERR", "PHOTFLAG")


def phot_path(head: Path) -> Path:
    """The PHOT file of a HEAD file (same name, ``HEAD`` -> ``PHOT``)."""
    name = head.name
    index = name.upper().rfind("HEAD")
    return head.with_name(name[:index] + name[index:].replace("HEAD", "PHOT").replace("head", "phot"))


def _columns(path: Path, names: Iterable[str]) -> dict[str, list[Any]]:
    """The ``names`` columns of a FITS binary table that it has (an empty table gives ``{}``)."""
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            table = fits[1]
            if table.get_nrows() == 0:
                return {}
            available = set(table.get_colnames())
            wanted = [name for name in names if name in available]
            data = table.read(columns=wanted)
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise DecodeError(f"not a readable SNANA FITS table: {type(exc).__name__}: {exc}") from None
    return {name: data[name].tolist() for name in wanted}


def _text(value: Any) -> str:
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def read_snana(head: Path, *, nights: Nights | None = None, sim_version: str = SIM_VERSION,
               days_previous: float = DAYS_PREVIOUS) -> Iterator[SourceObject]:
    """Yield each object of a SNANA HEAD/PHOT pair with its alerts (time order) and truth.

    Args:
        head: the ``*_HEAD.FITS.gz`` file; its PHOT file must sit beside it.
        nights: only alerts of these simulated nights (the truth of every object is yielded all the same).
        sim_version: the diaObject's simVersion.
        days_previous: history window of each alert, in days.

    Raises:
        DecodeError: when the pair cannot be read.
    """
    from alertmux.taxonomy import ELASTICC2, taxonomy

    tax = taxonomy(ELASTICC2)
    phot_file = phot_path(head)
    if not phot_file.exists():
        raise DecodeError(f"its PHOT file {phot_file.name} is missing")
    heads = _columns(head, HEAD_COLUMNS)
    if not heads or not heads.get("SNID"):
        return
    phot = _columns(phot_file, PHOT_COLUMNS)
    for key in ("MJD", "BAND", "FLUXCAL", "FLUXCALERR", "PHOTFLAG"):
        if key not in phot:
            raise DecodeError(f"{phot_file.name} has no {key} column")
    for row in range(len(heads["SNID"])):
        snid = int(_text(heads["SNID"][row]))
        first, last = heads["PTROBS_MIN"][row] - 1, heads["PTROBS_MAX"][row] - 1  # 1-indexed in the files
        if last - first + 1 > MAX_SOURCES_PER_OBJECT:
            raise DecodeError(f"SNID {snid} has {last - first + 1} epochs, more than ids can number")
        ra, decl = float(heads["RA"][row]), float(heads["DEC"][row])
        dia_object: dict[str, Any] = {"diaObjectId": snid, "simVersion": sim_version, "ra": ra, "decl": decl}
        dia_object |= {f: _float(heads[c][row]) if c in heads else None for f, c in OBJECT_COLUMNS.items()}
        epochs = []
        for offset, i in enumerate(range(first, last + 1)):
            flux, err = phot["FLUXCAL"][i] * _FLUX_SCALE, phot["FLUXCALERR"][i] * _FLUX_SCALE
            epochs.append(({
                "diaForcedSourceId": snid * MAX_SOURCES_PER_OBJECT + offset, "diaObjectId": snid,
                "midPointTai": float(phot["MJD"][i]), "filterName": _text(phot["BAND"][i]), "psFlux": flux,
                "psFluxErr": err,
            }, bool(phot["PHOTFLAG"][i] & PHOTFLAG_DETECT)))
        epochs.sort(key=lambda e: e[0]["midPointTai"])
        alerts = _alerts(epochs, dia_object, nights, days_previous)
        gentype = int(heads["SIM_TYPE_INDEX"][row]) if "SIM_TYPE_INDEX" in heads else None
        class_id = tax.class_for_gentype(gentype) if gentype is not None else None
        truth = None
        if class_id is not None:
            truth = SimulatedTruth(
                dia_object_id=snid, class_id=class_id, gentype=gentype,
                peak_mjd=_float(heads["SIM_PEAKMJD"][row]) if "SIM_PEAKMJD" in heads else None,
                redshift=_float(heads["SIM_REDSHIFT_CMB"][row]) if "SIM_REDSHIFT_CMB" in heads else None,
            )
        yield SourceObject(alerts=alerts, truth=truth, ddf=len(epochs) > DDF_MIN_EPOCHS)


def _alerts(epochs: list[tuple[dict[str, Any], bool]], dia_object: dict[str, Any], nights: Nights | None,
            days_previous: float) -> list[dict[str, Any]]:
    ra, decl = dia_object["ra"], dia_object["decl"]
    sources = [
        {"diaSourceId": e["diaForcedSourceId"], "diaObjectId": e["diaObjectId"], "midPointTai": e["midPointTai"],
         "filterName": e["filterName"], "ra": ra, "decl": decl, "psFlux": e["psFlux"], "psFluxErr": e["psFluxErr"],
         "snr": e["psFlux"] / e["psFluxErr"] if e["psFluxErr"] else float("nan")}
        for e, detected in epochs if detected
    ]
    if not sources:
        return []
    first_detection = sources[0]["midPointTai"]
    forced = [e for e, _ in epochs]
    alerts = []
    for source in sources:
        t = source["midPointTai"]
        if nights is not None and not nights.has_mjd(t):
            continue
        history = [s for s in sources if t - days_previous <= s["midPointTai"] < t]
        earlier_forced: list[dict[str, Any]] = []
        if t - first_detection > FIRST_NIGHT_WINDOW:
            start = max(t - days_previous, first_detection - FORCED_BEFORE_FIRST)
            earlier_forced = [f for f in forced if start <= f["midPointTai"] < t]
        alerts.append({"alertId": source["diaSourceId"], "diaSource": source, "prvDiaSources": history,
                       "prvDiaForcedSources": earlier_forced, "diaObject": dia_object})
    return alerts


def head_files(path: str | None) -> list[Path]:
    """The HEAD files under ``path`` (a HEAD file, a directory searched recursively, or a glob)."""
    files = input_files(path, ("*HEAD.FITS.gz", "*HEAD.FITS", "*HEAD.fits.gz", "*HEAD.fits"), "SNANA HEAD")
    return [f for f in files if "HEAD" in f.name.upper()]


def open_snana(path: str | None = None, nights: Nights | None = None, on_bad_input: OnBadInput | None = None,
               sim_version: str = SIM_VERSION, days_previous: float = DAYS_PREVIOUS,
               **_: Any) -> Iterator[SourceObject]:
    """Yield every object of the SNANA simulations under ``path`` with its alerts and truth.

    A HEAD/PHOT pair that cannot be read is reported through ``on_bad_input`` and skipped; the others stream.
    """
    for head in head_files(path):
        try:
            yield from read_snana(head, nights=nights, sim_version=sim_version, days_previous=float(days_previous))
        except DecodeError as exc:
            report(on_bad_input, str(head), str(exc))


def decode_snana(head: Path) -> Any:
    """``alertmux decode`` of a HEAD file: one ``{"alert", "truth"}`` record per alert it gives."""
    from alertmux.formats import Decoded
    from alertmux.taxonomy import ELASTICC2, taxonomy

    if not head.exists():
        from alertmux.errors import UsageError

        raise UsageError(f"cannot read {head}: No such file or directory")
    tax = taxonomy(ELASTICC2)
    records = []
    objects = 0
    for obj in read_snana(head):
        objects += 1
        truth = None
        if obj.truth is not None:
            t = obj.truth
            truth = {"dia_object_id": t.dia_object_id, "class_id": t.class_id, "class_name": tax.name(t.class_id),
                     "gentype": t.gentype, "peak_mjd": t.peak_mjd, "redshift": t.redshift, "ddf": obj.ddf}
        records.extend({"alert": alert, "truth": truth} for alert in obj.alerts)
    return Decoded(f"SNANA FITS (HEAD + PHOT), {objects} object(s)", records, "elasticc.v0_9_1.alert")


@hookimpl
def alertmux_alert_sources() -> Iterator[AlertSourceSpec]:
    """The ``snana`` source."""
    yield AlertSourceSpec(
        name="snana",
        description="SNANA HEAD+PHOT FITS simulations turned into ELAsTiCC2 alerts as the DESC TOM built them,"
                    " truth from the gentype",
        open=open_snana,
    )
