"""The HTML report: one self-contained file (PNG plots embedded as data URIs) with a section per classifier.

Every number comes from :mod:`alertmux.scoring`; this module only lays the frames out. Plots are drawn with
matplotlib's object API on the Agg canvas (no pyplot global state, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertmux.scoring import (
    HIST_DEX,
    LEVELS,
    SPANS,
    Scoring,
    class_name,
    classifier_label,
    confusion_matrix,
    open_scoring,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #4a6fa5; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; } .grid { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #444; text-align: center; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; } th { background: #eef2f8; }
td:first-child, th:first-child { text-align: left; }
nav { background: #f4f7fb; border-radius: 6px; padding: 0.6em 1em; } nav a { margin-right: 1.2em; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.8em 0; }
.card { background: #f4f7fb; border-left: 4px solid #4a6fa5; border-radius: 4px; padding: 0.5em 1em; min-width: 9em; }
.card .value { font-size: 1.7em; font-weight: 600; color: #1d3557; } .card .label { font-size: 0.85em; color: #555; }
details { margin: 0.4em 0; } summary { cursor: pointer; color: #4a6fa5; }
"""


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(caption: str, fig: Figure) -> str:
    return f'<figure><img src="{_png(fig)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}' \
           "</figcaption></figure>"


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def heatmap(matrix: pd.DataFrame, title: str) -> Figure:
    """A row-normalized confusion matrix as a heatmap, cells annotated in percent, classes by name."""
    values = matrix.to_numpy(dtype=float)
    rows, cols = values.shape
    fig = _new_figure(max(4.0, 0.42 * cols + 2.5), max(3.0, 0.36 * rows + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), list(matrix.columns), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rows), list(matrix.index), fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    for i in range(rows):
        for j in range(cols):
            if values[i, j] >= 0.005:
                ax.text(j, i, f"{100 * values[i, j]:.0f}", ha="center", va="center", fontsize=6.5,
                        color="white" if values[i, j] > 0.55 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


def turnaround_figure(histogram: pd.DataFrame, percentiles: pd.DataFrame) -> Figure:
    """Histograms of log10(turnaround seconds), one panel per span, with p50/p90/p99 marked."""
    import math

    fig = _new_figure(12, 3.2)
    axes = fig.subplots(1, len(SPANS), sharey=False)
    for ax, (span, meaning) in zip(axes, SPANS.items(), strict=True):
        part = histogram[histogram["span"] == span]
        ax.bar(part["log10_low"], part["count"], width=HIST_DEX, align="edge", color="#4a6fa5", edgecolor="white")
        row = percentiles[percentiles["span"] == span]
        if not row.empty:
            for q, style in (("p50_s", "-"), ("p90_s", "--"), ("p99_s", ":")):
                value = row[q].iloc[0]
                if value is not None and value > 0:
                    ax.axvline(math.log10(value), color="#c0392b", linestyle=style, label=f"{q[:3]} {value:.3g} s")
            if ax.get_legend_handles_labels()[0]:  # a classifier with no points in range has no curve
                ax.legend(fontsize=7)
        if not part.empty:  # half a decade of margin, so one filled bin does not fill the panel
            ax.set_xlim(part["log10_low"].min() - 0.5, part["log10_high"].max() + 0.5)
        ax.set_title(f"{span}: {meaning}", fontsize=9)
        ax.set_xlabel("log10(seconds), 0.25 dex bins")
        ax.set_ylabel("messages")
    return fig


def versus_peak_figure(curve: pd.DataFrame) -> Figure:
    """Mean probability of the true class, and how often it is the top class, versus days from peak."""
    fig = _new_figure(7, 3.4)
    ax = fig.add_subplot()
    middle = (curve["days_low"] + curve["days_high"]) / 2
    ax.plot(middle, curve["mean_p_true"], marker="o", label="mean P(true class)")
    ax.plot(middle, curve["top_class_rate"], marker="s", label="true class is the top class")
    ax.set_xlim(-20, 90)
    ax.set_ylim(0, 1)
    ax.axvline(0, color="#888", linewidth=0.8)
    ax.set_xlabel("days from peak (alert MJD - peak MJD)")
    ax.set_ylabel("rate / probability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def class_metrics_figure(metrics: pd.DataFrame, title: str) -> Figure:
    """Completeness and purity per true class as paired horizontal bars, classes by name in taxonomy order."""
    import numpy as np

    shown = metrics[metrics["n_true"] > 0]  # a class only ever predicted has no completeness to draw
    names = list(shown["class_name"])
    fig = _new_figure(6.0, max(2.2, 0.32 * len(names) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y - 0.2, shown["completeness"].fillna(0.0), height=0.4, color="#4a6fa5", label="completeness")
    # Purity is undefined for a class never predicted: drawn as 0 (the table says "-").
    ax.barh(y + 0.2, shown["purity"].fillna(0.0), height=0.4, color="#e76f51", label="purity")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()  # taxonomy order reads top to bottom, like the heatmaps' rows
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers, big: what a reader looks at first."""
    cells = "".join(f"<div class='card'><div class='value'>{html.escape(value)}</div>"
                    f"<div class='label'>{html.escape(label)}</div></div>" for label, value in items)
    return f"<div class='cards'>{cells}</div>"


def _fmt(value: Any, pattern: str) -> str:
    return "-" if value is None or value != value else pattern.format(value)


def _table(frame: pd.DataFrame, columns: Sequence[str], formats: dict[str, str] | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for c in columns:
            value = getattr(row, c)
            text = "-" if value is None or value != value else formats.get(c, "{}").format(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class _Tables:
    """Every frame the report needs, queried once for all classifiers."""

    def __init__(self, scoring: Scoring, kinds: Sequence[str]) -> None:
        self.kinds = kinds
        self.classifiers = scoring.classifiers()
        self.confusion = {(k, lv): scoring.confusion(k, lv) for k in kinds for lv in LEVELS}
        self.class_metrics = {lv: scoring.class_metrics(kinds[0], lv) for lv in LEVELS}
        self.macro_f1 = {(k, lv): scoring.macro_f1(k, lv) for k in kinds for lv in LEVELS}
        self.log_loss = {(k, lv): scoring.log_loss(k, lv) for k in ("all", *kinds) for lv in LEVELS}
        self.turnaround = scoring.turnaround()
        self.histogram = scoring.turnaround_histogram()
        self.peak = scoring.versus_peak()
        self.stream = scoring.stream_completeness()


def _one(frame: pd.DataFrame, cid: int, column: str) -> Any:
    row = frame[frame["classifier_id"] == cid]
    return None if row.empty else row[column].iloc[0]


def _section(t: _Tables, row: Any, headline: dict[str, Any]) -> str:
    import pandas as pd

    cid = int(row.classifier_id)
    parts = [f"<h2 id='classifier-{cid}'>{html.escape(classifier_label(row))}</h2>"]
    parts.append(_cards([
        (f"top-1 accuracy ({t.kinds[0]}, leaf)", _fmt(headline["accuracy"], "{:.1%}")),
        (f"macro F1 ({t.kinds[0]}, leaf / category)",
         f"{_fmt(headline['macro_f1_leaf'], '{:.2f}')} / {_fmt(headline['macro_f1_category'], '{:.2f}')}"),
        ("log-loss (all messages)", _fmt(headline["log_loss"], "{:.2f}")),
        ("objects scored", _fmt(headline["objects"], "{:d}")),
        ("sent alerts answered", _fmt(headline["answered_share"], "{:.1%}")),
        ("turnaround p50 / p90 (total)",
         f"{_fmt(headline['p50_s'], '{:.3g}')} / {_fmt(headline['p90_s'], '{:.3g}')} s"),
    ]))
    stream = t.stream[t.stream["classifier_id"] == cid]
    parts.append("<h3>Stream completeness</h3>")
    parts.append(_table(stream, ["alerts_sent", "alerts_answered", "answered_share", "messages",
                                 "messages_per_alert", "duplicates", "unsolicited"],
                        {"answered_share": "{:.1%}", "messages_per_alert": "{:.3f}"}))
    def macro_f1(kind: str, level: str) -> Any:
        frame = t.macro_f1.get((kind, level))  # none for "all": F1 needs one classification per object
        return None if frame is None else _one(frame, cid, "macro_f1")

    summary = pd.DataFrame([
        {"selection": kind, "level": level, "macro_f1": macro_f1(kind, level),
         "log_loss": _one(t.log_loss[(kind, level)], cid, "log_loss")}
        for kind in ("all", *t.kinds) for level in LEVELS
    ])
    parts.append("<h3>Summary scores</h3>")
    parts.append(_table(summary, ["selection", "level", "macro_f1", "log_loss"],
                        {"macro_f1": "{:.3f}", "log_loss": "{:.3f}"}))
    parts.append("<h3>Confusion matrices (row-normalized, percent of the true class)</h3><div class='grid'>")
    for kind in t.kinds:
        for level in LEVELS:
            counts = t.confusion[(kind, level)]
            if counts[counts["classifier_id"] == cid].empty:
                parts.append(f"<p>{kind}, {level}: no objects</p>")
                continue
            matrix = confusion_matrix(counts, cid, normalize=True)
            objects = int(counts.loc[counts["classifier_id"] == cid, "count"].sum())
            caption = f"{kind} classification, {level} level ({objects} objects)"
            parts.append(_figure(caption, heatmap(matrix, caption)))
    parts.append("</div>")
    parts.append(f"<h3>Completeness and purity, {t.kinds[0]} classification</h3><div class='grid'>")
    tables = []
    for level in LEVELS:
        metrics = t.class_metrics[level]
        metrics = metrics[metrics["classifier_id"] == cid].assign(class_name=lambda f: f["class_id"].map(class_name))
        if (metrics["n_true"] > 0).any():
            caption = f"{level} level"
            parts.append(_figure(caption, class_metrics_figure(metrics, f"{t.kinds[0]} classification, {caption}")))
        # The numbers stay one click away: the bars are for looking, the table for quoting.
        tables.append(f"<details><summary>table: {level} level</summary>"
                      + _table(metrics, ["class_name", "n_true", "n_predicted", "true_positives", "completeness",
                                         "purity", "f1"],
                               {"completeness": "{:.3f}", "purity": "{:.3f}", "f1": "{:.3f}"}) + "</details>")
    parts.append("</div>" + "".join(tables))
    parts.append("<h3>Turnaround</h3>")
    turnaround = t.turnaround[t.turnaround["classifier_id"] == cid]
    parts.append(_table(turnaround, ["span", "n", "non_positive", "min_s", "p50_s", "p90_s", "p99_s", "max_s"],
                        {c: "{:.4g}" for c in ("min_s", "p50_s", "p90_s", "p99_s", "max_s")}))
    if not turnaround.empty:
        histogram = t.histogram[t.histogram["classifier_id"] == cid]
        parts.append(_figure("turnaround histograms", turnaround_figure(histogram, turnaround)))
    parts.append("<h3>Versus days from peak</h3>")
    curve = t.peak[t.peak["classifier_id"] == cid]
    if curve.empty:
        parts.append("<p>no classified alerts of objects with a peak time</p>")
    else:
        parts.append(_figure("all classifications, 5-day bins", versus_peak_figure(curve)))
    return "\n".join(parts)


def _headline(t: _Tables, cid: int) -> dict[str, Any]:
    """A classifier's headline numbers, from the frames already queried (nothing is recomputed here)."""
    metrics = t.class_metrics["leaf"]
    mine = metrics[metrics["classifier_id"] == cid]
    objects = int(mine["n_true"].sum())
    total = t.turnaround[(t.turnaround["classifier_id"] == cid) & (t.turnaround["span"] == "total")]
    return {
        # Every object is counted once as a true class, so TP over n_true summed is the top-1 accuracy.
        "accuracy": float(mine["true_positives"].sum()) / objects if objects else None,
        "objects": objects,
        "macro_f1_leaf": _one(t.macro_f1[(t.kinds[0], "leaf")], cid, "macro_f1"),
        "macro_f1_category": _one(t.macro_f1[(t.kinds[0], "category")], cid, "macro_f1"),
        "log_loss": _one(t.log_loss[("all", "leaf")], cid, "log_loss"),
        "answered_share": _one(t.stream, cid, "answered_share"),
        "p50_s": None if total.empty else total["p50_s"].iloc[0],
        "p90_s": None if total.empty else total["p90_s"].iloc[0],
    }


def _overview(t: _Tables, headlines: dict[int, dict[str, Any]]) -> str:
    """All classifiers side by side, each linked to its section: the page's first screen."""
    rows = []
    for row in t.classifiers.itertuples():
        cid = int(row.classifier_id)
        h = headlines[cid]
        cells = [f"<td><a href='#classifier-{cid}'>{html.escape(classifier_label(row))}</a></td>"]
        cells += [f"<td>{html.escape(text)}</td>" for text in (
            _fmt(h["objects"], "{:d}"), _fmt(h["accuracy"], "{:.1%}"), _fmt(h["macro_f1_leaf"], "{:.3f}"),
            _fmt(h["macro_f1_category"], "{:.3f}"), _fmt(h["log_loss"], "{:.3f}"),
            _fmt(h["answered_share"], "{:.1%}"), _fmt(h["p50_s"], "{:.3g}"), _fmt(h["p90_s"], "{:.3g}"))]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{c}</th>" for c in (
        "classifier", "objects", f"top-1 accuracy ({t.kinds[0]})", "macro F1 leaf", "macro F1 category",
        "log-loss (all)", "alerts answered", "total p50 s", "total p90 s"))
    return f"<nav><h2 style='border:0;margin-top:0.3em'>Overview</h2><table><tr>{head}</tr>{''.join(rows)}</table>" \
           "</nav>"


def build_report(scoring: Scoring, title: str = "alertmux report", nth: int = 3) -> str:
    """The report as one HTML document (plots embedded), a section per classifier.

    Args:
        scoring: the backend to query.
        title: the page title.
        nth: the detection count of the ``after<N>`` confusion matrix.
    """
    tables = _Tables(scoring, ("last", f"after{nth}", "best"))
    headlines = {int(row.classifier_id): _headline(tables, int(row.classifier_id))
                 for row in tables.classifiers.itertuples()}
    sections = [_section(tables, row, headlines[int(row.classifier_id)]) for row in tables.classifiers.itertuples()]
    if not sections:
        sections = ["<p>No scored classifications in this database.</p>"]
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='meta'>generated {generated}; {len(tables.classifiers)} classifier(s). Definitions: see the "
        "alertmux.scoring module documentation.</p>"
        + (_overview(tables, headlines) if headlines else "") + "\n".join(sections) + "</body></html>"
    )


def write_report(store_path: str | Path, out_path: str | Path, run_id: str | None = None) -> Path:
    """Score a store and write the HTML report.

    Args:
        store_path: the SQLite database (a path or ``sqlite:///path``).
        out_path: where to write the HTML file.
        run_id: report on this harness run only; None reports on the whole database.

    Returns:
        The report's path.
    """
    scoring = open_scoring(store_path, run_id)
    try:
        text = build_report(scoring, title=f"alertmux report: {Path(str(store_path)).name}")
    finally:
        scoring.conn.close()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
