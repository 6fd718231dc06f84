"""SNANA HEAD/PHOT simulations turned into the alerts the DESC TOM sent for ELAsTiCC2, with their truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from alertmux.formats import decode_path
from alertmux.models import ElasticcAlert
from alertmux.sources import Nights, night_of
from alertmux.sources.snana import PHOTFLAG_DETECT, head_files, open_snana, phot_path, read_snana
from alertmux.taxonomy import ELASTICC2, taxonomy
from alertmux.testing import RunCli

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TRAIN = SHARED / "elasticc" / "snana_elasticc2_train_1percent"
SNIB = TRAIN / "ELASTICC2_TRAIN_01_1percent_SNIb-Templates"
HEAD_1028798 = SNIB / "ELASTICC2_TRAIN_01_1percent_NONIaMODEL0-0013_HEAD.FITS.gz"
# Rebuilt by the DESC TOM's own reconstruct(daysprevious=365) from these files (see shared/data/elasticc/SOURCES.md).
EXAMPLE = SHARED / "elasticc" / "derived" / "example_alert_elasticc2_v0_9_1_alertId102879800007.json"

pytestmark = pytest.mark.skipif(not HEAD_1028798.exists(), reason=f"reference data not found in {SHARED}")


def assert_same_alert(mine: dict[str, Any], desc: dict[str, Any]) -> None:
    """Equal as Avro would carry them: floats to float32 precision, everything else exactly."""
    assert mine.keys() == desc.keys()
    for key, expected in desc.items():
        value = mine[key]
        if isinstance(expected, dict):
            assert_same_alert(value, expected)
        elif isinstance(expected, list):
            assert len(value) == len(expected), key
            for a, b in zip(value, expected, strict=True):
                assert_same_alert(a, b)
        elif isinstance(expected, float):
            assert value == pytest.approx(expected, rel=2e-7, abs=1e-9), key
        else:
            assert value == expected, key


def test_alert_is_the_one_the_desc_tom_built() -> None:
    desc = json.loads(EXAMPLE.read_text())
    [obj] = [o for o in read_snana(HEAD_1028798) if o.truth and o.truth.dia_object_id == 1028798]
    [mine] = [a for a in obj.alerts if a["alertId"] == desc["alertId"]]
    assert_same_alert(mine, desc)
    ElasticcAlert.model_validate(mine)


def test_truth_comes_from_the_gentype() -> None:
    objects = {o.truth.dia_object_id: o for o in read_snana(HEAD_1028798) if o.truth}
    truth = objects[1028798].truth
    assert truth is not None
    assert (truth.gentype, truth.class_id) == (20, taxonomy(ELASTICC2).class_for_gentype(20))
    assert taxonomy(ELASTICC2).name(truth.class_id) == "Ib/c"
    assert truth.peak_mjd == pytest.approx(60283.4, abs=0.01) and truth.redshift == pytest.approx(0.3057, abs=1e-3)
    flares = [o for head in head_files(str(TRAIN / "ELASTICC2_TRAIN_01_1percent_Mdwarf-flare"))
              for o in read_snana(head)]
    assert flares and {o.truth.class_id for o in flares if o.truth} == {taxonomy(ELASTICC2).class_for_gentype(82)}


def test_one_alert_per_detection_with_earlier_history_only() -> None:
    import fitsio

    objects = list(open_snana(path=str(TRAIN)))
    detections = sum(int(((fitsio.read(str(phot_path(head)), ext=1, columns=["PHOTFLAG"])["PHOTFLAG"]
                           & PHOTFLAG_DETECT) != 0).sum())
                     for head in head_files(str(TRAIN)) if fitsio.FITS(str(head))[1].get_nrows())
    alerts = [a for o in objects for a in o.alerts]
    assert len(alerts) == detections > 1000
    assert len({a["alertId"] for a in alerts}) == len(alerts)
    for obj in objects[:50]:
        first = obj.alerts[0]["diaSource"]["midPointTai"] if obj.alerts else None
        for n, alert in enumerate(obj.alerts):
            t = alert["diaSource"]["midPointTai"]
            assert alert["alertId"] == alert["diaSource"]["diaSourceId"] and len(alert["prvDiaSources"]) == n
            assert all(p["midPointTai"] < t for p in alert["prvDiaSources"] + alert["prvDiaForcedSources"])
            if t - first <= 0.5:
                assert alert["prvDiaForcedSources"] == []  # the first night carries no forced photometry
            assert alert["diaSource"]["snr"] == pytest.approx(alert["diaSource"]["psFlux"]
                                                              / alert["diaSource"]["psFluxErr"])


def test_nights_window_keeps_truth_but_only_that_nights_alerts() -> None:
    everything = list(read_snana(HEAD_1028798))
    night = night_of(everything[1].alerts[0]["diaSource"]["midPointTai"])
    windowed = list(read_snana(HEAD_1028798, nights=Nights(night, night)))
    assert len(windowed) == len(everything)  # every object, for its truth
    kept = [a for o in windowed for a in o.alerts]
    assert kept and all(night_of(a["diaSource"]["midPointTai"]) == night for a in kept)
    assert len(kept) == sum(1 for o in everything for a in o.alerts
                            if night_of(a["diaSource"]["midPointTai"]) == night)


def test_missing_phot_file_is_reported_and_the_rest_streams(tmp_path: Path) -> None:
    shutil.copy(HEAD_1028798, tmp_path / HEAD_1028798.name)
    shutil.copy(phot_path(HEAD_1028798), tmp_path / phot_path(HEAD_1028798).name)
    orphan = tmp_path / "ORPHAN_HEAD.FITS.gz"
    shutil.copy(HEAD_1028798, orphan)
    skipped: list[tuple[str, str]] = []
    objects = list(open_snana(path=str(tmp_path), on_bad_input=lambda w, why: skipped.append((w, why))))
    assert {o.truth.dia_object_id for o in objects if o.truth} >= {1028798}
    assert [(Path(w).name, "PHOT file" in why) for w, why in skipped] == [("ORPHAN_HEAD.FITS.gz", True)]


def test_decode_prints_each_alert_with_its_truth_class(run_cli: RunCli) -> None:
    result = run_cli("decode", str(HEAD_1028798))
    assert result.code == 0, result.err
    lines = result.json_lines
    assert lines and all(set(line) == {"alert", "truth"} for line in lines)
    [line] = [x for x in lines if x["alert"]["alertId"] == 102879800007]
    assert line["truth"]["class_id"] == taxonomy(ELASTICC2).class_for_gentype(20) and line["truth"]["gentype"] == 20
    assert line["truth"]["class_name"] == "Ib/c"
    assert "SNANA FITS (HEAD + PHOT)" in result.err and "elasticc.v0_9_1.alert" in result.err
    phot = run_cli("decode", str(phot_path(HEAD_1028798)))
    assert phot.code == 1 and "decode its *_HEAD.FITS.gz" in phot.err
    assert decode_path(HEAD_1028798).records[0]["alert"]["diaObject"]["simVersion"] == "2023-04-01"
