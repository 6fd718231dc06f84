"""Shared fixtures of the core tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from alertmux.builtin import elasticc
from alertmux.emulation import behaviour
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.specs import BrokerMessage, Delivery
from alertmux.store import TruthRow, open_store

EMULATED_IDENTITY = ("alertmux-test", "0", "ConfusionMatrix", "direct to store")
SENT_MS = 1_700_000_000_000


def fill_emulated_store(path: Path, mode: str, per_class: int, detections: tuple[int, int], seed: int = 1) -> Path:
    """A store answered exactly as the ``elasticc`` emulator answers, without Kafka.

    Every true class of the confusion matrices gets ``per_class`` objects, each with a number of detections drawn
    from ``detections`` (inclusive) and one alert per detection, 3 days apart. Every alert is classified with
    :func:`alertmux.emulation.behaviour`'s matrices and ``ConfusionMatrix.classify``, the emulator's own rule
    (early matrix up to the switch, then the late one), then goes through the real ``Ingestor.rows`` and
    ``Store.write_batch``. Broker publish is 1.5 s after the alert was sent, harness ingest 0.5 s later.
    """
    store = open_store(path)
    run_id = store.start_run("test", {"mode": mode})
    early, late, switch_after = behaviour(mode)
    ingestor = Ingestor(PluginHost(load_entrypoints=False, plugins=[elasticc]), "elasticc", store, run_id)
    rng = random.Random(seed)
    classes = sorted(late.rows)
    truths, alerts, messages = [], [], []
    for i in range(per_class * len(classes)):
        oid = 1_000_000 + i
        true_class = classes[i % len(classes)]
        peak = 60_000.0 + rng.uniform(0, 30)
        truths.append(TruthRow(oid, true_class, None, peak, 0.1))
        first = peak + rng.uniform(-25, 60)
        for d in range(1, rng.randint(*detections) + 1):
            alert_id = oid * 100 + d
            alerts.append({
                "alertId": alert_id, "prvDiaSources": [{}] * (d - 1),
                "diaSource": {"diaSourceId": alert_id, "diaObjectId": oid, "midPointTai": first + 3.0 * d,
                              "filterName": "r", "psFlux": 1.0, "psFluxErr": 0.1},
            })
            matrix = early if d <= switch_after else late
            labels, values = zip(*matrix.classify(true_class, rng), strict=True)
            messages.append(BrokerMessage(EMULATED_IDENTITY, "elasticc2", labels, values, alert_id=alert_id,
                                          dia_source_id=alert_id, broker_publish_ms=SENT_MS + 1500))
    store.record_objects(run_id, truths, alerts)
    store.record_sent(run_id, "alerts", [a["alertId"] for a in alerts], SENT_MS)
    for k in range(0, len(messages), 10_000):
        rows = ingestor.rows(messages[k:k + 10_000], Delivery("direct"), ingested_ms=SENT_MS + 2000)
        store.write_batch(rows)
    store.close()
    return path


@pytest.fixture(scope="session")
def emulated_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make(mode, per_class, detections, seed=1) -> path``: :func:`fill_emulated_store`, built once per session."""
    built: dict[tuple[object, ...], Path] = {}

    def make(mode: str, per_class: int, detections: tuple[int, int], seed: int = 1) -> Path:
        key = (mode, per_class, detections, seed)
        if key not in built:
            path = tmp_path_factory.mktemp("scoring") / f"{mode}-{per_class}.db"
            built[key] = fill_emulated_store(path, mode, per_class, detections, seed)
        return built[key]

    return make
