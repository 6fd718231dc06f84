"""ANTARES's classes mapped onto ELAsTiCC2, one row per label with the reason it is right.

ANTARES has no class vocabulary of its own: filters write locus *properties* and *tags*
(antares-devkit 0.11.1 ``antares_devkit/filters/*``). Two schemes:

* ``antares``: class-valued properties with a probability. Today one: Superphot+ (``superphot_plus_class`` with
  ``superphot_plus_class_prob``), whose five classes are supernova types (``filters/superphot_plus_ztf_v3``
  ``_allowed_types``). ``residual`` is 1 - the probability, what Superphot+ gave its other classes.
* ``antares_tag``: the tags filters set. Two name an ELAsTiCC2 class (``microlensing_candidate``,
  ``dwarf_nova_outburst``); the rest are selections (young, extragalactic, anomalous, in a deep field...), kept as
  context with no class. A tag this table does not know is stored verbatim, class null, and counted.

ANTARES's ELAsTiCC topics carried ELAsTiCC brokerClassification messages: they are read in the core ``elasticc2``
(and 2022 ``elasticc``) schemes.
"""

from __future__ import annotations

from alertmux import NormalizedLabel
from alertmux.taxonomy import RESIDUAL

SCHEME = "antares"
TAG_SCHEME = "antares_tag"
_SUPERPHOT = "antares-devkit 0.11.1 filters/superphot_plus_ztf_v3 _allowed_types"
_DEVKIT = "antares-devkit 0.11.1 filters (OUTPUT_TAGS)"
_ORIGMAP = "ELAsTiCC2 II (2224) holds SNANA gentypes 30-37, IIn included (elasticc origmap, migration 0016)"


def _row(class_id: int | None, source: str, kind: str = "probability") -> NormalizedLabel:
    return NormalizedLabel(class_id, kind=kind, source=source)  # type: ignore[arg-type]


TABLE: dict[int | str, NormalizedLabel] = {
    "SN Ia": _row(2222, f"Ia; {_SUPERPHOT}"),
    "SN Ibc": _row(2223, f"Ib/c; {_SUPERPHOT}"),
    "SN II": _row(2224, f"II; {_SUPERPHOT}"),
    "SN IIn": _row(2224, f"{_ORIGMAP}; {_SUPERPHOT}"),
    "SLSN-I": _row(2242, f"SLSN; {_SUPERPHOT}"),
    "residual": _row(RESIDUAL, "Residual: 1 - superphot_plus_class_prob, what Superphot+ gave its other classes "
                               "(ELAsTiCC2 notebook: Residual is 'none of what I reported')"),
}
"""Superphot+ classes (and the residual alertmux adds beside them)."""

_SELECTIONS = {
    "superphot_plus_classified": "Superphot+ ran on it (its class is in the properties, read separately)",
    "desoto_classified": "the DESOTO classifier ran on it",
    "nuclear_transient": "at a galaxy nucleus: a TDE, an AGN flare or a nuclear SN, ambiguous",
    "sso_candidates": "a solar-system object candidate: outside ELAsTiCC2",
    "young_extragalactic_candidate": "a young transient in a galaxy: a selection, not a class",
    "young_rubin_transients": "a young Rubin transient: a selection, not a class",
    "extragalactic": "in or near a galaxy: a selection, not a class",
    "blue_transient": "a blue transient: a selection, not a class",
    "ECL_blue_transient_candidate": "a blue transient candidate: a selection, not a class",
    "high_amplitude_transient_candidate": "large amplitude: a selection, not a class",
    "in_LSSTDDF": "in an LSST deep-drilling field: a position",
    "lantern_xgboost_t2.0.7_c0.95": "the LANTERN XGBoost selection: not a class",
    "iso_forest_anomaly_detection": "an anomaly score above threshold: not a class",
    "LAISS_RFC_AD_filter": "the LAISS anomaly filter: not a class",
    "refitt_newsources_snrcut": "REFITT's new-source selection: not a class",
    "uniform_random_sample": "a random sample: not a class",
}

TAG_TABLE: dict[int | str, NormalizedLabel] = {
    "microlensing_candidate": _row(2235, f"uLens: the filter's candidate, no probability; {_DEVKIT}", "context"),
    "dwarf_nova_outburst": _row(2234, f"Dwarf Novae: an outburst; {_DEVKIT}", "context"),
    **{tag: _row(None, f"{why}; {_DEVKIT}", "context") for tag, why in _SELECTIONS.items()},
}
"""Locus tags."""
