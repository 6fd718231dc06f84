"""Scoring: hand-computed answers on a tiny store, the ELAsTiCC talk's matrices recovered from the emulator's
behaviour, the real harness end to end, and the exported files."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import pandas as pd
import pytest

from alertmux.builtin import elasticc
from alertmux.emulation import ConfusionMatrix
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.scoring import Selection, SqliteScoring, confusion_matrix, export_classifications, export_scores
from alertmux.specs import BrokerMessage, Delivery
from alertmux.store import TruthRow, open_store
from alertmux.taxonomy import ELASTICC2, taxonomy

IA, II, SN_LIKE, KN, AGN, NON_PERIODIC = 2222, 2224, 2220, 2232, 2332, 2330
T0 = 1_700_000_000_000


# -- a tiny store with hand-computed answers ---------------------------------------------------------------------
def _tiny_store(path: Path) -> SqliteScoring:
    """Object 1 (Ia, peak MJD 100) has three alerts, all answered; object 2 (AGN, no peak) has two, one answered.

    a11 (MJD 95, 1 det): Ia 0.9, II 0.1      -> best; top Ia
    a12 (MJD 100, 2 det): II 0.6, Ia 0.4     -> after2; top II
    a13 (MJD 110, 3 det): SN-like 0.7, KN 0.3 -> last, after3; a parent code, as Fink's CATS answers
    a21 (MJD 50, 1 det): AGN 0.8, Ia 0.2     -> last and best of object 2; a22 (MJD 60) is sent, never answered.
    One more message answers alert 999, which was never sent. Sent at T0; published at T0 + 1, 2, 3, 4 s; ingested
    at T0 + 10 s.
    """
    store = open_store(path)
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
    return SqliteScoring(store.conn)


def _alert(alert_id: int, object_id: int, mjd: float, detections: int) -> dict[str, object]:
    return {"alertId": alert_id, "prvDiaSources": [{}] * (detections - 1),
            "diaSource": {"diaSourceId": alert_id, "diaObjectId": object_id, "midPointTai": mjd, "filterName": "r",
                          "psFlux": 1.0, "psFluxErr": 0.1}}


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int, int]]:
    return {(r.true_class, r.predicted_class, r.count) for r in frame.itertuples()}


def test_selections_pick_the_documented_message(tmp_path: Path) -> None:
    scoring = _tiny_store(tmp_path / "tiny.db")
    assert _pairs(scoring.confusion("last")) == {(IA, SN_LIKE, 1), (AGN, AGN, 1)}
    assert _pairs(scoring.confusion("best")) == {(IA, IA, 1), (AGN, AGN, 1)}
    assert _pairs(scoring.confusion("after2")) == {(IA, II, 1)}  # object 2's second alert was never answered
    assert _pairs(scoring.confusion("after3")) == {(IA, SN_LIKE, 1)}
    assert _pairs(scoring.confusion("last", min_detections=3)) == {(IA, SN_LIKE, 1)}
    assert scoring.confusion("all")["count"].sum() == 4  # the unsolicited message has no alert, so no object
    # At category level the parent-coded answer is right (Ia and SN-like are both SN-like); AGN is Non-Periodic.
    assert _pairs(scoring.confusion("last", "category")) == {(SN_LIKE, SN_LIKE, 1), (NON_PERIODIC, NON_PERIODIC, 1)}
    with pytest.raises(Exception, match="unknown selection"):
        Selection.parse("first")


def test_class_metrics_macro_f1_and_log_loss(tmp_path: Path) -> None:
    scoring = _tiny_store(tmp_path / "tiny.db")
    metrics = scoring.class_metrics("last").set_index("class_id")
    assert metrics.loc[IA, ["n_true", "n_predicted", "true_positives"]].tolist() == [1, 0, 0]
    assert metrics.loc[SN_LIKE, ["n_true", "n_predicted"]].tolist() == [0, 1]
    assert metrics.loc[AGN, ["completeness", "purity", "f1"]].tolist() == [1.0, 1.0, 1.0]
    assert scoring.macro_f1("last")["macro_f1"].iloc[0] == pytest.approx(0.5)  # (0 for Ia + 1 for AGN) / 2
    assert scoring.macro_f1("last", "category")["macro_f1"].iloc[0] == pytest.approx(1.0)
    # last, leaf: a13 gives Ia nothing (clipped at 1e-15), a21 gives AGN 0.8.
    leaf = scoring.log_loss("last")["log_loss"].iloc[0]
    assert leaf == pytest.approx((-math.log(1e-15) - math.log(0.8)) / 2, rel=1e-6)
    category = scoring.log_loss("last", "category")["log_loss"].iloc[0]
    assert category == pytest.approx((-math.log(0.7) - math.log(0.8)) / 2, rel=1e-6)
    every = scoring.log_loss("all")
    assert every["messages"].iloc[0] == 4
    expected = -(math.log(0.9) + math.log(0.4) + math.log(1e-15) + math.log(0.8)) / 4
    assert every["log_loss"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_turnaround_percentiles_and_histogram(tmp_path: Path) -> None:
    scoring = _tiny_store(tmp_path / "tiny.db")
    spans = scoring.turnaround().set_index("span")
    # Published 1, 2, 3, 4 s after sending (the unsolicited message has no sent time); nearest-rank percentiles.
    assert spans.loc["broker", ["n", "min_s", "p50_s", "p90_s", "p99_s", "max_s"]].tolist() == [4, 1, 2, 4, 4, 4]
    assert spans.loc["ingest", ["p50_s", "max_s"]].tolist() == [7, 9]  # 6, 7, 8, 9 s
    assert spans.loc["total", ["n", "p50_s", "p99_s", "non_positive"]].tolist() == [4, 10, 10, 0]
    histogram = scoring.turnaround_histogram()
    total = histogram[histogram["span"] == "total"]
    assert total[["log10_low", "log10_high", "count"]].values.tolist() == [[1.0, 1.25, 4]]
    broker = histogram[histogram["span"] == "broker"].set_index("log10_low")["count"].to_dict()
    assert broker == {0.0: 1, 0.25: 2, 0.5: 1}  # log10 of 1, 2, 3, 4 s: 0, 0.30, 0.48, 0.60


def test_versus_peak_and_stream_completeness(tmp_path: Path) -> None:
    scoring = _tiny_store(tmp_path / "tiny.db")
    curve = scoring.versus_peak()  # only object 1 has a peak: its alerts at -5, 0 and +10 days
    assert curve[["days_low", "days_high", "messages"]].values.tolist() == [[-5, 0, 1], [0, 5, 1], [10, 15, 1]]
    assert curve["mean_p_true"].tolist() == pytest.approx([0.9, 0.4, 0.0])
    assert curve["top_class_rate"].tolist() == [1.0, 0.0, 0.0]
    stream = scoring.stream_completeness().iloc[0]
    assert stream[["alerts_sent", "alerts_answered", "messages", "duplicates", "unsolicited"]].tolist() == [
        5, 4, 4, 0, 1]
    assert stream["answered_share"] == pytest.approx(0.8)
    assert stream["messages_per_alert"] == 1.0


def test_export_names_and_layout(tmp_path: Path) -> None:
    scoring = _tiny_store(tmp_path / "tiny.db")
    written = {p.name for p in export_scores(scoring, tmp_path / "out")}
    for kind in ("last", "after3", "best"):
        assert f"confusion-{kind}-tiny_T.csv" in written
        assert f"confusion-category-{kind}-tiny_T.csv" in written
    assert {"class-metrics.csv", "macro-f1.csv", "log-loss.csv", "turnaround.csv", "turnaround-histogram.csv",
            "versus-peak.csv", "stream-completeness.csv", "classifiers.csv", "scores.json"} <= written
    with open(tmp_path / "out" / "confusion-last-tiny_T.csv", newline="") as f:
        rows = list(csv.reader(f))
    # First column the true class, header the predicted classes (every class that occurs, taxonomy order), counts.
    assert rows == [["true_class", "SN-like", "Ia", "AGN"], ["Ia", "1", "0", "0"], ["AGN", "0", "0", "1"]]
    document = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert document["confusion"]["confusion-best-tiny_T"]["counts"] == [[1, 0], [0, 1]]
    assert document["stream-completeness"][0]["unsolicited"] == 1
    # One JSON file per metric too, the same records as its CSV's rows.
    metrics = ("class-metrics", "macro-f1", "log-loss", "turnaround", "turnaround-histogram", "versus-peak",
               "stream-completeness", "classifiers")
    assert {f"{name}.json" for name in metrics} <= written
    for name in metrics:
        records = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert records == document[name] and len(records) == len(pd.read_csv(tmp_path / "out" / f"{name}.csv"))
    raw = tmp_path / "raw.csv"
    # Two classes in each of four messages, one in the unsolicited one.
    assert export_classifications(scoring_db(scoring), raw) == 9
    assert raw.read_text().splitlines()[0].startswith("message_id,broker,")


def scoring_db(scoring: SqliteScoring) -> Path:
    ((_, _, file),) = scoring.conn.execute("PRAGMA database_list").fetchall()
    return Path(file)


# -- the known answer: the ELAsTiCC talk's matrices come back out --------------------------------------------------
FAMILY_ALPHA = 1e-3
"""Chance that a correct scorer fails the whole comparison of one matrix (Bonferroni over its cells)."""
SLACK_COUNTS = 3
"""Counts added to each cell's tolerance: the normal approximation fails for cells expecting ~0-5 counts."""


@dataclass(frozen=True)
class Agreement:
    max_deviation: float
    worst_ratio: float
    """Largest |observed - expected| / tolerance over the cells (below 1 passes)."""
    tolerance_range: tuple[float, float]
    objects_per_class: tuple[int, int]


def agreement(counts: pd.DataFrame, expected: ConfusionMatrix) -> Agreement:
    """Compare scored counts with a row-normalized matrix, cell by cell, within binomial sampling error.

    Each row is a multinomial sample of n objects, so a cell's observed fraction has standard error
    sqrt(p (1 - p) / n). Tolerance per cell = (z * sqrt(n p (1 - p)) + SLACK_COUNTS) / n with z the two-sided
    normal quantile at FAMILY_ALPHA / cells (Bonferroni): a correct scorer fails with probability below about
    FAMILY_ALPHA whatever the seed, and the slack covers the cells with expected counts near zero, where the
    Poisson tail is longer than the normal one.
    """
    cells = len(expected.rows) * len(expected.predicted_classes)
    z = NormalDist().inv_cdf(1 - FAMILY_ALPHA / (2 * cells))
    stray = set(counts["predicted_class"]) - set(expected.predicted_classes)
    assert not stray, f"predicted classes outside the matrix: {stray}"
    observed = counts.pivot_table(index="true_class", columns="predicted_class", values="count", aggfunc="sum",
                                  fill_value=0)
    deviations, ratios, tolerances, sizes = [], [], [], []
    for true_class, row in expected.rows.items():
        n = int(observed.loc[true_class].sum())
        sizes.append(n)
        for predicted, p in zip(expected.predicted_classes, row, strict=True):
            got = observed.loc[true_class].get(predicted, 0) / n
            tolerance = (z * math.sqrt(n * p * (1 - p)) + SLACK_COUNTS) / n
            deviations.append(abs(got - p))
            ratios.append(abs(got - p) / tolerance)
            tolerances.append(tolerance)
    return Agreement(max(deviations), max(ratios), (min(tolerances), max(tolerances)), (min(sizes), max(sizes)))


def _report(name: str, result: Agreement) -> None:
    print(f"\n{name}: max |dev| {result.max_deviation:.4f}, worst dev/tolerance {result.worst_ratio:.2f}, "
          f"tolerance {result.tolerance_range[0]:.4f}-{result.tolerance_range[1]:.4f}, "
          f"objects per class {result.objects_per_class[0]}-{result.objects_per_class[1]}")


PER_CLASS = 3000
"""Objects per true class (19 classes): about 9 s of filling per store, tolerance up to ~0.05 on the largest
cells (which hold ~0.3-0.5 of their row)."""


def test_known_answer_last(emulated_store: Callable[..., Path]) -> None:
    scoring = SqliteScoring(sqlite3.connect(emulated_store("last", PER_CLASS, (1, 3))))
    result = agreement(scoring.confusion("last"), ConfusionMatrix.shipped("last"))
    _report("last vs confusion_last_classification", result)
    assert result.objects_per_class == (PER_CLASS, PER_CLASS)
    assert result.worst_ratio < 1


def test_known_answer_after3(emulated_store: Callable[..., Path]) -> None:
    # Objects have 2 to 5 detections: those with 2 have no after3 classification, those with 4+ a "last" one
    # drawn from the late matrix only.
    scoring = SqliteScoring(sqlite3.connect(emulated_store("after3", PER_CLASS, (2, 5))))
    after3 = scoring.confusion("after3")
    result = agreement(after3, ConfusionMatrix.shipped("after3"))
    _report("after3 vs confusion_after_three_detections", result)
    assert result.worst_ratio < 1
    last = agreement(scoring.confusion("last", min_detections=4), ConfusionMatrix.shipped("last"))
    _report("last (4+ detections) vs confusion_last_classification", last)
    assert last.worst_ratio < 1
    # The comparison has power: the after3 classifications are far outside the last matrix's tolerance.
    assert agreement(after3, ConfusionMatrix.shipped("last")).worst_ratio > 3


def test_shipped_matrices_are_the_seed_talk_files() -> None:
    seed = Path(__file__).parents[3] / "shared" / "data" / "elasticc" / "seed_talk"
    if not seed.is_dir():
        pytest.skip(f"{seed} not present (shared/ sits beside the repository in CI and sessions)")
    for kind, name in (("last", "confusion_last_classification.csv"),
                       ("after3", "confusion_after_three_detections.csv")):
        assert ConfusionMatrix.from_csv((seed / name).read_text()) == ConfusionMatrix.shipped(kind)


# -- the real harness, end to end ------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_harness_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alertmux.cli import main
    from alertmux.harness import DemoOptions, run_demo

    db = tmp_path / "demo.db"
    summary = run_demo(PluginHost(), DemoOptions(db=db, objects=40, seed=5, emulator_options={"mode": "after3"}))
    main(["score", "--db", str(db), "--out", str(tmp_path / "scores")])
    files = set(json.loads(capsys.readouterr().out)["files"])
    slug = "alertmux-emulator_ConfusionMatrix-after3"
    assert {f"confusion-{kind}-{slug}.csv" for kind in ("last", "after3", "best")} <= files

    scoring = SqliteScoring(sqlite3.connect(db))
    stream = scoring.stream_completeness().iloc[0]
    assert stream["alerts_sent"] == summary["alerts_sent"] > 0
    assert stream["answered_share"] == 1.0 and stream["messages_per_alert"] == 1.0
    assert stream["duplicates"] == stream["unsolicited"] == 0
    spans = scoring.turnaround().set_index("span")
    assert (spans["n"] == summary["alerts_sent"]).all()
    assert 0 < spans.loc["total", "p50_s"] <= spans.loc["total", "p99_s"] < 60

    # The exported "last" matrix equals one computed in Python from the raw tables.
    conn = sqlite3.connect(db)
    truth = dict(conn.execute("SELECT dia_object_id, class_id FROM truth"))
    latest: dict[int, tuple[float, int, int]] = {}
    for object_id, mjd, alert_id, top in conn.execute(
        "SELECT a.dia_object_id, a.mjd, a.alert_id, m.top_class_id FROM messages m JOIN alerts a USING (alert_id)"
    ):
        latest[object_id] = max(latest.get(object_id, (-1e9, 0, 0)), (mjd, alert_id, top))
    tax = taxonomy(ELASTICC2)
    expected: dict[tuple[str, str], int] = {}
    for object_id, (_, _, top) in latest.items():
        key = (tax.name(truth[object_id]), tax.name(top))
        expected[key] = expected.get(key, 0) + 1
    exported = pd.read_csv(tmp_path / "scores" / f"confusion-last-{slug}.csv", index_col="true_class")
    got = {(t, p): int(n) for t, row in exported.iterrows() for p, n in row.items() if n}
    assert got == expected
    assert sum(got.values()) == 40
    wide = confusion_matrix(scoring.confusion("last"), 1, normalize=True)
    assert wide.sum(axis=1).round(9).eq(1.0).all()
