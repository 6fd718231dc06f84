"""The plugin host: loads plugins from the ``alertmux`` entry-point group and answers typed questions about them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import distribution, entry_points
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from alertmux import hookspecs
from alertmux.errors import UsageError
from alertmux.specs import AlertSourceSpec, BrokerSpec, FacilitySpec, NormalizerSpec

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "alertmux"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One loaded plugin, as ``alertmux plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A plugin that could not be loaded, or a name it registered that another plugin already had."""

    plugin: str
    distribution: str | None
    error: str


class PluginHost:
    """Typed facade over the pluggy manager: who provides which broker, normalizer, source and facility."""

    def __init__(self, *, load_entrypoints: bool = True, plugins: Iterable[Any] = ()) -> None:
        """Build a host.

        Args:
            load_entrypoints: load every installed distribution's ``alertmux`` entry points. Tests pass False
                and register exactly the plugins they need.
            plugins: extra plugin objects (modules or instances) to register, e.g. a test's own.
        """
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs.AlertmuxSpecs)
        self.problems: list[PluginProblem] = []
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        if load_entrypoints:
            self._load_entrypoints()
        for plugin in plugins:
            self.register(plugin)
        self.pm.check_pending()
        self._brokers = self._collect(self.pm.hook.alertmux_brokers, "broker")
        self._normalizers = self._collect(self.pm.hook.alertmux_classification_normalizers, "normalizer", "scheme")
        self._sources = self._collect(self.pm.hook.alertmux_alert_sources, "alert source")
        self._facilities = self._collect(self.pm.hook.alertmux_facilities, "facility")

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object; its hooks take part from the next collection on."""
        self.pm.register(plugin, name=name)

    def _load_entrypoints(self) -> None:
        # A broken plugin must not take the whole tool down: report it and carry on (datasette and llm do the same).
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - any import-time failure is the plugin's, not ours
                log.warning("plugin %s (%s) failed to load: %s", ep.name, dist, exc)
                self.problems.append(PluginProblem(ep.name, dist, f"{type(exc).__name__}: {exc}"))
                continue
            unknown = sorted(c.name for c in self.pm.get_hookcallers(plugin) or () if not c.has_spec())
            if unknown:  # a misspelled hook would never be called: say so rather than fail or stay silent
                self.pm.unregister(plugin)
                self.problems.append(PluginProblem(ep.name, dist, f"implements unknown hooks: {', '.join(unknown)}"))
                continue
            self._dists[ep.name] = (dist, version)

    def _collect(self, hook: Any, what: str, key: str = "name") -> dict[str, tuple[str, Any]]:
        found: dict[str, tuple[str, Any]] = {}
        for impl in hook.get_hookimpls():  # registration order (pluggy calls them reversed): the first name wins
            try:
                specs = list(impl.function() or ())
            except Exception as exc:  # noqa: BLE001
                self.problems.append(PluginProblem(impl.plugin_name, None, f"{what} hook failed: {exc}"))
                continue
            for spec in specs:
                name = getattr(spec, key)
                if name in found:
                    owner = found[name][0]
                    self.problems.append(
                        PluginProblem(impl.plugin_name, None, f"{what} {name!r} already provided by {owner}")
                    )
                    continue
                found[name] = (impl.plugin_name, spec)
        return found

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, for the event hooks."""
        return self.pm.hook

    def brokers(self) -> dict[str, BrokerSpec]:
        """All registered brokers by name."""
        return {name: spec for name, (_, spec) in self._brokers.items()}

    def normalizers(self) -> dict[str, NormalizerSpec]:
        """All registered normalizers by scheme."""
        return {name: spec for name, (_, spec) in self._normalizers.items()}

    def alert_sources(self) -> dict[str, AlertSourceSpec]:
        """All registered alert sources by name."""
        return {name: spec for name, (_, spec) in self._sources.items()}

    def facilities(self) -> dict[str, FacilitySpec]:
        """All registered facilities by name."""
        return {name: spec for name, (_, spec) in self._facilities.items()}

    def broker(self, name: str) -> BrokerSpec:
        """The broker called ``name``, or a clear error listing the known ones."""
        return _lookup(self.brokers(), name, "broker")

    def alert_source(self, name: str) -> AlertSourceSpec:
        """The alert source called ``name``, or a clear error listing the known ones."""
        return _lookup(self.alert_sources(), name, "alert source")

    def facility(self, name: str) -> FacilitySpec:
        """The facility called ``name``, or a clear error listing the known ones."""
        return _lookup(self.facilities(), name, "facility")

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and what it provides."""
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue
            dist, version = self._dists.get(name) or _distribution_of(plugin)
            provides: dict[str, list[str]] = {}
            for what, table in (
                ("brokers", self._brokers),
                ("normalizers", self._normalizers),
                ("alert_sources", self._sources),
                ("facilities", self._facilities),
            ):
                names = sorted(n for n, (owner, _) in table.items() if owner == name)
                if names:
                    provides[what] = names
            hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or ())
            if "alertmux_register_commands" in hooks:
                provides["commands"] = ["yes"]
            infos.append(PluginInfo(name=name, distribution=dist, version=version, provides=provides))
        return infos


def _lookup(table: dict[str, T], name: str, what: str) -> T:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none installed"
        raise UsageError(f"unknown {what} {name!r} (known: {known})") from None


def _distribution_of(plugin: Any) -> tuple[str | None, str | None]:
    module = plugin if isinstance(plugin, ModuleType) else type(plugin)
    top = (getattr(module, "__module__", None) or getattr(module, "__name__", "")).split(".")[0]
    try:
        dist = distribution(top.replace("_", "-"))
    except Exception:  # noqa: BLE001 - a plugin registered from a test module has no distribution
        return None, None
    return dist.name, dist.version
