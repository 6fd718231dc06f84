"""What the streamer does to alerts between a source and Kafka: route, trim history, re-encode.

* Routing follows DESC's ELAsTiCC2 streamer: with a ``{part}`` placeholder in the topic name, wide-survey (WFD)
  objects' alerts go to ``wfd``; deep-drilling (DDF) objects' alerts go twice, to ``ddf-full`` with their whole
  (365-day) history and to ``ddf-limited`` with 30 days of it.
* Re-encoding turns any alert record a source yields (ELAsTiCC v0_9 or v0_9_1, Rubin lsst.vX_Y) into the output
  schema: ``elasticc.v0_9_1`` as schemaless Avro (what ELAsTiCC sent), or ``lsst.vX_Y`` in the Confluent wire
  format with Rubin's schema id (what Rubin sends).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alertmux.errors import UsageError
from alertmux.sources import is_rubin, mjd_of, object_id_of, schema_of

ELASTICC_OUTPUT = "elasticc.v0_9_1"
PART = "{part}"
WFD, DDF_FULL, DDF_LIMITED = "wfd", "ddf-full", "ddf-limited"
LIMITED_DAYS = 30.0
"""History kept in ddf-limited alerts (DESC: ``reconstruct(daysprevious=30)``)."""

_V0_9_1_FIELDS: dict[str, frozenset[str]] = {}


def check_output_schema(schema: str) -> str:
    """Validate an output schema name: ``elasticc.v0_9_1`` or an installed ``lsst.vX_Y``.

    Raises:
        UsageError: for anything else, listing the choices.
    """
    if schema == ELASTICC_OUTPUT:
        return schema
    from alertmux.sources.rubin import rubin_versions

    if schema in rubin_versions():
        return schema
    raise UsageError(f"--schema must be {ELASTICC_OUTPUT} or one of {', '.join(rubin_versions())}, not {schema!r}")


def route(alerts: Sequence[dict[str, Any]], topic: str, ddf_objects: Iterable[int] = ()) -> list[tuple[str, list[Any]]]:
    """Split alerts between the topics of a ``{part}`` topic name (DESC's wfd / ddf-full / ddf-limited).

    Returns:
        (topic, alerts) pairs, in the order wfd, ddf-full, ddf-limited, leaving out empty ones; without
        ``{part}`` in ``topic``, the one pair (topic, alerts). ddf-limited alerts are copies with 30 days of
        history; the others are the records given.
    """
    if PART not in topic:
        return [(topic, list(alerts))]
    ddf = set(ddf_objects)
    wide = [a for a in alerts if object_id_of(a) not in ddf]
    deep = [a for a in alerts if object_id_of(a) in ddf]
    routed = [(topic.replace(PART, WFD), wide), (topic.replace(PART, DDF_FULL), deep),
              (topic.replace(PART, DDF_LIMITED), [limit_history(a, LIMITED_DAYS) for a in deep])]
    return [(name, part) for name, part in routed if part]


def limit_history(alert: Mapping[str, Any], days: float) -> dict[str, Any]:
    """A copy of ``alert`` keeping only the history of the last ``days`` days before its detection."""
    start = mjd_of(alert["diaSource"]) - days
    trimmed = dict(alert)
    for key in ("prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits"):
        rows = alert.get(key)
        if rows is not None:
            trimmed[key] = [row for row in rows if mjd_of(row) >= start]
    return trimmed


def _v0_9_1_fields() -> dict[str, frozenset[str]]:
    if not _V0_9_1_FIELDS:
        from alertmux.serde import load_schema

        schema = load_schema(f"{ELASTICC_OUTPUT}.alert")
        named = schema["__named_schemas"]
        for kind in ("alert", "diaSource", "diaForcedSource", "diaObject"):
            _V0_9_1_FIELDS[kind] = frozenset(f["name"] for f in named[f"{ELASTICC_OUTPUT}.{kind}"]["fields"])
    return _V0_9_1_FIELDS


def _project(row: Mapping[str, Any] | None, fields: frozenset[str]) -> dict[str, Any] | None:
    return None if row is None else {k: v for k, v in row.items() if k in fields}


_EARLY_V0_9_HOST = re.compile(r"^(hostgal2?)_(z|z_err|zphot_q(\d\d))$")
"""diaObject host-galaxy names of the 2022 drafts of v0_9 (Fink's sample alert): hostgal_z, hostgal_zphot_q10..."""


def _early_v0_9_host_names(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with the 2022 drafts' host-galaxy names also given their final ones (hostgal_z -> hostgal_zspec).

    So a v0_9 alert of either draft keeps its host redshifts (hostgal_zphot_q10 -> hostgal_zphot_q010...);
    q99 has no final counterpart (the final schema ends at q100) and is dropped with the other unknown fields.
    """
    renamed = dict(row)
    for key, value in row.items():
        match = _EARLY_V0_9_HOST.match(key)
        if match is None:
            continue
        prefix, what, quantile = match.groups()
        final = f"{prefix}_zphot_q0{quantile}" if quantile else f"{prefix}_{what.replace('z', 'zspec', 1)}"
        renamed.setdefault(final, value)
    return renamed


def elasticc_v0_9_to_v0_9_1(alert: Mapping[str, Any]) -> dict[str, Any]:
    """Drop what ``elasticc.v0_9`` has and ``v0_9_1`` does not (ccdVisitId, nobs, totFlux, limits, cutouts...).

    Host-galaxy fields of the 2022 drafts of v0_9 are renamed to their final names first.
    """
    fields = _v0_9_1_fields()
    out = {k: v for k, v in alert.items() if k in fields["alert"]}
    out["diaSource"] = _project(alert["diaSource"], fields["diaSource"])
    for key, kind in (("prvDiaSources", "diaSource"), ("prvDiaForcedSources", "diaForcedSource")):
        rows = alert.get(key)
        out[key] = None if rows is None else [_project(r, fields[kind]) for r in rows]
    obj = alert.get("diaObject")
    out["diaObject"] = _project(None if obj is None else _early_v0_9_host_names(obj), fields["diaObject"])
    return out


def transcode(alert: Mapping[str, Any], schema: str) -> dict[str, Any]:
    """The record of ``alert`` (ELAsTiCC v0_9/v0_9_1 or Rubin lsst.vX_Y) for the output ``schema``."""
    from alertmux.sources import rubin

    source = schema_of(alert)
    if schema == ELASTICC_OUTPUT:
        if source == ELASTICC_OUTPUT:
            return dict(alert)
        if source == "elasticc.v0_9":
            return elasticc_v0_9_to_v0_9_1(alert)
        return rubin.alert_to_elasticc_shape(alert)
    if is_rubin(alert):
        return rubin.rubin_to_rubin(alert, schema)
    from pydantic import ValidationError

    from alertmux.models import alert_from_elasticc

    try:
        parsed = alert_from_elasticc(alert)
    except ValidationError:
        if source != "elasticc.v0_9":
            raise
        # A 2022 draft of v0_9 (Fink's sample has hostgal_z, not hostgal_zspec) fails the final v0_9 model:
        # read it through its v0_9_1 projection, which keeps everything a Rubin alert has room for.
        parsed = alert_from_elasticc(elasticc_v0_9_to_v0_9_1(alert))
    return rubin.alert_to_rubin(parsed, schema)


def encode(alert: Mapping[str, Any], schema: str) -> bytes:
    """The Kafka payload of ``alert`` in the output ``schema`` (see the module docstring for the framings)."""
    record = transcode(alert, schema)
    if schema == ELASTICC_OUTPUT:
        from alertmux.serde import load_schema, schemaless_encode

        return schemaless_encode(record, load_schema(f"{ELASTICC_OUTPUT}.alert"))
    from alertmux.sources.rubin import encode_wire

    return encode_wire(record, schema)


def store_view(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The ELAsTiCC-shaped fields :meth:`Store.record_objects` reads, for an alert of any survey.

    The store records ids, times, bands and fluxes of the alert and of its forced photometry; a Rubin record says
    them with other names (and, from v8.0, has no alertId: its diaSourceId identifies it).
    """
    if not is_rubin(alert):
        return dict(alert)
    from alertmux.sources import alert_id_of

    def row(r: Mapping[str, Any], id_key: str) -> dict[str, Any]:
        return {id_key: r[id_key], "diaObjectId": r.get("diaObjectId"), "midPointTai": r["midpointMjdTai"],
                "filterName": r.get("band"), "psFlux": r.get("psfFlux"), "psFluxErr": r.get("psfFluxErr")}

    return {"alertId": alert_id_of(alert), "diaSource": row(alert["diaSource"], "diaSourceId"),
            "prvDiaSources": alert.get("prvDiaSources") or [],
            "prvDiaForcedSources": [row(r, "diaForcedSourceId") for r in alert.get("prvDiaForcedSources") or ()]}
