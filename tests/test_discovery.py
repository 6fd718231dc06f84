"""The installed distributions, as a user gets them: entry points, the console script, the pytest plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import pytest

import alertmux
from alertmux.host import PluginHost

ALERTMUX = Path(sys.executable).with_name("alertmux")  # the console script installed beside this interpreter


def test_builtin_plugins_are_declared_as_entry_points() -> None:
    declared = {ep.name: ep for ep in entry_points(group="alertmux")}
    assert {"elasticc", "simulated"} <= declared.keys()
    for name in ("elasticc", "simulated"):
        assert declared[name].dist is not None and declared[name].dist.name == "alertmux"


def test_installed_host_finds_the_builtins_through_entry_points(installed_host: PluginHost) -> None:
    assert installed_host.problems == [], f"installed plugins failed to load: {installed_host.problems}"
    assert "elasticc" in installed_host.brokers()
    assert {"elasticc", "elasticc2"} <= installed_host.normalizers().keys()
    assert "simulated" in installed_host.alert_sources()
    infos = {info.name: info for info in installed_host.plugins()}
    assert infos["elasticc"].distribution == "alertmux"
    assert infos["elasticc"].version == version("alertmux") == alertmux.__version__
    assert infos["simulated"].provides == {"alert_sources": ["simulated"]}


def test_plugins_json_lists_the_builtins_with_their_distribution() -> None:
    assert ALERTMUX.exists(), f"console script not installed at {ALERTMUX}"
    result = subprocess.run([str(ALERTMUX), "plugins", "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    for name, provides in (("elasticc", "brokers"), ("simulated", "alert_sources")):
        assert plugins[name]["distribution"] == "alertmux"
        assert plugins[name]["version"] == alertmux.__version__
        assert name in plugins[name]["provides"][provides]
    assert listing["problems"] == []


def test_pytest_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    import alertmux.testing

    assert pytestconfig.pluginmanager.get_plugin("alertmux") is alertmux.testing
    markers = pytestconfig.getini("markers")
    assert any(m.startswith("kafka:") for m in markers)
