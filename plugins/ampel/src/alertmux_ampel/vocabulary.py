"""AMPEL's class ids and labels mapped onto ELAsTiCC2, one row per label with the reason it is right.

AMPEL's ELAsTiCC reports (``T2ElasticcReport`` in AmpelAstro/Ampel-HU-astro) mix vocabularies: 2022 versions sent
ELAsTiCC (2022) ids (``parsnip_taxonomy`` 111...; parents 1, 21, 22), later ones ELAsTiCC2 leaves (2222...) beside
2022 parents (1, 21, 22), and a few codes that need an explicit decision. Both id ranges coexist without clashing
except at 0, so one ``ampel`` scheme holds them all, with AMPEL's model labels (parsnip, xgb) as strings:

* ``2330`` -> 2332 AGN and ``2320`` -> 2325 EB: AMPEL's XGB "direct evaluations" send AGN as 2330 (Non-Periodic)
  and EB as 2320 (Periodic), parent codes (``direct_evaluations = {'AGN': 2330, 'uLens': 2235, 'EB': 2320}``); in
  the reports that carry them they are the only use of those codes, since AMPEL's own Periodic/Non-Periodic split
  goes out as the 2022 codes 21 and 22. Risk, documented: a future AMPEL report using 2320/2330 for the parents
  would be scored as EB/AGN.
* ``2227`` -> 2224 II: AMPEL's taxonomy helper adds a non-standard 2227 IIn (desy-multimessenger/elasticc2
  ``taxonomy.py``); ELAsTiCC2's II (2224) holds the IIn gentypes 35 and 36.
* ``0`` -> 300 NotClassified: ``classId = 0   # Default for non-reply`` ... "This is meant to say that we really
  do not know" (T2ElasticcReport) -- neither the 2022 Static/Other nor the ELAsTiCC2 Meta root.
"""

from __future__ import annotations

from alertmux import NormalizedLabel
from alertmux.taxonomy import CROSSWALK_2022_TO_2, ELASTICC, ELASTICC2, taxonomy

SCHEME = "ampel"
_REPORT = "AmpelAstro/Ampel-HU-astro ampel/contrib/hu/t2/T2ElasticcReport.py"
_V2 = "ELAsTiCC2 taxonomy (tom_desc elasticc2 migration 0016), as AMPEL sends it"
_V1 = "2022 ELAsTiCC id (AMPEL's 2022 reports and the 1/21/22 parents of later ones), crosswalked by class path"


def _row(class_id: int | None, source: str) -> NormalizedLabel:
    return NormalizedLabel(class_id, source=source)


def _table() -> dict[int | str, NormalizedLabel]:
    table: dict[int | str, NormalizedLabel] = {c.code: _row(c.code, _V2) for c in taxonomy(ELASTICC2)}
    for code in (c.code for c in taxonomy(ELASTICC)):
        if code not in table:
            table[code] = _row(CROSSWALK_2022_TO_2[code], f"{_V1} ({taxonomy(ELASTICC).name(code)})")
    table |= {
        2330: _row(2332, f"AGN: AMPEL's XGB direct evaluation sends AGN as 2330, the Non-Periodic parent ({_REPORT} "
                         "direct_evaluations)"),
        2320: _row(2325, f"EB: AMPEL's XGB direct evaluation sends EB as 2320, the Periodic parent ({_REPORT} "
                         "direct_evaluations)"),
        2227: _row(2224, "II: AMPEL's non-standard 2227 IIn (desy-multimessenger/elasticc2 taxonomy.py); ELAsTiCC2 II "
                         "holds the IIn gentypes 35 and 36"),
        0: _row(300, f"NotClassified: AMPEL's 'Default for non-reply ... we really do not know' ({_REPORT})"),
    }
    parsnip = f"parsnip label ({_REPORT} parsnip_taxonomy, ELAsTiCC2 version)"
    for label, class_id in {
        "SNIa": 2222, "SNII": 2224, "SNibc": 2223, "SNIbc": 2223, "SNIax": 2225, "SNIa91bg": 2226, "KN": 2232,
        "Mdwarf-flare": 2233, "dwarf-nova": 2234, "uLens": 2235, "TDE": 2243, "ILOT": 2244, "CART": 2245,
        "PISN": 2246,
    }.items():
        table[label] = _row(class_id, parsnip)
    for label in ("SLSN", "SLSN-I"):
        table[label] = _row(2242, f"SLSN: {parsnip}; one version there maps it to 2243 (TDE's id), a slip the 2022 "
                                  "version (SLSN -> 131 SLSN) shows")
    table["SNIIn"] = _row(2224, "II: ELAsTiCC2 II holds the IIn gentypes 35 and 36 (AMPEL's 2227 IIn)")
    table["AGN"] = _row(2332, f"AGN: XGB direct evaluation label ({_REPORT} direct_evaluations)")
    table["EB"] = _row(2325, f"EB: XGB direct evaluation label ({_REPORT} direct_evaluations)")
    return table


TABLE = _table()
"""Native id or label -> ELAsTiCC2 class."""

QUIRKS_OUT: dict[int, int] = {2332: 2330, 2325: 2320}
"""How AMPEL writes these ELAsTiCC2 classes (its emulator does the same, so the table above is exercised)."""
