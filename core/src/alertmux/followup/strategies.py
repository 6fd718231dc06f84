"""The built-in ranking strategies: ``near-peak`` and RESSPECT's ``uncertainty`` sampling within a time budget.

Both are registered through the ``alertmux_followup_strategies`` hook (by ``alertmux.builtin.followup_commands``)
exactly as a third-party strategy would be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alertmux.followup.exptime import MAX_EXPOSURE_S
from alertmux.specs import FollowupCandidate, FollowupPick
from alertmux.taxonomy import ELASTICC2, taxonomy


def _class_name(class_id: int) -> str:
    tax = taxonomy(ELASTICC2)
    return tax.name(class_id) if class_id in tax else str(class_id)


def _cheapest(candidate: FollowupCandidate) -> tuple[str | None, float | None]:
    for telescope in ("4m", "8m"):
        seconds = candidate.exposure_s.get(telescope)
        if seconds is not None:
            return telescope, seconds
    return None, None


class NearPeakOptions(BaseModel):
    """Options of ``near-peak``."""

    model_config = ConfigDict(extra="forbid")

    target_class: int = Field(2222, description="ELAsTiCC2 class wanted (2222 Ia; a parent such as 2220 sums its "
                                                "children)")
    min_probability: float = Field(0.5, ge=0, le=1, description="P(target class) at least this")
    mag_limit: float = Field(21.5, description="latest detection at least this bright")
    max_mag_below_peak: float = Field(0.5, ge=0, description="not rising: at most this far below its peak so far")
    max_age_days: float = Field(5.0, gt=0, description="latest detection at most this old")
    snr: float = Field(10.0, gt=0, description="S/N the exposure times aim at")


def near_peak(candidates: Sequence[FollowupCandidate], options: NearPeakOptions) -> list[FollowupPick]:
    """Objects likely of the target class, bright enough, and rising or near their peak; likeliest first.

    Score = P(target) x 1.0 when rising, x 0.85 when near peak but not rising (a rising object gives the facility
    more time to catch it near maximum, where a spectrum types it best). Ties go to the brighter object.
    """
    name = _class_name(options.target_class)
    picks = []
    for c in candidates:
        p = c.probability(options.target_class)
        if p < options.min_probability or c.last_mag is None or c.last_mag > options.mag_limit:
            continue
        age = c.mjd_now - (c.last_mjd or -math.inf)
        if age > options.max_age_days:
            continue
        below_peak = c.last_mag - (c.peak_mag if c.peak_mag is not None else c.last_mag)
        if not c.rising and below_peak > options.max_mag_below_peak:
            continue
        phase = "rising" if c.rising else (f"{below_peak:.2f} mag below its peak" if below_peak > 0 else "at its peak")
        telescope, seconds = _cheapest(c)
        cost = f"{telescope} {seconds:.0f} s" if seconds is not None else "too faint for a 2 h spectrum on an 8 m"
        reason = (f"P({name})={p:.2f} from {c.classifiers} classifier{'s' if c.classifiers != 1 else ''}; "
                  f"{c.last_band}={c.last_mag:.2f} {phase}; detected {age:.1f} d ago; {cost}")
        score = p * (1.0 if c.rising else 0.85)
        picks.append((score, c.last_mag, FollowupPick(c.dia_object_id, round(score, 6), reason, None, telescope,
                                                      seconds)))
    picks.sort(key=lambda item: (-item[0], item[1]))
    return [pick for _, _, pick in picks]


class UncertaintyOptions(BaseModel):
    """Options of ``uncertainty``."""

    model_config = ConfigDict(extra="forbid")

    target_class: int = Field(2222, description="the class of RESSPECT's binary question (Ia or not)")
    criterion: Literal["binary", "entropy", "least-confident", "margin"] = Field(
        "binary", description="binary: |P(target)-0.5| (RESSPECT UncSampling); or over the whole class vector")
    mag_limit: float = Field(24.0, description="queryable: latest detection at least this bright (RESSPECT rmag_lim)")
    max_age_days: float = Field(7.0, gt=0, description="queryable: latest detection at most this old")
    budget_4m_hours: float = Field(2.0, ge=0, description="telescope time on the 4 m class")
    budget_8m_hours: float = Field(2.0, ge=0, description="telescope time on the 8 m class")
    snr: float = Field(10.0, gt=0, description="S/N the exposure times aim at")


def _uncertainty(c: FollowupCandidate, options: UncertaintyOptions) -> float:
    """Lower is more uncertain (asked first), as RESSPECT sorts."""
    if options.criterion == "binary":
        return abs(c.probability(options.target_class) - 0.5)
    values = sorted((p for p in c.probabilities.values() if p > 0), reverse=True) or [1.0]
    if options.criterion == "entropy":
        return sum(p * math.log(p) for p in values)  # minus the entropy
    if options.criterion == "least-confident":
        return values[0]
    return values[0] - (values[1] if len(values) > 1 else 0.0)  # margin


def uncertainty(candidates: Sequence[FollowupCandidate], options: UncertaintyOptions) -> list[FollowupPick]:
    """RESSPECT's uncertainty sampling within a telescope-time budget (Kennamer et al. 2020).

    Queryable objects (bright and recent enough) are sorted by uncertainty; the 4 m budget is filled greedily in
    that order with every object a 4 m can take within 2 hours, then the 8 m budget with the objects left, as
    RESSPECT's ``batch_queries_uncertainty`` does; no object is on both, no budget overruns. Picks come back in
    uncertainty order with the telescope whose time they use.
    """
    queryable = [
        c for c in candidates
        if c.last_mag is not None and c.last_mag <= options.mag_limit
        and c.mjd_now - (c.last_mjd or -math.inf) <= options.max_age_days
    ]
    ranked = sorted(queryable, key=lambda c: (_uncertainty(c, options), c.dia_object_id))
    budgets = {"4m": options.budget_4m_hours * 3600.0, "8m": options.budget_8m_hours * 3600.0}
    used = {"4m": 0.0, "8m": 0.0}
    chosen: dict[int, str] = {}
    for telescope in ("4m", "8m"):
        for c in ranked:
            cost = c.exposure_s.get(telescope)
            if c.dia_object_id in chosen or cost is None or cost > MAX_EXPOSURE_S:
                continue
            if used[telescope] + cost <= budgets[telescope]:
                used[telescope] += cost
                chosen[c.dia_object_id] = telescope
    name = _class_name(options.target_class)
    picks = []
    spent = {"4m": 0.0, "8m": 0.0}
    for c in ranked:
        telescope = chosen.get(c.dia_object_id)
        if telescope is None:
            continue
        cost = c.exposure_s[telescope] or 0.0
        spent[telescope] += cost
        score = _uncertainty(c, options)
        what = (f"P({name})={c.probability(options.target_class):.2f}, |p-0.5|={score:.3f}"
                if options.criterion == "binary" else f"{options.criterion} score {score:.3f}")
        reason = (f"{what} (uncertainty sampling); {c.last_band}={c.last_mag:.2f}; {telescope} {cost:.0f} s "
                  f"({spent[telescope]:.0f} of {budgets[telescope]:.0f} s budget)")
        picks.append(FollowupPick(c.dia_object_id, round(score, 6), reason, None, telescope, cost))
    return picks
