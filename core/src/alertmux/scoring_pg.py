"""The :class:`~alertmux.scoring.Scoring` metrics in PostgreSQL SQL, for stores opened with a ``postgresql://`` URL.

Same definitions, method names, columns and nearest-rank percentiles as :class:`~alertmux.scoring.SqliteScoring`
(see the module docstring of :mod:`alertmux.scoring`); only the SQL differs: the packed classes are
``smallint[]``/``real[]`` arrays read with ``unnest ... WITH ORDINALITY`` instead of ``json_each``, and every
ratio is cast to ``float8`` so the frames carry floats, as SQLite's do. All the work runs in the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from alertmux.errors import UsageError
from alertmux.scoring import (
    LEVELS,
    Level,
    Selection,
    _category_values,
    _SqlScoring,
)
from alertmux.store_pg import redact_url

if TYPE_CHECKING:
    import pandas as pd

_BASE_CTES = f"""
msg AS NOT MATERIALIZED (SELECT * FROM messages WHERE %(run_id)s::text IS NULL OR run_id = %(run_id)s),
sent AS (SELECT alert_id, MIN(sent_ms) AS sent_ms FROM alerts_sent
         WHERE %(run_id)s::text IS NULL OR run_id = %(run_id)s GROUP BY alert_id),
cat(class_id, category) AS (VALUES {_category_values()}),
scored AS (
    SELECT m.message_id, m.classifier_id, a.alert_id, a.dia_object_id, a.mjd, a.n_detections, t.peak_mjd,
           m.top_probability,
           t.class_id AS true_leaf, m.top_class_id::integer AS predicted_leaf,
           COALESCE(tc.category, t.class_id) AS true_category,
           COALESCE(pc.category, m.top_class_id) AS predicted_category
    FROM msg m
    JOIN alerts a ON a.alert_id = m.alert_id
    JOIN truth t ON t.dia_object_id = a.dia_object_id
    LEFT JOIN cat tc ON tc.class_id = t.class_id
    LEFT JOIN cat pc ON pc.class_id = m.top_class_id
    WHERE m.top_class_id IS NOT NULL)"""

_RANK_ORDER = {"last": "mjd DESC, alert_id DESC", "best": "top_probability DESC, mjd DESC, alert_id DESC"}

_P_TRUE = """
p_true AS (
    SELECT p.classifier_id, p.message_id, p.true_class, p.predicted, COALESCE((
        SELECT SUM(u.p::float8)
        FROM unnest(m.class_ids, m.probabilities) WITH ORDINALITY AS u(class_id, p, i)
        LEFT JOIN cat ic ON ic.class_id = u.class_id
        WHERE {class_expr} = p.true_class
          AND (m.kinds IS NULL OR m.kinds[u.i] = 'probability')), 0) AS p
    FROM picked p JOIN messages m ON m.message_id = p.message_id)"""

_CONFUSION = """
SELECT classifier_id, true_class, predicted AS predicted_class, COUNT(*) AS count
FROM picked GROUP BY classifier_id, true_class, predicted ORDER BY classifier_id, true_class, predicted"""

_CLASS_COUNTS = """
class_counts AS (
    SELECT classifier_id, class_id, SUM(n_true)::bigint AS n_true, SUM(n_predicted)::bigint AS n_predicted,
           SUM(tp)::bigint AS true_positives
    FROM (SELECT classifier_id, true_class AS class_id, COUNT(*) AS n_true, 0 AS n_predicted,
                 SUM(CASE WHEN true_class = predicted THEN 1 ELSE 0 END) AS tp
          FROM picked GROUP BY classifier_id, true_class
          UNION ALL
          SELECT classifier_id, predicted, 0, COUNT(*), 0 FROM picked GROUP BY classifier_id, predicted) AS parts
    GROUP BY classifier_id, class_id)"""

_CLASS_METRICS = """
SELECT classifier_id, class_id, n_true, n_predicted, true_positives,
       true_positives::float8 / NULLIF(n_true, 0) AS completeness,
       true_positives::float8 / NULLIF(n_predicted, 0) AS purity,
       2.0::float8 * true_positives / NULLIF(n_true + n_predicted, 0) AS f1
FROM class_counts ORDER BY classifier_id, class_id"""

_MACRO_F1 = """
SELECT classifier_id, COUNT(*) AS classes, AVG(2.0::float8 * true_positives / (n_true + n_predicted)) AS macro_f1
FROM class_counts WHERE n_true > 0 GROUP BY classifier_id ORDER BY classifier_id"""

_LOG_LOSS = """
SELECT classifier_id, COUNT(*) AS messages, AVG(-ln(GREATEST(LEAST(p, 1.0::float8), %(floor)s::float8))) AS log_loss
FROM p_true GROUP BY classifier_id ORDER BY classifier_id"""

_SPANS = """
spans AS (
    SELECT m.classifier_id, 'broker' AS span, (m.broker_publish_ms - s.sent_ms) / 1000.0::float8 AS seconds
    FROM msg m JOIN sent s ON s.alert_id = m.alert_id WHERE m.broker_publish_ms IS NOT NULL
    UNION ALL
    SELECT m.classifier_id, 'ingest', (m.ingested_ms - m.broker_publish_ms) / 1000.0::float8
    FROM msg m JOIN sent s ON s.alert_id = m.alert_id WHERE m.broker_publish_ms IS NOT NULL
    UNION ALL
    SELECT m.classifier_id, 'total', (m.ingested_ms - s.sent_ms) / 1000.0::float8
    FROM msg m JOIN sent s ON s.alert_id = m.alert_id)"""

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
SELECT classifier_id, span, bin * %(dex)s::float8 AS log10_low, (bin + 1) * %(dex)s::float8 AS log10_high,
       COUNT(*) AS count
FROM (SELECT classifier_id, span,
             LEAST(floor(log(LEAST(GREATEST(seconds, %(lo)s::float8), %(hi)s::float8)) / %(dex)s::float8)::integer,
                   %(top_bin)s::integer) AS bin
      FROM spans) AS binned
GROUP BY classifier_id, span, bin ORDER BY classifier_id, span, bin"""

_VERSUS_PEAK = """
SELECT classifier_id, %(days_lo)s::float8 + bin * %(width)s::float8 AS days_low,
       %(days_lo)s::float8 + (bin + 1) * %(width)s::float8 AS days_high,
       COUNT(*) AS messages, AVG(p) AS mean_p_true,
       AVG(CASE WHEN predicted = true_class THEN 1.0::float8 ELSE 0.0::float8 END) AS top_class_rate
FROM (SELECT q.classifier_id, q.p, q.predicted, q.true_class,
             floor((s.mjd - s.peak_mjd - %(days_lo)s::float8) / %(width)s::float8)::integer AS bin
      FROM p_true q JOIN scored s ON s.message_id = q.message_id
      WHERE s.peak_mjd IS NOT NULL AND s.mjd - s.peak_mjd >= %(days_lo)s::float8
        AND s.mjd - s.peak_mjd < %(days_hi)s::float8) AS binned
GROUP BY classifier_id, bin ORDER BY classifier_id, bin"""

_STREAM_COMPLETENESS = """
SELECT c.classifier_id, (SELECT COUNT(*) FROM sent) AS alerts_sent,
       COUNT(DISTINCT s.alert_id) AS alerts_answered,
       COUNT(DISTINCT s.alert_id)::float8 / NULLIF((SELECT COUNT(*) FROM sent), 0) AS answered_share,
       COUNT(s.alert_id) AS messages,
       COUNT(s.alert_id)::float8 / NULLIF(COUNT(DISTINCT s.alert_id), 0) AS messages_per_alert,
       COUNT(s.alert_id) - COUNT(DISTINCT s.alert_id) AS duplicates,
       SUM(CASE WHEN s.alert_id IS NULL THEN 1 ELSE 0 END) AS unsolicited
FROM msg m JOIN (SELECT DISTINCT classifier_id FROM msg) c ON c.classifier_id = m.classifier_id
LEFT JOIN sent s ON s.alert_id = m.alert_id
GROUP BY c.classifier_id ORDER BY c.classifier_id"""

_CLASSIFIERS = """
SELECT classifier_id, broker, broker_name, broker_version, classifier_name, classifier_params
FROM classifiers WHERE classifier_id IN (SELECT classifier_id FROM msg) ORDER BY classifier_id"""

_RAW_CLASSIFICATIONS = """
SELECT * FROM classifications
WHERE %(run_id)s::text IS NULL OR message_id IN (SELECT message_id FROM messages WHERE run_id = %(run_id)s)
ORDER BY message_id"""


class PostgresScoring(_SqlScoring):
    """The :class:`~alertmux.scoring.Scoring` metrics computed by PostgreSQL."""

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

    def __init__(self, conn: psycopg.Connection[Any], run_id: str | None = None) -> None:
        """Score the store behind ``conn``.

        Args:
            conn: an open connection to an alertmux PostgreSQL store (its search path on the store's schema).
            run_id: score only this harness run; None scores everything.
        """
        self.conn = conn
        self.run_id = run_id

    def _query(self, sql: str, ctes: Sequence[str] = (), **params: Any) -> pd.DataFrame:
        import pandas as pd

        text = "WITH " + ",\n".join((_BASE_CTES, *ctes)) + "\n" + sql
        with self.conn.cursor() as cur:
            cur.execute(text, {"run_id": self.run_id, **params})
            columns = [d.name for d in cur.description or ()]
            return pd.DataFrame(cur.fetchall(), columns=columns)

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
        expr = "u.class_id" if level == "leaf" else "COALESCE(ic.category, u.class_id)"
        return _P_TRUE.format(class_expr=expr)

    def classification_chunks(self, chunk_rows: int = 200_000) -> Iterator[pd.DataFrame]:
        """The raw classifications (the ``classifications`` view, one row per class), in frames of ``chunk_rows``.

        A server-side cursor streams them, so an export never holds the table in memory.
        """
        import pandas as pd

        with self.conn.transaction(), self.conn.cursor(name="alertmux_export") as cur:
            cur.itersize = chunk_rows
            cur.execute(_RAW_CLASSIFICATIONS, {"run_id": self.run_id})
            columns: list[str] | None = None
            while rows := cur.fetchmany(chunk_rows):
                columns = columns or [d.name for d in cur.description or ()]
                yield pd.DataFrame(rows, columns=columns)


def open_postgres_scoring(url: str, run_id: str | None = None) -> PostgresScoring:
    """Open the scoring of a PostgreSQL store (read-only transactions on a connection of its own).

    Raises:
        UsageError: the database cannot be reached, or holds no alertmux store.
    """
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="alertmux-scoring")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open PostgreSQL database {redact_url(url)}: {first}") from None
    conn.execute("SET default_transaction_read_only = on")
    row = conn.execute("SELECT to_regclass('messages') IS NOT NULL").fetchone()
    if not row or not row[0]:
        conn.close()
        raise UsageError(f"no alertmux store in PostgreSQL database {redact_url(url)} (no messages table)")
    return PostgresScoring(conn, run_id)
