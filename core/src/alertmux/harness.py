"""The local harness: stream alerts out, run broker emulators, collect their classifications back.

``alertmux demo`` is :func:`run_demo`; ``alertmux stream`` is :func:`stream_alerts`. Both use the same Kafka
loop (:func:`alertmux.kafka.listen`) and the same store as a production ``alertmux listen``.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from alertmux.embedded import EmbeddedKafka, local_client_config
from alertmux.errors import UsageError
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, ListenStats, check_reachable, listen, make_producer, producer_config
from alertmux.serde import load_schema, schemaless_encode
from alertmux.specs import EmulatorContext, SourceObject
from alertmux.store import Store, TruthRow, now_ms, open_store

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int | None], None]
"""progress(stage, done, total): the CLI draws it; library callers may pass None."""


@dataclass(slots=True)
class StreamStats:
    """What a stream did."""

    alerts: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class DemoOptions:
    """Options of ``alertmux demo``."""

    db: str | Path = Path("alertmux.db")
    """A SQLite file or a postgresql:// URL."""
    objects: int = 200
    seed: int = 0
    bootstrap: str | None = None
    brokers: tuple[str, ...] = ("elasticc",)
    class_mix: str = "uniform"
    source: str = "simulated"
    emulator_options: Mapping[str, Any] = field(default_factory=dict)
    client_config: Mapping[str, Any] = field(default_factory=dict)
    partitions: int = 1
    """Partitions of the topics the demo creates (alerts keyed by diaObjectId keep each object's order)."""
    drain_timeout: float = 60.0
    """Seconds to wait for classifications after the last alert went out, if they stop arriving."""


def ensure_topics(bootstrap: str, topics: Sequence[str], client_config: Mapping[str, Any], partitions: int = 1) -> None:
    """Create topics that do not exist yet (consumers then subscribe without waiting for auto-creation)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **producer_config(client_config)})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    for topic, future in admin.create_topics(wanted).items() if wanted else ():
        try:
            future.result(timeout=10)
        except Exception as exc:  # noqa: BLE001 - a topic created meanwhile by someone else is fine
            if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            log.debug("topic %s already exists", topic)


def record_source(store: Store, run_id: str, objects: Iterable[SourceObject], *, nights: Any = None,
                  ddf_objects: set[int] | None = None, hook: Any = None) -> list[dict[str, Any]]:
    """Record the truth and photometry of a source's objects; return their alerts in time order.

    Args:
        store: where the run is recorded.
        run_id: the run.
        objects: what the source yields; alerts may be ELAsTiCC or Rubin records (the store gets the fields it
            reads from either).
        nights: an :class:`alertmux.sources.Nights` window: alerts of other nights are neither recorded nor
            returned (every object's truth still is).
        ddf_objects: when given, the ids of the deep-drilling objects (``SourceObject.ddf``) are added to it, for
            routing to DESC's ddf-full/ddf-limited topics.
        hook: the plugin host's hook relay, for ``alertmux_alerts_recorded``.
    """
    from alertmux.sources import alert_mjd, object_id_of
    from alertmux.sources.streaming import store_view

    alerts: list[dict[str, Any]] = []
    truths: list[TruthRow] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        store.record_objects(run_id, truths, [store_view(a) for a in batch])
        if hook is not None and batch:
            hook.alertmux_alerts_recorded(store=store, run_id=run_id, alerts=list(batch))
        truths.clear()
        batch.clear()

    for obj in objects:
        kept = [a for a in obj.alerts if nights is None or nights.has_mjd(alert_mjd(a))]
        if obj.truth is not None:
            t = obj.truth
            truths.append(TruthRow(t.dia_object_id, t.class_id, t.gentype, t.peak_mjd, t.redshift))
        if obj.ddf and ddf_objects is not None:
            ddf_objects.update(i for i in (object_id_of(a) for a in obj.alerts) if i is not None)
            if obj.truth is not None:
                ddf_objects.add(obj.truth.dia_object_id)
        batch.extend(kept)
        alerts.extend(kept)
        if len(batch) >= 5000 or len(truths) >= 500:
            flush()
    flush()
    # The survey sends alerts as it observes: in time order across objects.
    alerts.sort(key=alert_mjd)
    return alerts


def stream_alerts(
    store: Store,
    run_id: str,
    alerts: Sequence[dict[str, Any]],
    *,
    bootstrap: str,
    topic: str,
    rate: float | None = None,
    client_config: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    hook: Any = None,
    payloads: Sequence[bytes] | None = None,
    schema: str = "elasticc.v0_9_1",
    processes: int | None = None,
    stage: str = "stream",
) -> StreamStats:
    """Send alerts to ``topic``, keyed by diaObjectId, recording when Kafka acknowledged each one.

    Alerts are re-encoded to ``schema``: ``elasticc.v0_9_1`` as schemaless Avro, or ``lsst.vX_Y`` in the
    Confluent wire format with Rubin's schema id (see :mod:`alertmux.sources.streaming`). ``payloads``, when
    given, are the alerts already encoded (see :func:`encode_alerts`); otherwise they are encoded on every core
    while the first ones are already being sent.

    The sent time is the moment Kafka acknowledged that alert (its delivery report), per alert and topic; DESC
    stamped whole flushes of up to 1000 alerts, which biases turnaround by up to a flush. Alerts already
    acknowledged on this topic in this run are skipped before encoding, so a restarted stream resumes. An alert
    that cannot be encoded, or that Kafka refuses, is logged and counted in ``failed``; the stream goes on. An
    interrupted stream (an exception, KeyboardInterrupt) still records the acknowledgements it has received.
    """
    from alertmux.sources import alert_id_of, object_id_of

    already = store.sent_alert_ids(run_id, topic)
    pending = [i for i, a in enumerate(alerts) if alert_id_of(a) not in already]
    stats = StreamStats(alerts=len(alerts), skipped=len(alerts) - len(pending))
    if payloads is not None:
        encoded: Iterator[bytes | str] = (payloads[i] for i in pending)
    else:  # before the producer exists: the encoder forks, and librdkafka's threads must not be running then
        encoded = _encode_stream([alerts[i] for i in pending], schema, processes)
    producer = make_producer(bootstrap, client_config)
    acked: list[tuple[int, int]] = []

    def on_delivery(alert_id: int, err: Any, _msg: Any) -> None:
        if err is not None:
            stats.failed += 1
            log.warning("alert %s not delivered to %s: %s", alert_id, topic, err)
        else:
            acked.append((alert_id, now_ms()))

    def drain(force: bool = False, flush_timeout: float | None = None) -> None:
        if force and flush_timeout is not None:
            producer.flush(flush_timeout)
        elif force:
            producer.flush()
        else:
            producer.poll(0)
        if acked and (force or len(acked) >= 1000):
            done = acked[:]
            acked.clear()
            by_time: dict[int, list[int]] = {}
            for alert_id, ms in done:
                by_time.setdefault(ms, []).append(alert_id)
            for ms, ids in by_time.items():
                store.record_sent(run_id, topic, ids, ms)
            stats.sent += len(done)
            if hook is not None:
                hook.alertmux_alerts_sent(store=store, run_id=run_id, topic=topic, alert_ids=[a for a, _ in done])

    started = time.monotonic()
    try:
        for n, (i, payload) in enumerate(zip(pending, encoded, strict=True)):
            alert = alerts[i]
            alert_id = alert_id_of(alert)
            if isinstance(payload, str):
                stats.failed += 1
                log.warning("alert %s cannot be encoded as %s, not sent: %s", alert_id, schema, payload)
                continue
            if rate:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            # Keyed by object so that, on a partitioned topic, an object's alerts stay in order.
            object_id = object_id_of(alert)
            key = None if object_id is None else str(object_id).encode()
            while True:
                try:
                    producer.produce(topic, payload, key=key, on_delivery=partial(on_delivery, alert_id))
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    producer.poll(0.1)
            drain()
            if progress and n % 200 == 0:
                progress(stage, n, len(pending))
        drain(force=True)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM, a store error): record what Kafka has acknowledged so far, waiting a
        # little for the deliveries in flight, so that a resumed run does not send those alerts again.
        try:
            drain(force=True, flush_timeout=5.0)
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            log.exception("could not record the acknowledged alerts of an interrupted stream")
        raise
    finally:
        close = getattr(encoded, "close", None)
        if close is not None:
            close()  # stops the encoding processes if the stream ended early
    stats.seconds = time.monotonic() - started
    if progress:
        progress(stage, len(pending), len(pending))
    return stats


_ENCODE_JOB: list[Any] = []
"""(alerts, schema) of the encoding in progress: set just before the pool forks, so workers inherit it."""
_ENCODE_LOCK = threading.Lock()


def _encode_one(alert: dict[str, Any], schema: str) -> bytes | str:
    from alertmux.sources import schema_of
    from alertmux.sources.streaming import encode

    try:
        if schema == "elasticc.v0_9_1" and schema_of(alert) == schema:
            return schemaless_encode(alert, load_schema("elasticc.v0_9_1.alert"))
        return encode(alert, schema)
    except Exception as exc:  # noqa: BLE001 - reported per alert by the caller; one bad alert stops nothing
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _encode_range(bounds: tuple[int, int]) -> list[bytes | str]:
    alerts, schema = _ENCODE_JOB
    return [_encode_one(alerts[i], schema) for i in range(*bounds)]


def _encode_stream(alerts: Sequence[dict[str, Any]], schema: str = "elasticc.v0_9_1",
                   processes: int | None = None) -> Iterator[bytes | str]:
    """Payloads of ``alerts`` in order (an error message instead of a payload for an alert that would not encode).

    With several processes the pool is forked here, before the caller starts any thread, and the workers
    inherit the alerts (nothing is pickled to them); payloads come back chunk by chunk, in order, so sending
    starts after the first chunk instead of after the last.
    """
    processes = processes or os.cpu_count() or 1
    if processes == 1 or len(alerts) < 500:
        return (_encode_one(alert, schema) for alert in alerts)
    size = max(50, min(500, len(alerts) // (processes * 8)))
    with _ENCODE_LOCK:
        _ENCODE_JOB[:] = [alerts, schema]
        gc.freeze()  # the children never collect the parent's objects (librdkafka handles among them)
        try:
            pool = multiprocessing.get_context("fork").Pool(processes)
        finally:
            gc.unfreeze()
            _ENCODE_JOB.clear()
    chunks = pool.imap(_encode_range, [(i, min(i + size, len(alerts))) for i in range(0, len(alerts), size)])

    def payloads() -> Iterator[bytes | str]:
        try:
            for chunk in chunks:
                yield from chunk
        finally:
            pool.terminate()
            pool.join()

    return payloads()


def encode_alerts(alerts: Sequence[dict[str, Any]], processes: int | None = None, *,
                  schema: str = "elasticc.v0_9_1") -> list[bytes]:
    """Encode alerts for ``schema`` before sending, on every core.

    ``elasticc.v0_9_1`` gives schemaless Avro; ``lsst.vX_Y`` the Confluent wire format. Alerts of another schema
    than the output one (ELAsTiCC v0_9, Rubin records) are converted first. fastavro encodes a full-size Rubin
    alert in about 4 ms of one core (alerts_perf.md: ~255 alerts/s), so encoding while sending would make the
    streamer, not Kafka, set the pace; like Rubin's own simulator we can encode first, then send at the
    requested rate. Call it before starting threads: the pool forks.

    Raises:
        UsageError: when an alert cannot be encoded (its id and the reason are given).
    """
    from alertmux.sources import alert_id_of

    payloads = list(_encode_stream(alerts, schema, processes))
    for alert, payload in zip(alerts, payloads, strict=True):
        if isinstance(payload, str):
            raise UsageError(f"alert {alert_id_of(alert)} cannot be encoded as {schema}: {payload}")
    return payloads  # type: ignore[return-value]  # every entry was checked to be bytes


def _iter_progress(items: Iterable[SourceObject], total: int, progress: Progress | None) -> Iterator[SourceObject]:
    for i, item in enumerate(items, 1):
        if progress and i % 20 == 0:
            progress("simulate", i, total)
        yield item
    if progress:
        progress("simulate", total, total)


def run_demo(host: PluginHost, options: DemoOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole local harness once and return the run's summary (see :meth:`Store.summary`)."""
    emulated = {}
    for name in options.brokers:
        spec = host.broker(name)
        if spec.emulator is None:
            raise UsageError(f"broker {name!r} has no emulator, so the demo cannot run it offline")
        emulated[name] = spec
    source = host.alert_source(options.source)
    with ExitStack() as stack:
        if options.bootstrap:
            bootstrap = options.bootstrap
            client_config = dict(options.client_config)
            check_reachable(bootstrap, client_config, timeout=10)
        else:
            kafka = stack.enter_context(EmbeddedKafka())
            bootstrap = kafka.bootstrap
            client_config = local_client_config() | dict(options.client_config)
        store = open_store(options.db)
        stack.callback(store.close)
        run_id = store.start_run("demo", {
            "objects": options.objects, "seed": options.seed, "brokers": list(options.brokers),
            "class_mix": options.class_mix, "bootstrap": bootstrap if options.bootstrap else "embedded",
        })
        alert_topic = f"alertmux-{run_id}-alerts"
        objects = source.open(objects=options.objects, seed=options.seed, class_mix=options.class_mix)
        alerts = record_source(store, run_id, _iter_progress(objects, options.objects, progress), hook=host.hook)
        payloads = encode_alerts(alerts)
        topics = [alert_topic] + [t for spec in emulated.values() for t in spec.emulator.output_topics(run_id)]
        ensure_topics(bootstrap, topics, client_config, partitions=options.partitions)
        # Emulators that push (AMPEL's) PUT to an in-process `alertmux serve`, which stores what they send.
        pushing = {n for n, s in emulated.items() if s.push is not None and not s.emulator.output_topics(run_id)}
        push_options: dict[str, str] = {}
        if pushing:
            from alertmux.serve import push_endpoint

            push_options = stack.enter_context(push_endpoint(host, options.db, run_id))

        state = _DemoState(options.drain_timeout, progress)
        threads = []
        for name, spec in emulated.items():
            assert spec.emulator is not None
            ctx = EmulatorContext(
                bootstrap=bootstrap, alert_topics=(alert_topic,), store=open_store(options.db), run_id=run_id,
                client_config=client_config, stop=state.streaming_done.is_set, expected_alerts=lambda: state.sent,
                options={"seed": options.seed, **options.emulator_options, **(push_options if name in pushing else {})},
            )
            threads.append(state.worker(f"emulator-{name}", partial(spec.emulator.run, ctx)))
            state.stats[name] = ListenStats()
            if name in pushing:  # nothing to consume: follow what the endpoint stores
                threads.append(state.worker(f"await-{name}", partial(_await_pushed, name, options.db, run_id, state)))
            else:
                listen_options = ListenOptions(
                    bootstrap=bootstrap, topics=spec.emulator.output_topics(run_id),
                    group_id=f"alertmux-demo-{run_id}", start="earliest", client_config=client_config,
                )
                ingestor = Ingestor(host, name, open_store(options.db), run_id)
                threads.append(state.worker(f"listen-{name}", partial(_collect, ingestor, listen_options, state,
                                                                        host.hook)))
        for thread in threads:
            thread.start()
        # Stream only once every collector is ready, or turnaround would measure the consumer-group join.
        deadline = time.monotonic() + 60
        for _ in emulated:
            if not state.ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("a listener was not assigned its partitions within 60 s; streaming anyway")
                break

        stats = stream_alerts(store, run_id, alerts, bootstrap=bootstrap, topic=alert_topic,
                              client_config=client_config, progress=progress, hook=host.hook, payloads=payloads)
        state.stream_finished(stats.sent, {n: s.emulator.answers_per_alert for n, s in emulated.items()
                                           if s.emulator is not None})
        for thread in threads:
            thread.join()
        if state.errors:
            raise state.errors[0]
        summary = store.summary(run_id)
        summary["run_id"] = run_id
        summary["db"] = str(options.db)
        summary["stream_seconds"] = round(stats.seconds, 2)
        store.finish_run(run_id, summary)
        return summary


class _DemoState:
    """What the demo's threads share: the stream's progress, each broker's counts, and the first error."""

    def __init__(self, drain_timeout: float, progress: Progress | None) -> None:
        self.drain_timeout = drain_timeout
        self.progress = progress
        self.streaming_done = threading.Event()
        self.ready = threading.Semaphore(0)
        """Released once per broker when its collector can receive (partitions assigned, endpoint up)."""
        self.sent: int | None = None
        self.done_at = 0.0
        self.expected: dict[str, int] = {}
        self.stats: dict[str, ListenStats] = {}
        self.errors: list[BaseException] = []

    def worker(self, name: str, target: Callable[[], Any]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread after the join
                self.errors.append(exc)
                log.exception("harness worker %s failed", name)

        return threading.Thread(target=run, name=name, daemon=True)

    def stream_finished(self, sent: int, answers_per_alert: dict[str, int]) -> None:
        self.expected = {name: sent * n for name, n in answers_per_alert.items()}
        self.sent = sent
        self.done_at = time.monotonic()
        self.streaming_done.set()

    def track(self, name: str, stats: ListenStats) -> None:
        self.stats[name] = stats
        if self.progress:
            self.progress(f"classify {name}", stats.consumed, self.expected.get(name))

    def answered(self, name: str) -> bool:
        """Whether a broker's collector may stop: all answers in, or none for ``drain_timeout`` after the stream."""
        if self.errors:
            return True
        if not self.streaming_done.is_set():
            return False
        stats = self.stats[name]
        # Answers are stored messages: one Kafka message may carry several classifiers (a Fink alert: CATS, SNN...),
        # so rows count too, not only Kafka messages.
        if stats.consumed >= self.expected[name] or stats.stored + stats.duplicates >= self.expected[name]:
            return True
        quiet_since = max(stats.last_message or 0.0, self.done_at)
        if time.monotonic() - quiet_since > self.drain_timeout:
            log.warning("%s: %d of %d answers arrived before the drain timeout", name, stats.consumed,
                        self.expected[name])
            return True
        return False


def _collect(ingestor: Ingestor, options: ListenOptions, state: _DemoState, hook: Any) -> None:
    """Consume a broker's answers with the same loop as ``alertmux listen``."""
    name = ingestor.broker
    state.stats[name] = listen(ingestor, options, should_stop=partial(state.answered, name),
                               on_batch=partial(state.track, name), on_assigned=state.ready.release, hook=hook)


def _await_pushed(name: str, db: str | Path, run_id: str, state: _DemoState) -> None:
    """Follow what a pushing emulator's messages added to the store, until all are in (or they stop coming)."""
    store = open_store(db)
    stats = state.stats[name]
    state.ready.release()  # nothing to be assigned: the stream may start
    try:
        while not state.answered(name):
            count = store.count_messages(name, run_id)  # type: ignore[attr-defined]
            if count != stats.consumed:
                stats.consumed = stats.stored = count
                stats.last_message = time.monotonic()
                state.track(name, stats)
            time.sleep(0.1)
    finally:
        store.close()


def _until_answered(name: str, table: dict[str, ListenStats], expected: dict[str, int], streaming_done: threading.Event,
                    drain_timeout: float, errors: list[BaseException]) -> Callable[[], bool]:
    def should_stop() -> bool:
        if errors:
            return True
        if not streaming_done.is_set() or name not in expected:
            return False
        stats = table[name]
        if stats.consumed >= expected[name]:
            return True
        last = stats.last_message or stats.started
        return time.monotonic() - last > drain_timeout
    return should_stop
