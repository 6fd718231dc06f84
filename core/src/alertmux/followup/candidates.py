"""Candidates for follow-up, as of a time: averaged classifications and a light-curve summary per object.

An object is a candidate when it had a detection within ``hot_days`` before ``mjd_now`` (DESC's
``gethottransients``), at least one classification from a broker for an alert up to ``mjd_now``, no reported
spectrum and (by default) no live request at any facility. For each classifier the latest message (by the time
of the alert it answered) counts; the object's class probabilities are the mean over those classifiers (a class a
classifier did not name counts as 0 for it). Only entries whose kind is ``probability`` count.

The light curve is the store's photometry (difference flux in nJy; AB magnitude = 31.4 - 2.5 log10 flux):
the latest detection gives the magnitude and band; the band's brightest measurement so far gives the peak; the
latest point against the previous one in that band, beyond their combined 1-sigma error, says whether it rises.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from alertmux.followup.exptime import telescope_costs
from alertmux.followup.storage import SPECTROSCOPY_BROKER, FollowupStore
from alertmux.specs import FollowupCandidate

ZERO_POINT_NJY = 31.4


def flux_to_mag(flux_njy: float) -> float | None:
    """AB magnitude of a positive flux in nJy (None for a non-positive flux)."""
    return ZERO_POINT_NJY - 2.5 * math.log10(flux_njy) if flux_njy > 0 else None


def latest_mjd(followup: FollowupStore) -> float | None:
    """The latest alert time in the store: "now" for a store fed by a live stream."""
    row = followup.conn.execute("SELECT MAX(mjd) FROM alerts").fetchone()
    return row[0] if row else None


def build_candidates(
    followup: FollowupStore,
    *,
    mjd_now: float | None = None,
    hot_days: float = 14.0,
    brokers: Sequence[str] | None = None,
    snr: float = 10.0,
    include_requested: bool = False,
) -> list[FollowupCandidate]:
    """Every candidate object as of ``mjd_now`` (default: the latest alert), in object id order.

    Args:
        followup: the follow-up view of a store.
        mjd_now: the time the ranking is for.
        hot_days: only objects detected within this many days before ``mjd_now``.
        brokers: only classifications from these broker plugins (default: every broker but spectroscopy).
        snr: the S/N the exposure times aim at.
        include_requested: keep objects that already have a live request somewhere.
    """
    now = mjd_now if mjd_now is not None else latest_mjd(followup)
    if now is None:
        return []
    conn = followup.conn
    hot = {
        oid: (n, last)
        for oid, n, last in conn.execute(
            "SELECT dia_object_id, COUNT(*), MAX(mjd) FROM photometry WHERE detection = 1 AND mjd <= ?"
            " GROUP BY dia_object_id HAVING MAX(mjd) >= ?", (now, now - hot_days),
        )
    }
    excluded = followup.spectroscopic_objects()
    if not include_requested:
        excluded |= followup.requested_objects()
    wanted = sorted(set(hot) - excluded)
    if not wanted:
        return []
    probabilities = _probabilities(followup, wanted, now, brokers)
    curves = _light_curves(followup, [o for o in wanted if o in probabilities], now)
    positions = followup.positions(list(probabilities))
    out = []
    for oid in wanted:
        if oid not in probabilities:
            continue
        probs, n_classifiers = probabilities[oid]
        summary = curves.get(oid, {})
        ra, dec = positions.get(oid, (None, None))
        out.append(FollowupCandidate(
            dia_object_id=oid, mjd_now=now, probabilities=probs, classifiers=n_classifiers, ra=ra, dec=dec,
            n_detections=hot[oid][0], exposure_s=telescope_costs(summary.get("last_mag"), snr), **summary,
        ))
    return out


def _probabilities(
    followup: FollowupStore, objects: Sequence[int], now: float, brokers: Sequence[str] | None
) -> dict[int, tuple[dict[int, float], int]]:
    broker_clause, broker_params = "c.broker != ?", [SPECTROSCOPY_BROKER]
    if brokers:
        broker_clause = f"c.broker IN ({','.join('?' * len(brokers))})"
        broker_params = list(brokers)
    per_object: dict[int, list[dict[int, float]]] = defaultdict(list)
    for chunk in _chunks(objects, 500):
        rows = followup.conn.execute(
            f"""SELECT dia_object_id, class_ids, probabilities, kinds FROM (
                  SELECT a.dia_object_id, m.class_ids, m.probabilities, m.kinds, ROW_NUMBER() OVER (
                      PARTITION BY m.classifier_id, a.dia_object_id ORDER BY a.mjd DESC, a.alert_id DESC) AS pick
                  FROM messages m JOIN alerts a ON a.alert_id = m.alert_id
                  JOIN classifiers c ON c.classifier_id = m.classifier_id
                  WHERE a.mjd <= ? AND {broker_clause} AND a.dia_object_id IN ({','.join('?' * len(chunk))}))
                WHERE pick = 1""",
            (now, *broker_params, *chunk),
        )
        for oid, ids, values, kinds in rows:
            per_object[oid].append(_vector(json.loads(ids), json.loads(values), json.loads(kinds) if kinds else None))
    out = {}
    for oid, vectors in per_object.items():
        total: dict[int, float] = defaultdict(float)
        for vector in vectors:
            for class_id, p in vector.items():
                total[class_id] += p / len(vectors)
        out[oid] = (dict(total), len(vectors))
    return out


def _vector(ids: list[Any], values: list[Any], kinds: list[str] | None) -> dict[int, float]:
    vector: dict[int, float] = {}
    for i, (class_id, p) in enumerate(zip(ids, values, strict=False)):
        if class_id is None or p is None or (kinds and kinds[i] != "probability"):
            continue
        vector[int(class_id)] = vector.get(int(class_id), 0.0) + float(p)
    return vector


def _light_curves(followup: FollowupStore, objects: Sequence[int], now: float) -> dict[int, dict[str, Any]]:
    points: dict[int, list[tuple[float, str, float, float, int]]] = defaultdict(list)
    for chunk in _chunks(objects, 500):
        for row in followup.conn.execute(
            "SELECT dia_object_id, mjd, band, flux, flux_err, detection FROM photometry WHERE mjd <= ?"
            f" AND dia_object_id IN ({','.join('?' * len(chunk))}) ORDER BY dia_object_id, mjd", (now, *chunk),
        ):
            points[row[0]].append(row[1:])
    return {oid: summarize(rows) for oid, rows in points.items()}


def summarize(points: Iterable[tuple[float, str, float, float, int]]) -> dict[str, Any]:
    """Light-curve summary from (mjd, band, flux nJy, flux error, detection) rows in time order."""
    rows = list(points)
    detections = [r for r in rows if r[4] and r[2] > 0]
    if not detections:
        return {}
    last_mjd, band, flux, _err, _ = detections[-1]
    in_band = [r for r in rows if r[1] == band]
    brightest = max(in_band, key=lambda r: r[2])
    index = max(i for i, r in enumerate(in_band) if r[0] == last_mjd)
    rising = None
    if index > 0:
        previous = in_band[index - 1]
        difference = flux - previous[2]
        sigma = math.hypot(in_band[index][3], previous[3])
        rising = difference > sigma
    return {
        "last_mjd": last_mjd, "last_mag": flux_to_mag(flux), "last_band": band,
        "peak_mag": flux_to_mag(brightest[2]), "peak_mjd": brightest[0], "rising": rising,
    }


def _chunks(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]
