"""Configuration: file, environment overrides, secret references and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertmux.config import is_secret, load_config
from alertmux.errors import ConfigError

CONFIG = """
[kafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"

[brokers.alerce]
bootstrap = "kafka.alerce.example:9093"
topics = ["lc_classifier"]

[brokers.alerce.kafka]
"sasl.username" = "desc"
"sasl.password" = "${ALERCE_KAFKA_PASSWORD}"
"sasl.mechanism" = "PLAIN"

[facilities.lco]
token = "${LCO_TOKEN}"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "alertmux.toml"
    path.write_text(CONFIG)
    return path


def test_broker_kafka_settings_override_the_shared_ones(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERCE_KAFKA_PASSWORD", "pw")
    config = load_config(config_file, environ={})
    assert config.kafka() == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}
    assert config.kafka("alerce") == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                      "sasl.username": "desc", "sasl.password": "pw"}
    assert config.broker("alerce")["topics"] == ["lc_classifier"]
    assert config.broker("fink") == {}


def test_missing_secret_variable_is_named_but_no_value_shown(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LCO_TOKEN", raising=False)
    config = load_config(config_file, environ={})
    with pytest.raises(ConfigError, match="facilities.lco.token refers to environment variable LCO_TOKEN"):
        config.facility("lco")


def test_environment_overrides_nest_and_win(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERCE_KAFKA_PASSWORD", "pw")  # broker() resolves the whole table, secrets included
    environ = {
        "ALERTMUX__BROKERS__ALERCE__BOOTSTRAP": "other:9092",
        "ALERTMUX__BROKERS__FINK__GROUP": "desc-fink",
        "UNRELATED": "x",
    }
    config = load_config(config_file, environ=environ)
    assert config.broker("alerce")["bootstrap"] == "other:9092"
    assert config.broker("fink") == {"group": "desc-fink"}
    assert "unrelated" not in config.data


def test_environment_override_conflicting_with_a_value_is_an_error(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="ALERTMUX__BROKERS__ALERCE__BOOTSTRAP__X"):
        load_config(config_file, environ={"ALERTMUX__BROKERS__ALERCE__BOOTSTRAP__X": "1"})


def test_redacted_hides_inline_secrets_only(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\n"sasl.password" = "hunter2"\n[facilities.x]\napi_key = "${X_KEY}"\nuser = "me"\n')
    assert load_config(path, environ={}).redacted() == {
        "kafka": {"sasl.password": "***"},
        "facilities": {"x": {"api_key": "${X_KEY}", "user": "me"}},
    }


@pytest.mark.parametrize("key", ["sasl.password", "token", "api_key", "API-KEY", "client_secret", "credentials"])
def test_secret_keys(key: str) -> None:
    assert is_secret(key)


@pytest.mark.parametrize("key", ["bootstrap", "sasl.username", "topics", "group"])
def test_not_secret_keys(key: str) -> None:
    assert not is_secret(key)


def test_missing_or_invalid_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_no_file_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert (config.path, dict(config.data)) == (None, {})
