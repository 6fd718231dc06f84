"""The Kafka loop: consume a broker's topics into the store, at least once, dead-lettering what will not decode.

Offsets are stored only after the batch they belong to is committed to the database
(``enable.auto.offset.store=false`` + :meth:`Consumer.store_offsets`), so a crash redelivers rather than loses;
the store's unique keys make a redelivery add nothing. See docs/adr/0002-at-least-once.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from alertmux.errors import KafkaUnavailable
from alertmux.ingest import Ingestor
from alertmux.specs import Delivery
from alertmux.store import now_ms

log = logging.getLogger(__name__)

StartFrom = Literal["earliest", "latest", "committed"]
JOIN_ALLOWANCE = 30.0
"""Seconds a listener with --idle-exit waits for its first assignment before idle time starts counting."""
SECRET_KEYS = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "basic.auth.user.info")


@dataclass(slots=True)
class ListenOptions:
    """How ``alertmux listen`` consumes (every option has the CLI's meaning)."""

    bootstrap: str
    topics: tuple[str, ...] = ()
    topic_pattern: str | None = None
    moving_pattern: Callable[[], str] | None = None
    """Re-evaluated every ``resubscribe_interval`` seconds; the subscription follows it (a date window)."""
    resubscribe_interval: float = 300.0
    group_id: str | None = None
    start: StartFrom = "committed"
    max_messages: int | None = None
    idle_exit: float | None = None
    batch_size: int = 2000
    poll_timeout: float = 0.05
    connect_timeout: float = 10.0
    client_config: Mapping[str, Any] = field(default_factory=dict)
    """Passed through to librdkafka (SASL, SSL...): ``security.protocol``, ``sasl.username``..."""


@dataclass(slots=True)
class ListenStats:
    """What a listen did."""

    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    last_message: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the listen started."""
        return time.monotonic() - self.started


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a librdkafka config fit for logs: secrets replaced by ``***``."""
    return {k: ("***" if k in SECRET_KEYS or "password" in k or "secret" in k else v) for k, v in config.items()}


def check_reachable(bootstrap: str, client_config: Mapping[str, Any], timeout: float) -> None:
    """Fail with one clear line when no Kafka broker answers within ``timeout`` seconds."""
    # The probe's own connection refusals would repeat, line after line, the one error raised below.
    silent = logging.getLogger("alertmux.librdkafka.probe")
    silent.setLevel(logging.CRITICAL)
    probe = Consumer({**client_config, "bootstrap.servers": bootstrap, "group.id": "alertmux-probe", "logger": silent})
    try:
        probe.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answered at {bootstrap} within {timeout:g} s ({_kafka_reason(exc)}); "
            "check --bootstrap and the security settings, or omit --bootstrap to use the embedded broker"
        ) from None
    finally:
        probe.close()


CONSUMER_ONLY = ("session.timeout.ms", "fetch.wait.max.ms", "group.id", "auto.offset.reset", "enable.auto.commit")


def producer_config(client_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A client config without the consumer-only settings (librdkafka warns about each one otherwise)."""
    return {k: v for k, v in (client_config or {}).items() if k not in CONSUMER_ONLY}


def make_producer(bootstrap: str, client_config: Mapping[str, Any] | None = None, **overrides: Any) -> Producer:
    """A producer with DESC's streamer's batching (batch.size 128 KiB) and a 20 ms linger, unless overridden."""
    config = {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 131072} | _quiet()
    config.update(producer_config(client_config))
    config.update(overrides)
    return Producer(config)


def listen(
    ingestor: Ingestor,
    options: ListenOptions,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[ListenStats], None] | None = None,
    on_assigned: Callable[[], None] | None = None,
    hook: Any = None,
) -> ListenStats:
    """Consume until stopped, idle or ``max_messages`` are consumed; returns the counts.

    Args:
        ingestor: decodes, normalizes and stores one broker's payloads.
        options: what to consume and when to stop.
        should_stop: polled between batches (the CLI sets it from SIGINT/SIGTERM).
        on_batch: called after each stored batch (progress display).
        on_assigned: called when partitions are assigned (the harness streams only once its listeners are ready).
        hook: the plugin host's hook relay, for ``alertmux_classifications_stored``.
    """
    assert ingestor.store is not None
    check_reachable(options.bootstrap, options.client_config, options.connect_timeout)
    config = _consumer_config(ingestor.broker, options)
    cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
    def wanted() -> list[str]:
        if options.topics:
            return list(options.topics)
        return [_anchored((options.moving_pattern() if options.moving_pattern else options.topic_pattern) or "")]

    subscription = wanted()
    if subscription == ["^"]:
        raise ValueError(f"broker {ingestor.broker}: no topics or topic pattern to listen to")
    consumer = Consumer(config)
    assigned_at: list[float] = []
    reset_done: set[tuple[str, int]] = set()

    def on_assign(c: Consumer, partitions: list[KafkaPartition]) -> None:
        # --from earliest/latest applies once per partition; a later rebalance must not rewind the stream.
        if options.start != "committed":
            target = OFFSET_BEGINNING if options.start == "earliest" else OFFSET_END
            for p in partitions:
                if (p.topic, p.partition) not in reset_done:
                    p.offset = target
                    reset_done.add((p.topic, p.partition))
        # Offsets edited above take effect only through an explicit assign; cooperative adds to the assignment.
        (c.incremental_assign if cooperative else c.assign)(partitions)
        if partitions:
            log.info("partitions assigned: %s", _names(partitions))
        if partitions and not assigned_at:
            assigned_at.append(time.monotonic())
        if on_assigned is not None and partitions:
            on_assigned()

    def on_revoke(c: Consumer, partitions: list[KafkaPartition]) -> None:
        # Before partitions go to another member, commit what is stored (only stored = in the database), so the
        # new owner starts right after it instead of redelivering what auto-commit had not sent yet.
        if partitions:
            _commit_stored(c, "before a rebalance")
            log.info("partitions revoked: %s", _names(partitions))

    def on_lost(c: Consumer, partitions: list[KafkaPartition]) -> None:
        # Lost, not revoked (the session timed out): another member may own them already, and a commit from here
        # could rewind it. Without this callback librdkafka would call on_revoke.
        log.warning("partitions lost (the group session timed out): %s", _names(partitions))

    consumer.subscribe(subscription, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    log.info("listening to %s for broker %s on %s", subscription, ingestor.broker, options.bootstrap)
    stats = ListenStats()
    next_pattern_check = time.monotonic() + options.resubscribe_interval
    try:
        while not should_stop():
            if options.moving_pattern and not options.topics and time.monotonic() >= next_pattern_check:
                next_pattern_check = time.monotonic() + options.resubscribe_interval
                if (moved := wanted()) != subscription:
                    log.info("the topic window moved: subscribing to %s", moved)
                    subscription = moved
                    consumer.subscribe(subscription, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
            budget = options.batch_size
            if options.max_messages is not None:
                budget = min(budget, options.max_messages - stats.consumed)
                if budget <= 0:
                    break
            batch = consumer.consume(budget, timeout=options.poll_timeout)
            if batch:
                _handle_batch(consumer, ingestor, batch, stats, hook)
                if on_batch:
                    on_batch(stats)
            elif options.idle_exit is not None:
                # Idle time counts from the first assignment: the group join (seconds) is not silence. A listener
                # that is never assigned anything gives up after a join allowance.
                idle_since = stats.last_message or (assigned_at[0] if assigned_at else stats.started + JOIN_ALLOWANCE)
                if time.monotonic() - idle_since >= options.idle_exit:
                    break
    finally:
        _commit_stored(consumer, "final")
        consumer.close()
    return stats


def _names(partitions: list[KafkaPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions)


def _commit_stored(consumer: Consumer, which: str) -> None:
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            log.warning("%s offset commit failed (what it covered will be redelivered): %s", which, _kafka_reason(exc))


def _handle_batch(consumer: Consumer, ingestor: Ingestor, batch: list[Message], stats: ListenStats, hook: Any) -> None:
    rows: list[tuple[Any, ...]] = []
    dead = []
    offsets: dict[tuple[str, int], int] = {}
    decode, pack, ingested_ms = ingestor.decode, ingestor.rows, now_ms()  # once per batch: this loop is the hot path
    consumed = 0
    for msg in batch:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka: %s", error.str())
            continue
        consumed += 1
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        offsets[(topic, partition)] = offset + 1
        kind, stamp = msg.timestamp()
        headers = msg.headers()
        delivery = Delivery(topic, partition, offset, stamp if kind else None, msg.key(),
                            tuple(headers) if headers else ())
        payload = msg.value() or b""
        try:
            rows.extend(pack(decode(payload, delivery), delivery, ingested_ms))
        except Exception as exc:  # noqa: BLE001 - anything a payload can provoke ends in the dead-letter table
            dead.append(ingestor.dead_letter(payload, delivery, exc))
    stats.consumed += consumed
    assert ingestor.store is not None
    stored = ingestor.store.write_batch(rows, dead)
    stats.stored += stored
    stats.duplicates += len(rows) - stored
    stats.dead_letters += len(dead)
    stats.batches += 1
    stats.last_message = time.monotonic()
    if hook is not None and stored:
        try:
            hook.alertmux_classifications_stored(
                store=ingestor.store, run_id=ingestor.run_id, broker=ingestor.broker, count=stored
            )
        except Exception:  # noqa: BLE001 - a plugin's event handler must not stop ingestion
            log.exception("alertmux_classifications_stored hook failed")
    if offsets:
        try:
            # librdkafka stores the offsets of partitions still assigned and skips the others.
            consumer.store_offsets(offsets=[KafkaPartition(t, p, o) for (t, p), o in offsets.items()])
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                raise
            # Every partition of the batch was revoked while it was in hand: their new owner redelivers these
            # messages and the store's unique keys make that a no-op.
            log.info("offsets of a batch not stored: its partitions were revoked meanwhile")


def _consumer_config(broker: str, options: ListenOptions) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": options.bootstrap,
        "group.id": options.group_id or f"alertmux-{broker}",
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "latest" if options.start == "latest" else "earliest",
        # Brokers create topics as days pass: re-read metadata often enough to see a new one within seconds.
        "topic.metadata.refresh.interval.ms": 5000,
        # A new matching topic then joins without revoking everyone's partitions (eager rebalancing stops the
        # whole group for a join, ~3 s on the local broker).
        "partition.assignment.strategy": "cooperative-sticky",
        # librdkafka reconnects by itself after a lost connection; these bound its backoff.
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 5000,
    } | _quiet()
    config.update(options.client_config)
    return config


def _anchored(pattern: str) -> str:
    # librdkafka treats a subscription as a regex only when it starts with "^".
    return pattern if pattern.startswith("^") else "^" + pattern


def _quiet() -> dict[str, Any]:
    # librdkafka logs connection refusals to stderr on its own; route them through logging instead.
    return {"logger": logging.getLogger("alertmux.librdkafka")}


def _kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
