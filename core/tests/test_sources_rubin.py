"""Rubin alerts: schemas from lsst-alert-packet, the Confluent wire format, a schema registry, the Alert codec."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fastavro
import pytest

from alertmux.errors import DecodeError, UsageError
from alertmux.formats import decode_path, sniff
from alertmux.models import alert_from_elasticc
from alertmux.serde import container_decode, schemaless_decode, wire_split
from alertmux.sources import alert_id_of
from alertmux.sources.rubin import (
    SchemaRegistry,
    alert_from_rubin,
    alert_to_elasticc_shape,
    alert_to_rubin,
    decode_wire,
    encode_wire,
    open_rubin,
    rubin_schema,
    rubin_versions,
    schema_id,
    version_for_id,
)
from alertmux.sources.streaming import encode

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
PITT = SHARED / "brokers" / "pittgoogle" / "sample_alerts" / "lsst"
RUBIN_11_1 = SHARED / "rubin" / "schema" / "11" / "1" / "sample_data"
EXAMPLE_ELASTICC = SHARED / "elasticc" / "derived" / "example_alert_elasticc2_v0_9_1_alertId102879800007.json"
WIRE_SAMPLES = sorted(PITT.glob("lsst.v*.avro"))

pytestmark = pytest.mark.skipif(not PITT.exists(), reason=f"reference data not found in {SHARED}")


def same(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN (Rubin records carry NaNs)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def time_ordered(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its history lists in time order (the codec's Alert keeps history time ordered)."""
    out = dict(record)
    for key in ("prvDiaSources", "prvDiaForcedSources"):
        if out.get(key):
            out[key] = sorted(out[key], key=lambda row: row["midpointMjdTai"])
    return out


def test_schema_versions_and_ids_follow_rubins_rule() -> None:
    versions = rubin_versions()
    assert versions[0] == "lsst.v7_0" and "lsst.v11_1" in versions and "lsst.v8_0" in versions
    assert [schema_id(v) for v in ("lsst.v7_4", "lsst.v10_0", "lsst.v11_1")] == [704, 1000, 1101]
    assert version_for_id(1101) == "lsst.v11_1" and version_for_id(schema_id("lsst.v9_0")) == "lsst.v9_0"
    assert rubin_schema("lsst.v11_1")["name"] == "lsst.v11_1.alert"
    with pytest.raises(UsageError, match="not a Rubin schema version"):
        schema_id("elasticc.v0_9_1")
    with pytest.raises(UsageError, match="not in the installed lsst-alert-packet"):
        rubin_schema("lsst.v99_0")


@pytest.mark.parametrize("path", WIRE_SAMPLES, ids=[p.stem for p in WIRE_SAMPLES])
def test_wire_samples_decode_with_their_version_and_re_encode_to_the_same_bytes(path: Path) -> None:
    payload = path.read_bytes()
    version, record = decode_wire(payload)
    assert version == path.stem  # lsst.v7_0.avro was written with schema id 700, and so on
    assert encode_wire(record, version) == payload
    decoded = sniff(payload)
    assert decoded.format == "Confluent wire format" and decoded.version == f"{version}.alert (schema id " \
                                                                           f"{schema_id(version)})"


@pytest.mark.parametrize("path", WIRE_SAMPLES, ids=[p.stem for p in WIRE_SAMPLES])
def test_codec_round_trip_keeps_every_field(path: Path) -> None:
    version, record = decode_wire(path.read_bytes())
    alert = alert_from_rubin(record, version)
    src = record["diaSource"]
    assert (alert.schema_name, alert.source_id, alert.object_id) == (version, src["diaSourceId"], src["diaObjectId"])
    assert alert.alert_id == alert_id_of(record)
    assert (alert.mjd, alert.ra, alert.dec) == (src["midpointMjdTai"], src["ra"], src["dec"])
    assert same(alert.flux, src["psfFlux"]) and same(alert.flux_err, src["psfFluxErr"])
    assert len(alert.history) == len(record["prvDiaSources"] or []) + len(record["prvDiaForcedSources"] or [])
    assert [p.mjd for p in alert.history] == sorted(p.mjd for p in alert.history)
    if record["diaObject"] is not None:
        assert alert.object is not None and alert.object.object_id == record["diaObject"]["diaObjectId"]
    assert same(alert_to_rubin(alert, version), time_ordered(record))


@pytest.mark.parametrize("target", ["lsst.v7_0", "lsst.v8_0", "lsst.v9_0", "lsst.v11_1"])
def test_any_version_re_encodes_to_any_other_keeping_what_brokers_need(target: str) -> None:
    [record] = list(container_decode((RUBIN_11_1 / "fakeAlert.avro").read_bytes()))
    payload = encode(record, target)
    version, back = decode_wire(payload)
    assert version == target
    for key in ("diaSourceId", "diaObjectId", "midpointMjdTai", "band", "ra", "dec", "psfFlux", "psfFluxErr"):
        assert same(back["diaSource"][key], record["diaSource"][key]), key
    assert sorted(r["diaSourceId"] for r in back["prvDiaSources"]) == sorted(
        r["diaSourceId"] for r in record["prvDiaSources"])
    assert back["diaObject"]["diaObjectId"] == record["diaObject"]["diaObjectId"]
    assert alert_id_of(back) == alert_id_of(record)


def test_elasticc_alert_becomes_a_rubin_alert_and_back() -> None:
    elasticc = json.loads(EXAMPLE_ELASTICC.read_text())
    rubin = encode(elasticc, "lsst.v11_1")
    _, record = decode_wire(rubin)
    src = record["diaSource"]
    assert (src["diaSourceId"], src["diaObjectId"], src["band"]) == (102879800007, 1028798, "i")
    assert src["psfFlux"] == pytest.approx(elasticc["diaSource"]["psFlux"])
    assert [r["diaSourceId"] for r in record["prvDiaSources"]] == [r["diaSourceId"] for r in elasticc["prvDiaSources"]]
    forced = record["prvDiaForcedSources"]
    assert [r["diaForcedSourceId"] for r in forced] == [r["diaForcedSourceId"] for r in elasticc["prvDiaForcedSources"]]
    assert forced[0]["band"] == "y"  # ELAsTiCC's "Y" is Rubin's "y"
    assert record["diaObject"]["nDiaSources"] == 3 and record["diaObject"]["diaObjectId"] == 1028798
    back = alert_to_elasticc_shape(record)
    assert back["prvDiaForcedSources"][0]["filterName"] == "Y"
    original = alert_from_elasticc(elasticc)
    again = alert_from_elasticc(back)
    assert (again.alert_id, again.source_id, again.object_id, again.band) == (
        original.alert_id, original.source_id, original.object_id, original.band)
    assert [(p.source_id, p.band, p.detection) for p in again.history] == [
        (p.source_id, p.band, p.detection) for p in original.history]


def test_json_and_container_samples_name_their_version() -> None:
    container = decode_path(RUBIN_11_1 / "fakeAlert.avro")
    assert container.format == "Avro container file" and container.version == "lsst.v11_1.alert"
    as_json = decode_path(RUBIN_11_1 / "alert.json")
    assert as_json.version is not None and as_json.version.startswith("lsst.v11_1.alert")
    assert same(as_json.records[0]["diaSource"]["diaSourceId"], container.records[0]["diaSource"]["diaSourceId"])


# -- schema registry ----------------------------------------------------------------------------------------------
class _Registry(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append(self.path)
        schema_id_ = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/schemas/ids/") else -1
        body = self.schemas.get(schema_id_)
        if body is None:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error_code": 40403, "message": "Schema not found"}')
            return
        data = json.dumps({"schema": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    # A Confluent-compatible registry on loopback, knowing one id that lsst-alert-packet does not ship.
    _Registry.schemas = {4242: fastavro.schema.to_parsing_canonical_form(rubin_schema("lsst.v9_0"))}
    _Registry.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://reader:s3cret-pass@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_unknown_schema_id_is_read_from_the_registry_once(registry_url: str) -> None:
    _, record = decode_wire((PITT / "lsst.v9_0.avro").read_bytes())
    body = wire_split((PITT / "lsst.v9_0.avro").read_bytes())[1]
    payload = (4242).to_bytes(5, "big") + body
    with pytest.raises(DecodeError, match="schema id 4242, which the installed lsst-alert-packet does not ship"):
        decode_wire(payload)
    client = SchemaRegistry(registry_url)
    try:
        version, decoded = decode_wire(payload, client)
        again = sniff(payload, registry=client)
    finally:
        client.close()
    assert version == "lsst.v9_0" and same(decoded, record)
    assert again.records[0]["diaSource"]["diaSourceId"] == record["diaSource"]["diaSourceId"]
    assert _Registry.requests == ["/schemas/ids/4242"]  # schemas are immutable per id: fetched once


def test_registry_errors_are_clear_and_never_show_credentials(registry_url: str) -> None:
    client = SchemaRegistry(registry_url)
    try:
        with pytest.raises(DecodeError, match="has no schema id 777") as missing:
            client.schema(777)
    finally:
        client.close()
    assert "s3cret-pass" not in str(missing.value) and "reader" not in str(missing.value)
    down = SchemaRegistry("http://reader:s3cret-pass@127.0.0.1:9")  # nothing listens on the discard port
    try:
        with pytest.raises(DecodeError, match="did not answer") as unreachable:
            down.schema(777)
    finally:
        down.close()
    assert "s3cret-pass" not in str(unreachable.value)


def test_rubin_source_reads_a_directory_and_reports_a_bad_file(tmp_path: Path) -> None:
    for path in WIRE_SAMPLES[:3]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "broken.avro").write_bytes(b"\x00\x00\x00\x02\xbcnot really avro")
    skipped: list[tuple[str, str]] = []
    objects = list(open_rubin(path=str(tmp_path), on_bad_input=lambda where, why: skipped.append((where, why))))
    assert len(objects) == 3
    assert {alert_id_of(o.alerts[0]) for o in objects} == {alert_id_of(decode_wire(p.read_bytes())[1])
                                                           for p in WIRE_SAMPLES[:3]}
    assert [Path(where).name for where, _ in skipped] == ["broken.avro"]
    with pytest.raises(UsageError, match="does not exist"):
        list(open_rubin(path=str(tmp_path / "nowhere")))


def test_schemaless_rubin_without_header_is_recognized() -> None:
    _, record = decode_wire((PITT / "lsst.v8_0.avro").read_bytes())
    body = wire_split((PITT / "lsst.v8_0.avro").read_bytes())[1]
    decoded = sniff(body)
    assert decoded.version == "lsst.v8_0.alert"
    assert same(decoded.records[0], schemaless_decode(body, rubin_schema("lsst.v8_0"))) and same(
        decoded.records[0], record)
