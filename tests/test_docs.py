"""The documentation describes the code as it is: hooks, commands, checks, fixtures, taxonomy, excerpts, links."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import alertmux.testing
from alertmux.hookspecs import AlertmuxSpecs
from alertmux.taxonomy import CROSSWALK_2_TO_2022, ELASTICC2, taxonomy

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHARED = ROOT.parent / "shared"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
HOOKS = {name: fn for name, fn in inspect.getmembers(AlertmuxSpecs, inspect.isfunction) if name.startswith("alertmux_")}


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCS / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(text: str) -> dict[str, str]:
    """Level-2 sections of a page by heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def signature_of(name: str) -> str:
    signature = inspect.signature(HOOKS[name])
    params = [f"{p.name}: {p.annotation}" for p in signature.parameters.values() if p.name != "self"]
    return f"def {name}({', '.join(params)}) -> {signature.return_annotation}"


# -- hooks.md and hookspecs.py --------------------------------------------------------------------------------------
def test_hooks_page_documents_exactly_the_hooks_of_the_specifications() -> None:
    documented = {m.group(1) for m in re.finditer(r"^## `(alertmux_\w+)`$", (DOCS / "hooks.md").read_text(), re.M)}
    assert documented == HOOKS.keys(), (
        f"missing from docs/hooks.md: {sorted(HOOKS.keys() - documented)}; "
        f"not hooks any more: {sorted(documented - HOOKS.keys())}")


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_each_hook_is_documented_with_its_signature_summary_and_version(name: str) -> None:
    section = sections((DOCS / "hooks.md").read_text())[f"`{name}`"]
    blocks = [body for lang, body in FENCE.findall(section) if lang == "python"]
    assert blocks, f"docs/hooks.md: no signature block for {name}"
    assert blocks[0].strip() == signature_of(name), "the signature in docs/hooks.md differs from hookspecs.py"
    docstring = inspect.getdoc(HOOKS[name]) or ""
    assert f"> {docstring.splitlines()[0]}" in section, "docs/hooks.md must quote the hook's summary line"
    since = re.search(r"versionadded:: (\S+)", docstring)
    assert since and f"Since {since.group(1)}." in section
    options = HOOKS[name].alertmux_spec  # type: ignore[attr-defined]
    assert not options["firstresult"] and not options["historic"], "document firstresult/historic behaviour"


def test_every_hook_name_mentioned_anywhere_in_the_docs_exists() -> None:
    for page in PAGES:
        for name in set(re.findall(r"\balertmux_[a-z_]+\b", page.read_text())):
            # Plugin packages (alertmux_example, alertmux_lco, the alertmux_mybroker of the guides) are not hooks.
            if importlib.util.find_spec(name) is not None or name == "alertmux_mybroker":
                continue
            assert name in HOOKS, f"{page.name}: {name} is neither a hook nor an installed package"


# -- generated pages ------------------------------------------------------------------------------------------------
def test_cli_reference_is_generated_from_the_current_commands() -> None:
    expected = script("cli_reference").render()
    assert (DOCS / "cli.md").read_text() == expected, "docs/cli.md is stale: run python docs/scripts/cli_reference.py"


def test_cli_reference_covers_every_command_and_option() -> None:
    text = (DOCS / "cli.md").read_text()
    for name, command in script("cli_reference").root_command().commands.items():
        assert f"## `alertmux {name}`" in text
        for param in command.params:
            for opt in getattr(param, "opts", ()):
                if opt.startswith("-"):
                    assert f"`{opt}`" in text


def test_taxonomy_table_is_the_shipped_taxonomy() -> None:
    tax = taxonomy(ELASTICC2)
    row = re.compile(r"^\| (\d+) \| ([^|]+) \| (\d*) \| (\d*) \| ([\d ]*) \|$", re.M)
    documented = {int(code): (name.strip(), parent, old, gentypes.strip())
                  for code, name, parent, old, gentypes in row.findall((DOCS / "taxonomy.md").read_text())}
    expected = {
        c.code: (c.name, "" if c.parent is None else str(c.parent), str(CROSSWALK_2_TO_2022.get(c.code, "")),
                 " ".join(map(str, c.gentypes)))
        for c in tax
    }
    assert documented == expected


def test_conformance_page_lists_every_check_and_fixture() -> None:
    text = (DOCS / "conformance.md").read_text()
    checks = set(re.findall(r"^\| `(\w+)` \|", sections(text)["The checks"], re.M))
    assert checks == {c.name for c in alertmux.testing.CHECKS}
    fixtures = {name for name in alertmux.testing.__all__
                if hasattr(getattr(alertmux.testing, name), "_fixture_function_marker")
                or type(getattr(alertmux.testing, name)).__name__ == "FixtureFunctionDefinition"}
    documented = set(re.findall(r"^\| `(\w+)` \|", sections(text)["Fixtures"], re.M))
    assert fixtures, "no fixture found in alertmux.testing.__all__"
    assert documented == fixtures


# -- what the pages show is real ----------------------------------------------------------------------------------
def test_excerpts_are_verbatim_copies_of_the_files_they_name() -> None:
    found = 0
    for page in PAGES:
        for path, body in re.findall(r"<!-- excerpt: (\S+) -->\n```\w*\n(.*?)^```", page.read_text(), re.M | re.S):
            source = (ROOT / path).read_text()
            assert body in source, f"{page.name}: the excerpt of {path} starting {body[:60]!r} is not in that file"
            found += 1
    assert found >= 6


def test_python_blocks_parse() -> None:
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang != "python":
                continue
            # hooks.md shows signatures without a body
            code = body.rstrip() + ": ..." if re.fullmatch(r"def [^\n]+\n?", body) else body
            try:
                ast.parse(code)
            except SyntaxError as exc:
                raise AssertionError(f"{page.name}: a python block does not parse: {exc}\n{body}") from None


def test_console_blocks_use_existing_commands() -> None:
    commands = script("cli_reference").root_command().commands
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang != "console":
                continue
            for command in re.findall(r"^\$ (?:\.venv/bin/)?alertmux ([a-z-]+)", body, re.M):
                assert command in commands, f"{page.name}: `alertmux {command}` is not a command"


def test_links_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve()
            assert resolved.exists(), f"{page.name}: link to {target} is broken"
            if anchor and resolved.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{page.name}: no heading for #{anchor} in {path}"


def test_paths_named_in_the_docs_exist() -> None:
    pattern = re.compile(r"`((?:core|plugins|facilities|docs|tests|\.\./shared)/[\w./-]+)`")
    for page in PAGES:
        for path in set(pattern.findall(page.read_text())):
            if "mybroker" in path or "*" in path or "<" in path:
                continue
            if path.startswith("../shared") and not SHARED.exists():
                continue
            full = ROOT.parent / path.removeprefix("../") if path.startswith("../") else ROOT / path
            assert full.exists(), f"{page.name}: {path} does not exist"
