"""PostgreSQL scoring gives SQLite's answers: the same frames, column for column, on the same data."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest

from alertmux.builtin import elasticc
from alertmux.emulation import behaviour
from alertmux.errors import UsageError
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.scoring import SqliteScoring, export_scores, open_scoring
from alertmux.scoring_pg import PostgresScoring
from alertmux.specs import BrokerMessage, Delivery
from alertmux.store import Store, TruthRow, open_store
from alertmux.taxonomy import ELASTICC2

IA, II, SN_LIKE, KN, AGN = 2222, 2224, 2220, 2232, 2332
T0 = 1_700_000_000_000


def _alert(alert_id: int, object_id: int, mjd: float, detections: int) -> dict[str, Any]:
    return {"alertId": alert_id, "prvDiaSources": [{}] * (detections - 1),
            "diaSource": {"diaSourceId": alert_id, "diaObjectId": object_id, "midPointTai": mjd, "filterName": "r",
                          "psFlux": 1.0, "psFluxErr": 0.1}}


def fill_tiny(store: Store) -> None:
    """The hand-computed store of core/tests/test_scoring.py: two objects, four answers, one unsolicited."""
    run_id = store.start_run("test", {})
    store.record_objects(run_id, [TruthRow(1, IA, 10, 100.0, 0.1), TruthRow(2, AGN, 60, None, 0.5)], [
        _alert(11, 1, 95.0, 1), _alert(12, 1, 100.0, 2), _alert(13, 1, 110.0, 3),
        _alert(21, 2, 50.0, 1), _alert(22, 2, 60.0, 2),
    ])
    store.record_sent(run_id, "alerts", [11, 12, 13, 21, 22], T0)
    ingestor = Ingestor(PluginHost(load_entrypoints=False, plugins=[elasticc]), "elasticc", store, run_id)
    answers = [(11, {IA: 0.9, II: 0.1}), (12, {II: 0.6, IA: 0.4}), (13, {SN_LIKE: 0.7, KN: 0.3}),
               (21, {AGN: 0.8, IA: 0.2}), (999, {IA: 1.0})]
    for seconds, (alert_id, vector) in enumerate(answers, 1):
        message = BrokerMessage(("tiny", "1", "T", "p"), ELASTICC2, list(vector), list(vector.values()),
                                alert_id=alert_id, dia_source_id=alert_id, broker_publish_ms=T0 + 1000 * seconds)
        store.write_batch(ingestor.rows([message], Delivery("direct"), ingested_ms=T0 + 10_000))


def fill_emulated(store: Store, per_class: int = 12, seed: int = 3) -> None:
    """Objects of every class answered by two emulated classifiers (the emulator's own matrices), with turnarounds
    spread over decades so every histogram bin and percentile has something to say."""
    run_id = store.start_run("test", {})
    ingestor = Ingestor(PluginHost(load_entrypoints=False, plugins=[elasticc]), "elasticc", store, run_id)
    rng = random.Random(seed)
    truths, alerts, messages = [], [], []
    for mode in ("last", "after3"):
        early, late, switch_after = behaviour(mode)
        classes = sorted(late.rows)
        for i in range(per_class * len(classes)):
            oid = 1_000_000 + i
            if mode == "last":
                peak = 60_000.0 + rng.uniform(0, 30)
                truths.append(TruthRow(oid, classes[i % len(classes)], None, peak if i % 5 else None, 0.1))
                first = peak + rng.uniform(-25, 60)
                for d in range(1, rng.randint(1, 6) + 1):
                    alerts.append(_alert(oid * 100 + d, oid, first + 3.0 * d, d))
            for alert in [a for a in alerts if a["diaSource"]["diaObjectId"] == oid]:
                d = len(alert["prvDiaSources"]) + 1
                labels, values = zip(*(early if d <= switch_after else late).classify(truths[i].class_id, rng),
                                     strict=True)
                published = T0 + int(10 ** rng.uniform(-2.5, 5) * 1000)
                messages.append(BrokerMessage(("emu", "1", f"CM-{mode}", "p"), ELASTICC2, labels, values,
                                              alert_id=alert["alertId"], dia_source_id=alert["alertId"],
                                              broker_publish_ms=published))
    store.record_objects(run_id, truths, alerts)
    store.record_sent(run_id, "alerts", [a["alertId"] for a in alerts], T0)
    store.record_sent(run_id, "alerts-2", [a["alertId"] for a in alerts[::7]], T0 + 5)
    for k in range(0, len(messages), 2000):
        store.write_batch(ingestor.rows(messages[k:k + 2000], Delivery("direct"), ingested_ms=T0 + 400_000))


def both(tmp_path: Path, pg_url: str, fill: Callable[[Store], None]) -> tuple[SqliteScoring, PostgresScoring]:
    for target in (tmp_path / "same.db", pg_url):
        store = open_store(target)
        fill(store)
        store.close()
    sqlite, postgres = open_scoring(tmp_path / "same.db"), open_scoring(pg_url)
    assert isinstance(sqlite, SqliteScoring) and isinstance(postgres, PostgresScoring)
    return sqlite, postgres


METRICS: list[tuple[str, Callable[[Any], pd.DataFrame]]] = [
    ("classifiers", lambda s: s.classifiers()),
    *[(f"confusion-{k}-{lv}", lambda s, k=k, lv=lv: s.confusion(k, lv))
      for k in ("last", "best", "all", "after1", "after2", "after3") for lv in ("leaf", "category")],
    ("confusion-min-detections", lambda s: s.confusion("last", min_detections=3)),
    *[(f"class-metrics-{k}-{lv}", lambda s, k=k, lv=lv: s.class_metrics(k, lv))
      for k in ("last", "best", "after3") for lv in ("leaf", "category")],
    *[(f"macro-f1-{k}-{lv}", lambda s, k=k, lv=lv: s.macro_f1(k, lv)) for k in ("last", "best") for lv in ("leaf",
                                                                                                          "category")],
    *[(f"log-loss-{k}-{lv}", lambda s, k=k, lv=lv: s.log_loss(k, lv)) for k in ("all", "last") for lv in ("leaf",
                                                                                                         "category")],
    ("turnaround", lambda s: s.turnaround()),
    ("turnaround-histogram", lambda s: s.turnaround_histogram()),
    ("versus-peak", lambda s: s.versus_peak()),
    ("stream-completeness", lambda s: s.stream_completeness()),
]


def assert_same(sqlite: SqliteScoring, postgres: PostgresScoring) -> None:
    for name, metric in METRICS:
        expected, got = metric(sqlite), metric(postgres)
        assert list(got.columns) == list(expected.columns), name
        assert len(got) == len(expected), name
        assert len(got) > 0 or name.startswith("confusion-after"), f"{name}: nothing to compare"
        # Probabilities are float32 in PostgreSQL (real[], as the DESC TOM stored them), float64 in SQLite.
        pd.testing.assert_frame_equal(got.reset_index(drop=True).astype(float, errors="ignore"),
                                      expected.reset_index(drop=True).astype(float, errors="ignore"),
                                      check_dtype=False, rtol=2e-6, obj=name)


def test_hand_computed_store_scores_the_same(tmp_path: Path, pg_url: str) -> None:
    sqlite, postgres = both(tmp_path, pg_url, fill_tiny)
    assert_same(sqlite, postgres)
    # And they are the hand-computed answers (core/tests/test_scoring.py), not merely equal to each other.
    last = {(r.true_class, r.predicted_class, r.count) for r in postgres.confusion("last").itertuples()}
    assert last == {(IA, SN_LIKE, 1), (AGN, AGN, 1)}
    assert postgres.macro_f1("last")["macro_f1"].iloc[0] == pytest.approx(0.5)
    spans = postgres.turnaround().set_index("span")
    assert spans.loc["broker", ["n", "min_s", "p50_s", "p90_s", "p99_s", "max_s"]].tolist() == [4, 1, 2, 4, 4, 4]


def test_emulated_classifiers_score_the_same(tmp_path: Path, pg_url: str) -> None:
    sqlite, postgres = both(tmp_path, pg_url, fill_emulated)
    assert len(postgres.classifiers()) == 2
    assert postgres.turnaround_histogram()["log10_low"].nunique() > 10
    assert_same(sqlite, postgres)


def test_export_and_raw_classifications_from_postgres(tmp_path: Path, pg_url: str) -> None:
    sqlite, postgres = both(tmp_path, pg_url, fill_tiny)
    written = {p.name for p in export_scores(postgres, tmp_path / "pg")}
    export_scores(sqlite, tmp_path / "sqlite")
    assert "scores.json" in written and "confusion-last-tiny_T.csv" in written
    for name in (n for n in written if n.startswith("confusion")):
        assert (tmp_path / "pg" / name).read_text() == (tmp_path / "sqlite" / name).read_text(), name
    raw = pd.concat(list(postgres.classification_chunks(chunk_rows=3)), ignore_index=True)
    assert len(raw) == 9 and raw["message_id"].is_monotonic_increasing  # 4 answers of 2 classes, 1 of 1; in chunks
    assert set(raw.columns) >= {"class_id", "probability", "kind", "native_class", "broker"}


def test_scoring_is_read_only_and_a_missing_store_is_a_usage_error(pg_url: str, pg_server: str) -> None:
    store = open_store(pg_url)
    store.close()
    scoring = open_scoring(str(Path(pg_url)))  # through pathlib, as click options hand it over
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        scoring.conn.execute("DELETE FROM messages")
    scoring.conn.close()
    with pytest.raises(UsageError, match="no alertmux store"):
        open_scoring(pg_url.replace("alertmux_test_", "alertmux_none_"))
