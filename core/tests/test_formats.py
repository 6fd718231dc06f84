"""Recognizing payload files: JSON, gzip, Avro containers, schemaless Avro of the shipped schemas."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alertmux.errors import DecodeError, UsageError
from alertmux.formats import iter_files, sniff, to_json
from alertmux.serde import container_encode, load_schema, schemaless_encode

MESSAGE = {
    "alertId": 1, "diaSourceId": 2, "elasticcPublishTimestamp": 1_700_000_000_000, "brokerIngestTimestamp": None,
    "brokerName": "B", "brokerVersion": "1", "classifierName": "C", "classifierParams": "P",
    "classifications": [{"classId": 2222, "probability": 0.5}],
}
ALERT = {
    "alertId": 10,
    "diaSource": {"diaSourceId": 10, "diaObjectId": 7, "midPointTai": 60000.5, "filterName": "r", "ra": 1.0,
                  "decl": -2.0, "psFlux": 100.0, "psFluxErr": 10.0, "snr": 10.0},
    "prvDiaSources": None, "prvDiaForcedSources": None, "diaObject": None,
}


def test_json_object_and_list() -> None:
    assert sniff(b' {"a": 1}').records == [{"a": 1}]
    decoded = sniff(b'[{"a": 1}, {"a": 2}]')
    assert (decoded.format, len(decoded.records)) == ("JSON", 2)


def test_gzip_is_unwrapped_and_reported() -> None:
    decoded = sniff(gzip.compress(json.dumps(MESSAGE).encode()))
    assert decoded.format == "gzip, JSON" and decoded.records == [MESSAGE]


def test_broken_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="looks like JSON"):
        sniff(b'{"a": ')


def test_container_file() -> None:
    decoded = sniff(container_encode([MESSAGE], load_schema("elasticc.v0_9_1.brokerClassification")))
    assert decoded.format == "Avro container file" and decoded.records[0]["alertId"] == 1


def test_schemaless_alert_and_broker_message_are_told_apart() -> None:
    alert = sniff(schemaless_encode(ALERT, load_schema("elasticc.v0_9_1.alert")))
    assert alert.format == "schemaless Avro elasticc.v0_9_1.alert"
    assert alert.records[0]["diaSource"]["diaObjectId"] == 7
    message = sniff(schemaless_encode(MESSAGE, load_schema("elasticc.v0_9_1.brokerClassification")))
    assert message.format == "schemaless Avro elasticc.v0_9_1.brokerClassification"


def test_2022_broker_message() -> None:
    old = {k: v for k, v in MESSAGE.items() if not k.startswith("classifier")}
    old["classifications"] = [{"classifierName": "C", "classifierParams": "P", "classId": 111, "probability": 1.0}]
    decoded = sniff(schemaless_encode(old, load_schema("elasticc.v0_9.brokerClassification")))
    assert decoded.format == "schemaless Avro elasticc.v0_9.brokerClassification"


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="unrecognized payload"):
        sniff(b"\x93\x11garbage that is no Avro at all")


def test_to_json_encodes_bytes_and_datetimes() -> None:
    line = to_json({"b": b"\x00\x01", "t": datetime(2024, 1, 2, tzinfo=UTC)})
    assert json.loads(line) == {"b": base64.b64encode(b"\x00\x01").decode(), "t": "2024-01-02T00:00:00+00:00"}
    assert "\n" not in line


def test_iter_files_reports_unreadable_files(tmp_path: Path) -> None:
    good = tmp_path / "a.bin"
    good.write_bytes(b"abc")
    assert list(iter_files([str(good)])) == [(str(good), b"abc")]
    with pytest.raises(UsageError, match="cannot read .*missing: No such file"):
        list(iter_files([str(tmp_path / "missing")]))
