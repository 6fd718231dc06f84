"""The PostgreSQL store keeps the SQLite store's contract: the same calls give the same answers on both."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alertmux import BrokerMessage, BrokerSpec, Delivery, NormalizedLabel, NormalizerSpec, hookimpl
from alertmux.builtin import elasticc
from alertmux.errors import UsageError
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.store import DeadLetter, Store, TruthRow, open_store
from alertmux.store_pg import MIGRATIONS, PostgresStore, StoreUnavailable, redact_url, restore_url

IDENTITY = ("FakeBroker", "v1.0", "RandomSNType", "Perfect")
KAFKA = Delivery("topic-a", 0, 7, 1_700_000_000_000)


class MixedSchemePlugin:
    """A broker whose labels mix probabilities, a score, a context tag and a label no table knows."""

    @hookimpl
    def alertmux_brokers(self) -> Iterator[BrokerSpec]:
        yield BrokerSpec(name="mixed", description="test broker")

    @hookimpl
    def alertmux_classification_normalizers(self) -> Iterator[NormalizerSpec]:
        table = {"SNIa": NormalizedLabel(2222), "AGN": NormalizedLabel(2332),
                 "anomaly": NormalizedLabel(None, kind="score"), "galaxy-host": NormalizedLabel(None, kind="context"),
                 "huge-id": NormalizedLabel(70000)}
        yield NormalizerSpec(scheme="mixed.v1", description="test scheme", table=table)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same test on both stores: what passes on SQLite must pass on PostgreSQL."""
    url = str(tmp_path / "a.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresStore]:
    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


def host() -> PluginHost:
    return PluginHost(load_entrypoints=False, plugins=[elasticc, MixedSchemePlugin()])


def message(alert_id: int | None = 1, labels: tuple[Any, ...] = (2222, 2223), values: tuple[Any, ...] = (0.75, 0.25),
            identity: tuple[str, str, str, str] = IDENTITY, **fields: Any) -> BrokerMessage:
    return BrokerMessage(identity, "elasticc2", list(labels), list(values), alert_id=alert_id,
                         dia_source_id=alert_id, **fields)


def count(store: Store, table: str) -> int:
    return store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # type: ignore[attr-defined]


def test_redelivery_adds_nothing_and_a_second_classifier_is_a_new_row(store: Store) -> None:
    ingestor = Ingestor(host(), "elasticc", store)
    rows = ingestor.rows([message(1), message(2)], KAFKA)
    assert store.write_batch(rows) == 2
    assert store.write_batch(rows) == 0
    assert store.write_batch(ingestor.rows([message(1)], Delivery("topic-a", 0, 99, None))) == 0
    # Duplicates inside one batch count once too.
    assert store.write_batch(ingestor.rows([message(3), message(3)], KAFKA)) == 1
    other = message(1, identity=("FakeBroker", "v1.0", "Other", "-"))
    assert store.write_batch(ingestor.rows([other], KAFKA)) == 1
    assert count(store, "messages") == 4


def test_rest_rows_without_alert_id_are_deduplicated_by_content(store: Store) -> None:
    ingestor = Ingestor(host(), "elasticc", store)
    rest = Delivery("https://broker.example/api")

    def rest_message(values: tuple[float, ...], obj: int = 42) -> BrokerMessage:
        return message(None, values=values, dia_object_id=obj)

    assert store.write_batch(ingestor.rows([rest_message((0.75, 0.25))], rest)) == 1
    assert store.write_batch(ingestor.rows([rest_message((0.75, 0.25))], rest)) == 0
    assert store.write_batch(ingestor.rows([rest_message((0.5, 0.5))], rest)) == 1
    assert store.write_batch(ingestor.rows([rest_message((0.75, 0.25), obj=43)], rest)) == 1


def test_dead_letters_keep_raw_bytes_and_replays_resolve_them(store: Store) -> None:
    raw = b"\x00\xffnot avro\x80"
    letter = DeadLetter(broker="elasticc", source="topic-a", payload=raw, error="DecodeError: bad", partition=2,
                        offset=17, key=b"k", run_id="run-1")
    assert store.write_batch([], [letter, DeadLetter("elasticc", "t", b"y", "bad")]) == 0
    first, second = store.dead_letters()
    assert (first.payload, first.source, first.partition, first.offset, first.key) == (raw, "topic-a", 2, 17, b"k")
    assert (first.broker, first.error, first.run_id) == ("elasticc", "DecodeError: bad", "run-1")
    assert first.received_ms > 0 and store.dead_letters("another-broker") == []
    store.resolve_dead_letter(first.id or 0)
    store.resolve_dead_letter(second.id or 0, error="still bad")
    assert [(d.id, d.error) for d in store.dead_letters()] == [(second.id, "still bad")]
    assert len(store.dead_letters(include_resolved=True)) == 2


def test_classifications_view_has_one_row_per_class(store: Store) -> None:
    ingestor = Ingestor(host(), "mixed", store)
    m = BrokerMessage(("M", "1", "c", "p"), "mixed.v1", ["SNIa", "AGN", "anomaly", "galaxy-host", "martian"],
                      [0.5, 0.25, 3.5, None, 0.125], alert_id=5, dia_source_id=5, dia_object_id=9)
    store.write_batch(ingestor.rows([m], KAFKA))
    rows = store.conn.execute(  # type: ignore[attr-defined]
        "SELECT class_id, probability, kind, native_class, broker, alert_id, dia_object_id FROM classifications"
        " ORDER BY message_id").fetchall()
    assert [tuple(r[:4]) for r in rows] == [
        (2222, 0.5, "probability", "SNIa"), (2332, 0.25, "probability", "AGN"), (None, 3.5, "score", "anomaly"),
        (None, None, "context", "galaxy-host"), (None, 0.125, "probability", "martian"),
    ]
    assert {tuple(r[4:]) for r in rows} == {("mixed", 5, 9)}


def test_runs_truth_sent_alerts_and_the_summary_agree_with_sqlite(tmp_path: Path, pg: PostgresStore) -> None:
    summaries = []
    for store in (open_store(tmp_path / "same.db"), pg):
        run = store.start_run("demo", {"objects": 2})
        alerts = [{"alertId": a, "prvDiaSources": [{}] * (a - 1 if obj == 100 else 0),
                   "prvDiaForcedSources": [{"diaForcedSourceId": a * 10 + k, "diaObjectId": obj, "midPointTai": 1.0,
                                            "filterName": "g", "psFlux": 2.0, "psFluxErr": 0.2} for k in range(3)],
                   "diaSource": {"diaSourceId": a, "diaObjectId": obj, "midPointTai": 60000.0 + a,
                                 "filterName": "r", "psFlux": 1.0, "psFluxErr": 0.1}}
                  for a, obj in ((1, 100), (2, 100), (3, 200))]
        store.record_objects(run, [TruthRow(100, 2222, 10, None, None), TruthRow(200, 2223, 20, 1.5, 0.3)], alerts)
        store.record_objects(run, [], alerts[:1])  # recorded again: nothing doubles
        store.record_sent(run, "alerts", [1, 2, 3], sent_ms=1_000)
        store.record_sent(run, "alerts", [1], sent_ms=5_000)  # a resend does not move the sent time
        assert store.sent_alert_ids(run, "alerts") == {1, 2, 3}
        assert store.truth_class(200) == 2223 and store.truth_class(999) is None
        assert (store.detection_count(1), store.detection_count(2), store.detection_count(77)) == (1, 2, None)
        assert count(store, "photometry") == 3 + 9
        ingestor = Ingestor(host(), "elasticc", store, run)
        # Object 100: wrong on its first alert, right on its latest; object 200: wrong on its only alert.
        messages = [message(1, (2223, 2222)), message(2), message(3), message(4)]
        store.write_batch(ingestor.rows(messages, KAFKA, ingested_ms=3_000), [DeadLetter("elasticc", "t", b"x",
                                                                                          "bad", run_id=run)])
        summary = store.summary(run)
        store.finish_run(run, summary)
        assert store.summary(None)["brokers"] == summary["brokers"]
        summaries.append(summary)
    sqlite, postgres = summaries
    assert postgres == sqlite
    info = postgres["brokers"]["elasticc"]
    assert (info["messages"], info["classifications"], info["dead_letters"]) == (4, 8, 1)
    assert info["top1_accuracy"] == pytest.approx(0.5) and info["objects_scored"] == 2
    assert info["turnaround_s"]["p50"] == pytest.approx(2.0)


def test_migrations_are_recorded_and_idempotent(pg_url: str) -> None:
    first = open_store(pg_url)
    first.write_batch([], [DeadLetter("elasticc", "t", b"x", "bad")])
    first.close()
    second = open_store(pg_url)
    assert isinstance(second, PostgresStore)
    applied = [r[0] for r in second.conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert applied == [name for name, _ in MIGRATIONS]
    assert len(second.dead_letters()) == 1
    second.close()


def test_workers_starting_together_migrate_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[Store] = []

    def start() -> None:
        try:
            opened.append(open_store(pg_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 6
    assert count(opened[0], "_migrations") == len(MIGRATIONS)
    for s in opened:
        s.close()


def test_concurrent_writers_of_overlapping_batches_store_each_message_once(pg_url: str) -> None:
    # Redeliveries after a rebalance: two workers write the same messages at once, in different orders.
    stores = [open_store(pg_url) for _ in range(4)]
    all_rows = []
    for s in stores:
        ingestor = Ingestor(host(), "elasticc", s)
        all_rows.append(ingestor.rows([message(i) for i in range(1, 3001)], KAFKA))
    stored: list[int] = []
    errors: list[BaseException] = []

    def write(s: Store, rows: list[tuple[Any, ...]], seed: int) -> None:
        random.Random(seed).shuffle(rows)
        try:
            for k in range(0, len(rows), 500):
                stored.append(s.write_batch(rows[k:k + 500]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, rows, i)) for i, (s, rows) in enumerate(zip(stores, all_rows,
                                                                                                 strict=True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(stored) == 3000 and count(stores[0], "messages") == 3000
    for s in stores:
        s.close()


def test_values_postgres_cannot_hold_are_stored_not_fatal(pg: PostgresStore, caplog: pytest.LogCaptureFixture) -> None:
    ingestor = Ingestor(host(), "mixed", pg)
    nul = BrokerMessage(("Brok\x00er", "1", "c", "p"), "mixed.v1", ["SN\x00Ia", "huge-id", "anomaly"],
                        [1e-50, 0.5, 1e300], alert_id=1, dia_source_id=1)
    with caplog.at_level(logging.WARNING, "alertmux.store_pg"):
        assert pg.write_batch(ingestor.rows([nul], Delivery("topic\x00x", 0, 1))) == 1
    assert "outside the ELAsTiCC2 range" in caplog.text
    row = pg.conn.execute("SELECT class_ids, probabilities, native_labels, topic FROM messages").fetchone()
    assert row == ([None, None, None], [0.0, 0.5, None], ["SN\ufffdIa", "huge-id", "anomaly"], "topic\ufffdx")
    assert pg.conn.execute("SELECT broker_name FROM classifiers").fetchone() == ("Brok\ufffder",)


def test_a_row_postgres_refuses_is_dead_lettered_with_its_position_and_the_rest_stored(pg: PostgresStore) -> None:
    ingestor = Ingestor(host(), "elasticc", pg)
    rows = ingestor.rows([message(1), message(2), message(3)], Delivery("topic-a", 4, 321))
    # The Ingestor refuses such ids itself; the store must still not let one row it cannot hold stop the batch.
    rows[1] = (rows[1][0], rows[1][1], 2**70, *rows[1][3:])
    assert pg.write_batch(rows, [DeadLetter("elasticc", "topic-a", b"x", "bad", 4, 322)]) == 2
    assert [r[0] for r in pg.conn.execute("SELECT alert_id FROM messages ORDER BY alert_id")] == [1, 3]
    decoded, refused = sorted(pg.dead_letters(), key=lambda d: d.error)
    assert (decoded.payload, decoded.offset) == (b"x", 322)  # the batch's own dead letter is kept too
    assert "row refused by PostgreSQL" in refused.error and "out of range" in refused.error
    assert (refused.broker, refused.source, refused.partition, refused.offset) == ("elasticc", "topic-a", 4, 321)
    assert str(2**70) in refused.payload.decode()


def test_a_dropped_connection_is_reopened_and_the_write_redone(pg: PostgresStore, pg_server: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    ingestor = Ingestor(host(), "elasticc", pg)
    assert pg.write_batch(ingestor.rows([message(1)], KAFKA)) == 1
    with psycopg.connect(pg_server, autocommit=True) as admin:  # only our own backend is terminated
        admin.execute("SELECT pg_terminate_backend(%s)", (pg.conn.info.backend_pid,))
    with caplog.at_level(logging.WARNING, "alertmux.store_pg"):
        assert pg.write_batch(ingestor.rows([message(1), message(2)], KAFKA)) == 1
    assert "unavailable" in caplog.text and "retrying" in caplog.text
    assert count(pg, "messages") == 2


def test_a_server_that_stays_away_ends_in_a_clear_error(pg: PostgresStore) -> None:
    pg.wait = 1.0
    pg._conninfo = "postgresql://alertmux:hunter2@127.0.0.1:9/nowhere?connect_timeout=1"  # nothing listens
    pg._secret = "hunter2"
    pg.conn.close()
    with pytest.raises(StoreUnavailable, match="unreachable for more than 1 s") as raised:
        pg.truth_class(1)
    assert "hunter2" not in str(raised.value)


def test_unreachable_or_wrong_database_is_a_usage_error_without_the_password() -> None:
    with pytest.raises(UsageError, match="cannot open PostgreSQL database") as raised:
        open_store("postgresql://alertmux:s3cret-pw@127.0.0.1:9/alertmux?connect_timeout=2")
    assert "s3cret-pw" not in str(raised.value)
    assert "127.0.0.1:9/alertmux" in str(raised.value)


def test_urls_survive_click_paths_and_are_redacted() -> None:
    url = "postgresql://user:pw@db.example:5433/alerts?sslmode=require"
    assert restore_url(str(Path(url))) == url
    assert restore_url(url) == url
    assert redact_url(url) == "postgresql://user@db.example:5433/alerts"
    assert "pw" not in redact_url("postgresql://user:pw@[bad")


def test_turnaround_percentiles_agree_with_sqlite_on_uneven_counts(tmp_path: Path, pg: PostgresStore) -> None:
    rng = random.Random(5)
    ingested = [rng.randint(1_000, 900_000) for _ in range(997)]
    summaries = []
    for store in (open_store(tmp_path / "p.db"), pg):
        run = store.start_run("demo", {})
        store.record_sent(run, "alerts", list(range(1, 998)), sent_ms=0)
        ingestor = Ingestor(host(), "elasticc", store, run)
        for i, ms in enumerate(ingested, 1):
            store.write_batch(ingestor.rows([message(i)], KAFKA, ingested_ms=ms))
        summaries.append(store.summary(run)["brokers"]["elasticc"]["turnaround_s"])
    assert summaries[1] == summaries[0]
    ordered = sorted(ingested)
    assert summaries[1] == {label: ordered[int(q * 997)] / 1000 for label, q in (("p50", .5), ("p90", .9),
                                                                               ("p99", .99))}


def test_commits_are_durable_even_where_the_server_defaults_to_asynchronous_commit(pg_url: str) -> None:
    store = open_store(pg_url.replace("options=", "options=-csynchronous_commit%3Doff%20"))
    assert isinstance(store, PostgresStore)
    assert store.conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert store.conn.execute("SELECT current_schema()").fetchone()[0].startswith("alertmux_test_")  # type: ignore[index]
    store.close()
