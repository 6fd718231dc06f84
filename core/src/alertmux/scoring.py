"""Scoring: what the DESC TOM computed for ELAsTiCC, as SQL aggregates in the database, returned as pandas frames.

Every metric is one query run by the database, so the same work scales from a demo's SQLite file to 10^8
classification rows on PostgreSQL: a backend implements the :class:`Scoring` protocol with its own SQL
(:class:`SqliteScoring` is the embedded one), and the helpers below (matrix layout, export) work on any backend.

Definitions (ELAsTiCC broker messages carry no diaObjectId: a message reaches its object through the alert it
answered, ``messages.alert_id -> alerts``; messages without an alert id or without a top class are not scored):

- Selections, one classification per (classifier, object):
  ``last``: the message answering the object's latest alert (by alert MJD, then alert id), as DESC's
  ``gen_confmatrix_last.py``. ``after<N>`` (``after3``): the message answering the alert with exactly N detections
  (``alerts.n_detections == N``), as DESC's ELAsTiCC1 ``nth`` definition; objects with fewer than N detections
  are left out rather than scored on an earlier alert. ``best``: the message with the highest top probability
  over all the object's messages (ties: the later alert). ``all``: every message (for log-loss and curves).
- Predicted class: the message's top class (``top_class_id``, the most probable class with kind probability).
- Levels: ``leaf`` uses class ids as they are; ``category`` rolls true and predicted classes up to the ELAsTiCC2
  categories (SN-like, Fast, Long, Periodic, Non-Periodic) with :meth:`Taxonomy.category`, so a classifier
  answering with parent codes (Fink's CATS: 2220 SN-like...) is scored fairly. Classes above or outside the
  categories (Meta/Residual, Static, ``*/Other`` above the categories) stay as they are.
- Completeness (recall) = TP / true count, purity (precision) = TP / predicted count, F1 their harmonic mean;
  macro F1 averages F1 over the classes that occur as true classes (a class only ever predicted adds nothing).
- Log-loss: mean of ``-ln(max(p_true, 1e-15))``, p_true the summed probability the message gave the true class
  (at category level: to any class in the true category), read from the packed arrays with ``json_each``.
- Turnaround, per message, as DESC's ``gen_elasticc2_brokerdelaygraphs_pg.py``: ``broker`` = broker publish -
  alert sent, ``ingest`` = harness ingest - broker publish, ``total`` = harness ingest - alert sent (sent = first
  Kafka acknowledgement of the alert on any topic). Percentiles use the nearest-rank method. Histograms count
  log10(seconds) in bins of 0.25 dex as DESC did; DESC clipped to [1 s, 10^6 s], we clip to [1 ms, 10^6 s]
  because a local harness answers in milliseconds (DESC's bins are the ones with ``log10_low >= 0``).
- Versus peak: every scored message with the object's peak time, binned by days from peak (alert MJD - peak
  MJD) in [-20, 90) in 5-day bins: mean probability of the true class and the rate at which it is the top class.
- Stream completeness: per classifier, the share of sent alerts it answered, messages per answered alert, and
  duplicate and unsolicited (not a sent alert) messages.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from alertmux.errors import UsageError
from alertmux.taxonomy import ELASTICC2, taxonomy

if TYPE_CHECKING:
    import pandas as pd

    from alertmux.scoring_pg import PostgresScoring

Level = Literal["leaf", "category"]
LEVELS: tuple[Level, ...] = ("leaf", "category")
MATRIX_KINDS = ("last", "after3", "best")
"""The confusion matrices ``alertmux score`` exports (``confusion-<kind>-<classifier>.csv``)."""
SPANS = {
    "broker": "alert sent -> broker publish",
    "ingest": "broker publish -> harness ingest",
    "total": "alert sent -> harness ingest",
}
"""Turnaround spans and what they measure."""
LOG_LOSS_FLOOR = 1e-15
HIST_DEX = 0.25
HIST_RANGE_S = (1e-3, 1e6)
PEAK_RANGE_DAYS = (-20.0, 90.0)
PEAK_BIN_DAYS = 5.0


@dataclass(frozen=True, slots=True)
class Selection:
    """Which classification of each object is scored: ``last``, ``best``, ``all`` or ``after<N>``."""

    name: str
    nth: int | None = None

    @classmethod
    def parse(cls, kind: str) -> Selection:
        """Parse ``last``, ``best``, ``all`` or ``after<N>`` (e.g. ``after3``).

        Raises:
            UsageError: Unknown kind.
        """
        if kind in ("last", "best", "all"):
            return cls(kind)
        match = re.fullmatch(r"after(\d+)", kind)
        if match and int(match.group(1)) >= 1:
            return cls(kind, int(match.group(1)))
        raise UsageError(f"unknown selection {kind!r}: use last, best, all or after<N> (e.g. after3)")


class Scoring(Protocol):
    """The metrics a database backend computes; every method returns a long-form pandas DataFrame.

    Frames are keyed by ``classifier_id`` (see :meth:`classifiers`); class columns hold ELAsTiCC2 class ids.
    """

    def classifiers(self) -> pd.DataFrame:
        """Classifiers with messages.

        Columns: classifier_id, broker, broker_name, broker_version, classifier_name, classifier_params.
        """
        ...

    def confusion(self, kind: str = "last", level: Level = "leaf", min_detections: int = 0) -> pd.DataFrame:
        """Confusion counts: classifier_id, true_class, predicted_class, count.

        Args:
            kind: ``last``, ``best``, ``all`` or ``after<N>``.
            level: ``leaf`` or ``category``.
            min_detections: only objects with at least this many detections among their alerts.
        """
        ...

    def class_metrics(self, kind: str = "last", level: Level = "leaf") -> pd.DataFrame:
        """Per class: classifier_id, class_id, n_true, n_predicted, true_positives, completeness, purity, f1."""
        ...

    def macro_f1(self, kind: str = "last", level: Level = "leaf") -> pd.DataFrame:
        """classifier_id, classes (true classes averaged over), macro_f1."""
        ...

    def log_loss(self, kind: str = "all", level: Level = "leaf") -> pd.DataFrame:
        """classifier_id, messages, log_loss (natural log, probabilities clipped at 1e-15)."""
        ...

    def turnaround(self) -> pd.DataFrame:
        """classifier_id, span, n, non_positive, min_s, p50_s, p90_s, p99_s, max_s."""
        ...

    def turnaround_histogram(self) -> pd.DataFrame:
        """classifier_id, span, log10_low, log10_high, count (0.25 dex bins)."""
        ...

    def versus_peak(self) -> pd.DataFrame:
        """classifier_id, days_low, days_high, messages, mean_p_true, top_class_rate."""
        ...

    def stream_completeness(self) -> pd.DataFrame:
        """The share of sent alerts each classifier answered, and its messages per answered alert.

        Columns: classifier_id, alerts_sent, alerts_answered, answered_share, messages, messages_per_alert,
        duplicates (messages beyond one per classifier and alert), unsolicited (messages for no sent alert).
        """
        ...


def _category_values() -> str:
    tax = taxonomy(ELASTICC2)
    pairs = [(c.code, tax.category(c.code)) for c in tax]
    return ", ".join(f"({code}, {cat})" for code, cat in pairs if cat is not None)


# Common table expressions every query starts from. :run_id NULL means every run in the database.
_BASE_CTES = f"""
msg AS NOT MATERIALIZED (SELECT * FROM messages WHERE :run_id IS NULL OR run_id = :run_id),
sent AS (SELECT alert_id, MIN(sent_ms) AS sent_ms FROM alerts_sent
         WHERE :run_id IS NULL OR run_id = :run_id GROUP BY alert_id),
cat(class_id, category) AS (VALUES {_category_values()}),
scored AS (
    SELECT m.message_id, m.classifier_id, a.alert_id, a.dia_object_id, a.mjd, a.n_detections, t.peak_mjd,
           m.top_probability,
           t.class_id AS true_leaf, m.top_class_id AS predicted_leaf,
           COALESCE(tc.category, t.class_id) AS true_category,
           COALESCE(pc.category, m.top_class_id) AS predicted_category
    FROM msg m
    JOIN alerts a ON a.alert_id = m.alert_id
    JOIN truth t ON t.dia_object_id = a.dia_object_id
    LEFT JOIN cat tc ON tc.class_id = t.class_id
    LEFT JOIN cat pc ON pc.class_id = m.top_class_id
    WHERE m.top_class_id IS NOT NULL)"""

_RANK_ORDER = {"last": "mjd DESC, alert_id DESC", "best": "top_probability DESC, mjd DESC, alert_id DESC"}

# Probability given to the true class (or to its category) by each picked message, read from the packed JSON
# arrays: the sum over the entries whose class matches and whose kind is probability (0 when none does).
_P_TRUE = """
p_true AS (
    SELECT p.classifier_id, p.message_id, p.true_class, p.predicted, COALESCE((
        SELECT SUM(CAST(json_extract(m.probabilities, '$[' || ids.key || ']') AS REAL))
        FROM json_each(m.class_ids) ids LEFT JOIN cat ic ON ic.class_id = ids.value
        WHERE {class_expr} = p.true_class
          AND (m.kinds IS NULL OR json_extract(m.kinds, '$[' || ids.key || ']') = 'probability')), 0) AS p
    FROM picked p JOIN messages m ON m.message_id = p.message_id)"""

_CONFUSION = """
SELECT classifier_id, true_class, predicted AS predicted_class, COUNT(*) AS count
FROM picked GROUP BY classifier_id, true_class, predicted ORDER BY classifier_id, true_class, predicted"""

_CLASS_COUNTS = """
class_counts AS (
    SELECT classifier_id, class_id, SUM(n_true) AS n_true, SUM(n_predicted) AS n_predicted,
           SUM(tp) AS true_positives
    FROM (SELECT classifier_id, true_class AS class_id, COUNT(*) AS n_true, 0 AS n_predicted,
                 SUM(CASE WHEN true_class = predicted THEN 1 ELSE 0 END) AS tp
          FROM picked GROUP BY classifier_id, true_class
          UNION ALL
          SELECT classifier_id, predicted, 0, COUNT(*), 0 FROM picked GROUP BY classifier_id, predicted) AS parts
    GROUP BY classifier_id, class_id)"""

_CLASS_METRICS = """
SELECT classifier_id, class_id, n_true, n_predicted, true_positives,
       CAST(true_positives AS REAL) / NULLIF(n_true, 0) AS completeness,
       CAST(true_positives AS REAL) / NULLIF(n_predicted, 0) AS purity,
       2.0 * true_positives / NULLIF(n_true + n_predicted, 0) AS f1
FROM class_counts ORDER BY classifier_id, class_id"""

_MACRO_F1 = """
SELECT classifier_id, COUNT(*) AS classes, AVG(2.0 * true_positives / (n_true + n_predicted)) AS macro_f1
FROM class_counts WHERE n_true > 0 GROUP BY classifier_id ORDER BY classifier_id"""

_LOG_LOSS = """
SELECT classifier_id, COUNT(*) AS messages, AVG(-ln(MAX(MIN(p, 1.0), :floor))) AS log_loss
FROM p_true GROUP BY classifier_id ORDER BY classifier_id"""

_SPANS = """
spans AS (
    SELECT m.classifier_id, 'broker' AS span, (m.broker_publish_ms - s.sent_ms) / 1000.0 AS seconds
    FROM msg m JOIN sent s ON s.alert_id = m.alert_id WHERE m.broker_publish_ms IS NOT NULL
    UNION ALL
    SELECT m.classifier_id, 'ingest', (m.ingested_ms - m.broker_publish_ms) / 1000.0
    FROM msg m JOIN sent s ON s.alert_id = m.alert_id WHERE m.broker_publish_ms IS NOT NULL
    UNION ALL
    SELECT m.classifier_id, 'total', (m.ingested_ms - s.sent_ms) / 1000.0
    FROM msg m JOIN sent s ON s.alert_id = m.alert_id)"""

# Nearest rank: the q-quantile is the smallest value whose rank r (1-based) satisfies r >= q * n.
_TURNAROUND = """
SELECT classifier_id, span, MAX(n) AS n, SUM(CASE WHEN seconds <= 0 THEN 1 ELSE 0 END) AS non_positive,
       MIN(seconds) AS min_s,
       MIN(CASE WHEN r >= 0.50 * n THEN seconds END) AS p50_s,
       MIN(CASE WHEN r >= 0.90 * n THEN seconds END) AS p90_s,
       MIN(CASE WHEN r >= 0.99 * n THEN seconds END) AS p99_s,
       MAX(seconds) AS max_s
FROM (SELECT classifier_id, span, seconds,
             ROW_NUMBER() OVER (PARTITION BY classifier_id, span ORDER BY seconds) AS r,
             COUNT(*) OVER (PARTITION BY classifier_id, span) AS n
      FROM spans) AS ranked
GROUP BY classifier_id, span ORDER BY classifier_id, span"""

_TURNAROUND_HISTOGRAM = """
SELECT classifier_id, span, bin * :dex AS log10_low, (bin + 1) * :dex AS log10_high, COUNT(*) AS count
FROM (SELECT classifier_id, span,
             MIN(CAST(floor(log10(MIN(MAX(seconds, :lo), :hi)) / :dex) AS INTEGER), :top_bin) AS bin
      FROM spans) AS binned
GROUP BY classifier_id, span, bin ORDER BY classifier_id, span, bin"""

_VERSUS_PEAK = """
SELECT classifier_id, :days_lo + bin * :width AS days_low, :days_lo + (bin + 1) * :width AS days_high,
       COUNT(*) AS messages, AVG(p) AS mean_p_true,
       AVG(CASE WHEN predicted = true_class THEN 1.0 ELSE 0.0 END) AS top_class_rate
FROM (SELECT q.classifier_id, q.p, q.predicted, q.true_class,
             CAST(floor((s.mjd - s.peak_mjd - :days_lo) / :width) AS INTEGER) AS bin
      FROM p_true q JOIN scored s ON s.message_id = q.message_id
      WHERE s.peak_mjd IS NOT NULL AND s.mjd - s.peak_mjd >= :days_lo AND s.mjd - s.peak_mjd < :days_hi) AS binned
GROUP BY classifier_id, bin ORDER BY classifier_id, bin"""

_STREAM_COMPLETENESS = """
SELECT c.classifier_id, (SELECT COUNT(*) FROM sent) AS alerts_sent,
       COUNT(DISTINCT s.alert_id) AS alerts_answered,
       CAST(COUNT(DISTINCT s.alert_id) AS REAL) / NULLIF((SELECT COUNT(*) FROM sent), 0) AS answered_share,
       COUNT(s.alert_id) AS messages,
       CAST(COUNT(s.alert_id) AS REAL) / NULLIF(COUNT(DISTINCT s.alert_id), 0) AS messages_per_alert,
       COUNT(s.alert_id) - COUNT(DISTINCT s.alert_id) AS duplicates,
       SUM(CASE WHEN s.alert_id IS NULL THEN 1 ELSE 0 END) AS unsolicited
FROM msg m JOIN (SELECT DISTINCT classifier_id FROM msg) c ON c.classifier_id = m.classifier_id
LEFT JOIN sent s ON s.alert_id = m.alert_id
GROUP BY c.classifier_id ORDER BY c.classifier_id"""

_CLASSIFIERS = """
SELECT classifier_id, broker, broker_name, broker_version, classifier_name, classifier_params
FROM classifiers WHERE classifier_id IN (SELECT classifier_id FROM msg) ORDER BY classifier_id"""


class _SqlScoring:
    """The :class:`Scoring` methods, written once: a backend gives its SQL dialect's texts and ``_query``."""

    classifiers_sql: str
    confusion_sql: str
    class_metrics_sql: str
    class_counts_sql: str
    macro_f1_sql: str
    log_loss_sql: str
    turnaround_sql: str
    spans_sql: str
    turnaround_histogram_sql: str
    versus_peak_sql: str
    stream_completeness_sql: str

    def _query(self, sql: str, ctes: Sequence[str] = (), **params: Any) -> pd.DataFrame:
        raise NotImplementedError

    def _picked(self, kind: str, level: Level, min_detections: int = 0) -> str:
        raise NotImplementedError

    def _p_true(self, level: Level) -> str:
        raise NotImplementedError

    def classifiers(self) -> pd.DataFrame:  # noqa: D102
        return self._query(self.classifiers_sql)

    def confusion(self, kind: str = "last", level: Level = "leaf", min_detections: int = 0) -> pd.DataFrame:  # noqa: D102
        return self._query(self.confusion_sql, [self._picked(kind, level, min_detections)])

    def class_metrics(self, kind: str = "last", level: Level = "leaf") -> pd.DataFrame:  # noqa: D102
        return self._query(self.class_metrics_sql, [self._picked(kind, level), self.class_counts_sql])

    def macro_f1(self, kind: str = "last", level: Level = "leaf") -> pd.DataFrame:  # noqa: D102
        return self._query(self.macro_f1_sql, [self._picked(kind, level), self.class_counts_sql])

    def log_loss(self, kind: str = "all", level: Level = "leaf") -> pd.DataFrame:  # noqa: D102
        return self._query(self.log_loss_sql, [self._picked(kind, level), self._p_true(level)], floor=LOG_LOSS_FLOOR)

    def turnaround(self) -> pd.DataFrame:  # noqa: D102
        return self._query(self.turnaround_sql, [self.spans_sql])

    def turnaround_histogram(self) -> pd.DataFrame:  # noqa: D102
        lo, hi = HIST_RANGE_S
        top_bin = math.ceil(math.log10(hi) / HIST_DEX) - 1
        return self._query(self.turnaround_histogram_sql, [self.spans_sql], dex=HIST_DEX, lo=lo, hi=hi, top_bin=top_bin)

    def versus_peak(self) -> pd.DataFrame:  # noqa: D102
        days_lo, days_hi = PEAK_RANGE_DAYS
        return self._query(
            self.versus_peak_sql, [self._picked("all", "leaf"), self._p_true("leaf")],
            days_lo=days_lo, days_hi=days_hi, width=PEAK_BIN_DAYS,
        )

    def stream_completeness(self) -> pd.DataFrame:  # noqa: D102
        return self._query(self.stream_completeness_sql)


class SqliteScoring(_SqlScoring):
    """The :class:`Scoring` metrics in SQLite SQL (3.35+: window functions, math functions, json_each)."""

    classifiers_sql = _CLASSIFIERS
    confusion_sql = _CONFUSION
    class_metrics_sql = _CLASS_METRICS
    class_counts_sql = _CLASS_COUNTS
    macro_f1_sql = _MACRO_F1
    log_loss_sql = _LOG_LOSS
    turnaround_sql = _TURNAROUND
    spans_sql = _SPANS
    turnaround_histogram_sql = _TURNAROUND_HISTOGRAM
    versus_peak_sql = _VERSUS_PEAK
    stream_completeness_sql = _STREAM_COMPLETENESS

    def __init__(self, conn: sqlite3.Connection, run_id: str | None = None) -> None:
        """Score the database behind ``conn``.

        Args:
            conn: an open connection to an alertmux store.
            run_id: score only this harness run (messages and sent alerts of it); None scores everything.
        """
        self.conn = conn
        self.run_id = run_id
        _ensure_math_functions(conn)

    def classification_chunks(self, chunk_rows: int = 200_000) -> Iterator[pd.DataFrame]:
        """The raw classifications (the ``classifications`` view, one row per class), in frames of ``chunk_rows``."""
        import pandas as pd

        yield from pd.read_sql_query(_RAW_CLASSIFICATIONS, self.conn, params={"run_id": self.run_id},
                                     chunksize=chunk_rows)

    def _query(self, sql: str, ctes: Sequence[str] = (), **params: Any) -> pd.DataFrame:
        import pandas as pd

        text = "WITH " + ",\n".join((_BASE_CTES, *ctes)) + "\n" + sql
        return pd.read_sql_query(text, self.conn, params={"run_id": self.run_id, **params})

    @staticmethod
    def _picked(kind: str, level: Level, min_detections: int = 0) -> str:
        """CTE ``picked(classifier_id, dia_object_id, message_id, true_class, predicted)``: the selection."""
        if level not in LEVELS:
            raise UsageError(f"unknown level {level!r}: use leaf or category")
        selection = Selection.parse(kind)
        columns = (f"classifier_id, dia_object_id, message_id, true_{level} AS true_class,"
                   f" predicted_{level} AS predicted")
        where = ["1 = 1"]
        if selection.nth is not None:
            where.append(f"n_detections = {selection.nth:d}")
        if min_detections:
            where.append(
                "dia_object_id IN (SELECT dia_object_id FROM alerts GROUP BY dia_object_id"
                f" HAVING MAX(n_detections) >= {int(min_detections):d})"
            )
        condition = " AND ".join(where)
        if selection.name == "all":
            return f"picked AS (SELECT {columns} FROM scored WHERE {condition})"
        order = _RANK_ORDER.get(selection.name, _RANK_ORDER["last"])
        return f"""picked AS (
    SELECT {columns} FROM (
        SELECT s.*, ROW_NUMBER() OVER (PARTITION BY classifier_id, dia_object_id ORDER BY {order}) AS pick
        FROM scored s WHERE {condition}) AS ranked
    WHERE pick = 1)"""

    @staticmethod
    def _p_true(level: Level) -> str:
        return _P_TRUE.format(class_expr="ids.value" if level == "leaf" else "COALESCE(ic.category, ids.value)")

def _ensure_math_functions(conn: sqlite3.Connection) -> None:
    """Register ln/log10/floor when this SQLite was built without its math functions (before 3.35 or disabled)."""
    try:
        conn.execute("SELECT ln(1), log10(1), floor(1.5)").fetchone()
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)
        conn.create_function("log10", 1, math.log10, deterministic=True)
        conn.create_function("floor", 1, math.floor, deterministic=True)


def open_scoring(db: str | Path, run_id: str | None = None) -> SqliteScoring | PostgresScoring:
    """Open the scoring of an existing store (a path, ``sqlite:///path`` or ``postgresql://...``).

    Raises:
        UsageError: The database does not exist (or cannot be reached).
    """
    text = str(db)
    if text.startswith(("postgresql:/", "postgres:/")):
        from alertmux.scoring_pg import open_postgres_scoring
        from alertmux.store_pg import restore_url

        return open_postgres_scoring(restore_url(text), run_id)
    path = Path(text.removeprefix("sqlite:///"))
    if not path.is_file():
        raise UsageError(f"no database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    return SqliteScoring(conn, run_id)


# -- layout helpers (backend-independent) ---------------------------------------------------------------------------
def class_name(code: Any) -> str:
    """The ELAsTiCC2 name of a class id (the id itself, as text, when it is not an ELAsTiCC2 class)."""
    tax = taxonomy(ELASTICC2)
    try:
        return tax.name(int(code))
    except (KeyError, TypeError, ValueError):
        return str(code)


def _tree_order(codes: Any) -> list[int]:
    order = {c.code: i for i, c in enumerate(taxonomy(ELASTICC2))}
    return sorted({int(c) for c in codes}, key=lambda c: (order.get(c, len(order)), c))


def confusion_matrix(counts: pd.DataFrame, classifier_id: int, normalize: bool = False) -> pd.DataFrame:
    """One classifier's confusion matrix, wide: rows true classes, columns predicted classes, by ELAsTiCC2 name.

    Args:
        counts: a frame from :meth:`Scoring.confusion`.
        classifier_id: which classifier.
        normalize: divide each row by its total (P(predicted | true)); otherwise counts.

    Returns:
        A frame indexed by ``true_class`` names, classes in taxonomy order: a row per true class that occurs, a
        column per class that occurs as true or predicted class (so the diagonal is always there).
    """
    mine = counts[counts["classifier_id"] == classifier_id]
    wide = mine.pivot_table(index="true_class", columns="predicted_class", values="count", aggfunc="sum",
                            fill_value=0)
    columns = _tree_order([*wide.index, *wide.columns])
    wide = wide.reindex(index=_tree_order(wide.index), columns=columns, fill_value=0)
    if normalize:
        wide = wide.div(wide.sum(axis=1), axis=0)
    wide.index = [class_name(c) for c in wide.index]
    wide.columns = [class_name(c) for c in wide.columns]
    wide.index.name = "true_class"
    return wide.astype(float) if normalize else wide.astype(int)


def classifier_slugs(classifiers: pd.DataFrame) -> dict[int, str]:
    """File-name labels of classifiers: ``<brokerName>_<classifierName>`` made file-safe, made unique by id.

    Returns:
        classifier_id -> slug.
    """
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.+_]+", "-", text).strip("-") or "classifier"

    base = {int(r.classifier_id): slug(f"{r.broker_name}_{r.classifier_name}") for r in classifiers.itertuples()}
    taken = list(base.values())
    return {cid: s if taken.count(s) == 1 else f"{s}-{cid}" for cid, s in base.items()}


def classifier_label(row: Any) -> str:
    """A human label for a classifier row: broker plugin, DESC's four-part identity."""
    return f"{row.broker}: {row.broker_name} {row.broker_version} / {row.classifier_name} ({row.classifier_params})"


def export_scores(scoring: Scoring, out: Path, nth: int = 3) -> list[Path]:
    """Write every metric to ``out`` as CSV and JSON files with fixed names, plus ``scores.json`` with all of them.

    Files: ``confusion-<kind>-<classifier>.csv`` (kind ``last``, ``after<nth>``, ``best``; leaf classes; counts)
    and ``confusion-category-<kind>-<classifier>.csv`` (rolled up to the categories); one file per other metric,
    each as ``.csv`` and as ``.json`` (a list of records, the CSV's rows): ``classifiers``, ``class-metrics``,
    ``macro-f1``, ``log-loss``, ``turnaround``, ``turnaround-histogram``, ``versus-peak``,
    ``stream-completeness``. ``scores.json`` holds every table and every confusion matrix in one document.

    Returns:
        The files written.
    """
    out.mkdir(parents=True, exist_ok=True)
    kinds = ("last", f"after{nth}", "best")
    classifiers = scoring.classifiers()
    slugs = classifier_slugs(classifiers)
    written: list[Path] = []
    document: dict[str, Any] = {"kinds": list(kinds), "confusion": {}}

    def write(name: str, frame: pd.DataFrame, index: bool = False) -> None:
        path = out / name
        frame.to_csv(path, index=index)
        written.append(path)

    for level in LEVELS:
        prefix = "confusion" if level == "leaf" else "confusion-category"
        for kind in kinds:
            counts = scoring.confusion(kind, level)
            for cid, slug in slugs.items():
                matrix = confusion_matrix(counts, cid)
                write(f"{prefix}-{kind}-{slug}.csv", matrix, index=True)
                document["confusion"][f"{prefix}-{kind}-{slug}"] = {
                    "true_classes": list(matrix.index), "predicted_classes": list(matrix.columns),
                    "counts": matrix.to_numpy().tolist(),
                }
    tables = {
        "classifiers": classifiers.assign(slug=classifiers["classifier_id"].map(slugs)),
        "class-metrics": _by_selection(lambda k, lv: scoring.class_metrics(k, lv), kinds),
        "macro-f1": _by_selection(lambda k, lv: scoring.macro_f1(k, lv), kinds),
        "log-loss": _by_selection(lambda k, lv: scoring.log_loss(k, lv), ("all", *kinds)),
        "turnaround": scoring.turnaround(),
        "turnaround-histogram": scoring.turnaround_histogram(),
        "versus-peak": scoring.versus_peak(),
        "stream-completeness": scoring.stream_completeness(),
    }
    for name, frame in tables.items():
        if "class_id" in frame:
            frame = frame.assign(class_name=frame["class_id"].map(class_name))
        write(f"{name}.csv", frame)
        records = json.loads(frame.to_json(orient="records"))  # via pandas: NaN -> null, numpy -> JSON numbers
        document[name] = records
        path = out / f"{name}.json"
        path.write_text(json.dumps(records, indent=1))
        written.append(path)
    path = out / "scores.json"
    path.write_text(json.dumps(document, indent=1))
    written.append(path)
    return written


def _by_selection(metric: Any, kinds: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    frames = [metric(kind, level).assign(kind=kind, level=level) for kind in kinds for level in LEVELS]
    return pd.concat(frames, ignore_index=True)


_RAW_CLASSIFICATIONS = """
SELECT * FROM classifications
WHERE :run_id IS NULL OR message_id IN (SELECT message_id FROM messages WHERE run_id = :run_id)
ORDER BY message_id"""


def export_classifications(db: str | Path, out: Path, run_id: str | None = None, chunk_rows: int = 200_000) -> int:
    """Write the raw classifications (the ``classifications`` view, one row per class) to CSV or Parquet.

    Rows are streamed in chunks, so the export never holds the table in memory. Parquet needs pyarrow.

    Returns:
        The number of rows written.

    Raises:
        UsageError: Parquet asked for without pyarrow installed.
    """
    writer: Any = None
    if out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError("Parquet export needs pyarrow: pip install pyarrow (or export to .csv)") from None
    scoring = open_scoring(db, run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    try:
        for i, chunk in enumerate(scoring.classification_chunks(chunk_rows)):
            if out.suffix == ".parquet":
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                writer = writer or pq.ParquetWriter(out, table.schema)
                writer.write_table(table)
            else:
                chunk.to_csv(out, mode="w" if i == 0 else "a", header=i == 0, index=False)
            rows += len(chunk)
        if rows == 0 and out.suffix == ".csv":
            out.write_text("")
    finally:
        if writer is not None:
            writer.close()
        scoring.conn.close()
    return rows
