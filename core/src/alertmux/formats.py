"""Recognize a payload file without being told what it is.

Framings: gzip, tar (SNANA's ``NITE<n>.tar.gz`` of ``alert_mjd*.avro.gz``), JSON, Avro container files, the
Confluent wire format (Rubin: a zero byte and the schema id before schemaless Avro) and schemaless Avro of the
ELAsTiCC and Rubin schemas. :func:`decode_path` also reads SNANA simulations (a ``*_HEAD.FITS.gz`` with its
``*_PHOT.FITS.gz``) into the alerts they give, each with its truth.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertmux.errors import DecodeError, UsageError
from alertmux.serde import container_decode, is_container, load_schema, schemaless_decode

if TYPE_CHECKING:
    from alertmux.sources.rubin import SchemaRegistry

# Tried in this order for schemaless payloads; the trailing-bytes check in schemaless_decode rejects most
# wrong guesses, and the alert schemas come first because an alert never decodes as a broker message.
SCHEMALESS_CANDIDATES = (
    "elasticc.v0_9_1.alert",
    "elasticc.v0_9.alert",
    "elasticc.v0_9_1.brokerClassification",
    "elasticc.v0_9.brokerClassification",
)
ELASTICC_ALERT_SCHEMAS = ("elasticc.v0_9_1", "elasticc.v0_9")
SNANA_HEAD = re.compile(r"^(?P<stem>.*)HEAD\.FITS(?P<gz>\.gz)?$", re.IGNORECASE)
_TAR_MAGIC_OFFSET = 257


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a payload turned out to be."""

    format: str
    """The framing, e.g. ``schemaless Avro elasticc.v0_9_1.alert``, ``gzip, Avro container file`` or
    ``Confluent wire format``."""
    records: list[Any]
    version: str | None = None
    """The schema the records follow when it could be told, e.g. ``lsst.v9_0.alert (schema id 900)``,
    ``elasticc.v0_9.alert``; None when unknown (JSON of no known schema)."""


def sniff(payload: bytes, *, registry: SchemaRegistry | None = None) -> Decoded:
    """Decode a payload of unknown framing, saying which framing and schema it had.

    Args:
        payload: the bytes of one file or one message.
        registry: where to look up Confluent wire-format schema ids ``lsst-alert-packet`` does not ship.

    Raises:
        DecodeError: when no framing and schema fits.
    """
    prefix = ""
    if payload[:2] == b"\x1f\x8b":
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError) as exc:
            raise DecodeError(f"a damaged gzip file: {exc}") from None
        prefix = "gzip, "
    if is_tar(payload):
        return _sniff_tar(payload, prefix, registry)
    if payload[:9] == b"SIMPLE  =":
        raise DecodeError("a FITS file: decode SNANA simulations by their *_HEAD.FITS.gz path")
    stripped = payload.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"looks like JSON but is not: {exc}") from None
        records = body if isinstance(body, list) else [body]
        return Decoded(prefix + "JSON", records, _json_version(records))
    if is_container(payload):
        records = list(container_decode(payload))
        return Decoded(prefix + "Avro container file", records, _container_version(payload))
    from alertmux.sources.rubin import decode_wire, looks_like_wire

    errors = []
    if looks_like_wire(payload):
        try:
            version, record = decode_wire(payload, registry)
            schema_id = int.from_bytes(payload[1:5], "big")
            return Decoded(prefix + "Confluent wire format", [record], f"{version}.alert (schema id {schema_id})")
        except DecodeError as exc:
            errors.append(str(exc))
    for name in SCHEMALESS_CANDIDATES:
        try:
            return Decoded(f"{prefix}schemaless Avro {name}", [schemaless_decode(payload, load_schema(name))], name)
        except DecodeError as exc:
            errors.append(str(exc))
    from alertmux.sources.rubin import rubin_schema, rubin_versions

    for version in reversed(rubin_versions()):
        try:
            record = schemaless_decode(payload, rubin_schema(version))
            return Decoded(f"{prefix}schemaless Avro {version}.alert", [record], f"{version}.alert")
        except DecodeError:
            continue
    raise DecodeError("unrecognized payload: not JSON, not an Avro container, and not schemaless Avro of a known"
                      f" schema ({'; '.join(errors[:1])})")


def is_tar(payload: bytes) -> bool:
    """Whether ``payload`` is a POSIX tar archive (the ``ustar`` magic in the first header)."""
    return payload[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar"


def tar_members(payload: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular file in a tar archive (plain or compressed), in archive order.

    Raises:
        DecodeError: for a damaged archive.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as archive:  # plain or compressed
            for member in archive:
                if member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
    except tarfile.TarError as exc:
        raise DecodeError(f"a damaged tar archive: {exc}") from None


def _sniff_tar(payload: bytes, prefix: str, registry: SchemaRegistry | None) -> Decoded:
    records: list[Any] = []
    formats: set[str] = set()
    versions: set[str] = set()
    members = 0
    for name, body in tar_members(payload):
        try:
            decoded = sniff(body, registry=registry)
        except DecodeError as exc:
            raise DecodeError(f"tar member {name}: {exc}") from None
        members += 1
        records.extend(decoded.records)
        formats.add(decoded.format)
        versions.add(decoded.version or "?")
    inner = "; ".join(sorted(formats)) or "empty"
    version = versions.pop() if len(versions) == 1 else None
    return Decoded(f"{prefix}tar of {members} file(s) ({inner})", records, None if version == "?" else version)


def _container_version(payload: bytes) -> str | None:
    import fastavro

    try:
        name = fastavro.reader(io.BytesIO(payload)).writer_schema.get("name")
    except Exception:  # noqa: BLE001 - the records decoded; only the label is missing
        return None
    return str(name) if name else None


def _json_version(records: list[Any]) -> str | None:
    """The alert schema a JSON alert follows, found by validating it (newest schema first)."""
    if not records or not all(isinstance(r, dict) and isinstance(r.get("diaSource"), dict) for r in records):
        return None
    from fastavro.validation import validate

    from alertmux.sources.rubin import rubin_schema, rubin_versions

    candidates = [(f"{name}.alert", lambda n=name: load_schema(f"{n}.alert")) for name in ELASTICC_ALERT_SCHEMAS]
    candidates += [(f"{v}.alert", lambda v=v: rubin_schema(v)) for v in reversed(rubin_versions())]
    fitting: list[tuple[int, int, str]] = []
    for rank, (label, load) in enumerate(candidates):
        schema = load()
        try:
            if not all(validate(r, schema, raise_errors=False) for r in records):
                continue
        except Exception:  # noqa: BLE001,S112 - a schema the record does not even resemble
            continue
        # JSON names no schema and absent nullable fields validate, so several versions may fit: take the one
        # that knows most of the record's fields, then the newest.
        fitting.append((_unknown_fields(records[0], schema), rank, label))
    return f"{min(fitting)[2]} (by validation; JSON names no version)" if fitting else None


def _unknown_fields(record: dict[str, Any], schema: Any) -> int:
    namespace = schema["name"].rsplit(".", 1)[0]
    source = schema["__named_schemas"][f"{namespace}.diaSource"]["fields"]
    top = {f["name"] for f in schema["fields"]}
    return len(set(record) - top) + len(set(record["diaSource"]) - {f["name"] for f in source})


def decode_path(path: str | Path, *, registry: SchemaRegistry | None = None) -> Decoded:
    """Decode one file: SNANA simulations by their HEAD file, anything else through :func:`sniff`.

    A SNANA ``*_HEAD.FITS.gz`` gives one record per alert, ``{"alert": <elasticc.v0_9_1 alert>, "truth": {...}}``,
    built as the DESC TOM did (see :mod:`alertmux.sources.snana`).

    Raises:
        UsageError: when the file cannot be read.
        DecodeError: when it is not a known format.
    """
    path = Path(path)
    if SNANA_HEAD.match(path.name):
        from alertmux.sources.snana import decode_snana

        return decode_snana(path)
    if re.search(r"PHOT\.FITS(\.gz)?$", path.name, re.IGNORECASE):
        raise DecodeError("a SNANA PHOT file: decode its *_HEAD.FITS.gz, which names the objects")
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sniff(payload, registry=registry)


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
    for path in paths:
        try:
            with open(path, "rb") as handle:
                yield path, handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
