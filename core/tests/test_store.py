"""The SQLite store: idempotent writes, dead letters, the classifications view, migrations, the summary."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alertmux import BrokerMessage, BrokerSpec, Delivery, NormalizedLabel, NormalizerSpec, hookimpl
from alertmux.builtin import elasticc
from alertmux.errors import UsageError
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.store import MIGRATIONS, DeadLetter, SqliteStore, Store, TruthRow, open_store

IDENTITY = ("FakeBroker", "v1.0", "RandomSNType", "Perfect")
KAFKA = Delivery("topic-a", 0, 7, 1_700_000_000_000)


class MixedSchemePlugin:
    """A broker whose native labels are a mix of probabilities, a score and a context tag."""

    @hookimpl
    def alertmux_brokers(self) -> Iterator[BrokerSpec]:
        yield BrokerSpec(name="mixed", description="test broker")

    @hookimpl
    def alertmux_classification_normalizers(self) -> Iterator[NormalizerSpec]:
        table = {
            "SNIa": NormalizedLabel(2222),
            "AGN": NormalizedLabel(2332),
            "anomaly": NormalizedLabel(None, kind="score"),
            "galaxy-host": NormalizedLabel(None, kind="context"),
        }
        yield NormalizerSpec(scheme="mixed.v1", description="test scheme", table=table)


@pytest.fixture
def ingestor(plugin_host: Callable[..., PluginHost], tmp_store: Store) -> Ingestor:
    return Ingestor(plugin_host(elasticc, MixedSchemePlugin()), "elasticc", tmp_store)


def _message(alert_id: int | None = 1, labels: tuple[int, ...] = (2222, 2223), values: tuple[float, ...] = (0.75, 0.25),
             **fields: Any) -> BrokerMessage:
    return BrokerMessage(IDENTITY, "elasticc2", list(labels), list(values), alert_id=alert_id,
                         dia_source_id=alert_id, **fields)


def _count(store: Store, table: str) -> int:
    assert isinstance(store, SqliteStore)
    return store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_redelivery_adds_nothing(ingestor: Ingestor, tmp_store: Store) -> None:
    rows = ingestor.rows([_message(1), _message(2)], KAFKA)
    assert tmp_store.write_batch(rows) == 2
    assert tmp_store.write_batch(rows) == 0
    # A redelivery whose row differs only in transport details (another offset, a later ingest) is still one.
    again = ingestor.rows([_message(1)], Delivery("topic-a", 0, 99, None))
    assert tmp_store.write_batch(again) == 0
    assert _count(tmp_store, "messages") == 2


def test_a_second_classifier_on_the_same_alert_is_a_new_row(ingestor: Ingestor, tmp_store: Store) -> None:
    other = BrokerMessage(("FakeBroker", "v1.0", "Other", "-"), "elasticc2", [2222], [1.0], alert_id=1)
    assert tmp_store.write_batch(ingestor.rows([_message(1), other], KAFKA)) == 2


def test_rest_rows_without_alert_id_are_deduplicated_by_content(ingestor: Ingestor, tmp_store: Store) -> None:
    def rest(values: tuple[float, ...]) -> BrokerMessage:
        return BrokerMessage(IDENTITY, "elasticc2", [2222, 2223], list(values), dia_object_id=42)

    rest_delivery = Delivery("https://broker.example/api/classifications")
    first = ingestor.rows([rest((0.75, 0.25))], rest_delivery)
    assert first[0][2] is None  # alert_id column: nothing to key on but the content
    assert tmp_store.write_batch(first) == 1
    assert tmp_store.write_batch(ingestor.rows([rest((0.75, 0.25))], rest_delivery)) == 0
    # Same object, new content: a new classification, not a duplicate.
    assert tmp_store.write_batch(ingestor.rows([rest((0.5, 0.5))], rest_delivery)) == 1
    # Same content for another object: new as well.
    other_object = BrokerMessage(IDENTITY, "elasticc2", [2222, 2223], [0.75, 0.25], dia_object_id=43)
    assert tmp_store.write_batch(ingestor.rows([other_object], rest_delivery)) == 1
    assert _count(tmp_store, "messages") == 3


def test_dead_letters_keep_raw_bytes_and_where_they_came_from(tmp_store: Store) -> None:
    raw = b"\x00\xffnot avro\x80"
    letter = DeadLetter(broker="elasticc", source="topic-a", payload=raw, error="DecodeError: bad", partition=2,
                        offset=17, key=b"k", run_id="run-1")
    assert tmp_store.write_batch([], [letter]) == 0  # dead letters are not counted as stored messages
    [stored] = tmp_store.dead_letters()
    assert stored.id is not None and stored.received_ms > 0
    assert (stored.payload, stored.source, stored.partition, stored.offset, stored.key) == (raw, "topic-a", 2, 17, b"k")
    assert (stored.broker, stored.error, stored.run_id) == ("elasticc", "DecodeError: bad", "run-1")
    assert tmp_store.dead_letters("another-broker") == []


def test_resolve_dead_letter(tmp_store: Store) -> None:
    letters = [DeadLetter("elasticc", "t", bytes([i]), "bad") for i in range(3)]
    tmp_store.write_batch([], letters)
    first, second, third = tmp_store.dead_letters()
    tmp_store.resolve_dead_letter(first.id or 0)
    tmp_store.resolve_dead_letter(second.id or 0, error="still bad: KeyError")
    assert [d.id for d in tmp_store.dead_letters()] == [second.id, third.id]
    assert tmp_store.dead_letters()[0].error == "still bad: KeyError"  # a failed replay keeps it, with the new reason
    assert len(tmp_store.dead_letters(include_resolved=True)) == 3


def test_rows_and_dead_letters_are_one_transaction(ingestor: Ingestor, tmp_store: Store) -> None:
    rows = ingestor.rows([_message(1)], KAFKA)
    # sqlite cannot bind an object: the dead letter fails after the message row went in, which must roll back.
    broken = DeadLetter("elasticc", "t", object(), "bad")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        tmp_store.write_batch(rows, [broken])
    assert _count(tmp_store, "messages") == 0 and tmp_store.dead_letters() == []


def test_classifications_view_has_one_row_per_class(tmp_store: Store, plugin_host: Callable[..., PluginHost]) -> None:
    ingestor = Ingestor(plugin_host(MixedSchemePlugin()), "mixed", tmp_store)
    message = BrokerMessage(("M", "1", "c", "p"), "mixed.v1", ["SNIa", "AGN", "anomaly", "galaxy-host", "martian"],
                            [0.5, 0.25, 3.5, None, 0.125], alert_id=5, dia_source_id=5, dia_object_id=9)
    tmp_store.write_batch(ingestor.rows([message], KAFKA))
    assert isinstance(tmp_store, SqliteStore)
    rows = tmp_store.conn.execute(
        "SELECT broker, classifier_name, alert_id, dia_object_id, class_id, probability, kind, native_class,"
        " native_scheme FROM classifications ORDER BY message_id"
    ).fetchall()
    assert [r[4:8] for r in rows] == [
        (2222, 0.5, "probability", "SNIa"),
        (2332, 0.25, "probability", "AGN"),
        (None, 3.5, "score", "anomaly"),
        (None, None, "context", "galaxy-host"),
        (None, 0.125, "probability", "martian"),  # unknown to the scheme: kept verbatim, class_id null
    ]
    assert {r[:4] + r[8:] for r in rows} == {("mixed", "c", 5, 9, "mixed.v1")}


def test_classifications_view_with_integer_labels(ingestor: Ingestor, tmp_store: Store) -> None:
    tmp_store.write_batch(ingestor.rows([_message(3, (2222, 9999), (0.75, 0.25))], KAFKA))
    assert isinstance(tmp_store, SqliteStore)
    rows = tmp_store.conn.execute("SELECT class_id, native_class, kind FROM classifications").fetchall()
    assert sorted(rows, key=str) == [(2222, "2222", "probability"), (None, "9999", "probability")]


def test_labels_that_are_the_class_ids_are_stored_once(ingestor: Ingestor, tmp_store: Store) -> None:
    # An all-ELAsTiCC2 batch keeps native_labels NULL (the view reads the class ids instead); a batch with any
    # other label vector keeps every row's labels as they were.
    tmp_store.write_batch(ingestor.rows([_message(1), _message(2)], KAFKA))
    tmp_store.write_batch(ingestor.rows([_message(3), _message(4, (2222, 9999))], KAFKA))
    assert isinstance(tmp_store, SqliteStore)
    stored = tmp_store.conn.execute("SELECT alert_id, native_labels FROM messages ORDER BY alert_id").fetchall()
    assert stored == [(1, None), (2, None), (3, "[2222, 2223]"), (4, "[2222, 9999]")]
    view = tmp_store.conn.execute(
        "SELECT alert_id, class_id, native_class FROM classifications ORDER BY alert_id, class_id"
    ).fetchall()
    assert view == [(1, 2222, "2222"), (1, 2223, "2223"), (2, 2222, "2222"), (2, 2223, "2223"),
                    (3, 2222, "2222"), (3, 2223, "2223"), (4, None, "9999"), (4, 2222, "2222")]


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    first = open_store(path)
    first.write_batch([], [DeadLetter("elasticc", "t", b"x", "bad")])
    first.close()
    second = open_store(path)  # must not try to create the tables again, nor lose data
    assert isinstance(second, SqliteStore)
    applied = [r[0] for r in second.conn.execute("SELECT name FROM _migrations")]
    assert applied == [name for name, _ in MIGRATIONS]
    assert len(second.dead_letters()) == 1
    second.close()


def test_open_store_accepts_sqlite_urls_and_says_plainly_when_postgres_is_unreachable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/url.db")
    store.close()
    assert (tmp_path / "url.db").exists()
    with pytest.raises(UsageError, match=r"cannot open PostgreSQL database postgresql://127\.0\.0\.1:1/alertmux"):
        open_store("postgresql://127.0.0.1:1/alertmux")  # nothing listens on port 1


def test_unopenable_database_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(UsageError, match="cannot open database"):
        open_store(tmp_path / "file" / "x.db")


def test_runs_sent_alerts_and_summary(ingestor: Ingestor, tmp_store: Store) -> None:
    run = tmp_store.start_run("demo", {"objects": 2})
    alerts = [
        {"alertId": a, "diaSource": {"diaSourceId": a, "diaObjectId": obj, "midPointTai": 60000.0 + a,
                                      "filterName": "r", "psFlux": 1.0, "psFluxErr": 0.1}}
        for a, obj in ((1, 100), (2, 100), (3, 200))
    ]
    tmp_store.record_objects(run, [TruthRow(100, 2222, 10, None, None), TruthRow(200, 2223, 20, None, None)], alerts)
    tmp_store.record_sent(run, "alerts", [1, 2, 3], sent_ms=1_000)
    tmp_store.record_sent(run, "alerts", [1], sent_ms=5_000)  # a resend does not move the sent time
    assert tmp_store.sent_alert_ids(run, "alerts") == {1, 2, 3}
    assert tmp_store.truth_class(200) == 2223 and tmp_store.truth_class(999) is None
    assert tmp_store.detection_count(1) == 1
    ingestor.run_id = run
    # Object 100: wrong on its first alert, right on its latest; object 200: wrong on its only alert.
    messages = [_message(1, (2223, 2222), (0.75, 0.25)), _message(2, (2222, 2223), (0.75, 0.25)),
                _message(3, (2222, 2223), (0.75, 0.25))]
    tmp_store.write_batch(ingestor.rows(messages, KAFKA, ingested_ms=3_000))
    summary = tmp_store.summary(run)
    assert summary["alerts_sent"] == 3 and summary["dead_letters"] == 0
    info = summary["brokers"]["elasticc"]
    assert (info["messages"], info["classifications"], info["dead_letters"]) == (3, 6, 0)
    assert info["top1_accuracy"] == pytest.approx(0.5) and info["objects_scored"] == 2
    assert info["turnaround_s"]["p50"] == pytest.approx(2.0)
    tmp_store.finish_run(run, summary)
