"""Secrets set (a SASL password, API tokens, a database password) never reach logs, the database, ``alertmux
plugins``, the configuration dump, or error messages, whatever the command does or fails to do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from alertmux.harness import ensure_topics
from alertmux.kafka import make_producer
from alertmux.serde import load_schema, schemaless_encode

SASL_PASSWORD = "sasl-pw-7Hq2ZrX9"
API_TOKEN = "api-token-Lm4Vb8Nc"
FACILITY_KEY = "facility-key-Pw3Ks6Dt"
DB_PASSWORD = "db-pw-Yt5Gh1Rj"
SECRETS = (SASL_PASSWORD, API_TOKEN, FACILITY_KEY, DB_PASSWORD)


def assert_clean(where: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}: {text[:3000]}"


@pytest.fixture
def secret_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An alertmux.toml naming its secrets by environment variable, the variables set, one override inline."""
    config = tmp_path / "alertmux.toml"
    config.write_text(
        '[brokers.elasticc]\ntoken = "${ALERTMUX_TEST_TOKEN}"\n'
        '[brokers.elasticc.kafka]\n"sasl.username" = "desc"\n"sasl.password" = "${ALERTMUX_TEST_SASL}"\n'
        '"sasl.mechanism" = "PLAIN"\n"security.protocol" = "SASL_PLAINTEXT"\n'
        '[facilities.lco]\napi_key = "${ALERTMUX_TEST_FACILITY}"\n'
    )
    monkeypatch.setenv("ALERTMUX_TEST_TOKEN", API_TOKEN)
    monkeypatch.setenv("ALERTMUX_TEST_SASL", SASL_PASSWORD)
    monkeypatch.setenv("ALERTMUX_TEST_FACILITY", FACILITY_KEY)
    monkeypatch.setenv("ALERTMUX__FACILITIES__SOAR__TOKEN", FACILITY_KEY)  # an inline secret, from the environment
    return config


@pytest.fixture
def url_with_password(pg_url: str) -> str:
    # The local server trusts loopback connections: it never asks for the password, which is still in the URL.
    parts = urlsplit(pg_url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{DB_PASSWORD}@{host}"))


def database_text(url: str) -> str:
    """Every row of every table of the store, as JSON text."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        return "\n".join(str(row[0]) for t in tables
                         for row in conn.execute(f'SELECT row_to_json(x)::text FROM "{t}" x'))  # noqa: S608


@pytest.fixture
def topic(kafka_broker: Any) -> Iterator[str]:
    name = f"secrets-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, [name], {})
    record = {"alertId": 1, "diaSourceId": 1, "elasticcPublishTimestamp": 1_700_000_000_000,
              "brokerIngestTimestamp": None, "brokerName": "B", "brokerVersion": "1", "classifierName": "C",
              "classifierParams": "P", "classifications": [{"classId": 2222, "probability": 1.0}]}
    producer = make_producer(kafka_broker.bootstrap)
    producer.produce(name, schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification")))
    producer.produce(name, b"\x00garbage " + API_TOKEN.encode()[:3])  # a dead letter, and its reason, stored
    producer.flush(10)
    yield name


@pytest.mark.kafka
@pytest.mark.slow
def test_no_secret_in_logs_database_plugins_config_or_errors(
    secret_env: Path, url_with_password: str, kafka_broker: Any, topic: str, run_cli: Any,
    spawn: Callable[..., Any], worker_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    config = ["--config", str(secret_env)]
    outputs: dict[str, str] = {}

    # A listener whose SASL handshake the local broker cannot do: it fails, and says why without the password.
    failed = run_cli(*config, "-vv", "listen", "--broker", "elasticc", "--bootstrap", kafka_broker.bootstrap,
                     "--topic", topic, "--db", url_with_password, "--connect-timeout", "3", "--max-messages", "2")
    assert failed.code != 0
    outputs["failed listen"] = failed.out + failed.err

    # The same listener without SASL (an environment override turns it off), as a real process logging JSON.
    env = worker_env() | {"ALERTMUX__BROKERS__ELASTICC__KAFKA__SECURITY_PROTOCOL": "PLAINTEXT",
                          "ALERTMUX_TEST_TOKEN": API_TOKEN, "ALERTMUX_TEST_SASL": SASL_PASSWORD,
                          "ALERTMUX_TEST_FACILITY": FACILITY_KEY, "ALERTMUX__FACILITIES__SOAR__TOKEN": FACILITY_KEY}
    worker = spawn([*config, "-vv", "--log-json", "listen", "--broker", "elasticc", "--bootstrap",
                    kafka_broker.bootstrap, "--topic", topic, "--db", url_with_password, "--from", "earliest",
                    "--max-messages", "2"], env)
    worker.proc.wait(60)
    out = worker.proc.stdout.read().decode()
    outputs["listen (process)"] = out + worker.logs()
    assert worker.proc.returncode == 0 and json.loads(out.splitlines()[-1])["stored"] == 1, worker.logs()[-2000:]

    for args in (("plugins",), ("plugins", "--json"), ("config", "show"),
                 ("status", "--db", url_with_password, "--bootstrap", kafka_broker.bootstrap, "--topic", topic,
                  "--kafka-timeout", "2"),
                 ("deadletters", "--db", url_with_password),
                 ("status", "--db", urlunsplit(urlsplit(url_with_password)._replace(path="/no_such_database")))):
        result = run_cli(*config, "-vv", *args)
        outputs[" ".join(args[:2])] = result.out + result.err
        assert "Traceback" not in result.err
    assert "***" in outputs["config show"]  # the secrets are there, redacted

    outputs["database"] = database_text(url_with_password)
    assert '"error":"DecodeError' in outputs["database"]  # the dead letter and its reason are in what was read
    for where, text in outputs.items():
        assert_clean(where, text)


def test_a_run_summary_naming_the_database_url_keeps_no_password(url_with_password: str) -> None:
    from alertmux.store import open_store

    store = open_store(url_with_password)
    run = store.start_run("demo", {"db": url_with_password})
    store.finish_run(run, {"db": url_with_password, "alerts_sent": 0})
    store.close()
    text = database_text(url_with_password)
    assert "alerts_sent" in text
    assert_clean("runs table", text)
