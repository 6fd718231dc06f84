"""The alertmux pytest plugin: fixtures for testing alertmux and alertmux plugins.

Installed with alertmux (entry point ``pytest11: alertmux``), so a plugin's test suite gets these fixtures without
a ``conftest.py``:

* ``kafka_broker`` (session): an :class:`~alertmux.embedded.EmbeddedKafka` broker, started once per session;
  ``kafka_client_config``: the client settings that make consumers responsive against it.
* ``produce``: ``produce(topic, [payload, ...])`` sends byte payloads to ``kafka_broker`` and flushes.
* ``unique_topic``: a fresh topic name per test.
* ``tmp_store``: a :class:`~alertmux.store.SqliteStore` in ``tmp_path``.
* ``plugin_host``: ``plugin_host(my_plugin, ...)`` builds a host with exactly those plugins (no entry points);
  ``installed_host``: a host with every installed plugin, as the command line sees them.
* ``run_cli``: ``run_cli("decode", path)`` runs the ``alertmux`` command line in-process and returns its exit
  code, stdout and stderr (pass ``host=`` to run it with chosen plugins, e.g. to test a command you register).
* ``http_server``: ``http_server(app)`` serves a WSGI app on a free loopback port, in a thread, recording every
  request (:func:`json_app` turns a ``handler(request) -> (status, body)`` function into one): the wire-faithful
  stand-in for a REST API.
* ``alert_stream``: ``alert_stream(objects=2)`` streams simulated alerts (truth recorded) to a fresh topic of
  ``kafka_broker`` through the harness's own streamer; the result runs an emulator on them
  (:meth:`AlertStream.run_emulator`) and reads back what it published.

The conformance suite (:class:`ConformanceSuite`, the checks in :data:`CHECKS`) runs against any installed broker,
normalizer, alert-source or facility plugin. A plugin runs it in its own tests by subclassing
:class:`PluginConformance`::

    class TestConformance(PluginConformance):
        plugin = "mybroker"        # the entry-point name

and ``alertmux conformance NAME`` runs it from the command line. Recordings made by ``alertmux record`` are read
back with :func:`load_recording` and :func:`load_samples`.

Tests that need Kafka should be marked ``@pytest.mark.kafka`` so they can be deselected with ``-m "not kafka"``.

Imports of alertmux's heavier modules (confluent_kafka, sqlite_utils, pydantic) happen inside the fixtures: pytest
loads this plugin in every session of every project that has alertmux installed.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import pytest

from alertmux.builtin.author_commands import RecordedMessage, capture, load_samples
from alertmux.builtin.author_commands import read_recording as load_recording
from alertmux.specs import SamplePayload

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from alertmux.embedded import EmbeddedKafka
    from alertmux.host import PluginHost
    from alertmux.specs import BrokerSpec, EmulatorContext, EmulatorSpec
    from alertmux.store import Store

__all__ = [
    "CHECKS",
    "AlertStream",
    "Check",
    "CheckResult",
    "CliResult",
    "ConformanceSuite",
    "LocalHttpServer",
    "PluginConformance",
    "Produce",
    "RecordedMessage",
    "RecordedRequest",
    "RunCli",
    "SamplePayload",
    "alert_stream",
    "http_server",
    "installed_host",
    "json_app",
    "kafka_broker",
    "kafka_client_config",
    "load_recording",
    "load_samples",
    "plugin_host",
    "produce",
    "run_cli",
    "tmp_store",
    "unique_topic",
]


class Produce(Protocol):
    """The ``produce`` fixture's signature."""

    def __call__(
        self,
        topic: str,
        payloads: Sequence[bytes],
        *,
        key: bytes | None = None,
        partition: int | None = 0,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> list[tuple[int, int]]:
        """Send ``payloads`` to ``topic`` in order and flush.

        Args:
            topic: the topic (auto-created by the embedded broker on first use).
            payloads: the message values.
            key: one key for every message.
            partition: the partition to write to; 0 by default, so that the order of ``payloads`` is the order a
                consumer reads them in. None lets the partitioner choose.
            headers: Kafka headers for every message (a recording's, to replay it as it was received).

        Returns:
            (partition, offset) of each payload, in the order given.
        """
        ...


@dataclass(frozen=True, slots=True)
class CliResult:
    """What an ``alertmux`` command did."""

    code: int
    out: str
    err: str

    @property
    def json_lines(self) -> list[Any]:
        """Stdout parsed as JSON lines (raises if anything else reached stdout)."""
        import json

        return [json.loads(line) for line in self.out.splitlines()]

    @property
    def err_lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.err.splitlines() if line.strip()]


class RunCli(Protocol):
    """The ``run_cli`` fixture's signature."""

    def __call__(self, *args: str, host: PluginHost | None = None) -> CliResult:
        """Run ``alertmux ARGS`` in-process; ``host`` defaults to the installed plugins."""
        ...


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``kafka`` marker, so ``--strict-markers`` suites can use it."""
    config.addinivalue_line("markers", "kafka: needs the local Kafka-protocol broker (alertmux.embedded)")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedKafka]:
    """An embedded Kafka-protocol broker for the whole session; ``.bootstrap`` is its address.

    It is memory-only and shared: use :func:`unique_topic` (and unique consumer groups) so tests do not see each
    other's messages.
    """
    from alertmux.embedded import EmbeddedKafka

    with EmbeddedKafka() as kafka:
        yield kafka


@pytest.fixture
def kafka_client_config() -> dict[str, str]:
    """The librdkafka settings to merge into consumers talking to ``kafka_broker`` (a fresh dict per test)."""
    from alertmux.embedded import local_client_config

    return local_client_config()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses: the test's name (sanitized) and a random suffix."""
    # Kafka topic names allow [a-zA-Z0-9._-] only, up to 249 characters.
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def produce(kafka_broker: EmbeddedKafka) -> Iterator[Produce]:
    """A function sending byte payloads to a topic on ``kafka_broker``, flushed before it returns."""
    from confluent_kafka import Producer

    # Through logging, not librdkafka's own stderr lines (it logs a disconnect when the broker closes idle links).
    producer = Producer(
        {"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 5, "logger": logging.getLogger(__name__)}
    )

    def send(
        topic: str,
        payloads: Sequence[bytes],
        *,
        key: bytes | None = None,
        partition: int | None = 0,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> list[tuple[int, int]]:
        delivered: dict[int, tuple[int, int]] = {}
        errors: list[str] = []

        def report(index: int) -> Callable[[Any, Any], None]:
            def on_delivery(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(f"message {index}: {err}")
                else:
                    delivered[index] = (msg.partition(), msg.offset())

            return on_delivery

        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        if headers:
            extra["headers"] = list(headers)
        for index, payload in enumerate(payloads):
            producer.produce(topic, payload, key=key, on_delivery=report(index), **extra)
            producer.poll(0)
        left = producer.flush(30)
        if left or errors:
            raise AssertionError(f"produce to {topic}: {left} message(s) not flushed; {'; '.join(errors)}")
        return [delivered[i] for i in range(len(payloads))]

    yield send
    producer.flush(10)


@pytest.fixture
def tmp_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store in ``tmp_path`` (``alertmux.db``), closed after the test."""
    from alertmux.store import open_store

    store = open_store(tmp_path / "alertmux.db")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def plugin_host() -> Callable[..., PluginHost]:
    """A factory: ``plugin_host(plugin, ...)`` is a host with exactly these plugins and no installed ones.

    Pass modules, classes' instances or any object with ``@hookimpl`` functions. To test a plugin together with the
    built-in ELAsTiCC normalizers, pass ``alertmux.builtin.elasticc`` as well.
    """
    from alertmux.host import PluginHost

    def make(*plugins: Any) -> PluginHost:
        return PluginHost(load_entrypoints=False, plugins=plugins)

    return make


@pytest.fixture
def installed_host() -> PluginHost:
    """A host with every installed plugin, loaded through the ``alertmux`` entry points as the CLI loads them."""
    from alertmux.host import PluginHost

    return PluginHost()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run the ``alertmux`` command line in-process, as the console script does, capturing its output."""
    from alertmux.cli import main

    def invoke(*args: str, host: PluginHost | None = None) -> CliResult:
        capsys.readouterr()  # drop what the test printed before
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # the CLI replaces the root logger's handlers: restore them
        try:
            main(list(args), host=host)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke


# -- a local HTTP server ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the local HTTP server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Header names in their HTTP form (``Authorization``, ``Content-Type``)."""
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(slots=True)
class LocalHttpServer:
    """A WSGI app served on ``127.0.0.1`` by a real HTTP server in a thread."""

    url: str
    """``http://127.0.0.1:PORT`` (no trailing slash)."""
    requests: list[RecordedRequest] = field(default_factory=list)
    _server: Any = None
    _thread: threading.Thread | None = None

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)


def json_app(handler: Callable[[RecordedRequest], tuple[int, Any] | tuple[int, Any, Mapping[str, str]]]) -> Any:
    """A WSGI app from ``handler(request) -> (status, body[, headers])``.

    ``body`` may be bytes, text, or anything JSON-serializable (sent as ``application/json``).
    """
    from http import HTTPStatus

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        answer = handler(_request_of(environ))
        status, body = answer[0], answer[1]
        headers = dict(answer[2]) if len(answer) > 2 else {}  # type: ignore[misc]
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(data))
        start_response(f"{status} {HTTPStatus(status).phrase}", list(headers.items()))
        return [data]

    return app


def _request_of(environ: dict[str, Any]) -> RecordedRequest:
    body = environ["alertmux.body"] if "alertmux.body" in environ else environ["wsgi.input"].read()
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = environ[key]
    return RecordedRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                           headers, body)


@pytest.fixture
def http_server() -> Iterator[Callable[[WSGIApplication], LocalHttpServer]]:
    """A factory: ``http_server(app)`` serves a WSGI app on a free loopback port until the test ends.

    The server is real (``wsgiref`` over a threading ``http.server``), so the client under test goes through
    sockets, HTTP parsing, timeouts and retries exactly as against the real API. Every request is recorded in
    ``server.requests``. No log line is printed (a request line could carry a token).
    """
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

    servers: list[LocalHttpServer] = []

    def serve(app: WSGIApplication) -> LocalHttpServer:
        def recording_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["alertmux.body"] = body
            local.requests.append(_request_of(environ))
            return app(environ, start_response)  # type: ignore[arg-type]

        server = make_server("127.0.0.1", 0, recording_app, server_class=Server, handler_class=QuietHandler)
        local = LocalHttpServer(url=f"http://127.0.0.1:{server.server_port}", _server=server)
        local._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                         name="alertmux-http-server", daemon=True)
        local._thread.start()
        servers.append(local)
        return local

    yield serve
    for local in servers:
        local.close()


# -- the emulated alert stream ------------------------------------------------------------------------------------
@dataclass(slots=True)
class AlertStream:
    """Simulated alerts sent to a topic of the local broker, their truth in a store, ready for an emulator."""

    bootstrap: str
    topic: str
    run_id: str
    db: Path
    """The store holding the run's truth and sent times (emulators look the truth up there)."""
    alerts: list[dict[str, Any]]
    """The ``elasticc.v0_9_1`` alert records sent, in the order sent."""
    sent: int
    client_config: dict[str, str]

    def emulator_context(self, **options: Any) -> EmulatorContext:
        """The context the harness would give an emulator for this stream (already complete)."""
        from alertmux.specs import EmulatorContext
        from alertmux.store import open_store

        return EmulatorContext(
            bootstrap=self.bootstrap, alert_topics=(self.topic,), store=open_store(self.db), run_id=self.run_id,
            client_config=self.client_config, stop=lambda: True, expected_alerts=lambda: self.sent,
            options=options,
        )

    def run_emulator(self, emulator: BrokerSpec | EmulatorSpec, *, timeout: float = 60.0,
                     **options: Any) -> list[RecordedMessage]:
        """Run an emulator on the stream until it returns, then read back everything it published.

        Raises:
            AssertionError: it did not return within ``timeout`` seconds, or raised.
        """
        spec = getattr(emulator, "emulator", emulator)
        assert spec is not None, "this broker has no emulator"
        ctx = self.emulator_context(**options)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                spec.run(ctx)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
                errors.append(exc)

        worker = threading.Thread(target=run, name="alertmux-emulator", daemon=True)
        worker.start()
        worker.join(timeout)
        assert not worker.is_alive(), f"the emulator did not return within {timeout:g} s of the stream's end"
        ctx.store.close()
        if errors:
            raise errors[0]
        topics = tuple(spec.output_topics(self.run_id))
        if not topics:  # an emulator that pushes over HTTP publishes nothing on Kafka
            return []
        return list(capture(self.bootstrap, topics=topics, client_config=self.client_config, to_end=True))


@pytest.fixture
def alert_stream(kafka_broker: EmbeddedKafka, tmp_path: Path, unique_topic: str) -> Callable[..., AlertStream]:
    """A factory: ``alert_stream(objects=2, seed=0, source="simulated")`` streams alerts to a fresh topic.

    It goes through the harness's own functions (``record_source``, ``stream_alerts``), so the topic holds exactly
    what ``alertmux demo`` would send, and the store at ``AlertStream.db`` holds the truth an emulator looks up.
    """
    from alertmux.embedded import local_client_config
    from alertmux.harness import ensure_topics, record_source, stream_alerts
    from alertmux.host import PluginHost
    from alertmux.store import open_store

    def make(objects: int = 2, seed: int = 0, source: str = "simulated", class_mix: str = "uniform") -> AlertStream:
        client_config = local_client_config()
        db = tmp_path / f"stream-{uuid.uuid4().hex[:6]}.db"
        store = open_store(db)
        try:
            run_id = store.start_run("test-stream", {"objects": objects, "seed": seed, "source": source})
            spec = PluginHost().alert_source(source)
            alerts = record_source(store, run_id, spec.open(objects=objects, seed=seed, class_mix=class_mix))
            topic = f"{unique_topic}-alerts"
            ensure_topics(kafka_broker.bootstrap, [topic], client_config)
            stats = stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=topic,
                                  client_config=client_config)
        finally:
            store.close()
        assert stats.failed == 0, f"{stats.failed} alerts were not acknowledged by the local broker"
        return AlertStream(kafka_broker.bootstrap, topic, run_id, db, alerts, stats.sent, client_config)

    return make


# -- the conformance suite ----------------------------------------------------------------------------------------
Status = Literal["pass", "fail", "skip"]
GARBAGE: tuple[tuple[str, bytes], ...] = (
    ("empty", b""),
    ("binary", b"\x00\x01\x02\x03\xff\xfe\xfd"),
    ("text", b"this is not a broker message \xff\xfe"),
    ("unrelated JSON", b'{"unexpected": "json", "n": 1}'),
)
"""Payloads every decoder must reject (the truncated samples are added per broker)."""
_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_EPOCH_MS = (946_684_800_000, 4_102_444_800_000)  # 2000-01-01 .. 2100-01-01: outside it is seconds or microseconds
_TIMESTAMPS = ("alert_published_ms", "broker_ingest_ms", "broker_publish_ms")
_CANARY = "alertmux-canary-7d1f0c"
"""A stand-in secret the checks configure and then look for where no secret may appear."""


@dataclass(frozen=True, slots=True)
class Check:
    """One check of the conformance suite."""

    name: str
    description: str
    needs_kafka: bool = False


CHECKS: tuple[Check, ...] = (
    Check("entry_point", "loads through the `alertmux` entry-point group, from a distribution that declares the core "
          "versions it supports"),
    Check("specs", "spec objects are well formed: names, descriptions, transports, callables, emulator topics, "
          "commands with help"),
    Check("normalizers", "every native label in a table is mapped onto an ELAsTiCC2 class or explicitly context, "
          "with its source"),
    Check("samples", "every sample payload decodes into well-formed messages whose labels the normalizers know"),
    Check("garbage", "every decoder raises on garbage and truncated payloads instead of returning messages or nothing"),
    Check("secrets", "config secrets are SecretStr fields named so that config dumps redact them; they reach no repr, "
          "dump, error text or spec"),
    Check("alert_sources", "alert sources yield valid elasticc.v0_9_1 alerts, in time order, with ELAsTiCC2 truth"),
    Check("facility_lifecycle", "against the facility's emulator: validate (a good and a bad request), submit, lookup "
          "by name, status, cancel, data products; no secret in payloads, errors or logs"),
    Check("emulator_round_trip", "the emulator answers every alert of a simulated stream through Kafka and the core "
          "loop stores every answer, normalized", needs_kafka=True),
    Check("dead_letters", "garbage on a topic lands in the dead-letter table with its raw bytes; the stream goes on",
          needs_kafka=True),
    Check("redelivery", "payloads delivered twice through Kafka are stored once", needs_kafka=True),
)
"""The checks, in the order they run."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check for one subject (a broker, a normalizer, the plugin...)."""

    check: str
    subject: str
    status: Status
    detail: str = ""
    applies: bool = True
    """False when the plugin provides nothing the check is about (a source-only plugin has no decoder to test)."""


class _Failed(Exception):
    """A check failed for a subject; the message is the detail."""


class _Skipped(Exception):
    """A check does not apply to a subject; the message says why."""


class ConformanceSuite:
    """The conformance checks for one installed plugin, each runnable on its own (results are cached).

    Every check reports per subject: ``plugin NAME``, ``broker NAME``, ``normalizer SCHEME``, ``source NAME``,
    ``facility NAME``. The Kafka checks need :meth:`use_kafka` first (a local broker: they create topics).
    """

    def __init__(
        self,
        plugin: str | object,
        *,
        workdir: Path,
        host: PluginHost | None = None,
        objects: int = 2,
        timeout: float = 120.0,
        drain_timeout: float = 15.0,
    ) -> None:
        """Prepare the suite.

        Args:
            plugin: the plugin's entry-point name, or the plugin object (a module) registered in ``host``.
            workdir: a scratch directory for the checks' databases.
            host: the plugin host; default every installed plugin, as the command line sees them.
            objects: simulated objects streamed to each emulator.
            timeout: seconds an emulator round trip may take before the check fails.
            drain_timeout: seconds the round trip waits for answers once they stop coming.
        """
        from alertmux.host import PluginHost

        self.host = host or PluginHost()
        self.plugin = plugin if isinstance(plugin, str) else (self.host.pm.get_name(plugin) or "")
        self.workdir = workdir
        self.objects = objects
        self.timeout = timeout
        self.drain_timeout = drain_timeout
        self.bootstrap: str | None = None
        self.client_config: dict[str, Any] = {}
        self.info = next((i for i in self.host.plugins() if i.name == self.plugin), None)
        provides = self.info.provides if self.info else {}
        self.brokers = {n: self.host.broker(n) for n in provides.get("brokers", ())}
        normalizers = self.host.normalizers()
        self.normalizers = {n: normalizers[n] for n in provides.get("normalizers", ())}
        self.sources = {n: self.host.alert_source(n) for n in provides.get("alert_sources", ())}
        self.facilities = {n: self.host.facility(n) for n in provides.get("facilities", ())}
        self._extra_samples: dict[str, list[SamplePayload]] = {}
        self._results: dict[str, list[CheckResult]] = {}
        self._good: dict[str, list[bytes]] = {}
        self._emulated: dict[str, list[bytes]] = {}
        self._kafka_run: dict[str, tuple[Any, Any, int, int]] = {}

    def use_kafka(self, bootstrap: str, client_config: Mapping[str, Any] | None = None) -> None:
        """Run the Kafka checks against this (local) broker."""
        self.bootstrap = bootstrap
        self.client_config = dict(client_config or {})

    def add_samples(self, broker: str, samples: Iterable[SamplePayload]) -> None:
        """Decode these payloads too, as the broker's (samples that may not ship with the plugin, e.g. GPL ones)."""
        if broker not in self.brokers:
            raise ValueError(f"plugin {self.plugin} provides no broker {broker!r} (it has: {', '.join(self.brokers)})")
        self._extra_samples.setdefault(broker, []).extend(samples)
        self._results.pop("samples", None)

    def run(self, checks: Iterable[str] | None = None) -> list[CheckResult]:
        """Run the named checks (all by default) and return every result."""
        names = list(checks) if checks is not None else [c.name for c in CHECKS]
        return [r for name in names for r in self.check(name)]

    def check(self, name: str) -> list[CheckResult]:
        """Run one check (once: later calls return the same results)."""
        if name not in self._results:
            check = next((c for c in CHECKS if c.name == name), None)
            if check is None:
                raise ValueError(f"unknown check {name!r} (known: {', '.join(c.name for c in CHECKS)})")
            if check.needs_kafka and self.bootstrap is None:
                self._results[name] = [CheckResult(name, f"plugin {self.plugin}", "skip", "no Kafka broker given")]
            else:
                self._results[name] = list(getattr(self, f"_check_{name}")())
        return self._results[name]

    # -- helpers ----------------------------------------------------------------------------------------------
    def _each(self, check: str, subjects: Mapping[str, Any], kind: str,
              test: Callable[[str, Any], str | None]) -> Iterator[CheckResult]:
        for name, spec in subjects.items():
            try:
                detail = test(name, spec) or ""
            except _Failed as exc:
                yield CheckResult(check, f"{kind} {name}", "fail", str(exc))
            except _Skipped as exc:
                yield CheckResult(check, f"{kind} {name}", "skip", str(exc))
            except Exception as exc:  # noqa: BLE001 - a crash in the plugin is a failed check, not a crashed suite
                yield CheckResult(check, f"{kind} {name}", "fail", f"raised {type(exc).__name__}: {_line(exc)}")
            else:
                yield CheckResult(check, f"{kind} {name}", "pass", detail)

    def _none(self, check: str, what: str) -> list[CheckResult]:
        return [CheckResult(check, f"plugin {self.plugin}", "skip", f"the plugin provides no {what}", applies=False)]

    def _samples_of(self, broker: str, spec: BrokerSpec) -> list[SamplePayload]:
        declared = list(spec.samples()) if spec.samples is not None else []
        return declared + self._extra_samples.get(broker, [])

    @staticmethod
    def _decoder(spec: BrokerSpec, name: str | None) -> Any:
        if name is None:
            return None
        decoders = dict(spec.decoders) | _decoders_of(spec)
        if name not in decoders:
            raise _Failed(f"sample names decoder {name!r}, which the broker does not have "
                          f"(decoders: {', '.join(decoders) or 'none'})")
        return decoders[name]

    # -- checks -----------------------------------------------------------------------------------------------
    def _check_entry_point(self) -> Iterator[CheckResult]:
        from importlib.metadata import entry_points

        from packaging.requirements import InvalidRequirement, Requirement

        subject = f"plugin {self.plugin}"
        found = [ep for ep in entry_points(group="alertmux") if ep.name == self.plugin]
        problems = [p.error for p in self.host.problems if p.plugin == self.plugin]
        if not found:
            yield CheckResult("entry_point", subject, "fail", f"no entry point named {self.plugin!r} in the `alertmux` "
                              "group: declare it under [project.entry-points.alertmux] and reinstall")
            return
        if problems:
            yield CheckResult("entry_point", subject, "fail", "; ".join(problems))
            return
        if self.info is None:
            yield CheckResult("entry_point", subject, "fail", "the entry point exists but the host did not load it")
            return
        dist = found[0].dist
        if dist is None or not dist.version:
            yield CheckResult("entry_point", subject, "fail", "the entry point belongs to no versioned distribution")
            return
        if dist.name == "alertmux":
            yield CheckResult("entry_point", subject, "pass", f"built into alertmux {dist.version}")
            return
        requirements = []
        for text in dist.requires or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.name.lower() == "alertmux" and requirement.marker is None:
                requirements.append(requirement)
        if not requirements:
            yield CheckResult("entry_point", subject, "fail", f"{dist.name} does not depend on alertmux: declare the "
                              "core versions it supports, e.g. alertmux>=0.1,<0.2")
            return
        specifier = requirements[0].specifier
        operators = {s.operator for s in specifier}
        if not operators & {">=", ">", "~=", "=="} or not operators & {"<", "<=", "~=", "=="}:
            yield CheckResult("entry_point", subject, "fail", f"alertmux{specifier} must bound the core version both "
                              "ways (e.g. alertmux>=0.1,<0.2): a new minor release of the core may change hooks")
            return
        from alertmux import __version__

        if not specifier.contains(__version__, prereleases=True):
            yield CheckResult("entry_point", subject, "fail",
                              f"requires alertmux{specifier} but alertmux {__version__} is installed")
            return
        yield CheckResult("entry_point", subject, "pass", f"{dist.name} {dist.version}, requires alertmux{specifier}")

    def _check_specs(self) -> Iterator[CheckResult]:
        if self.info is None:
            yield CheckResult("specs", f"plugin {self.plugin}", "fail", "not loaded (see entry_point)")
            return
        yield from self._each("specs", self.brokers, "broker", self._broker_spec_problems)
        yield from self._each("specs", self.normalizers, "normalizer", self._normalizer_spec_problems)
        yield from self._each("specs", self.sources, "source", self._source_spec_problems)
        yield from self._each("specs", self.facilities, "facility", self._facility_spec_problems)
        commands = self._commands()
        if commands is not None:
            yield from self._each("specs", {self.plugin: commands}, "commands of", self._command_problems)
        if not (self.brokers or self.normalizers or self.sources or self.facilities or commands is not None):
            yield CheckResult("specs", f"plugin {self.plugin}", "fail", "provides nothing: no spec and no command")

    @staticmethod
    def _broker_spec_problems(name: str, spec: Any) -> str:
        from pydantic import BaseModel

        from alertmux.specs import BrokerSpec, EmulatorSpec, KafkaTransport

        problems = _common_problems(name, spec, BrokerSpec)
        rest, push = getattr(spec, "rest", None), getattr(spec, "push", None)
        if spec.kafka is None and not spec.decoders and rest is None and push is None:
            problems.append("no transport: give kafka=, rest=, push= or decoders=")
        for what, transport in (("rest", rest), ("push", push)):
            if transport is not None and not callable(getattr(transport, "decode", None)):
                problems.append(f"{what}.decode is not callable")
        if rest is not None and not callable(getattr(rest, "poll", None)):
            problems.append("rest.poll is not callable")
        if spec.kafka is not None:
            if not isinstance(spec.kafka, KafkaTransport):
                problems.append(f"kafka is a {type(spec.kafka).__name__}, not a KafkaTransport")
            else:
                if not callable(spec.kafka.decode):
                    problems.append("kafka.decode is not callable")
                if not isinstance(spec.kafka.topics, tuple) or not all(isinstance(t, str) for t in spec.kafka.topics):
                    problems.append(f"kafka.topics must be a tuple of str, not {spec.kafka.topics!r}")
                elif any(not _TOPIC.fullmatch(t) for t in spec.kafka.topics):
                    problems.append(f"kafka.topics has an invalid Kafka topic name: {spec.kafka.topics}")
                if spec.kafka.topic_pattern is not None:
                    try:
                        re.compile(spec.kafka.topic_pattern)
                    except re.error as exc:
                        problems.append(f"kafka.topic_pattern is not a regex: {exc}")
        for key, decoder in dict(spec.decoders).items():
            if not isinstance(key, str) or not callable(decoder):
                problems.append(f"decoders[{key!r}] must be a callable under a str name")
        if spec.config_model is not None and not (isinstance(spec.config_model, type)
                                                   and issubclass(spec.config_model, BaseModel)):
            problems.append("config_model must be a pydantic BaseModel subclass")
        if spec.samples is not None and not callable(spec.samples):
            problems.append("samples must be a callable returning SamplePayloads")
        if spec.homepage and not spec.homepage.startswith(("https://", "http://")):
            problems.append(f"homepage {spec.homepage!r} is not a URL")
        emulator = spec.emulator
        if emulator is not None:
            if not isinstance(emulator, EmulatorSpec):
                problems.append(f"emulator is a {type(emulator).__name__}, not an EmulatorSpec")
            else:
                if not callable(emulator.run):
                    problems.append("emulator.run is not callable")
                if not isinstance(emulator.answers_per_alert, int) or emulator.answers_per_alert < 1:
                    problems.append(f"emulator.answers_per_alert must be an int >= 1: {emulator.answers_per_alert!r}")
                first, second = tuple(emulator.output_topics("conformance-a")), tuple(emulator.output_topics("b"))
                if not first and push is None:
                    problems.append("emulator.output_topics is empty and the broker has no push transport: where "
                                    "do its answers go?")
                elif not all(isinstance(t, str) and _TOPIC.fullmatch(t) for t in first):
                    problems.append(f"emulator.output_topics gave {first!r}: it must be valid Kafka topic names")
                elif first and first == second:
                    problems.append("emulator.output_topics ignores the run id: runs would read each other's answers")
        if problems:
            raise _Failed(_joined(problems))
        return f"decoders: {', '.join(_decoders_of(spec))}; emulator: {'yes' if emulator else 'no'}"

    @staticmethod
    def _normalizer_spec_problems(name: str, spec: Any) -> str:
        from alertmux.specs import NormalizerSpec

        problems = _common_problems(name, spec, NormalizerSpec, key="scheme")
        if spec.table is not None and not isinstance(spec.table, Mapping):
            problems.append("table must be a mapping of native label -> NormalizedLabel")
        if spec.lookup is not None and not callable(spec.lookup):
            problems.append("lookup is not callable")
        if problems:
            raise _Failed(_joined(problems))
        return f"{len(spec.table)} labels" if spec.table is not None else "lookup function"

    @staticmethod
    def _source_spec_problems(name: str, spec: Any) -> str:
        from alertmux.specs import AlertSourceSpec

        problems = _common_problems(name, spec, AlertSourceSpec)
        if not callable(spec.open):
            problems.append("open is not callable")
        if problems:
            raise _Failed(_joined(problems))
        return ""

    @staticmethod
    def _facility_spec_problems(name: str, spec: Any) -> str:
        from pydantic import BaseModel

        from alertmux.specs import FacilitySpec

        problems = _common_problems(name, spec, FacilitySpec)
        for verb in ("validate", "submit", "status"):
            if not callable(getattr(spec, verb)):
                problems.append(f"{verb} is not callable")
        for verb in ("cancel", "data_products"):
            if getattr(spec, verb) is not None and not callable(getattr(spec, verb)):
                problems.append(f"{verb} must be callable or None")
        if spec.config_model is not None and not (isinstance(spec.config_model, type)
                                                   and issubclass(spec.config_model, BaseModel)):
            problems.append("config_model must be a pydantic BaseModel subclass")
        if problems:
            raise _Failed(_joined(problems))
        return f"cancel: {'yes' if spec.cancel else 'no'}; data products: {'yes' if spec.data_products else 'no'}"

    def _commands(self) -> Any:
        import click

        impls = [i for i in self.host.pm.hook.alertmux_register_commands.get_hookimpls()
                 if i.plugin_name == self.plugin]
        if not impls:
            return None
        group = click.Group("alertmux")
        for impl in impls:
            impl.function(cli=group)
        return group

    @staticmethod
    def _command_problems(_name: str, group: Any) -> str:
        if not group.commands:
            raise _Failed("implements alertmux_register_commands but registers no command")
        undocumented = [n for n, c in group.commands.items() if not (c.help or "").strip()]
        if undocumented:
            raise _Failed(f"command(s) without help text (users read it in --help and docs/cli.md): "
                          f"{', '.join(undocumented)}")
        return ", ".join(sorted(group.commands))

    def _check_normalizers(self) -> Iterator[CheckResult]:
        if not self.normalizers:
            yield from self._none("normalizers", "normalizer")
            return
        yield from self._each("normalizers", self.normalizers, "normalizer", self._normalizer_rows)

    @staticmethod
    def _normalizer_rows(_scheme: str, spec: Any) -> str:
        from alertmux.specs import NormalizedLabel
        from alertmux.taxonomy import ELASTICC2, taxonomy

        if spec.table is None:
            raise _Skipped("a lookup function: only the labels of samples and emulator output are checked")
        tax = taxonomy(ELASTICC2)
        problems = []
        for label, row in spec.table.items():
            if not isinstance(label, int | str) or isinstance(label, bool):
                problems.append(f"{label!r}: labels must be int or str")
            elif not isinstance(row, NormalizedLabel):
                problems.append(f"{label!r}: maps to a {type(row).__name__}, not a NormalizedLabel")
            elif row.class_id is not None and row.class_id not in tax:
                problems.append(f"{label!r}: {row.class_id} is not an ELAsTiCC2 class id")
            elif row.kind not in ("probability", "score", "context"):
                problems.append(f"{label!r}: kind {row.kind!r} is not probability, score or context")
            elif row.class_id is None and row.kind != "context":
                problems.append(f"{label!r}: no class and kind {row.kind!r}: a label outside the taxonomy must be "
                                "marked kind='context' (or mapped onto a parent class)")
            elif not row.source.strip():
                problems.append(f"{label!r}: no source (say which document or code path makes this row right)")
        if problems:
            raise _Failed(_joined(problems))
        mapped = sum(1 for row in spec.table.values() if row.class_id is not None)
        return f"{mapped} labels mapped, {len(spec.table) - mapped} context"

    def _check_samples(self) -> Iterator[CheckResult]:
        if not self.brokers:
            yield from self._none("samples", "broker")
            return
        yield from self._each("samples", self.brokers, "broker", self._decode_samples)

    def _decode_samples(self, broker: str, spec: BrokerSpec) -> str:
        from alertmux.ingest import Ingestor
        from alertmux.specs import Delivery
        from alertmux.store import open_store

        samples = self._samples_of(broker, spec)
        if not samples:
            raise _Skipped("declares no samples (BrokerSpec.samples) and none were given: record some with "
                           "`alertmux record` and ship them")
        store = open_store(self.workdir / f"samples-{broker}.db")
        try:
            ingestor = Ingestor(self.host, broker, store)
            problems: list[str] = []
            good: list[bytes] = []
            count = 0
            for sample in samples:
                delivery = Delivery(f"sample:{sample.name}", key=sample.key, headers=sample.headers)
                try:
                    messages = ingestor.decode(sample.payload, delivery, self._decoder(spec, sample.decoder))
                except _Failed as exc:
                    problems.append(f"{sample.name}: {exc}")
                    continue
                except Exception as exc:  # noqa: BLE001 - the decoder's error is the finding
                    problems.append(f"{sample.name}: does not decode: {type(exc).__name__}: {_line(exc)}")
                    continue
                if not messages:
                    problems.append(f"{sample.name}: decoded into no message")
                    continue
                for m in messages:
                    problems += [f"{sample.name}: {p}" for p in _message_problems(m, self.host.normalizers())]
                store.write_batch(ingestor.rows(messages, delivery))
                count += len(messages)
                if _decodes_on_kafka(ingestor, sample.payload, delivery):
                    good.append(sample.payload)  # replayed through the Kafka loop by dead_letters and redelivery
            unknown = sorted(ingestor.unknown_labels.items(), key=str)
            if unknown:
                listed = ", ".join(f"{scheme}:{label!r}" for (scheme, label), _ in unknown[:10])
                problems.append(f"labels no normalizer knows (stored with class_id null): {listed}; map them, or "
                                "mark them kind='context'")
            self._good[broker] = good
            if problems:
                raise _Failed(_joined(problems))
            return f"{len(samples)} samples, {count} messages"
        finally:
            store.close()

    def _check_garbage(self) -> Iterator[CheckResult]:
        if not self.brokers:
            yield from self._none("garbage", "broker")
            return
        yield from self._each("garbage", self.brokers, "broker", self._reject_garbage)

    def _garbage_for(self, broker: str, spec: BrokerSpec) -> list[tuple[str, bytes]]:
        truncated = [(f"{s.name} cut in half", s.payload[: len(s.payload) // 2])
                     for s in self._samples_of(broker, spec)[:3] if len(s.payload) > 1]
        return list(GARBAGE) + truncated

    def _reject_garbage(self, broker: str, spec: BrokerSpec) -> str:
        from alertmux.specs import Delivery

        decoders = _decoders_of(spec)
        garbage = self._garbage_for(broker, spec)
        problems = []
        for name, decoder in decoders.items():
            for what, payload in garbage:
                try:
                    messages = list(decoder(payload, Delivery("conformance:garbage")))
                except Exception:  # noqa: BLE001, S112 - raising is what the check wants
                    continue
                if messages:
                    problems.append(f"decoder {name} turned {what} ({payload[:16]!r}) into {len(messages)} message(s)")
                else:
                    problems.append(f"decoder {name} returned nothing for {what} ({payload[:16]!r}) and raised "
                                    "nothing: that payload would vanish instead of reaching the dead letters")
        if problems:
            raise _Failed(_joined(problems))
        return f"{len(decoders)} decoder(s) x {len(garbage)} payloads rejected"

    def _check_secrets(self) -> Iterator[CheckResult]:
        models = {f"broker {n}": s.config_model for n, s in self.brokers.items()}
        models |= {f"facility {n}": s.config_model for n, s in self.facilities.items()}
        if not models:
            yield from self._none("secrets", "broker or facility")
            return
        for subject, model in models.items():
            kind, name = subject.split(" ", 1)
            try:
                detail = self._secret_problems(kind, name, model)
            except _Failed as exc:
                yield CheckResult("secrets", subject, "fail", str(exc))
            except _Skipped as exc:
                yield CheckResult("secrets", subject, "skip", str(exc))
            else:
                yield CheckResult("secrets", subject, "pass", detail)

    def _secret_problems(self, kind: str, name: str, model: Any) -> str:
        from pydantic import ValidationError

        from alertmux.config import is_secret, load_config

        if model is None:
            raise _Skipped("no config_model: nothing to check")
        fields = model.model_fields
        named = {f for f in fields if is_secret(f)}
        typed = {f for f, info in fields.items() if _is_secret_type(info.annotation)}
        problems = [f"field {f!r} looks like a secret but is not a SecretStr: repr() and dumps would show it"
                    for f in sorted(named - typed)]
        problems += [f"SecretStr field {f!r} has a name `alertmux config show` does not recognize as secret (use "
                     "password, secret, token, credential or api_key in it)" for f in sorted(typed - named)]
        secrets = named | typed
        data, missing = _sample_config(model, secrets)
        if missing:
            raise _Skipped(f"cannot build a valid config to test (required fields {', '.join(missing)}); "
                           + "; ".join(problems))
        try:
            instance = model.model_validate(data)
        except ValidationError as exc:
            raise _Skipped(f"cannot build a valid config to test: {exc.errors(include_input=False)}") from None
        shown = {"repr": repr(instance), "str": str(instance), "model_dump_json": instance.model_dump_json(),
                 "model_dump": str(instance.model_dump())}
        problems += [f"the secret appears in {where}" for where, text in shown.items() if _CANARY in text]
        others = [f for f in fields if f not in secrets]
        if secrets and others:
            try:
                model.model_validate(data | {others[0]: object()})
            except ValidationError as exc:
                if _CANARY in str(exc):
                    problems.append("the secret appears in the text of a validation error")
            except Exception as exc:  # noqa: BLE001 - a validator raising something else is fine if it hides it
                if _CANARY in str(exc):
                    problems.append("the secret appears in the text of an error")
        table = "brokers" if kind == "broker" else "facilities"
        env = {f"ALERTMUX__{table.upper()}__{name.upper()}__{f.upper()}": _CANARY for f in secrets}
        dumped = json.dumps(load_config(Path(os.devnull), environ=env).redacted())
        if _CANARY in dumped:
            problems.append("`alertmux config show` prints the secret")
        problems += self._specs_leak(env)
        if problems:
            raise _Failed(_joined(problems))
        return f"secret fields: {', '.join(sorted(secrets))}" if secrets else "no secret fields"

    def _specs_leak(self, env: Mapping[str, str]) -> list[str]:
        """Whether the plugin copies configured secrets into its specs (which ``alertmux plugins`` may show)."""
        from dataclasses import asdict

        from alertmux.host import PluginHost

        plugin = self.host.pm.get_plugin(self.plugin)
        if not env or plugin is None:
            return []
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:  # the registration hooks run again, now with the secrets configured
            host = PluginHost(load_entrypoints=False, plugins=[plugin])
            texts = [repr(s) for s in (*host.brokers().values(), *host.facilities().values())]
            texts.append(json.dumps([asdict(i) for i in host.plugins()], default=str))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if any(_CANARY in text for text in texts):
            return ["a configured secret appears in the plugin's specs (and so in `alertmux plugins`)"]
        return []

    def _check_alert_sources(self) -> Iterator[CheckResult]:
        if not self.sources:
            yield from self._none("alert_sources", "alert source")
            return
        yield from self._each("alert_sources", self.sources, "source", self._source_alerts)

    @staticmethod
    def _source_alerts(_name: str, spec: Any) -> str:
        from itertools import islice

        from alertmux.errors import AlertmuxError
        from alertmux.serde import load_schema, schemaless_encode
        from alertmux.specs import SourceObject
        from alertmux.taxonomy import ELASTICC2, taxonomy

        try:
            objects = list(islice(spec.open(objects=2, seed=0), 2))
        except (TypeError, AlertmuxError) as exc:
            raise _Skipped(f"needs options beyond objects and seed: {_line(exc)}") from None
        if not objects:
            raise _Failed("yielded no object for objects=2")
        schema = load_schema("elasticc.v0_9_1.alert")
        problems, alerts = [], 0
        for obj in objects:
            if not isinstance(obj, SourceObject):
                problems.append(f"yielded a {type(obj).__name__}, not a SourceObject")
                continue
            times = []
            for alert in obj.alerts:
                alerts += 1
                try:
                    schemaless_encode(alert, schema)
                except Exception as exc:  # noqa: BLE001 - fastavro's validation error is the finding
                    problems.append(f"alert {alert.get('alertId')!r} is not an elasticc.v0_9_1 alert: {_line(exc)}")
                    break
                times.append(alert["diaSource"]["midPointTai"])
            if times != sorted(times):
                problems.append("an object's alerts are not in time order")
            if obj.truth is not None:
                if obj.truth.class_id not in taxonomy(ELASTICC2):
                    problems.append(f"truth class {obj.truth.class_id} is not an ELAsTiCC2 class id")
                ids = {a["diaSource"]["diaObjectId"] for a in obj.alerts}
                if ids and ids != {obj.truth.dia_object_id}:
                    problems.append(f"truth is for object {obj.truth.dia_object_id}, the alerts for {sorted(ids)}")
        if problems:
            raise _Failed(_joined(problems, 5))
        return f"{len(objects)} objects, {alerts} alerts"

    def _check_facility_lifecycle(self) -> Iterator[CheckResult]:
        if not self.facilities:
            yield from self._none("facility_lifecycle", "facility")
            return
        yield from self._each("facility_lifecycle", self.facilities, "facility", self._lifecycle)

    def _lifecycle(self, name: str, spec: Any) -> str:
        from datetime import UTC, datetime, timedelta

        from pydantic import SecretStr

        from alertmux.followup.models import STATES, DataProduct, ObservationRequest, RequestRecord, Submission
        from alertmux.followup.settings import load_settings

        emulator = getattr(spec, "emulator", None)
        if emulator is None:
            raise _Skipped("no emulator (FacilitySpec.emulator): the lifecycle cannot be checked offline")
        now = datetime.now(UTC)
        ra = _anti_solar_ra(now)
        request = ObservationRequest(
            name=f"alertmux-conformance-{uuid.uuid4().hex[:10]}", dia_object_id=1, target_name="conformance",
            ra=ra, dec=0.0, exposure_s=300.0, window_start=now, window_end=now + timedelta(hours=72),
            max_airmass=2.0, mag=17.0, band="r",
        )
        invalid = ObservationRequest(**{**_fields(request), "window_start": now + timedelta(hours=72),
                                        "window_end": now, "exposure_s": -1.0})
        steps: list[str] = []
        problems: list[str] = []
        with _captured_logs() as logs, emulator() as table:
            settings = load_settings(spec.config_model, name, table)
            secrets = {v.get_secret_value() for v in (getattr(settings, f) for f in type(settings).model_fields)
                       if isinstance(v, SecretStr) and v.get_secret_value()}
            validation = spec.validate(settings, request)
            if not validation.ok:
                raise _Failed(f"validate refused a plain request: {validation.error_lines()[:5]}")
            if any(secret in json.dumps(validation.payload, default=str) for secret in secrets | {_CANARY}):
                problems.append("validate's payload (shown to users) contains a secret")
            steps.append("validate")
            try:
                rejected = spec.validate(settings, invalid)
            except Exception as exc:  # noqa: BLE001 - a refusal may come as an error too
                steps.append(f"invalid refused ({type(exc).__name__})")
            else:
                if rejected.ok or not rejected.error_lines():
                    problems.append("validate accepted a window ending before it starts, with exposure -1 s")
                else:
                    steps.append("invalid refused")
            submission = spec.submit(settings, request)
            if not isinstance(submission, Submission) or not submission.facility_id or submission.state not in STATES:
                raise _Failed(f"submit returned {submission!r}: a Submission with a facility id and a known state")
            steps.append(f"submit ({submission.state})")
            record = RequestRecord(request_id=1, facility=name, name=request.name, state=submission.state,
                                   native_state=submission.native_state, facility_id=submission.facility_id,
                                   parts=submission.parts, url=submission.url or None)
            if spec.lookup is not None:
                found = spec.lookup(settings, request.name)
                if found is None or found.facility_id != submission.facility_id:
                    problems.append(f"lookup by name did not find the submitted request (got {found!r})")
                if spec.lookup(settings, f"alertmux-conformance-absent-{uuid.uuid4().hex[:8]}") is not None:
                    problems.append("lookup found a request that was never submitted")
                steps.append("lookup")
            if getattr(spec, "status_api", True):
                updates = list(spec.status(settings, [record]))
                if [u.request_id for u in updates] != [1] or updates[0].state not in STATES:
                    problems.append(f"status of one record returned {updates!r}")
                steps.append("status")
            if spec.cancel is not None:
                update = spec.cancel(settings, record)
                if update.state != "canceled":
                    problems.append(f"cancel left the request {update.state} ({update.native_state})")
                elif getattr(spec, "status_api", True):
                    after = list(spec.status(settings, [record]))
                    if not after or after[0].state != "canceled":
                        problems.append(f"status after cancel says {after[0].state if after else 'nothing'}")
                steps.append("cancel")
            if spec.data_products is not None:
                products = list(spec.data_products(settings, record))
                if not all(isinstance(p, DataProduct) for p in products):
                    problems.append("data_products must return DataProduct objects")
                steps.append(f"data products ({len(products)})")
            wrong = _with_secrets(settings, SecretStr(_CANARY))
            if wrong is not None:
                try:
                    spec.status(wrong, [record]) if getattr(spec, "status_api", True) else spec.submit(wrong, request)
                except Exception as exc:  # noqa: BLE001 - refusing a wrong token is expected; leaking it is not
                    if _CANARY in str(exc):
                        problems.append("an error raised with a wrong token contains the token")
                steps.append("wrong token")
        leaked = [s for s in secrets | {_CANARY} if any(s in line for line in logs)]
        if leaked:
            problems.append("a secret was logged")
        if problems:
            raise _Failed(_joined(problems))
        return " > ".join(steps)

    def _check_emulator_round_trip(self) -> Iterator[CheckResult]:
        if not self.brokers:
            yield from self._none("emulator_round_trip", "broker")
            return
        yield from self._each("emulator_round_trip", self.brokers, "broker", self._round_trip)

    def _round_trip(self, broker: str, spec: BrokerSpec) -> str:
        import sqlite3

        from alertmux.harness import DemoOptions, run_demo
        from alertmux.store import open_store

        if spec.emulator is None:
            raise _Skipped("no emulator: `alertmux demo --brokers` cannot run it offline")
        assert self.bootstrap is not None
        db = self.workdir / f"round-trip-{broker}.db"
        options = DemoOptions(db=db, objects=self.objects, seed=0, bootstrap=self.bootstrap, brokers=(broker,),
                              client_config=self.client_config, drain_timeout=self.drain_timeout)
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(run_demo(self.host, options))
            except BaseException as exc:  # noqa: BLE001 - reported as the check's failure
                outcome.append(exc)

        started = time.monotonic()
        worker = threading.Thread(target=run, name=f"conformance-{broker}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise _Failed(f"the round trip did not finish within {self.timeout:g} s: does the emulator return once "
                          "ctx.stop() is true and every alert it read is answered?")
        if isinstance(outcome[0], BaseException):
            raise _Failed(f"the harness failed: {type(outcome[0]).__name__}: {_line(outcome[0])}")
        summary = outcome[0]
        sent = summary["alerts_sent"]
        info = summary["brokers"].get(broker)
        if not sent:
            raise _Failed("no alert was sent")
        if info is None:
            raise _Failed(f"{sent} alerts sent, no answer stored")
        problems = []
        expected = sent * spec.emulator.answers_per_alert
        if info["messages"] != expected:
            problems.append(f"{info['messages']} answers stored for {sent} alerts x {spec.emulator.answers_per_alert} "
                            f"answers per alert = {expected}")
        if info["dead_letters"]:
            store = open_store(db)
            reasons = sorted({d.error for d in store.dead_letters(broker)})
            store.close()
            problems.append(f"{info['dead_letters']} of the emulator's own payloads were dead-lettered: "
                            + "; ".join(reasons[:3]))
        conn = sqlite3.connect(db)
        try:
            unknown = conn.execute(
                "SELECT native_scheme, native_class, COUNT(*) FROM classifications"
                " WHERE class_id IS NULL AND kind != 'context' GROUP BY 1, 2 ORDER BY 3 DESC"
            ).fetchall()
            answered = conn.execute("SELECT COUNT(DISTINCT alert_id) FROM messages").fetchone()[0]
        finally:
            conn.close()
        if unknown:
            problems.append("labels no normalizer knows: " + ", ".join(f"{s}:{c} ({n})" for s, c, n in unknown[:10]))
        if answered != sent:
            problems.append(f"answers cover {answered} of the {sent} alerts")
        topics = tuple(spec.emulator.output_topics(summary["run_id"]))
        if topics:  # an emulator that pushes to `alertmux serve` leaves nothing on Kafka to read back
            self._emulated[broker] = [m.payload for m in capture(self.bootstrap, topics=topics,
                                                                 client_config=self.client_config, to_end=True,
                                                                 max_messages=200)]
        if problems:
            raise _Failed(_joined(problems))
        return f"{sent} alerts, {info['messages']} answers stored in {time.monotonic() - started:.1f} s"

    def _check_dead_letters(self) -> Iterator[CheckResult]:
        if not self.brokers:
            yield from self._none("dead_letters", "broker")
            return
        yield from self._each("dead_letters", self.brokers, "broker", self._dead_letters)

    def _check_redelivery(self) -> Iterator[CheckResult]:
        if not self.brokers:
            yield from self._none("redelivery", "broker")
            return
        yield from self._each("redelivery", self.brokers, "broker", self._redelivery)

    def _payloads(self, broker: str) -> list[bytes]:
        """Payloads known to decode: the samples that did, and what the emulator published."""
        self.check("samples")
        if self.brokers[broker].emulator is not None:
            self.check("emulator_round_trip")
        return self._good.get(broker, []) + self._emulated.get(broker, [])[:50]

    def _kafka_replay(self, broker: str, spec: BrokerSpec) -> tuple[Any, Any, int, int]:
        """Send [good, garbage..., good..., every good again] to a fresh topic; listen once with the core loop.

        Returns (stats, store path, rows one copy of the good payloads makes, number of garbage payloads).
        """
        if broker in self._kafka_run:
            return self._kafka_run[broker]
        from alertmux.harness import ensure_topics
        from alertmux.ingest import Ingestor
        from alertmux.kafka import ListenOptions, listen, make_producer
        from alertmux.specs import Delivery
        from alertmux.store import open_store

        assert self.bootstrap is not None
        good = self._payloads(broker)
        if not good:
            raise _Skipped("no payload known to decode: declare samples or an emulator")
        garbage = [payload for _, payload in self._garbage_for(broker, spec)]
        reference = open_store(self.workdir / f"reference-{broker}.db")
        try:
            once = Ingestor(self.host, broker, reference)
            rows = 0
            for payload in good:
                delivery = Delivery("reference")
                rows += reference.write_batch(once.rows(once.decode(payload, delivery), delivery))
        finally:
            reference.close()
        sequence = good[:1] + garbage + good[1:] + good
        topic = f"alertmux-conformance-{broker}-{uuid.uuid4().hex[:8]}"
        ensure_topics(self.bootstrap, [topic], self.client_config)
        producer = make_producer(self.bootstrap, self.client_config, **{"linger.ms": 5})
        for payload in sequence:
            producer.produce(topic, payload, partition=0)
        if producer.flush(30):
            raise _Failed("the local broker did not take the test payloads")
        path = self.workdir / f"replay-{broker}.db"
        store = open_store(path)
        try:
            ingestor = Ingestor(self.host, broker, store)
            options = ListenOptions(bootstrap=self.bootstrap, topics=(topic,), group_id=f"conformance-{uuid.uuid4()}",
                                    start="earliest", max_messages=len(sequence), idle_exit=15.0,
                                    client_config=self.client_config)
            stats = listen(ingestor, options)
        finally:
            store.close()
        self._kafka_run[broker] = (stats, path, rows, len(garbage))
        return self._kafka_run[broker]

    def _dead_letters(self, broker: str, spec: BrokerSpec) -> str:
        from alertmux.store import open_store

        stats, path, rows, garbage_count = self._kafka_replay(broker, spec)
        garbage = [payload for _, payload in self._garbage_for(broker, spec)]
        store = open_store(path)
        try:
            letters = store.dead_letters(broker)
        finally:
            store.close()
        problems = []
        expected_total = garbage_count + 2 * len(self._payloads(broker))
        if stats.consumed != expected_total:
            problems.append(f"the loop consumed {stats.consumed} of {expected_total} messages: the stream stopped")
        if [d.payload for d in letters] != garbage:
            problems.append(f"{len(letters)} dead letters for {len(garbage)} garbage payloads, or their bytes changed")
        if any(not d.error.strip() or d.offset is None for d in letters):
            problems.append("a dead letter lacks its reason or its offset")
        if stats.stored != rows:
            problems.append(f"{stats.stored} rows stored after the garbage, {rows} expected")
        if problems:
            raise _Failed(_joined(problems))
        return f"{len(letters)} garbage payloads dead-lettered with their bytes, {stats.stored} rows stored around them"

    def _redelivery(self, broker: str, spec: BrokerSpec) -> str:
        import sqlite3

        stats, path, rows, _ = self._kafka_replay(broker, spec)
        conn = sqlite3.connect(path)
        try:
            stored = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        finally:
            conn.close()
        if stored != rows or stats.stored != rows:
            raise _Failed(f"{len(self._payloads(broker))} payloads sent twice left {stored} rows, {rows} expected: "
                          "give messages an alert id (or a stable content) so a redelivery is recognized")
        return f"{len(self._payloads(broker))} payloads sent twice: {rows} rows, {stats.duplicates} duplicates ignored"


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


def _decodes_on_kafka(ingestor: Any, payload: bytes, delivery: Any) -> bool:
    """Whether the Kafka loop would decode this payload (a REST or push sample may need a decoder it does not try)."""
    try:
        return bool(ingestor.decode(payload, delivery))
    except Exception:  # noqa: BLE001 - any failure means: not a payload for the Kafka checks
        return False


def _decoders_of(spec: Any) -> dict[str, Any]:
    """Every decoder of a broker by name, each once: its transports' (kafka, rest, push) and the named ones."""
    found: dict[str, Any] = {}
    for name in ("kafka", "rest", "push"):
        transport = getattr(spec, name, None)
        if transport is not None and callable(getattr(transport, "decode", None)):
            found[name] = transport.decode
    for name, decoder in dict(spec.decoders).items():
        if all(decoder is not d for d in found.values()):
            found[name] = decoder
    return found


def _joined(problems: list[str], shown: int = 8) -> str:
    problems = list(dict.fromkeys(problems))  # one sample with 20 messages repeats the same problem 20 times
    return "; ".join(problems[:shown]) + (f"; and {len(problems) - shown} more" if len(problems) > shown else "")


def _common_problems(name: str, spec: Any, expected: type, key: str = "name") -> list[str]:
    if not isinstance(spec, expected):
        return [f"a {type(spec).__name__}, not a {expected.__name__}"]
    problems = []
    if not _NAME.fullmatch(getattr(spec, key)):
        problems.append(f"{key} {getattr(spec, key)!r} must be lowercase letters, digits, '_' or '-' (users type it)")
    description = spec.description
    if not isinstance(description, str) or not description.strip():
        problems.append("no description (`alertmux plugins` shows it)")
    elif "\n" in description.strip():
        problems.append("description must be one line")
    return problems


def _message_problems(m: Any, normalizers: Mapping[str, Any]) -> list[str]:
    from alertmux.specs import BrokerMessage

    if not isinstance(m, BrokerMessage):
        return [f"yielded a {type(m).__name__}, not a BrokerMessage"]
    problems = []
    identity = m.classifier
    if not (isinstance(identity, tuple) and len(identity) == 4 and all(isinstance(x, str) for x in identity)):
        problems.append(f"classifier {m.classifier!r} must be 4 str: (brokerName, brokerVersion, classifierName, "
                        "classifierParams)")
    if m.scheme not in normalizers:
        problems.append(f"scheme {m.scheme!r} has no registered normalizer")
    if len(m.labels) != len(m.values) or not m.labels:
        problems.append(f"{len(m.labels)} labels for {len(m.values)} values (they must be parallel and non-empty)")
    for label in m.labels:
        if not isinstance(label, int | str) or isinstance(label, bool):
            problems.append(f"label {label!r} is not an int or str")
            break
    normalizer = normalizers.get(m.scheme)
    for label, value in zip(m.labels, m.values, strict=False):
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            problems.append(f"value {value!r} of {label!r} is not a finite number")
            break
        hit = normalizer.normalize(label) if normalizer else None
        if hit is not None and hit.kind == "probability" and not 0.0 <= value <= 1.0:
            problems.append(f"probability {value!r} of {label!r} is outside [0, 1] (mark the label kind='score'?)")
            break
    if m.alert_id is None and m.dia_source_id is None and m.dia_object_id is None:
        problems.append("no alert, source or object id: the message cannot be tied to anything")
    for attr in ("alert_id", "dia_source_id", "dia_object_id", *_TIMESTAMPS):
        value = getattr(m, attr)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"{attr} {value!r} is not an int")
    for attr in _TIMESTAMPS:
        value = getattr(m, attr)
        if isinstance(value, int) and not _EPOCH_MS[0] <= value <= _EPOCH_MS[1]:
            problems.append(f"{attr}={value} is not epoch milliseconds between 2000 and 2100 (seconds? microseconds?)")
    return problems


def _anti_solar_ra(when: Any) -> float:
    """Right ascension (degrees) opposite the Sun's, to within a few degrees: a target observable at night."""
    days = (when.timestamp() - 946_728_000) / 86400  # since J2000.0
    return (280.46 + 0.9856474 * days + 180.0) % 360.0


def _fields(obj: Any) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _with_secrets(settings: Any, value: Any) -> Any:
    """A copy of facility settings with every secret replaced by ``value`` (None when it has no secret)."""
    from pydantic import SecretStr

    names = [f for f in type(settings).model_fields if isinstance(getattr(settings, f), SecretStr)]
    return settings.model_copy(update=dict.fromkeys(names, value)) if names else None


@contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Every log line (any logger, DEBUG and up) emitted inside the block, with its arguments and traceback."""
    lines: list[str] = []
    formatter = logging.Formatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage() + (formatter.formatException(record.exc_info) if record.exc_info else ""))

    collect = Collect(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    # The other handlers keep showing what they showed before, not the debug lines collected here.
    others = [(h, h.level) for h in root.handlers]
    for handler, was in others:
        handler.setLevel(max(was, level))
    root.addHandler(collect)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(collect)
        root.setLevel(level)
        for handler, was in others:
            handler.setLevel(was)


def _is_secret_type(annotation: Any) -> bool:
    from typing import get_args

    from pydantic import SecretBytes, SecretStr

    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_is_secret_type(arg) for arg in get_args(annotation))


def _sample_config(model: Any, secrets: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Values for the model's secret fields (the canary) and for its required fields (plausible guesses)."""
    from pydantic import TypeAdapter, ValidationError

    data: dict[str, Any] = {}
    missing = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if name in secrets:
            data[key] = _CANARY
            continue
        if not info.is_required():
            continue
        adapter = TypeAdapter(info.annotation)
        for candidate in ("conformance", 1, 1.5, True, [], {}, "http://127.0.0.1:9/", ["conformance"]):
            try:
                adapter.validate_python(candidate)
            except ValidationError:
                continue
            data[key] = candidate
            break
        else:
            missing.append(name)
    return data, missing


class PluginConformance:
    """The conformance suite as pytest tests: subclass it in a plugin's test suite.

    Example::

        from alertmux.testing import PluginConformance

        class TestConformance(PluginConformance):
            plugin = "mybroker"

            @classmethod
            def extra_samples(cls):            # optional: payloads that cannot ship with the plugin
                return {"mybroker": load_samples(SHARED / "mybroker")}

    One test per check; a check that does not apply is skipped with the reason. The Kafka checks are marked
    ``kafka`` and use the session's ``kafka_broker``.
    """

    plugin: ClassVar[str] = ""
    objects: ClassVar[int] = 2

    @classmethod
    def extra_samples(cls) -> Mapping[str, Iterable[SamplePayload]]:
        """Sample payloads by broker name, beyond those the plugin declares."""
        return {}

    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls, tmp_path_factory: pytest.TempPathFactory) -> ConformanceSuite:
        """The suite for :attr:`plugin`, shared by the class's tests (the Kafka round trip runs once)."""
        if not cls.plugin:
            raise pytest.UsageError(f"{cls.__name__}: set `plugin = \"<entry point name>\"`")
        suite = ConformanceSuite(cls.plugin, workdir=tmp_path_factory.mktemp(f"conformance-{cls.plugin}"),
                                 objects=cls.objects)
        for broker, samples in cls.extra_samples().items():
            suite.add_samples(broker, samples)
        return suite

    @staticmethod
    def _expect(suite: ConformanceSuite, check: str, kafka: EmbeddedKafka | None = None) -> None:
        if kafka is not None and suite.bootstrap is None:
            from alertmux.embedded import local_client_config

            suite.use_kafka(kafka.bootstrap, local_client_config())
        results = suite.check(check)
        failed = [r for r in results if r.status == "fail"]
        if failed:
            pytest.fail("\n".join(f"{r.subject}: {r.detail}" for r in failed), pytrace=False)
        if all(r.status == "skip" for r in results):
            pytest.skip("; ".join(f"{r.subject}: {r.detail}" for r in results))

    def test_entry_point(self, conformance: ConformanceSuite) -> None:
        """The plugin loads through its entry point and declares the core versions it supports."""
        self._expect(conformance, "entry_point")

    def test_specs(self, conformance: ConformanceSuite) -> None:
        """Its spec objects are well formed."""
        self._expect(conformance, "specs")

    def test_normalizers(self, conformance: ConformanceSuite) -> None:
        """Every native label is mapped or explicitly context, with a source."""
        self._expect(conformance, "normalizers")

    def test_samples(self, conformance: ConformanceSuite) -> None:
        """Every sample payload decodes into well-formed, normalizable messages."""
        self._expect(conformance, "samples")

    def test_garbage(self, conformance: ConformanceSuite) -> None:
        """Every decoder raises on garbage."""
        self._expect(conformance, "garbage")

    def test_secrets(self, conformance: ConformanceSuite) -> None:
        """Configured secrets stay hidden."""
        self._expect(conformance, "secrets")

    def test_alert_sources(self, conformance: ConformanceSuite) -> None:
        """Alert sources yield valid alerts with truth."""
        self._expect(conformance, "alert_sources")

    def test_facility_lifecycle(self, conformance: ConformanceSuite) -> None:
        """A request goes through its whole life against the facility's emulator."""
        self._expect(conformance, "facility_lifecycle")

    @pytest.mark.kafka
    def test_emulator_round_trip(self, conformance: ConformanceSuite, kafka_broker: EmbeddedKafka) -> None:
        """The emulator answers a simulated stream through Kafka and every answer is stored."""
        self._expect(conformance, "emulator_round_trip", kafka_broker)

    @pytest.mark.kafka
    def test_dead_letters(self, conformance: ConformanceSuite, kafka_broker: EmbeddedKafka) -> None:
        """Garbage on a topic is dead-lettered whole and the stream goes on."""
        self._expect(conformance, "dead_letters", kafka_broker)

    @pytest.mark.kafka
    def test_redelivery(self, conformance: ConformanceSuite, kafka_broker: EmbeddedKafka) -> None:
        """A redelivery adds no row."""
        self._expect(conformance, "redelivery", kafka_broker)
