"""``alertmux demo --followup``: the whole loop on one machine, alerts -> brokers -> ranking -> requests -> observed.

1. The local harness runs as ``alertmux demo`` does (simulated alerts through an embedded Kafka broker to the
   emulated brokers and back), recording each object's position as its alerts go out.
2. A ranking strategy ranks the objects as of the moment of the simulated season with the most candidates.
3. Each facility's loopback emulator starts, and the top of the ranking is submitted to them in turn (an object
   requested at one facility is not requested again at the next), after the same checks as a real submission.
4. Open requests are polled in bulk until the emulated telescopes have observed them; the data products of each
   completed request are listed and recorded.
5. For each observed object a spectroscopic classification is reported back (emulated: the true class, 90 % of
   the time, else a neighbouring class) and stored beside the brokers' classifications, so the summary and the
   scoring show it as a classifier of its own.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from alertmux.followup.candidates import build_candidates
from alertmux.followup.models import TERMINAL
from alertmux.followup.ranking import parse_options, rank, strategy
from alertmux.followup.service import fetch_products, open_facility, poll, submit_ranking
from alertmux.followup.storage import SPECTROSCOPY_BROKER, FollowupStore
from alertmux.host import PluginHost
from alertmux.store import open_store
from alertmux.taxonomy import ELASTICC2, taxonomy

log = logging.getLogger(__name__)
SPECTRUM_ACCURACY = 0.9


def best_moment(followup: FollowupStore, host: PluginHost, strategy_name: str, options: dict[str, Any],
                samples: int = 24) -> float | None:
    """The alert time (MJD) at which the strategy picks the most objects (ties: the earliest)."""
    spec = strategy(host, strategy_name)
    parsed = parse_options(spec, options)
    hot_days = float(getattr(parsed, "max_age_days", 14.0))
    row = followup.conn.execute("SELECT MIN(mjd), MAX(mjd) FROM alerts").fetchone()
    if row is None or row[0] is None:
        return None
    first, last = row
    best, best_count = last, -1
    for i in range(samples):
        moment = first + (last - first) * (i + 1) / samples
        picks = list(spec.rank(build_candidates(followup, mjd_now=moment, hot_days=hot_days), parsed))
        if len(picks) > best_count:
            best, best_count = moment, len(picks)
    return best


def _spectral_class(true_class: int | None, rng: random.Random) -> int:
    tax = taxonomy(ELASTICC2)
    if true_class is None:
        return 300  # NotClassified
    if rng.random() < SPECTRUM_ACCURACY:
        return true_class
    parent = tax.parent(true_class)
    siblings = [c for c in tax.children(parent) if c != true_class and tax.is_leaf(c)] if parent else []
    return rng.choice(siblings) if siblings else true_class


def run_followup_demo(
    store_path: Path,
    *,
    objects: int = 200,
    seed: int = 0,
    bootstrap: str | None = None,
    client_config: Mapping[str, Any] | None = None,
    brokers: Sequence[str] = ("elasticc",),
    facilities: Sequence[str] = ("lco", "soar", "gemini"),
    top: int = 2,
    strategy_name: str = "near-peak",
    strategy_options: dict[str, Any] | None = None,
    complete_after_s: float = 1.0,
    wait_s: float = 30.0,
    class_mix: str = "uniform",
    load_entrypoints: bool = True,
    plugins: Sequence[Any] = (),
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict[str, Any]:
    """Run the whole follow-up loop against emulators and return its summary.

    Args:
        store_path: the SQLite store (created or added to).
        objects: simulated objects.
        seed: seed of the simulation (and of the emulated spectral typing).
        bootstrap: a Kafka cluster; default: an embedded broker.
        client_config: librdkafka settings for that cluster.
        brokers: emulated brokers to classify the alerts.
        facilities: facility plugins to submit to, in order (each needs an emulator).
        top: requests per facility.
        strategy_name: the ranking strategy.
        strategy_options: its options (default for ``near-peak``: SN-like objects, P >= 0.3, brighter than 22.5,
            detected in the last 15 days, rising or within 1 mag of their peak).
        complete_after_s: how long the emulated telescopes take to observe a request.
        wait_s: give up waiting for observations after this long.
        class_mix: ``uniform`` or ``elasticc``.
        load_entrypoints: load the installed plugins (tests pass False and list ``plugins``).
        plugins: extra plugin objects.
        progress: ``progress(stage, done, total)``.

    Returns:
        ``{"demo": <the harness summary, followup classifier included>, "ranking": {...}, "facilities": {...},
        "spectra": n, "products": n}``.
    """
    from alertmux.harness import DemoOptions, run_demo

    options = strategy_options if strategy_options is not None else (
        {"target_class": 2220, "min_probability": 0.3, "mag_limit": 22.5, "max_age_days": 15.0,
         "max_mag_below_peak": 1.0}
        if strategy_name == "near-peak" else {})
    from alertmux.builtin import followup_commands

    # Object positions reach the follow-up tables through the plugin's alertmux_alerts_recorded hook.
    host = PluginHost(load_entrypoints=load_entrypoints,
                      plugins=[*plugins] if load_entrypoints else [*plugins, followup_commands])
    for name in facilities:
        if host.facility(name).emulator is None:
            raise ValueError(f"facility {name!r} has no emulator")
    demo_options = DemoOptions(db=store_path, objects=objects, seed=seed, bootstrap=bootstrap,
                               client_config=dict(client_config or {}), brokers=tuple(brokers), class_mix=class_mix)
    summary = run_demo(host, demo_options, progress=progress)
    store = open_store(store_path)
    followup = FollowupStore(store)
    result: dict[str, Any] = {"facilities": {}, "products": 0, "spectra": 0}
    try:
        moment = best_moment(followup, host, strategy_name, options)
        ranking = rank(host, followup, strategy_name, options, mjd_now=moment)
        result["ranking"] = {"ranking_id": ranking.ranking_id, "strategy": ranking.strategy, "mjd_now": moment,
                             "candidates": ranking.candidates, "ranked": len(ranking.targets)}
        with ExitStack() as stack:
            opened = {}
            for name in facilities:
                spec = host.facility(name)
                settings = stack.enter_context(spec.emulator(complete_after_s=complete_after_s))
                opened[name] = open_facility(host, name, settings, {"max_requests": max(top, 10)})
                planned = submit_ranking(followup, opened[name], top=top, ranking_id=ranking.ranking_id,
                                         confirm=True)
                result["facilities"][name] = {
                    "submitted": sum(p.action == "submitted" for p in planned),
                    "skipped": [{"object": p.dia_object_id, "reason": p.reason} for p in planned
                                if p.action not in ("submitted", "exists")],
                    "status_api": spec.status_api,
                }
            _wait_observed(followup, opened, wait_s, complete_after_s)
            rng = random.Random(f"alertmux-followup-demo:{seed}")
            for name, facility in opened.items():
                records = followup.requests(name)
                states: dict[str, int] = {}
                for record in records:
                    states[record.state] = states.get(record.state, 0) + 1
                    if record.state != "completed" or record.dia_object_id is None:
                        continue
                    if facility.spec.data_products is not None:
                        result["products"] += len(fetch_products(followup, facility, record.request_id))
                    true_class = store.truth_class(record.dia_object_id)
                    _, new = followup.report_spectrum(
                        dia_object_id=record.dia_object_id, facility=name, mjd=float(ranking.mjd_now or 0) + 1.0,
                        class_id=_spectral_class(true_class, rng), request_id=record.request_id)
                    result["spectra"] += int(new)
                result["facilities"][name]["states"] = states
        result["demo"] = store.summary(summary["run_id"]) | {"run_id": summary["run_id"], "db": str(store_path)}
        store.finish_run(summary["run_id"], result["demo"])
    finally:
        store.close()
    return result


def _wait_observed(followup: FollowupStore, opened: dict[str, Any], wait_s: float, complete_after_s: float) -> None:
    time.sleep(min(complete_after_s, wait_s))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        pending = 0
        for facility in opened.values():
            if not facility.spec.status_api:
                continue
            poll(followup, facility)
            pending += sum(1 for r in followup.open_requests(facility.name) if r.state not in TERMINAL)
        if not pending:
            return
        time.sleep(0.25)
    log.warning("some follow-up requests were still open after %.0f s", wait_s)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The follow-up part of the demo's summary, as lines for a person."""
    lines = []
    ranking = result.get("ranking", {})
    lines.append(f"follow-up ranking {ranking.get('ranking_id')} ({ranking.get('strategy')}, MJD "
                 f"{ranking.get('mjd_now') or 0:.1f}): {ranking.get('ranked')} of {ranking.get('candidates')} "
                 "candidates ranked")
    for name, info in result.get("facilities", {}).items():
        states = ", ".join(f"{n} {s}" for s, n in sorted(info.get("states", {}).items())) or "no requests"
        note = "" if info.get("status_api", True) else " (no status API: triggers stay 'submitted')"
        lines.append(f"  {name}: {info['submitted']} submitted, {len(info['skipped'])} skipped; {states}{note}")
        # Say why: a facility that took nothing (a 2 m and faint targets) is otherwise a silent zero.
        for skipped in info["skipped"]:
            lines.append(f"    object {skipped['object']} skipped: {skipped['reason']}")
    followup = result.get("demo", {}).get("brokers", {}).get(SPECTROSCOPY_BROKER)
    accuracy = followup.get("top1_accuracy") if followup else None
    lines.append(f"  data products: {result.get('products', 0)}; spectroscopic classifications reported: "
                 f"{result.get('spectra', 0)}" + (f" (top-1 accuracy {accuracy:.2f})" if accuracy is not None else ""))
    return lines
