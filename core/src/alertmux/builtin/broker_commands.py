"""The built-in ``broker-commands`` plugin: the commands every broker plugin gets for free.

* ``alertmux check NAME``: validates the broker's configuration and tries its configured endpoints (Kafka
  bootstrap with its SASL/TLS settings, REST API with its token), saying plainly what is wrong.
* ``alertmux emulate NAME``: runs the broker's emulator on its own, against a Kafka alert topic, so that a real
  client of that broker can be pointed at it.
* ``alertmux poll --broker NAME``: reads the broker's REST API incrementally into the store (:mod:`alertmux.rest`).
* ``alertmux serve`` and ``alertmux users add|token|list|remove``: the DESC TOM-compatible endpoint brokers push
  classifications to (:mod:`alertmux.serve`) and its accounts.

Registered through ``alertmux_register_commands`` like any plugin's commands. Heavy modules (Kafka, uvicorn) are
imported inside the commands.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from alertmux.errors import AlertmuxError, UsageError
from alertmux.hookspecs import hookimpl

log = logging.getLogger(__name__)
_DB = click.option("--db", type=click.Path(path_type=Path), default=Path("alertmux.db"), show_default=True,
                   help="The store (users, tokens, classifications).")


def _app() -> Any:
    """The CLI's context object (host and configuration)."""
    return click.get_current_context().find_root().obj


@contextmanager
def _graceful_stop() -> Iterator[list[int]]:
    """The first SIGINT/SIGTERM asks the loop to finish what it has; a second one stops at once."""
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        click.echo("stopping after the work in hand (interrupt again to stop now)", err=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


# -- check --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CheckLine:
    """One finding of ``alertmux check``."""

    what: str
    ok: bool
    detail: str


_KAFKA_REASONS = {
    "_AUTHENTICATION": "authentication failed: check username, password and sasl_mechanism",
    "SASL_AUTHENTICATION_FAILED": "authentication failed: check username, password and sasl_mechanism",
    "_SSL": "TLS handshake failed: check security_protocol and ca_file",
    "_RESOLVE": "the bootstrap host name does not resolve",
    "_TRANSPORT": "cannot connect (refused or unreachable): check the bootstrap address and port",
    "_ALL_BROKERS_DOWN": "no broker answered at the bootstrap address",
    "_TIMED_OUT": "timed out",
}


def check_kafka(bootstrap: str, client_config: dict[str, Any], topics: list[str], pattern: str | None,
                timeout: float) -> list[CheckLine]:
    """Connect to a Kafka bootstrap with the broker's client settings and look for its topics."""
    from confluent_kafka import Consumer, KafkaException

    from alertmux.http import ensure_bootstrap_allowed

    ensure_bootstrap_allowed(bootstrap)
    problems: list[str] = []

    def on_error(error: Any) -> None:
        problems.append(_KAFKA_REASONS.get(error.name(), error.str()))

    silent = logging.getLogger("alertmux.librdkafka.check")
    silent.setLevel(logging.CRITICAL)
    consumer = Consumer({**client_config, "bootstrap.servers": bootstrap, "group.id": "alertmux-check",
                         "error_cb": on_error, "logger": silent})
    try:
        metadata = consumer.list_topics(timeout=timeout)
    except KafkaException as exc:
        reason = problems[0] if problems else _KAFKA_REASONS.get(exc.args[0].name(), exc.args[0].str())
        return [CheckLine("kafka", False, f"{bootstrap}: {reason}")]
    finally:
        consumer.close()
    names = sorted(t for t in metadata.topics if not t.startswith("__"))
    lines = [CheckLine("kafka", True, f"{bootstrap}: connected, {len(metadata.brokers)} broker(s), "
                                      f"{len(names)} topic(s) visible")]
    missing = [t for t in topics if t not in metadata.topics]
    if topics:
        lines.append(CheckLine("topics", not missing, f"missing: {', '.join(missing)}" if missing
                               else f"all {len(topics)} configured topic(s) exist"))
    if pattern and not topics:
        matched = [t for t in names if re.search(pattern if pattern.startswith("^") else "^" + pattern, t)]
        shown = ", ".join(matched[:5]) + (" ..." if len(matched) > 5 else "")
        lines.append(CheckLine("topics", bool(matched), f"{len(matched)} topic(s) match {pattern}"
                               + (f": {shown}" if matched else " (none yet: the broker may not have published today)")))
    return lines


def run_checks(name: str, bootstrap: str | None, timeout: float) -> list[CheckLine]:
    """Everything ``alertmux check NAME`` looks at, in order; stops early only when the configuration is invalid."""
    from alertmux.config import BrokerSettings

    app = _app()
    spec = app.host.broker(name)
    lines: list[CheckLine] = []
    try:
        settings: Any = app.config.broker_settings(name, spec.config_model
                                                   if spec.config_model and issubclass(spec.config_model,
                                                                                       BrokerSettings) else None)
    except AlertmuxError as exc:
        return [CheckLine("config", False, str(exc))]
    lines.append(CheckLine("config", True, f"[brokers.{name}] valid: {json.dumps(settings.redacted())}"))
    if settings.sasl_mechanism and not (settings.username and settings.password):
        lines.append(CheckLine("credentials", False, f"sasl_mechanism is {settings.sasl_mechanism} but username or "
                               f"password is missing (set password as ${{ENV_VAR}} or ALERTMUX__BROKERS__"
                               f"{name.upper()}__PASSWORD)"))
    bootstrap = bootstrap or settings.bootstrap
    if spec.kafka is not None:
        if bootstrap:
            topics = list(settings.topics) or list(spec.kafka.topics)
            pattern = None if topics else settings.topic_pattern or spec.kafka.topic_pattern
            try:
                lines += check_kafka(bootstrap, app.config.kafka(name), topics, pattern, timeout)
            except AlertmuxError as exc:
                lines.append(CheckLine("kafka", False, str(exc)))
        else:
            lines.append(CheckLine("kafka", False, f"no bootstrap configured: set bootstrap in [brokers.{name}] "
                                                   "or pass --bootstrap"))
    if spec.rest is not None:
        lines.append(_check_rest(name, spec.rest, settings, timeout))
    if spec.push is not None:
        lines.append(CheckLine("push", True, f"{name} pushes to `alertmux serve` (PUT /elasticc2/brokermessage/); "
                                             "give it an account with `alertmux users add`"))
    return lines


def _check_rest(name: str, transport: Any, settings: Any, timeout: float) -> CheckLine:
    from alertmux.http import RetryPolicy
    from alertmux.rest import PollOptions, open_context

    options = PollOptions(base_url=settings.api_url, timeout=timeout, policy=RetryPolicy(attempts=2),
                          token=settings.token.get_secret_value() if settings.token else None,
                          verify=str(settings.ca_file) if settings.ca_file else True,
                          settings=_app().config.broker(name))
    try:
        client, ctx = open_context(transport, options)
    except AlertmuxError as exc:
        return CheckLine("rest", False, str(exc))
    try:
        seen = transport.probe(ctx) if transport.probe else f"answered {ctx.get_json('', missing_ok=True)!r:.80}"
        return CheckLine("rest", True, f"{ctx.base_url}: {seen}")
    except Exception as exc:  # noqa: BLE001 - whatever the probe hit is the finding
        return CheckLine("rest", False, str(exc) if isinstance(exc, AlertmuxError) else f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


@click.command()
@click.argument("name")
@click.option("--bootstrap", help="Kafka bootstrap to try (default: bootstrap in [brokers.NAME]).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds per connection attempt.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
def check(name: str, bootstrap: str | None, timeout: float, as_json: bool) -> None:
    """Test a broker's configuration, credentials and connectivity, and say plainly what is wrong."""
    lines = run_checks(name, bootstrap, timeout)
    for line in lines:
        if as_json:
            click.echo(json.dumps({"check": line.what, "ok": line.ok, "detail": line.detail}))
        else:
            click.echo(f"{'ok  ' if line.ok else 'FAIL'}  {line.what:<11} {line.detail}")
    failed = [line.what for line in lines if not line.ok]
    if failed:
        raise AlertmuxError(f"{name}: {len(failed)} check(s) failed ({', '.join(failed)})")


# -- emulate ------------------------------------------------------------------------------------------------------
def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-o takes KEY=VALUE, not {pair!r}")
        try:
            options[key] = json.loads(value)  # numbers and booleans keep their type
        except json.JSONDecodeError:
            options[key] = value
    return options


@click.command()
@click.argument("name")
@click.option("--bootstrap", help="Kafka bootstrap holding the alert topic (default: start an embedded broker).")
@click.option("--alert-topic", "alert_topics", multiple=True, required=True,
              help="Topic of ELAsTiCC alerts to classify (repeatable), e.g. one `alertmux stream` writes to.")
@_DB
@click.option("--mode", type=click.Choice(["last", "after3"]), default="last", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--option", "pairs", multiple=True, help="Emulator option KEY=VALUE (repeatable).")
def emulate(name: str, bootstrap: str | None, alert_topics: tuple[str, ...], db: Path, mode: str, seed: int,
            pairs: tuple[str, ...]) -> None:
    """Run a broker's emulator on its own: it classifies an alert topic and answers the way the broker does.

    Kafka emulators publish to the broker's real topic names on the same bootstrap; pushing emulators (AMPEL) PUT
    to an `alertmux serve` (-o serve_url=... -o username=..., password from the broker's config, or an in-process
    one when no serve_url is given). Truth for the confusion-matrix behaviour comes from --db (`alertmux stream`
    records it); alerts of unknown objects are classified at random.
    """
    from alertmux.embedded import EmbeddedKafka, local_client_config
    from alertmux.kafka import check_reachable
    from alertmux.serve import push_endpoint
    from alertmux.specs import EmulatorContext
    from alertmux.store import open_store

    app = _app()
    spec = app.host.broker(name)
    if spec.emulator is None:
        raise UsageError(f"broker {name!r} has no emulator")
    # Standalone, a stop is the user's Ctrl-C: nothing is left to drain, and the embedded broker must not be shut
    # down under a consumer still waiting for its stream to go idle.
    options: dict[str, Any] = {"idle_timeout": 0.0, **app.config.broker(name), "mode": mode, "seed": seed,
                               **_parse_options(pairs)}
    with ExitStack() as stack, _graceful_stop() as received:
        if bootstrap:
            client_config = app.config.kafka()
            client_config.pop("bootstrap.servers", None)
            check_reachable(bootstrap, client_config, timeout=10)
        else:
            kafka = stack.enter_context(EmbeddedKafka())
            bootstrap, client_config = kafka.bootstrap, local_client_config()
            click.echo(f"embedded Kafka broker at {bootstrap}", err=True)
        if not spec.emulator.output_topics("") and spec.push is not None and "serve_url" not in options:
            options.update(stack.enter_context(push_endpoint(app.host, db)))
            click.echo(f"pushing to an in-process alertmux serve at {options['serve_url']}", err=True)
        store = open_store(db)
        stack.callback(store.close)
        ctx = EmulatorContext(bootstrap=bootstrap, alert_topics=alert_topics, store=store, run_id="",
                              client_config=client_config, stop=lambda: bool(received), options=options)
        topics = spec.emulator.output_topics("")
        click.echo(f"emulating {name}: reading {', '.join(alert_topics)}"
                   + (f", publishing to {', '.join(topics)}" if topics else ""), err=True)
        _run_until_stopped(lambda: spec.emulator.run(ctx), received)


def _run_until_stopped(target: Any, received: list[int], grace: float = 5.0) -> None:
    """Run ``target`` in a thread; once asked to stop, give it ``grace`` seconds to finish its batch.

    An emulator left alone waits for its stream to go idle before returning; a user who pressed Ctrl-C should not.
    """
    import threading
    import time

    failure: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="emulator", daemon=True)
    worker.start()
    deadline = None
    while worker.is_alive():
        worker.join(0.2)
        if received and deadline is None:
            deadline = time.monotonic() + grace
        if deadline is not None and time.monotonic() > deadline:
            break
    if failure:
        raise failure[0]


# -- poll ---------------------------------------------------------------------------------------------------------
@click.command()
@click.option("--broker", "broker_name", required=True, help="Broker plugin name.")
@_DB
@click.option("--base-url", help="API base URL (default: api_url in [brokers.NAME], then the plugin's).")
@click.option("--stream", default="default", show_default=True, help="Name of the cursor to resume from.")
@click.option("--once", is_flag=True, help="One pass over what is new, then exit.")
@click.option("--interval", type=float, help="Seconds between passes (default: the plugin's).")
@click.option("--max-pages", type=int, help="Stop after this many pages.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each answer.")
def poll(broker_name: str, db: Path, base_url: str | None, stream: str, once: bool, interval: float | None,
         max_pages: int | None, timeout: float) -> None:
    """Read a broker's REST API incrementally into the store (resumes where the last poll stopped)."""
    from alertmux.config import BrokerSettings
    from alertmux.ingest import Ingestor
    from alertmux.rest import PollOptions
    from alertmux.rest import poll as run_poll
    from alertmux.store import open_store

    app = _app()
    spec = app.host.broker(broker_name)
    if spec.rest is None:
        raise UsageError(f"broker {broker_name!r} has no REST API to poll")
    model = spec.config_model if spec.config_model and issubclass(spec.config_model, BrokerSettings) else None
    settings: Any = app.config.broker_settings(broker_name, model)
    options = PollOptions(
        base_url=base_url or settings.api_url, token=settings.token.get_secret_value() if settings.token else None,
        stream=stream, once=once, interval=interval, max_pages=max_pages, timeout=timeout,
        verify=str(settings.ca_file) if settings.ca_file else True, settings=app.config.broker(broker_name),
    )
    store = open_store(db)
    ingestor = Ingestor(app.host, broker_name, store)
    try:
        with _graceful_stop() as received:
            stats = run_poll(ingestor, spec.rest, options, should_stop=lambda: bool(received), hook=app.host.hook)
    finally:
        store.close()
    report: dict[str, Any] = {"broker": broker_name, "passes": stats.passes, "pages": stats.pages,
                              "payloads": stats.payloads, "stored": stats.stored, "duplicates": stats.duplicates,
                              "dead_letters": stats.dead_letters, "errors": stats.errors, "cursor": stats.cursor,
                              "seconds": round(stats.elapsed, 3)}
    if ingestor.unknown_labels:
        report["unknown_labels"] = {f"{s}:{label}": n for (s, label), n in ingestor.unknown_labels.items()}
    click.echo(json.dumps(report))


# -- serve and users ----------------------------------------------------------------------------------------------
@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True)
@_DB
@click.option("--max-body-mb", default=32.0, show_default=True, help="Largest request body accepted.")
def serve(host: str, port: int, db: Path, max_body_mb: float) -> None:
    """Serve the DESC TOM's broker-message endpoint: PUT /elasticc2/brokermessage/ (and /elasticc/ for 2022)."""
    from alertmux.serve import ServeOptions, run

    click.echo(f"alertmux serve on http://{host}:{port} -> {db} (log in at /accounts/login/ or send "
               "'Authorization: Token <key>')", err=True)
    run(_app().host, db, host, port, ServeOptions(max_body_bytes=int(max_body_mb * 1024 * 1024)))


@click.group()
def users() -> None:
    """Accounts of `alertmux serve` (only salted hashes of passwords and tokens are stored)."""


@users.command("add")
@click.argument("name")
@click.option("--password", help="The password (prompted for, hidden, when not given).")
@click.option("--replace", is_flag=True, help="Set a new password for an existing user.")
@_DB
def users_add(name: str, password: str | None, replace: bool, db: Path) -> None:
    """Create a user that can log in and push broker messages."""
    from alertmux.serve import hash_password
    from alertmux.store import open_store

    if not re.fullmatch(r"[\w.@+-]{1,150}", name):  # Django's username rule
        raise UsageError("a user name is 1-150 letters, digits and @.+-_")
    if password is None:
        password = click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    if not password:
        raise UsageError("the password must not be empty")
    store: Any = open_store(db)
    try:
        store.add_user(name, hash_password(password), replace=replace)
    finally:
        store.close()
    click.echo(json.dumps({"user": name, "created": not replace}))


@users.command("token")
@click.argument("name")
@_DB
def users_token(name: str, db: Path) -> None:
    """Create an API token for NAME and print it (once: only its salted hash is kept)."""
    from alertmux.serve import issue_credential
    from alertmux.store import open_store

    store: Any = open_store(db)
    try:
        if store.user_password_hash(name) is None:
            raise UsageError(f"no user {name!r}: create it with `alertmux users add {name}`")
        token = issue_credential(store, name, "token")
    finally:
        store.close()
    click.echo(token)
    if sys.stderr.isatty():
        click.echo("send it as 'Authorization: Token <token>'; it is not shown again", err=True)


@users.command("list")
@_DB
def users_list(db: Path) -> None:
    """List users (JSON lines) with their number of tokens."""
    from alertmux.store import open_store

    store: Any = open_store(db)
    try:
        for user in store.users():
            click.echo(json.dumps(user))
    finally:
        store.close()


@users.command("remove")
@click.argument("name")
@_DB
def users_remove(name: str, db: Path) -> None:
    """Remove a user with its tokens and sessions."""
    from alertmux.store import open_store

    store: Any = open_store(db)
    try:
        if not store.delete_user(name):
            raise UsageError(f"no user {name!r}")
    finally:
        store.close()
    click.echo(json.dumps({"user": name, "removed": True}))


@hookimpl
def alertmux_register_commands(cli: click.Group) -> None:
    """Add ``check``, ``emulate``, ``poll``, ``serve`` and ``users``."""
    for command in (check, emulate, poll, serve, users):
        cli.add_command(command)
