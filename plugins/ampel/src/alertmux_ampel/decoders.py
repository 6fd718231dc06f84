"""Decoders for AMPEL's two outputs.

* ``push``: one ELAsTiCC brokerClassification as AMPEL PUT it to the DESC TOM (JSON; ``elasticc.v0_9_1`` with one
  classifier per message, or the 2022 ``elasticc.v0_9`` form whose entries name their classifier), with the
  optional ``brokerPublishTimestamp``. Its class ids are read in AMPEL's ``ampel`` scheme (quirks included).
* ``hop``: an ``LSSTReport`` as AMPEL's HopskotchAdapter publishes it: a hop ``AvroBlob``, i.e. an Avro container
  file carrying its own schema, with the Kafka header ``_format: avro``. One message per (classification unit,
  model), keyed by the object (reports carry no alert id), labels as the model names them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro

from alertmux import BrokerMessage, DecodeError, Delivery
from alertmux.builtin.elasticc import messages_from_record
from alertmux.serde import container_decode, is_container
from alertmux_ampel.vocabulary import SCHEME

BROKER_NAME = "AMPEL"


def decode_push(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """A pushed brokerClassification (or a list of them), as AMPEL's ElasticcTomClient sent it."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    items = body if isinstance(body, list) else [body]
    messages: list[BrokerMessage] = []
    for item in items:
        if not isinstance(item, dict) or not item.get("classifications"):
            raise DecodeError("not a brokerClassification message with classifications")
        try:
            found = messages_from_record(item, delivery)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not a brokerClassification message: missing or wrong field {exc}") from None
        for message in found:
            message.scheme = SCHEME
            message.values = [_finite(v) for v in message.values]
        messages.extend(found)
    if not messages:
        raise DecodeError("an empty list of brokerClassification messages")
    return messages


def decode_hop(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """An LSSTReport hop AvroBlob (Avro container; the ``_format`` header, when present, must say avro)."""
    formats = [value for key, value in delivery.headers if key == "_format"]
    if formats and formats[0] not in (b"avro", "avro"):
        raise DecodeError(f"hop message of format {formats[0]!r}, not an avro LSSTReport")
    if not is_container(payload):
        raise DecodeError("not a hop AvroBlob: an LSSTReport comes as an Avro container file")
    messages: list[BrokerMessage] = []
    for record in container_decode(payload):
        try:
            object_id = int(record["object"]["id"])
            for unit in record.get("classification") or ():
                info = unit.get("info")
                params = info if isinstance(info, str) else json.dumps(info, sort_keys=True) if info else ""
                for model in unit["models"]:
                    probabilities = model["probabilities"]
                    keys = sorted(probabilities)
                    messages.append(BrokerMessage(
                        classifier=(BROKER_NAME, str(unit["version"]), f"{unit['name']}:{model['model']}", params),
                        scheme=SCHEME, labels=[_label(k) for k in keys],
                        values=[_finite(probabilities[k]) for k in keys],
                        dia_object_id=object_id,
                    ))
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not an LSSTReport: missing or wrong field {exc}") from None
    if not messages:
        raise DecodeError("an LSSTReport without any classification")
    return messages


def _label(key: str) -> int | str:
    # Avro map keys are strings: a report keyed by class id ("2222") means the id.
    return int(key) if key.lstrip("-").isdigit() else key


def _finite(value: Any) -> float:
    number = float(value)
    # AMPEL's own client sets non-finite probabilities to 0 before sending (ElasticcTomClient); do the same here.
    return number if number == number and abs(number) != float("inf") else 0.0


@cache
def report_schema() -> Any:
    """The LSSTReport Avro schema alertmux writes reports with (emulator, samples)."""
    return fastavro.parse_schema(json.loads(files("alertmux_ampel").joinpath("schemas/lsst_report.avsc").read_text()))
