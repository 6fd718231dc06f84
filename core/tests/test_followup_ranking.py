"""Candidates, the built-in strategies, stored rankings and ``alertmux followup rank``, on stores built here."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertmux import hookimpl
from alertmux.builtin import elasticc, followup_commands
from alertmux.followup.candidates import build_candidates, summarize
from alertmux.followup.exptime import telescope_costs
from alertmux.followup.ranking import priority_for, rank
from alertmux.followup.storage import FollowupStore
from alertmux.followup.strategies import NearPeakOptions, UncertaintyOptions, near_peak, uncertainty
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.specs import BrokerMessage, Delivery, FollowupCandidate, FollowupPick, FollowupStrategySpec
from alertmux.store import open_store

ZP = 31.4


def flux(mag: float) -> float:
    return 10 ** ((ZP - mag) / 2.5)


def add_object(store: Any, host: PluginHost, oid: int, points: list[tuple[float, str, float]],
               classifications: dict[str, list[tuple[int, dict[int, float]]]], position: tuple[float, float] | None,
               run_id: str = "run") -> None:
    """An object with detections at (mjd, band, mag) (one alert each) and classifiers answering alerts.

    ``classifications``: classifier name -> [(index of the alert answered, {class: probability})].
    """
    alerts = []
    for i, (mjd, band, mag) in enumerate(points):
        source = {"diaSourceId": oid * 100 + i, "diaObjectId": oid, "midPointTai": mjd, "filterName": band,
                  "psFlux": flux(mag), "psFluxErr": flux(mag) / 50, "ra": 10.0, "decl": -20.0}
        alerts.append({"alertId": oid * 100 + i, "diaSource": source, "prvDiaSources": None,
                       "prvDiaForcedSources": None})
    store.record_objects(run_id, [], alerts)
    if position:
        FollowupStore(store).record_positions([(oid, *position)])
    ingestor = Ingestor(host, "elasticc", store, run_id)
    messages = [
        BrokerMessage((name, "1", name, ""), "elasticc2", list(probs), list(probs.values()),
                      alert_id=oid * 100 + index, dia_source_id=oid * 100 + index)
        for name, answers in classifications.items() for index, probs in answers
    ]
    store.write_batch(ingestor.rows(messages, Delivery("test")))


@pytest.fixture
def host() -> PluginHost:
    return PluginHost(load_entrypoints=False, plugins=[elasticc, followup_commands])


@pytest.fixture
def sky(tmp_path: Path, host: PluginHost) -> Callable[[], Path]:
    """A store with five objects around MJD 100 whose fate under each strategy is known."""

    def build() -> Path:
        path = tmp_path / "sky.db"
        store = open_store(path)
        # 1: likely Ia, rising, bright -> near-peak's best.
        add_object(store, host, 1, [(90, "r", 20.5), (95, "r", 20.0), (99, "r", 19.6)],
                   {"A": [(2, {2222: 0.9, 2224: 0.1})], "B": [(2, {2222: 0.7, 2224: 0.3})]}, (150.0, -30.0))
        # 2: likely Ia, past peak by 0.3 mag, not rising -> near-peak, scored lower.
        add_object(store, host, 2, [(90, "r", 19.5), (95, "r", 19.2), (99, "r", 19.5)],
                   {"A": [(2, {2222: 0.9, 2224: 0.1})]}, (151.0, -31.0))
        # 3: uncertain (0.52), faint-ish -> uncertainty's first; near-peak needs P >= 0.5, mag <= 21.5: too faint.
        add_object(store, host, 3, [(96, "r", 21.9), (99, "r", 21.8)], {"A": [(1, {2222: 0.52, 2224: 0.48})]},
                   (152.0, -32.0))
        # 4: classified Ia early, II at its latest alert -> the latest answer counts (P(Ia)=0.2).
        add_object(store, host, 4, [(93, "r", 19.0), (99, "r", 18.9)],
                   {"A": [(0, {2222: 0.9, 2224: 0.1}), (1, {2222: 0.2, 2224: 0.8})]}, (153.0, -33.0))
        # 5: last seen long ago -> not a candidate at MJD 100 (hot_days 14).
        add_object(store, host, 5, [(60, "r", 19.0), (70, "r", 18.5)], {"A": [(1, {2222: 0.99})]}, None)
        store.close()
        return path

    return build


def test_candidates_average_the_latest_answer_of_each_classifier(sky: Callable[[], Path]) -> None:
    store = open_store(sky())
    candidates = {c.dia_object_id: c for c in build_candidates(FollowupStore(store), mjd_now=100.0)}
    assert sorted(candidates) == [1, 2, 3, 4]  # 5 is not hot
    one = candidates[1]
    assert one.classifiers == 2
    assert one.probability(2222) == pytest.approx(0.8)
    assert one.probability(2220) == pytest.approx(1.0)  # a parent sums its children
    assert candidates[4].probability(2222) == pytest.approx(0.2)  # latest alert's answer, not the first one
    assert one.rising is True and candidates[2].rising is False
    assert one.last_mag == pytest.approx(19.6) and one.last_band == "r"
    assert candidates[2].peak_mag == pytest.approx(19.2)
    assert (one.ra, one.dec) == (150.0, -30.0)
    assert one.exposure_s == telescope_costs(one.last_mag)


def test_candidates_as_of_an_earlier_time_use_only_what_was_known_then(sky: Callable[[], Path]) -> None:
    store = open_store(sky())
    candidates = {c.dia_object_id: c for c in build_candidates(FollowupStore(store), mjd_now=94.0)}
    assert candidates[4].probability(2222) == pytest.approx(0.9)  # its alert at 99 had not happened yet
    assert 1 not in candidates  # its only classification answers the alert at MJD 99


def test_candidates_leave_out_objects_with_a_spectrum_or_a_live_request(sky: Callable[[], Path]) -> None:
    store = open_store(sky())
    followup = FollowupStore(store)
    followup.report_spectrum(dia_object_id=1, facility="lco", mjd=99.5, class_id=2222)
    record = followup.create_request(facility="lco", name="alertmux-2", proposal="P", dia_object_id=2,
                                     ranking_id=None, priority=1, payload={}, exposure_s=100, duration_s=None)
    followup.update_request(record.request_id, state="pending", native_state="PENDING")
    ids = {c.dia_object_id for c in build_candidates(followup, mjd_now=100.0)}
    assert ids == {3, 4}
    assert {c.dia_object_id for c in build_candidates(followup, mjd_now=100.0, include_requested=True)} == {2, 3, 4}


def test_light_curve_summary_needs_one_sigma_to_call_it_rising() -> None:
    flat = summarize([(1.0, "g", 100.0, 10.0, 1), (2.0, "g", 110.0, 10.0, 1)])
    assert flat["rising"] is False  # +10 with sigma 14: noise
    up = summarize([(1.0, "g", 100.0, 10.0, 1), (2.0, "g", 130.0, 10.0, 1)])
    assert up["rising"] is True and up["last_mag"] == pytest.approx(ZP - 2.5 * 2.1139434, abs=1e-3)
    assert summarize([(1.0, "g", -5.0, 1.0, 0)]) == {}


def _candidate(oid: int, p_ia: float, mag: float, rising: bool | None = True, below_peak: float = 0.0,
               age: float = 1.0) -> FollowupCandidate:
    return FollowupCandidate(
        dia_object_id=oid, mjd_now=100.0, probabilities={2222: p_ia, 2224: 1 - p_ia}, classifiers=1,
        last_mjd=100.0 - age, last_mag=mag, last_band="r", peak_mag=mag - below_peak, rising=rising,
        exposure_s=telescope_costs(mag),
    )


def test_near_peak_keeps_likely_bright_fresh_objects_rising_first() -> None:
    picks = near_peak([
        _candidate(1, 0.80, 19.0, rising=False, below_peak=0.2),
        _candidate(2, 0.75, 19.5, rising=True),
        _candidate(3, 0.40, 18.0),  # unlikely
        _candidate(4, 0.90, 22.0),  # too faint
        _candidate(5, 0.90, 19.0, rising=False, below_peak=1.2),  # well past peak
        _candidate(6, 0.90, 19.0, age=8.0),  # stale
    ], NearPeakOptions())
    assert [p.dia_object_id for p in picks] == [2, 1]  # 0.75 x 1.0 beats 0.80 x 0.85
    assert picks[0].score == pytest.approx(0.75) and picks[1].score == pytest.approx(0.68)
    assert "P(Ia)=0.75" in picks[0].reason and "rising" in picks[0].reason
    assert picks[0].telescope == "4m" and picks[0].exposure_s == pytest.approx(telescope_costs(19.5)["4m"])


def test_uncertainty_sampling_fills_the_4m_budget_then_the_8m_one() -> None:
    candidates = [
        _candidate(1, 0.50, 21.0),  # most uncertain; 4 m: ~1105 s
        _candidate(2, 0.45, 22.5),  # too faint for a 4 m within 2 h: goes to the 8 m
        _candidate(3, 0.60, 21.0),
        _candidate(4, 0.95, 18.0),  # confident: last
        _candidate(5, 0.55, 25.0),  # not queryable (fainter than 24)
    ]
    options = UncertaintyOptions(budget_4m_hours=0.5, budget_8m_hours=1.0)
    picks = uncertainty(candidates, options)
    assert [p.dia_object_id for p in picks] == [1, 2, 3, 4]
    assert [p.telescope for p in picks] == ["4m", "8m", "8m", "4m"]  # 3 no longer fits in 1800 s of 4 m
    budgets = {"4m": 1800.0, "8m": 3600.0}
    for telescope, budget in budgets.items():
        assert sum(p.exposure_s or 0 for p in picks if p.telescope == telescope) <= budget
    assert picks[0].score == pytest.approx(0.0)
    assert "uncertainty sampling" in picks[0].reason
    tight = uncertainty(candidates, UncertaintyOptions(budget_4m_hours=0.0, budget_8m_hours=0.0))
    assert tight == []


def test_uncertainty_criteria_over_the_whole_vector() -> None:
    sure = FollowupCandidate(1, 100.0, {2222: 0.9, 2224: 0.05, 2223: 0.05}, 1, last_mjd=99.0, last_mag=19.0,
                             exposure_s=telescope_costs(19.0))
    torn = FollowupCandidate(2, 100.0, {2222: 0.4, 2224: 0.35, 2223: 0.25}, 1, last_mjd=99.0, last_mag=19.0,
                             exposure_s=telescope_costs(19.0))
    for criterion in ("entropy", "least-confident", "margin"):
        picks = uncertainty([sure, torn], UncertaintyOptions(criterion=criterion))
        assert [p.dia_object_id for p in picks] == [2, 1], criterion


def test_priorities_are_the_fifth_of_the_list() -> None:
    assert [priority_for(i, 10) for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [priority_for(i, 3) for i in range(3)] == [1, 2, 4]
    assert priority_for(0, 1) == 1


def test_rank_stores_the_ranking_and_submit_reads_the_latest(sky: Callable[[], Path], host: PluginHost) -> None:
    store = open_store(sky())
    followup = FollowupStore(store)
    first = rank(host, followup, "near-peak", {}, mjd_now=100.0)
    assert [t.dia_object_id for t in first.targets] == [1, 2]
    assert [t.priority for t in first.targets] == [1, 3]
    second = rank(host, followup, "uncertainty", {"budget_4m_hours": 1}, mjd_now=100.0)
    assert second.ranking_id == first.ranking_id + 1
    latest = followup.ranking()
    assert latest is not None and latest.strategy == "uncertainty"
    assert [t.dia_object_id for t in latest.targets] == [t.dia_object_id for t in second.targets]
    assert latest.targets[0].dia_object_id == 3 and latest.options["budget_4m_hours"] == 1
    assert followup.ranking(first.ranking_id).targets[0].reason == first.targets[0].reason


def test_a_strategy_from_a_third_party_plugin(sky: Callable[[], Path]) -> None:
    def brightest(candidates: Any, options: Any) -> list[FollowupPick]:
        ordered = sorted(candidates, key=lambda c: c.last_mag)
        return [FollowupPick(c.dia_object_id, -c.last_mag, f"mag {c.last_mag:.1f}", priority=5) for c in ordered]

    class Plugin:
        @hookimpl
        def alertmux_followup_strategies(self) -> Any:
            yield FollowupStrategySpec(name="brightest", description="brightest first", rank=brightest)

    host = PluginHost(load_entrypoints=False, plugins=[elasticc, followup_commands, Plugin()])
    ranking = rank(host, FollowupStore(open_store(sky())), "brightest", {}, mjd_now=100.0, limit=2)
    assert [t.dia_object_id for t in ranking.targets] == [4, 2]
    assert {t.priority for t in ranking.targets} == {5}  # the strategy's own priorities are kept


def test_rank_command_prints_and_writes_the_table(sky: Callable[[], Path], host: PluginHost, run_cli: Any,
                                                  tmp_path: Path) -> None:
    db = sky()
    out = tmp_path / "ranked.csv"
    result = run_cli("followup", "rank", "--db", str(db), "--mjd", "100", "--format", "json", "--out", str(out),
                     host=host)
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["strategy"] == "near-peak" and document["candidates"] == 4
    assert [t["dia_object_id"] for t in document["targets"]] == [1, 2]
    assert document["targets"][0]["priority"] == 1 and "P(Ia)=0.80" in document["targets"][0]["reason"]
    rows = list(csv.DictReader(out.open()))
    assert [r["dia_object_id"] for r in rows] == ["1", "2"] and rows[0]["priority"] == "1"
    table = run_cli("followup", "rank", "--db", str(db), "--mjd", "100", "--strategy", "uncertainty", host=host)
    assert table.code == 0 and "uncertainty sampling" in table.out


def test_rank_command_rejects_bad_options_clearly(sky: Callable[[], Path], host: PluginHost, run_cli: Any) -> None:
    db = sky()
    bad = run_cli("followup", "rank", "--db", str(db), "--set", "mag_limt=20", host=host)
    assert bad.code == 2 and "mag_limt" in bad.err and "mag_limit" in bad.err
    unknown = run_cli("followup", "rank", "--db", str(db), "--strategy", "nope", host=host)
    assert unknown.code == 2 and "near-peak" in unknown.err
    missing = run_cli("followup", "rank", "--db", str(db.with_name("absent.db")), host=host)
    assert missing.code == 2 and "no database" in missing.err
