"""The ``elasticc-files`` alert source: ELAsTiCC alerts as SNANA and DESC wrote them to disk.

Accepted, sniffed rather than declared: single ``.avro`` or ``.avro.gz`` files holding schemaless Avro or an Avro
container file (both occur: SNANA wrote schemaless ``alert_mjd<mjd>_obj<id>_src<id>.avro.gz``, Fink's test data
has a gzipped container), directories of them, and the nightly tarballs ``NITE<n>.tar.gz`` that ELAsTiCC's
streamer read (``stream-to-zads.py``). Both schema versions are read: ``elasticc.v0_9`` (2022, with
prvDiaNondetectionLimits and cutouts) and ``elasticc.v0_9_1``; records are yielded as decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alertmux.errors import DecodeError
from alertmux.formats import is_tar, sniff, tar_members
from alertmux.hookspecs import hookimpl
from alertmux.sources import Nights, OnBadInput, alert_mjd, input_files, object_id_of, report
from alertmux.specs import AlertSourceSpec, SourceObject

PATTERNS = ("*.avro", "*.avro.gz", "NITE*.tar.gz", "*.tar.gz", "*.tar")
NITE = re.compile(r"NITE(\d+)\.tar(\.gz)?$")
ALERT_FILE = re.compile(r"alert_mjd(\d+\.\d+)_obj(\d+)_src(\d+)\.avro(\.gz)?$")


def decode_alert_payload(payload: bytes) -> list[dict[str, Any]]:
    """The ELAsTiCC alerts in one file's bytes (gzip, schemaless or container; v0_9 or v0_9_1).

    Raises:
        DecodeError: when the bytes are not ELAsTiCC alerts.
    """
    decoded = sniff(payload)
    records = decoded.records
    if not records or not all(isinstance(r, dict) and "midPointTai" in (r.get("diaSource") or {}) for r in records):
        raise DecodeError(f"not ELAsTiCC alerts ({decoded.format})")
    return records


def _grouped(records: list[dict[str, Any]], nights: Nights | None) -> Iterator[SourceObject]:
    by_object: dict[int | None, list[dict[str, Any]]] = {}
    for record in records:
        if nights is None or nights.has_mjd(alert_mjd(record)):
            by_object.setdefault(object_id_of(record), []).append(record)
    for alerts in by_object.values():
        yield SourceObject(alerts=sorted(alerts, key=alert_mjd))


def _from_tar(file: Path, nights: Nights | None, on_bad_input: OnBadInput | None) -> Iterator[SourceObject]:
    records: list[dict[str, Any]] = []
    for name, body in tar_members(file.read_bytes()):
        match = ALERT_FILE.search(name)
        if match and nights is not None and not nights.has_mjd(float(match.group(1))):
            continue  # the file name gives the time: no need to decode alerts of other nights
        try:
            records.extend(decode_alert_payload(body))
        except DecodeError as exc:
            report(on_bad_input, f"{file}:{name}", str(exc))
    yield from _grouped(records, nights)


def open_elasticc_files(path: str | None = None, nights: Nights | None = None,
                        on_bad_input: OnBadInput | None = None, **_: Any) -> Iterator[SourceObject]:
    """Yield the ELAsTiCC alerts under ``path``, grouped by object within each file or tarball.

    Args:
        path: an alert file, a ``NITE<n>.tar.gz``, a directory holding either (searched recursively) or a glob.
        nights: only alerts of these simulated nights; tarballs of other nights are not even opened.
        on_bad_input: told about each file (or tar member) that does not decode; the others still stream.
    """
    for file in input_files(path, PATTERNS, "ELAsTiCC alert"):
        nite = NITE.search(file.name)
        if nite and nights is not None and int(nite.group(1)) not in nights:
            continue
        try:
            payload_head = file.read_bytes()[:300]
        except OSError as exc:
            report(on_bad_input, str(file), f"cannot read: {exc.strerror or exc}")
            continue
        try:
            if nite or file.suffix == ".tar" or _is_tarball(file, payload_head):
                yield from _from_tar(file, nights, on_bad_input)
                continue
            match = ALERT_FILE.search(file.name)
            if match and nights is not None and not nights.has_mjd(float(match.group(1))):
                continue
            yield from _grouped(decode_alert_payload(file.read_bytes()), nights)
        except DecodeError as exc:
            report(on_bad_input, str(file), str(exc))


def _is_tarball(file: Path, head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b":
        import gzip

        try:
            with gzip.open(file) as handle:
                return is_tar(handle.read(300))
        except (OSError, EOFError):
            return False
    return is_tar(head)


@hookimpl
def alertmux_alert_sources() -> Iterator[AlertSourceSpec]:
    """The ``elasticc-files`` source."""
    yield AlertSourceSpec(
        name="elasticc-files",
        description="ELAsTiCC alerts from .avro/.avro.gz files (schemaless or container), directories and"
                    " NITE*.tar.gz tarballs; elasticc.v0_9 and v0_9_1",
        open=open_elasticc_files,
    )
