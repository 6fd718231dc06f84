"""The plugin host: what it loads, how it reports broken plugins and name conflicts, and its lookups."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points as real_entry_points
from typing import Any

import pytest

import alertmux.host
from alertmux import BrokerSpec, NormalizedLabel, NormalizerSpec, hookimpl
from alertmux.errors import UsageError
from alertmux.host import PluginHost


class FakeEntryPoint:
    """Quacks like importlib.metadata.EntryPoint as far as the host looks."""

    def __init__(self, name: str, load: Callable[[], Any], dist: Any = None) -> None:
        self.name = name
        self.dist = dist
        self._load = load

    def load(self) -> Any:
        return self._load()


def _broker_plugin(name: str, description: str) -> Any:
    class Plugin:
        @hookimpl
        def alertmux_brokers(self) -> Iterator[BrokerSpec]:
            yield BrokerSpec(name=name, description=description)

    return Plugin()


@pytest.fixture
def extra_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Add fake entry points after the real ones, as if more distributions were installed."""

    def install(*fakes: FakeEntryPoint) -> None:
        def patched(group: str) -> list[Any]:
            return [*real_entry_points(group=group), *fakes]

        monkeypatch.setattr(alertmux.host, "entry_points", patched)

    return install


def test_host_without_entry_points_has_no_plugins() -> None:
    host = PluginHost(load_entrypoints=False)
    assert host.plugins() == []
    assert host.brokers() == {} and host.alert_sources() == {} and host.normalizers() == {}
    assert host.problems == []


def test_plugin_registered_in_a_test_is_found(plugin_host: Callable[..., PluginHost]) -> None:
    host = plugin_host(_broker_plugin("mine", "a test broker"))
    assert list(host.brokers()) == ["mine"]
    assert host.broker("mine").description == "a test broker"
    [info] = host.plugins()
    assert info.provides == {"brokers": ["mine"]}
    assert info.distribution is None  # a plugin defined in a test module belongs to no distribution


def test_module_plugins_are_found_too(plugin_host: Callable[..., PluginHost]) -> None:
    from alertmux.builtin import elasticc, simulated

    host = plugin_host(elasticc, simulated)
    assert "elasticc" in host.brokers()
    assert {"elasticc", "elasticc2"} <= host.normalizers().keys()
    assert "simulated" in host.alert_sources()


def test_broker_name_registered_twice_is_a_problem_and_the_first_wins(
    plugin_host: Callable[..., PluginHost],
) -> None:
    first, second = _broker_plugin("dup", "first"), _broker_plugin("dup", "second")
    host = plugin_host(first, second)
    assert host.broker("dup").description == "first"
    [problem] = host.problems
    assert problem.plugin == host.pm.get_name(second)
    assert "'dup' already provided by" in problem.error


def test_normalizer_scheme_registered_twice_is_a_problem(plugin_host: Callable[..., PluginHost]) -> None:
    def normalizer(class_id: int) -> Any:
        class Plugin:
            @hookimpl
            def alertmux_classification_normalizers(self) -> Iterator[NormalizerSpec]:
                yield NormalizerSpec(scheme="s", description="", table={"x": NormalizedLabel(class_id)})

        return Plugin()

    host = plugin_host(normalizer(2222), normalizer(2223))
    assert host.normalizers()["s"].normalize("x") == NormalizedLabel(2222)
    assert len(host.problems) == 1 and "normalizer 's'" in host.problems[0].error


def test_a_registration_hook_that_raises_is_reported(plugin_host: Callable[..., PluginHost]) -> None:
    class Broken:
        @hookimpl
        def alertmux_brokers(self) -> Iterator[BrokerSpec]:
            raise RuntimeError("config missing")
            yield  # pragma: no cover - makes this a generator, as plugins usually write it

    host = plugin_host(Broken(), _broker_plugin("fine", ""))
    assert list(host.brokers()) == ["fine"]
    assert any("config missing" in p.error for p in host.problems)


def test_plugin_whose_import_fails_is_reported_not_fatal(extra_entry_points: Callable[..., None]) -> None:
    def broken() -> Any:
        raise ImportError("No module named 'alertmux_nonexistent'")

    extra_entry_points(FakeEntryPoint("broken", broken))
    host = PluginHost()
    [problem] = [p for p in host.problems if p.plugin == "broken"]
    assert problem.error == "ImportError: No module named 'alertmux_nonexistent'"
    # The built-in plugins loaded all the same.
    assert "elasticc" in host.brokers()
    assert "simulated" in host.alert_sources()
    assert "broken" not in {info.name for info in host.plugins()}


def test_plugin_raising_any_error_at_import_is_reported(extra_entry_points: Callable[..., None]) -> None:
    def broken() -> Any:
        raise ZeroDivisionError("division by zero")

    extra_entry_points(FakeEntryPoint("zero", broken))
    host = PluginHost()
    assert [p.error for p in host.problems if p.plugin == "zero"] == ["ZeroDivisionError: division by zero"]
    assert "elasticc" in host.brokers()


def test_installed_plugin_failing_hook_validation_is_reported(extra_entry_points: Callable[..., None]) -> None:
    @hookimpl
    def alertmux_classifications_stored(bogus: int) -> None: ...

    plugin = types.SimpleNamespace(alertmux_classifications_stored=alertmux_classifications_stored)
    extra_entry_points(FakeEntryPoint("invalid", lambda: plugin))
    host = PluginHost()
    assert [p.plugin for p in host.problems] == ["invalid"]
    assert "bogus" in host.problems[0].error
    assert "elasticc" in host.brokers()


def test_installed_plugin_with_a_misspelled_hook_is_reported_not_fatal(
    extra_entry_points: Callable[..., None],
) -> None:
    @hookimpl
    def alertmux_brokerz() -> list[BrokerSpec]:
        return []

    plugin = types.SimpleNamespace(alertmux_brokerz=alertmux_brokerz)
    extra_entry_points(FakeEntryPoint("typo", lambda: plugin))
    host = PluginHost()
    assert [p.plugin for p in host.problems] == ["typo"]
    assert "alertmux_brokerz" in host.problems[0].error
    assert "elasticc" in host.brokers()


def test_unknown_broker_is_a_usage_error_listing_known_ones(plugin_host: Callable[..., PluginHost]) -> None:
    host = plugin_host(_broker_plugin("alpha", ""), _broker_plugin("beta", ""))
    with pytest.raises(UsageError, match=r"unknown broker 'gamma' \(known: alpha, beta\)") as info:
        host.broker("gamma")
    assert info.value.exit_code == 2


def test_unknown_names_with_nothing_installed_say_so() -> None:
    host = PluginHost(load_entrypoints=False)
    with pytest.raises(UsageError, match="none installed"):
        host.alert_source("simulated")
    with pytest.raises(UsageError, match="unknown facility 'lco'"):
        host.facility("lco")


def test_plugins_lists_commands_provider(plugin_host: Callable[..., PluginHost]) -> None:
    class Commands:
        @hookimpl
        def alertmux_register_commands(self, cli: Any) -> None: ...

    [info] = plugin_host(Commands()).plugins()
    assert info.provides == {"commands": ["yes"]}
