"""The built-in ``ops`` plugin: ``alertmux status`` and ``alertmux supervise`` for running listeners in production.

* ``alertmux status``: per broker, the consumer group's lag (messages in Kafka not yet stored), the time of the
  last message stored and the unresolved dead letters.
* ``alertmux supervise``: runs N ``alertmux listen`` workers of one broker in one consumer group and restarts a
  worker that exits with an error, or that has stored nothing for ``--silent-after`` seconds while messages wait
  in Kafka (the DESC TOM's brokerpoll restarted a consumer silent for 300 s). A worker tells it is alive by
  touching its heartbeat file after every stored batch (the ``alertmux_classifications_stored`` hook below).

Registered through ``alertmux_register_commands`` like any plugin's commands.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from alertmux.errors import AlertmuxError, UsageError
from alertmux.hookspecs import hookimpl

log = logging.getLogger(__name__)
HEARTBEAT_ENV = "ALERTMUX_HEARTBEAT_FILE"
"""Set by ``supervise`` for each worker: the file the worker touches after each stored batch."""
_WORKER_MAIN = "import sys; from alertmux.cli import main; sys.argv[0] = 'alertmux'; main()"
_DB = click.option("--db", default="alertmux.db", show_default=True,
                   help="The store: a SQLite path or a postgresql:// URL.")


@dataclass
class PartitionLag:
    """Where a consumer group stands on one partition."""

    topic: str
    partition: int
    committed: int | None
    """The group's committed offset (None: never committed; consumption starts at the low watermark)."""
    high: int
    lag: int


@dataclass
class BrokerStatus:
    """What ``alertmux status`` reports for one broker."""

    broker: str
    last_message_ms: int | None = None
    last_message_age_s: float | None = None
    dead_letters: int = 0
    group: str | None = None
    lag: int | None = None
    partitions: list[PartitionLag] = field(default_factory=list)
    kafka_error: str | None = None


def _app() -> Any:
    return click.get_current_context().find_root().obj


# -- what the store says ------------------------------------------------------------------------------------------
def store_activity(store: Any) -> tuple[dict[str, int], dict[str, int]]:
    """(last ingest time per broker, unresolved dead letters per broker), from a SQLite or PostgreSQL store.

    The latest message is read per classifier, which PostgreSQL answers from an index without scanning the table.
    """
    last: dict[str, int] = {}
    for broker, latest in store.conn.execute(
        "SELECT c.broker, (SELECT MAX(m.ingested_ms) FROM messages m WHERE m.classifier_id = c.classifier_id)"
        " FROM classifiers c"
    ).fetchall():
        if latest is not None:
            last[broker] = max(latest, last.get(broker, latest))
    dead = dict(store.conn.execute(
        "SELECT broker, COUNT(*) FROM dead_letters WHERE resolved_ms IS NULL GROUP BY broker").fetchall())
    return last, {k: int(v) for k, v in dead.items()}


# -- what Kafka says ----------------------------------------------------------------------------------------------
def group_lag(bootstrap: str, client_config: Mapping[str, Any], group: str, topics: Sequence[str] = (),
              pattern: str | None = None, timeout: float = 10.0) -> list[PartitionLag]:
    """The lag of a consumer group on every partition of its topics (named, or matching ``pattern``).

    Raises:
        AlertmuxError: Kafka did not answer.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from alertmux.kafka import producer_config

    quiet = logging.getLogger("alertmux.librdkafka.status")
    quiet.setLevel(logging.CRITICAL)
    config = {**producer_config(client_config), "bootstrap.servers": bootstrap, "group.id": group,
              "enable.auto.commit": False, "logger": quiet}
    consumer = Consumer(config)
    try:
        metadata = consumer.list_topics(timeout=timeout)
        regex = re.compile(pattern.removeprefix("^")) if pattern else None
        names = [t for t in topics if t in metadata.topics] if topics else sorted(
            t for t in metadata.topics if regex is not None and regex.match(t))
        wanted = [TopicPartition(t, p) for t in names for p in sorted(metadata.topics[t].partitions)]
        result = []
        for tp in consumer.committed(wanted, timeout=timeout) if wanted else []:
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)
            committed = tp.offset if tp.offset >= 0 else None
            result.append(PartitionLag(tp.topic, tp.partition, committed, high,
                                       max(0, high - (committed if committed is not None else low))))
        return result
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        raise AlertmuxError(f"Kafka at {bootstrap} did not answer: {getattr(error, 'str', lambda: error)()}") from None
    finally:
        consumer.close()


def _kafka_target(app: Any, broker: str, bootstrap: str | None, topics: Sequence[str],
                  group: str | None) -> tuple[str | None, dict[str, Any], tuple[str, ...], str | None, str]:
    """(bootstrap, client config, topics, pattern, group) for a broker, from the options, its config and spec."""
    settings = app.config.broker(broker)
    client_config = app.config.kafka(broker)
    target = bootstrap or settings.get("bootstrap") or client_config.pop("bootstrap.servers", None)
    client_config.pop("bootstrap.servers", None)
    spec = app.host.brokers().get(broker)
    kafka = spec.kafka if spec is not None else None
    names = tuple(topics) or tuple(settings.get("topics", ())) or (kafka.topics if kafka else ())
    pattern = None if names else settings.get("topic_pattern") or (kafka.topic_pattern if kafka else None)
    return target, client_config, names, pattern, group or settings.get("group") or f"alertmux-{broker}"


# -- status ---------------------------------------------------------------------------------------------------------
@click.command()
@_DB
@click.option("--broker", "brokers", multiple=True, help="Only these brokers (repeatable); default: every broker in"
                                                          " the store and in the configuration.")
@click.option("--bootstrap", help="Kafka bootstrap servers, for the lag (default: each broker's configuration).")
@click.option("--topic", "topics", multiple=True, help="Topics the group reads (default: the broker's).")
@click.option("--group", help="Consumer group (default: the broker's, alertmux-<broker>).")
@click.option("--kafka-timeout", default=10.0, show_default=True, help="Seconds to wait for Kafka's answers.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
def status(db: str, brokers: tuple[str, ...], bootstrap: str | None, topics: tuple[str, ...], group: str | None,
           kafka_timeout: float, as_json: bool) -> None:
    """Per broker: consumer lag, the last message stored and unresolved dead letters."""
    from alertmux.store import open_store

    app = _app()
    store = open_store(db)
    try:
        last, dead = store_activity(store)
    finally:
        store.close()
    names = list(brokers) or sorted(set(last) | set(dead) | set(app.config.data.get("brokers", {})))
    now = time.time() * 1000
    report = []
    for name in names:
        entry = BrokerStatus(name, last.get(name), None, dead.get(name, 0))
        if entry.last_message_ms is not None:
            entry.last_message_age_s = round((now - entry.last_message_ms) / 1000, 1)
        target, client_config, names_, pattern, entry.group = _kafka_target(app, name, bootstrap, topics, group)
        if target and (names_ or pattern):
            try:
                entry.partitions = group_lag(target, client_config, entry.group, names_, pattern, kafka_timeout)
                entry.lag = sum(p.lag for p in entry.partitions)
            except AlertmuxError as exc:
                entry.kafka_error = str(exc)
        elif not target:
            entry.kafka_error = "no bootstrap servers (pass --bootstrap or configure the broker)"
        else:
            entry.kafka_error = "no topics known (pass --topic)"
        report.append(entry)
    if as_json:
        click.echo(json.dumps({"brokers": [asdict(e) for e in report]}, indent=2))
        return
    _print_status(report)


def _print_status(report: list[BrokerStatus]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("broker", "group", "lag", "last message (UTC)", "age", "dead letters")
    for e in report:
        when = (datetime.fromtimestamp(e.last_message_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
                if e.last_message_ms is not None else "-")
        lag = str(e.lag) if e.lag is not None else f"? ({e.kafka_error})"
        age = f"{e.last_message_age_s:g} s" if e.last_message_age_s is not None else "-"
        table.add_row(e.broker, e.group or "-", lag, when, age, str(e.dead_letters))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


# -- supervise ------------------------------------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    heartbeat: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    stopping_since: float | None = None
    done: bool = False

    def silent_for(self, startup_grace: float) -> float:
        """Seconds since the worker last stored a batch; a new worker gets ``startup_grace`` to join and start."""
        try:
            return time.time() - max(self.heartbeat.stat().st_mtime, self.started)
        except FileNotFoundError:
            return max(0.0, time.time() - self.started - startup_grace)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--broker", "broker_name", required=True, help="Broker plugin name.")
@click.option("--workers", default=1, show_default=True, help="Worker processes in the consumer group.")
@click.option("--silent-after", default=300.0, show_default=True,
              help="Restart a worker that stored nothing for this many seconds while messages wait in Kafka.")
@click.option("--startup-grace", default=60.0, show_default=True,
              help="Seconds a new worker gets to join the group and store its first batch before silence counts.")
@click.option("--grace", default=15.0, show_default=True, help="Seconds a stopping worker gets before SIGKILL.")
@click.option("--check-every", default=5.0, show_default=True, help="Seconds between lag checks.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: the broker's configuration).")
@click.option("--topic", "topics", multiple=True, help="Topic (repeatable); default: the broker's topics.")
@click.option("--group", help="Consumer group id (default alertmux-<broker>).")
@_DB
@click.argument("listen_args", nargs=-1, type=click.UNPROCESSED)
def supervise(broker_name: str, workers: int, silent_after: float, startup_grace: float, grace: float,
              check_every: float, bootstrap: str | None, topics: tuple[str, ...], group: str | None, db: str,
              listen_args: tuple[str, ...]) -> None:
    """Run N `alertmux listen` workers in one group; restart those that fail or fall silent with work waiting.

    Arguments after the options (e.g. `-- --from earliest`) are passed to every `alertmux listen`.
    """
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    app = _app()
    target, client_config, names, pattern, group = _kafka_target(app, broker_name, bootstrap, topics, group)
    if not target:
        raise UsageError(f"supervise needs --bootstrap (or bootstrap in [brokers.{broker_name}] of alertmux.toml)")
    command = [sys.executable, "-c", _WORKER_MAIN, *_root_options(), "listen", "--broker", broker_name,
               "--bootstrap", target, "--group", group, "--db", db,
               *(arg for t in names for arg in ("--topic", t)), *listen_args]
    heartbeats = Path(tempfile.mkdtemp(prefix="alertmux-heartbeats-"))
    pool = [_Worker(i, heartbeats / f"worker-{i}") for i in range(workers)]
    stop: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _f: stop.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    waiting: int | None = None
    next_check = 0.0
    try:
        for worker in pool:
            _start(worker, command)
        while not stop and not all(w.done for w in pool):
            time.sleep(0.5)
            if time.monotonic() >= next_check and (names or pattern):
                next_check = time.monotonic() + check_every
                try:
                    waiting = sum(p.lag for p in group_lag(target, client_config, group, names, pattern))
                except AlertmuxError as exc:
                    waiting = None
                    log.warning("lag unknown (%s): a silent worker is restarted on silence alone", exc)
            for worker in pool:
                _watch(worker, command, silent_after, startup_grace, grace, waiting)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_all(pool, grace)
        for worker in pool:
            worker.heartbeat.unlink(missing_ok=True)
        heartbeats.rmdir()
    click.echo(json.dumps({"broker": broker_name, "workers": workers, "restarts": sum(w.restarts for w in pool)}))


def _root_options() -> list[str]:
    """The global options this command was given (config file, verbosity), for the workers."""
    params = click.get_current_context().find_root().params
    options = ["-v"] * int(params.get("verbose") or 0)
    if params.get("quiet"):
        options.append("-q")
    if params.get("log_json"):
        options.append("--log-json")
    if params.get("config_path"):
        options += ["--config", str(params["config_path"])]
    return options


def _start(worker: _Worker, command: list[str]) -> None:
    worker.heartbeat.unlink(missing_ok=True)
    env = {**os.environ, HEARTBEAT_ENV: str(worker.heartbeat)}
    worker.proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    worker.started, worker.stopping_since = time.time(), None
    log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)


def _watch(worker: _Worker, command: list[str], silent_after: float, startup_grace: float, grace: float,
           waiting: int | None) -> None:
    proc = worker.proc
    if proc is None or worker.done:
        return
    code = proc.poll()
    if code is not None:
        if worker.stopping_since is not None or code != 0:
            if worker.stopping_since is None:
                log.warning("worker %d (pid %d) exited with code %d: restarting", worker.index, proc.pid, code)
                time.sleep(min(30.0, 2.0 ** min(worker.restarts, 5)))  # a worker failing at once must not spin
            worker.restarts += 1
            _start(worker, command)
        else:
            log.info("worker %d (pid %d) finished", worker.index, proc.pid)
            worker.done = True
        return
    if worker.stopping_since is not None:
        if time.time() - worker.stopping_since > grace:
            log.warning("worker %d (pid %d) did not stop within %g s: killing it", worker.index, proc.pid, grace)
            proc.kill()
        return
    silent = worker.silent_for(startup_grace)
    if silent > silent_after and (waiting is None or waiting > 0):
        work = f"{waiting} messages waiting" if waiting is not None else "lag unknown"
        log.warning("worker %d (pid %d) stored nothing for %.0f s with %s: restarting it", worker.index, proc.pid,
                    silent, work)
        worker.stopping_since = time.time()
        proc.terminate()


def _stop_all(pool: list[_Worker], grace: float) -> None:
    running = [w.proc for w in pool if w.proc is not None and w.proc.poll() is None]
    for proc in running:
        proc.terminate()  # each finishes its batch, commits and leaves the group
    deadline = time.monotonic() + grace
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- hooks ----------------------------------------------------------------------------------------------------------
_last_beat = [0.0]


@hookimpl
def alertmux_classifications_stored(broker: str, count: int) -> None:
    """A supervised worker's heartbeat: touch its file (at most once a second) after a stored batch."""
    path = os.environ.get(HEARTBEAT_ENV)
    now = time.monotonic()
    if path and now - _last_beat[0] >= 1.0:
        _last_beat[0] = now
        Path(path).touch()


@hookimpl
def alertmux_register_commands(cli: click.Group) -> None:
    """Add ``status`` and ``supervise``."""
    cli.add_command(status)
    cli.add_command(supervise)
