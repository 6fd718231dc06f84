"""The built-in ``followup`` plugin: ``alertmux followup rank|submit|status|cancel|products|report|...``.

It registers the command group through ``alertmux_register_commands`` and the two built-in ranking strategies
through ``alertmux_followup_strategies``, like any third-party plugin. Facilities come from their own plugins
(``alertmux-lco``, ``alertmux-soar``, ``alertmux-gemini``) and their ``[facilities.NAME]`` tables.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alertmux.errors import UsageError
from alertmux.hookspecs import hookimpl
from alertmux.specs import FollowupStrategySpec

if TYPE_CHECKING:
    from alertmux.store import Store

_DB = click.option("--db", type=click.Path(path_type=Path), default=Path("alertmux.db"), show_default=True,
                   help="The store.")
stderr = Console(stderr=True, soft_wrap=True)


def _settings_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that parses as JSON (a number, true, a list) is taken as such."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _obj() -> Any:
    obj = click.get_current_context().find_root().obj
    if obj is None or not hasattr(obj, "host"):
        raise UsageError("the followup commands run inside the alertmux command line")
    return obj


def _store(db: Path, must_exist: bool = True) -> Any:
    from alertmux.followup.storage import FollowupStore
    from alertmux.store import open_store

    if must_exist and not db.exists():
        raise UsageError(f"no database at {db}")
    return FollowupStore(open_store(db))


def _facility(name: str, overrides: dict[str, Any] | None = None) -> Any:
    from alertmux.followup.service import open_facility

    obj = _obj()
    return open_facility(obj.host, name, obj.config.facility(name), overrides or {})


@click.group()
def followup() -> None:
    """Follow-up: rank objects for spectroscopy, submit requests to telescopes, track what was observed."""


@followup.command()
@_DB
@click.option("--strategy", default="near-peak", show_default=True, help="A ranking strategy plugin.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="A strategy option (repeatable); see `alertmux followup strategies`.")
@click.option("--mjd", type=float, help="Rank as of this MJD (default: the latest alert in the store).")
@click.option("--broker", "brokers", multiple=True, help="Only this broker's classifications (repeatable).")
@click.option("--limit", type=int, help="Keep at most this many objects.")
@click.option("--include-requested", is_flag=True, help="Also rank objects already requested somewhere.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="How to print the ranking on stdout.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write it to a .csv or .json file.")
def rank(db: Path, strategy: str, options: tuple[str, ...], mjd: float | None, brokers: tuple[str, ...],
         limit: int | None, include_requested: bool, fmt: str, out: Path | None) -> None:
    """Rank objects for spectroscopic follow-up and store the ranking (``submit`` acts on the latest one)."""
    from alertmux.followup.ranking import rank as run_rank
    from alertmux.followup.ranking import ranking_rows, render, write

    followup_store = _store(db)
    ranking = run_rank(_obj().host, followup_store, strategy, _settings_pairs(options), mjd_now=mjd,
                       brokers=brokers or None, limit=limit, include_requested=include_requested)
    stderr.print(f"ranking {ranking.ranking_id} ({ranking.strategy}, MJD {ranking.mjd_now}): "
                 f"{len(ranking.targets)} of {ranking.candidates} candidates", markup=False)
    if out is not None:
        write(ranking, out)
        stderr.print(f"written to {out}", markup=False)
    if fmt != "table":
        click.echo(render(ranking, fmt), nl=False)
        return
    table = Table("rank", "object", "prio", "score", "tel", "exp s", "mag", "reason")
    for row in ranking_rows(ranking):
        table.add_row(str(row["rank"]), str(row["dia_object_id"]), str(row["priority"]), f"{row['score']:.3g}",
                      row["telescope"] or "-", "-" if row["exposure_s"] is None else f"{row['exposure_s']:.0f}",
                      "-" if row["last_mag"] is None else f"{row['last_band']} {row['last_mag']:.2f}",
                      escape(row["reason"]))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@followup.command()
def strategies() -> None:
    """List the ranking strategies and their options (JSON lines)."""
    from alertmux.followup.ranking import strategies as found

    for spec in found(_obj().host).values():
        options = {}
        if spec.options_model is not None:
            for name, info in spec.options_model.model_fields.items():
                options[name] = {"default": info.default, "help": info.description or ""}
        click.echo(json.dumps({"name": spec.name, "description": spec.description, "reference": spec.reference,
                               "options": options}, default=str))


@followup.command()
@_DB
@click.option("--facility", "facility_name", required=True, help="A facility plugin (lco, soar, gemini...).")
@click.option("--top", type=int, default=1, show_default=True, help="How many requests to send (best first).")
@click.option("--ranking", "ranking_id", type=int, help="A stored ranking (default: the latest).")
@click.option("--confirm", is_flag=True, help="Really submit. Without it: validate and show what would be sent.")
@click.option("--resubmit", is_flag=True, help="Ask again for objects whose earlier requests ended unobserved.")
@click.option("--retry-unconfirmed", is_flag=True,
              help="Send again requests that got no answer from a facility that cannot be asked (Gemini).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a facility setting.")
def submit(db: Path, facility_name: str, top: int, ranking_id: int | None, confirm: bool, resubmit: bool,
           retry_unconfirmed: bool, overrides: tuple[str, ...]) -> None:
    """Submit the top of the latest ranking to a facility (a dry run unless --confirm). JSON lines on stdout."""
    from alertmux.followup.service import submit_ranking

    if top < 1:
        raise UsageError("--top must be at least 1")
    facility = _facility(facility_name, _settings_pairs(overrides))
    counts: dict[str, int] = {}

    def show(planned: Any) -> None:
        counts[planned.action] = counts.get(planned.action, 0) + 1
        click.echo(json.dumps(planned.as_json(), default=str))
        if planned.action not in ("would submit", "submitted", "exists"):
            stderr.print(f"object {planned.dia_object_id}: [yellow]{planned.action}[/]: {escape(planned.reason)}",
                         highlight=False)

    submit_ranking(_store(db), facility, top=top, ranking_id=ranking_id, confirm=confirm, resubmit=resubmit,
                   retry_unconfirmed=retry_unconfirmed, on_result=show)
    summary = ", ".join(f"{n} {a}" for a, n in counts.items()) or "nothing to do"
    stderr.print(f"{facility_name}: {summary}" + ("" if confirm else " (dry run: pass --confirm to submit)"),
                 markup=False, highlight=False)


@followup.command()
@_DB
@click.option("--facility", "facility_name", help="Only this facility.")
@click.option("--no-poll", is_flag=True, help="Show the stored states without asking the facilities.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def status(db: Path, facility_name: str | None, no_poll: bool, as_json: bool) -> None:
    """Poll every open request (in bulk per facility) and show all requests with their states."""
    from alertmux.followup.service import poll, status_rows

    followup_store = _store(db)
    if not no_poll:
        names = sorted({r.facility for r in followup_store.open_requests(facility_name)})
        for name in names:
            facility = _facility(name)
            updates = poll(followup_store, facility)
            if not facility.spec.status_api:
                stderr.print(f"{name}: offers no status API: its requests stay 'submitted'; check them at the "
                             "facility", markup=False)
            else:
                stderr.print(f"{name}: {len(updates)} open request(s) polled")
    rows = status_rows(followup_store, facility_name)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    table = Table("id", "facility", "object", "state", "native", "facility id", "hours", "detail")
    for row in rows:
        table.add_row(str(row["request_id"]), row["facility"], str(row["object"]), row["state"],
                      row["native_state"] or "-", row["facility_id"] or "-", f"{row['hours']:.2f}",
                      escape((row["detail"] or "")[:80]))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@followup.command()
@_DB
@click.argument("request_id", type=int)
def cancel(db: Path, request_id: int) -> None:
    """Cancel a request at its facility (an OCS requestgroup is canceled whole)."""
    from alertmux.followup.service import cancel as run_cancel

    followup_store = _store(db)
    record = followup_store.request(request_id)
    if record is None:
        raise UsageError(f"no request {request_id} in {db}")
    facility = _facility(record.facility)
    update = run_cancel(followup_store, facility, request_id)
    if facility.spec.cancel_scope == "group":
        stderr.print(f"{record.facility} cancels whole groups: every request of {record.facility_id} is canceled",
                     markup=False)
    click.echo(json.dumps({"request_id": request_id, "state": update.state, "native_state": update.native_state}))


@followup.command()
@_DB
@click.argument("request_id", type=int)
@click.option("--download", "download_dir", type=click.Path(path_type=Path), help="Also download them here.")
def products(db: Path, request_id: int, download_dir: Path | None) -> None:
    """List (and optionally download) a request's data products. JSON lines on stdout."""
    from alertmux.followup.service import fetch_products

    followup_store = _store(db)
    record = followup_store.request(request_id)
    if record is None:
        raise UsageError(f"no request {request_id} in {db}")
    for entry in fetch_products(followup_store, _facility(record.facility), request_id, download_dir):
        click.echo(json.dumps(entry, default=str))


@followup.command()
@_DB
@click.option("--object", "dia_object_id", type=int, required=True)
@click.option("--facility", "facility_name", required=True, help="Where the spectrum was taken.")
@click.option("--class", "class_name", required=True, help="ELAsTiCC2 class id or name (2222, Ia, SNIa...).")
@click.option("--mjd", type=float, required=True, help="When the spectrum was taken.")
@click.option("--z", "redshift", type=float, help="Redshift measured.")
@click.option("--request", "request_id", type=int, help="The follow-up request it came from.")
def report(db: Path, dia_object_id: int, facility_name: str, class_name: str, mjd: float, redshift: float | None,
           request_id: int | None) -> None:
    """Report a spectroscopic classification: stored beside the brokers' classifications, and scored with them."""
    from alertmux.taxonomy import ELASTICC2, taxonomy

    tax = taxonomy(ELASTICC2)
    try:
        class_id = int(class_name) if class_name.isdigit() else tax.code_for_name(class_name)
        tax[class_id]
    except KeyError as exc:
        raise UsageError(f"{exc.args[0] if exc.args else exc}") from None
    followup_store = _store(db)
    spectrum_id, new = followup_store.report_spectrum(dia_object_id=dia_object_id, facility=facility_name, mjd=mjd,
                                                      class_id=class_id, redshift=redshift, request_id=request_id)
    click.echo(json.dumps({"spectrum_id": spectrum_id, "new": new, "object": dia_object_id, "class_id": class_id,
                           "class": tax.name(class_id), "facility": facility_name, "mjd": mjd, "z": redshift}))


@followup.command()
@_DB
@click.argument("request_id", type=int)
def history(db: Path, request_id: int) -> None:
    """A request's state changes (and its parts'), oldest first, as JSON lines."""
    for event in _store(db).history(request_id):
        click.echo(json.dumps(event))


@followup.command()
@click.option("--facility", "facility_name", required=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a facility setting.")
def instruments(facility_name: str, overrides: tuple[str, ...]) -> None:
    """What a facility offers right now (an OCS portal's /api/instruments/), as JSON."""
    facility = _facility(facility_name, _settings_pairs(overrides))
    if facility.spec.instruments is None:
        raise UsageError(f"{facility_name} does not list its instruments through an API")
    click.echo(json.dumps(facility.spec.instruments(facility.settings), indent=1))


@followup.command()
@click.option("--facility", "facility_name", required=True)
@click.option("--seconds", type=float, help="Stop after this long (default: until Ctrl-C).")
@click.option("--complete-after", type=float, default=60.0, show_default=True,
              help="Seconds until a submitted request is observed.")
def emulate(facility_name: str, seconds: float | None, complete_after: float) -> None:
    """Run a facility's loopback emulator in the foreground and print the settings that point at it."""
    spec = _obj().host.facility(facility_name)
    if spec.emulator is None:
        raise UsageError(f"{facility_name} has no emulator")
    with spec.emulator(complete_after_s=complete_after) as settings:
        click.echo(json.dumps({"facility": facility_name, "settings": settings}))
        stderr.print(f"{facility_name} emulator running; pass these as --set KEY=VALUE or in [facilities."
                     f"{facility_name}]; Ctrl-C stops it", markup=False, highlight=False)
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


@hookimpl
def alertmux_register_commands(cli: click.Group) -> None:
    """Add ``followup``."""
    cli.add_command(followup)


@hookimpl
def alertmux_followup_strategies() -> Iterator[FollowupStrategySpec]:
    """The built-in strategies: ``near-peak`` and ``uncertainty``."""
    from alertmux.followup.strategies import NearPeakOptions, UncertaintyOptions, near_peak, uncertainty

    yield FollowupStrategySpec(
        name="near-peak", description="the target class, likely, bright, and rising or near its peak; likeliest first",
        rank=near_peak, options_model=NearPeakOptions,
        reference="spectroscopic confirmation near maximum light (alertmux.followup.strategies.near_peak)",
    )
    yield FollowupStrategySpec(
        name="uncertainty", description="RESSPECT uncertainty sampling within 4 m and 8 m telescope-time budgets",
        rank=uncertainty, options_model=UncertaintyOptions,
        reference="Kennamer et al. 2020 (arXiv:2010.05941); COINtoolbox/RESSPECT query_budget_strategies.py",
    )


@hookimpl
def alertmux_alerts_recorded(store: Store, run_id: str, alerts: list[dict[str, Any]]) -> None:
    """Keep each object's position: ranking and the visibility check need it, the core store does not keep it."""
    from alertmux.followup.storage import record_positions

    record_positions(store, alerts)
