"""Configuration: ``alertmux.toml`` (or ``--config FILE``), environment overrides and secrets from the environment.

Layout::

    [kafka]                      # librdkafka settings for every connection (passed through verbatim)
    "security.protocol" = "SASL_SSL"

    [brokers.alerce]             # one table per broker plugin; keys are the plugin's own options
    bootstrap = "kafka.alerce.science:9093"
    topics = ["lc_classifier_balto_20231201"]
    [brokers.alerce.kafka]       # librdkafka overrides for this broker only
    "sasl.username" = "desc"
    "sasl.password" = "${ALERCE_KAFKA_PASSWORD}"   # secrets: name an environment variable, never inline them

    [facilities.lco]
    token = "${LCO_TOKEN}"

Any value may be overridden from the environment as ``ALERTMUX__<TABLE>__<NAME>__<KEY>`` (double underscores
separate levels; e.g. ``ALERTMUX__BROKERS__ALERCE__BOOTSTRAP``). Secret values are shown as ``***``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from alertmux.errors import ConfigError

DEFAULT_FILE = Path("alertmux.toml")
ENV_PREFIX = "ALERTMUX__"
_SECRET = re.compile(r"pass(word)?|secret|token|credential|api[_-]?key", re.IGNORECASE)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_secret(key: str) -> bool:
    """Whether a configuration key names a secret (password, token, API key...)."""
    return bool(_SECRET.search(key))


@dataclass(frozen=True, slots=True)
class Config:
    """The merged configuration."""

    data: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def kafka(self, broker: str | None = None) -> dict[str, Any]:
        """The librdkafka settings: the ``[kafka]`` table, then the broker's own ``kafka`` table over it."""
        merged = dict(self.data.get("kafka", {}))
        if broker:
            table = self.broker(broker)
            # The typed keys (security_protocol, sasl_mechanism, username, password, ca_file) in librdkafka's words;
            # the broker's own raw kafka table still wins over them.
            merged.update(_typed_kafka_keys(table))
            merged.update(table.get("kafka", {}))
        return {k: _resolve(v, f"kafka.{k}") for k, v in merged.items()}

    def broker_settings(self, name: str, model: type[S] | None = None) -> S:
        """The ``[brokers.NAME]`` table validated as ``model`` (default :class:`BrokerSettings`).

        Raises:
            ConfigError: a key has the wrong type or value; the message names the key, never the value.
        """
        chosen: Any = model or BrokerSettings
        try:
            return chosen.model_validate(self.broker(name))  # type: ignore[no-any-return]
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(table)'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise ConfigError(f"[brokers.{name}] is invalid: {problems}") from None

    def broker(self, name: str) -> dict[str, Any]:
        """The ``[brokers.NAME]`` table (empty when absent), secrets resolved."""
        return _resolve_all(self.data.get("brokers", {}).get(name, {}), f"brokers.{name}")

    def facility(self, name: str) -> dict[str, Any]:
        """The ``[facilities.NAME]`` table (empty when absent), secrets resolved."""
        return _resolve_all(self.data.get("facilities", {}).get(name, {}), f"facilities.{name}")

    def source(self, name: str) -> dict[str, Any]:
        """The ``[sources.NAME]`` table (empty when absent), secrets resolved."""
        return _resolve_all(self.data.get("sources", {}).get(name, {}), f"sources.{name}")

    def redacted(self) -> dict[str, Any]:
        """The configuration as written, secrets replaced: safe to print or log."""
        return _redact(self.data)


KAFKA_SECURITY = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SASL_MECHANISM = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


class BrokerSettings(BaseModel):
    """The typed keys every ``[brokers.NAME]`` table may hold; a plugin's ``config_model`` extends it.

    Unknown keys are kept (a plugin reads its own). Secrets are :class:`pydantic.SecretStr`: their repr and
    :meth:`redacted` show ``***``; write them as ``${ENV_VAR}`` references or set them through the environment
    (``ALERTMUX__BROKERS__NAME__PASSWORD``), never inline.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    bootstrap: str | None = None
    """Kafka bootstrap servers, ``host:port[,host:port]``."""
    topics: list[str] = []
    topic_pattern: str | None = None
    """A regex of topic names, for brokers that create topics as they go."""
    group: str | None = None
    """Kafka consumer group id."""
    security_protocol: KAFKA_SECURITY | None = None
    sasl_mechanism: SASL_MECHANISM | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    """CA bundle for SSL/SASL_SSL (librdkafka ``ssl.ca.location``) and for HTTPS to ``api_url``."""
    api_url: str | None = None
    """Base URL of the broker's REST API (overrides the plugin's default)."""
    token: SecretStr | None = None
    """REST API token."""
    kafka: dict[str, Any] = {}
    """Raw librdkafka settings for this broker, applied last."""

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"CA file {value} does not exist")
        return value.expanduser() if value is not None else None

    def client_config(self) -> dict[str, Any]:
        """The librdkafka settings: the typed keys in librdkafka's words, then the raw ``kafka`` table over them."""
        config = _typed_kafka_keys(self.model_dump(exclude={"kafka"}))
        config.update(self.kafka)
        return config

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict fit for printing: secrets as ``***``."""
        return _redact(self.model_dump(mode="json", exclude_none=True))


S = TypeVar("S", bound=BrokerSettings)
_TYPED_KAFKA = {"security_protocol": "security.protocol", "sasl_mechanism": "sasl.mechanism",
                "username": "sasl.username", "password": "sasl.password", "ca_file": "ssl.ca.location"}


def _typed_kafka_keys(table: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, kafka_key in _TYPED_KAFKA.items():
        value = table.get(key)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[kafka_key] = str(value)
    return out


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the configuration file (``alertmux.toml`` when it exists, or ``path``) and the environment overrides."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = path or (DEFAULT_FILE if DEFAULT_FILE.exists() else None)
    if source is not None:
        try:
            data = tomllib.loads(Path(source).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {source} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
            if "kafka" in parts[:-1]:  # librdkafka keys are dotted: ..._KAFKA__SASL_USERNAME means sasl.username
                parts[-1] = parts[-1].replace("_", ".")
            node = data
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"environment override {key} conflicts with a value in the config file")
            node[parts[-1]] = value
    return Config(data, Path(source) if source else None)


def _resolve(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            # Name the variable, never the value.
            raise ConfigError(f"{where} refers to environment variable {name}, which is not set")
        return os.environ[name]

    return _REFERENCE.sub(substitute, value)


def _resolve_all(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        k: _resolve_all(v, f"{where}.{k}") if isinstance(v, Mapping) else _resolve(v, f"{where}.{k}")
        for k, v in table.items()
    }


def _redact(node: Any, key: str = "") -> Any:
    if isinstance(node, Mapping):
        return {k: _redact(v, k) for k, v in node.items()}
    if key and is_secret(key):
        if isinstance(node, str) and _REFERENCE.fullmatch(node):
            return node  # a reference to an environment variable is not the secret itself
        return "***"
    return node
