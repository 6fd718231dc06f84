"""ALeRCE's class vocabularies mapped onto ELAsTiCC2, one row per label with the reason it is right.

ALeRCE names classes in words (``SNIa``, ``LPV``...); its ELAsTiCC output already uses ELAsTiCC2 ids (its
``ClassMapper`` is the taxonomy's names -> ids), so those messages go through the core ``elasticc2`` normalizer.
Every string vocabulary shares the ``alerce`` scheme: the same word means the same class in every ALeRCE
classifier, and the classifier itself is stored with each message.

Coarse labels land on parent classes, never on a leaf they do not name: the light-curve classifier's top level
(``Transient``, ``Stochastic``, ``Periodic``) and the stamp classifier's ``SN`` and ``VS``. Labels outside the
taxonomy (``asteroid``) are kept as context. Where ALeRCE's class is wider than the ELAsTiCC2 one it lands on
(``CV/Nova`` on Dwarf Novae), the row says so.
"""

from __future__ import annotations

from alertmux import NormalizedLabel

SCHEME = "alerce"

_LABELS_1288 = "ALeRCE class list from the live ZTF API (TOMToolkit/tom_base#1288, research/brokers.md §1)"
_BHRF = ("BHRF/ATAT 22-class list (tom_base#1288; alercebroker/pipeline@9a728060bb "
         "training/lc_classifier_ztf/feature_computation/evaluate_model.py)")
_STAMP = "stamp classifier output record (alercebroker/pipeline@9a728060bb schemas/stamp_classifier_2025_step)"
_ORIGMAP = "ELAsTiCC2 II (2224) holds SNANA gentypes 30-37, IIn and IIb included (elasticc origmap, migration 0016)"


def _row(class_id: int | None, source: str, kind: str = "probability") -> NormalizedLabel:
    return NormalizedLabel(class_id, kind=kind, source=source)  # type: ignore[arg-type]


TABLE: dict[int | str, NormalizedLabel] = {
    # lc_classifier_transient (and the BHRF/ATAT transients)
    "SNIa": _row(2222, f"Ia; {_LABELS_1288}"),
    "SNIbc": _row(2223, f"Ib/c; {_LABELS_1288}"),
    "SNII": _row(2224, f"II; {_LABELS_1288}"),
    "SNIIb": _row(2224, f"{_ORIGMAP}; {_BHRF}"),
    "SNIIn": _row(2224, f"{_ORIGMAP}; {_BHRF}"),
    "SLSN": _row(2242, f"SLSN; {_LABELS_1288}"),
    "TDE": _row(2243, f"TDE; {_BHRF}"),
    "Microlensing": _row(2235, f"uLens; {_BHRF}"),
    # lc_classifier_stochastic
    "QSO": _row(2332, f"AGN (ELAsTiCC2's only non-periodic leaf is AGN, quasars included); {_LABELS_1288}"),
    "AGN": _row(2332, f"AGN; {_LABELS_1288}; {_STAMP}"),
    "Blazar": _row(2332, f"AGN (blazars are AGN); {_LABELS_1288}"),
    "CV/Nova": _row(2234, f"Dwarf Novae, lossy: classical novae are not dwarf novae; {_LABELS_1288}"),
    "YSO": _row(2331, f"Non-Periodic/Other (young stellar objects vary stochastically); {_LABELS_1288}"),
    # lc_classifier_periodic
    "LPV": _row(2326, f"LPV/Mira; {_LABELS_1288}"),
    "E": _row(2325, f"EB (eclipsing binary); {_LABELS_1288}"),
    "EA": _row(2325, f"EB (Algol-type eclipsing binary); {_BHRF}"),
    "EB/EW": _row(2325, f"EB (beta Lyrae / W UMa eclipsing binaries); {_BHRF}"),
    "DSCT": _row(2324, f"Delta Scuti; {_LABELS_1288}"),
    "RRL": _row(2323, f"RR Lyrae; {_LABELS_1288}"),
    "RRLab": _row(2323, f"RR Lyrae (ab); {_BHRF}"),
    "RRLc": _row(2323, f"RR Lyrae (c); {_BHRF}"),
    "CEP": _row(2322, f"Cepheid; {_LABELS_1288}"),
    "Periodic-Other": _row(2321, f"Periodic/Other; {_LABELS_1288}"),
    "RSCVn": _row(2321, f"Periodic/Other (RS CVn rotational variables have no ELAsTiCC2 leaf); {_BHRF}"),
    # lc_classifier_top: coarse classes land on their parents
    "Transient": _row(2200, f"Non-Recurring (parent: the top level of the hierarchical classifier); {_LABELS_1288}"),
    "Stochastic": _row(2330, f"Non-Periodic (parent); {_LABELS_1288}"),
    "Periodic": _row(2320, f"Periodic (parent); {_LABELS_1288}"),
    # stamp_classifier (first detection only): context classes on parents
    "SN": _row(2220, f"SN-like (parent: the stamp classifier cannot tell SN types apart); {_STAMP}"),
    "VS": _row(2300, f"Recurring (parent: 'variable star', periodic or not); {_STAMP}"),
    "bogus": _row(1100, f"Static/Other: an artifact, as the ELAsTiCC2 taxonomy notebook files them; {_STAMP}"),
    "satellite": _row(1100, f"Static/Other: not an astrophysical transient; {_STAMP}"),
    "asteroid": _row(None, f"solar-system object: outside the ELAsTiCC2 taxonomy; {_STAMP}", kind="context"),
}
"""Native label -> ELAsTiCC2 class, for every ALeRCE string vocabulary."""

ELASTICC_CLASS_NAMES: dict[str, int] = {
    "Meta/Other": 100, "Residual": 200, "NotClassified": 300, "Static/Other": 1100, "Variable/Other": 2100,
    "Non-Recurring/Other": 2210, "SN-like/Other": 2221, "Ia": 2222, "Ib/c": 2223, "II": 2224, "Iax": 2225,
    "91bg": 2226, "Fast/Other": 2231, "KN": 2232, "M-dwarf Flare": 2233, "Dwarf Novae": 2234, "uLens": 2235,
    "Long/Other": 2241, "SLSN": 2242, "TDE": 2243, "ILOT": 2244, "CART": 2245, "PISN": 2246,
    "Recurring/Other": 2310, "Periodic/Other": 2321, "Cepheid": 2322, "RR Lyrae": 2323, "Delta Scuti": 2324,
    "EB": 2325, "LPV/Mira": 2326, "Non-Periodic/Other": 2331, "AGN": 2332,
}
"""ALeRCE's ELAsTiCC ``ClassMapper`` (alercebroker/pipeline lc_classification_step/.../elasticc_mapper.py): every
message it sent carries all 32 ids, the classes its model did not output at probability 0.0."""

BHRF_CLASSES: tuple[str, ...] = (
    "SNIa", "SNIbc", "SNIIb", "SNII", "SNIIn", "SLSN", "TDE", "Microlensing", "QSO", "AGN", "Blazar", "YSO", "CV/Nova",
    "LPV", "EA", "EB/EW", "Periodic-Other", "RSCVn", "CEP", "RRLab", "RRLc", "DSCT",
)
"""The class list of ``LC_classifier_BHRF_forced_phot(beta)``, in ALeRCE's order (tom_base#1288)."""
