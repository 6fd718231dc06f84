"""Lasair's classes mapped onto ELAsTiCC2: Sherlock's context classes and annotators' free-text labels.

Sherlock (lsst-uk/lasair-lsst ``docs/source/core_functions/sherlock.md``) classifies a transient by what it sits on
in the catalogues, not by its light curve: its classes are *context*, never probabilities. They are stored as
``kind="context"`` with no value and land on a class only where the association says that much, honestly:

* ``AGN`` (matched to a catalogued AGN or QSO) -> 2332 AGN; ``CV`` (a catalogued cataclysmic variable) -> 2234 Dwarf
  Novae, lossy (not every CV is a dwarf nova).
* ``SN`` (near a galaxy, off its nucleus) -> 2200 Non-Recurring, not 2220 SN-like: kilonovae, SLSNe, TDEs off-centre
  and other non-recurring transients sit in galaxies too.
* ``VS`` (on a catalogued star) -> 2000 Variable, not 2300 Recurring: M-dwarf flares and dwarf novae, both
  non-recurring in ELAsTiCC2, sit on stars too.
* ``UNCLEAR`` and ``NULL`` -> 300 NotClassified (Sherlock could not decide).
* ``NT`` (nuclear transient: a TDE, an AGN flare or a nuclear SN), ``BS`` (near a bright star: often an artefact) and
  ``ORPHAN`` (no host: says nothing of the class) -> no class, context.

Annotations (``lasair_annotation``) are free text chosen by each annotator: a few common class words are mapped,
anything else is context with no class (it is an annotator's vocabulary, not an unknown Lasair label).
"""

from __future__ import annotations

from alertmux import NormalizedLabel
from alertmux.taxonomy import NOT_CLASSIFIED

SHERLOCK = "sherlock"
ANNOTATION = "lasair_annotation"
_DOC = "lsst-uk/lasair-lsst@308098ee21 docs/source/core_functions/sherlock.md"


def _context(class_id: int | None, why: str) -> NormalizedLabel:
    return NormalizedLabel(class_id, kind="context", source=f"{why}; {_DOC}")


SHERLOCK_TABLE: dict[int | str, NormalizedLabel] = {
    "AGN": _context(2332, "AGN: matched to a catalogued AGN/QSO"),
    "CV": _context(2234, "Dwarf Novae, lossy: matched to a catalogued cataclysmic variable, not every CV is a dwarf "
                         "nova"),
    "SN": _context(2200, "Non-Recurring (parent): near a galaxy off its nucleus, which kilonovae, SLSNe and TDEs "
                         "are too"),
    "VS": _context(2000, "Variable (root): on a catalogued star, which flares and dwarf novae (non-recurring) are too"),
    "UNCLEAR": _context(NOT_CLASSIFIED, "NotClassified: Sherlock could not decide between associations"),
    "NULL": _context(NOT_CLASSIFIED, "NotClassified: Sherlock gave no classification"),
    "NT": _context(None, "nuclear transient: a TDE, an AGN flare or a nuclear SN, no honest single class"),
    "BS": _context(None, "near a bright star: often an artefact, else a stellar event; no honest class"),
    "ORPHAN": _context(None, "no host or catalogue match: says nothing of the class"),
}
"""Sherlock's nine classes."""

_WORDS: dict[str, tuple[int, str]] = {
    "sn ia": (2222, "Ia"), "snia": (2222, "Ia"), "ia": (2222, "Ia"), "sn ii": (2224, "II"), "snii": (2224, "II"),
    "sn ibc": (2223, "Ib/c"), "snibc": (2223, "Ib/c"), "slsn": (2242, "SLSN"), "tde": (2243, "TDE"),
    "kn": (2232, "KN"), "kilonova": (2232, "KN"), "agn": (2332, "AGN"), "qso": (2332, "AGN"),
}


def annotation_label(label: int | str) -> NormalizedLabel:
    """Where an annotator's label lands: a common class word, else context without a class."""
    hit = _WORDS.get(str(label).strip().lower())
    if hit is not None:
        return NormalizedLabel(hit[0], kind="context", source=f"{hit[1]}: a common class word in a Lasair annotation "
                                                              "(free text, no probability)")
    return NormalizedLabel(None, kind="context", source="a Lasair annotator's own label (free text, lasair-lsst "
                                                        "webserver/lasairapi annotate): kept, no class")
