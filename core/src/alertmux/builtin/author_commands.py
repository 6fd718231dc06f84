"""The built-in ``authoring`` plugin: commands for plugin authors, and the recordings they produce.

* ``alertmux record NAME`` captures a broker's live messages (raw bytes, key, headers, topic, partition, offset,
  timestamp) into a *recording*, a directory a plugin's tests replay (:func:`read_recording`, :func:`load_samples`).
* ``alertmux conformance NAME`` runs :class:`alertmux.testing.ConformanceSuite` against an installed plugin and
  prints a pass/fail table.
* ``alertmux new-plugin NAME`` writes a new broker plugin distribution: ``plugins/example`` with its name replaced.

A recording is::

    DIR/recording.json    what was recorded: broker, topics, bootstrap, time, alertmux version, message count
    DIR/messages.jsonl    one line per message: file, topic, partition, offset, timestamp_ms, key and headers
                          (base64), bytes, sha256
    DIR/000001.bin ...    each message's value, byte for byte

Client settings (SASL passwords...) are never written to a recording. This module is imported whenever the
plugin host loads, so Kafka, rich and the test suite are imported inside the commands.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from alertmux.errors import AlertmuxError, UsageError
from alertmux.hookspecs import hookimpl
from alertmux.specs import Delivery, SamplePayload

log = logging.getLogger(__name__)
INDEX = "messages.jsonl"
MANIFEST = "recording.json"
_PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_]*")


# -- recordings ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One Kafka message as it was received: its value byte for byte and where it came from."""

    payload: bytes
    topic: str
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def delivery(self) -> Delivery:
        """The :class:`~alertmux.specs.Delivery` a decoder would have been given for this message."""
        headers = tuple((name, value or b"") for name, value in self.headers)
        return Delivery(self.topic, self.partition, self.offset, self.timestamp_ms, self.key, headers)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class RecordingWriter:
    """Writes a recording directory message by message, so an interrupted ``record`` keeps what it captured."""

    def __init__(self, directory: Path, manifest: Mapping[str, Any]) -> None:
        """Create ``directory`` (which must not hold files yet) and start its index.

        Raises:
            UsageError: the directory exists and is not empty (a recording is never overwritten).
        """
        if directory.exists() and any(directory.iterdir()):
            raise UsageError(f"{directory} is not empty: choose a new directory for the recording")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {directory}: {exc}") from None
        self.directory = directory
        self.manifest = dict(manifest)
        self.count = 0
        self._index = (directory / INDEX).open("a", encoding="utf-8")

    def add(self, message: RecordedMessage) -> Path:
        """Write one message's value to its own file and append its metadata to the index."""
        self.count += 1
        path = self.directory / f"{self.count:06d}.bin"
        path.write_bytes(message.payload)
        entry = {
            "file": path.name,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp_ms": message.timestamp_ms,
            "key": _b64(message.key),
            "headers": [[name, _b64(value)] for name, value in message.headers],
            "bytes": len(message.payload),
            "sha256": hashlib.sha256(message.payload).hexdigest(),
        }
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()
        return path

    def close(self) -> None:
        """Finish the index and write ``recording.json``."""
        self._index.close()
        manifest = self.manifest | {"messages": self.count}
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_recording(directory: str | Path) -> list[RecordedMessage]:
    """The messages of a recording made by ``alertmux record``, in the order they were received.

    Raises:
        UsageError: the directory is not a recording, or a payload file is missing or was altered.
    """
    directory = Path(directory)
    index = directory / INDEX
    if not index.is_file():
        raise UsageError(f"{directory} is not a recording: {INDEX} is missing")
    messages = []
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            payload = (directory / entry["file"]).read_bytes()
            headers = tuple((str(name), _unb64(value)) for name, value in entry.get("headers") or ())
            message = RecordedMessage(payload, entry["topic"], entry.get("partition"), entry.get("offset"),
                                      entry.get("timestamp_ms"), _unb64(entry.get("key")), headers)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{index} line {number}: {type(exc).__name__}: {exc}") from None
        if entry.get("sha256") and hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            raise UsageError(f"{directory / entry['file']} does not match its sha256 in {INDEX}: it was altered")
        messages.append(message)
    return messages


def load_samples(path: str | Path, decoder: str | None = None) -> list[SamplePayload]:
    """Sample payloads from a recording directory, a directory of payload files, or one payload file.

    In a plain directory every file is one payload, except Markdown and text files (``SOURCES.md``, notes).

    Args:
        path: the recording, directory or file.
        decoder: the decoder every payload is meant for (None: the broker's decoders are tried in order).
    """
    path = Path(path)
    if path.is_file():
        return [SamplePayload(path.name, path.read_bytes(), decoder, origin=str(path))]
    if (path / INDEX).is_file():
        return [
            SamplePayload(
                name=f"{m.topic}[{m.partition}]@{m.offset}", payload=m.payload, decoder=decoder,
                origin=f"recorded by alertmux record into {path}", key=m.key,
                headers=tuple((name, value or b"") for name, value in m.headers),
            )
            for m in read_recording(path)
        ]
    if not path.is_dir():
        raise UsageError(f"no samples at {path}: not a file, a directory or a recording")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix not in (".md", ".txt")
                   and not p.name.startswith("."))
    return [SamplePayload(p.name, p.read_bytes(), decoder, origin=str(p)) for p in files]


# -- capture from Kafka -------------------------------------------------------------------------------------------
def capture(
    bootstrap: str,
    *,
    topics: tuple[str, ...] = (),
    topic_pattern: str | None = None,
    client_config: Mapping[str, Any] | None = None,
    start: str = "earliest",
    group: str | None = None,
    max_messages: int | None = None,
    idle_exit: float | None = None,
    to_end: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    connect_timeout: float = 10.0,
) -> Iterator[RecordedMessage]:
    """Yield messages of Kafka topics as received, without committing any offset.

    Named topics without a ``group`` are read by assigning their partitions directly (no group join, nothing
    committed: a recording never moves a listener's position). A ``topic_pattern``, or an explicit ``group``
    (Rubin requires group ids that start with the user name), subscribes through a consumer group.

    Args:
        bootstrap: Kafka bootstrap servers.
        topics: topics to read.
        topic_pattern: a regex of topics to read (``^`` is added when missing), instead of ``topics``.
        client_config: librdkafka settings (SASL, SSL...), never written anywhere.
        start: ``earliest`` or ``latest``.
        group: consumer group id; default a throw-away one.
        max_messages: stop after this many.
        idle_exit: stop after this many seconds without a message (counted from the assignment).
        to_end: stop once every partition has been read up to where it ended when reading began (named topics
            only).
        should_stop: polled between batches (SIGINT/SIGTERM).
        connect_timeout: seconds to wait for the first answer from Kafka.
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    from alertmux.kafka import check_reachable

    if start not in ("earliest", "latest"):
        raise UsageError(f"start must be earliest or latest, not {start!r}")
    if not topics and not topic_pattern:
        raise UsageError("nothing to read: give topics or a topic pattern")
    check_reachable(bootstrap, client_config or {}, connect_timeout)
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group or f"alertmux-record-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": start,
        "logger": logging.getLogger("alertmux.librdkafka"),
    } | dict(client_config or {})
    consumer = Consumer(config)
    ends: dict[tuple[str, int], int] = {}
    assigned_at: list[float] = []
    try:
        if topics and not group and not topic_pattern:
            metadata = consumer.list_topics(timeout=connect_timeout)
            missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error is not None]
            if missing:
                raise UsageError(f"no such topic: {', '.join(missing)}")
            partitions = [TopicPartition(t, p, OFFSET_BEGINNING if start == "earliest" else OFFSET_END)
                          for t in topics for p in sorted(metadata.topics[t].partitions)]
            if to_end:
                for tp in partitions:
                    low, high = consumer.get_watermark_offsets(tp, timeout=connect_timeout)
                    if high > low and start == "earliest":
                        ends[(tp.topic, tp.partition)] = high
                if not ends:
                    return
            consumer.assign(partitions)
            assigned_at.append(time.monotonic())
        else:
            if to_end:
                raise UsageError("to_end needs named topics read without a consumer group")
            pattern = topic_pattern if topic_pattern is None or topic_pattern.startswith("^") else "^" + topic_pattern
            consumer.subscribe([pattern] if pattern else list(topics),
                               on_assign=lambda _c, parts: assigned_at.append(time.monotonic()) if parts else None)
        count = 0
        started = last = time.monotonic()
        while not should_stop():
            budget = 500 if max_messages is None else min(500, max_messages - count)
            if budget <= 0:
                return
            batch = consumer.consume(budget, timeout=0.1)
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("kafka: %s", error.str())
                    continue
                count += 1
                last = time.monotonic()
                kind, stamp = msg.timestamp()
                yield RecordedMessage(
                    payload=msg.value() or b"", topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                    timestamp_ms=stamp if kind else None, key=msg.key(),
                    headers=tuple((str(k), v) for k, v in msg.headers() or ()),
                )
                end = ends.get((msg.topic(), msg.partition()))
                if end is not None and msg.offset() + 1 >= end:
                    del ends[(msg.topic(), msg.partition())]
            if to_end and not ends:
                return
            if idle_exit is not None and not batch:
                # The group join is not silence: idle time counts from the first assignment.
                since = max(last, assigned_at[0]) if assigned_at else started
                if time.monotonic() - since >= idle_exit:
                    return
    finally:
        consumer.close()


# -- commands -----------------------------------------------------------------------------------------------------
class _Signals:
    """SIGINT/SIGTERM set a flag, so ``record`` closes its recording properly instead of dying mid-file."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, lambda signum, _frame: self.received.append(signum))
        return self

    def __exit__(self, *_: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("name")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: the broker's config, then [kafka]).")
@click.option("--topic", "topics", multiple=True, help="Topic to record (repeatable); default: the broker's topics.")
@click.option("--from", "start", type=click.Choice(["earliest", "latest"]), default="latest", show_default=True,
              help="Where to start in each partition.")
@click.option("--group", help="Consumer group id (needed for topic patterns on servers that restrict group ids).")
@click.option("--max-messages", type=int, default=100, show_default=True, help="Stop after this many messages.")
@click.option("--idle-exit", type=float, default=60.0, show_default=True,
              help="Stop after this many seconds without a message.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Directory for the recording [default: recordings/NAME-TIME].")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for Kafka's first answer.")
@click.pass_obj
def record(obj: Any, name: str, bootstrap: str | None, topics: tuple[str, ...], start: str, group: str | None,
           max_messages: int, idle_exit: float, out: Path | None, connect_timeout: float) -> None:
    """Record a broker's live messages (raw bytes, key, headers) into fixture files its tests can replay.

    Topics, topic pattern and security settings come from the broker plugin and alertmux.toml, as for
    `alertmux listen`; no offset is committed. Each message is also tried with the broker's decoders and the
    ones that fail are reported: those are the fixtures a fix needs.
    """
    from alertmux.ingest import Ingestor

    host, config = obj.host, obj.config
    spec = host.broker(name)
    settings = config.broker(name)
    client_config = config.kafka(name)
    bootstrap = bootstrap or settings.get("bootstrap") or client_config.get("bootstrap.servers")
    client_config.pop("bootstrap.servers", None)
    if not bootstrap:
        raise UsageError(f"record needs --bootstrap (or bootstrap in [brokers.{name}] of alertmux.toml)")
    topics = topics or tuple(settings.get("topics", ())) or (spec.kafka.topics if spec.kafka else ())
    pattern = None if topics else settings.get("topic_pattern") or (spec.kafka.topic_pattern if spec.kafka else None)
    if not topics and not pattern:
        raise UsageError(f"broker {name} has no default topics: pass --topic")
    out = out or Path("recordings") / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    writer = RecordingWriter(out, {
        "broker": name, "topics": list(topics), "topic_pattern": pattern, "bootstrap": bootstrap,
        "from": start, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "alertmux_version": _version(),
    })
    ingestor = Ingestor(host, name)
    failed = 0
    started = time.monotonic()
    try:
        with _Signals() as signals:
            for message in capture(bootstrap, topics=topics, topic_pattern=pattern, client_config=client_config,
                                   start=start, group=group or settings.get("group"), max_messages=max_messages,
                                   idle_exit=idle_exit, should_stop=lambda: bool(signals.received),
                                   connect_timeout=connect_timeout):
                path = writer.add(message)
                try:
                    ingestor.decode(message.payload, message.delivery)
                except Exception as exc:  # noqa: BLE001 - reported: these are the payloads a fix needs
                    failed += 1
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    click.echo(f"{path.name} ({message.topic}[{message.partition}]@{message.offset}) does not "
                               f"decode as {name}: {reason}", err=True)
    finally:
        writer.close()
    click.echo(json.dumps({"broker": name, "out": str(out), "recorded": writer.count, "decode_failures": failed,
                           "seconds": round(time.monotonic() - started, 3)}))


@click.command()
@click.argument("name")
@click.option("--bootstrap", help="A local Kafka for the Kafka checks [default: start the embedded broker].")
@click.option("--no-kafka", is_flag=True, help="Skip the checks that need Kafka.")
@click.option("--samples", "sample_paths", multiple=True, metavar="[BROKER=]PATH",
              help="More sample payloads: a recording, a directory or a file (repeatable).")
@click.option("--check", "checks", multiple=True, help="Run only this check (repeatable); see the table for names.")
@click.option("--objects", default=2, show_default=True, help="Simulated objects streamed to the emulator.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def conformance(obj: Any, name: str, bootstrap: str | None, no_kafka: bool, sample_paths: tuple[str, ...],
                checks: tuple[str, ...], objects: int, as_json: bool) -> None:
    """Run the conformance suite against an installed plugin and print a pass/fail table.

    NAME is a plugin's entry-point name (or a broker it provides). The Kafka checks run against a local broker
    only, never against the servers in alertmux.toml. Exits with status 1 when a check fails.
    """
    import tempfile
    from contextlib import ExitStack

    try:
        from alertmux.testing import CHECKS, ConformanceSuite
    except ImportError as exc:  # pytest is a test extra, not a runtime dependency
        raise UsageError(f"alertmux conformance needs the test extra: pip install 'alertmux[test]' ({exc})") from None
    known = {c.name for c in CHECKS}
    unknown = [c for c in checks if c not in known]
    if unknown:
        raise UsageError(f"unknown check(s) {', '.join(unknown)} (known: {', '.join(c.name for c in CHECKS)})")
    host = obj.host
    plugin = _plugin_for(host, name)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="alertmux-conformance-")))
        suite = ConformanceSuite(plugin, host=host, workdir=workdir, objects=objects)
        _add_samples(suite, sample_paths)
        selected = [c for c in CHECKS if not checks or c.name in checks]
        if not no_kafka and any(c.needs_kafka for c in selected):
            if bootstrap:
                from alertmux.embedded import local_client_config

                suite.use_kafka(bootstrap, local_client_config())
            else:
                from alertmux.embedded import EmbeddedKafka, local_client_config

                kafka = stack.enter_context(EmbeddedKafka())
                suite.use_kafka(kafka.bootstrap, local_client_config())
        results = [r for c in selected for r in suite.check(c.name)]
    if as_json:
        for r in results:
            click.echo(json.dumps({"check": r.check, "subject": r.subject, "status": r.status, "detail": r.detail,
                                   "applies": r.applies}))
    else:
        _print_results(plugin, results)
    failed = [r for r in results if r.status == "fail"]
    if failed:
        raise AlertmuxError(f"{len(failed)} of {len(results)} conformance result(s) failed for plugin {plugin}")


def _plugin_for(host: Any, name: str) -> str:
    infos = {info.name: info for info in host.plugins()}
    if name in infos:
        return name
    owners = [info.name for info in infos.values() if name in info.provides.get("brokers", ())
              or name in info.provides.get("facilities", ())]
    if len(owners) == 1:
        return owners[0]
    raise UsageError(f"no installed plugin or broker called {name!r} (plugins: {', '.join(sorted(infos))})")


def _add_samples(suite: Any, sample_paths: tuple[str, ...]) -> None:
    for item in sample_paths:
        broker, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        if not broker:
            if len(suite.brokers) != 1:
                raise UsageError(f"plugin {suite.plugin} provides {len(suite.brokers)} brokers: write --samples "
                                 f"BROKER=PATH (brokers: {', '.join(suite.brokers) or 'none'})")
            broker = next(iter(suite.brokers))
        suite.add_samples(broker, load_samples(path))


def _print_results(plugin: str, results: list[Any]) -> None:
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    colours = {"pass": "green", "fail": "red", "skip": "yellow"}
    table = Table("check", "subject", "result", "detail", title=f"conformance of plugin {plugin}")
    for r in results:
        if r.applies:
            table.add_row(r.check, r.subject, f"[{colours[r.status]}]{r.status}[/]", escape(r.detail))
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    counts = {status: sum(r.status == status and r.applies for r in results) for status in ("pass", "fail", "skip")}
    console.print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped", highlight=False)
    not_applicable = [r.check for r in results if not r.applies]
    if not_applicable:
        console.print(f"not applicable to this plugin: {', '.join(not_applicable)}", highlight=False)


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Where to write it [default: ./NAME].")
def new_plugin(name: str, directory: Path | None) -> None:
    """Write a new broker plugin distribution: the example plugin, renamed, with its tests and samples.

    NAME becomes the entry point, the broker and scheme name, the package alertmux_NAME and the distribution
    alertmux-NAME. Then: pip install -e DIR[test] and pytest DIR.
    """
    if not _PLUGIN_NAME.fullmatch(name):
        raise UsageError(f"plugin name {name!r} must be lowercase letters, digits and underscores, starting with a "
                         "letter (it becomes a Python package name and what users type after --broker)")
    directory = directory or Path(name)
    if directory.exists() and any(directory.iterdir()):
        raise UsageError(f"{directory} is not empty: choose a new directory")
    written = []
    for relative, text in render_template(name).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(relative)
    click.echo(json.dumps({"plugin": name, "dir": str(directory), "files": written}))
    click.echo(f"next: pip install -e '{directory}[test]' && pytest {directory}", err=True)


def render_template(name: str) -> dict[str, str]:
    """The files of a new plugin called ``name``, by path relative to its directory."""
    title = name.replace("_", " ").title()
    return {
        path.replace("{{name}}", name): text.replace("{{name}}", name).replace("{{Name}}", title)
        for path, text in PLUGIN_TEMPLATE.items()
    }


def _version() -> str:
    from alertmux import __version__

    return __version__


@hookimpl
def alertmux_register_commands(cli: click.Group) -> None:
    """Add ``record``, ``conformance`` and ``new-plugin``."""
    for command in (record, conformance, new_plugin):
        cli.add_command(command)


# -- the plugin template ------------------------------------------------------------------------------------------
# plugins/example is this template rendered with the name "example" (tests/test_docs.py keeps them identical):
# change the example, then regenerate this table with `python docs/scripts/plugin_template.py`.
PLUGIN_TEMPLATE: dict[str, str] = {
    'CHANGELOG.md': '''\
# Changelog of alertmux-{{name}}

## 0.1.0 (unreleased)

### Added
- The {{name}} broker: JSON decoder, label table onto ELAsTiCC2, emulator, sample payloads, conformance tests.
''',
    'README.md': '''\
# alertmux-{{name}}

The smallest real broker plugin for [alertmux](../../README.md), and the template `alertmux new-plugin NAME`
writes. The {{name}} broker itself is made up: it publishes one JSON object per classified alert on the Kafka
topic `{{name}}-classifications`. Everything else is what a plugin for a real broker has:

| part | where |
|---|---|
| entry point in the `alertmux` group, core versions declared | `pyproject.toml` |
| decoder: bytes to `BrokerMessage`s, `DecodeError` on anything else | `decode` in `src/alertmux_{{name}}/__init__.py` |
| the broker's labels onto ELAsTiCC2, each row with its source | `LABELS` |
| emulator: answers the harness's alert stream in the broker's format | `run_emulator`, `output_topics` |
| sample payloads, decoded by the conformance suite | `src/alertmux_{{name}}/samples/`, `samples()` |
| tests: the whole conformance suite plus the broker's own cases | `tests/test_{{name}}.py` |

```console
$ pip install -e 'plugins/{{name}}[test]'
$ alertmux plugins                      # lists {{name}}
$ alertmux decode --broker {{name}} plugins/{{name}}/src/alertmux_{{name}}/samples/classification.json
$ alertmux demo --brokers elasticc,{{name}} --objects 20
$ alertmux conformance {{name}}          # the pass/fail table
$ pytest plugins/{{name}}
```

See `docs/write-a-broker-plugin.md` for a walk through this plugin. Licence: BSD-3-Clause.
''',
    'pyproject.toml': '''\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "alertmux-{{name}}"
version = "0.1.0"
description = "The {{name}} broker plugin for alertmux: JSON classifications on Kafka, an emulator, sample payloads"
readme = "README.md"
license = "BSD-3-Clause"
requires-python = ">=3.11"
dependencies = [
    "alertmux>=0.1,<0.2",  # the core minor release this plugin is tested with (docs/plugin-policy.md)
]

[project.optional-dependencies]
test = ["pytest>=8"]  # runs alertmux.testing's conformance suite and fixtures

[project.entry-points.alertmux]
{{name}} = "alertmux_{{name}}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
alertmux_{{name}} = ["samples/*.json"]
''',
    'src/alertmux_{{name}}/__init__.py': '''\
"""The {{name}} broker for alertmux: a whole broker plugin in one file, and the template of `alertmux new-plugin`.

The {{name}} broker is made up; the plugin is real. The broker publishes one JSON object per classified alert on
the Kafka topic ``{{name}}-classifications``::

    {"alertId": 102879800007, "diaSourceId": 102879800007, "diaObjectId": 1028798,
     "brokerVersion": "1.0", "classifier": "rf", "classifierVersion": "2024-05",
     "publishedMs": 1732147345655, "probabilities": {"SNIa": 0.81, "SNII": 0.17, "bogus": 0.02}}

This module gives alertmux the decoder of that format, the broker's labels mapped onto ELAsTiCC2 classes, an
emulator that answers the harness's alert stream in the same format, and sample payloads for the tests. To write
a plugin for a real broker, replace those four with the broker's own (docs/write-a-broker-plugin.md).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from alertmux import (
    BrokerMessage,
    BrokerSpec,
    DecodeError,
    Delivery,
    EmulatorContext,
    EmulatorSpec,
    KafkaTransport,
    NormalizedLabel,
    NormalizerSpec,
    hookimpl,
)
from alertmux.emulation import AlertSeen, ConfusionMatrix, alert_batches, behaviour
from alertmux.kafka import make_producer
from alertmux.specs import SamplePayload
from alertmux.taxonomy import ELASTICC2, taxonomy

NAME = "{{name}}"
"""What users type after --broker, and the name of the broker's label scheme."""
TOPIC = "{{name}}-classifications"
BROKER_NAME = "{{Name}}"

LABELS: dict[int | str, NormalizedLabel] = {
    "SNIa": NormalizedLabel(2222, source="{{name}} broker label SNIa: a type Ia supernova, ELAsTiCC2 2222 Ia"),
    "SNIbc": NormalizedLabel(2223, source="{{name}} broker label SNIbc: a type Ib/c supernova, ELAsTiCC2 2223 Ib/c"),
    "SNII": NormalizedLabel(2224, source="{{name}} broker label SNII: a type II supernova, ELAsTiCC2 2224 II"),
    "SLSN": NormalizedLabel(2242, source="{{name}} broker label SLSN: ELAsTiCC2 2242 SLSN"),
    "TDE": NormalizedLabel(2243, source="{{name}} broker label TDE: ELAsTiCC2 2243 TDE"),
    "KN": NormalizedLabel(2232, source="{{name}} broker label KN: a kilonova, ELAsTiCC2 2232 KN"),
    "AGN": NormalizedLabel(2332, source="{{name}} broker label AGN: ELAsTiCC2 2332 AGN"),
    # The broker does not say which kind of periodic variable: its parent category, not a guessed leaf.
    "Periodic": NormalizedLabel(2320, source="{{name}} broker label Periodic: any periodic variable, ELAsTiCC2 2320"),
    "Other": NormalizedLabel(200, source="{{name}} broker label Other: none of its classes, ELAsTiCC2 200 Residual"),
    # A real/bogus probability says nothing about the class: kept verbatim as context, never ranked.
    "bogus": NormalizedLabel(None, kind="context", source="{{name}} broker label bogus: P(artifact), not a class"),
}
"""The broker's labels and where each lands in the ELAsTiCC2 taxonomy (docs/taxonomy.md)."""


def decode(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    """Turn one Kafka message of the {{name}} broker into a broker message; raise on anything else.

    Raises:
        DecodeError: the payload is not an {{name}} classification (the core dead-letters it).
    """
    try:
        message = json.loads(payload)
        probabilities = message["probabilities"]
        if not isinstance(probabilities, dict) or not probabilities:
            raise DecodeError("probabilities must be a non-empty object of label: probability")
        return [
            BrokerMessage(
                classifier=(BROKER_NAME, str(message["brokerVersion"]), str(message["classifier"]),
                            str(message["classifierVersion"])),
                scheme=NAME,
                labels=list(probabilities),
                values=[float(p) for p in probabilities.values()],
                alert_id=int(message["alertId"]),
                dia_source_id=int(message["diaSourceId"]),
                dia_object_id=_int_or_none(message.get("diaObjectId")),
                broker_publish_ms=_int_or_none(message.get("publishedMs")),
            )
        ]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(f"not a classification of the {{name}} broker: {type(exc).__name__}: {exc}") from None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# -- emulator -----------------------------------------------------------------------------------------------------
def output_topics(run_id: str) -> tuple[str, ...]:
    """The emulator's topic for a harness run (one per run, so runs never read each other's answers)."""
    return (f"{TOPIC}-{run_id}",)


def _native_label(class_id: int) -> str:
    for label, row in LABELS.items():
        if row.class_id == class_id:
            return str(label)
    if 2320 in taxonomy(ELASTICC2).ancestors(class_id):
        return "Periodic"
    return "Other"


def answer(alert: AlertSeen, matrix: ConfusionMatrix, rng: random.Random) -> dict[str, Any]:
    """What the {{name}} broker would publish for an alert, its class drawn from a confusion matrix row."""
    bogus = rng.uniform(0.0, 0.05)
    probabilities: dict[str, float] = {}
    for class_id, p in matrix.classify(alert.true_class, rng):
        label = _native_label(class_id)
        probabilities[label] = probabilities.get(label, 0.0) + p * (1.0 - bogus)
    probabilities["bogus"] = bogus
    return {
        "alertId": alert.alert_id,
        "diaSourceId": alert.dia_source_id,
        "diaObjectId": alert.dia_object_id,
        "brokerVersion": "1.0",
        "classifier": "emulated",
        "classifierVersion": "confusion-matrix",
        "publishedMs": time.time_ns() // 1_000_000,
        "probabilities": {label: round(p, 6) for label, p in probabilities.items()},
    }


def run_emulator(ctx: EmulatorContext) -> None:
    """Answer every alert of the harness's stream on :func:`output_topics`, as the {{name}} broker would.

    Options: ``mode`` (``last`` or ``after3``, see :func:`alertmux.emulation.behaviour`) and ``seed``.
    """
    early, late, switch_after = behaviour(ctx.options.get("mode", "last"))
    rng = random.Random(ctx.options.get("seed", 0))
    (topic,) = output_topics(ctx.run_id)
    producer = make_producer(ctx.bootstrap, ctx.client_config)
    try:
        for batch in alert_batches(ctx):
            for alert in batch:
                matrix = early if (alert.detections or 0) <= switch_after else late
                body = json.dumps(answer(alert, matrix, rng)).encode()
                producer.produce(topic, body, key=str(alert.dia_object_id).encode())
                producer.poll(0)
    finally:
        producer.flush()


# -- samples ------------------------------------------------------------------------------------------------------
def samples() -> Iterator[SamplePayload]:
    """The payloads in ``samples/``, for the conformance suite (capture a real broker's with `alertmux record`)."""
    for path in sorted(files(__name__).joinpath("samples").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".json"):
            yield SamplePayload(path.name, path.read_bytes(), decoder="kafka",
                                origin="written for this template: the {{name}} broker is made up")


# -- hooks --------------------------------------------------------------------------------------------------------
@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """The {{name}} broker: its Kafka topic and decoder, its emulator and its samples."""
    yield BrokerSpec(
        name=NAME,
        description="The {{name}} broker (made up): JSON classifications on one Kafka topic; the plugin template",
        kafka=KafkaTransport(decode, topics=(TOPIC,), description="one JSON object per classified alert"),
        emulator=EmulatorSpec(run=run_emulator, output_topics=output_topics),
        samples=samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """The {{name}} broker's labels onto ELAsTiCC2."""
    yield NormalizerSpec(scheme=NAME, description="Labels of the {{name}} broker", table=LABELS)
''',
    'src/alertmux_{{name}}/samples/artifact.json': '''\
{
  "alertId": 102879800008,
  "diaSourceId": 102879800008,
  "brokerVersion": "1.0",
  "classifier": "rf",
  "classifierVersion": "2024-05",
  "publishedMs": 1732147399120,
  "probabilities": {
    "Other": 0.64,
    "Periodic": 0.3,
    "AGN": 0.06,
    "bogus": 0.93
  }
}
''',
    'src/alertmux_{{name}}/samples/classification.json': '''\
{
  "alertId": 102879800007,
  "diaSourceId": 102879800007,
  "diaObjectId": 1028798,
  "brokerVersion": "1.0",
  "classifier": "rf",
  "classifierVersion": "2024-05",
  "publishedMs": 1732147345655,
  "probabilities": {
    "SNIa": 0.71,
    "SNIbc": 0.08,
    "SNII": 0.11,
    "SLSN": 0.02,
    "TDE": 0.01,
    "KN": 0.005,
    "AGN": 0.01,
    "Periodic": 0.005,
    "Other": 0.02,
    "bogus": 0.02
  }
}
''',
    'tests/test_{{name}}.py': '''\
"""Tests of the {{name}} broker plugin: the whole conformance suite, then what is particular to this broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import alertmux_{{name}}
import pytest

from alertmux import DecodeError, Delivery
from alertmux.testing import AlertStream, PluginConformance, RunCli


class TestConformance(PluginConformance):
    """Entry point, specs, normalizers, samples, garbage, secrets, emulator round trip, dead letters, redelivery."""

    plugin = "{{name}}"


def test_decode_maps_every_label_and_keeps_context_apart(run_cli: RunCli, tmp_path: Path) -> None:
    sample = next(s for s in alertmux_{{name}}.samples() if s.name == "classification.json")
    path = tmp_path / sample.name
    path.write_bytes(sample.payload)
    result = run_cli("decode", "--broker", "{{name}}", str(path))
    assert result.code == 0, result.err
    records = {r["native_class"]: r for r in result.json_lines}
    assert records.keys() == set(json.loads(sample.payload)["probabilities"])
    assert records["SNIa"]["class_id"] == 2222
    assert records["Periodic"]["class_id"] == 2320
    assert records["bogus"]["class_id"] is None and records["bogus"]["kind"] == "context"
    assert records["SNIa"]["classifier"]["brokerName"] == "{{Name}}"


@pytest.mark.parametrize("payload", [b'{"alertId": 1, "diaSourceId": 1}', b'{"probabilities": {}}', b"[1, 2]"])
def test_anything_but_a_classification_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="not a classification of the {{name}} broker|probabilities"):
        alertmux_{{name}}.decode(payload, Delivery("test"))


@pytest.mark.kafka
def test_the_emulator_answers_each_alert_once_with_probabilities_summing_to_one(
    alert_stream: Callable[..., AlertStream],
) -> None:
    stream = alert_stream(objects=2)
    (spec,) = alertmux_{{name}}.alertmux_brokers()
    published = stream.run_emulator(spec, seed=1)
    answers = [json.loads(m.payload) for m in published]
    assert sorted(a["alertId"] for a in answers) == sorted(a["alertId"] for a in stream.alerts)
    for a in answers:
        classes = {k: v for k, v in a["probabilities"].items() if k != "bogus"}
        assert set(classes) <= set(alertmux_{{name}}.LABELS)
        assert sum(classes.values()) + a["probabilities"]["bogus"] == pytest.approx(1.0, abs=1e-4)
''',
}
# end of PLUGIN_TEMPLATE
