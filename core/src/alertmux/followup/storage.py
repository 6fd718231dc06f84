"""Follow-up storage: positions, rankings, requests with their parts and history, data products, spectra.

The tables come from the store's ``0002_followup`` migration. This module writes SQLite SQL on the store's
connection; a PostgreSQL store will bring its own implementation of the same methods.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from alertmux.followup.models import (
    CHARGED,
    OPEN,
    TERMINAL,
    DataProduct,
    Part,
    RankedTarget,
    Ranking,
    RequestRecord,
    RequestState,
)
from alertmux.store import SqliteStore, Store, now_ms

SPECTROSCOPY_BROKER = "followup"
"""The ``classifiers.broker`` of spectroscopic classifications reported back, so scoring lists them apart."""


class FollowupStore:
    """The follow-up tables of a store."""

    def __init__(self, store: Store) -> None:
        """Wrap an open store (SQLite: the follow-up tables live in the same file)."""
        if not isinstance(store, SqliteStore):
            raise TypeError("follow-up storage needs the SQLite store in this version")
        self.store = store
        self.conn = store.conn

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- positions ----------------------------------------------------------------------------------------------
    def record_positions(self, rows: Iterable[tuple[int, float, float]]) -> None:
        """Record (diaObjectId, ra, dec) of objects (the latest position wins)."""
        with self._transaction():
            self.conn.executemany(
                "INSERT INTO followup_positions VALUES (?, ?, ?, ?) ON CONFLICT (dia_object_id) DO UPDATE SET"
                " ra = excluded.ra, dec = excluded.dec, recorded_ms = excluded.recorded_ms",
                [(oid, ra, dec, now_ms()) for oid, ra, dec in rows],
            )

    def record_alert_positions(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Record positions from alerts, ELAsTiCC (``ra``/``decl``) or Rubin (``ra``/``dec``) records alike.

        The diaObject's position wins over the diaSource's; alerts without an object id or a position are skipped.
        """
        rows = {}
        for alert in alerts:
            source = alert.get("diaSource") or {}
            obj = alert.get("diaObject") or {}
            oid = source.get("diaObjectId", obj.get("diaObjectId"))
            for holder in (obj, source):
                ra, dec = holder.get("ra"), holder.get("decl", holder.get("dec"))
                if oid is not None and ra is not None and dec is not None:
                    rows[oid] = (float(ra), float(dec))
                    break
        self.record_positions((oid, ra, dec) for oid, (ra, dec) in rows.items())

    def positions(self, object_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
        """Known positions of these objects."""
        found: dict[int, tuple[float, float]] = {}
        for chunk in _chunks(object_ids, 500):
            marks = ",".join("?" * len(chunk))
            for oid, ra, dec in self.conn.execute(
                f"SELECT dia_object_id, ra, dec FROM followup_positions WHERE dia_object_id IN ({marks})", chunk
            ):
                found[oid] = (ra, dec)
        return found

    # -- rankings -----------------------------------------------------------------------------------------------
    def save_ranking(
        self, strategy: str, options: Mapping[str, Any], mjd_now: float | None, candidates: int,
        targets: Sequence[RankedTarget], run_id: str | None = None,
    ) -> Ranking:
        """Store a ranking and its rows; it becomes the latest."""
        created = now_ms()
        with self._transaction():
            cursor = self.conn.execute(
                "INSERT INTO followup_rankings (created_ms, strategy, options, mjd_now, candidates, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (created, strategy, json.dumps(options, default=str), mjd_now, candidates, run_id),
            )
            ranking_id = int(cursor.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO followup_ranked VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(ranking_id, t.rank, t.dia_object_id, t.priority, t.score, t.reason, t.telescope, t.exposure_s,
                  t.ra, t.dec, t.last_mag, t.last_band) for t in targets],
            )
        return Ranking(ranking_id, created, strategy, dict(options), mjd_now, candidates, tuple(targets))

    def ranking(self, ranking_id: int | None = None) -> Ranking | None:
        """A stored ranking (the latest when ``ranking_id`` is None), or None when there is none."""
        if ranking_id is None:
            row = self.conn.execute(
                "SELECT ranking_id, created_ms, strategy, options, mjd_now, candidates FROM followup_rankings"
                " ORDER BY ranking_id DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT ranking_id, created_ms, strategy, options, mjd_now, candidates FROM followup_rankings"
                " WHERE ranking_id = ?", (ranking_id,)
            ).fetchone()
        if row is None:
            return None
        targets = tuple(
            RankedTarget(*r)
            for r in self.conn.execute(
                "SELECT rank, dia_object_id, priority, score, reason, telescope, exposure_s, ra, dec, last_mag,"
                " last_band FROM followup_ranked WHERE ranking_id = ? ORDER BY rank", (row[0],)
            )
        )
        return Ranking(row[0], row[1], row[2], json.loads(row[3] or "{}"), row[4], row[5], targets)

    # -- requests -----------------------------------------------------------------------------------------------
    def create_request(
        self, *, facility: str, name: str, proposal: str | None, dia_object_id: int | None, ranking_id: int | None,
        priority: int | None, payload: Mapping[str, Any], exposure_s: float | None, duration_s: float | None,
        state: RequestState = "unconfirmed", native_state: str = "SENDING",
    ) -> RequestRecord:
        """Record a request before it is sent (``unconfirmed``): a crash after sending leaves a trace to resolve."""
        created = now_ms()
        with self._transaction():
            cursor = self.conn.execute(
                "INSERT INTO followup_requests (facility, proposal, name, dia_object_id, ranking_id, priority, state,"
                " native_state, payload, duration_s, exposure_s, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (facility, proposal, name, dia_object_id, ranking_id, priority, state, native_state,
                 json.dumps(payload, default=str), duration_s, exposure_s, created, created),
            )
            request_id = int(cursor.lastrowid or 0)
            self._event(request_id, None, state, native_state, "recorded before sending", created)
        return self.request(request_id)  # type: ignore[return-value]

    def update_request(
        self, request_id: int, *, state: RequestState, native_state: str, detail: str = "",
        facility_id: str | None = None, url: str | None = None, parts: Sequence[Part] = (),
        duration_s: float | None = None, response: Mapping[str, Any] | None = None, submitted: bool = False,
    ) -> bool:
        """Apply a state change (and the parts' changes); only actual changes are added to the history.

        Returns:
            Whether anything changed.
        """
        at = now_ms()
        changed = False
        with self._transaction():
            row = self.conn.execute(
                "SELECT state, native_state FROM followup_requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no follow-up request {request_id}")
            if (row[0], row[1]) != (state, native_state):
                changed = True
                self._event(request_id, None, state, native_state, detail, at)
            self.conn.execute(
                "UPDATE followup_requests SET state = ?, native_state = ?, updated_ms = ?,"
                " facility_id = COALESCE(?, facility_id), url = COALESCE(?, url),"
                " duration_s = COALESCE(?, duration_s), response = COALESCE(?, response),"
                " submitted_ms = CASE WHEN ? THEN COALESCE(submitted_ms, ?) ELSE submitted_ms END,"
                " closed_ms = CASE WHEN ? THEN COALESCE(closed_ms, ?) ELSE NULL END,"
                " detail = CASE WHEN ? != '' THEN ? ELSE detail END WHERE request_id = ?",
                (state, native_state, at, facility_id, url, duration_s,
                 json.dumps(response, default=str) if response is not None else None,
                 submitted, at, state in TERMINAL, at, detail, detail, request_id),
            )
            for part in parts:
                old = self.conn.execute(
                    "SELECT state, native_state FROM followup_request_parts WHERE request_id = ? AND part_id = ?",
                    (request_id, part.part_id),
                ).fetchone()
                if old is None or (old[0], old[1]) != (part.state, part.native_state):
                    changed = True
                    self._event(request_id, part.part_id, part.state, part.native_state, "", at)
                    self.conn.execute(
                        "INSERT INTO followup_request_parts VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id, part_id)"
                        " DO UPDATE SET state = excluded.state, native_state = excluded.native_state,"
                        " updated_ms = excluded.updated_ms",
                        (request_id, part.part_id, part.state, part.native_state, at),
                    )
        return changed

    def _event(self, request_id: int, part_id: str | None, state: str, native: str, detail: str, at: int) -> None:
        self.conn.execute(
            "INSERT INTO followup_events (request_id, part_id, at_ms, state, native_state, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, part_id, at, state, native, detail or None),
        )

    _REQUEST_COLUMNS = (
        "request_id, facility, name, state, proposal, dia_object_id, native_state, facility_id, url, priority,"
        " duration_s, exposure_s, created_ms, submitted_ms, updated_ms, detail"
    )

    def _records(self, where: str, params: Sequence[Any]) -> list[RequestRecord]:
        rows = self.conn.execute(
            f"SELECT {self._REQUEST_COLUMNS} FROM followup_requests {where} ORDER BY request_id", params
        ).fetchall()
        parts: dict[int, list[Part]] = {}
        if rows:
            ids = [r[0] for r in rows]
            for chunk in _chunks(ids, 500):
                for rid, pid, state, native in self.conn.execute(
                    "SELECT request_id, part_id, state, native_state FROM followup_request_parts WHERE request_id"
                    f" IN ({','.join('?' * len(chunk))}) ORDER BY request_id, part_id", chunk
                ):
                    parts.setdefault(rid, []).append(Part(pid, state, native))
        return [
            RequestRecord(
                request_id=r[0], facility=r[1], name=r[2], state=r[3], proposal=r[4], dia_object_id=r[5],
                native_state=r[6], facility_id=r[7], url=r[8], priority=r[9], duration_s=r[10], exposure_s=r[11],
                created_ms=r[12], submitted_ms=r[13], updated_ms=r[14], detail=r[15],
                parts=tuple(parts.get(r[0], ())),
            )
            for r in rows
        ]

    def request(self, request_id: int) -> RequestRecord | None:
        """One stored request."""
        found = self._records("WHERE request_id = ?", (request_id,))
        return found[0] if found else None

    def request_by_name(self, facility: str, name: str) -> RequestRecord | None:
        """The request alertmux gave this unique name at this facility."""
        found = self._records("WHERE facility = ? AND name = ?", (facility, name))
        return found[0] if found else None

    def requests(self, facility: str | None = None, states: Iterable[str] | None = None) -> list[RequestRecord]:
        """Stored requests, oldest first, optionally of one facility and in some states."""
        clauses, params = [], []
        if facility:
            clauses.append("facility = ?")
            params.append(facility)
        if states is not None:
            wanted = sorted(states)
            clauses.append(f"state IN ({','.join('?' * len(wanted))})")
            params += wanted
        return self._records(("WHERE " + " AND ".join(clauses)) if clauses else "", params)

    def requests_for_object(self, dia_object_id: int) -> list[RequestRecord]:
        """Every request for one object (any facility), oldest first."""
        return self._records("WHERE dia_object_id = ?", (dia_object_id,))

    def open_requests(self, facility: str | None = None) -> list[RequestRecord]:
        """Requests not in a terminal state."""
        return self.requests(facility, OPEN)

    def requested_objects(self, exclude_states: Iterable[str] = ("canceled", "failed", "expired")) -> set[int]:
        """Objects with a request that is not dead (any facility)."""
        excluded = sorted(exclude_states)
        rows = self.conn.execute(
            "SELECT DISTINCT dia_object_id FROM followup_requests WHERE dia_object_id IS NOT NULL"
            f" AND state NOT IN ({','.join('?' * len(excluded))})", excluded,
        )
        return {r[0] for r in rows}

    def usage(self, facility: str, proposal: str | None) -> tuple[int, float]:
        """(requests, hours) charged to a proposal at a facility: open or completed requests."""
        charged = sorted(CHARGED)
        count, seconds = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(COALESCE(duration_s, exposure_s, 0)), 0) FROM followup_requests"
            f" WHERE facility = ? AND COALESCE(proposal, '') = ? AND state IN ({','.join('?' * len(charged))})",
            (facility, proposal or "", *charged),
        ).fetchone()
        return int(count), float(seconds) / 3600.0

    def history(self, request_id: int) -> list[dict[str, Any]]:
        """A request's state changes, oldest first."""
        return [
            {"at_ms": r[0], "part_id": r[1], "state": r[2], "native_state": r[3], "detail": r[4]}
            for r in self.conn.execute(
                "SELECT at_ms, part_id, state, native_state, detail FROM followup_events WHERE request_id = ?"
                " ORDER BY event_id", (request_id,)
            )
        ]

    # -- data products ------------------------------------------------------------------------------------------
    def add_products(self, request_id: int, products: Iterable[DataProduct]) -> int:
        """Record data products of a request; returns how many were new."""
        with self._transaction():
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO followup_products (request_id, product_id, filename, url, created, kind,"
                " fetched_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(request_id, p.product_id, p.filename, p.url, p.created, p.kind, now_ms()) for p in products],
            )
            return self.conn.total_changes - before

    def products(self, request_id: int) -> list[DataProduct]:
        """A request's recorded data products."""
        return [
            DataProduct(*r)
            for r in self.conn.execute(
                "SELECT product_id, filename, url, created, kind FROM followup_products WHERE request_id = ?"
                " ORDER BY product_id", (request_id,)
            )
        ]

    def set_product_path(self, request_id: int, product_id: str, path: str) -> None:
        """Remember where a product was downloaded to."""
        self.conn.execute(
            "UPDATE followup_products SET local_path = ? WHERE request_id = ? AND product_id = ?",
            (path, request_id, product_id),
        )

    # -- spectroscopic classifications --------------------------------------------------------------------------
    def report_spectrum(
        self, *, dia_object_id: int, facility: str, mjd: float, class_id: int, redshift: float | None = None,
        request_id: int | None = None, classifier: tuple[str, str, str, str] | None = None,
    ) -> tuple[int, bool]:
        """Store a spectroscopic classification (DESC's ``reportspectruminfo``) beside the broker classifications.

        It becomes a classification message of probability 1 from a classifier of its own (broker
        ``followup``, broker name the facility), attached to the object's latest alert at or before ``mjd`` (or
        its latest alert), so scoring shows it like any broker's. Reporting the same (object, facility, mjd)
        again changes nothing.

        Returns:
            (spectrum id, whether it was new).
        """
        identity = classifier or (facility, "spectrum", "SpectroscopicClassification", "reportspectruminfo")
        alert = self.conn.execute(
            "SELECT alert_id, dia_source_id, run_id FROM alerts WHERE dia_object_id = ?"
            " ORDER BY (mjd <= ?) DESC, mjd DESC, alert_id DESC LIMIT 1", (dia_object_id, mjd),
        ).fetchone()
        classifier_id = self.store.classifier_id(SPECTROSCOPY_BROKER, identity)
        at = now_ms()
        with self._transaction():
            existing = self.conn.execute(
                "SELECT spectrum_id FROM followup_spectra WHERE dia_object_id = ? AND facility = ? AND mjd = ?",
                (dia_object_id, facility, mjd),
            ).fetchone()
            if existing:
                return existing[0], False
            alert_id, source_id, run_id = alert if alert else (None, None, None)
            content_hash = None if alert_id is not None else f"spectrum:{facility}:{mjd}"
            cursor = self.conn.execute(
                "INSERT OR IGNORE INTO messages (classifier_id, run_id, alert_id, dia_source_id, dia_object_id,"
                " native_scheme, class_ids, probabilities, native_labels, top_class_id, top_probability,"
                " broker_publish_ms, ingested_ms, topic, content_hash)"
                " VALUES (?, ?, ?, ?, ?, 'elasticc2', ?, '[1]', ?, ?, 1.0, ?, ?, ?, ?)",
                (classifier_id, run_id, alert_id, source_id, dia_object_id, json.dumps([class_id]),
                 json.dumps([class_id]), class_id, at, at, f"followup:{facility}", content_hash),
            )
            message_id = cursor.lastrowid if cursor.rowcount else None
            cursor = self.conn.execute(
                "INSERT INTO followup_spectra (dia_object_id, facility, mjd, redshift, class_id, request_id,"
                " message_id, reported_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (dia_object_id, facility, mjd, redshift, class_id, request_id, message_id, at),
            )
            return int(cursor.lastrowid or 0), True

    def spectra(self, dia_object_id: int | None = None) -> list[dict[str, Any]]:
        """Reported spectroscopic classifications (DESC's ``getknownspectruminfo``)."""
        sql = ("SELECT spectrum_id, dia_object_id, facility, mjd, redshift, class_id, request_id, reported_ms"
               " FROM followup_spectra")
        params: tuple[Any, ...] = ()
        if dia_object_id is not None:
            sql += " WHERE dia_object_id = ?"
            params = (dia_object_id,)
        keys = ("spectrum_id", "dia_object_id", "facility", "mjd", "redshift", "class_id", "request_id",
                "reported_ms")
        return [dict(zip(keys, r, strict=True)) for r in self.conn.execute(sql + " ORDER BY spectrum_id", params)]

    def spectroscopic_objects(self) -> set[int]:
        """Objects with a reported spectroscopic classification."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT dia_object_id FROM followup_spectra")}


def record_positions(store: Store, alerts: Iterable[Mapping[str, Any]]) -> None:
    """Record the positions of the objects of these alerts, for follow-up (a no-op on a store without the tables).

    The harness calls it as it records a source's objects, so that ``alertmux followup`` knows where they are.
    """
    if isinstance(store, SqliteStore):
        FollowupStore(store).record_alert_positions(alerts)


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]
