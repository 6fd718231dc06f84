"""Decoding and normalizing ELAsTiCC broker messages through the Ingestor (the path every transport shares)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import pytest

from alertmux import Delivery
from alertmux.builtin import elasticc
from alertmux.errors import DecodeError
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.store import MESSAGE_COLUMNS, SqliteStore, Store

SCHEMAS = Path(__file__).resolve().parents[1] / "src" / "alertmux" / "schemas"
COLUMN = {name: i for i, name in enumerate(MESSAGE_COLUMNS)}
KAFKA = Delivery("elasticc-topic", 1, 41, timestamp_ms=1_700_000_000_999)


def avro(record: dict[str, Any], schema: str) -> bytes:
    """Encode with fastavro straight from the shipped .avsc, independently of alertmux.serde."""
    parsed = fastavro.schema.load_schema(str(SCHEMAS / f"{schema}.avsc"))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    return buffer.getvalue()


def v0_9_1(classifications: list[tuple[int, float]], alert_id: int = 1001, **fields: Any) -> dict[str, Any]:
    return {
        "alertId": alert_id,
        "diaSourceId": alert_id + 1,
        "elasticcPublishTimestamp": 1_700_000_000_000,
        "brokerIngestTimestamp": 1_700_000_000_500,
        "brokerName": "FakeBroker",
        "brokerVersion": "v1.0",
        "classifierName": "RandomSNType",
        "classifierParams": "Perfect",
        "classifications": [{"classId": c, "probability": p} for c, p in classifications],
    } | fields


@pytest.fixture
def ingestor(plugin_host: Callable[..., PluginHost], tmp_store: Store) -> Ingestor:
    return Ingestor(plugin_host(elasticc), "elasticc", tmp_store)


def test_v0_9_1_message_decodes_and_normalizes(ingestor: Ingestor) -> None:
    # Binary fractions survive float32 exactly, so the values can be compared as they are.
    payload = avro(v0_9_1([(2223, 0.25), (2222, 0.625), (2224, 0.125)]), "elasticc.v0_9_1.brokerClassification")
    [message] = ingestor.decode(payload, KAFKA)
    assert message.classifier == ("FakeBroker", "v1.0", "RandomSNType", "Perfect")
    assert (message.scheme, list(message.labels)) == ("elasticc2", [2223, 2222, 2224])
    assert (message.alert_id, message.dia_source_id) == (1001, 1002)
    assert (message.alert_published_ms, message.broker_ingest_ms) == (1_700_000_000_000, 1_700_000_000_500)

    [row] = ingestor.rows([message], KAFKA)
    assert json.loads(row[COLUMN["class_ids"]]) == [2223, 2222, 2224]  # ELAsTiCC2 ids are kept as they are
    assert json.loads(row[COLUMN["native_labels"]]) == [2223, 2222, 2224]
    assert json.loads(row[COLUMN["probabilities"]]) == [0.25, 0.625, 0.125]
    assert (row[COLUMN["top_class_id"]], row[COLUMN["top_probability"]]) == (2222, 0.625)  # argmax
    assert row[COLUMN["kinds"]] is None  # all probabilities: no kinds column needed
    assert row[COLUMN["alert_id"]] == 1001 and row[COLUMN["content_hash"]] is None
    # The message carries no publish time: the Kafka timestamp stands in for it.
    assert row[COLUMN["broker_publish_ms"]] == KAFKA.timestamp_ms
    assert (row[COLUMN["topic"]], row[COLUMN["partition"]], row[COLUMN["offset"]]) == ("elasticc-topic", 1, 41)
    assert ingestor.unknown_labels == {}


def test_v0_9_message_with_two_classifiers_gives_two_crosswalked_messages(ingestor: Ingestor) -> None:
    record = {
        "alertId": 7, "diaSourceId": 8, "elasticcPublishTimestamp": 1_650_000_000_000, "brokerIngestTimestamp": None,
        "brokerName": "OldBroker", "brokerVersion": "2022.1",
        "classifications": [
            {"classifierName": "A", "classifierParams": "pa", "classId": 111, "probability": 0.75},
            {"classifierName": "B", "classifierParams": "pb", "classId": 113, "probability": 0.5},
            {"classifierName": "A", "classifierParams": "pa", "classId": 112, "probability": 0.25},
            {"classifierName": "B", "classifierParams": "pb", "classId": 121, "probability": 0.5},
        ],
    }
    messages = ingestor.decode(avro(record, "elasticc.v0_9.brokerClassification"), KAFKA)
    by_classifier = {m.classifier: m for m in messages}
    assert set(by_classifier) == {("OldBroker", "2022.1", "A", "pa"), ("OldBroker", "2022.1", "B", "pb")}
    a = by_classifier[("OldBroker", "2022.1", "A", "pa")]
    assert (a.scheme, list(a.labels), list(a.values)) == ("elasticc", [111, 112], [0.75, 0.25])
    assert a.broker_ingest_ms is None

    rows = {r[COLUMN["classifier_id"]]: r for r in ingestor.rows(messages, KAFKA)}
    assert len(rows) == 2
    class_ids = sorted(json.loads(r[COLUMN["class_ids"]]) for r in rows.values())
    assert class_ids == [[2222, 2223], [2224, 2232]]  # 111 Ia -> 2222, 112 Ib/c -> 2223, 113 II -> 2224, 121 KN
    natives = sorted(json.loads(r[COLUMN["native_labels"]]) for r in rows.values())
    assert natives == [[111, 112], [113, 121]]  # the 2022 ids are kept verbatim beside the crosswalked ones
    assert sorted(r[COLUMN["top_class_id"]] for r in rows.values()) == [2222, 2224]


def test_unknown_class_id_is_kept_verbatim_and_counted(ingestor: Ingestor, tmp_store: Store) -> None:
    # 9999 is not an ELAsTiCC2 class; it even has the highest probability, but it cannot be the top class.
    payload = avro(v0_9_1([(9999, 0.5), (2222, 0.375), (2223, 0.125)]), "elasticc.v0_9_1.brokerClassification")
    rows = ingestor.rows(ingestor.decode(payload, KAFKA), KAFKA)
    [row] = rows
    assert json.loads(row[COLUMN["class_ids"]]) == [None, 2222, 2223]
    assert json.loads(row[COLUMN["native_labels"]]) == [9999, 2222, 2223]
    assert row[COLUMN["top_class_id"]] == 2222
    assert ingestor.unknown_labels == {("elasticc2", 9999): 1}
    assert tmp_store.write_batch(rows) == 1
    assert isinstance(tmp_store, SqliteStore)
    stored = tmp_store.conn.execute("SELECT class_id FROM classifications WHERE native_class = '9999'").fetchall()
    assert stored == [(None,)]
    ingestor.rows(ingestor.decode(payload, KAFKA), KAFKA)
    assert ingestor.unknown_labels == {("elasticc2", 9999): 2}  # counted per occurrence, not once per vector


def test_json_form_decodes(ingestor: Ingestor) -> None:
    body = v0_9_1([(2222, 0.75), (2223, 0.25)], brokerPublishTimestamp=1_700_000_001_000)
    payload = json.dumps([body, body | {"alertId": 1002}]).encode()
    messages = ingestor.decode(payload, Delivery("https://tom.example/elasticc2/brokermessage"))
    assert [m.alert_id for m in messages] == [1001, 1002]
    assert messages[0].broker_publish_ms == 1_700_000_001_000
    [single] = elasticc.decode_json(json.dumps(body).encode(), KAFKA)
    assert list(single.labels) == [2222, 2223]


def test_json_missing_a_field_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="classifications"):
        elasticc.decode_json(json.dumps({"alertId": 1, "diaSourceId": 2}).encode(), KAFKA)


@pytest.mark.parametrize("payload", [b"", b"garbage", b"\x00\x01\x02\x03" * 20, b'{"alertId": '])
def test_garbage_raises_decode_error(ingestor: Ingestor, payload: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        ingestor.decode(payload, KAFKA)
    assert "avro" in str(info.value) and "json" in str(info.value)  # every decoder's reason is reported


def test_avro_container_of_messages_decodes(ingestor: Ingestor) -> None:
    parsed = fastavro.schema.load_schema(str(SCHEMAS / "elasticc.v0_9_1.brokerClassification.avsc"))
    buffer = io.BytesIO()
    fastavro.writer(buffer, parsed, [v0_9_1([(2222, 1.0)], alert_id=a) for a in (1, 2, 3)])
    assert [m.alert_id for m in ingestor.decode(buffer.getvalue(), KAFKA)] == [1, 2, 3]


def test_dead_letter_has_a_one_line_reason(ingestor: Ingestor) -> None:
    letter = ingestor.dead_letter(b"raw", KAFKA, ValueError("first line\nsecond line"))
    assert letter.error == "ValueError: first line"
    assert (letter.payload, letter.source, letter.partition, letter.offset) == (b"raw", "elasticc-topic", 1, 41)


def test_records_have_the_classification_record_shape(ingestor: Ingestor) -> None:
    from alertmux.models import ClassificationRecord

    payload = avro(v0_9_1([(2222, 0.75), (9999, 0.25)]), "elasticc.v0_9_1.brokerClassification")
    records = list(ingestor.records(ingestor.decode(payload, KAFKA), KAFKA))
    assert [(r["class_id"], r["native_class"]) for r in records] == [(2222, "2222"), (None, "9999")]
    for record in records:
        ClassificationRecord.model_validate(record)


def test_non_finite_and_missing_values_are_stored_as_null(ingestor: Ingestor) -> None:
    from alertmux import BrokerMessage

    message = BrokerMessage(("b", "1", "c", "p"), "elasticc2", [2222, 2223, 2224], [float("nan"), None, 0.5],
                            alert_id=1)
    [row] = ingestor.rows([message], KAFKA)
    assert json.loads(row[COLUMN["probabilities"]]) == [None, None, 0.5]
    assert row[COLUMN["top_class_id"]] == 2224


@pytest.mark.parametrize(("fields", "named"), [
    ({"alert_id": 1, "dia_source_id": 1.0}, "dia_source_id"),  # equal to a good earlier id, but not an int
    ({"alert_id": 2**63}, "alert_id"),
    ({"alert_id": 1, "broker_publish_ms": "1700000000000"}, "broker_publish_ms"),
])
def test_an_unstorable_id_is_refused_naming_its_field(fields: dict[str, Any], named: str, tmp_store: Store) -> None:
    from alertmux.specs import BrokerMessage

    ingestor = Ingestor(PluginHost(), "elasticc", tmp_store)
    message = BrokerMessage(("B", "1", "C", ""), "elasticc2", [2222], [1.0], **fields)
    with pytest.raises(DecodeError, match=rf"^{named} must be a 64-bit integer or null"):
        ingestor.rows([message], KAFKA)
