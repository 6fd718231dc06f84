"""Decoders for Lasair's JSON: filter-topic messages, REST query rows and annotations.

A Lasair filter topic (``lasair_<userId><filter>``) carries one JSON object per alert that passed the filter
(lsst-uk/lasair-lsst ``docs/source/core_functions/alert-streams.md``), at one of three levels: the SELECTed columns
plus ``UTC``; the same with the lite light curve under ``alert``; or the full record minus cutouts (``diaObject``,
``diaSourcesList``... and ``annotations``, as ``tests/unit/pipeline/filter/sample_alerts/*.json``). The REST API's
``query/`` answers a list of such rows; ``annotate/`` takes ``{diaObjectId, topic, version, classification,
explanation, classdict, url}``. All come through :func:`decode_json`.

Classifications found, each a message of its own:

* Sherlock's class, from ``annotations.sherlock[0].classification`` or a SELECTed ``classification`` column
  (``sherlock_classifications.classification``): scheme ``sherlock``, context, no value.
* Every other annotator under ``annotations`` (and a bare annotation object): scheme ``lasair_annotation``, the
  annotator's topic in the classifier name, its version as the classifier's parameters.

A record with an object id but no classification (a filter that selects none) decodes into no message: there is
nothing to store, and nothing is wrong. Lasair's JSON may hold bare ``NaN`` tokens, which Python's parser accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from alertmux import BrokerMessage, DecodeError, Delivery
from alertmux_lasair.vocabulary import ANNOTATION, SHERLOCK

BROKER_NAME = "Lasair"


def decode_json(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """A Lasair filter message, a list of query rows, or annotations."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    records = body if isinstance(body, list) else [body]
    if not records:
        raise DecodeError("an empty list: no Lasair record")
    messages: list[BrokerMessage] = []
    for record in records:
        if not isinstance(record, dict):
            raise DecodeError("not a Lasair record: expected JSON objects")
        try:
            messages += record_messages(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not a Lasair record: missing or wrong field {exc}") from None
    return messages


def record_messages(record: Mapping[str, Any]) -> list[BrokerMessage]:
    """The classifications in one Lasair record."""
    object_id, alert_id = _ids(record)
    if object_id is None and alert_id is None:
        raise DecodeError("not a Lasair record: no diaObjectId (or ZTF objectId) and no diaSourceId")
    common = {"alert_id": alert_id, "dia_source_id": alert_id, "dia_object_id": object_id}
    messages = []
    if "topic" in record and "classification" in record:  # an annotation as annotate/ takes it
        return [_annotation(str(record["topic"]), record, common)]
    annotations = record.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise DecodeError("annotations must be an object of annotator topic -> annotations")
    sherlock = annotations.get("sherlock") or []
    if sherlock:
        first = sherlock[0]
        messages.append(BrokerMessage(classifier=(BROKER_NAME, "", "sherlock", _version(first.get("annotator"))),
                                      scheme=SHERLOCK, labels=[str(first["classification"])], values=[None], **common))
    elif record.get("classification") not in (None, ""):  # a filter SELECTing sherlock_classifications.classification
        messages.append(BrokerMessage(classifier=(BROKER_NAME, "", "sherlock", ""), scheme=SHERLOCK,
                                      labels=[str(record["classification"])], values=[None], **common))
    for topic, entries in annotations.items():
        if topic == "sherlock":
            continue
        for entry in entries if isinstance(entries, list) else [entries]:
            messages.append(_annotation(str(topic), entry, common))
    return messages


def _annotation(topic: str, entry: Mapping[str, Any], common: dict[str, Any]) -> BrokerMessage:
    label = entry["classification"]
    if label in (None, ""):
        raise DecodeError(f"an annotation of {topic} without a classification")
    return BrokerMessage(classifier=(BROKER_NAME, "", f"annotation:{topic}", str(entry.get("version") or "")),
                         scheme=ANNOTATION, labels=[str(label)], values=[None], **common)


def _ids(record: Mapping[str, Any]) -> tuple[int | None, int | None]:
    obj = record.get("diaObject") if isinstance(record.get("diaObject"), Mapping) else {}
    object_id = record.get("diaObjectId", obj.get("diaObjectId"))
    if object_id is None and isinstance(record.get("objectId"), str):
        object_id = ztf_number(record["objectId"])
    alert_id = record.get("diaSourceId", (record.get("diaSource") or {}).get("diaSourceId"))
    sources = record.get("diaSourcesList")
    if alert_id is None and isinstance(sources, list) and sources:
        # The full level lists the object's sources; the newest is the alert that passed the filter.
        newest = max(sources, key=lambda s: s.get("midpointMjdTai") or 0.0)
        alert_id = newest.get("diaSourceId")
    if alert_id is None and record.get("candid") is not None:  # Lasair ZTF
        alert_id = record["candid"]
    return (None if object_id is None else int(object_id)), (None if alert_id is None else int(alert_id))


def _version(annotator: Any) -> str:
    # "https://github.com/thespacedoctor/sherlock/releases/tag/v3.1.0" -> "v3.1.0"
    return str(annotator).rstrip("/").rsplit("/", 1)[-1] if annotator else ""


def ztf_number(oid: str) -> int:
    """The integer for a ZTF object name (year x 26^7 + the letters in base 26), as the ALeRCE and Fink plugins use.

    ALeRCE's multisurvey id mapping (alercebroker/web-services ``idmapper/ztf.py``), reversible.
    """
    if not (len(oid) == 12 and oid.startswith("ZTF") and oid[3:5].isdigit() and oid[5:].isalpha()
            and oid[5:].islower()):
        raise DecodeError(f"objectId {oid[:40]!r} is not a ZTF object name")
    number = int(oid[3:5]) * 26**7
    for i, letter in enumerate(oid[5:12]):
        number += (ord(letter) - ord("a")) * 26 ** (6 - i)
    return number
