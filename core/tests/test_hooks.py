"""The hook specifications are the plugin API: their names and docstrings are part of the contract."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from alertmux import hookimpl
from alertmux.hookspecs import AlertmuxSpecs

SPECS = sorted(
    (name, fn) for name, fn in vars(AlertmuxSpecs).items() if callable(fn) and hasattr(fn, "alertmux_spec")
)
# Registration hooks return an iterable of spec objects; event hooks return nothing.
REGISTRATION = {name for name, fn in SPECS if "Iterable" in str(inspect.signature(fn).return_annotation)}


def _arguments(fn: Any) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def _section(doc: str, title: str) -> str | None:
    """The body of a Google-style docstring section (indented lines after ``Title:``), or None when absent."""
    match = re.search(rf"^{title}:\n((?:[ ]+\S.*\n?|\n)+)", doc, re.MULTILINE)
    return match.group(1) if match else None


def test_the_spec_class_declares_hooks() -> None:
    # Guards the parametrized tests below against silently testing nothing.
    assert len(SPECS) >= 7
    assert {"alertmux_brokers", "alertmux_alert_sources", "alertmux_classifications_stored"} <= dict(SPECS).keys()
    assert REGISTRATION >= {"alertmux_brokers", "alertmux_alert_sources", "alertmux_facilities"}


@pytest.mark.parametrize(("name", "fn"), SPECS, ids=[n for n, _ in SPECS])
def test_hookspec_is_prefixed_and_documented(name: str, fn: Any) -> None:
    assert name.startswith("alertmux_")
    doc = inspect.getdoc(fn)
    assert doc, f"{name} has no docstring"
    summary = doc.splitlines()[0]
    assert summary.endswith(".") and len(summary) <= 120, f"{name}: the first line must be a one-line summary"
    assert doc.splitlines()[1:2] in ([], [""]), f"{name}: a blank line must follow the summary"
    assert re.search(r"\.\. versionadded:: \d+\.\d+", doc), f"{name} lacks '.. versionadded::'"


@pytest.mark.parametrize(("name", "fn"), SPECS, ids=[n for n, _ in SPECS])
def test_hookspec_arguments_are_documented(name: str, fn: Any) -> None:
    args = _arguments(fn)
    section = _section(inspect.getdoc(fn) or "", "Args")
    if not args:
        assert section is None, f"{name} takes no arguments but documents some"
        return
    assert section is not None, f"{name} takes {args} but has no Args section"
    for arg in args:
        assert re.search(rf"^\s+{arg}:", section, re.MULTILINE), f"{name}: argument {arg!r} is not documented"


@pytest.mark.parametrize("name", sorted(REGISTRATION))
def test_registration_hook_documents_what_it_returns(name: str) -> None:
    doc = inspect.getdoc(getattr(AlertmuxSpecs, name)) or ""
    section = _section(doc, "Returns")
    assert section and "Spec" in section, f"{name}: the Returns section must name the spec class it yields"


def test_a_plugin_may_accept_fewer_arguments_than_the_spec_offers(plugin_host: Any, tmp_store: Any) -> None:
    seen: list[int] = []

    class CountOnly:
        @hookimpl
        def alertmux_classifications_stored(self, count: int) -> None:
            seen.append(count)

    host = plugin_host(CountOnly())
    host.hook.alertmux_classifications_stored(store=tmp_store, run_id=None, broker="b", count=3)
    assert seen == [3]


def test_a_plugin_with_an_argument_the_spec_lacks_is_rejected(plugin_host: Any) -> None:
    import pluggy

    class Wrong:
        @hookimpl
        def alertmux_classifications_stored(self, counted: int) -> None: ...

    with pytest.raises(pluggy.PluginValidationError):
        plugin_host(Wrong())
