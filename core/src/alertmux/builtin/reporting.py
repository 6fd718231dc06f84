"""The built-in ``reporting`` plugin: ``alertmux score``, ``alertmux report`` and ``alertmux export``.

Registered through the ``alertmux_register_commands`` hook like any third-party command. pandas and matplotlib
are imported inside the commands, so loading this plugin costs nothing for the other commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from alertmux.errors import UsageError
from alertmux.hookspecs import hookimpl

_DB = click.option("--db", default="alertmux.db", show_default=True,
                   help="The store to score.")
_RUN = click.option("--run", "run_id", help="Only this harness run (default: everything in the database).")


@click.command()
@_DB
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for the CSV and JSON files.")
@click.option("--nth", default=3, show_default=True, help="Detections of the after<N> confusion matrix.")
@_RUN
def score(db: str, out: Path, nth: int, run_id: str | None) -> None:
    """Score classifiers (confusion matrices, completeness/purity, log-loss, turnaround...) into CSV and JSON."""
    from alertmux.scoring import export_scores, open_scoring

    scoring = open_scoring(db, run_id)
    try:
        written = export_scores(scoring, out, nth=nth)
    finally:
        scoring.conn.close()
    click.echo(json.dumps({"out": str(out), "files": sorted(p.name for p in written)}))


@click.command()
@_DB
@click.option("--out", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True)
@_RUN
def report(db: str, out: Path, run_id: str | None) -> None:
    """Write a self-contained HTML report: confusion heatmaps, completeness/purity, turnaround, versus peak."""
    from alertmux.report import write_report

    click.echo(json.dumps({"report": str(write_report(db, out, run_id))}))


@click.command()
@_DB
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A .csv or .parquet file.")
@_RUN
def export(db: str, out: Path, run_id: str | None) -> None:
    """Export the raw classifications (one row per class of each message) to CSV or Parquet."""
    from alertmux.scoring import export_classifications

    if out.suffix not in (".csv", ".parquet"):
        raise UsageError("--out must end in .csv or .parquet")
    rows = export_classifications(db, out, run_id)
    click.echo(json.dumps({"out": str(out), "rows": rows}))


@hookimpl
def alertmux_register_commands(cli: click.Group) -> None:
    """Add ``score``, ``report`` and ``export``."""
    for command in (score, report, export):
        cli.add_command(command)
