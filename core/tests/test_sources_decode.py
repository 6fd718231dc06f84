"""``alertmux decode`` on every sample file in ../shared/data that is an alert, with the version it names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alertmux.sources.rubin import schema_id
from alertmux.testing import RunCli

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BROKERS = SHARED / "brokers"
SNANA = SHARED / "elasticc" / "snana_elasticc2_train_1percent"

# (file, what decode must say it is, how many alerts it holds); Rubin JSON names no version, so the newest
# schema it validates against is reported.
ALERT_SAMPLES = [
    (BROKERS / "fink" / "elasticc" / "alert_mjd60674.0512_obj747_src1494043.avro.gz",
     "gzip, Avro container file, elasticc.v0_9.alert", 1),
    (SHARED / "elasticc" / "derived" / "example_alert_elasticc2_v0_9_1_alertId102879800007.json",
     "JSON, elasticc.v0_9_1.alert", 1),
    (SHARED / "rubin" / "schema" / "11" / "1" / "sample_data" / "fakeAlert.avro",
     "Avro container file, lsst.v11_1.alert", 1),
    (SHARED / "rubin" / "schema" / "11" / "1" / "sample_data" / "alert.json", "JSON, lsst.v11_1.alert", 1),
    (BROKERS / "lasair" / "rubin_alert_json" / "schema10.0_alert.json", "JSON, lsst.v11", 1),
    (BROKERS / "ampel" / "fakeAlert_schema80.avro", "Avro container file, lsst.v8_0.alert", 1),
    (BROKERS / "ampel" / "alert_schema80.json", "JSON, lsst.v8_0.alert", 1),
    (BROKERS / "ampel" / "schema_701.avro", "Avro container file, lsst.v7_1.alert", 10),
    (BROKERS / "fink" / "ztf" / "fink-broker-sample-alert-1.avro", "Avro container file", 1),
    (BROKERS / "fink" / "ztf" / "part-3-305711.avro", "Avro container file", 31),
    *[(p, "Avro container file, ztf.alert", 1) for p in sorted((BROKERS / "pittgoogle" / "sample_alerts" / "ztf")
                                                                 .glob("*.avro"))],
    *[(p, f"Confluent wire format, {p.stem}.alert (schema id {schema_id(p.stem)})", 1)
      for p in sorted((BROKERS / "pittgoogle" / "sample_alerts" / "lsst").glob("lsst.v*.avro"))],
]
SNANA_HEADS = sorted(SNANA.glob("*/*HEAD.FITS.gz"))

pytestmark = pytest.mark.skipif(not SNANA.exists(), reason=f"reference data not found in {SHARED}")


@pytest.fixture
def run(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunCli:
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("ALERTMUX__")]:
        monkeypatch.delenv(key)
    return run_cli


def test_the_sample_list_is_complete() -> None:
    assert len(ALERT_SAMPLES) == 19 and all(path.exists() for path, _, _ in ALERT_SAMPLES)
    assert len(SNANA_HEADS) == 80  # 40 files in each of the two model folders


@pytest.mark.parametrize(("path", "said", "count"), ALERT_SAMPLES, ids=[p.name for p, _, _ in ALERT_SAMPLES])
def test_every_alert_sample_decodes_and_names_its_format(run: RunCli, path: Path, said: str, count: int) -> None:
    result = run("decode", str(path))
    assert result.code == 0, result.err
    assert said in result.err and f"{count} record(s)" in result.err, result.err
    records = result.json_lines
    assert len(records) == count
    for record in records:
        # ELAsTiCC and Rubin alerts carry a diaSource; ZTF ones a candidate.
        assert "diaSource" in record or "candidate" in record, sorted(record)


def test_every_snana_head_file_decodes_to_alerts_with_truth(run: RunCli) -> None:
    result = run("decode", *map(str, SNANA_HEADS))
    assert result.code == 0, result.err
    lines = result.json_lines
    assert len([x for x in result.err_lines if "SNANA FITS (HEAD + PHOT)" in x]) == len(SNANA_HEADS)
    assert len(lines) > 1000 and all(line["truth"] and line["truth"]["class_id"] for line in lines)
    assert len({line["alert"]["alertId"] for line in lines}) == len(lines)


def test_a_file_that_is_no_alert_fails_alone(run: RunCli, tmp_path: Path) -> None:
    good = ALERT_SAMPLES[1][0]
    bson = BROKERS / "ampel" / "25409136044802058.bson"
    result = run("decode", str(bson), str(good))
    assert result.code == 1 and "1 of 2 file(s) could not be decoded" in result.err
    assert "unrecognized payload" in result.err and len(result.json_lines) == 1
