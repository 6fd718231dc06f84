"""The ``kafka`` alert source: consume an existing alert stream (a Rubin or ELAsTiCC topic) as a source.

Settings come from ``--source-option KEY=VALUE`` and the ``[sources.kafka]`` table of ``alertmux.toml``:
``bootstrap``, ``topic`` (comma-separated for several), ``group``, ``start`` (earliest/latest/committed),
``max_messages``, ``idle_exit`` (seconds), ``registry`` (a schema registry URL) and a ``kafka`` table passed to
librdkafka (``security.protocol``, ``sasl.mechanism``, ``sasl.username``, ``sasl.password = "${ENV_VAR}"``...).

Rubin lets a community broker's consumer group only start with its SASL username (``fink-usdf*``): a group
that does not is refused before connecting, and the default group is ``<username>-alertmux``.
Each message is sniffed like a file (Rubin wire format, ELAsTiCC schemaless Avro...); one that does not decode
is reported with its topic, partition and offset and skipped (it stays in the topic).

Offsets mark what was *read*: the streamer records a source whole before it sends, so they are committed before
the alerts go out. After a stream is interrupted, resume it with ``--run ID`` and ``start=earliest`` (the run
skips what Kafka acknowledged); ``start=committed`` would skip the alerts read but not yet sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from alertmux.errors import DecodeError, UsageError
from alertmux.hookspecs import hookimpl
from alertmux.sources import OnBadInput, alert_mjd, report
from alertmux.specs import AlertSourceSpec, SourceObject

log = logging.getLogger(__name__)


def consumer_group(client_config: Mapping[str, Any], group: str | None) -> str:
    """The consumer group to use, enforcing Rubin's rule that it starts with the SASL username.

    Raises:
        UsageError: when a SASL username is set and ``group`` does not start with it.
    """
    username = client_config.get("sasl.username")
    if not username:
        return group or "alertmux-source"
    if group is None:
        return f"{username}-alertmux"
    if not group.startswith(str(username)):
        raise UsageError(f"consumer group {group!r} must start with the SASL username ({username!r}): "
                         "Rubin's alert stream only lets a user's groups start with its name")
    return group


def _number(value: Any, name: str, kind: type) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"source option {name} must be a number, not {value!r}") from None


def open_kafka_topic(bootstrap: str | None = None, topic: str | None = None, group: str | None = None,
                     start: str = "earliest", max_messages: Any = None, idle_exit: Any = 10.0,
                     registry: str | None = None, kafka: Mapping[str, Any] | None = None,
                     on_bad_input: OnBadInput | None = None, **_: Any) -> Iterator[SourceObject]:
    """Consume alerts from ``topic`` on ``bootstrap`` and yield each as a one-alert object.

    Stops after ``max_messages`` messages or ``idle_exit`` seconds without one (after the first assignment).
    Offsets are committed as alerts are handed on, so a later run with the same group starts after them (see the
    module's note on resuming an interrupted stream).
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException

    from alertmux.formats import sniff
    from alertmux.kafka import check_reachable
    from alertmux.sources.rubin import SchemaRegistry

    if not bootstrap or not topic:
        raise UsageError("the kafka source needs --source-option bootstrap=HOST:PORT and topic=NAME "
                         "(or bootstrap and topic in [sources.kafka] of alertmux.toml)")
    if start not in ("earliest", "latest", "committed"):
        raise UsageError(f"source option start must be earliest, latest or committed, not {start!r}")
    limit = _number(max_messages, "max_messages", int)
    idle = _number(idle_exit, "idle_exit", float)
    client_config = {str(k): v for k, v in (kafka or {}).items()}
    group_id = consumer_group(client_config, group)
    check_reachable(bootstrap, client_config, timeout=10)
    consumer = Consumer({
        **client_config, "bootstrap.servers": bootstrap, "group.id": group_id,
        "auto.offset.reset": "latest" if start == "latest" else "earliest", "enable.auto.commit": True,
        "enable.auto.offset.store": False, "logger": logging.getLogger("alertmux.librdkafka"),
    })
    assigned: list[float] = []

    def on_assign(c: Any, partitions: list[Any]) -> None:
        if start != "committed":
            for p in partitions:
                p.offset = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
        c.assign(partitions)
        if partitions and not assigned:
            assigned.append(time.monotonic())

    client = SchemaRegistry(registry) if registry else None
    consumer.subscribe([t.strip() for t in topic.split(",") if t.strip()], on_assign=on_assign)
    consumed = 0
    last = time.monotonic()
    try:
        while limit is None or consumed < limit:
            msg = consumer.poll(0.2)
            if msg is None:
                idle_since = last if consumed else (assigned[0] if assigned else last + 30)
                if idle is not None and time.monotonic() - idle_since >= idle:
                    break
                continue
            if msg.error() is not None:
                log.warning("kafka source: %s", msg.error().str())
                continue
            consumed += 1
            last = time.monotonic()
            where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
            try:
                decoded = sniff(msg.value() or b"", registry=client)
                records = [r for r in decoded.records if isinstance(r, dict) and "diaSource" in r]
                if not records:
                    raise DecodeError(f"not an alert ({decoded.format})")
            except DecodeError as exc:
                report(on_bad_input, where, str(exc))
            else:
                yield SourceObject(alerts=sorted(records, key=alert_mjd))
            consumer.store_offsets(msg)
    except KafkaException as exc:
        raise UsageError(f"kafka source {bootstrap}: {exc.args[0].str() if exc.args else exc}") from None
    finally:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass  # nothing stored yet
        consumer.close()
        if client is not None:
            client.close()


@hookimpl
def alertmux_alert_sources() -> Iterator[AlertSourceSpec]:
    """The ``kafka`` source."""
    yield AlertSourceSpec(
        name="kafka",
        description="Alerts consumed from an existing Kafka topic (Rubin wire format or ELAsTiCC Avro), SASL"
                    " settings from [sources.kafka.kafka]; the group must start with the SASL username",
        open=open_kafka_topic,
    )
