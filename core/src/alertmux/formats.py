"""Recognize a payload file without being told what it is: gzip, JSON, Avro container, or schemaless Avro."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alertmux.errors import DecodeError
from alertmux.serde import container_decode, is_container, load_schema, schemaless_decode

# Tried in this order for schemaless payloads; the trailing-bytes check in schemaless_decode rejects most
# wrong guesses, and the alert schemas come first because an alert never decodes as a broker message.
SCHEMALESS_CANDIDATES = (
    "elasticc.v0_9_1.alert",
    "elasticc.v0_9.alert",
    "elasticc.v0_9_1.brokerClassification",
    "elasticc.v0_9.brokerClassification",
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a payload turned out to be."""

    format: str
    """e.g. ``schemaless Avro elasticc.v0_9_1.alert`` or ``Avro container (elasticc.v0_9_1.alert)``."""
    records: list[Any]


def sniff(payload: bytes) -> Decoded:
    """Decode a payload of unknown framing, saying which framing and schema it had."""
    prefix = ""
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
        prefix = "gzip, "
    stripped = payload.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"looks like JSON but is not: {exc}") from None
        return Decoded(prefix + "JSON", body if isinstance(body, list) else [body])
    if is_container(payload):
        records = list(container_decode(payload))
        return Decoded(prefix + "Avro container file", records)
    errors = []
    for name in SCHEMALESS_CANDIDATES:
        try:
            return Decoded(f"{prefix}schemaless Avro {name}", [schemaless_decode(payload, load_schema(name))])
        except DecodeError as exc:
            errors.append(str(exc))
    raise DecodeError("unrecognized payload: not JSON, not an Avro container, and not schemaless Avro of a known"
                      f" schema ({'; '.join(errors[:1])})")


def to_json(record: Any) -> str:
    """One JSON line for a decoded record (bytes as base64, datetimes as ISO 8601)."""
    return json.dumps(record, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def iter_files(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) for every file, with an unreadable one reported as a clear error."""
    from alertmux.errors import UsageError

    for path in paths:
        try:
            with open(path, "rb") as handle:
                yield path, handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
