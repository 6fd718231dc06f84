"""Decoders for every wire format Fink uses.

* ``kafka`` (:func:`decode_kafka`): what Fink's Kafka topics carry.

  - Livestream ``fink_<filter>_lsst`` / ``fink_<filter>_ztf``: schemaless Avro whose writer schema is the JSON in the
    message key (fink-client ``AlertConsumer.process_message``; fink-broker ``distribution_utils.get_kafka_df``).
  - Data transfer ``ftransfer_*``: the same schemaless records, or Avro container files (the files the service and
    ``finkctl`` write carry their schema in their header).
  - The 2022 ELAsTiCC stream: schemaless ``elasticc.v0_9`` brokerClassification, keyed by the version string
    ``<fink-broker>_<fink-science>``.

  Without a key (a consumer that dropped it, a file), the schemas alertmux knows are tried: its LSST livestream
  schema (:mod:`alertmux_fink.schemas`), then ``elasticc.v0_9``; a record that does not fit one exactly is refused.
* ``elasticc2022``: that ELAsTiCC message alone, Avro or the JSON form.
* ``rest``: rows of the Fink REST APIs (``/api/v1/latests`` on ZTF, ``/api/v1/tags`` and ``/api/v1/objects`` on
  LSST): a JSON list of rows whose column names carry HBase family prefixes (``i:candid``, ``d:finkclass``,
  ``r:diaSourceId``...), read like the Avro records once the prefixes are dropped.

One Fink alert becomes one message per classifier it carries (CATS, SuperNNova, the early SN Ia score, the main label,
the cross-match...), each with Fink's identity ``("Fink", fink_broker_version, classifier, fink_science_version)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import fastavro

from alertmux import BrokerMessage, DecodeError, Delivery
from alertmux.builtin.elasticc import messages_from_record
from alertmux.serde import container_decode, is_container, load_schema, schemaless_decode
from alertmux_fink import schemas, vocabulary

BROKER_NAME = "Fink"
MJD_UNIX_EPOCH = 40587.0
_SCHEMA_CACHE_SIZE = 16
_schemas: OrderedDict[str, Any] = OrderedDict()


def decode_kafka(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """A message of any Fink topic (livestream, data transfer, 2022 ELAsTiCC), its schema found as Fink intends."""
    if is_container(payload):
        return _from_records(list(container_decode(payload)), delivery)
    key = delivery.key
    text = key.decode("utf-8", "replace").strip() if key else ""
    if text.startswith("{"):
        return _from_records([schemaless_decode(payload, _schema_from_key(text))], delivery)
    if text and not _is_version(text):
        raise DecodeError(f"message key {text[:40]!r} is neither an Avro schema nor a Fink version string")
    errors = []
    for name, schema in (("Fink LSST livestream", schemas.livestream_schema()),
                         ("elasticc.v0_9", _elasticc_schema())):
        try:
            record = schemaless_decode(payload, schema)
        except DecodeError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return _from_records([record], delivery)
    why = f"key {text!r} names a version, not a schema" if text else "no schema in the message key"
    raise DecodeError(f"{why}, and no schema alertmux knows fits ({'; '.join(errors)})")


def decode_elasticc2022(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Fink's 2022 ELAsTiCC message: ``elasticc.v0_9`` brokerClassification, schemaless Avro or JSON."""
    if payload[:1] in (b"{", b"["):
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"not JSON: {exc}") from None
        records = body if isinstance(body, list) else [body]
    else:
        records = [schemaless_decode(payload, _elasticc_schema())]
    return _from_records(records, delivery)


def decode_rest(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Rows of the Fink REST API (JSON list, or one row), column family prefixes dropped."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    rows = body if isinstance(body, list) else [body]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise DecodeError("not Fink REST rows: expected a JSON list of objects")
    return _from_records([_unprefixed(r) for r in rows], delivery)


def _unprefixed(row: Mapping[str, Any]) -> dict[str, Any]:
    # "i:candid" -> "candid"; LSST nested columns may come flattened ("clf.cats_class" or "cats_class").
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = key.split(":", 1)[1] if ":" in key[:3] else key
        out[name.rsplit(".", 1)[-1]] = value
    if "classification" in out and "finkclass" not in out:  # the ZTF API's computed column for the Fink class
        out["finkclass"] = out["classification"]
    return out


# -- records ------------------------------------------------------------------------------------------------------
def _from_records(records: Iterable[Any], delivery: Delivery) -> list[BrokerMessage]:
    messages: list[BrokerMessage] = []
    count = 0
    for record in records:
        count += 1
        if not isinstance(record, dict):
            raise DecodeError("not a Fink record")
        try:
            if "classifications" in record and "brokerName" in record:
                messages += _elasticc(record, delivery)
            elif "clf" in record or "diaSource" in record or "diaSourceId" in record:
                messages += lsst_messages(record)
            elif "candid" in record and "objectId" in record:
                messages += ztf_messages(record)
            else:
                raise DecodeError("neither a Fink LSST alert, a Fink ZTF alert nor an ELAsTiCC brokerClassification")
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not a Fink record: missing or wrong field {exc}") from None
    if not count:
        raise DecodeError("no record in the payload")
    return messages


def _elasticc(record: dict[str, Any], delivery: Delivery) -> list[BrokerMessage]:
    if not record["classifications"]:
        raise DecodeError("brokerClassification with an empty classifications list")
    found = messages_from_record(record, delivery)
    for message in found:
        message.scheme = vocabulary.ELASTICC_2022
    return found


def lsst_messages(record: Mapping[str, Any]) -> list[BrokerMessage]:
    """The messages of one Fink-enriched Rubin alert: CATS, SuperNNova, early SN Ia, main label, cross-match."""
    source = record.get("diaSource") or {}
    obj = record.get("diaObject") or {}
    source_id = record.get("diaSourceId", source.get("diaSourceId"))
    if source_id is None:
        raise DecodeError("a Fink LSST alert without diaSourceId")
    clf, pred, xm = record.get("clf") or record, record.get("pred") or record, record.get("xm") or record
    common = {
        "alert_id": int(source_id), "dia_source_id": int(source_id),
        "dia_object_id": _int(obj.get("diaObjectId", source.get("diaObjectId", record.get("diaObjectId")))),
        "broker_ingest_ms": _mjd_ms(record.get("brokerIngestMjd")),
    }
    version, science = str(record.get("fink_broker_version") or ""), str(record.get("fink_science_version") or "")

    def message(name: str, scheme: str, labels: list[Any], values: list[float | None]) -> BrokerMessage:
        return BrokerMessage(classifier=(BROKER_NAME, version, name, science), scheme=scheme, labels=labels,
                             values=values, **common)

    out = []
    cats = _int(clf.get("cats_class"))
    if cats is not None:
        if cats == -1:  # not processed: NotClassified, which carries probability 1 by definition
            out.append(message("CATS", vocabulary.CATS, [-1], [1.0]))
        else:
            score = _probability(clf.get("cats_score"), "cats_score")
            out.append(message("CATS", vocabulary.CATS, [cats, "residual"], [score, 1.0 - score]))
    out += _binary(message, "SuperNNova SN vs others", "SN", clf.get("snnSnVsOthers_score"))
    out += _binary(message, "EarlySNIa", "Ia", clf.get("earlySNIa_score"))
    main = _int(pred.get("main_label_classifier"))
    if main is not None:
        out.append(message("main_label_classifier", vocabulary.MAIN_LABEL, [main], [None]))
    crossmatch = pred.get("main_label_crossmatch", xm.get("simbad_otype"))
    if crossmatch not in (None, ""):
        out.append(message("main_label_crossmatch", vocabulary.SIMBAD, [str(crossmatch)], [None]))
    if not out:
        raise DecodeError("a Fink LSST alert without any classification (clf, pred)")
    return out


def ztf_messages(record: Mapping[str, Any]) -> list[BrokerMessage]:
    """The messages of one Fink-enriched ZTF alert: finkclass, SIMBAD type and the classifier scores."""
    candid = int(record["candid"])
    common = {"alert_id": candid, "dia_source_id": candid, "dia_object_id": ztf_number(str(record["objectId"])),
              "broker_ingest_ms": _datetime_ms(record.get("brokerIngestTimestamp"))}
    version, science = str(record.get("fink_broker_version") or ""), str(record.get("fink_science_version") or "")

    def message(name: str, scheme: str, labels: list[Any], values: list[float | None]) -> BrokerMessage:
        return BrokerMessage(classifier=(BROKER_NAME, version, name, science), scheme=scheme, labels=labels,
                             values=values, **common)

    out = []
    if record.get("finkclass") not in (None, ""):
        out.append(message("finkclass", vocabulary.FINKCLASS, [str(record["finkclass"])], [None]))
    if record.get("cdsxmatch") not in (None, ""):
        out.append(message("cdsxmatch", vocabulary.SIMBAD, [str(record["cdsxmatch"])], [None]))
    out += _binary(message, "SuperNNova SN Ia vs non-Ia", "Ia", record.get("snn_snia_vs_nonia"))
    out += _binary(message, "SuperNNova SN vs all", "SN", record.get("snn_sn_vs_all"))
    out += _binary(message, "EarlySNIa RF", "Ia", record.get("rf_snia_vs_nonia"))
    out += _binary(message, "Kilonova RF", "KN", record.get("rf_kn_vs_nonkn"))
    if not out:
        raise DecodeError("a Fink ZTF alert without any classification (finkclass, cdsxmatch, scores)")
    return out


def _binary(message: Any, name: str, label: str, value: Any) -> list[BrokerMessage]:
    # Fink writes -1 (or null) where a classifier did not run: no message then, rather than a made-up score.
    if value is None or (isinstance(value, float) and math.isnan(value)) or float(value) < 0:
        return []
    p = _probability(value, name)
    return [message(name, vocabulary.SCORES, [label, "other"], [p, 1.0 - p])]


def _probability(value: Any, what: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise DecodeError(f"{what}={number} is not a probability")
    return number


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _mjd_ms(mjd: Any) -> int | None:
    return None if mjd is None else round((float(mjd) - MJD_UNIX_EPOCH) * 86_400_000)


def _datetime_ms(text: Any) -> int | None:
    # "2026-03-22 13:23:01.082696", UTC.
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(str(text)).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None


def _is_version(text: str) -> bool:
    # "4.1_8.41.0": fink-broker and fink-science versions, the key of the 2022 ELAsTiCC stream and of old ZTF topics.
    return all(part.replace(".", "").isdigit() for part in text.split("_")) and "." in text


def _schema_from_key(text: str) -> Any:
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    schema = _schemas.get(digest)
    if schema is None:
        try:
            schema = fastavro.parse_schema(json.loads(text))
        except Exception as exc:  # noqa: BLE001 - json and fastavro raise many types for a bad schema
            raise DecodeError(f"the message key is not a valid Avro schema: {type(exc).__name__}: {exc}") from None
        _schemas[digest] = schema
        if len(_schemas) > _SCHEMA_CACHE_SIZE:
            _schemas.popitem(last=False)
    else:
        _schemas.move_to_end(digest)
    return schema


def _elasticc_schema() -> Any:
    return load_schema("elasticc.v0_9.brokerClassification", logical_types=False)


def ztf_number(oid: str) -> int:
    """The integer for a ZTF object name: year x 26^7 + the seven letters read in base 26.

    The reversible mapping of ALeRCE's multisurvey API (alercebroker/web-services ``idmapper/ztf.py``), so that the
    Fink and ALeRCE plugins store the same ZTF object under the same id.
    """
    if not (len(oid) == 12 and oid.startswith("ZTF") and oid[3:5].isdigit() and oid[5:].isalpha()
            and oid[5:].islower()):
        raise DecodeError(f"objectId {oid[:40]!r} is not a ZTF object name")
    number = int(oid[3:5]) * 26**7
    for i, letter in enumerate(oid[5:12]):
        number += (ord(letter) - ord("a")) * 26 ** (6 - i)
    return number


def container_bytes(records: list[dict[str, Any]], schema: Any) -> bytes:
    """An Avro container file of ``records`` (what the data transfer service writes)."""
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, records)
    return buffer.getvalue()
