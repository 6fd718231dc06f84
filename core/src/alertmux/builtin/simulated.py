"""The built-in ``simulated`` alert source: seeded ELAsTiCC-like light curves with their truth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alertmux.hookspecs import hookimpl
from alertmux.simulate import simulate
from alertmux.specs import AlertSourceSpec, SimulatedTruth, SourceObject


def open_simulated(objects: int = 200, seed: int = 0, class_mix: str = "uniform", **_: Any) -> Iterator[SourceObject]:
    """Yield ``objects`` simulated objects with their alerts and truth."""
    for obj in simulate(objects, seed=seed, class_mix=class_mix):
        truth = SimulatedTruth(obj.dia_object_id, obj.class_id, obj.gentype, obj.peak_mjd, obj.redshift)
        yield SourceObject(alerts=obj.alerts, truth=truth, ddf=obj.is_ddf)


@hookimpl
def alertmux_alert_sources() -> Iterator[AlertSourceSpec]:
    """The simulator, as an alert source like any other."""
    yield AlertSourceSpec(
        name="simulated",
        description="Seeded simulator of elasticc.v0_9_1 alerts for the ELAsTiCC classes, truth recorded",
        open=open_simulated,
    )
