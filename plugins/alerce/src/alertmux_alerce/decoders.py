"""Decoders for every wire format ALeRCE uses.

* ``elasticc``: its ELAsTiCC output, schemaless Avro ``elasticc.v0_9_1`` brokerClassification on the daily
  ``lc_classifier_*`` topics (ELAsTiCC2 ids, all 32 classes, scheme ``elasticc2``).
* ``rest``: a REST probabilities answer (``probability_api/probability`` of the LSST API, or
  ``/ztf/v1/objects/{oid}/probabilities``): rows ``{classifier_name, classifier_version, class_name, probability,
  ranking}``, as the poller wraps them with their object id, or as the API returns them when the rows carry it.
* ``lc_classification`` and ``stamp``: the records of ALeRCE's own pipeline topics (late light-curve classification
  ``probabilities_and_features``, early ``stamp_probabilities``), Avro container per message or schemaless, with the
  schemas ALeRCE publishes (shipped in ``schemas/``, MIT).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro

from alertmux import BrokerMessage, DecodeError, Delivery
from alertmux.builtin.elasticc import messages_from_record
from alertmux.serde import container_decode, is_container, load_schema, schemaless_decode
from alertmux_alerce.vocabulary import SCHEME

BROKER_NAME = "ALeRCE"


def decode_elasticc(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Schemaless Avro ``elasticc.v0_9_1`` brokerClassification, as ALeRCE published it for ELAsTiCC2."""
    record = schemaless_decode(payload, load_schema("elasticc.v0_9_1.brokerClassification", logical_types=False))
    if not record["classifications"]:
        raise DecodeError("brokerClassification with an empty classifications list")
    return messages_from_record(record, delivery)


def decode_rest(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """One object's probabilities from ALeRCE's REST API, one message per (classifier, version)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if isinstance(body, dict) and isinstance(body.get("probabilities"), list):
        oid, rows = body.get("oid"), body["probabilities"]
    elif isinstance(body, list):
        oid, rows = None, body
    else:
        raise DecodeError("not an ALeRCE probabilities answer: expected a list of rows, or {oid, probabilities}")
    if not rows:
        raise DecodeError("an ALeRCE probabilities answer with no rows")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        try:
            key = (str(row["classifier_name"]), str(row.get("classifier_version") or ""))
            groups.setdefault(key, []).append(row)
            row_oid = row.get("oid", oid)
            float(row["probability"])
            str(row["class_name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not an ALeRCE probability row: missing or wrong field {exc}") from None
        if row_oid is None:
            raise DecodeError("an ALeRCE probability row without an object id (oid)")
        oid = row_oid
    messages = []
    for (classifier, version), group in groups.items():
        group.sort(key=lambda r: str(r["class_name"]))  # a stable order keeps the content hash stable
        messages.append(BrokerMessage(
            classifier=(BROKER_NAME, version, classifier, version), scheme=SCHEME,
            labels=[str(r["class_name"]) for r in group], values=[float(r["probability"]) for r in group],
            dia_object_id=_object_id(oid),
        ))
    return messages


def decode_lc_classification(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """ALeRCE's late classification record ``probabilities_and_features`` (ZTF light-curve classifier)."""
    messages = []
    for record in _records(payload, "lc_classification_step__output_ztf"):
        oid = _object_id(record["oid"])
        result = record["lc_classification"]
        messages.append(_message("lc_classifier", result["probabilities"], oid))
        for level, probabilities in (result.get("hierarchical") or {}).items():
            if level == "top":
                messages.append(_message("lc_classifier_top", probabilities, oid))
            elif level == "children":
                for branch, child in probabilities.items():
                    messages.append(_message(f"lc_classifier_{branch.lower()}", child, oid))
    if not messages:
        raise DecodeError("no probabilities_and_features record in the payload")
    return messages


def decode_stamp(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """ALeRCE's early classification record ``stamp_probabilities`` (first detection's image stamps)."""
    messages = []
    for record in _records(payload, "stamp_classifier_2025_step__output"):
        message = _message("stamp_classifier_2025_beta", record["probabilities"], _object_id(record["objectId"]))
        message.alert_id = message.dia_source_id = int(record["candid"])
        messages.append(message)
    if not messages:
        raise DecodeError("no stamp_probabilities record in the payload")
    return messages


def _message(classifier: str, probabilities: dict[str, float], oid: int) -> BrokerMessage:
    if not probabilities:
        raise DecodeError(f"{classifier}: no probabilities")
    labels = sorted(probabilities)
    return BrokerMessage(classifier=(BROKER_NAME, "", classifier, ""), scheme=SCHEME, labels=labels,
                         values=[float(probabilities[label]) for label in labels], dia_object_id=oid)


def _object_id(oid: Any) -> int:
    # Object ids are stored as integers: LSST's are; a ZTF name becomes ALeRCE's own integer for it.
    text = str(oid).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if is_ztf_name(text):
        return ztf_number(text)
    raise DecodeError(f"object id {text[:40]!r} is neither numeric nor a ZTF object name")


def is_ztf_name(oid: str) -> bool:
    """Whether ``oid`` is a ZTF object name: ``ZTF``, a two-digit year, seven lowercase letters."""
    return len(oid) == 12 and oid.startswith("ZTF") and oid[3:5].isdigit() and oid[5:].isalpha() and oid[5:].islower()


def ztf_number(oid: str) -> int:
    """ALeRCE's integer for a ZTF name: year x 26^7 + the letters read in base 26.

    It is the id mapping of ALeRCE's multisurvey API (alercebroker/web-services
    ``object_api/services/idmapper/ztf.py``), and reversible (:func:`ztf_name`), so nothing is lost.
    """
    number = int(oid[3:5]) * 26**7
    for i, letter in enumerate(oid[5:12]):
        number += (ord(letter) - ord("a")) * 26 ** (6 - i)
    return number


def ztf_name(number: int) -> str:
    """The ZTF name of an integer from :func:`ztf_number`."""
    year, rest = (number // 26**7) % 100, number % 26**7
    letters = ""
    for i in range(6, -1, -1):
        letters += chr(rest // 26**i + ord("a"))
        rest %= 26**i
    return f"ZTF{year:02d}{letters}"


@cache
def pipeline_schema(name: str) -> Any:
    """One of the ALeRCE pipeline schemas shipped in ``schemas/``, parsed."""
    return fastavro.parse_schema(json.loads(files("alertmux_alerce").joinpath(f"schemas/{name}.avsc").read_text()))


def _records(payload: bytes, schema: str) -> Iterable[dict[str, Any]]:
    if is_container(payload):
        return list(container_decode(payload))
    return [schemaless_decode(payload, pipeline_schema(schema))]

