"""Avro in the three framings brokers use: schemaless, container files (OCF) and the Confluent wire format."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

from alertmux.errors import DecodeError

OCF_MAGIC = b"Obj\x01"
_WIRE_HEADER = struct.Struct(">bI")  # magic byte 0, then the schema id, big-endian (Confluent's framing)


@cache
def load_schema(name: str, *, logical_types: bool = True) -> Any:
    """Parse a schema shipped in ``alertmux/schemas`` (``elasticc.v0_9_1.alert`` ...), named types resolved.

    With ``logical_types=False`` timestamps decode as the epoch-millisecond integers on the wire: the ingest hot
    path wants those, not ``datetime`` objects it would convert straight back.
    """
    path = files("alertmux").joinpath(f"schemas/{name}.avsc")
    schema = fastavro.schema.load_schema(str(path))
    return schema if logical_types else fastavro.parse_schema(_without_logical_types(schema))


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType" and not k.startswith("__")}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


def load_schema_file(path: str | Path) -> Any:
    """Parse an ``.avsc`` file; named types in sibling files are resolved the way fastavro does it."""
    return fastavro.schema.load_schema(str(path))


def schemaless_decode(payload: bytes, schema: Any) -> Any:
    """Decode one schemaless Avro record, raising :class:`DecodeError` on any malformed input."""
    buffer = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buffer, schema, None)
    except Exception as exc:  # fastavro raises many types (EOFError, UnicodeDecodeError, ValueError...)
        raise DecodeError(f"not a {_name(schema)} Avro record: {type(exc).__name__}: {exc}") from None
    if buffer.tell() != len(payload):
        # A record decoded under the wrong schema often "succeeds" on a prefix; trailing bytes give it away.
        raise DecodeError(f"not a {_name(schema)} Avro record: {len(payload) - buffer.tell()} trailing bytes")
    return record


def schemaless_encode(record: Any, schema: Any) -> bytes:
    """Encode one record as schemaless Avro."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def is_container(payload: bytes) -> bool:
    """Whether ``payload`` is an Avro object container file (it starts with the OCF magic bytes)."""
    return payload[:4] == OCF_MAGIC


def container_decode(payload: bytes, reader_schema: Any = None) -> Iterator[Any]:
    """Yield the records of an Avro container file (its writer schema travels in its header)."""
    try:
        yield from fastavro.reader(io.BytesIO(payload), reader_schema)
    except Exception as exc:
        raise DecodeError(f"not a readable Avro container file: {type(exc).__name__}: {exc}") from None


def container_encode(records: list[Any], schema: Any, codec: str = "null") -> bytes:
    """Write records as an Avro container file."""
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, records, codec=codec)
    return buffer.getvalue()


def wire_split(payload: bytes) -> tuple[int, bytes]:
    """Split a Confluent wire-format message into (schema id, schemaless body)."""
    if len(payload) < _WIRE_HEADER.size or payload[0] != 0:
        raise DecodeError("not Confluent wire format: it must start with magic byte 0 and a 4-byte schema id")
    _, schema_id = _WIRE_HEADER.unpack_from(payload)
    return schema_id, payload[_WIRE_HEADER.size :]


def wire_encode(record: Any, schema: Any, schema_id: int) -> bytes:
    """Encode a record in the Confluent wire format."""
    return _WIRE_HEADER.pack(0, schema_id) + schemaless_encode(record, schema)


def _name(schema: Any) -> str:
    return schema.get("name", "?") if isinstance(schema, dict) else "?"
