from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import load_schema

from alertmux.simulate import ELASTICC_TRUE_CLASS_COUNTS, SIMULATED_CLASSES, SimulatedObject, simulate

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "alertmux"
SCHEMAS = PACKAGE / "schemas"
PERIODIC_OR_STOCHASTIC = {2322, 2323, 2324, 2325, 2332}
GALACTIC = {2233, 2234, 2235, 2322, 2323, 2324, 2325}
START, DURATION = 60796.0, 365.0


@pytest.fixture(scope="module")
def run() -> list[SimulatedObject]:
    return list(simulate(60, seed=42))


def field_names(record: str) -> set[str]:
    schema = json.loads((SCHEMAS / f"elasticc.v0_9_1.{record}.avsc").read_text())
    return {f["name"] for f in schema["fields"]}


def test_classes_match_the_elasticc2_taxonomy() -> None:
    with open(PACKAGE / "data" / "taxonomy_elasticc2_classid.csv", newline="") as f:
        rows = {int(r["classid"]): r for r in csv.DictReader(f)}
    assert len(SIMULATED_CLASSES) == 19 and set(ELASTICC_TRUE_CLASS_COUNTS) == set(SIMULATED_CLASSES)
    for obj in simulate(19):
        row = rows[obj.class_id]
        assert SIMULATED_CLASSES[obj.class_id] == row["description"]
        assert str(obj.gentype) in row["snana_gentypes_exact"].split()


def test_same_seed_same_output_and_objects_do_not_depend_on_run_length() -> None:
    first = list(simulate(25, seed=7, class_mix="elasticc"))
    assert first == list(simulate(25, seed=7, class_mix="elasticc"))
    assert first[:10] == list(simulate(10, seed=7, class_mix="elasticc"))


def test_different_seeds_give_different_ids() -> None:
    ids = [{o.dia_object_id for o in simulate(20, seed=s)} for s in (1, 2)]
    assert not ids[0] & ids[1]
    assert sorted(ids[0]) == [1_000_000 + i for i in range(1, 21)]


def test_uniform_mix_gives_equal_counts() -> None:
    counts = Counter(o.class_id for o in simulate(38, seed=3))
    assert set(counts) == set(SIMULATED_CLASSES) and set(counts.values()) == {2}


def test_every_alert_serializes_and_round_trips(run: list[SimulatedObject]) -> None:
    schema = load_schema(str(SCHEMAS / "elasticc.v0_9_1.alert.avsc"))
    names = {r: field_names(r) for r in ("alert", "diaSource", "diaForcedSource", "diaObject")}
    alerts = [a for o in run for a in o.alerts]
    assert len(alerts) > 300
    for alert in alerts:
        assert set(alert) == names["alert"] and set(alert["diaObject"]) == names["diaObject"]
        assert set(alert["diaSource"]) == names["diaSource"]
        assert all(set(f) == names["diaForcedSource"] for f in alert["prvDiaForcedSources"] or [])
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, alert)
        back = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), schema)
        assert back["alertId"] == alert["alertId"] and back["diaSource"]["snr"] > 5
        assert back["diaSource"]["midPointTai"] == alert["diaSource"]["midPointTai"]
        assert back["diaObject"]["ra"] == alert["diaObject"]["ra"]
        assert math.isclose(back["diaSource"]["psFlux"], alert["diaSource"]["psFlux"], rel_tol=1e-6)
        again = io.BytesIO()
        fastavro.schemaless_writer(again, schema, back)
        assert again.getvalue() == buf.getvalue()


def test_alert_history_ids_and_detections(run: list[SimulatedObject]) -> None:
    for obj in run:
        assert obj.alerts, "every object should be re-realised until it has a detection"
        earlier: list[dict] = []
        for alert in obj.alerts:
            source = alert["diaSource"]
            assert alert["alertId"] == source["diaSourceId"]
            assert source["diaObjectId"] == alert["diaObject"]["diaObjectId"] == obj.dia_object_id
            assert source["snr"] > 5
            assert math.isclose(source["snr"], source["psFlux"] / source["psFluxErr"], rel_tol=1e-3)
            assert source["filterName"] in {"u", "g", "r", "i", "z", "Y"}
            assert (alert["prvDiaSources"] or []) == earlier
            forced = alert["prvDiaForcedSources"] or []
            first_id = obj.dia_object_id * 100000
            assert [f["diaForcedSourceId"] for f in forced] == list(range(first_id, first_id + len(forced)))
            assert source["diaSourceId"] == first_id + len(forced)
            times = [f["midPointTai"] for f in forced] + [source["midPointTai"]]
            assert times == sorted(times) and len(set(times)) == len(times)
            assert {s["diaSourceId"] for s in earlier} <= {f["diaForcedSourceId"] for f in forced}
            earlier.append(source)


def test_truth_peaks_redshifts_and_hosts(run: list[SimulatedObject]) -> None:
    for obj in run:
        dia_object = obj.alerts[0]["diaObject"]
        if obj.class_id in PERIODIC_OR_STOCHASTIC:
            assert obj.peak_mjd is None
        else:
            assert obj.peak_mjd is not None and START <= obj.peak_mjd <= START + DURATION
        if obj.class_id in GALACTIC:
            assert obj.redshift is None and dia_object["hostgal_zphot"] is None and dia_object["z_final"] is None
        else:
            assert obj.redshift is not None and 0 < obj.redshift < 4
            quantiles = [dia_object[f"hostgal_zphot_q{q:03d}"] for q in range(0, 101, 10)]
            assert quantiles == sorted(quantiles)
            assert quantiles[5] == dia_object["hostgal_zphot"] == dia_object["z_final"]
            assert dia_object["hostgal_zspec"] == -9.0 or abs(dia_object["hostgal_zspec"] - obj.redshift) < 0.01
        assert -70 <= dia_object["decl"] <= 10 and 0 <= dia_object["ra"] < 360


def test_elasticc_mix_roughly_follows_its_weights() -> None:
    n = 600
    counts = Counter(o.class_id for o in simulate(n, seed=5, class_mix="elasticc"))
    total = sum(ELASTICC_TRUE_CLASS_COUNTS.values())
    for class_id, weight in ELASTICC_TRUE_CLASS_COUNTS.items():
        p = weight / total
        # Binomial 4-sigma band plus one object of slack: loose, but catches a mix that ignores the weights.
        assert abs(counts[class_id] - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1, SIMULATED_CLASSES[class_id]
    assert counts[2222] + counts[2224] > n / 2  # Ia and II dominate ELAsTiCC


@pytest.mark.parametrize("kwargs", [{"class_mix": "plasticc"}, {"class_mix": "Uniform"}])
def test_unknown_mix_raises_at_call(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="class_mix"):
        simulate(10, **kwargs)


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError):
        simulate(-1)
    with pytest.raises(ValueError):
        simulate(1, duration_days=0)
