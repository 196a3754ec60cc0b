"""``picks report [RUN]``: a self-contained HTML report to check a run's picks by eye."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import DbOption, JsonOption, echo_json, open_store, warn

DB_DEFAULT = Path("picks.db")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)


def report_cmd(
    run: Annotated[
        int | None,
        typer.Argument(metavar="RUN", help="Aggregate run id (default: the latest finished one)."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for report.html and report_files/.", file_okay=False),
    ] = Path("picks-report"),
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Ground truth (any picks file an adapter reads, e.g. a CZII CSV): adds "
            "precision/recall/F-beta curves and a reliability diagram.",
        ),
    ] = None,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Write an HTML report of a run: slabs of every tomogram with its candidates, picker
    agreement, score histograms, box galleries, picker reliability (and, with --truth,
    measured curves). Open report.html from disk."""
    from picks.core.errors import NotFound
    from picks.report.build import build_report
    from picks.workflows.evaluate import consensus_runs, read_picks_files

    with open_store(db, must_exist=True) as store:
        if run is None:
            finished = consensus_runs(store)
            if not finished:
                raise NotFound(
                    "no finished run has consensus picks",
                    hint="Run picks aggregate first; 'picks runs' lists the runs.",
                )
            run = finished[-1]
        truth_table = (
            read_picks_files([truth], tomograms=store.tomograms()) if truth is not None else None
        )
        report = build_report(store, run, out, truth=truth_table)
    if json_out:
        echo_json(report.as_dict())
        return
    for warning in report.warnings:
        warn(warning)
    typer.echo(
        f"report of run {report.run_id} ({report.n_candidates} candidates, "
        f"{len(report.images)} images) written to {report.path} in "
        f"{report.timings['total']:.1f} s"
    )
