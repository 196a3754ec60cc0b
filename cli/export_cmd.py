"""``picks export RUN --format F --out DIR``: write a stored run's decisions again, in any
format, with the code ``picks aggregate`` writes them with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import DbOption, JsonOption, echo_json, open_store, progress, warn
from picks.core.defaults import DEFAULT_DB


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    run: Annotated[int, typer.Argument(metavar="RUN", help="Run id ('picks runs' lists them).")],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (nothing is written outside it).")
    ],
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            metavar="F",
            help="Output format (repeatable; e.g. relion5, box, copick, csv). Default: the "
            "run's own formats.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    accepted_only: Annotated[
        bool,
        typer.Option(
            "--accepted-only/--all",
            help="Write the accepted picks (default), or every candidate (decisions are in "
            "candidates.csv either way).",
        ),
    ] = True,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Also export a run that did not finish (failed, stale, running).",
        ),
    ] = False,
    db: DbOption = Path(DEFAULT_DB),
    json_out: JsonOption = False,
) -> None:
    """Write a stored run's current decisions (also after 'picks score') exactly as
    'picks aggregate' writes them; the files are recorded in the store ('picks audit')."""
    from picks.plugins.manager import get_registry
    from picks.workflows.export import export_run

    with open_store(db, must_exist=True) as store:
        result = export_run(
            store,
            run,
            out,
            formats=formats,
            force=force,
            accepted_only=accepted_only,
            allow_incomplete=allow_incomplete,
            registry=get_registry(),
            progress=progress,
        )
    if json_out:
        echo_json(result.as_dict())
        return
    for warning in result.warnings:
        warn(warning)
    picks_word = "accepted picks" if result.accepted_only else "candidates"
    typer.echo(
        f"run {result.run_id}: {result.n_written} {picks_word} written to {result.out} "
        f"({', '.join(result.formats)}; {len(result.outputs)} files, export run "
        f"{result.export_run_id})"
    )
