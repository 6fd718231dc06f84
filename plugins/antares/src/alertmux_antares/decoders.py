"""Decoders for every wire format ANTARES uses.

* ``locus`` (the Kafka decoder): a message of a ``client.<name>`` topic, a locus as zlib-compressed BSON, in either
  shape antares-client 2.0.2 accepts (``antares_client/_stream/schema/locus.py``): the old
  ``{"data": {"id", "attributes": {ra, dec, properties, tags, catalogs}}}`` and the new ``LocusMessageToUsers``
  ``{id, ra, dec, properties, tags, catalogs}``.
* ``elasticc``: ANTARES's ELAsTiCC topics (``elasticc2-2``, ``elasticc-2022fall-classifications``), schemaless Avro
  brokerClassification, either campaign's version (read with the core's decoder).
* ``rest``: a locus of the REST API v2 (``{"id", "type": "locus", "attributes": {...}}``, one element of ``data``).

A locus becomes up to two messages: Superphot+'s class with its probability (``antares`` scheme) and the tags
(``antares_tag`` scheme, context). Loci carry no alert id field of their own: the newest alert's id
(``properties.newest_alert_id``, an integer or ``<survey prefix>:<id>``) keys them, the Rubin object id comes from
``properties.survey.lsst.dia_object_id`` (the path antares-client's search uses).

BSON is read with the ``bson`` module: PyPI's ``bson`` (what antares-client itself uses, ``bson.loads``) or
pymongo's (``bson.decode``), whichever is installed; the two share the import name and cannot be installed together.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from alertmux import BrokerMessage, DecodeError, Delivery
from alertmux.builtin.elasticc import decode_avro
from alertmux_antares.vocabulary import SCHEME, TAG_SCHEME

BROKER_NAME = "ANTARES"
_MAX_LOCUS = 64 * 1024 * 1024  # decompression bomb guard: a locus is kilobytes


def bson_loads(data: bytes) -> dict[str, Any]:
    """One BSON document, with whichever ``bson`` module is installed."""
    import bson

    loads = getattr(bson, "loads", None) or bson.decode  # PyPI bson, else pymongo
    return loads(data)  # type: ignore[no-any-return]


def bson_dumps(document: Mapping[str, Any]) -> bytes:
    """One BSON document, with whichever ``bson`` module is installed."""
    import bson

    dumps = getattr(bson, "dumps", None) or bson.encode
    return dumps(dict(document))  # type: ignore[no-any-return]


def decode_locus(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """A locus from an ANTARES Kafka topic: zlib-compressed BSON."""
    try:
        raw = zlib.decompressobj().decompress(payload, _MAX_LOCUS)
    except zlib.error as exc:
        raise DecodeError(f"not zlib-compressed (an ANTARES locus is zlib+BSON): {exc}") from None
    if len(raw) < 5 or int.from_bytes(raw[:4], "little") != len(raw):
        raise DecodeError("not a BSON document: its length prefix does not match its size")
    try:
        document = bson_loads(raw)
    except Exception as exc:  # noqa: BLE001 - the bson codecs raise struct, index, unicode and value errors
        raise DecodeError(f"not a BSON document: {type(exc).__name__}: {exc}") from None
    return locus_messages(document)


def decode_elasticc(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """ANTARES's ELAsTiCC classification messages (schemaless Avro brokerClassification)."""
    messages = decode_avro(payload, delivery)
    if not messages:
        raise DecodeError("a brokerClassification without classifications")
    return messages


def decode_rest(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """One locus of the REST API v2 (or a page ``{"data": [...]}`` of them)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    items = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), list) else [body]
    messages = []
    for item in items:
        messages += locus_messages({"data": item} if isinstance(item, dict) and "attributes" in item else item)
    if not items:
        raise DecodeError("an empty page of loci")
    return messages


def locus_messages(document: Any) -> list[BrokerMessage]:
    """The messages of one locus, in either of the shapes ANTARES sends."""
    if not isinstance(document, dict):
        raise DecodeError("not an ANTARES locus: not a document")
    if isinstance(document.get("data"), dict):  # the old shape
        locus = dict(document["data"].get("attributes") or {})
        locus["id"] = document["data"].get("id")
    else:
        locus = document
    if not isinstance(locus.get("id"), str) or not isinstance(locus.get("properties"), dict):
        raise DecodeError("not an ANTARES locus: it needs a string id and a properties document "
                          "(as antares-client's LocusMessageToUsers)")
    properties: dict[str, Any] = locus["properties"]
    alert_id = _alert_id(properties.get("newest_alert_id"))
    object_id = _lsst_object_id(properties)
    if alert_id is None and object_id is None:
        raise DecodeError(f"locus {locus['id']}: neither properties.newest_alert_id nor "
                          "properties.survey.lsst.dia_object_id: nothing to key it by")
    common = {"alert_id": alert_id, "dia_source_id": alert_id, "dia_object_id": object_id}
    messages = []
    label = properties.get("superphot_plus_class")
    if label is not None:
        p = float(properties.get("superphot_plus_class_prob", float("nan")))
        if not 0.0 <= p <= 1.0:
            raise DecodeError(f"locus {locus['id']}: superphot_plus_class_prob {p} is not a probability")
        messages.append(BrokerMessage(
            classifier=(BROKER_NAME, "", "superphot_plus", str(properties.get("superphot_plus_classifier") or "")),
            scheme=SCHEME, labels=[str(label), "residual"], values=[p, 1.0 - p], **common))
    tags = locus.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DecodeError(f"locus {locus['id']}: tags must be a list of strings")
    if tags:
        ordered = sorted(set(tags))  # a stable order keeps equal tag sets equal
        messages.append(BrokerMessage(classifier=(BROKER_NAME, "", "tags", ""), scheme=TAG_SCHEME,
                                      labels=ordered, values=[None] * len(ordered), **common))
    return messages


def _alert_id(value: Any) -> int | None:
    # ANTARES writes alert ids as "<survey prefix>:<id>" (ztf_candidate:...); a bare integer is accepted too.
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    tail = str(value).rsplit(":", 1)[-1]
    if not tail.lstrip("-").isdigit():
        raise DecodeError(f"newest_alert_id {str(value)[:40]!r} ends in no numeric alert id")
    return int(tail)


def _lsst_object_id(properties: Mapping[str, Any]) -> int | None:
    survey = properties.get("survey")
    value = None
    if isinstance(survey, Mapping):
        value = (survey.get("lsst") or {}).get("dia_object_id")
    value = properties.get("survey.lsst.dia_object_id", value)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DecodeError(f"survey.lsst.dia_object_id {str(value)[:40]!r} is not an integer") from None


def encode_locus(locus: Mapping[str, Any]) -> bytes:
    """A locus as ANTARES puts it on Kafka: BSON, zlib-compressed."""
    return zlib.compress(bson_dumps(locus))
