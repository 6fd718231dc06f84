from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from alertmux.taxonomy import (
    CROSSWALK_2_TO_2022,
    CROSSWALK_2022_TO_2,
    ELASTICC,
    ELASTICC2,
    NOT_CLASSIFIED,
    RESIDUAL,
    crosswalk,
    taxonomy,
)

ROOT = Path(__file__).resolve().parents[2]
DERIVED = ROOT.parent / "shared" / "data" / "elasticc" / "derived"
CSVS = {ELASTICC2: "taxonomy_elasticc2_classid.csv", ELASTICC: "taxonomy_elasticc1_classid.csv"}


def reference_rows(scheme: str) -> list[dict[str, str]]:
    with open(DERIVED / CSVS[scheme], newline="") as f:
        return list(csv.DictReader(f))


def origmap_gentypes() -> set[int]:
    text = (ROOT / "core" / "src" / "alertmux" / "data" / "elasticc_origmap.txt").read_text()
    return {int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+\S", text, re.MULTILINE)}


@pytest.mark.parametrize("scheme", [ELASTICC2, ELASTICC])
def test_shipped_taxonomy_equals_reference_csv(scheme: str) -> None:
    tax = taxonomy(scheme)
    rows = reference_rows(scheme)
    assert [c.code for c in tax] == [int(r["classid"]) for r in rows]
    for r in rows:
        c = tax[int(r["classid"])]
        assert c.name == r["description"]
        assert c.parent == (int(r["parent_classid"]) if r["parent_classid"] else None)
        assert c.gentypes == tuple(int(g) for g in r["snana_gentypes_exact"].split())


def test_crosswalk_covers_every_2022_class_and_agrees_with_gentypes() -> None:
    old, new = taxonomy(ELASTICC), taxonomy(ELASTICC2)
    assert set(CROSSWALK_2022_TO_2) == {c.code for c in old}
    assert len(set(CROSSWALK_2022_TO_2.values())) == len(CROSSWALK_2022_TO_2)
    for leaf in old.leaves():
        if old[leaf].gentypes:
            assert CROSSWALK_2022_TO_2[leaf] == new.class_for_gentype(old[leaf].gentypes[0])
            assert new[CROSSWALK_2022_TO_2[leaf]].gentypes == old[leaf].gentypes
    for code in old:
        back = crosswalk(
            crosswalk(code.code, from_scheme=ELASTICC, to_scheme=ELASTICC2), from_scheme=ELASTICC2, to_scheme=ELASTICC
        )
        assert back == code.code


@pytest.mark.parametrize(
    ("old", "new"), [(111, 2222), (221, 2332), (123, 2234), (0, 1100), (11, 2220), (21, 2320), (215, 2326)]
)
def test_crosswalk_spot_checks(old: int, new: int) -> None:
    assert crosswalk(old, from_scheme=ELASTICC, to_scheme=ELASTICC2) == new
    assert crosswalk(new, from_scheme=ELASTICC2, to_scheme=ELASTICC) == old


def test_elasticc2_only_classes_have_no_2022_counterpart() -> None:
    only2 = {0, 100, 200, 300, 1000, 2000, 2100}
    assert {c.code for c in taxonomy(ELASTICC2)} - set(CROSSWALK_2_TO_2022) == only2
    assert all(crosswalk(c, from_scheme=ELASTICC2, to_scheme=ELASTICC) is None for c in only2)
    assert crosswalk(2222, from_scheme=ELASTICC2, to_scheme=ELASTICC2) == 2222


def test_class_for_gentype_covers_origmap() -> None:
    unmapped = {57, 58, 71, 72, 73, 74, 98}
    gentypes = origmap_gentypes()
    assert unmapped < gentypes and len(gentypes) == 38
    for scheme in (ELASTICC2, ELASTICC):
        tax = taxonomy(scheme)
        for g in gentypes:
            code = tax.class_for_gentype(g)
            if g in unmapped:
                assert code is None
            else:
                assert code is not None and g in tax[code].gentypes and tax.is_leaf(code)
    assert taxonomy(ELASTICC2).class_for_gentype(84) == 2234
    assert taxonomy(ELASTICC).class_for_gentype(10) == 111


def test_tree_navigation() -> None:
    tax = taxonomy(ELASTICC2)
    assert tax.ancestors(2222) == (2220, 2200, 2000)
    assert tax.path(2222) == ("Variable", "Non-Recurring", "SN-like", "Ia")
    assert tax.children(2330) == (2331, 2332)
    assert tax.is_leaf(2326) and not tax.is_leaf(2320)
    assert len(tax.leaves()) == 32 and 2210 in tax.leaves() and 2220 not in tax.leaves()
    assert (tax.rollup(2222, 0), tax.rollup(2222, 1), tax.rollup(2222, 3), tax.rollup(2222, 4)) == (
        2000,
        2200,
        2222,
        None,
    )
    assert [tax.category(c) for c in (2222, 2220, 2246, 2326, 2332)] == [2220, 2220, 2240, 2320, 2330]
    assert [tax.category(c) for c in (RESIDUAL, NOT_CLASSIFIED, 1100, 2100, 2210, 2200)] == [None] * 6
    old = taxonomy(ELASTICC)
    assert old.ancestors(111) == (11, 1) and old.category(215) == 21 and old.category(10) is None
    assert old.category(0) is None and old.rollup(0, 0) == 0
    assert (tax.name(RESIDUAL), tax.name(NOT_CLASSIFIED)) == ("Residual", "NotClassified")


def test_code_for_name() -> None:
    assert taxonomy(ELASTICC2).code_for_name("m-dwarf flare") == 2233
    assert taxonomy(ELASTICC2).code_for_name("Dwarf Nova") == 2234
    assert taxonomy(ELASTICC).code_for_name("DWARF NOVAE") == 123
    with pytest.raises(KeyError, match="no class named 'Ia-91T'"):
        taxonomy(ELASTICC2).code_for_name("Ia-91T")


def test_unknown_code_and_scheme_errors() -> None:
    with pytest.raises(KeyError, match="111 is not a class id of taxonomy 'elasticc2'"):
        taxonomy(ELASTICC2)[111]
    with pytest.raises(KeyError, match="9999"):
        taxonomy(ELASTICC).ancestors(9999)
    with pytest.raises(KeyError, match="2222 is not a class id of taxonomy 'elasticc'"):
        crosswalk(2222, from_scheme=ELASTICC, to_scheme=ELASTICC2)
    with pytest.raises(
        ValueError, match=r"unknown taxonomy scheme 'elasticc3'; known schemes: \['elasticc', 'elasticc2'\]"
    ):
        taxonomy("elasticc3")
    with pytest.raises(ValueError, match="elasticc3"):
        crosswalk(111, from_scheme=ELASTICC, to_scheme="elasticc3")
    with pytest.raises(ValueError, match="level"):
        taxonomy(ELASTICC2).rollup(2222, -1)
    assert 111 not in taxonomy(ELASTICC2) and 111 in taxonomy(ELASTICC)
