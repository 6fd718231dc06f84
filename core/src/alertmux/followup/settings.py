"""Facility settings: the ``[facilities.NAME]`` table, validated by the facility's pydantic model.

Every facility's model extends :class:`FacilitySettings`, which holds what the core enforces for all of them:
the proposal, the caps on requests and hours per proposal, the window, the airmass limit and the sites for the
visibility check. Secrets are ``SecretStr`` fields: their value is never part of a repr, a dump or an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from alertmux.config import is_secret
from alertmux.errors import ConfigError


class Site(BaseModel):
    """An observing site, for the visibility check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=360, description="degrees, positive east")


class FacilitySettings(BaseModel):
    """What every facility's settings hold (the core enforces these before anything is sent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proposal: str = ""
    max_requests: int = Field(10, ge=0, description="cap on requests per proposal (open or completed)")
    max_hours: float = Field(5.0, ge=0, description="cap on telescope hours per proposal (open or completed)")
    window_hours: float = Field(72.0, gt=0, description="observing window from submission on")
    max_airmass: float = Field(2.0, ge=1.0)
    twilight_deg: float = Field(-12.0, description="the Sun must be below this altitude")
    min_visible_hours: float = Field(0.5, ge=0, description="needed above the airmass limit in the window")
    snr: float = Field(10.0, gt=0, description="signal-to-noise per resolution element the exposure aims at")
    sites: tuple[Site, ...] = ()
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per call")
    attempts: int = Field(4, ge=1, description="tries of a call that failed transiently")
    max_retry_wait_s: float = Field(30.0, ge=0)


def load_settings(model: type[FacilitySettings] | None, facility: str, table: Mapping[str, Any]) -> FacilitySettings:
    """Validate a ``[facilities.NAME]`` table (secrets already resolved from the environment).

    Raises:
        ConfigError: A key is unknown or a value is wrong; the message names the keys, never a value.
    """
    model = model or FacilitySettings
    try:
        return model.model_validate(dict(table))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "(table)"
            problems.append(f"{where}: {error['msg']}")
        raise ConfigError(f"[facilities.{facility}] is invalid: " + "; ".join(problems)) from None


def redact(node: Any, key: str = "") -> Any:
    """A payload with every secret-named key's value replaced by ``***`` (safe to print, log and store)."""
    if isinstance(node, Mapping):
        return {k: redact(v, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [redact(v, key) for v in node]
    if isinstance(node, SecretStr) or (key and is_secret(key) and node not in (None, "")):
        return "***"
    return node


def secret_value(secret: SecretStr | None) -> str:
    """The plain value of a secret, for the one place that sends it."""
    return secret.get_secret_value() if secret is not None else ""
