import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import load_schema
from pydantic import BaseModel, ValidationError

from alertmux.models import (
    Alert,
    BrokerClassification,
    BrokerClassificationV09,
    ClassificationRecord,
    ClassifierIdentity,
    ElasticcAlert,
    ElasticcAlertV09,
    ElasticcDiaForcedSource,
    ElasticcDiaForcedSourceV09,
    ElasticcDiaNondetectionLimit,
    ElasticcDiaObject,
    ElasticcDiaObjectV09,
    ElasticcDiaSource,
    ElasticcDiaSourceV09,
    PhotometryPoint,
    alert_from_elasticc,
    alert_to_elasticc,
)

ROOT = Path(__file__).resolve().parents[2]
DERIVED = ROOT.parent / "shared" / "data" / "elasticc" / "derived"
SCHEMAS = ROOT / "core" / "src" / "alertmux" / "schemas"
EXAMPLE_ALERT = DERIVED / "example_alert_elasticc2_v0_9_1_alertId102879800007.json"
EXAMPLE_BROKER = DERIVED / "example_brokerClassification_elasticc2_v0_9_1_alertId102879800007.json"


@pytest.fixture
def alert_dict() -> dict:
    return json.loads(EXAMPLE_ALERT.read_text())


@pytest.fixture
def broker_dict() -> dict:
    return json.loads(EXAMPLE_BROKER.read_text())


def avro_roundtrip(model: BaseModel) -> tuple[bytes, dict]:
    """Write model.to_avro_dict() schemaless with its shipped schema; return the bytes and the decoded record."""
    schema = load_schema(SCHEMAS / f"{model.avro_schema}.avsc")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, model.to_avro_dict())
    data = buf.getvalue()
    return data, fastavro.schemaless_reader(io.BytesIO(data), schema)


def v09_alert_dict() -> dict:
    """A v0_9 alert built by hand from the v0_9 schema."""
    source = {"diaSourceId": 1000, "ccdVisitId": 7, "diaObjectId": 10, "parentDiaSourceId": None,
              "midPointTai": 59800.5, "filterName": "r", "ra": 10.0, "decl": -5.0, "psFlux": 500.0,
              "psFluxErr": 50.0, "snr": 10.0, "nobs": 3.0}
    return {
        "alertId": 1000,
        "diaSource": source,
        "prvDiaSources": [source | {"diaSourceId": 999, "midPointTai": 59799.5, "nobs": 2.0}],
        "prvDiaForcedSources": [{"diaForcedSourceId": 998, "ccdVisitId": 6, "diaObjectId": 10, "midPointTai": 59798.5,
                                 "filterName": "g", "psFlux": 20.0, "psFluxErr": 40.0, "totFlux": 25.0,
                                 "totFluxErr": 45.0}],
        "prvDiaNondetectionLimits": [{"ccdVisitId": 5, "midPointTai": 59797.5, "filterName": "g", "diaNoise": 30.0}],
        "diaObject": {"diaObjectId": 10, "simVersion": None, "ra": 10.0, "decl": -5.0, "hostgal_zphot": 0.3,
                      "hostgal_zphot_p50": 0.29, "hostgal_zspec": -99.0},
        "cutoutDifference": b"\xff\x00diff",
        "cutoutTemplate": None,
    }


def v09_broker_dict() -> dict:
    return {"alertId": 123, "diaSourceId": 123, "elasticcPublishTimestamp": 1664000000000,
            "brokerIngestTimestamp": None, "brokerName": "FakeBroker", "brokerVersion": "v1.0",
            "classifications": [
                {"classifierName": "NugentClassifier", "classifierParams": "100%", "classId": 111, "probability": 0.75},
                {"classifierName": "Other", "classifierParams": "", "classId": 112, "probability": 0.25}]}


# --------------------------------------------------------------------------------------------- wire models

AVRO_PY = {"long": int, "int": int, "double": float, "float": float, "string": str, "bytes": bytes}


@pytest.mark.parametrize("model", [
    ElasticcDiaSource, ElasticcDiaForcedSource, ElasticcDiaObject, ElasticcAlert, BrokerClassification,
    ElasticcDiaSourceV09, ElasticcDiaForcedSourceV09, ElasticcDiaObjectV09, ElasticcDiaNondetectionLimit,
    ElasticcAlertV09, BrokerClassificationV09,
])
def test_model_fields_match_schema(model):
    schema = json.loads((SCHEMAS / f"{model.avro_schema}.avsc").read_text())
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    assert set(model.model_fields) - {"brokerPublishTimestamp"} == set(fields)
    for name, avro_type in fields.items():
        info = model.model_fields[name]
        nullable = isinstance(avro_type, list) and "null" in avro_type
        assert (not info.is_required() and info.default is None) == nullable, name
        base = [t for t in avro_type if t != "null"][0] if nullable else avro_type
        if isinstance(base, str) and base in AVRO_PY:
            assert info.annotation == (AVRO_PY[base] | None if nullable else AVRO_PY[base]), name


def test_example_alert_validates(alert_dict):
    alert = ElasticcAlert.model_validate(alert_dict)
    assert alert.diaObject.hostgal_zspec == -9.0  # SNANA sentinel kept verbatim
    assert len(alert.prvDiaSources) == 2 and len(alert.prvDiaForcedSources) == 7
    assert alert.to_avro_dict() == alert_dict


def test_example_broker_message_validates(broker_dict):
    msg = BrokerClassification.model_validate(broker_dict)
    assert msg.elasticcPublishTimestamp == datetime(2024, 11, 21, 0, 2, 11, 733000, tzinfo=UTC)
    assert msg.brokerIngestTimestamp == datetime(2024, 11, 21, 0, 2, 25, 655000, tzinfo=UTC)
    assert len(msg.classifications) == 20
    assert msg.to_rest_dict() == broker_dict


@pytest.mark.parametrize("make", [
    lambda a, b: ElasticcAlert.model_validate(a),
    lambda a, b: BrokerClassification.model_validate(b),
    lambda a, b: ElasticcAlertV09.model_validate(v09_alert_dict()),
    lambda a, b: BrokerClassificationV09.model_validate(v09_broker_dict()),
])
def test_fastavro_roundtrip(make, alert_dict, broker_dict):
    model = make(alert_dict, broker_dict)
    data, decoded = avro_roundtrip(model)
    again = type(model).model_validate(decoded)
    assert avro_roundtrip(again)[0] == data  # lossless after the first float32 rounding
    if isinstance(model, BrokerClassification | BrokerClassificationV09):
        assert decoded["elasticcPublishTimestamp"] == model.elasticcPublishTimestamp
        assert again.brokerIngestTimestamp == model.brokerIngestTimestamp


def test_timestamps_int_ms_or_datetime(broker_dict):
    from_ms = BrokerClassification.model_validate(broker_dict | {"brokerPublishTimestamp": 1732147345700})
    aware = datetime(2024, 11, 21, 1, 2, 11, 733000, tzinfo=timezone(timedelta(hours=1)))
    from_dt = BrokerClassification.model_validate(broker_dict | {"elasticcPublishTimestamp": aware})
    naive_dt = datetime(2024, 11, 21, 0, 2, 11, 733000)
    naive = BrokerClassification.model_validate(broker_dict | {"elasticcPublishTimestamp": naive_dt})
    assert from_ms.elasticcPublishTimestamp == from_dt.elasticcPublishTimestamp == naive.elasticcPublishTimestamp
    assert from_dt.elasticcPublishTimestamp.tzinfo is UTC
    assert BrokerClassification.model_validate(broker_dict | {"brokerIngestTimestamp": 1000}).brokerIngestTimestamp == (
        datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))  # always ms, never pydantic's seconds guess
    assert "brokerPublishTimestamp" not in from_ms.to_avro_dict()
    assert from_ms.to_rest_dict()["brokerPublishTimestamp"] == 1732147345700
    assert "brokerPublishTimestamp" not in BrokerClassification.model_validate(broker_dict).to_rest_dict()


def test_extra_fields_rejected(alert_dict, broker_dict):
    with pytest.raises(ValidationError):
        ElasticcDiaSource.model_validate(alert_dict["diaSource"] | {"ccdVisitId": 1})
    with pytest.raises(ValidationError):
        ElasticcDiaObject.model_validate(alert_dict["diaObject"] | {"hostgal_zphot_p50": 0.1})
    with pytest.raises(ValidationError):  # a v0_9 message is not a v0_9_1 one
        BrokerClassification.model_validate(v09_broker_dict())
    with pytest.raises(ValidationError):
        BrokerClassificationV09.model_validate(broker_dict)
    ElasticcDiaSourceV09.model_validate(alert_dict["diaSource"] | {"ccdVisitId": 1})


# ------------------------------------------------------------------------------------------ alert codec


def test_alert_codec_roundtrip(alert_dict):
    alert = alert_from_elasticc(alert_dict)
    assert alert.schema_name == "elasticc.v0_9_1" and alert.alert_id == alert.source_id == 102879800007
    assert (alert.band, alert.flux, alert.snr) == ("i", 1923.5077, 6.747584)
    assert [p.mjd for p in alert.history] == sorted(p.mjd for p in alert.history) and len(alert.history) == 9
    assert sum(p.detection for p in alert.history) == 2
    obj = alert.object
    assert (obj.host_photoz, obj.host_specz, obj.mwebv) == (0.180046, None, 0.10760701)
    assert obj.extra["hostgal_zspec"] == -9.0 and "hostgal_zphot" not in obj.extra
    assert alert_to_elasticc(alert) == alert_dict
    # through Avro too (values then carry float32 rounding, which the codec must not disturb)
    _, decoded = avro_roundtrip(ElasticcAlert.model_validate(alert_dict))
    assert alert_to_elasticc(alert_from_elasticc(decoded)) == decoded
    # JSON round trip of the internal model
    assert Alert.model_validate_json(alert.model_dump_json()) == alert


def test_alert_codec_keeps_null_lists_and_derives_missing(alert_dict):
    alert_dict |= {"prvDiaSources": None, "prvDiaForcedSources": [], "diaObject": None}
    assert alert_to_elasticc(alert_from_elasticc(alert_dict)) == alert_dict
    bare = Alert(schema_name="test", alert_id=1, source_id=1, object_id=5, mjd=1.0, band="g", ra=1.0, dec=2.0,
                 flux=10.0, flux_err=2.0, history=[PhotometryPoint(mjd=0.5, band="g", flux=4.0, flux_err=2.0,
                                                                   detection=True, source_id=0)])
    record = alert_to_elasticc(bare)
    assert record["diaSource"]["snr"] == 5.0
    assert record["prvDiaSources"][0] == {"diaSourceId": 0, "diaObjectId": 5, "midPointTai": 0.5, "filterName": "g",
                                          "ra": 1.0, "decl": 2.0, "psFlux": 4.0, "psFluxErr": 2.0, "snr": 2.0}
    assert record["prvDiaForcedSources"] == [] and record["diaObject"] is None


def test_v09_alert_decodes_with_extras():
    alert = alert_from_elasticc(v09_alert_dict())
    assert alert.schema_name == "elasticc.v0_9"
    assert alert.extra["ccdVisitId"] == 7 and alert.extra["nobs"] == 3.0
    assert alert.extra["cutoutDifference"] == b"\xff\x00diff" and alert.extra["cutoutTemplate"] is None
    assert alert.extra["prvDiaNondetectionLimits"] == [
        {"ccdVisitId": 5, "midPointTai": 59797.5, "filterName": "g", "diaNoise": 30.0}]
    forced, detected = alert.history
    assert not forced.detection and forced.extra["totFlux"] == 25.0 and forced.extra["ccdVisitId"] == 6
    assert detected.detection and detected.extra["nobs"] == 2.0
    assert alert.object.extra["hostgal_zphot_p50"] == 0.29 and alert.object.host_specz is None
    assert alert.object.extra["hostgal_zspec"] == -99.0
    # re-encoding gives a valid v0_9_1 alert (v0_9-only fields dropped)
    record = alert_to_elasticc(alert)
    _, decoded = avro_roundtrip(ElasticcAlert.model_validate(record))
    assert decoded["diaObject"]["hostgal_zphot"] == pytest.approx(0.3) and "ccdVisitId" not in decoded["diaSource"]
    assert hash(forced) == hash(forced.model_copy())
    assert "cutoutDifference" in alert.model_dump_json()  # bytes in extra serialize (base64)


# ------------------------------------------------------------------------------------ classification records


def test_classification_record_alert_id_fallback():
    ident = ClassifierIdentity(brokerName="ALeRCE", brokerVersion="6.1", classifierName="lc", classifierParams="v1")
    common = {"broker": "alerce", "classifier": ident, "kind": "probability", "native_scheme": "elasticc2"}
    rec = ClassificationRecord(**common, dia_source_id=42, class_id=2222, probability=0.9, native_class=2222,
                               broker_publish_at=1732147345655)
    assert rec.alert_id == 42 and rec.native_class == "2222"
    assert rec.broker_publish_at == datetime(2024, 11, 21, 0, 2, 25, 655000, tzinfo=UTC)
    assert ClassificationRecord(**common, alert_id=7, dia_source_id=42, native_class="x").alert_id == 7
    assert ClassificationRecord(**common, native_class="bogus").alert_id is None
    line = ClassificationRecord.model_validate_json(rec.model_dump_json())
    assert line == rec
    with pytest.raises(ValidationError):
        ClassificationRecord(**(common | {"kind": "guess"}), native_class="x")
