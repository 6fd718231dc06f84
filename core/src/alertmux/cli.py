"""The ``alertmux`` command line. Stdout carries results only (JSON lines, tables); logs and progress go to stderr."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from alertmux import __version__
from alertmux.config import Config, load_config
from alertmux.errors import AlertmuxError, UsageError
from alertmux.host import PluginHost

log = logging.getLogger("alertmux")
stderr = Console(stderr=True, soft_wrap=True)  # a message is one line, however narrow the terminal


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(verbose: int, quiet: bool, log_json: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _Context:
    def __init__(self, host: PluginHost | None = None) -> None:
        self.config_path: Path | None = None
        self._host = host
        self._config: Config | None = None

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = PluginHost()
            for problem in self._host.problems:
                stderr.print(f"[yellow]warning:[/] plugin {problem.plugin}: {problem.error}")
        return self._host

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_ctx = click.make_pass_decorator(_Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alertmux")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option("--log-json", is_flag=True, help="Logs as JSON lines on stderr.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Config file (default ./alertmux.toml).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, log_json: bool, config_path: Path | None) -> None:
    """alertmux: connect alert brokers, science collaborations and telescopes."""
    _setup_logging(verbose, quiet, log_json)
    ctx.ensure_object(_Context).config_path = config_path


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Any]:
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


@contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM set a flag the loops poll, so they finish the batch in hand and commit before leaving."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in (signal.SIGINT,
                                                                                               signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that an interrupted stream records what was sent."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _resume_hint(run_id: str) -> Iterator[None]:
    """On Ctrl-C or SIGTERM, say how to resume: what Kafka acknowledged is recorded and will not be resent."""
    try:
        yield
    except KeyboardInterrupt:
        stderr.print(f"interrupted: run again with --run {run_id} to send the rest", highlight=False)
        raise


# -- plugins ------------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@pass_ctx
def plugins(ctx: _Context, as_json: bool) -> None:
    """List installed plugins with their distribution, version and what they provide."""
    infos = ctx.host.plugins()
    if as_json:
        problems = [asdict(p) for p in ctx.host.problems]
        click.echo(json.dumps({"plugins": [asdict(i) for i in infos], "problems": problems}, indent=2))
        return
    table = Table("plugin", "distribution", "version", "provides")
    for info in infos:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.provides.items())
        table.add_row(info.name, info.distribution or "-", info.version or "-", provides)
    Console().print(table)
    for problem in ctx.host.problems:
        stderr.print(f"[red]problem[/] {problem.plugin}: {problem.error}")


# -- demo ---------------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--objects", default=200, show_default=True, help="Simulated objects (alerts: about 15 per object).")
@click.option("--seed", default=0, show_default=True)
@click.option("--db", default="alertmux.db", show_default=True, help="SQLite file or postgresql:// URL.")
@click.option("--bootstrap", help="Kafka bootstrap servers; default: start an embedded broker for this run.")
@click.option("--brokers", default="elasticc", show_default=True, help="Comma-separated emulated brokers.")
@click.option("--class-mix", type=click.Choice(["uniform", "elasticc"]), default="uniform", show_default=True)
@click.option("--mode", type=click.Choice(["last", "after3"]), default="last", show_default=True,
              help="Emulator behaviour: last-classification matrix, or after-three-detections then last.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write <db>.html, the scoring report.")
@click.option("--partitions", default=1, show_default=True, help="Partitions of the alert and classification topics.")
@click.option("--followup", is_flag=True,
              help="Then rank, submit to the emulated LCO, SOAR and Gemini, poll, and report spectra back.")
@pass_ctx
def demo(ctx: _Context, objects: int, seed: int, db: str, bootstrap: str | None, brokers: str, class_mix: str,
         mode: str, report: bool, partitions: int, followup: bool) -> None:
    """Run the whole local harness: simulate, stream, emulate brokers, ingest, summarize."""
    from alertmux.harness import DemoOptions, run_demo

    options = DemoOptions(
        db=db, objects=objects, seed=seed, bootstrap=bootstrap, class_mix=class_mix,
        brokers=tuple(b.strip() for b in brokers.split(",") if b.strip()),
        emulator_options={"mode": mode}, client_config=ctx.config.kafka() if bootstrap else {},
        partitions=partitions,
    )
    followup_lines: list[str] = []
    with _progress() as progress:
        if followup:
            from alertmux.followup.demo import run_followup_demo, summary_lines

            result = run_followup_demo(db, objects=objects, seed=seed, bootstrap=bootstrap,
                                       client_config=options.client_config, brokers=options.brokers,
                                       class_mix=class_mix, progress=progress)
            summary, followup_lines = result["demo"], list(summary_lines(result))
        else:
            summary = run_demo(ctx.host, options, progress=progress)
    _print_summary(summary)
    for line in followup_lines:
        Console().print(line, markup=False)
    if report:
        from alertmux.report import write_report

        report_path = Path(db).with_suffix(".html") if "://" not in db else Path("alertmux-report.html")
        write_report(db, report_path, run_id=summary["run_id"])
        Console().print(f"report: {report_path}")


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def _print_summary(summary: dict[str, Any]) -> None:
    out = Console() if sys.stdout.isatty() else Console(width=160)
    db = str(summary.get("db"))
    if "://" in db:
        from alertmux.store_pg import redact_url

        db = redact_url(db)
    out.print(f"run {summary.get('run_id')} -> {db}")
    out.print(f"alerts sent: {summary['alerts_sent']}   dead letters: {summary['dead_letters']}")
    table = Table("broker", "messages", "classifications", "dead letters", "turnaround p50", "p90", "p99",
                  "top-1 accuracy", "objects")
    for broker, info in summary["brokers"].items():
        t = info["turnaround_s"]
        table.add_row(broker, str(info["messages"]), str(info["classifications"]), str(info["dead_letters"]),
                      _fmt(t["p50"], " s"), _fmt(t["p90"], " s"), _fmt(t["p99"], " s"),
                      _fmt(info["top1_accuracy"]), str(info["objects_scored"]))
    out.print(table)


# -- stream -------------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--source", default="simulated", show_default=True,
              help="Alert source plugin: simulated, elasticc-files, snana, rubin, kafka (alertmux plugins lists them).")
@click.option("--path", help="What the source reads: a file, a directory or a glob (elasticc-files, snana, rubin).")
@click.option("--source-option", "source_options", multiple=True, metavar="KEY=VALUE",
              help="A source setting (repeatable; kafka.KEY=VALUE for librdkafka); also read from [sources.NAME].")
@click.option("--objects", default=200, show_default=True, help="Objects to simulate (simulated source).")
@click.option("--seed", default=0, show_default=True, help="Simulation seed (simulated source).")
@click.option("--class-mix", type=click.Choice(["uniform", "elasticc"]), default="uniform", show_default=True)
@click.option("--rate", default="max", show_default=True, help="Alerts per second, or 'max'.")
@click.option("--nights", help="Simulated nights D1:D2 (integer MJDs, night changing at 12:00 UTC): only their"
                               " alerts, sent night by night.")
@click.option("--schema", "out_schema", default="elasticc.v0_9_1", show_default=True,
              help="Output schema: elasticc.v0_9_1 (schemaless Avro) or lsst.vX_Y (Confluent wire format).")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: [kafka] bootstrap.servers in the config).")
@click.option("--topic", required=True,
              help="Topic; a {part} placeholder splits the stream as DESC did: wfd, ddf-full, ddf-limited.")
@click.option("--db", default="alertmux.db", show_default=True, help="SQLite file or postgresql:// URL.")
@click.option("--run", "run_id", help="Resume this run: alerts it already sent are not sent again.")
@click.option("--processes", type=int, help="Encoding processes (default: one per core).")
@click.option("--partitions", type=int, help="Create the topic(s) with this many partitions when they do not exist"
                                             " (alerts are keyed by diaObjectId, so an object's stay in order).")
@pass_ctx
def stream(ctx: _Context, source: str, path: str | None, source_options: tuple[str, ...], objects: int, seed: int,
           class_mix: str, rate: str, nights: str | None, out_schema: str, bootstrap: str | None, topic: str,
           db: str, run_id: str | None, processes: int | None, partitions: int | None) -> None:
    """Stream alerts from a source to Kafka, recording truth and per-(alert, topic) sent times.

    Prints one JSON summary line; bad inputs (a corrupt file in a directory...) are reported on stderr and
    skipped. Run again with --run ID to resume, also after Ctrl-C or SIGTERM: what Kafka acknowledged is not
    sent twice.
    """
    import time

    from alertmux.harness import record_source, stream_alerts
    from alertmux.kafka import check_reachable
    from alertmux.sources import Nights, alert_mjd, night_of, redact_options, source_settings
    from alertmux.sources.streaming import check_output_schema, route
    from alertmux.store import open_store

    per_second = _parse_rate(rate)
    window = Nights.parse(nights)
    check_output_schema(out_schema)
    if processes is not None and processes < 1:
        raise UsageError("--processes must be at least 1")
    client_config = ctx.config.kafka()
    bootstrap = bootstrap or client_config.pop("bootstrap.servers", None)
    client_config.pop("bootstrap.servers", None)
    if not bootstrap:
        raise UsageError("stream needs --bootstrap (or bootstrap.servers in the [kafka] table of alertmux.toml)")
    spec = ctx.host.alert_source(source)
    settings = source_settings(ctx.config, source)
    for item in source_options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--source-option must be KEY=VALUE, not {item!r}")
        if key.startswith("kafka."):
            settings.setdefault("kafka", {})[key.removeprefix("kafka.")] = value
        else:
            settings[key.strip()] = value
    if path is not None:
        settings["path"] = path
    check_reachable(bootstrap, client_config, timeout=10)
    store = open_store(db)
    run_id = run_id or store.start_run("stream", {
        "source": source, "objects": objects, "seed": seed, "topic": topic, "schema": out_schema, "nights": nights,
        "rate": rate, "options": redact_options(settings),
    })
    bad_inputs: list[tuple[str, str]] = []

    def on_bad_input(where: str, reason: str) -> None:
        bad_inputs.append((where, reason))
        stderr.print(f"[yellow]skipped[/] {escape(where)}: {escape(reason)}", highlight=False)

    started = time.monotonic()
    per_topic: dict[str, dict[str, int]] = {}
    with _sigterm_interrupts(), _resume_hint(run_id), _progress() as progress:
        ddf: set[int] = set()
        opened = spec.open(**{"objects": objects, "seed": seed, "class_mix": class_mix, **settings, "nights": window,
                              "on_bad_input": on_bad_input})
        alerts = record_source(store, run_id, opened, nights=window, ddf_objects=ddf, hook=ctx.host.hook)
        # DESC's night-by-night mode: each night goes out (to every topic) before the next one starts.
        batches: dict[int | None, list[dict[str, Any]]] = {}
        for alert in alerts:
            batches.setdefault(night_of(alert_mjd(alert)) if window else None, []).append(alert)
        plan = [(night, routed) for night, batch in batches.items() for routed in route(batch, topic, ddf)]
        totals: dict[str, int] = {}
        for _, (name, part) in plan:
            totals[name] = totals.get(name, 0) + len(part)
        if partitions:
            from alertmux.harness import ensure_topics

            ensure_topics(bootstrap, sorted(totals), client_config, partitions=partitions)
        for _night, (name, part) in plan:
            counts = per_topic.setdefault(name, {"alerts": 0, "sent": 0, "skipped": 0, "failed": 0})
            offset = counts["alerts"]

            def shifted(stage: str, done: int, _total: int | None, offset: int = offset, name: str = name) -> None:
                if progress:
                    progress(stage, offset + done, totals[name])

            stats = stream_alerts(store, run_id, part, bootstrap=bootstrap, topic=name, rate=per_second,
                                  client_config=client_config, progress=shifted if progress else None,
                                  hook=ctx.host.hook, schema=out_schema, processes=processes, stage=name[-28:])
            for key in counts:
                counts[key] += getattr(stats, key)
    seconds = time.monotonic() - started
    total = {key: sum(c[key] for c in per_topic.values()) for key in ("alerts", "sent", "skipped", "failed")}
    nights_sent = sorted(night for night in batches if night is not None)
    summary = {"run_id": run_id, "source": source, "schema": out_schema, "topic": topic, **total,
               "topics": per_topic, "nights": [nights_sent[0], nights_sent[-1]] if nights_sent else None,
               "bad_inputs": len(bad_inputs), "seconds": round(seconds, 3)}
    store.finish_run(run_id, summary)
    store.close()
    click.echo(json.dumps(summary))
    if total["failed"]:
        raise AlertmuxError(f"{total['failed']} alert(s) were not sent (see the warnings above); "
                            f"run again with --run {run_id} to retry them")


def _parse_rate(rate: str) -> float | None:
    if rate == "max":
        return None
    try:
        value = float(rate)
    except ValueError:
        raise UsageError(f"--rate must be a number of alerts per second or 'max', not {rate!r}") from None
    if value <= 0:
        raise UsageError("--rate must be positive")
    return value


# -- listen -------------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--broker", "broker_name", required=True, help="Broker plugin name.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: the broker's config, then [kafka]).")
@click.option("--topic", "topics", multiple=True, help="Topic to read (repeatable); default: the broker's topics.")
@click.option("--group", help="Consumer group id (default alertmux-<broker>).")
@click.option("--from", "start", type=click.Choice(["earliest", "latest", "committed"]), default="committed",
              show_default=True)
@click.option("--db", default="alertmux.db", show_default=True, help="SQLite file or postgresql:// URL.")
@click.option("--max-messages", type=int, help="Stop after consuming this many messages (dead letters included).")
@click.option("--idle-exit", type=float, help="Stop after this many seconds without a message.")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True)
@pass_ctx
def listen(ctx: _Context, broker_name: str, bootstrap: str | None, topics: tuple[str, ...], group: str | None,
           start: str, db: str, max_messages: int | None, idle_exit: float | None, connect_timeout: float) -> None:
    """Consume one broker's topics into the store (the same loop the demo uses)."""
    from alertmux.ingest import Ingestor
    from alertmux.kafka import ListenOptions
    from alertmux.kafka import listen as run_listen
    from alertmux.store import open_store

    spec = ctx.host.broker(broker_name)
    settings = ctx.config.broker(broker_name)
    client_config = ctx.config.kafka(broker_name)
    bootstrap = bootstrap or settings.get("bootstrap") or client_config.pop("bootstrap.servers", None)
    client_config.pop("bootstrap.servers", None)
    if not bootstrap:
        raise UsageError(f"listen needs --bootstrap (or bootstrap in [brokers.{broker_name}] of alertmux.toml)")
    topics = topics or tuple(settings.get("topics", ())) or (spec.kafka.topics if spec.kafka else ())
    pattern = None if topics else settings.get("topic_pattern") or (spec.kafka.topic_pattern if spec.kafka else None)
    if not topics and not pattern:
        raise UsageError(f"broker {broker_name} has no default topics: pass --topic")
    store = open_store(db)
    ingestor = Ingestor(ctx.host, broker_name, store)
    options = ListenOptions(
        bootstrap=bootstrap, topics=topics, topic_pattern=pattern, group_id=group or settings.get("group"),
        moving_pattern=(spec.kafka.moving_pattern if spec.kafka and pattern is spec.kafka.topic_pattern else None),
        start=start, max_messages=max_messages, idle_exit=idle_exit,  # type: ignore[arg-type]
        connect_timeout=connect_timeout, client_config=client_config,
    )
    with _stop_on_signals() as received, _progress() as progress:
        stats = run_listen(
            ingestor, options, should_stop=lambda: bool(received), hook=ctx.host.hook,
            on_batch=(lambda s: progress(f"listen {broker_name}", s.consumed, max_messages)) if progress else None,
        )
    store.close()
    report = {"broker": broker_name, "consumed": stats.consumed, "stored": stats.stored,
              "duplicates": stats.duplicates, "dead_letters": stats.dead_letters,
              "seconds": round(stats.elapsed, 3)}
    if ingestor.unknown_labels:
        report["unknown_labels"] = {f"{s}:{label}": n for (s, label), n in ingestor.unknown_labels.items()}
    click.echo(json.dumps(report))


# -- decode -------------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--broker", "broker_name", help="Decode as this broker's messages and print normalized records.")
@click.option("--registry", help="Schema registry URL for Confluent wire-format schema ids not shipped with"
                                 " lsst-alert-packet.")
@click.argument("files", nargs=-1, required=True)
@pass_ctx
def decode(ctx: _Context, broker_name: str | None, registry: str | None, files: tuple[str, ...]) -> None:
    """Decode payload files (alerts or broker messages) to JSON lines on stdout.

    The format and schema version found go to stderr. Alerts: ELAsTiCC (.avro, .avro.gz, NITE*.tar.gz; v0_9 and
    v0_9_1), Rubin lsst.vX_Y (Confluent wire format, Avro container, JSON) and SNANA simulations: a
    *_HEAD.FITS.gz (with its PHOT file beside it) prints {"alert": ..., "truth": ...} per alert it gives.
    """
    from alertmux.formats import decode_path, iter_files, to_json
    from alertmux.specs import Delivery

    failures = 0
    if broker_name:
        from alertmux.ingest import Ingestor
        from alertmux.models import ClassificationRecord

        ingestor = Ingestor(ctx.host, broker_name)
        for path, payload in iter_files(list(files)):
            delivery = Delivery(source=path)
            try:
                messages = ingestor.decode(payload, delivery)
            except Exception as exc:  # noqa: BLE001 - reported per file, the others still decode
                failures += 1
                stderr.print(f"{path}: [red]not decodable as {broker_name}[/]: {exc}")
                continue
            records = list(ingestor.records(messages, delivery))
            # A file that decodes to nothing must say so: silence reads like a hang or a lost message.
            stderr.print(f"{escape(path)}: {len(messages)} message(s), {len(records)} classification(s)"
                         + ("" if messages else f"; if it is an alert, not a {broker_name} message, decode it"
                            " without --broker"), highlight=False)
            for record in records:
                click.echo(ClassificationRecord.model_validate(record).model_dump_json())
        for (scheme, label), count in sorted(ingestor.unknown_labels.items(), key=str):
            stderr.print(f"unknown label {label!r} in scheme {scheme}: {count} time(s), kept verbatim, class_id null")
    else:
        from alertmux.sources.rubin import SchemaRegistry

        client = SchemaRegistry(registry) if registry else None
        try:
            for path in files:
                try:
                    decoded = decode_path(path, registry=client)
                except UsageError:
                    raise
                except AlertmuxError as exc:
                    failures += 1
                    stderr.print(f"{escape(path)}: [red]{escape(str(exc))}[/]", highlight=False)
                    continue
                version = f", {decoded.version}" if decoded.version else ""
                stderr.print(f"{escape(path)}: {escape(decoded.format)}{escape(version)}, {len(decoded.records)} "
                             "record(s)", highlight=False)
                for record in decoded.records:
                    click.echo(to_json(record))
        finally:
            if client is not None:
                client.close()
    if failures:
        raise AlertmuxError(f"{failures} of {len(files)} file(s) could not be decoded")


# -- dead letters -------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--db", default="alertmux.db", show_default=True, help="SQLite file or postgresql:// URL.")
@click.option("--broker", "broker_name", help="Only this broker's dead letters.")
@click.option("--all", "include_resolved", is_flag=True, help="Include replayed ones.")
@click.option("--replay", is_flag=True, help="Decode them again with the installed plugins and store what passes.")
@pass_ctx
def deadletters(ctx: _Context, db: str, broker_name: str | None, include_resolved: bool, replay: bool) -> None:
    """List dead letters (JSON lines), or replay them after a fix."""
    from alertmux.ingest import Ingestor
    from alertmux.specs import Delivery
    from alertmux.store import open_store

    store = open_store(db)
    letters = store.dead_letters(broker_name, include_resolved=include_resolved)
    if not replay:
        for d in letters:
            click.echo(json.dumps({"id": d.id, "broker": d.broker, "source": d.source, "partition": d.partition,
                                   "offset": d.offset, "bytes": len(d.payload), "error": d.error,
                                   "received_ms": d.received_ms, "run_id": d.run_id}))
        return
    ingestors: dict[str, Ingestor] = {}
    fixed = still = 0
    for d in letters:
        ingestor = ingestors.get(d.broker) or ingestors.setdefault(d.broker, Ingestor(ctx.host, d.broker, store,
                                                                                       d.run_id))
        delivery = Delivery(d.source, d.partition, d.offset, None, d.key)
        try:
            rows = ingestor.rows(ingestor.decode(d.payload, delivery), delivery)
        except Exception as exc:  # noqa: BLE001
            still += 1
            store.resolve_dead_letter(d.id or 0, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            continue
        store.write_batch(rows)
        store.resolve_dead_letter(d.id or 0)
        fixed += 1
    click.echo(json.dumps({"replayed": fixed, "still_failing": still}))


# -- config -------------------------------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@pass_ctx
def config_show(ctx: _Context) -> None:
    """Print the merged configuration (file + environment) with secrets redacted."""
    cfg = ctx.config
    click.echo(json.dumps({"file": str(cfg.path) if cfg.path else None, "config": cfg.redacted()}, indent=2))


def main(argv: list[str] | None = None, host: PluginHost | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and an exit code."""
    host = host or PluginHost()
    built_in = dict(cli.commands)
    host.hook.alertmux_register_commands(cli=cli)
    try:
        code = cli.main(args=argv, prog_name="alertmux", standalone_mode=False, obj=_Context(host))
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        stderr.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AlertmuxError as exc:
        stderr.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)  # "[kafka]" is text, not markup
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        # Plugins' commands belong to this host: a later main() with another host (tests) starts clean.
        cli.commands.clear()
        cli.commands.update(built_in)
