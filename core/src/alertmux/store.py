"""Storage: the :class:`Store` interface and its embedded SQLite implementation.

Classification messages are stored one row per message with the class ids, probabilities and native labels
packed as JSON arrays, as the DESC TOM did for ELAsTiCC2 (one row per class is three times slower to write); the
``classifications`` view explodes them one row per class for people and for SQL that wants it. See
docs/adr/0003-one-row-per-message.md.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import is_, itemgetter
from pathlib import Path
from typing import Any, Protocol

import sqlite_utils

from alertmux.errors import UsageError

MESSAGE_COLUMNS = (
    "classifier_id",
    "run_id",
    "alert_id",
    "dia_source_id",
    "dia_object_id",
    "native_scheme",
    "class_ids",
    "probabilities",
    "native_labels",
    "kinds",
    "top_class_id",
    "top_probability",
    "alert_published_ms",
    "broker_ingest_ms",
    "broker_publish_ms",
    "ingested_ms",
    "topic",
    "partition",
    "offset",
    "content_hash",
)
"""Column order of the tuples :meth:`Store.write_batch` takes (built on the hot path by alertmux.ingest)."""
_CLASS_IDS = MESSAGE_COLUMNS.index("class_ids")
_NATIVE = MESSAGE_COLUMNS.index("native_labels")
_OFTEN_NULL = tuple(MESSAGE_COLUMNS.index(c) for c in ("run_id", "dia_object_id", "native_labels", "kinds",
                                                      "content_hash", "alert_published_ms", "broker_ingest_ms",
                                                      "top_class_id", "top_probability", "partition", "offset"))
"""Columns that are NULL in every row of many batches (a plain listen, REST data, context-only vocabularies)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload that could not be decoded or normalized, kept whole with the reason."""

    broker: str
    source: str
    payload: bytes
    error: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    run_id: str | None = None
    received_ms: int = 0
    id: int | None = None


@dataclass(frozen=True, slots=True)
class TruthRow:
    """The truth of one simulated object."""

    dia_object_id: int
    class_id: int
    gentype: int | None
    peak_mjd: float | None
    redshift: float | None


class Store(Protocol):
    """What the harness, the ingest loop and the scoring need from a database.

    The SQLite store below is the embedded default; a PostgreSQL store implements the same methods with its own
    SQL. Every write is idempotent: writing the same thing twice leaves one row.
    """

    def start_run(self, kind: str, options: dict[str, Any]) -> str:
        """Create a run (a demo, a stream, a listen) and return its id."""
        ...

    def finish_run(self, run_id: str, summary: dict[str, Any] | None = None) -> None:
        """Mark a run finished, keeping its summary."""
        ...

    def classifier_id(self, broker: str, identity: Sequence[str]) -> int:
        """Id of a classifier (broker plugin + DESC's four-part identity), created on first sight."""
        ...

    def write_batch(self, rows: Sequence[tuple[Any, ...]], dead: Sequence[DeadLetter] = ()) -> int:
        """Store message rows (in :data:`MESSAGE_COLUMNS` order) and dead letters in one transaction.

        Returns:
            How many message rows were new (redeliveries add nothing).
        """
        ...

    def record_objects(self, run_id: str, truths: Iterable[TruthRow], alerts: Iterable[dict[str, Any]]) -> None:
        """Record simulated truth and the photometry of the alerts a run will send."""
        ...

    def record_sent(self, run_id: str, topic: str, alert_ids: Sequence[int], sent_ms: int) -> None:
        """Record when alerts were acknowledged by Kafka on a topic."""
        ...

    def sent_alert_ids(self, run_id: str, topic: str) -> set[int]:
        """Alerts of a run already acknowledged on a topic (a restarted stream skips them)."""
        ...

    def truth_class(self, dia_object_id: int) -> int | None:
        """The true class of a simulated object, or None when unknown."""
        ...

    def detection_count(self, dia_source_id: int) -> int | None:
        """How many detections the object had up to and including this source (1 for its first alert)."""
        ...

    def dead_letters(self, broker: str | None = None, include_resolved: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    def resolve_dead_letter(self, dead_letter_id: int, error: str | None = None) -> None:
        """Mark a dead letter replayed (``error`` None) or record why the replay failed again."""
        ...

    def summary(self, run_id: str | None = None) -> dict[str, Any]:
        """Counts, turnaround percentiles and top-1 accuracy per broker, computed in the database."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def open_store(url: str | Path) -> Store:
    """Open a store from a path or URL (``sqlite:///path``, a plain path, or ``postgresql://...``)."""
    text = str(url)
    if text.startswith(("postgresql:/", "postgres:/")):
        from alertmux.store_pg import PostgresStore, restore_url

        # restore_url: a URL that went through pathlib (click.Path options) lost one slash of "//".
        return PostgresStore(restore_url(text))
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SqliteStore(Path(text))


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


_FIRST_VIEW = """CREATE VIEW classifications AS
        SELECT m.message_id, c.broker, c.broker_name, c.broker_version, c.classifier_name, c.classifier_params,
               m.alert_id, m.dia_source_id, m.dia_object_id,
               ids.value AS class_id, CAST(p.value AS REAL) AS probability,
               COALESCE(json_extract(m.kinds, '$[' || ids.key || ']'), 'probability') AS kind,
               CAST(json_extract(m.native_labels, '$[' || ids.key || ']') AS TEXT) AS native_class,
               m.native_scheme, m.alert_published_ms, m.broker_ingest_ms, m.broker_publish_ms, m.ingested_ms
        FROM messages m JOIN classifiers c USING (classifier_id)
        JOIN json_each(m.class_ids) ids
        JOIN json_each(m.probabilities) p ON p.key = ids.key"""

_CLASSIFICATIONS_VIEW = _FIRST_VIEW.replace(
    "json_extract(m.native_labels,", "json_extract(COALESCE(m.native_labels, m.class_ids),"
)
"""One row per class. ``native_labels`` NULL means the labels are the class ids themselves (ELAsTiCC2)."""


def _create_v1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {"run_id": str, "kind": str, "started_ms": int, "finished_ms": int, "options": str, "summary": str},
        pk="run_id",
    )
    db["truth"].create(
        {"dia_object_id": int, "run_id": str, "class_id": int, "gentype": int, "peak_mjd": float, "redshift": float},
        pk="dia_object_id",
    )
    db["photometry"].create(
        {
            "forced_source_id": int,
            "dia_object_id": int,
            "mjd": float,
            "band": str,
            "flux": float,
            "flux_err": float,
            "detection": int,
        },
        pk="forced_source_id",
    )
    db["photometry"].create_index(["dia_object_id", "mjd"])
    db["alerts"].create(
        {"alert_id": int, "run_id": str, "dia_source_id": int, "dia_object_id": int, "mjd": float, "n_detections": int},
        pk="alert_id",
    )
    db["alerts"].create_index(["dia_object_id", "mjd"])
    db["alerts_sent"].create(
        {"alert_id": int, "topic": str, "run_id": str, "sent_ms": int}, pk=("alert_id", "topic")
    )
    db["alerts_sent"].create_index(["run_id", "topic"])
    db["classifiers"].create(
        {
            "classifier_id": int,
            "broker": str,
            "broker_name": str,
            "broker_version": str,
            "classifier_name": str,
            "classifier_params": str,
        },
        pk="classifier_id",
    )
    db["classifiers"].create_index(
        ["broker", "broker_name", "broker_version", "classifier_name", "classifier_params"], unique=True
    )
    types = {"topic": str, "native_scheme": str, "class_ids": str, "probabilities": str, "native_labels": str}
    types |= {"kinds": str, "content_hash": str, "run_id": str, "top_probability": float}
    db["messages"].create(
        {"message_id": int} | {c: types.get(c, int) for c in MESSAGE_COLUMNS}, pk="message_id"
    )
    # Idempotency: a classifier says one thing per alert; REST data without an alert id is keyed by content.
    db.execute(
        "CREATE UNIQUE INDEX messages_by_alert ON messages (classifier_id, alert_id) WHERE alert_id IS NOT NULL"
    )
    db.execute(
        "CREATE UNIQUE INDEX messages_by_content ON messages (classifier_id, dia_object_id, content_hash)"
        " WHERE alert_id IS NULL"
    )
    db["dead_letters"].create(
        {
            "id": int,
            "run_id": str,
            "broker": str,
            "source": str,
            "partition": int,
            "offset": int,
            "key": bytes,
            "payload": bytes,
            "error": str,
            "received_ms": int,
            "resolved_ms": int,
        },
        pk="id",
    )
    db.execute(_FIRST_VIEW)


def _create_followup(db: sqlite_utils.Database) -> None:
    # Follow-up (alertmux.followup): positions, stored rankings, observation requests with their parts (an OCS
    # requestgroup's requests) and history, data products and the spectroscopic classifications reported back.
    # One statement at a time: executescript() would COMMIT the migration's transaction first.
    statements = """
        CREATE TABLE followup_positions (dia_object_id INTEGER PRIMARY KEY, ra REAL NOT NULL, dec REAL NOT NULL,
            recorded_ms INTEGER);
        CREATE TABLE followup_rankings (ranking_id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL,
            strategy TEXT NOT NULL, options TEXT, mjd_now REAL, candidates INTEGER, run_id TEXT);
        CREATE TABLE followup_ranked (ranking_id INTEGER NOT NULL REFERENCES followup_rankings, rank INTEGER NOT NULL,
            dia_object_id INTEGER NOT NULL, priority INTEGER NOT NULL, score REAL, reason TEXT, telescope TEXT,
            exposure_s REAL, ra REAL, dec REAL, last_mag REAL, last_band TEXT,
            PRIMARY KEY (ranking_id, dia_object_id));
        CREATE TABLE followup_requests (request_id INTEGER PRIMARY KEY, facility TEXT NOT NULL, proposal TEXT,
            name TEXT NOT NULL, dia_object_id INTEGER, ranking_id INTEGER, priority INTEGER, state TEXT NOT NULL,
            native_state TEXT, facility_id TEXT, url TEXT, payload TEXT, response TEXT, duration_s REAL,
            exposure_s REAL, created_ms INTEGER NOT NULL, submitted_ms INTEGER, updated_ms INTEGER,
            closed_ms INTEGER, detail TEXT, UNIQUE (facility, name));
        CREATE INDEX followup_requests_by_state ON followup_requests (state, facility);
        CREATE INDEX followup_requests_by_object ON followup_requests (dia_object_id);
        CREATE TABLE followup_request_parts (request_id INTEGER NOT NULL REFERENCES followup_requests,
            part_id TEXT NOT NULL, state TEXT NOT NULL, native_state TEXT, updated_ms INTEGER,
            PRIMARY KEY (request_id, part_id));
        CREATE TABLE followup_events (event_id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL
            REFERENCES followup_requests, part_id TEXT, at_ms INTEGER NOT NULL, state TEXT, native_state TEXT,
            detail TEXT);
        CREATE INDEX followup_events_by_request ON followup_events (request_id, at_ms);
        CREATE TABLE followup_products (request_id INTEGER NOT NULL REFERENCES followup_requests,
            product_id TEXT NOT NULL, filename TEXT, url TEXT, created TEXT, kind TEXT, local_path TEXT,
            fetched_ms INTEGER, PRIMARY KEY (request_id, product_id));
        CREATE TABLE followup_spectra (spectrum_id INTEGER PRIMARY KEY, dia_object_id INTEGER NOT NULL,
            facility TEXT NOT NULL, mjd REAL NOT NULL, redshift REAL, class_id INTEGER NOT NULL, request_id INTEGER,
            message_id INTEGER, reported_ms INTEGER NOT NULL, UNIQUE (dia_object_id, facility, mjd));
        """
    for statement in statements.split(";"):
        if statement.strip():
            db.execute(statement)


def _create_access(db: sqlite_utils.Database) -> None:
    # alertmux serve's users and credentials (API tokens, login sessions), and the REST pollers' cursors. Only salted
    # hashes of passwords and credentials are stored (alertmux.serve hashes them).
    statements = """
        CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_ms INTEGER NOT NULL,
            active INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE credentials (credential_id TEXT PRIMARY KEY, kind TEXT NOT NULL,
            username TEXT NOT NULL REFERENCES users ON DELETE CASCADE, salt TEXT NOT NULL, digest TEXT NOT NULL,
            created_ms INTEGER NOT NULL, expires_ms INTEGER, last_used_ms INTEGER);
        CREATE INDEX credentials_by_user ON credentials (username, kind);
        CREATE TABLE rest_cursors (broker TEXT NOT NULL, stream TEXT NOT NULL, cursor TEXT,
            updated_ms INTEGER NOT NULL, PRIMARY KEY (broker, stream));
        """
    for statement in statements.split(";"):
        if statement.strip():
            db.execute(statement)


def _dead_letters_by_position(db: sqlite_utils.Database) -> None:
    # A payload redelivered after a crash is the same dead letter: its Kafka position identifies it.
    db.execute(
        "CREATE UNIQUE INDEX dead_letters_by_position ON dead_letters (broker, source, partition, offset)"
        " WHERE partition IS NOT NULL AND offset IS NOT NULL"
    )


def _native_labels_may_be_null(db: sqlite_utils.Database) -> None:
    db.execute("DROP VIEW classifications")
    db.execute(_CLASSIFICATIONS_VIEW)


MIGRATIONS = (
    ("0001_initial", _create_v1),
    ("0002_followup", _create_followup),
    ("0003_access", _create_access),
    ("0004_dead_letter_positions", _dead_letters_by_position),
    ("0005_native_labels_default_to_class_ids", _native_labels_may_be_null),
)
"""Ordered, append-only: a migration, once released, is never edited."""


class SqliteStore:
    """The embedded default store: one SQLite file, WAL mode, one connection per thread."""

    def __init__(self, path: Path) -> None:
        """Open (and migrate) the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Made in one thread, used by one other (a harness worker), never by two at once.
            self.conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open database {path}: {exc}") from None
        self.path = path
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode loses at most the last commits on power loss, never consistency; the Kafka offsets
        # are stored only after our commit, so a lost commit is redelivered, not lost.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.db = sqlite_utils.Database(self.conn)
        self._classifiers: dict[tuple[str, ...], int] = {}
        self._migrate()
        self._insert_by_columns: dict[tuple[int, ...], str] = {}
        self._insert_sql = (
            f"INSERT OR IGNORE INTO messages ({', '.join(f'[{c}]' for c in MESSAGE_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in MESSAGE_COLUMNS)})"
        )

    def _migrate(self) -> None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
        with self._transaction():
            done = {row[0] for row in self.conn.execute("SELECT name FROM _migrations")}
            for name, apply in MIGRATIONS:
                if name not in done:
                    apply(self.db)
                    self.conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, now_ms()))

    def _transaction(self) -> Any:
        return _Transaction(self.conn)

    # -- runs ---------------------------------------------------------------------------------------------------
    def start_run(self, kind: str, options: dict[str, Any]) -> str:  # noqa: D102
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.conn.execute(
            "INSERT INTO runs (run_id, kind, started_ms, options) VALUES (?, ?, ?, ?)",
            (run_id, kind, now_ms(), json.dumps(options, default=str)),
        )
        return run_id

    def finish_run(self, run_id: str, summary: dict[str, Any] | None = None) -> None:  # noqa: D102
        self.conn.execute(
            "UPDATE runs SET finished_ms = ?, summary = ? WHERE run_id = ?",
            (now_ms(), json.dumps(summary, default=str) if summary else None, run_id),
        )

    # -- ingest -------------------------------------------------------------------------------------------------
    def classifier_id(self, broker: str, identity: Sequence[str]) -> int:  # noqa: D102
        key = (broker, *identity)
        cached = self._classifiers.get(key)
        if cached is not None:
            return cached
        self.conn.execute(
            "INSERT OR IGNORE INTO classifiers (broker, broker_name, broker_version, classifier_name,"
            " classifier_params) VALUES (?, ?, ?, ?, ?)",
            key,
        )
        (found,) = self.conn.execute(
            "SELECT classifier_id FROM classifiers WHERE broker = ? AND broker_name = ? AND broker_version = ?"
            " AND classifier_name = ? AND classifier_params = ?",
            key,
        ).fetchone()
        self._classifiers[key] = found
        return found

    def write_batch(self, rows: Sequence[tuple[Any, ...]], dead: Sequence[DeadLetter] = ()) -> int:  # noqa: D102
        with self._transaction():
            before = self.conn.total_changes
            if rows:
                self.conn.executemany(*self._insert_without_null_columns(rows))
            stored = self.conn.total_changes - before
            if dead:
                self._insert_dead(dead)
        return stored

    # -- harness ------------------------------------------------------------------------------------------------
    def record_objects(  # noqa: D102
        self, run_id: str, truths: Iterable[TruthRow], alerts: Iterable[dict[str, Any]]
    ) -> None:
        with self._transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO truth VALUES (?, ?, ?, ?, ?, ?)",
                [(t.dia_object_id, run_id, t.class_id, t.gentype, t.peak_mjd, t.redshift) for t in truths],
            )
            alert_rows, phot_rows = [], []
            for alert in alerts:
                src = alert["diaSource"]
                detections = 1 + len(alert.get("prvDiaSources") or ())
                alert_rows.append(
                    (alert["alertId"], run_id, src["diaSourceId"], src["diaObjectId"], src["midPointTai"], detections)
                )
                phot_rows.append(
                    (src["diaSourceId"], src["diaObjectId"], src["midPointTai"], src["filterName"], src["psFlux"],
                     src["psFluxErr"], 1)
                )
                for fs in alert.get("prvDiaForcedSources") or ():
                    phot_rows.append(
                        (fs["diaForcedSourceId"], fs["diaObjectId"], fs["midPointTai"], fs["filterName"],
                         fs["psFlux"], fs["psFluxErr"], 0)
                    )
            self.conn.executemany("INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?)", alert_rows)
            # A forced source that is also a detection keeps detection=1 (MAX): order of alerts does not matter.
            self.conn.executemany(
                "INSERT INTO photometry VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (forced_source_id) DO UPDATE SET"
                " detection = MAX(detection, excluded.detection)",
                phot_rows,
            )

    def record_sent(self, run_id: str, topic: str, alert_ids: Sequence[int], sent_ms: int) -> None:  # noqa: D102
        with self._transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO alerts_sent VALUES (?, ?, ?, ?)",
                [(alert_id, topic, run_id, sent_ms) for alert_id in alert_ids],
            )

    def sent_alert_ids(self, run_id: str, topic: str) -> set[int]:  # noqa: D102
        rows = self.conn.execute("SELECT alert_id FROM alerts_sent WHERE run_id = ? AND topic = ?", (run_id, topic))
        return {row[0] for row in rows}

    def truth_class(self, dia_object_id: int) -> int | None:  # noqa: D102
        row = self.conn.execute("SELECT class_id FROM truth WHERE dia_object_id = ?", (dia_object_id,)).fetchone()
        return row[0] if row else None

    def detection_count(self, dia_source_id: int) -> int | None:  # noqa: D102
        row = self.conn.execute(
            "SELECT n_detections FROM alerts WHERE dia_source_id = ?", (dia_source_id,)
        ).fetchone()
        return row[0] if row else None

    # -- dead letters -------------------------------------------------------------------------------------------
    def dead_letters(self, broker: str | None = None, include_resolved: bool = False) -> list[DeadLetter]:  # noqa: D102
        sql = "SELECT id, run_id, broker, source, partition, offset, key, payload, error, received_ms FROM dead_letters"
        clauses, params = [], []
        if broker:
            clauses.append("broker = ?")
            params.append(broker)
        if not include_resolved:
            clauses.append("resolved_ms IS NULL")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [
            DeadLetter(
                id=r[0], run_id=r[1], broker=r[2], source=r[3], partition=r[4], offset=r[5], key=r[6],
                payload=r[7], error=r[8], received_ms=r[9],
            )
            for r in self.conn.execute(sql + " ORDER BY id", params)
        ]

    def resolve_dead_letter(self, dead_letter_id: int, error: str | None = None) -> None:  # noqa: D102
        if error is None:
            self.conn.execute("UPDATE dead_letters SET resolved_ms = ? WHERE id = ?", (now_ms(), dead_letter_id))
        else:
            self.conn.execute("UPDATE dead_letters SET error = ? WHERE id = ?", (error, dead_letter_id))

    # -- scoring ------------------------------------------------------------------------------------------------
    def summary(self, run_id: str | None = None) -> dict[str, Any]:  # noqa: D102
        run_clause, params = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        one = self.conn.execute
        sent = one(f"SELECT COUNT(*) FROM alerts_sent {run_clause}", params).fetchone()[0]
        dead = one(f"SELECT COUNT(*) FROM dead_letters {run_clause}", params).fetchone()[0]
        brokers: dict[str, dict[str, Any]] = {}
        for broker, messages, classes in one(
            f"""SELECT c.broker, COUNT(*), SUM(json_array_length(m.class_ids))
                FROM messages m JOIN classifiers c USING (classifier_id) {run_clause.replace("run_id", "m.run_id")}
                GROUP BY c.broker ORDER BY c.broker""",
            params,
        ):
            brokers[broker] = {"messages": messages, "classifications": classes}
        for broker, count in one(
            f"SELECT broker, COUNT(*) FROM dead_letters {run_clause} GROUP BY broker", params
        ):
            brokers.setdefault(broker, {"messages": 0, "classifications": 0})["dead_letters"] = count
        for broker, info in brokers.items():
            info.setdefault("dead_letters", 0)
            info["turnaround_s"] = self._turnaround(broker, run_id)
            info["top1_accuracy"], info["objects_scored"] = self._latest_accuracy(broker, run_id)
        return {"alerts_sent": sent, "dead_letters": dead, "brokers": brokers}

    def _turnaround(self, broker: str, run_id: str | None) -> dict[str, float | None]:
        # Total turnaround as DESC measured it: harness ingest minus the alert's sent time (first topic it went to).
        where = "AND m.run_id = ?" if run_id else ""
        base = f"""SELECT (m.ingested_ms - s.sent_ms) / 1000.0 AS dt FROM messages m
                   JOIN classifiers c USING (classifier_id)
                   JOIN (SELECT alert_id, MIN(sent_ms) AS sent_ms FROM alerts_sent GROUP BY alert_id) s
                     ON s.alert_id = m.alert_id
                   WHERE c.broker = ? {where}"""
        params: tuple[Any, ...] = (broker, run_id) if run_id else (broker,)
        (count,) = self.conn.execute(f"SELECT COUNT(*) FROM ({base})", params).fetchone()
        result: dict[str, float | None] = {}
        for label, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
            if not count:
                result[label] = None
                continue
            row = self.conn.execute(
                f"SELECT dt FROM ({base}) ORDER BY dt LIMIT 1 OFFSET ?", (*params, min(count - 1, int(q * count)))
            ).fetchone()
            result[label] = row[0]
        return result

    def _latest_accuracy(self, broker: str, run_id: str | None) -> tuple[float | None, int]:
        # Latest classification per (classifier, object) by the time of the alert it answered, leaf level.
        where = "AND m.run_id = ?" if run_id else ""
        params: tuple[Any, ...] = (broker, run_id) if run_id else (broker,)
        row = self.conn.execute(
            f"""SELECT AVG(top_class_id = class_id), COUNT(*) FROM (
                  SELECT m.top_class_id, t.class_id, ROW_NUMBER() OVER (
                      PARTITION BY m.classifier_id, t.dia_object_id ORDER BY a.mjd DESC, m.alert_id DESC) AS rank
                  FROM messages m JOIN classifiers c USING (classifier_id)
                  LEFT JOIN alerts a ON a.alert_id = m.alert_id
                  -- ELAsTiCC broker messages carry no diaObjectId: the alert that was answered has it.
                  JOIN truth t ON t.dia_object_id = COALESCE(m.dia_object_id, a.dia_object_id)
                  WHERE c.broker = ? {where})
                WHERE rank = 1""",
            params,
        ).fetchone()
        return row[0], row[1]

    # -- serve: users and credentials (alertmux.serve hashes; only hashes are stored) ---------------------------
    def add_user(self, username: str, password_hash: str, *, replace: bool = False) -> None:
        """Create a user (or, with ``replace``, set an existing user's password hash)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            self.conn.execute(f"{verb} INTO users (username, password_hash, created_ms) VALUES (?, ?, ?)",
                              (username, password_hash, now_ms()))
        except sqlite3.IntegrityError:
            raise UsageError(f"user {username!r} already exists") from None

    def user_password_hash(self, username: str) -> str | None:
        """The password hash of an active user, or None when there is no such user."""
        row = self.conn.execute("SELECT password_hash FROM users WHERE username = ? AND active = 1",
                                (username,)).fetchone()
        return row[0] if row else None

    def users(self) -> list[dict[str, Any]]:
        """Every user with its number of API tokens (no hashes)."""
        rows = self.conn.execute(
            "SELECT u.username, u.created_ms, u.active, COUNT(c.credential_id) FROM users u LEFT JOIN credentials c"
            " ON c.username = u.username AND c.kind = 'token' GROUP BY u.username ORDER BY u.username"
        )
        return [{"username": r[0], "created_ms": r[1], "active": bool(r[2]), "tokens": r[3]} for r in rows]

    def delete_user(self, username: str) -> bool:
        """Remove a user and its credentials; False when there was none."""
        with self._transaction():
            self.conn.execute("DELETE FROM credentials WHERE username = ?", (username,))
            return self.conn.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount > 0

    def add_credential(self, credential_id: str, kind: str, username: str, salt: str, digest: str,
                       expires_ms: int | None = None) -> None:
        """Store a credential (an API token or a login session) as its id and a salted digest of its secret."""
        self.conn.execute(
            "INSERT INTO credentials (credential_id, kind, username, salt, digest, created_ms, expires_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (credential_id, kind, username, salt, digest, now_ms(), expires_ms),
        )

    def credential(self, credential_id: str, kind: str) -> tuple[str, str, str, int | None] | None:
        """(username, salt, digest, expires_ms) of a credential of an active user, or None."""
        row = self.conn.execute(
            "SELECT c.username, c.salt, c.digest, c.expires_ms FROM credentials c JOIN users u USING (username)"
            " WHERE c.credential_id = ? AND c.kind = ? AND u.active = 1",
            (credential_id, kind),
        ).fetchone()
        return (row[0], row[1], row[2], row[3]) if row else None

    def delete_credential(self, credential_id: str) -> None:
        """Forget a credential (a logout, a revoked token)."""
        self.conn.execute("DELETE FROM credentials WHERE credential_id = ?", (credential_id,))

    def write_batch_first_id(self, rows: Sequence[tuple[Any, ...]], dead: Sequence[DeadLetter] = ()
                             ) -> tuple[int, int | None]:
        """:meth:`write_batch`, also returning the id of the first new message (None when nothing was new).

        The DESC TOM answers a REST push with that id; the write lock is held throughout, so ids are consecutive.
        """
        with self._transaction():
            (last,) = self.conn.execute("SELECT COALESCE(MAX(message_id), 0) FROM messages").fetchone()
            before = self.conn.total_changes
            if rows:
                self.conn.executemany(self._insert_sql, rows)
            stored = self.conn.total_changes - before
            if dead:
                self._insert_dead(dead)
        first = None
        if stored:
            (first,) = self.conn.execute("SELECT MIN(message_id) FROM messages WHERE message_id > ?",
                                         (last,)).fetchone()
        return stored, first

    def _insert_without_null_columns(self, rows: Sequence[tuple[Any, ...]]) -> tuple[str, Iterable[tuple[Any, ...]]]:
        # sqlite3 binds a None through its adapter lookup, three times an int's cost; a plain listen's rows have
        # five columns that are NULL throughout (run, object, native labels, kinds, content hash). Leaving those out
        # of the statement is worth ~1 us a message. Only the columns that can be NULL throughout are looked at,
        # each in one C-level pass (itemgetter), and rows are projected the same way, without transposing them.
        null = {i for i in _OFTEN_NULL if list(map(itemgetter(i), rows)).count(None) == len(rows)}
        if _NATIVE not in null and all(map(is_, map(itemgetter(_NATIVE), rows), map(itemgetter(_CLASS_IDS), rows))):
            # The labels are the class ids (ELAsTiCC2 schemes): NULL means "as class_ids" (see the view).
            null.add(_NATIVE)
        if not null:
            return self._insert_sql, rows
        keep = tuple(i for i in range(len(MESSAGE_COLUMNS)) if i not in null)
        sql = self._insert_by_columns.get(keep)
        if sql is None:
            names = ", ".join(f"[{MESSAGE_COLUMNS[i]}]" for i in keep)
            sql = self._insert_by_columns[keep] = (
                f"INSERT OR IGNORE INTO messages ({names}) VALUES ({', '.join('?' for _ in keep)})"
            )
        return sql, map(itemgetter(*keep), rows)

    def _insert_dead(self, dead: Sequence[DeadLetter]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO dead_letters (run_id, broker, source, partition, offset, key, payload, error,"
            " received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(d.run_id, d.broker, d.source, d.partition, d.offset, d.key, d.payload, d.error,
              d.received_ms or now_ms()) for d in dead],
        )

    def count_messages(self, broker: str, run_id: str | None = None) -> int:
        """Messages plus dead letters a broker plugin has in the store (for one run, when given)."""
        where, params = ("AND m.run_id = ?", (broker, run_id)) if run_id else ("", (broker,))
        (messages,) = self.conn.execute(
            f"SELECT COUNT(*) FROM messages m JOIN classifiers c USING (classifier_id) WHERE c.broker = ? {where}",
            params).fetchone()
        (dead,) = self.conn.execute(
            f"SELECT COUNT(*) FROM dead_letters WHERE broker = ? {where.replace('m.', '')}", params).fetchone()
        return int(messages) + int(dead)

    # -- REST pollers -----------------------------------------------------------------------------------------
    def rest_cursor(self, broker: str, stream: str = "default") -> str | None:
        """Where the last REST poll of ``broker``'s ``stream`` stopped (None before the first)."""
        row = self.conn.execute("SELECT cursor FROM rest_cursors WHERE broker = ? AND stream = ?",
                                (broker, stream)).fetchone()
        return row[0] if row else None

    def set_rest_cursor(self, broker: str, stream: str, cursor: str | None) -> None:
        """Record where the REST poll of ``broker``'s ``stream`` resumes."""
        self.conn.execute(
            "INSERT INTO rest_cursors VALUES (?, ?, ?, ?) ON CONFLICT (broker, stream) DO UPDATE SET"
            " cursor = excluded.cursor, updated_ms = excluded.updated_ms",
            (broker, stream, cursor, now_ms()),
        )

    def close(self) -> None:  # noqa: D102
        self.conn.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection runs in autocommit mode)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
