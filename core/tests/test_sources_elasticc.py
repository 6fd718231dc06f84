"""ELAsTiCC alert files: schemaless or container, plain or gzipped, directories, NITE tarballs; v0_9 and v0_9_1."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from alertmux.formats import decode_path, sniff
from alertmux.models import ElasticcAlert
from alertmux.serde import container_decode, container_encode, load_schema, schemaless_decode, schemaless_encode
from alertmux.sources import Nights, night_of
from alertmux.sources.elasticc_files import open_elasticc_files
from alertmux.sources.streaming import elasticc_v0_9_to_v0_9_1, encode, transcode

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FINK_V09 = SHARED / "brokers" / "fink" / "elasticc" / "alert_mjd60674.0512_obj747_src1494043.avro.gz"
EXAMPLE = SHARED / "elasticc" / "derived" / "example_alert_elasticc2_v0_9_1_alertId102879800007.json"

pytestmark = pytest.mark.skipif(not FINK_V09.exists(), reason=f"reference data not found in {SHARED}")


def v09_alert() -> dict[str, Any]:
    [record] = list(container_decode(gzip.decompress(FINK_V09.read_bytes())))
    return record


def v091_alert(**changes: Any) -> dict[str, Any]:
    alert = json.loads(EXAMPLE.read_text())
    src = dict(alert["diaSource"], **changes)
    return dict(alert, alertId=src["diaSourceId"], diaSource=src)


def alert_file_name(alert: dict[str, Any]) -> str:
    src = alert["diaSource"]
    return f"alert_mjd{src['midPointTai']:.4f}_obj{src['diaObjectId']}_src{src['diaSourceId']}.avro.gz"


def test_fink_sample_is_a_gzipped_v0_9_container() -> None:
    decoded = decode_path(FINK_V09)
    assert decoded.format == "gzip, Avro container file" and decoded.version == "elasticc.v0_9.alert"
    [alert] = decoded.records
    assert alert["alertId"] == 1231321321 and alert["diaSource"]["diaSourceId"] == 1494043
    assert alert["diaSource"]["ccdVisitId"] == 111111  # a v0_9-only field


@pytest.mark.parametrize("framing", ["schemaless", "schemaless.gz", "container", "container.gz"])
@pytest.mark.parametrize("version", ["elasticc.v0_9", "elasticc.v0_9_1"])
def test_every_framing_of_both_versions_is_sniffed(tmp_path: Path, framing: str, version: str) -> None:
    alert = v09_alert() if version == "elasticc.v0_9" else v091_alert()
    schema = load_schema(f"{version}.alert")
    body = container_encode([alert], schema) if framing.startswith("container") else schemaless_encode(alert, schema)
    path = tmp_path / ("a.avro.gz" if framing.endswith(".gz") else "a.avro")
    path.write_bytes(gzip.compress(body) if framing.endswith(".gz") else body)
    decoded = decode_path(path)
    assert decoded.version == f"{version}.alert"
    assert decoded.records[0]["alertId"] == alert["alertId"]
    [obj] = list(open_elasticc_files(path=str(path)))
    assert obj.alerts[0]["diaSource"]["diaSourceId"] == alert["diaSource"]["diaSourceId"]


def test_v0_9_converts_to_v0_9_1_dropping_only_what_v0_9_1_lacks() -> None:
    old = v09_alert()
    new = elasticc_v0_9_to_v0_9_1(old)
    ElasticcAlert.model_validate(new)  # closed model: a leftover v0_9 field would fail here
    assert "prvDiaNondetectionLimits" not in new and "ccdVisitId" not in new["diaSource"]
    assert new["diaSource"]["psFlux"] == old["diaSource"]["psFlux"]
    assert [s["diaSourceId"] for s in new["prvDiaSources"]] == [s["diaSourceId"] for s in old["prvDiaSources"]]
    assert new["diaObject"]["mwebv"] == old["diaObject"]["mwebv"]
    payload = encode(old, "elasticc.v0_9_1")
    assert schemaless_decode(payload, load_schema("elasticc.v0_9_1.alert"))["alertId"] == old["alertId"]
    assert transcode(new, "elasticc.v0_9_1") == new


def test_the_2022_v0_9_draft_keeps_its_host_redshift_and_re_encodes_to_every_rubin_version() -> None:
    from alertmux.sources.rubin import decode_wire, rubin_versions

    old = v09_alert()
    assert "hostgal_z" in old["diaObject"] and "hostgal_zspec" not in old["diaObject"]  # the draft's names
    new = elasticc_v0_9_to_v0_9_1(old)["diaObject"]
    assert new["hostgal_zspec"] == old["diaObject"]["hostgal_z"]
    assert new["hostgal2_zspec_err"] == old["diaObject"]["hostgal2_z_err"]
    assert new["hostgal_zphot_q050"] == old["diaObject"]["hostgal_zphot_q50"]
    src = old["diaSource"]
    for version in rubin_versions():
        decoded_version, rubin = decode_wire(encode(old, version))
        assert decoded_version == version
        got = rubin["diaSource"]
        assert (got["diaSourceId"], got["diaObjectId"], got["midpointMjdTai"], got["psfFlux"]) == (
            src["diaSourceId"], src["diaObjectId"], src["midPointTai"], src["psFlux"])
        assert [s["diaSourceId"] for s in rubin["prvDiaSources"]] == [s["diaSourceId"] for s in old["prvDiaSources"]]


def nite_tarball(path: Path, alerts: list[dict[str, Any]], extra: dict[str, bytes] | None = None) -> None:
    schema = load_schema("elasticc.v0_9_1.alert")
    with tarfile.open(path, "w:gz") as archive:
        members = {alert_file_name(a): gzip.compress(schemaless_encode(a, schema)) for a in alerts} | (extra or {})
        for name, body in members.items():
            info = tarfile.TarInfo(f"ALERTS/{name}")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))


def test_nite_tarballs_stream_by_night_and_bad_members_are_reported(tmp_path: Path) -> None:
    early = [v091_alert(diaSourceId=1000 + i, midPointTai=60282.2 + i * 0.01) for i in range(3)]
    late = [v091_alert(diaSourceId=2000 + i, midPointTai=60290.1 + i * 0.01) for i in range(2)]
    nights = {night_of(a["diaSource"]["midPointTai"]) for a in early}, {night_of(a["diaSource"]["midPointTai"])
                                                                         for a in late}
    (n1,), (n2,) = nights
    nite_tarball(tmp_path / f"NITE{n1}.tar.gz", early, {"alert_mjd60282.3000_obj1_src9.avro.gz": b"corrupt"})
    nite_tarball(tmp_path / f"NITE{n2}.tar.gz", late)
    skipped: list[str] = []

    def ids(**options: Any) -> list[int]:
        objects = open_elasticc_files(path=str(tmp_path), on_bad_input=lambda where, why: skipped.append(where),
                                      **options)
        return sorted(a["alertId"] for o in objects for a in o.alerts)

    assert ids() == [1000, 1001, 1002, 2000, 2001]
    assert len(skipped) == 1 and skipped[0].endswith("alert_mjd60282.3000_obj1_src9.avro.gz")
    skipped.clear()
    assert ids(nights=Nights(n2, n2)) == [2000, 2001]
    assert skipped == []  # the other night's tarball was not even opened
    decoded = decode_path(tmp_path / f"NITE{n2}.tar.gz")
    assert decoded.format.startswith("gzip, tar of 2 file(s)") and decoded.version == "elasticc.v0_9_1.alert"


def test_a_bad_file_in_a_directory_is_reported_and_skipped(tmp_path: Path) -> None:
    schema = load_schema("elasticc.v0_9_1.alert")
    good = [v091_alert(diaSourceId=10 + i, midPointTai=60282.0 + i) for i in range(2)]
    for alert in good:
        (tmp_path / alert_file_name(alert)).write_bytes(gzip.compress(schemaless_encode(alert, schema)))
    (tmp_path / "alert_mjd60283.5000_obj1_src1.avro.gz").write_bytes(b"\x1f\x8b truncated gzip")
    (tmp_path / "empty.avro").write_bytes(b"")
    skipped: dict[str, str] = {}
    objects = list(open_elasticc_files(path=str(tmp_path), on_bad_input=lambda w, why: skipped.__setitem__(w, why)))
    assert sorted(a["alertId"] for o in objects for a in o.alerts) == [10, 11]
    assert sorted(Path(w).name for w in skipped) == ["alert_mjd60283.5000_obj1_src1.avro.gz", "empty.avro"]
    assert all(reason for reason in skipped.values())


def test_broker_messages_are_not_alerts(tmp_path: Path) -> None:
    message = {"alertId": 1, "diaSourceId": 1, "elasticcPublishTimestamp": 1, "brokerIngestTimestamp": None,
               "brokerName": "B", "brokerVersion": "1", "classifierName": "C", "classifierParams": "",
               "classifications": []}
    (tmp_path / "m.avro").write_bytes(schemaless_encode(message, load_schema("elasticc.v0_9_1.brokerClassification")))
    skipped: list[str] = []
    assert list(open_elasticc_files(path=str(tmp_path), on_bad_input=lambda w, why: skipped.append(why))) == []
    assert "not ELAsTiCC alerts" in skipped[0]
    assert sniff((tmp_path / "m.avro").read_bytes()).version == "elasticc.v0_9_1.brokerClassification"
