"""Fink's class vocabularies mapped onto ELAsTiCC2, one row per label with the reason it is right.

Fink speaks six vocabularies, each its own scheme:

* ``fink_cats``: the LSST CATS broad classifier, ``clf.cats_class`` with ``cats_score``. Its classes are the 2022
  ELAsTiCC *parent* codes 11/12/13/21/22 (``mapping_cats_general`` in fink-broker ``fink_broker/rubin/science.py``),
  so they land on the ELAsTiCC2 parents 2220/2230/2240/2320/2330, never on a leaf. Two explicit overrides:
  ``-1`` ("Not processed, single point alert") is NotClassified (300), and ``residual`` (1 - cats_score, the mass
  CATS gave the four other categories) is Residual (200).
* ``fink_main_label``: ``pred.main_label_classifier``, Fink's main label (today a copy of ``cats_class``): the same
  codes, as context (a label, no probability).
* ``fink``: the binary scores (SuperNNova SN vs others, the early SN Ia classifiers, the kilonova RF), each sent
  with its complement ``other`` = Residual (200), as Fink itself wrote them to ELAsTiCC in 2022 (class 0, 1 - p).
* ``finkclass``: the ZTF ``finkclass`` strings (fink-filters ``fink_filters/ztf/classification.py``), which fall
  back to the SIMBAD type of a cross-matched object; context.
* ``simbad``: SIMBAD object types (``cdsxmatch``, ``xm.simbad_otype``, ``pred.main_label_crossmatch``), every code,
  old and new label of Fink's ``otypes.txt``; context. Types with an ELAsTiCC2 class are mapped, the rest kept.
* ``fink_elasticc2022``: the 2022 ELAsTiCC stream's 2022 class ids, crosswalked, with ``0`` ("Others", the
  complement of a binary classifier in ``bin/elasticc/distribute_elasticc.py``) as Residual (200), not the 2022
  Static/Other: an explicit override.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from alertmux import NormalizedLabel
from alertmux.taxonomy import CROSSWALK_2022_TO_2, ELASTICC, NOT_CLASSIFIED, RESIDUAL, taxonomy

CATS = "fink_cats"
MAIN_LABEL = "fink_main_label"
SCORES = "fink"
FINKCLASS = "finkclass"
SIMBAD = "simbad"
ELASTICC_2022 = "fink_elasticc2022"

_SCIENCE = "fink-broker@373978b1f3 fink_broker/rubin/science.py mapping_cats_general"
_DISTRIBUTE = "fink-broker@373978b1f3 bin/elasticc/distribute_elasticc.py"
_FILTERS = "fink-filters 7.45 fink_filters/ztf/classification.py"
_OTYPES = "SIMBAD object type (fink-utils 0.79.0 fink_utils/xmatch/otypes.txt)"
_CATS_NAMES = {11: "SN-like", 12: "Fast", 13: "Long", 21: "Periodic", 22: "Non-Periodic"}


def _row(class_id: int | None, source: str, kind: str = "probability") -> NormalizedLabel:
    return NormalizedLabel(class_id, kind=kind, source=source)  # type: ignore[arg-type]


def _cats(kind: str) -> dict[int | str, NormalizedLabel]:
    table: dict[int | str, NormalizedLabel] = {
        code: _row(CROSSWALK_2022_TO_2[code], f"{name} (2022 parent code {code}, CATS argmax; {_SCIENCE})", kind)
        for code, name in _CATS_NAMES.items()
    }
    table[-1] = _row(NOT_CLASSIFIED, f"NotClassified: explicit override, -1 is 'Not processed, single point alert' "
                                     f"({_SCIENCE})", kind)
    return table


CATS_TABLE = _cats("probability") | {
    "residual": _row(RESIDUAL, "Residual: 1 - cats_score, what CATS gave the four categories it did not pick "
                               "(ELAsTiCC2 notebook: Residual is 'none of what I reported')"),
}
"""``clf.cats_class`` (and the residual alertmux adds beside it)."""
MAIN_LABEL_TABLE = _cats("context")
"""``pred.main_label_classifier``: a label without a probability."""

SCORES_TABLE: dict[int | str, NormalizedLabel] = {
    "SN": _row(2220, "SN-like: SuperNNova 'elasticc_binary_broad/SN_vs_other' (snnSnVsOthers_score) and ZTF "
                     "snn_sn_vs_all score the SN-like parent, not a leaf"),
    "Ia": _row(2222, "Ia: earlySNIa_score (rainbow RF), ZTF snn_snia_vs_nonia and rf_snia_vs_nonia score SN Ia"),
    "KN": _row(2232, "KN: ZTF rf_kn_vs_nonkn scores kilonovae"),
    "other": _row(RESIDUAL, f"Residual: the complement 1 - p of a binary score, as Fink sent it to ELAsTiCC (class 0 "
                            f"'Others'; {_DISTRIBUTE})"),
}
"""The binary scores, each with its complement."""

_SIMBAD_CLASSES: dict[str, tuple[int, str]] = {
    # code: (ELAsTiCC2 class, why)
    "RR*": (2323, "RR Lyrae"), "RR?": (2323, "RR Lyrae candidate"),
    "EB*": (2325, "eclipsing binary"), "EB?": (2325, "eclipsing binary candidate"),
    "Mi*": (2326, "Mira (LPV/Mira)"), "Mi?": (2326, "Mira candidate"), "LP*": (2326, "long-period variable"),
    "LP?": (2326, "long-period variable candidate"),
    "Ce*": (2322, "Cepheid"), "cC*": (2322, "classical Cepheid"), "WV*": (2322, "type II Cepheid (W Vir)"),
    "Ce?": (2322, "Cepheid candidate"),
    "dS*": (2324, "delta Scuti"), "SX*": (2324, "SX Phe: the Population II delta Scuti variables"),
    "QSO": (2332, "quasar (ELAsTiCC2 AGN holds quasars)"), "Q?": (2332, "quasar candidate"), "AGN": (2332, "AGN"),
    "AG?": (2332, "AGN candidate"), "Sy1": (2332, "Seyfert 1"), "Sy2": (2332, "Seyfert 2"), "SyG": (2332, "Seyfert"),
    "Bla": (2332, "blazar"), "Bz?": (2332, "blazar candidate"), "BLL": (2332, "BL Lac"),
    "BL?": (2332, "BL Lac candidate"),
    "CV*": (2234, "cataclysmic variable on Dwarf Novae, lossy: not every CV is a dwarf nova"),
    "CV?": (2234, "cataclysmic variable candidate, lossy as CV*"),
    "No*": (2231, "classical nova: a fast transient without its own ELAsTiCC2 leaf (Fast/Other)"),
    "No?": (2231, "nova candidate (Fast/Other)"),
    "SN*": (2220, "supernova of unknown type: the SN-like parent"), "SN?": (2220, "supernova candidate"),
    "Lev": (2235, "microlensing event"),
    "V*": (2000, "variable star of unknown kind: the Variable root"),
    "V*?": (2000, "variable star candidate: the Variable root"),
}
"""SIMBAD codes with an ELAsTiCC2 class; the old and new labels of each code get the same row."""


@cache
def simbad_otypes() -> tuple[tuple[str, str, str], ...]:
    """(code, old label, new label) of every SIMBAD type in Fink's ``otypes.txt`` (shipped, Apache-2.0)."""
    text = files("alertmux_fink").joinpath("data/simbad_otypes.txt").read_text()
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and all(cells) and cells[0] != "otype":
            rows.append((cells[0], cells[1], cells[2]))
    return tuple(rows)


def simbad_table() -> dict[int | str, NormalizedLabel]:
    """Every SIMBAD code and label Fink may write, mapped where ELAsTiCC2 has the class, context otherwise."""
    table: dict[int | str, NormalizedLabel] = {}
    for code, old, new in simbad_otypes():
        mapped = _SIMBAD_CLASSES.get(code)
        row = (_row(mapped[0], f"{mapped[1]}; {_OTYPES}", "context") if mapped
               else _row(None, f"no ELAsTiCC2 class for this type; {_OTYPES}", "context"))
        for label in (code, old, new):
            table.setdefault(label, row)
    for label in ("Unknown", "Fail", "nan", "Fail 504", "Fail 500"):
        table[label] = _row(None, "Fink's value when the cross-match found nothing or failed (cdsxmatch)", "context")
    return table


def finkclass_table() -> dict[int | str, NormalizedLabel]:
    """The ZTF ``finkclass`` labels, then the SIMBAD types it falls back to for cross-matched objects."""
    table = simbad_table()
    table |= {
        "Early SN Ia candidate": _row(2222, f"Ia: a candidate, no probability; {_FILTERS}", "context"),
        "SN candidate": _row(2220, f"SN-like (parent): Fink does not type it; {_FILTERS}", "context"),
        "Kilonova candidate": _row(2232, f"KN; {_FILTERS}", "context"),
        "Microlensing candidate": _row(2235, f"uLens; {_FILTERS}", "context"),
        "Solar System candidate": _row(None, f"solar-system object: outside ELAsTiCC2; {_FILTERS}", "context"),
        "Solar System MPC": _row(None, f"known solar-system object: outside ELAsTiCC2; {_FILTERS}", "context"),
        "Tracklet": _row(None, f"satellite or debris tracklet: outside ELAsTiCC2; {_FILTERS}", "context"),
        "Ambiguous": _row(NOT_CLASSIFIED, f"NotClassified: Fink's rules disagree; {_FILTERS}", "context"),
        "Unknown": _row(NOT_CLASSIFIED, f"NotClassified: no rule fired; {_FILTERS}", "context"),
    }
    return table


def elasticc2022_table() -> dict[int | str, NormalizedLabel]:
    """The 2022 ids Fink sent to ELAsTiCC, crosswalked, with 0 read as Fink meant it (Residual)."""
    old = taxonomy(ELASTICC)
    table: dict[int | str, NormalizedLabel] = {
        c.code: _row(CROSSWALK_2022_TO_2[c.code], f"2022 ELAsTiCC {c.name}, crosswalked by class path") for c in old
    }
    table[0] = _row(RESIDUAL, f"Residual: explicit override, Fink's 0 is 'Others', the 1 - p of a binary classifier "
                              f"({_DISTRIBUTE}), not the 2022 Static/Other")
    return table
