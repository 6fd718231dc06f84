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

Tests that need Kafka should be marked ``@pytest.mark.kafka`` so they can be deselected with ``-m "not kafka"``.

Imports of alertmux's heavier modules (confluent_kafka, sqlite_utils, pydantic) happen inside the fixtures: pytest
loads this plugin in every session of every project that has alertmux installed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from alertmux.embedded import EmbeddedKafka
    from alertmux.host import PluginHost
    from alertmux.store import Store

__all__ = [
    "CliResult",
    "Produce",
    "RunCli",
    "installed_host",
    "kafka_broker",
    "kafka_client_config",
    "plugin_host",
    "produce",
    "run_cli",
    "tmp_store",
    "unique_topic",
]


class Produce(Protocol):
    """The ``produce`` fixture's signature."""

    def __call__(
        self, topic: str, payloads: Sequence[bytes], *, key: bytes | None = None, partition: int | None = 0
    ) -> list[tuple[int, int]]:
        """Send ``payloads`` to ``topic`` in order and flush.

        Args:
            topic: the topic (auto-created by the embedded broker on first use).
            payloads: the message values.
            key: one key for every message.
            partition: the partition to write to; 0 by default, so that the order of ``payloads`` is the order a
                consumer reads them in. None lets the partitioner choose.

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
        topic: str, payloads: Sequence[bytes], *, key: bytes | None = None, partition: int | None = 0
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

        extra = {} if partition is None else {"partition": partition}
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
