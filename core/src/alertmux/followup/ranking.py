"""Ranking objects for follow-up: run a strategy plugin on the candidates, assign priorities, store the result.

Priorities are ours (RESSPECT's mapping from its ranking to DESC's 1-5 priorities is not public): a strategy may
set them; otherwise the ranked list is cut in fifths, the first fifth priority 1 (most urgent) and the last 5, so
a priority always says where in its ranking an object stood.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from alertmux.errors import UsageError
from alertmux.followup.candidates import build_candidates
from alertmux.followup.models import RankedTarget, Ranking
from alertmux.followup.storage import FollowupStore
from alertmux.host import PluginHost
from alertmux.specs import FollowupStrategySpec

log = logging.getLogger(__name__)
DEFAULT_HOT_DAYS = 14.0
TABLE_COLUMNS = ("rank", "dia_object_id", "priority", "score", "telescope", "exposure_s", "last_mag", "last_band",
                 "ra", "dec", "reason")


def strategies(host: PluginHost) -> dict[str, FollowupStrategySpec]:
    """Every registered ranking strategy by name (the first registration of a name wins; clashes are logged)."""
    found: dict[str, FollowupStrategySpec] = {}
    for impl in host.hook.alertmux_followup_strategies.get_hookimpls():
        try:
            specs = list(impl.function() or ())
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            log.warning("follow-up strategies of plugin %s failed: %s", impl.plugin_name, exc)
            continue
        for spec in specs:
            if spec.name in found:
                log.warning("follow-up strategy %r of plugin %s ignored: already registered", spec.name,
                            impl.plugin_name)
                continue
            found[spec.name] = spec
    return found


def strategy(host: PluginHost, name: str) -> FollowupStrategySpec:
    """The strategy called ``name``, or a clear error listing the known ones."""
    table = strategies(host)
    if name not in table:
        raise UsageError(f"unknown follow-up strategy {name!r} (known: {', '.join(sorted(table)) or 'none'})")
    return table[name]


def parse_options(spec: FollowupStrategySpec, options: Mapping[str, Any]) -> Any:
    """Validate options against the strategy's model; a clear error names the bad keys."""
    if spec.options_model is None:
        return dict(options)
    try:
        return spec.options_model.model_validate(dict(options))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors(include_input=False, include_url=False)]
        known = ", ".join(spec.options_model.model_fields)
        raise UsageError(f"options of strategy {spec.name}: {'; '.join(problems)} (options: {known})") from None


def priority_for(index: int, total: int) -> int:
    """Priority of the ``index``-th (0-based) of ``total`` ranked objects: its fifth of the list, 1 to 5."""
    return 1 + (5 * index) // max(total, 1)


def rank(
    host: PluginHost,
    followup: FollowupStore,
    strategy_name: str,
    options: Mapping[str, Any] | None = None,
    *,
    mjd_now: float | None = None,
    brokers: Sequence[str] | None = None,
    limit: int | None = None,
    include_requested: bool = False,
) -> Ranking:
    """Rank the store's candidates with a strategy and store the ranking (it becomes the latest).

    Args:
        host: the plugin host (strategies come from its plugins).
        followup: the follow-up view of the store.
        strategy_name: a registered strategy.
        options: the strategy's options (validated by its model).
        mjd_now: the time to rank for; default: the latest alert in the store.
        brokers: only these brokers' classifications.
        limit: keep at most this many picks.
        include_requested: also rank objects that already have a live request.
    """
    spec = strategy(host, strategy_name)
    parsed = parse_options(spec, options or {})
    settings = parsed.model_dump() if isinstance(parsed, BaseModel) else dict(parsed)
    hot_days = float(settings.get("max_age_days", DEFAULT_HOT_DAYS))
    candidates = build_candidates(followup, mjd_now=mjd_now, hot_days=hot_days, brokers=brokers,
                                  snr=float(settings.get("snr", 10.0)), include_requested=include_requested)
    by_id = {c.dia_object_id: c for c in candidates}
    picks = [p for p in spec.rank(candidates, parsed) if p.dia_object_id in by_id]
    if limit is not None:
        picks = picks[:limit]
    targets = []
    for i, pick in enumerate(picks):
        c = by_id[pick.dia_object_id]
        priority = pick.priority if pick.priority is not None else priority_for(i, len(picks))
        if not 1 <= priority <= 5:
            raise UsageError(f"strategy {spec.name} gave priority {priority} (must be 1..5)")
        targets.append(RankedTarget(
            rank=i + 1, dia_object_id=pick.dia_object_id, priority=priority, score=pick.score, reason=pick.reason,
            telescope=pick.telescope, exposure_s=pick.exposure_s, ra=c.ra, dec=c.dec, last_mag=c.last_mag,
            last_band=c.last_band,
        ))
    now = candidates[0].mjd_now if candidates else mjd_now
    recorded = {"brokers": list(brokers) if brokers else None, "limit": limit, **settings}
    return followup.save_ranking(spec.name, recorded, now, len(candidates), targets)


def ranking_rows(ranking: Ranking) -> list[dict[str, Any]]:
    """A ranking as rows of :data:`TABLE_COLUMNS`."""
    rows = []
    for t in ranking.targets:
        rows.append({
            "rank": t.rank, "dia_object_id": t.dia_object_id, "priority": t.priority, "score": t.score,
            "telescope": t.telescope, "exposure_s": None if t.exposure_s is None else round(t.exposure_s, 1),
            "last_mag": None if t.last_mag is None else round(t.last_mag, 3), "last_band": t.last_band,
            "ra": t.ra, "dec": t.dec, "reason": t.reason,
        })
    return rows


def render(ranking: Ranking, fmt: str) -> str:
    """A ranking as ``csv`` or ``json`` text."""
    rows = ranking_rows(ranking)
    if fmt == "json":
        return json.dumps({
            "ranking_id": ranking.ranking_id, "strategy": ranking.strategy, "mjd_now": ranking.mjd_now,
            "candidates": ranking.candidates, "options": ranking.options, "targets": rows,
        }, indent=1)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    raise UsageError(f"unknown format {fmt!r}: use csv or json")


def write(ranking: Ranking, out: Path) -> Path:
    """Write a ranking to ``out`` (``.csv`` or ``.json``)."""
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("csv", "json"):
        raise UsageError("--out must end in .csv or .json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(ranking, fmt))
    return out
