"""ELAsTiCC class taxonomies (ELAsTiCC2 and the 2022 ELAsTiCC) and the crosswalk between them.

ELAsTiCC2 (4-digit ids) is the canonical scheme of alertmux. The 2022 ELAsTiCC scheme (1-3 digit ids) is kept so
that old classifications can be read and translated. Both are loaded from the CSVs shipped in ``alertmux/data``.
These CSVs are copies of the TOM's id/name/gentype tables. This module must not import anything else from alertmux.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType

ELASTICC2 = "elasticc2"
ELASTICC = "elasticc"

RESIDUAL = 200  # ELAsTiCC2 Meta/Residual: probability for "none of the classes I reported".
NOT_CLASSIFIED = 300  # ELAsTiCC2 Meta/NotClassified: the classifier chose not to classify (p = 1).

_CSV_FILES = {ELASTICC2: "taxonomy_elasticc2_classid.csv", ELASTICC: "taxonomy_elasticc1_classid.csv"}
# The TOM's "categorymatch" level. It is listed explicitly because depth alone does not identify it:
# 2210 Non-Recurring/Other sits at the same depth as 2220 SN-like but is not a category.
_CATEGORIES = {ELASTICC2: frozenset({2220, 2230, 2240, 2320, 2330}), ELASTICC: frozenset({11, 12, 13, 21, 22})}
# Names that changed spelling only between the schemes (2022 name -> ELAsTiCC2 name). Both spellings are accepted
# by code_for_name in either scheme, and the crosswalk matches through this table.
NAME_ALIASES_2022_TO_2: Mapping[str, str] = MappingProxyType({"Dwarf Nova": "Dwarf Novae"})
# ELAsTiCC2 added these roots. 2022 had 0 Static/Other and Non-Recurring/Recurring at top level, so these roots are
# dropped from ELAsTiCC2 paths before the paths are compared.
_ROOTS_ADDED_IN_2 = frozenset({"Static", "Variable"})


@dataclass(frozen=True, slots=True)
class TaxonomyClass:
    """One class of a taxonomy.

    Attributes:
        scheme: Taxonomy the class belongs to (``"elasticc2"`` or ``"elasticc"``).
        code: Class id as reported by brokers.
        name: Description from the TOM table, e.g. ``"Ia"`` or ``"SN-like/Other"``.
        parent: Parent class id, or None for a root.
        gentypes: SNANA gentypes that map exactly to this class (empty for non-leaves and LPV/Mira).
    """

    scheme: str
    code: int
    name: str
    parent: int | None
    gentypes: tuple[int, ...]


class Taxonomy:
    """A class tree. Get it from `taxonomy`. All lookups are dict lookups on data built once."""

    def __init__(self, scheme: str, classes: list[TaxonomyClass]) -> None:
        self.scheme = scheme
        self._classes = {c.code: c for c in classes}  # keeps the CSV order, which is tree order
        self._children: dict[int, tuple[int, ...]] = {
            code: tuple(c.code for c in classes if c.parent == code) for code in self._classes
        }
        self._ancestors: dict[int, tuple[int, ...]] = {}
        for c in classes:
            chain: list[int] = []
            parent = c.parent
            while parent is not None:
                chain.append(parent)
                parent = self._classes[parent].parent
            self._ancestors[c.code] = tuple(chain)
        self._by_gentype = {g: c.code for c in classes for g in c.gentypes}
        self._by_name = {c.name.casefold(): c.code for c in classes}
        # Accept the other scheme's spelling too, unless it already names a class here.
        for old, new in NAME_ALIASES_2022_TO_2.items():
            for known, alias in ((new, old), (old, new)):
                if known.casefold() in self._by_name:
                    self._by_name.setdefault(alias.casefold(), self._by_name[known.casefold()])
        self._categories = _CATEGORIES[scheme]

    def __repr__(self) -> str:
        return f"Taxonomy({self.scheme!r}, {len(self._classes)} classes)"

    def __getitem__(self, code: int) -> TaxonomyClass:
        try:
            return self._classes[code]
        except KeyError:
            raise KeyError(
                f"{code!r} is not a class id of taxonomy {self.scheme!r}; known: {list(self._classes)}"
            ) from None

    def __contains__(self, code: object) -> bool:
        return code in self._classes

    def __iter__(self) -> Iterator[TaxonomyClass]:
        return iter(self._classes.values())

    def __len__(self) -> int:
        return len(self._classes)

    def name(self, code: int) -> str:
        """Return the description of ``code``, e.g. ``"Ia"``."""
        return self[code].name

    def code_for_name(self, name: str) -> int:
        """Return the class id for a description, ignoring case; spellings in `NAME_ALIASES_2022_TO_2` also match.

        Raises:
            KeyError: No class has this name.
        """
        try:
            return self._by_name[name.strip().casefold()]
        except KeyError:
            raise KeyError(f"no class named {name!r} in taxonomy {self.scheme!r}") from None

    def parent(self, code: int) -> int | None:
        """Return the parent id of ``code``, or None for a root."""
        return self[code].parent

    def ancestors(self, code: int) -> tuple[int, ...]:
        """Return the ancestors of ``code``, nearest first (the root is last)."""
        self[code]  # raises the clear KeyError for an unknown code
        return self._ancestors[code]

    def path(self, code: int) -> tuple[str, ...]:
        """Return the names from the root down to ``code``, e.g. ``("Variable", "Non-Recurring", "SN-like", "Ia")``."""
        return tuple(self._classes[c].name for c in (*reversed(self.ancestors(code)), code))

    def children(self, code: int) -> tuple[int, ...]:
        """Return the direct children of ``code`` in tree order."""
        self[code]  # raises the clear KeyError for an unknown code
        return self._children[code]

    def is_leaf(self, code: int) -> bool:
        """Return True if ``code`` has no children."""
        return not self.children(code)

    def leaves(self) -> tuple[int, ...]:
        """Return all classes without children, in tree order."""
        return tuple(code for code, kids in self._children.items() if not kids)

    def rollup(self, code: int, level: int) -> int | None:
        """Return the ancestor-or-self of ``code`` at depth ``level`` (roots have depth 0), or None if it is shallower.

        Raises:
            ValueError: ``level`` is negative.
        """
        if level < 0:
            raise ValueError(f"level must be >= 0, got {level}")
        chain = self.ancestors(code)[::-1] + (code,)
        return chain[level] if level < len(chain) else None

    def category(self, code: int) -> int | None:
        """Return the ELAsTiCC category that ``code`` is in or is, or None for classes above or outside that level.

        The categories are 2220 SN-like, 2230 Fast, 2240 Long, 2320 Periodic, 2330 Non-Periodic in elasticc2 and
        11, 12, 13, 21, 22 in elasticc. Meta, Static and the ``*/Other`` classes above the categories give None.
        """
        for c in (code, *self.ancestors(code)):
            if c in self._categories:
                return c
        return None

    def class_for_gentype(self, gentype: int) -> int | None:
        """Return the class whose exact SNANA gentypes include ``gentype``, or None (e.g. 57, 58, 71-74, 98)."""
        return self._by_gentype.get(gentype)


def _load(scheme: str) -> Taxonomy:
    text = files("alertmux").joinpath("data").joinpath(_CSV_FILES[scheme]).read_text(encoding="utf-8")
    classes = [
        TaxonomyClass(
            scheme=scheme,
            code=int(row["classid"]),
            name=row["description"],
            parent=int(row["parent_classid"]) if row["parent_classid"] else None,
            gentypes=tuple(int(g) for g in row["snana_gentypes_exact"].split()),
        )
        for row in csv.DictReader(io.StringIO(text))
    ]
    # The tree code assumes unique ids, known parents and each gentype in one class; fail at load time if not.
    codes = {c.code for c in classes}
    gentypes = [g for c in classes for g in c.gentypes]
    if len(codes) != len(classes) or any(c.parent not in codes for c in classes if c.parent is not None):
        raise RuntimeError(f"{_CSV_FILES[scheme]}: duplicate class ids or unknown parents")
    if len(set(gentypes)) != len(gentypes):
        raise RuntimeError(f"{_CSV_FILES[scheme]}: a gentype is listed under more than one class")
    return Taxonomy(scheme, classes)


@functools.cache
def taxonomy(scheme: str) -> Taxonomy:
    """Return the taxonomy of ``scheme`` (`ELASTICC2` or `ELASTICC`), loaded once.

    Raises:
        ValueError: Unknown scheme.
    """
    if scheme not in _CSV_FILES:
        raise ValueError(f"unknown taxonomy scheme {scheme!r}; known schemes: {sorted(_CSV_FILES)}")
    return _load(scheme)


def _build_crosswalk() -> dict[int, int]:
    """Match every 2022 class to the ELAsTiCC2 class with the same path of names, and check the result."""
    old, new = taxonomy(ELASTICC), taxonomy(ELASTICC2)
    by_path: dict[tuple[str, ...], int] = {}
    for c in new:
        path = new.path(c.code)
        path = path[1:] if path[0] in _ROOTS_ADDED_IN_2 else path
        if path:  # 1000 Static and 2000 Variable themselves have no 2022 node
            by_path[path] = c.code
    table: dict[int, int] = {}
    for c in old:
        path = tuple(NAME_ALIASES_2022_TO_2.get(n, n) for n in old.path(c.code))
        if path not in by_path:
            raise RuntimeError(f"elasticc class {c.code} {'/'.join(path)!r} has no elasticc2 counterpart")
        table[c.code] = by_path[path]
    if len(set(table.values())) != len(table):
        raise RuntimeError("two elasticc classes map to the same elasticc2 class")
    for a, b in table.items():
        if old[a].gentypes != new[b].gentypes or old.is_leaf(a) != new.is_leaf(b):
            raise RuntimeError(f"elasticc {a} and elasticc2 {b} match by name but differ in gentypes or leafness")
    return table


CROSSWALK_2022_TO_2: Mapping[int, int] = MappingProxyType(_build_crosswalk())
"""ELAsTiCC (2022) class id -> ELAsTiCC2 class id, for every 2022 class."""
CROSSWALK_2_TO_2022: Mapping[int, int] = MappingProxyType({b: a for a, b in CROSSWALK_2022_TO_2.items()})
"""ELAsTiCC2 class id -> 2022 class id; ids absent here (Meta, Static, Variable, Variable/Other) have none."""


def crosswalk(code: int, *, from_scheme: str, to_scheme: str) -> int | None:
    """Translate a class id between schemes.

    Args:
        code: Class id in ``from_scheme``.
        from_scheme: Scheme of ``code``.
        to_scheme: Wanted scheme.

    Returns:
        The class id in ``to_scheme``, or None if the class has no counterpart there.

    Raises:
        ValueError: Unknown scheme.
        KeyError: ``code`` is not a class of ``from_scheme``.
    """
    taxonomy(to_scheme)  # raises for an unknown scheme
    taxonomy(from_scheme)[code]  # raises for an unknown code
    if from_scheme == to_scheme:
        return code
    table = CROSSWALK_2022_TO_2 if from_scheme == ELASTICC else CROSSWALK_2_TO_2022
    return table.get(code)
