"""The command line, run in-process through ``alertmux.cli.main`` (the console-script entry point)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from alertmux import __version__
from alertmux.serde import load_schema, schemaless_encode
from alertmux.store import DeadLetter, SqliteStore, open_store
from alertmux.testing import CliResult, RunCli

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DERIVED = SHARED / "data" / "elasticc" / "derived"
EXAMPLE_MESSAGE = DERIVED / "example_brokerClassification_elasticc2_v0_9_1_alertId102879800007.json"
EXAMPLE_ALERT = DERIVED / "example_alert_elasticc2_v0_9_1_alertId102879800007.json"
RECORD_KEYS = {
    "broker", "classifier", "alert_id", "dia_source_id", "dia_object_id", "class_id", "probability", "kind",
    "native_class", "native_scheme", "alert_published_at", "broker_ingest_at", "broker_publish_at", "ingested_at",
}
CLASSIFIER_KEYS = {"brokerName", "brokerVersion", "classifierName", "classifierParams"}

needs_shared = pytest.mark.skipif(not EXAMPLE_MESSAGE.exists(), reason=f"reference data not found in {SHARED}")


@pytest.fixture
def run(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunCli:
    """``alertmux ARGS`` in-process, in an empty directory and without ALERTMUX__ variables from the caller."""
    monkeypatch.chdir(tmp_path)  # no stray ./alertmux.toml or ./alertmux.db
    for key in [k for k in os.environ if k.startswith("ALERTMUX__")]:
        monkeypatch.delenv(key)
    return run_cli


def broker_message(
    alert_id: int = 1001, classes: tuple[tuple[int, float], ...] = ((2222, 0.75), (2223, 0.25))
) -> bytes:
    record = {
        "alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
        "brokerIngestTimestamp": 1_700_000_000_100, "brokerName": "B", "brokerVersion": "1", "classifierName": "C",
        "classifierParams": "P", "classifications": [{"classId": c, "probability": p} for c, p in classes],
    }
    return schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification"))


def assert_one_clean_error_line(result: CliResult) -> str:
    assert result.code != 0
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 1, f"expected one line on stderr, got: {result.err!r}"
    return result.err_lines[0]


def test_version(run: RunCli) -> None:
    result = run("--version")
    assert result.code == 0
    assert result.out.strip() == f"alertmux, version {__version__}"


@needs_shared
def test_decode_alert_file(run: RunCli, tmp_path: Path) -> None:
    alert = json.loads(EXAMPLE_ALERT.read_text())
    path = tmp_path / "alert.avro"
    path.write_bytes(schemaless_encode(alert, load_schema("elasticc.v0_9_1.alert")))
    result = run("decode", str(path))
    assert result.code == 0
    [decoded] = result.json_lines
    assert decoded["alertId"] == alert["alertId"]
    assert decoded["diaSource"]["diaObjectId"] == 1028798
    assert "schemaless Avro elasticc.v0_9_1.alert" in result.err  # what it was goes to stderr, not stdout


def test_decode_broker_message_file_as_is_and_normalized(run: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "message.avro"
    path.write_bytes(broker_message(classes=((2222, 0.75), (9999, 0.25))))
    plain = run("decode", str(path))
    assert plain.code == 0
    [record] = plain.json_lines
    assert record["alertId"] == 1001 and record["classifierName"] == "C"
    assert "brokerClassification" in plain.err

    normalized = run("decode", "--broker", "elasticc", str(path))
    assert normalized.code == 0
    lines = normalized.json_lines
    assert [(r["class_id"], r["native_class"]) for r in lines] == [(2222, "2222"), (None, "9999")]
    assert "unknown label 9999" in normalized.err


def test_decode_broker_says_how_much_each_file_gave_and_names_an_empty_one(run: RunCli, tmp_path: Path) -> None:
    message, empty = tmp_path / "message.avro", tmp_path / "empty.json"
    message.write_bytes(broker_message(classes=((2222, 0.75), (2223, 0.25))))
    empty.write_text("[]")  # valid JSON that carries no broker message
    result = run("decode", "--broker", "elasticc", str(message), str(empty))
    assert result.code == 0
    assert len(result.json_lines) == 2
    assert f"{message}: 1 message(s), 2 classification(s)" in result.err
    assert f"{empty}: 0 message(s), 0 classification(s)" in result.err
    assert "decode it without --broker" in result.err


@needs_shared
def test_decode_rest_json_example_gives_one_normalized_line_per_class(run: RunCli) -> None:
    expected = json.loads(EXAMPLE_MESSAGE.read_text())
    result = run("decode", "--broker", "elasticc", str(EXAMPLE_MESSAGE))
    assert result.code == 0
    lines = result.json_lines  # fails if anything but JSON lines reached stdout
    assert len(lines) == len(expected["classifications"]) == 20
    for line in lines:
        assert set(line) == RECORD_KEYS
        assert set(line["classifier"]) == CLASSIFIER_KEYS
        assert line["broker"] == "elasticc" and line["native_scheme"] == "elasticc2" and line["kind"] == "probability"
        assert line["alert_id"] == line["dia_source_id"] == 102879800007
        assert line["alert_published_at"].startswith("2024-11-21T")  # epoch ms 1732147331733, as UTC ISO 8601
    assert lines[0]["classifier"] == {"brokerName": "FakeBroker", "brokerVersion": "v1.0",
                                      "classifierName": "RandomSNType", "classifierParams": "Perfect"}
    assert [(r["class_id"], r["native_class"]) for r in lines] == [
        (c["classId"], str(c["classId"])) for c in expected["classifications"]
    ]
    assert lines[0]["probability"] == pytest.approx(0.44200107)


def test_decode_unreadable_file_is_one_clear_line(run: RunCli, tmp_path: Path) -> None:
    result = run("decode", str(tmp_path / "missing.avro"))
    line = assert_one_clean_error_line(result)
    assert "cannot read" in line and "missing.avro" in line
    assert result.out == ""


def test_decode_garbage_file_fails_after_trying_the_others(run: RunCli, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.avro", tmp_path / "bad.bin"
    good.write_bytes(broker_message())
    bad.write_bytes(b"\x07\x07 garbage")
    result = run("decode", "--broker", "elasticc", str(bad), str(good))
    assert result.code == 1 and "Traceback" not in result.err
    assert len(result.json_lines) == 2  # the good file still decoded
    assert "1 of 2 file(s) could not be decoded" in result.err


def test_unknown_broker_is_exit_2_with_one_line(run: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "message.avro"
    path.write_bytes(broker_message())
    result = run("decode", "--broker", "nope", str(path))
    assert result.code == 2
    line = assert_one_clean_error_line(result)
    assert "unknown broker 'nope'" in line and "elasticc" in line


@pytest.fixture
def closed_bootstrap() -> str:
    """A loopback address nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_listen_unreachable_bootstrap_is_a_clear_error(run: RunCli, tmp_path: Path, closed_bootstrap: str) -> None:
    result = run("listen", "--broker", "elasticc", "--bootstrap", closed_bootstrap, "--topic", "t",
                 "--connect-timeout", "2", "--db", str(tmp_path / "x.db"))
    assert result.code == 3 and result.out == ""
    assert "Traceback" not in result.err
    last = result.err_lines[-1]
    assert last.startswith("error: no Kafka broker answered at " + closed_bootstrap)
    assert "--bootstrap" in last  # says what to check


def test_listen_unreachable_bootstrap_prints_only_the_error(run: RunCli, tmp_path: Path, closed_bootstrap: str) -> None:
    result = run("listen", "--broker", "elasticc", "--bootstrap", closed_bootstrap, "--topic", "t",
                 "--connect-timeout", "2", "--db", str(tmp_path / "x.db"))
    assert_one_clean_error_line(result)


def test_error_messages_are_not_taken_for_markup(run: RunCli) -> None:
    # The message names the config table "[brokers.elasticc]": rich must print it, not parse it as a style.
    result = run("listen", "--broker", "elasticc")
    assert result.code == 2
    assert "[brokers.elasticc]" in assert_one_clean_error_line(result)


@pytest.mark.kafka
def test_listen_consumes_into_the_database(run: RunCli, tmp_path: Path, kafka_broker: Any, produce: Any,
                                           unique_topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    produce(unique_topic, [broker_message(1), b"junk", broker_message(2)])
    # The embedded broker's client settings, through the config environment (the CLI's only way to take them).
    monkeypatch.setenv("ALERTMUX__BROKERS__ELASTICC__KAFKA__SESSION.TIMEOUT.MS", "6000")
    db = tmp_path / "listen.db"
    result = run("listen", "--broker", "elasticc", "--bootstrap", kafka_broker.bootstrap, "--topic", unique_topic,
                 "--from", "earliest", "--max-messages", "3", "--db", str(db), "--group", f"g-{unique_topic}")
    assert result.code == 0, result.err
    [report] = result.json_lines
    assert {k: report[k] for k in ("broker", "consumed", "stored", "dead_letters")} == {
        "broker": "elasticc", "consumed": 3, "stored": 2, "dead_letters": 1}
    store = open_store(db)
    assert [d.payload for d in store.dead_letters()] == [b"junk"]
    store.close()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertmux.toml"
    path.write_text(text)
    return path


def test_config_show_redacts_secrets_but_shows_references(run: RunCli, tmp_path: Path) -> None:
    write_config(tmp_path, """
[kafka]
"security.protocol" = "SASL_SSL"
"sasl.password" = "hunter2"

[brokers.alerce.kafka]
"sasl.username" = "desc"
"sasl.password" = "${ALERCE_KAFKA_PASSWORD}"

[facilities.lco]
token = "s3cr3t-token"
api_key = "${LCO_API_KEY}"
""")
    result = run("config", "show")
    assert result.code == 0
    shown = json.loads(result.out)
    assert shown["file"] == "alertmux.toml"
    config = shown["config"]
    assert config["kafka"] == {"security.protocol": "SASL_SSL", "sasl.password": "***"}
    assert config["brokers"]["alerce"]["kafka"] == {
        "sasl.username": "desc", "sasl.password": "${ALERCE_KAFKA_PASSWORD}"}
    assert config["facilities"]["lco"] == {"token": "***", "api_key": "${LCO_API_KEY}"}
    assert "hunter2" not in result.out and "s3cr3t" not in result.out


def test_config_show_includes_environment_overrides(run: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTMUX__BROKERS__ELASTICC__BOOTSTRAP", "kafka.example.org:9092")
    monkeypatch.setenv("ALERTMUX__FACILITIES__LCO__TOKEN", "from-the-environment")
    result = run("config", "show")
    assert result.code == 0
    config = json.loads(result.out)["config"]
    assert config["brokers"]["elasticc"]["bootstrap"] == "kafka.example.org:9092"
    assert config["facilities"]["lco"]["token"] == "***"
    assert "from-the-environment" not in result.out


def test_invalid_config_is_one_line(run: RunCli, tmp_path: Path) -> None:
    write_config(tmp_path, "[kafka\n")
    result = run("config", "show")
    assert result.code == 2
    assert "not valid TOML" in assert_one_clean_error_line(result)


def test_deadletters_list_and_replay_after_a_fix(run: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "dead.db"
    store = open_store(db)
    # As if a decoder bug had rejected a valid message; after the fix the replay must store it.
    store.write_batch([], [DeadLetter("elasticc", "topic-a", broker_message(77), "DecodeError: old bug", 0, 5),
                           DeadLetter("elasticc", "topic-a", b"still garbage", "DecodeError: bad", 0, 6)])
    store.close()

    listed = run("deadletters", "--db", str(db))
    assert listed.code == 0
    assert [(d["source"], d["offset"], d["error"]) for d in listed.json_lines] == [
        ("topic-a", 5, "DecodeError: old bug"), ("topic-a", 6, "DecodeError: bad")]
    assert listed.json_lines[0]["bytes"] == len(broker_message(77))

    replayed = run("deadletters", "--db", str(db), "--replay")
    assert replayed.code == 0
    assert replayed.json_lines == [{"replayed": 1, "still_failing": 1}]

    store = open_store(db)
    assert isinstance(store, SqliteStore)
    assert store.conn.execute("SELECT alert_id, topic, offset FROM messages").fetchall() == [(77, "topic-a", 5)]
    [left] = store.dead_letters()
    assert left.payload == b"still garbage" and left.error.startswith("DecodeError")
    assert len(store.dead_letters(include_resolved=True)) == 2
    store.close()
    assert len(run("deadletters", "--db", str(db), "--all").json_lines) == 2


def test_a_plugin_command_exit_code_reaches_the_shell(run: RunCli) -> None:
    import click

    from alertmux import hookimpl
    from alertmux.host import PluginHost

    class ExitingCommand:
        @hookimpl
        def alertmux_register_commands(self, cli: click.Group) -> None:
            @cli.command("test-exit-four")
            @click.pass_context
            def exit_four(ctx: click.Context) -> None:
                ctx.exit(4)

    result = run("test-exit-four", host=PluginHost(load_entrypoints=False, plugins=[ExitingCommand()]))
    assert result.code == 4


def test_plugin_commands_are_added(run: RunCli) -> None:
    import click

    from alertmux import hookimpl
    from alertmux.host import PluginHost

    class Hello:
        @hookimpl
        def alertmux_register_commands(self, cli: click.Group) -> None:
            @cli.command("test-hello")
            def hello() -> None:
                click.echo("hello from a plugin")

    result = run("test-hello", host=PluginHost(load_entrypoints=False, plugins=[Hello()]))
    assert (result.code, result.out) == (0, "hello from a plugin\n")
