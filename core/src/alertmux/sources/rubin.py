"""Rubin alerts (``lsst.v7_0`` ... ``lsst.v11_1``): schemas, wire format, a codec and the ``rubin`` source.

The codec maps Rubin records onto :class:`alertmux.models.Alert`; the source reads files of Rubin alerts.

The schemas come from the ``lsst-alert-packet`` package (GPL-3.0, a dependency: never copied here). Rubin sends
each alert as a Confluent wire-format message: a zero byte, the schema id as a big-endian 32-bit integer
(``MAJOR*100 + MINOR``: 11.1 is 1101) and the schemaless Avro record. Ids the package does not ship can be fetched
from a Confluent-compatible schema registry (:class:`SchemaRegistry`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fastavro
import fastavro.schema

from alertmux.errors import DecodeError, UsageError
from alertmux.hookspecs import hookimpl
from alertmux.models import Alert, AlertObject, PhotometryPoint
from alertmux.serde import schemaless_decode, schemaless_encode, wire_split
from alertmux.sources import OnBadInput, alert_mjd, input_files, object_id_of, report
from alertmux.specs import AlertSourceSpec, SourceObject

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^lsst\.v(\d+)_(\d+)$")
_EPOCH_MJD = 40587.0  # MJD of 1970-01-01
FIRST_SUPPORTED = (7, 0)
"""Older Rubin schemas (3.0-6.1) predate the field names alertmux maps; the package still ships them."""


# -- schemas ----------------------------------------------------------------------------------------------------


@cache
def _schema_root() -> Path:
    try:
        from lsst.alert.packet import get_schema_root
    except ImportError:  # pragma: no cover - a dependency of alertmux
        raise UsageError("Rubin alerts need the lsst-alert-packet package: pip install lsst-alert-packet") from None
    return Path(str(get_schema_root()))


@cache
def rubin_versions() -> tuple[str, ...]:
    """The Rubin schema versions this installation can read and write, oldest first (``lsst.v7_0`` ...)."""
    found = []
    for minor_dir in _schema_root().glob("*/*"):
        if minor_dir.parent.name.isdigit() and minor_dir.name.isdigit():
            major, minor = int(minor_dir.parent.name), int(minor_dir.name)
            if (major, minor) >= FIRST_SUPPORTED and (minor_dir / f"lsst.v{major}_{minor}.alert.avsc").exists():
                found.append((major, minor))
    return tuple(f"lsst.v{major}_{minor}" for major, minor in sorted(found))


def latest_version() -> str:
    """The newest Rubin schema the installed ``lsst-alert-packet`` ships."""
    return rubin_versions()[-1]


def parse_version(version: str) -> tuple[int, int]:
    """``lsst.v11_1`` -> (11, 1).

    Raises:
        UsageError: for anything that is not ``lsst.vMAJOR_MINOR``.
    """
    match = _VERSION.match(version)
    if not match:
        raise UsageError(f"not a Rubin schema version: {version!r} (expected e.g. lsst.v11_1)")
    return int(match.group(1)), int(match.group(2))


def schema_id(version: str) -> int:
    """Rubin's registry id of a schema version: ``MAJOR*100 + MINOR`` (lsst.v11_1 -> 1101)."""
    major, minor = parse_version(version)
    return major * 100 + minor


def version_for_id(schema_id_: int) -> str:
    """The schema version of a registry id (1101 -> ``lsst.v11_1``)."""
    return f"lsst.v{schema_id_ // 100}_{schema_id_ % 100}"


@cache
def rubin_schema(version: str) -> Any:
    """The parsed ``lsst.vX_Y.alert`` schema from ``lsst-alert-packet``, named types resolved.

    Raises:
        UsageError: when the installed package does not ship that version.
    """
    major, minor = parse_version(version)
    path = _schema_root() / str(major) / str(minor) / f"{version}.alert.avsc"
    if not path.exists():
        known = ", ".join(rubin_versions())
        raise UsageError(f"schema {version} is not in the installed lsst-alert-packet (it has {known})")
    return fastavro.schema.load_schema(str(path))


def _record_fields(schema: Any, name: str) -> list[dict[str, Any]]:
    """The fields of a named record type of a parsed alert schema (``diaSource``, ``diaObject``...)."""
    namespace = schema["name"].rsplit(".", 1)[0]
    return schema["__named_schemas"][f"{namespace}.{name}"]["fields"]


class SchemaRegistry:
    """A read-only client of a Confluent-compatible schema registry (Rubin's serves the alert schemas).

    Schemas are immutable per id, so each is fetched once and cached for the life of the client.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        """Point the client at ``url`` (credentials, if any, as ``https://user:password@host/path``)."""
        import httpx

        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)
        self._cache: dict[int, Any] = {}

    @property
    def safe_url(self) -> str:
        """The URL without credentials, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def schema(self, schema_id_: int) -> Any:
        """The parsed writer schema registered under ``schema_id_``.

        Raises:
            DecodeError: when the registry does not answer or does not know the id.
        """
        if schema_id_ in self._cache:
            return self._cache[schema_id_]
        import httpx
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

        @retry(retry=retry_if_exception_type(httpx.TransportError), stop=stop_after_attempt(3),
               wait=wait_exponential(multiplier=0.2, max=2), reraise=True)
        def fetch() -> httpx.Response:
            return self._client.get(f"{self.url}/schemas/ids/{schema_id_}")

        try:
            response = fetch()
        except httpx.HTTPError as exc:
            raise DecodeError(f"schema registry {self.safe_url} did not answer for id {schema_id_}: "
                              f"{type(exc).__name__}") from None
        if response.status_code != 200:
            raise DecodeError(f"schema registry {self.safe_url} has no schema id {schema_id_} "
                              f"(HTTP {response.status_code})")
        try:
            # The registry returns the schema as a JSON string inside the JSON body: parse twice.
            parsed = fastavro.parse_schema(json.loads(response.json()["schema"]))
        except Exception as exc:  # noqa: BLE001 - whatever the body was, it was not a schema
            raise DecodeError(f"schema registry {self.safe_url} sent an unreadable schema for id {schema_id_}: "
                              f"{exc}") from None
        self._cache[schema_id_] = parsed
        return parsed

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


# -- wire format ------------------------------------------------------------------------------------------------


def looks_like_wire(payload: bytes) -> bool:
    """Whether ``payload`` starts like a Confluent wire-format message with a plausible Rubin schema id."""
    if len(payload) < 6 or payload[0] != 0:
        return False
    schema_id_ = int.from_bytes(payload[1:5], "big")
    return 300 <= schema_id_ < 10_000


def decode_wire(payload: bytes, registry: SchemaRegistry | None = None) -> tuple[str, dict[str, Any]]:
    """Decode a Confluent wire-format Rubin alert into (schema version, record).

    The schema comes from ``lsst-alert-packet`` when it ships the id, else from ``registry``.

    Raises:
        DecodeError: for a payload that is not a readable Rubin alert.
    """
    schema_id_, body = wire_split(payload)
    version = version_for_id(schema_id_)
    if version in rubin_versions():
        schema = rubin_schema(version)
    elif registry is not None:
        schema = registry.schema(schema_id_)
        version = str(schema.get("name", version)).removesuffix(".alert")
    else:
        raise DecodeError(f"Confluent wire format with schema id {schema_id_}, which the installed "
                          f"lsst-alert-packet does not ship (it has {', '.join(rubin_versions())}); "
                          "give a schema registry to read it")
    return version, schemaless_decode(body, schema)


def encode_wire(record: Mapping[str, Any], version: str) -> bytes:
    """Encode a Rubin alert record in the Confluent wire format with Rubin's schema id for ``version``."""
    return schema_id(version).to_bytes(5, "big") + schemaless_encode(record, rubin_schema(version))


# -- codec ------------------------------------------------------------------------------------------------------

_SOURCE_CORE = ("diaSourceId", "diaObjectId", "midpointMjdTai", "band", "ra", "dec", "psfFlux", "psfFluxErr", "snr")
_POINT_CORE = ("midpointMjdTai", "band", "psfFlux", "psfFluxErr")
_ALERT_STRUCTURE = ("alertId", "diaSourceId", "diaSource", "prvDiaSources", "prvDiaForcedSources", "diaObject")
_OBJECT_CORE = ("diaObjectId", "ra", "dec")
_NAN = float("nan")


def _core_or_extra(row: Mapping[str, Any], key: str, default: Any, extra: dict[str, Any]) -> Any:
    # A nullable Rubin value the Alert model requires (band, flux) keeps its null in extra, so it round-trips.
    value = row.get(key)
    if value is None:
        extra[key] = None
        return default
    return value


def _point(row: Mapping[str, Any], id_key: str, detection: bool) -> PhotometryPoint:
    extra = {k: v for k, v in row.items() if k not in _POINT_CORE and k != id_key}
    return PhotometryPoint(
        mjd=row["midpointMjdTai"], band=_core_or_extra(row, "band", "", extra),
        flux=_core_or_extra(row, "psfFlux", _NAN, extra), flux_err=_core_or_extra(row, "psfFluxErr", _NAN, extra),
        detection=detection, source_id=row[id_key], extra=extra,
    )


def alert_from_rubin(record: Mapping[str, Any], version: str = "lsst") -> Alert:
    """Map a Rubin alert record (any of ``lsst.v7_0`` ... ``lsst.v11_1``) onto the survey-neutral :class:`Alert`.

    Ids, time, band, flux and error, position, the detection and forced-photometry history and the diaObject
    become typed attributes; every other field is kept verbatim in the ``extra`` dicts, so
    :func:`alert_to_rubin` with the same version gives the record back (with its history in time order).
    The alert id is ``alertId`` up to v7.4 and the top-level ``diaSourceId`` from v8.0 on.

    Args:
        record: the decoded Avro record (or its JSON form).
        version: the schema it was decoded with, e.g. ``lsst.v9_0``; becomes :attr:`Alert.schema_name`.
    """
    src = record["diaSource"]
    extra = {k: v for k, v in src.items() if k not in _SOURCE_CORE}
    history = [_point(row, "diaSourceId", True) for row in record.get("prvDiaSources") or ()]
    history += [_point(row, "diaForcedSourceId", False) for row in record.get("prvDiaForcedSources") or ()]
    history.sort(key=lambda point: point.mjd)
    extra |= {k: v for k, v in record.items() if k not in _ALERT_STRUCTURE}
    extra |= {k: None for k in ("prvDiaSources", "prvDiaForcedSources") if k in record and record[k] is None}
    obj = record.get("diaObject")
    return Alert(
        schema_name=version, alert_id=record.get("alertId", record.get("diaSourceId", src["diaSourceId"])),
        source_id=src["diaSourceId"],
        object_id=src.get("diaObjectId"), mjd=src["midpointMjdTai"], band=_core_or_extra(src, "band", "", extra),
        ra=src["ra"], dec=src["dec"], flux=_core_or_extra(src, "psfFlux", _NAN, extra),
        flux_err=_core_or_extra(src, "psfFluxErr", _NAN, extra), snr=src.get("snr"), history=history,
        object=None if obj is None else AlertObject(
            object_id=obj["diaObjectId"], ra=obj["ra"], dec=obj["dec"],
            extra={k: v for k, v in obj.items() if k not in _OBJECT_CORE},
        ),
        extra=extra,
    )


def _rubin_band(band: str) -> str:
    # ELAsTiCC writes LSST's y band as "Y"; Rubin writes lower case.
    return band.lower() if len(band) == 1 else band


def _zero(avro_type: Any, name: str, mjd: float) -> Any:
    """A value for a required field the source had no value for."""
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in ("timestamp-micros", "timestamp-millis"):
            try:
                return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=mjd - _EPOCH_MJD)
            except OverflowError:  # not a real MJD (some sample alerts are random numbers)
                return datetime(1970, 1, 1, tzinfo=UTC)
        avro_type = avro_type.get("type")
    if avro_type in ("long", "int"):
        return -1 if name in ("visit", "ccdVisitId") else 0
    if avro_type in ("double", "float"):
        return mjd if name.endswith("MjdTai") else 0.0
    if avro_type == "boolean":
        return False
    if avro_type == "string":
        return ""
    if avro_type == "bytes":
        return b""
    raise ValueError(f"no default for required field {name} of type {avro_type!r}")


def _fill(fields: Sequence[Mapping[str, Any]], values: Mapping[str, Any], mjd: float) -> dict[str, Any]:
    """A record of ``fields``: the given values, nulls for absent nullable fields, neutral values otherwise."""
    record = {}
    for field in fields:
        name, avro_type = field["name"], field["type"]
        nullable = isinstance(avro_type, list) and "null" in avro_type
        value = values.get(name)
        if value is not None or (nullable and name in values):
            record[name] = value
        elif nullable:
            record[name] = None
        else:  # absent, or null in an older version where the field was still nullable
            record[name] = _zero(avro_type, name, mjd)
    return record


def alert_to_rubin(alert: Alert, version: str | None = None) -> dict[str, Any]:
    """Encode an :class:`Alert` as a record of the Rubin schema ``version`` (default: the newest installed).

    Fields the alert carries (typed, or verbatim in ``extra``) are used; other nullable fields are null and
    required ones get neutral values (``visit`` -1, pixel positions 0, processing times = the detection time,
    counts of detections per band computed from the history). ELAsTiCC's ``Y`` band is written ``y``.

    Returns:
        A dict that ``fastavro.schemaless_writer`` accepts for ``lsst.vX_Y.alert``.
    """
    version = version or latest_version()
    schema = rubin_schema(version)
    source_fields = _record_fields(schema, "diaSource")
    forced_fields = _record_fields(schema, "diaForcedSource")
    object_fields = _record_fields(schema, "diaObject")
    names = {f["name"] for f in schema["fields"]}
    detections = [p for p in alert.history if p.detection]
    forced = [p for p in alert.history if not p.detection]
    position = {"ra": alert.ra, "dec": alert.dec}

    def band(value: str) -> str | None:
        return _rubin_band(value) if value else None

    source_values = {**alert.extra, "diaSourceId": alert.source_id, "diaObjectId": alert.object_id,
                     "midpointMjdTai": alert.mjd, "band": band(alert.band), **position, "psfFlux": alert.flux,
                     "psfFluxErr": alert.flux_err, "snr": alert.snr}
    source_values |= {k: alert.extra[k] for k in ("band", "psfFlux", "psfFluxErr") if k in alert.extra}

    def point_values(point: PhotometryPoint, id_key: str) -> dict[str, Any]:
        values = {"diaObjectId": alert.object_id, **position, **point.extra, id_key: point.source_id,
                  "midpointMjdTai": point.mjd, "band": band(point.band), "psfFlux": point.flux,
                  "psfFluxErr": point.flux_err}
        return values | {k: point.extra[k] for k in ("band", "psfFlux", "psfFluxErr") if k in point.extra}

    def listed(points: list[PhotometryPoint], key: str, id_key: str, fields: Sequence[Mapping[str, Any]]) -> Any:
        if not points and key in alert.extra and alert.extra[key] is None:
            return None
        return [_fill(fields, point_values(p, id_key), p.mjd) for p in points]

    record: dict[str, Any] = {k: v for k, v in alert.extra.items() if k in names}
    record |= {"diaSource": _fill(source_fields, source_values, alert.mjd),
               "prvDiaSources": listed(detections, "prvDiaSources", "diaSourceId", source_fields),
               "prvDiaForcedSources": listed(forced, "prvDiaForcedSources", "diaForcedSourceId", forced_fields)}
    record["alertId" if "alertId" in names else "diaSourceId"] = alert.alert_id
    if alert.object is not None:
        per_band = Counter(_rubin_band(p.band) for p in [*detections])
        per_band[_rubin_band(alert.band)] += 1
        first = min([alert.mjd, *(p.mjd for p in detections)])
        derived = {"nDiaSources": len(detections) + 1, "validityStartMjdTai": first,
                   **{f"{b}_psfFluxNdata": per_band.get(b, 0) for b in "ugrizy"}}
        if any(f["name"] == "validityStart" for f in object_fields):  # v8.0's timestamp
            derived["validityStart"] = _zero({"logicalType": "timestamp-micros"}, "validityStart", first)
        object_values = {**derived, **alert.object.extra, "diaObjectId": alert.object.object_id,
                         "ra": alert.object.ra, "dec": alert.object.dec}
        record["diaObject"] = _fill(object_fields, object_values, alert.mjd)
    return _fill(schema["fields"], record, alert.mjd)


def rubin_to_rubin(record: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Re-shape a Rubin record of any version for the schema ``version``.

    A record already of that version is returned as it is; others go through :func:`alert_from_rubin` and
    :func:`alert_to_rubin`.
    """
    schema = rubin_schema(version)
    same = (record.keys() == {f["name"] for f in schema["fields"]}
            and record["diaSource"].keys() == {f["name"] for f in _record_fields(schema, "diaSource")})
    return dict(record) if same else alert_to_rubin(alert_from_rubin(record), version)


def alert_to_elasticc_shape(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``elasticc.v0_9_1`` alert record of a Rubin record (Rubin's ``y`` band written ``Y``).

    Only what the ELAsTiCC schema has survives: ids, time, band, flux, position, the history and the object's
    id and position.
    """
    from alertmux.models import alert_to_elasticc

    alert = alert_from_rubin(record)

    def elasticc_band(value: str) -> str:
        return "Y" if value == "y" else value

    history = [p.model_copy(update={"band": elasticc_band(p.band), "extra": {}}) for p in alert.history]
    obj = alert.object
    converted = alert.model_copy(update={
        "band": elasticc_band(alert.band), "history": history, "extra": {},
        "object": None if obj is None else AlertObject(object_id=obj.object_id, ra=obj.ra, dec=obj.dec),
    })
    return alert_to_elasticc(converted)


# -- the source -------------------------------------------------------------------------------------------------


def decode_rubin_payload(payload: bytes, registry: SchemaRegistry | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Decode a file of Rubin alerts into (schema version, records).

    The file may hold one wire-format message, an Avro container file or JSON (one alert or a list).

    Raises:
        DecodeError: when it is none of these.
    """
    from alertmux.formats import sniff

    decoded = sniff(payload, registry=registry)
    if not decoded.records or not all(isinstance(r, dict) and "diaSource" in r for r in decoded.records):
        raise DecodeError(f"not Rubin alerts ({decoded.format})")
    if not all("midpointMjdTai" in r["diaSource"] for r in decoded.records):
        raise DecodeError(f"alerts, but not Rubin's lsst.vX_Y ({decoded.version or decoded.format})")
    return decoded.version or "lsst", decoded.records


def open_rubin(path: str | None = None, registry: str | None = None, on_bad_input: OnBadInput | None = None,
               **_: Any) -> Iterator[SourceObject]:
    """Yield the Rubin alerts of ``path`` (a file, a directory of ``*.avro``/``*.json`` files or a glob).

    Each file may hold one Confluent wire-format message, an Avro container file or JSON. Alerts are yielded
    grouped by object within a file, in time order; a file that does not decode is reported and skipped.
    """
    client = SchemaRegistry(registry) if registry else None
    try:
        for file in input_files(path, ("*.avro", "*.avro.gz", "*.json", "*.json.gz"), "rubin"):
            try:
                _, records = decode_rubin_payload(file.read_bytes(), client)
            except (DecodeError, OSError) as exc:
                report(on_bad_input, str(file), str(exc))
                continue
            by_object: dict[int | None, list[dict[str, Any]]] = {}
            for record in records:
                by_object.setdefault(object_id_of(record), []).append(record)
            for alerts in by_object.values():
                yield SourceObject(alerts=sorted(alerts, key=alert_mjd))
    finally:
        if client is not None:
            client.close()


@hookimpl
def alertmux_alert_sources() -> Iterator[AlertSourceSpec]:
    """The ``rubin`` source: files of Rubin alerts in the wire format, Avro containers or JSON."""
    yield AlertSourceSpec(
        name="rubin",
        description="Rubin lsst.v7_0..v11_1 alerts from files (Confluent wire format, Avro container, JSON);"
                    " schemas from lsst-alert-packet, unknown ids from --source-option registry=URL",
        open=open_rubin,
    )


__all__ = [
    "SchemaRegistry", "alert_from_rubin", "alert_to_elasticc_shape", "alert_to_rubin", "decode_rubin_payload",
    "decode_wire", "encode_wire", "latest_version", "looks_like_wire", "open_rubin", "parse_version",
    "rubin_schema", "rubin_to_rubin", "rubin_versions", "schema_id", "version_for_id",
]
