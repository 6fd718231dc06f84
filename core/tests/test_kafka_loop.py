"""The Kafka listen loop against the embedded broker: dead letters, redelivery, stopping, resuming, new topics."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from alertmux import hookimpl
from alertmux.builtin import elasticc
from alertmux.errors import KafkaUnavailable
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, ListenStats, listen
from alertmux.serde import load_schema, schemaless_encode
from alertmux.store import SqliteStore, Store

GARBAGE = b"\x00this is not a broker message\xff"


def message(alert_id: int) -> bytes:
    record = {
        "alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
        "brokerIngestTimestamp": None, "brokerName": "B", "brokerVersion": "1", "classifierName": "C",
        "classifierParams": "P", "classifications": [{"classId": 2222, "probability": 0.75},
                                                     {"classId": 2223, "probability": 0.25}],
    }
    return schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification"))


def stored_alert_ids(store: Store) -> list[int]:
    assert isinstance(store, SqliteStore)
    return [r[0] for r in store.conn.execute("SELECT alert_id FROM messages ORDER BY alert_id")]


class Recorder:
    """Records the alertmux_classifications_stored events."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    @hookimpl
    def alertmux_classifications_stored(self, broker: str, count: int) -> None:
        assert broker == "elasticc"
        self.counts.append(count)


@pytest.fixture
def host(plugin_host: Callable[..., PluginHost]) -> PluginHost:
    return plugin_host(elasticc)


@pytest.fixture
def options(kafka_broker: Any, kafka_client_config: dict[str, str], unique_topic: str) -> ListenOptions:
    return ListenOptions(bootstrap=kafka_broker.bootstrap, topics=(unique_topic,), group_id=f"group-{unique_topic}",
                         start="earliest", client_config=kafka_client_config, connect_timeout=5)


def listen_until(
    ingestor: Ingestor,
    options: ListenOptions,
    done: Callable[[ListenStats], bool] = lambda s: False,
    *,
    timeout: float = 30.0,
    on_batch: Callable[[ListenStats], None] | None = None,
    hook: Any = None,
) -> tuple[ListenStats, bool]:
    """Listen until ``done(stats)``, the loop stops by itself, or ``timeout``; returns (stats, timed out).

    The deadline keeps a broken loop from hanging the suite; tests assert it was not what stopped the loop.
    """
    latest: list[ListenStats] = []
    timed_out: list[bool] = []
    deadline = time.monotonic() + timeout

    def should_stop() -> bool:
        if latest and done(latest[0]):
            return True
        if time.monotonic() > deadline:
            timed_out.append(True)
            return True
        return False

    def batch(stats: ListenStats) -> None:
        latest[:] = [stats]
        if on_batch is not None:
            on_batch(stats)

    stats = listen(ingestor, options, should_stop=should_stop, on_batch=batch, hook=hook)
    return stats, bool(timed_out)


@pytest.mark.kafka
def test_good_messages_stored_once_garbage_dead_lettered_and_the_loop_goes_on(
    plugin_host: Callable[..., PluginHost], tmp_store: Store, options: ListenOptions, produce: Any, unique_topic: str
) -> None:
    recorder = Recorder()
    host = plugin_host(elasticc, recorder)
    payloads = [message(i) for i in range(1, 6)] + [GARBAGE, message(1), message(6)]  # garbage, a redelivery, more
    offsets = produce(unique_topic, payloads)
    ingestor = Ingestor(host, "elasticc", tmp_store)

    stats, timed_out = listen_until(ingestor, options, lambda s: s.consumed >= len(payloads), hook=host.hook)

    assert not timed_out
    assert (stats.consumed, stats.stored, stats.duplicates, stats.dead_letters) == (8, 6, 1, 1)
    assert stored_alert_ids(tmp_store) == [1, 2, 3, 4, 5, 6]  # 6 came after the garbage: the loop went on
    [dead] = tmp_store.dead_letters()
    assert dead.payload == GARBAGE
    assert (dead.broker, dead.source, dead.partition, dead.offset) == ("elasticc", unique_topic, *offsets[5])
    assert "DecodeError" in dead.error and "\n" not in dead.error
    assert sum(recorder.counts) == 6  # the event hook saw every new row, and no redelivery


@pytest.mark.kafka
def test_max_messages_stops_exactly_counting_dead_letters(
    host: PluginHost, tmp_store: Store, options: ListenOptions, produce: Any, unique_topic: str
) -> None:
    produce(unique_topic, [message(1), GARBAGE, message(2), message(3), message(4)])
    options.max_messages = 3
    stats, timed_out = listen_until(Ingestor(host, "elasticc", tmp_store), options)
    assert not timed_out, "listen did not stop by itself after max_messages"
    assert (stats.consumed, stats.stored, stats.dead_letters) == (3, 2, 1)
    assert stored_alert_ids(tmp_store) == [1, 2]


@pytest.mark.kafka
def test_restart_with_committed_offsets_consumes_only_the_rest(
    host: PluginHost, tmp_store: Store, options: ListenOptions, produce: Any, unique_topic: str
) -> None:
    n, k = 10, 4
    produce(unique_topic, [message(i) for i in range(1, n + 1)])
    ingestor = Ingestor(host, "elasticc", tmp_store)
    options.max_messages = k
    first, timed_out = listen_until(ingestor, options)
    assert not timed_out and first.consumed == k

    options.max_messages = None
    options.start = "committed"
    second, timed_out = listen_until(ingestor, options, lambda s: s.consumed >= n - k)
    assert not timed_out
    # Had it started over, its first messages would have been redeliveries of the first run's.
    assert (second.consumed, second.stored, second.duplicates) == (n - k, n - k, 0)
    assert stored_alert_ids(tmp_store) == list(range(1, n + 1))


class FailingStore:
    """A store whose writes fail, as a full disk or a locked database would make them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_batch(self, *args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")


@pytest.mark.kafka
def test_offsets_are_not_committed_when_the_store_write_fails(
    host: PluginHost, tmp_store: Store, options: ListenOptions, produce: Any, unique_topic: str
) -> None:
    n = 5
    produce(unique_topic, [message(i) for i in range(1, n + 1)])
    with pytest.raises(OSError, match="disk full"):
        listen_until(Ingestor(host, "elasticc", FailingStore(tmp_store)), options)  # type: ignore[arg-type]

    options.start = "committed"
    stats, timed_out = listen_until(Ingestor(host, "elasticc", tmp_store), options, lambda s: s.consumed >= n)
    assert not timed_out
    assert (stats.consumed, stats.stored) == (n, n)  # nothing was lost with the failed batch
    assert stored_alert_ids(tmp_store) == list(range(1, n + 1))


@pytest.mark.kafka
def test_topic_created_after_the_listener_started_is_picked_up(
    host: PluginHost, tmp_store: Store, options: ListenOptions, produce: Any, unique_topic: str
) -> None:
    # A first matching topic proves the listener has joined and is consuming before the second one exists.
    produce(f"{unique_topic}-day1", [message(1)])
    options.topics = ()
    options.topic_pattern = f"{unique_topic}-day.*"  # no "^": the loop adds librdkafka's regex marker
    created: list[float] = []

    def create_day2(stats: ListenStats) -> None:
        if not created:
            produce(f"{unique_topic}-day2", [message(2)])
            created.append(time.monotonic())

    stats, timed_out = listen_until(Ingestor(host, "elasticc", tmp_store), options, lambda s: s.stored >= 2,
                                    timeout=40, on_batch=create_day2)
    assert created, "the first topic was never consumed"
    assert not timed_out, "the topic created after the listener started was not picked up"
    assert time.monotonic() - created[0] < 20
    assert stored_alert_ids(tmp_store) == [1, 2]
    assert {d for (d,) in tmp_store.conn.execute("SELECT DISTINCT topic FROM messages")} == {  # type: ignore[attr-defined]
        f"{unique_topic}-day1", f"{unique_topic}-day2"}


@pytest.mark.kafka
def test_idle_exit_does_not_count_the_group_join(
    host: PluginHost, tmp_store: Store, options: ListenOptions, produce: Any, unique_topic: str
) -> None:
    produce(unique_topic, [message(i) for i in range(1, 4)])
    options.idle_exit = 2
    stats, timed_out = listen_until(Ingestor(host, "elasticc", tmp_store), options)
    assert not timed_out
    assert stats.consumed == 3


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound then released; connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


def test_unreachable_kafka_fails_fast_with_one_line_naming_the_address(
    host: PluginHost, tmp_store: Store, closed_port: int
) -> None:
    bootstrap = f"127.0.0.1:{closed_port}"
    options = ListenOptions(bootstrap=bootstrap, topics=("t",), connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable) as info:
        listen(Ingestor(host, "elasticc", tmp_store), options)
    assert time.monotonic() - started < 2 + 3
    text = str(info.value)
    assert bootstrap in text and "\n" not in text
    assert info.value.exit_code == 3


@pytest.mark.kafka
def test_listen_without_topics_or_pattern_is_refused(
    kafka_broker: Any, host: PluginHost, tmp_store: Store, kafka_client_config: dict[str, str]
) -> None:
    options = ListenOptions(bootstrap=kafka_broker.bootstrap, client_config=kafka_client_config)
    with pytest.raises(ValueError, match="no topics or topic pattern"):
        listen(Ingestor(host, "elasticc", tmp_store), options)
