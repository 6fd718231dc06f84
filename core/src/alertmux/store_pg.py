"""The PostgreSQL store: the :class:`~alertmux.store.Store` interface for many workers on many machines.

Chosen by a URL (``--db postgresql://user@host/dbname``). It keeps the SQLite store's contract with its own SQL:

* One row per broker message, the classes packed as ``smallint[]`` class ids and ``real[]`` probabilities (as the
  DESC TOM's ELAsTiCC2 tables), native labels as ``jsonb`` (they are ints or strings, kept verbatim), kinds as
  ``text[]``. See docs/adr/0003-one-row-per-message.md.
* Idempotent writes: the same unique keys as SQLite and ``ON CONFLICT DO NOTHING``, so N workers, redeliveries
  after a rebalance and a retried transaction add nothing. Dead letters are unique on their Kafka position and
  payload too, so a worker killed after its commit and before its offset commit does not file them twice.
* Bulk loading: a batch is COPYed into a session-local staging table, then moved with one
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` in key order (concurrent workers lock in the same order and
  do not deadlock); the statement's row count is the number of new messages.
* Waiting, not failing, when the server goes away: a lost connection (restart, failover) is retried with
  exponential backoff for up to ``wait`` seconds, then the whole operation is redone on a new connection. Every
  operation is idempotent, so redoing one whose commit did reach the server adds nothing.
* Migrations are the same append-only list as SQLite's, applied under an advisory lock so workers that start
  together do not race; ``?options=-csearch_path%3Dname`` in the URL keeps a store in its own schema (created on
  first use).

Values PostgreSQL cannot hold, which SQLite would have taken, are made storable rather than let one message stop
the stream: a NUL character becomes U+FFFD, a probability outside float32's range becomes null (as NaN already
does), a class id outside ``smallint`` becomes null (its native label is kept). A row that still fails goes to
the dead-letter table with its Kafka position and the reason.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from alertmux.errors import AlertmuxError, UsageError
from alertmux.store import MESSAGE_COLUMNS, DeadLetter, TruthRow, now_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_WAIT = 600.0
"""Seconds a store waits for a lost server before giving up (DESC's brokerpoll was restarted after 300 s)."""
_CONNECT_TIMEOUT = 10
# Without these, a server that vanishes without a TCP reset leaves a write hanging for the kernel's ~15 minutes.
_LIVENESS = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3",
             "tcp_user_timeout": "60000"}
_MIGRATION_LOCK = 7_305_413_062  # any constant: one advisory lock per database serializes migrations
_SMALLINT = (-32768, 32767)
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_MIN_NORMAL = 1.1754943508222875e-38
# "%.7g" writes huge and tiny values with an exponent: only exponents of 38 and more can leave float32's range.
_WIDE_EXPONENT = re.compile(r"e[+-](?:3[89]|[4-9]\d|\d{3})")
_ARRAY_BRACKETS = str.maketrans("[]", "{}")


class StoreUnavailable(AlertmuxError):
    """The database stayed unreachable longer than the store was told to wait."""

    exit_code = 4


def _create_v1(cur: psycopg.Cursor[Any]) -> None:
    cur.execute(
        """
        CREATE TABLE runs (run_id text PRIMARY KEY, kind text NOT NULL, started_ms bigint, finished_ms bigint,
                           options jsonb, summary jsonb);
        CREATE TABLE truth (dia_object_id bigint PRIMARY KEY, run_id text, class_id integer, gentype integer,
                            peak_mjd double precision, redshift double precision);
        CREATE TABLE photometry (forced_source_id bigint PRIMARY KEY, dia_object_id bigint, mjd double precision,
                                 band text, flux double precision, flux_err double precision, detection smallint);
        CREATE INDEX photometry_dia_object_id_mjd ON photometry (dia_object_id, mjd);
        CREATE TABLE alerts (alert_id bigint PRIMARY KEY, run_id text, dia_source_id bigint, dia_object_id bigint,
                             mjd double precision, n_detections integer);
        CREATE INDEX alerts_dia_object_id_mjd ON alerts (dia_object_id, mjd);
        CREATE INDEX alerts_dia_source_id ON alerts (dia_source_id);
        CREATE TABLE alerts_sent (alert_id bigint, topic text, run_id text, sent_ms bigint,
                                  PRIMARY KEY (alert_id, topic));
        CREATE INDEX alerts_sent_run_id_topic ON alerts_sent (run_id, topic);
        CREATE TABLE classifiers (
            classifier_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            broker text NOT NULL, broker_name text NOT NULL, broker_version text NOT NULL,
            classifier_name text NOT NULL, classifier_params text NOT NULL,
            UNIQUE (broker, broker_name, broker_version, classifier_name, classifier_params));
        CREATE TABLE messages (
            message_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            classifier_id integer NOT NULL REFERENCES classifiers,
            run_id text, alert_id bigint, dia_source_id bigint, dia_object_id bigint, native_scheme text,
            class_ids smallint[] NOT NULL, probabilities real[] NOT NULL, native_labels jsonb NOT NULL,
            kinds text[], top_class_id smallint, top_probability real,
            alert_published_ms bigint, broker_ingest_ms bigint, broker_publish_ms bigint, ingested_ms bigint,
            topic text, "partition" integer, "offset" bigint, content_hash text);
        -- Idempotency, as in SQLite: one message per (classifier, alert); REST data without an alert id by content.
        CREATE UNIQUE INDEX messages_by_alert ON messages (classifier_id, alert_id) WHERE alert_id IS NOT NULL;
        CREATE UNIQUE INDEX messages_by_content ON messages (classifier_id, dia_object_id, content_hash)
            WHERE alert_id IS NULL;
        -- The latest message of a broker (alertmux status, the watchdog) without scanning the table.
        CREATE INDEX messages_by_classifier_time ON messages (classifier_id, ingested_ms);
        CREATE TABLE dead_letters (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, run_id text, broker text NOT NULL,
            source text, "partition" integer, "offset" bigint, key bytea, payload bytea NOT NULL, error text,
            received_ms bigint, resolved_ms bigint);
        -- A payload redelivered at the same Kafka position is the same dead letter (md5 keeps the index small).
        CREATE UNIQUE INDEX dead_letters_by_position ON dead_letters (broker, source, "partition", "offset",
                                                                      md5(payload));
        CREATE INDEX dead_letters_unresolved ON dead_letters (broker) WHERE resolved_ms IS NULL;
        CREATE VIEW classifications AS
        SELECT m.message_id, c.broker, c.broker_name, c.broker_version, c.classifier_name, c.classifier_params,
               m.alert_id, m.dia_source_id, m.dia_object_id,
               u.class_id::integer AS class_id, u.probability, COALESCE(m.kinds[u.i], 'probability') AS kind,
               m.native_labels ->> (u.i::integer - 1) AS native_class,
               m.native_scheme, m.alert_published_ms, m.broker_ingest_ms, m.broker_publish_ms, m.ingested_ms
        FROM messages m JOIN classifiers c USING (classifier_id)
        CROSS JOIN LATERAL unnest(m.class_ids, m.probabilities) WITH ORDINALITY AS u(class_id, probability, i);
        """
    )


MIGRATIONS: tuple[tuple[str, Callable[[psycopg.Cursor[Any]], None]], ...] = (("0001_initial", _create_v1),)
"""Ordered, append-only, named as SQLite's (alertmux.store.MIGRATIONS): a migration, once released, is never
edited."""

_STAGING = """CREATE TEMP TABLE IF NOT EXISTS messages_in (
    classifier_id integer, run_id text, alert_id bigint, dia_source_id bigint, dia_object_id bigint,
    native_scheme text, class_ids smallint[], probabilities real[], native_labels jsonb, kinds text[],
    top_class_id smallint, top_probability real, alert_published_ms bigint, broker_ingest_ms bigint,
    broker_publish_ms bigint, ingested_ms bigint, topic text, "partition" integer, "offset" bigint,
    content_hash text) ON COMMIT DELETE ROWS"""
_COLUMNS = ", ".join(f'"{c}"' for c in MESSAGE_COLUMNS)
_COPY_STAGING = f"COPY messages_in ({_COLUMNS}) FROM STDIN"
# Key order: two workers inserting overlapping keys (a redelivery after a rebalance) take row locks in the same
# order, so one waits for the other instead of deadlocking.
_MOVE_STAGED = (f"INSERT INTO messages ({_COLUMNS}) SELECT {_COLUMNS} FROM messages_in"
                " ORDER BY classifier_id, alert_id, dia_object_id, content_hash ON CONFLICT DO NOTHING")
_INSERT_ONE = (f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(MESSAGE_COLUMNS))})"
               " ON CONFLICT DO NOTHING")
_INSERT_DEAD = ('INSERT INTO dead_letters (run_id, broker, source, "partition", "offset", key, payload, error,'
                " received_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")


def is_postgres_url(url: Any) -> bool:
    """Whether a ``--db`` value names a PostgreSQL database rather than a SQLite file."""
    return str(url).startswith(("postgresql:/", "postgres:/"))


def restore_url(url: Any) -> str:
    """The URL as typed, when it went through :class:`pathlib.Path` (``postgresql://h/db`` -> ``postgresql:/h/db``).

    Path collapses ``//``; the scheme's ``//`` comes back. (A host-less ``postgresql:///db?host=/run/...`` does not
    survive Path: pass such a URL as a plain string, or name the host.)
    """
    text = str(url)
    for scheme in ("postgresql:", "postgres:"):
        if text.startswith(scheme + "/") and not text.startswith(scheme + "//"):
            return scheme + "/" + text[len(scheme):]
    return text


def redact_url(url: str) -> str:
    """A PostgreSQL URL or conninfo fit for logs and messages: the password removed, the rest kept."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    user = params.get("user")
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
    return f"postgresql://{user + '@' if user else ''}{where}"


def _password(url: str) -> str | None:
    try:
        return conninfo_to_dict(url).get("password") or None
    except psycopg.ProgrammingError:
        match = re.search(r"//[^:/@]*:([^@]*)@", url)
        return match.group(1) if match else None


def _transient(exc: BaseException) -> bool:
    """A lost connection, a server shutting down or starting up, a deadlock: redoing the operation can succeed."""
    if isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure):
        return True
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CannotConnectNow | pg_errors.CrashShutdown):
        return True
    # psycopg raises a bare OperationalError for a connection that broke (or could not be made).
    return type(exc) is psycopg.OperationalError or isinstance(exc, pg_errors.ConnectionException)


class PostgresStore:
    """The store on PostgreSQL (12 or later): many workers, one database."""

    def __init__(self, url: str, *, wait: float = DEFAULT_WAIT, connect_timeout: int = _CONNECT_TIMEOUT) -> None:
        """Connect to ``url`` (and migrate the schema).

        Args:
            url: a libpq URL or conninfo (``postgresql://user@host:5432/dbname``).
            wait: seconds to keep retrying when the server goes away mid-run, before raising StoreUnavailable.
            connect_timeout: seconds for each connection attempt.

        Raises:
            UsageError: the first connection failed (a wrong URL, a server that is not there, bad credentials):
                a user error, reported at once rather than waited for.
        """
        self.url = url
        self.display = redact_url(url)
        self.wait = wait
        self._secret = _password(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise UsageError(f"not a PostgreSQL URL: {self._scrub(str(exc))}") from None
        self._conninfo = make_conninfo(
            url, **{k: v for k, v in _LIVENESS.items() if k not in params},
            **({} if "connect_timeout" in params else {"connect_timeout": str(connect_timeout)}),
            **({} if "application_name" in params else {"application_name": "alertmux"}),
        )
        self._classifiers: dict[tuple[str, ...], int] = {}
        self._vector_cache: dict[str, str] = {}
        self.conn: psycopg.Connection[Any] = self._first_connection()
        self._migrate()

    # -- connections --------------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _first_connection(self) -> psycopg.Connection[Any]:
        try:
            return self._connect()
        except psycopg.Error as exc:
            reason = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            raise UsageError(f"cannot open PostgreSQL database {self.display}: {reason}") from None

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        # Kafka offsets are stored once COMMIT returns: a server set to acknowledge commits before they are on disk
        # (synchronous_commit=off) could lose, in a crash, messages whose offsets are already past.
        row = conn.execute("SHOW synchronous_commit").fetchone()
        if row and row[0] == "off":
            conn.execute("SET synchronous_commit = on")
        conn.execute(_STAGING)
        return conn

    def _retrying(self, operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``operation(conn)``; on a transient failure reconnect with backoff and run it again, whole."""

        def announce(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("PostgreSQL %s unavailable (%s); waiting %.1f s, then retrying (attempt %d)", self.display,
                        self._scrub(str(exc).strip().splitlines()[0] if exc and str(exc).strip() else repr(exc)),
                        state.upcoming_sleep, state.attempt_number)

        retrying = Retrying(retry=retry_if_exception(_transient), wait=wait_exponential(multiplier=0.2, max=5),
                            stop=stop_after_delay(self.wait), before_sleep=announce, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    if self.conn.closed:
                        self.conn = self._connect()
                    try:
                        return operation(self.conn)
                    except BaseException as exc:
                        if _transient(exc) and not isinstance(exc, pg_errors.DeadlockDetected
                                                               | pg_errors.SerializationFailure):
                            self.conn.close()  # a half-dead connection is not reused: the next attempt reconnects
                        raise
        except psycopg.Error as exc:
            if not _transient(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"PostgreSQL {self.display} was unreachable for more than {self.wait:g} s: {self._scrub(first)}"
            ) from None
        raise AssertionError("unreachable")  # Retrying either returns, or raises

    def _migrate(self) -> None:
        def migrate(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                (schema,) = cur.execute("SELECT current_schema()").fetchone() or (None,)
                if schema is None:  # the URL names a schema (search_path) that does not exist yet
                    (path,) = cur.execute("SHOW search_path").fetchone() or ("",)
                    wanted = next((s.strip().strip('"') for s in path.split(",") if "$user" not in s), "")
                    if not wanted:
                        raise UsageError(f"PostgreSQL {self.display}: no schema to create the tables in")
                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(wanted)))
                cur.execute("CREATE TABLE IF NOT EXISTS _migrations (name text PRIMARY KEY, applied_ms bigint)")
                done = {row[0] for row in cur.execute("SELECT name FROM _migrations")}
                for name, apply in MIGRATIONS:
                    if name not in done:
                        apply(cur)
                        cur.execute("INSERT INTO _migrations VALUES (%s, %s)", (name, now_ms()))

        self._retrying(migrate)

    # -- runs ---------------------------------------------------------------------------------------------------
    def start_run(self, kind: str, options: dict[str, Any]) -> str:  # noqa: D102
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._retrying(lambda conn: conn.execute(
            "INSERT INTO runs (run_id, kind, started_ms, options) VALUES (%s, %s, %s, %s::jsonb)"
            " ON CONFLICT DO NOTHING", (run_id, kind, now_ms(), self._scrub(_json(options)))))
        return run_id

    def finish_run(self, run_id: str, summary: dict[str, Any] | None = None) -> None:  # noqa: D102
        self._retrying(lambda conn: conn.execute(
            "UPDATE runs SET finished_ms = %s, summary = %s::jsonb WHERE run_id = %s",
            # A run's summary names its database: never with this store's password in it.
            (now_ms(), self._scrub(_json(summary)) if summary else None, run_id)))

    # -- ingest -------------------------------------------------------------------------------------------------
    def classifier_id(self, broker: str, identity: Sequence[str]) -> int:  # noqa: D102
        key = tuple(_text(part) for part in (broker, *identity))
        cached = self._classifiers.get(key)
        if cached is not None:
            return cached

        def find(conn: psycopg.Connection[Any]) -> int:
            conn.execute("INSERT INTO classifiers (broker, broker_name, broker_version, classifier_name,"
                         " classifier_params) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", key)
            row = conn.execute(
                "SELECT classifier_id FROM classifiers WHERE broker = %s AND broker_name = %s AND broker_version = %s"
                " AND classifier_name = %s AND classifier_params = %s", key).fetchone()
            assert row is not None
            return int(row[0])

        found = self._classifiers[key] = self._retrying(find)
        return found

    def write_batch(self, rows: Sequence[tuple[Any, ...]], dead: Sequence[DeadLetter] = ()) -> int:  # noqa: D102
        staged = [self._storable(row) for row in rows]
        letters = [self._dead_row(d) for d in dead]

        def write(conn: psycopg.Connection[Any]) -> int:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    stored = self._copy_and_move(cur, staged)
                    if letters:
                        cur.executemany(_INSERT_DEAD, letters)
                    return stored
            except psycopg.DataError as exc:
                # One row PostgreSQL refuses would otherwise stop the stream: find it, dead-letter it, keep the rest.
                log.warning("a batch of %d rows was refused (%s); storing it row by row", len(staged), exc)
                return self._write_row_by_row(conn, rows, staged, letters)

        return self._retrying(write)

    @staticmethod
    def _copy_and_move(cur: psycopg.Cursor[Any], staged: Sequence[tuple[Any, ...]]) -> int:
        if not staged:
            return 0
        with cur.copy(_COPY_STAGING) as copy:
            for row in staged:
                copy.write_row(row)
        cur.execute(_MOVE_STAGED)
        return max(cur.rowcount, 0)

    def _write_row_by_row(self, conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]],
                          staged: Sequence[tuple[Any, ...]], letters: list[tuple[Any, ...]]) -> int:
        stored = 0
        refused: list[tuple[Any, ...]] = []
        with conn.transaction(), conn.cursor() as cur:
            for row, ready in zip(rows, staged, strict=True):
                try:
                    with conn.transaction():  # a savepoint: a refused row rolls back alone
                        cur.execute(_INSERT_ONE, ready)
                        stored += max(cur.rowcount, 0)
                except psycopg.DataError as exc:
                    refused.append(self._refused_row(row, exc))
            if letters or refused:
                cur.executemany(_INSERT_DEAD, [*letters, *refused])
        return stored

    def _refused_row(self, row: tuple[Any, ...], exc: Exception) -> tuple[Any, ...]:
        # The original payload is not in the row; its Kafka position is, and the row itself is kept as JSON.
        record = dict(zip(MESSAGE_COLUMNS, row, strict=True))
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        broker = self._broker_of(record["classifier_id"])
        return (record["run_id"], broker, record["topic"], record["partition"], record["offset"], None,
                json.dumps(record, default=str).encode(), f"row refused by PostgreSQL: {reason}"[:2000], now_ms())

    def _broker_of(self, classifier_id: int) -> str:
        for key, cid in self._classifiers.items():
            if cid == classifier_id:
                return key[0]
        return "unknown"

    def _storable(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A row in the staging table's text forms: JSON arrays as PostgreSQL arrays, unrepresentable values fixed."""
        out = list(row)
        cache = self._vector_cache
        if len(cache) > 8192:  # label vectors repeat: the cache stays small unless something is off
            cache.clear()
        class_ids = row[6]
        literal = cache.get(class_ids)
        if literal is None:
            literal = cache[class_ids] = _smallint_array(class_ids)
        out[6] = literal
        values = row[7]
        out[7] = _real_array(values) if _WIDE_EXPONENT.search(values) else values.translate(_ARRAY_BRACKETS)
        native = row[8]
        out[8] = native.replace("\\u0000", "\\ufffd") if "\\u0000" in native else native
        kinds = row[9]
        if kinds is not None:
            out[9] = kinds.translate(_ARRAY_BRACKETS)
        top_id = row[10]
        if top_id is not None and not _SMALLINT[0] <= top_id <= _SMALLINT[1]:
            out[10] = None
        top_p = row[11]
        if top_p is not None and not (top_p == 0 or _FLOAT32_MIN_NORMAL <= abs(top_p) < _FLOAT32_MAX):
            out[11] = _float32(top_p)
        for i in (1, 5, 16, 19):  # run_id, native_scheme, topic, content_hash
            if isinstance(row[i], str) and "\x00" in row[i]:
                out[i] = _text(row[i])
        return tuple(out)

    @staticmethod
    def _dead_row(d: DeadLetter) -> tuple[Any, ...]:
        return (d.run_id, _text(d.broker), _text(d.source), d.partition, d.offset, d.key, d.payload,
                _text(d.error), d.received_ms or now_ms())

    # -- harness ------------------------------------------------------------------------------------------------
    def record_objects(  # noqa: D102
        self, run_id: str, truths: Iterable[TruthRow], alerts: Iterable[dict[str, Any]]
    ) -> None:
        truth_rows = {t.dia_object_id: (t.dia_object_id, run_id, t.class_id, t.gentype, t.peak_mjd, t.redshift)
                      for t in truths}
        alert_rows: dict[int, tuple[Any, ...]] = {}
        # One row per forced source; a forced source that is also a detection keeps detection=1, whatever the order.
        phot: dict[int, tuple[Any, ...]] = {}
        for alert in alerts:
            src = alert["diaSource"]
            detections = 1 + len(alert.get("prvDiaSources") or ())
            alert_rows[alert["alertId"]] = (alert["alertId"], run_id, src["diaSourceId"], src["diaObjectId"],
                                            src["midPointTai"], detections)
            phot[src["diaSourceId"]] = (src["diaSourceId"], src["diaObjectId"], src["midPointTai"], src["filterName"],
                                        src["psFlux"], src["psFluxErr"], 1)
            for fs in alert.get("prvDiaForcedSources") or ():
                if fs["diaForcedSourceId"] not in phot:
                    phot[fs["diaForcedSourceId"]] = (fs["diaForcedSourceId"], fs["diaObjectId"], fs["midPointTai"],
                                                     fs["filterName"], fs["psFlux"], fs["psFluxErr"], 0)

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO truth VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dia_object_id) DO UPDATE SET"
                    " run_id = excluded.run_id, class_id = excluded.class_id, gentype = excluded.gentype,"
                    " peak_mjd = excluded.peak_mjd, redshift = excluded.redshift", list(truth_rows.values()))
                cur.executemany(
                    "INSERT INTO alerts VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (alert_id) DO UPDATE SET"
                    " run_id = excluded.run_id, dia_source_id = excluded.dia_source_id,"
                    " dia_object_id = excluded.dia_object_id, mjd = excluded.mjd,"
                    " n_detections = excluded.n_detections", list(alert_rows.values()))
                cur.executemany(
                    "INSERT INTO photometry VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (forced_source_id)"
                    " DO UPDATE SET detection = GREATEST(photometry.detection, excluded.detection)",
                    list(phot.values()))

        self._retrying(write)

    def record_sent(self, run_id: str, topic: str, alert_ids: Sequence[int], sent_ms: int) -> None:  # noqa: D102
        rows = [(alert_id, topic, run_id, sent_ms) for alert_id in alert_ids]

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany("INSERT INTO alerts_sent VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)

        self._retrying(write)

    def sent_alert_ids(self, run_id: str, topic: str) -> set[int]:  # noqa: D102
        return self._retrying(lambda conn: {row[0] for row in conn.execute(
            "SELECT alert_id FROM alerts_sent WHERE run_id = %s AND topic = %s", (run_id, topic))})

    def truth_class(self, dia_object_id: int) -> int | None:  # noqa: D102
        row = self._retrying(lambda conn: conn.execute(
            "SELECT class_id FROM truth WHERE dia_object_id = %s", (dia_object_id,)).fetchone())
        return row[0] if row else None

    def detection_count(self, dia_source_id: int) -> int | None:  # noqa: D102
        row = self._retrying(lambda conn: conn.execute(
            "SELECT n_detections FROM alerts WHERE dia_source_id = %s LIMIT 1", (dia_source_id,)).fetchone())
        return row[0] if row else None

    # -- dead letters -------------------------------------------------------------------------------------------
    def dead_letters(self, broker: str | None = None, include_resolved: bool = False) -> list[DeadLetter]:  # noqa: D102
        query = ('SELECT id, run_id, broker, source, "partition", "offset", key, payload, error, received_ms'
                 " FROM dead_letters WHERE (%(broker)s::text IS NULL OR broker = %(broker)s)")
        if not include_resolved:
            query += " AND resolved_ms IS NULL"
        rows = self._retrying(lambda conn: conn.execute(query + " ORDER BY id", {"broker": broker}).fetchall())
        return [
            DeadLetter(id=r[0], run_id=r[1], broker=r[2], source=r[3], partition=r[4], offset=r[5],
                       key=bytes(r[6]) if r[6] is not None else None, payload=bytes(r[7]), error=r[8],
                       received_ms=r[9])
            for r in rows
        ]

    def resolve_dead_letter(self, dead_letter_id: int, error: str | None = None) -> None:  # noqa: D102
        if error is None:
            self._retrying(lambda conn: conn.execute(
                "UPDATE dead_letters SET resolved_ms = %s WHERE id = %s", (now_ms(), dead_letter_id)))
        else:
            self._retrying(lambda conn: conn.execute(
                "UPDATE dead_letters SET error = %s WHERE id = %s", (_text(error), dead_letter_id)))

    # -- scoring ------------------------------------------------------------------------------------------------
    def summary(self, run_id: str | None = None) -> dict[str, Any]:  # noqa: D102
        return self._retrying(lambda conn: self._summary(conn, run_id))

    def _summary(self, conn: psycopg.Connection[Any], run_id: str | None) -> dict[str, Any]:
        params = {"run_id": run_id}
        where = "WHERE (%(run_id)s::text IS NULL OR run_id = %(run_id)s)"
        where_m = "WHERE (%(run_id)s::text IS NULL OR m.run_id = %(run_id)s)"
        (sent,) = conn.execute(f"SELECT COUNT(*) FROM alerts_sent {where}", params).fetchone() or (0,)
        (dead,) = conn.execute(f"SELECT COUNT(*) FROM dead_letters {where}", params).fetchone() or (0,)
        brokers: dict[str, dict[str, Any]] = {}
        for broker, messages, classes in conn.execute(
            f"""SELECT c.broker, COUNT(*), SUM(cardinality(m.class_ids))
                FROM messages m JOIN classifiers c USING (classifier_id) {where_m}
                GROUP BY c.broker ORDER BY c.broker""", params):
            brokers[broker] = {"messages": messages, "classifications": int(classes or 0)}
        for broker, count in conn.execute(f"SELECT broker, COUNT(*) FROM dead_letters {where} GROUP BY broker",
                                          params):
            brokers.setdefault(broker, {"messages": 0, "classifications": 0})["dead_letters"] = count
        for broker, info in brokers.items():
            info.setdefault("dead_letters", 0)
            info["turnaround_s"] = self._turnaround(conn, broker, run_id)
            info["top1_accuracy"], info["objects_scored"] = self._latest_accuracy(conn, broker, run_id)
        return {"alerts_sent": sent, "dead_letters": dead, "brokers": brokers}

    @staticmethod
    def _turnaround(conn: psycopg.Connection[Any], broker: str, run_id: str | None) -> dict[str, float | None]:
        # As SqliteStore: harness ingest minus the alert's first sent time, the value at 0-based rank int(q * n).
        # percentile_disc(f) takes rank ceil(f * n) - 1; f = (rank + 0.5) / n lands on it whatever the rounding.
        base = """SELECT (m.ingested_ms - s.sent_ms) / 1000.0::float8 AS dt FROM messages m
                  JOIN classifiers c USING (classifier_id)
                  JOIN (SELECT alert_id, MIN(sent_ms) AS sent_ms FROM alerts_sent GROUP BY alert_id) s
                    ON s.alert_id = m.alert_id
                  WHERE c.broker = %(broker)s AND (%(run_id)s::text IS NULL OR m.run_id = %(run_id)s)"""
        params: dict[str, Any] = {"broker": broker, "run_id": run_id}
        (count,) = conn.execute(f"SELECT COUNT(*) FROM ({base}) AS d", params).fetchone() or (0,)
        labels = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))
        if not count:
            return {label: None for label, _ in labels}
        fractions = [(min(count - 1, int(q * count)) + 0.5) / count for _, q in labels]
        row = conn.execute(f"SELECT percentile_disc(%(f)s::float8[]) WITHIN GROUP (ORDER BY dt) FROM ({base}) AS d",
                           params | {"f": fractions}).fetchone()
        values = row[0] if row else [None] * len(labels)
        return {label: (float(v) if v is not None else None) for (label, _), v in zip(labels, values, strict=True)}

    @staticmethod
    def _latest_accuracy(conn: psycopg.Connection[Any], broker: str, run_id: str | None) -> tuple[float | None, int]:
        row = conn.execute(
            """SELECT AVG((top_class_id = class_id)::integer)::float8, COUNT(*) FROM (
                 SELECT m.top_class_id, t.class_id, ROW_NUMBER() OVER (
                     PARTITION BY m.classifier_id, t.dia_object_id ORDER BY a.mjd DESC, m.alert_id DESC) AS rank
                 FROM messages m JOIN classifiers c USING (classifier_id)
                 LEFT JOIN alerts a ON a.alert_id = m.alert_id
                 JOIN truth t ON t.dia_object_id = COALESCE(m.dia_object_id, a.dia_object_id)
                 WHERE c.broker = %(broker)s AND (%(run_id)s::text IS NULL OR m.run_id = %(run_id)s)) AS ranked
               WHERE rank = 1""",
            {"broker": broker, "run_id": run_id}).fetchone()
        return (row[0], row[1]) if row else (None, 0)

    def close(self) -> None:  # noqa: D102
        self.conn.close()


def _json(value: Any) -> str:
    return _text(json.dumps(value, default=str)).replace("\\u0000", "\\ufffd")


def _text(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD (SQLite keeps it; nothing else changes)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def _smallint_array(class_ids_json: str) -> str:
    ids = json.loads(class_ids_json)
    kept = [i if i is None or _SMALLINT[0] <= i <= _SMALLINT[1] else None for i in ids]
    if kept != ids:
        log.warning("class ids %s are outside the ELAsTiCC2 range (smallint): stored as null, native labels kept",
                    sorted({i for i, k in zip(ids, kept, strict=True) if k is None and i is not None}))
    return "{" + ",".join("NULL" if i is None else str(int(i)) for i in kept) + "}"


def _float32(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        narrowed = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return None
    if not math.isfinite(narrowed):
        return None  # beyond float32: no value, as for NaN and infinities (alertmux.ingest writes those as null)
    return narrowed if abs(narrowed) >= _FLOAT32_MIN_NORMAL else 0.0  # PostgreSQL refuses float4 underflow


def _real_array(values_json: str) -> str:
    fixed = [_float32(v) for v in json.loads(values_json)]
    return "{" + ",".join("NULL" if v is None else repr(v) for v in fixed) + "}"
