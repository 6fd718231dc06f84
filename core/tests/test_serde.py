"""Avro framings: schemaless, container files and the Confluent wire format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alertmux.errors import DecodeError
from alertmux.serde import (
    container_decode,
    container_encode,
    is_container,
    load_schema,
    schemaless_decode,
    schemaless_encode,
    wire_encode,
    wire_split,
)

MESSAGE = {
    "alertId": 1, "diaSourceId": 2, "elasticcPublishTimestamp": 1_700_000_000_000, "brokerIngestTimestamp": None,
    "brokerName": "B", "brokerVersion": "1", "classifierName": "C", "classifierParams": "P",
    "classifications": [{"classId": 2222, "probability": 0.5}],
}
SCHEMA = "elasticc.v0_9_1.brokerClassification"


def test_schemaless_round_trip_with_and_without_logical_types() -> None:
    payload = schemaless_encode(MESSAGE, load_schema(SCHEMA))
    decoded = schemaless_decode(payload, load_schema(SCHEMA))
    assert decoded["elasticcPublishTimestamp"] == datetime.fromtimestamp(1_700_000_000, UTC)
    raw = schemaless_decode(payload, load_schema(SCHEMA, logical_types=False))
    assert raw == MESSAGE  # the hot path gets the epoch milliseconds as they were on the wire


def test_trailing_bytes_are_a_decode_error() -> None:
    payload = schemaless_encode(MESSAGE, load_schema(SCHEMA))
    with pytest.raises(DecodeError, match="3 trailing bytes"):
        schemaless_decode(payload + b"xyz", load_schema(SCHEMA))


def test_truncated_payload_is_a_decode_error() -> None:
    payload = schemaless_encode(MESSAGE, load_schema(SCHEMA))
    with pytest.raises(DecodeError, match="brokerClassfication"):  # sic: the schema's own spelling
        schemaless_decode(payload[:-3], load_schema(SCHEMA))


def test_container_round_trip() -> None:
    payload = container_encode([MESSAGE, MESSAGE | {"alertId": 5}], load_schema(SCHEMA), codec="deflate")
    assert is_container(payload) and not is_container(b"Obj")
    assert [r["alertId"] for r in container_decode(payload)] == [1, 5]


def test_broken_container_is_a_decode_error() -> None:
    payload = container_encode([MESSAGE], load_schema(SCHEMA))
    with pytest.raises(DecodeError, match="container"):
        list(container_decode(payload[:40]))


def test_confluent_wire_format() -> None:
    payload = wire_encode(MESSAGE, load_schema(SCHEMA), schema_id=258)
    assert payload[:5] == b"\x00\x00\x00\x01\x02"
    schema_id, body = wire_split(payload)
    assert schema_id == 258
    assert schemaless_decode(body, load_schema(SCHEMA, logical_types=False)) == MESSAGE


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01rest"])
def test_not_wire_format_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="magic byte"):
        wire_split(payload)
