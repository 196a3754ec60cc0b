"""Commands that fill and read the store: import, tomograms, sources, runs, audit."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from picks.cli.choices import Role
from picks.cli.common import (
    DbOption,
    JsonOption,
    echo_json,
    echo_table,
    existing_store,
    open_store,
    parse_options,
    progress,
    warn,
)
from picks.core.defaults import DEFAULT_DB

DB_DEFAULT = Path(DEFAULT_DB)


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("tomograms")(tomograms_cmd)
    app.command("sources")(sources_cmd)
    app.command("runs")(runs_cmd)
    app.command("audit")(audit_cmd)


def register_tomograms(store, paths: list[Path], voxel_size: float | None) -> int:
    from picks.core.tomograms import find_volumes, read_tomogram

    volumes = find_volumes(paths)
    store.add_tomograms([read_tomogram(p, voxel_size=voxel_size) for p in volumes])
    return len(volumes)


def import_cmd(
    files: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Picker output files or folders.")
    ],
    picker: Annotated[
        str | None, typer.Option(help="Label for this picker (default: from the adapter).")
    ] = None,
    adapter: Annotated[str, typer.Option(help="Adapter name, or 'auto' to detect it.")] = "auto",
    tomograms: Annotated[
        list[Path] | None,
        typer.Option(
            "--tomograms", metavar="PATH", help="Tomogram files/folders to register first."
        ),
    ] = None,
    voxel_size: Annotated[
        float | None, typer.Option(help="Å per voxel of the coordinates in the files.")
    ] = None,
    binning: Annotated[
        float, typer.Option(help="The picks were made on a tomogram binned by this factor.")
    ] = 1.0,
    particle: Annotated[str | None, typer.Option(help="Class for picks that have none.")] = None,
    tomogram: Annotated[
        str | None, typer.Option(help="Tomogram name for files that do not name one.")
    ] = None,
    role: Annotated[
        Role, typer.Option(help="picker, or positive/negative for trusted reference picks.")
    ] = "picker",
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            metavar="KEY=VALUE",
            help="Adapter option, e.g. labels=1=ribosome,2=apo-ferritin, or name=PATTERN "
            "(tomogram and class from file names: {tomogram}__{particle}).",
        ),
    ] = None,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Import picker output files into the store (each file is one transaction)."""
    from picks.plugins.manager import get_registry
    from picks.workflows.importing import expand_inputs, import_file

    registry = get_registry()
    options = parse_options(option or [])
    results = []
    # The report below says what a name pattern gave each file; the library's log line would
    # repeat it on stderr.
    logging.getLogger("picks.import.names").setLevel(logging.WARNING)
    params = {
        "files": [str(f) for f in files],
        "picker": picker,
        "adapter": adapter,
        "tomograms": [str(t) for t in tomograms or []],
        "voxel_size": voxel_size,
        "binning": binning,
        "particle": particle,
        "tomogram": tomogram,
        "role": role,
        "options": options,
    }
    with open_store(db) as store, store.run("import", params) as run_id:
        if tomograms:
            register_tomograms(store, tomograms, None)
        paths = expand_inputs(files, registry, adapter)
        with progress("import", total=len(paths)) as advance:
            for path in paths:
                result = import_file(
                    store,
                    path,
                    registry,
                    adapter=adapter,
                    picker=picker,
                    role=role,
                    voxel_size=voxel_size,
                    binning=binning,
                    particle=particle,
                    tomogram=tomogram,
                    options=options,
                    run_id=run_id,
                )
                results.append(result)
                advance(1)
                if not json_out:
                    if result.skipped:
                        typer.echo(
                            f"{path}: already imported as source {result.source_id} "
                            "(same file, same picks), nothing to do"
                        )
                    else:
                        typer.echo(
                            f"{path}: {result.n_picks} picks imported as source {result.source_id} "
                            f"({result.adapter}, picker {result.picker})"
                        )
                        if result.named:
                            typer.echo(f"  from its name: {result.named}")
                        for warning in result.warnings:
                            warn(f"{path}: {warning}")
    if json_out:
        echo_json([r.as_dict() for r in results])


def tomograms_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH", help="Tomogram files (MRC, OME-Zarr) or folders to register."
        ),
    ] = None,
    voxel_size: Annotated[
        float | None, typer.Option(help="Voxel size in Å when the header lacks it.")
    ] = None,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Register tomograms (headers only) and list the registered ones."""
    with open_store(db) as store:
        if paths:
            from picks.workflows.importing import stored_outside_extent

            register_tomograms(store, paths, voxel_size)
            # picks imported before these tomograms were known are checked against them now
            for message in stored_outside_extent(store):
                warn(f"{message} (imported before the tomogram was registered)")
        rows = [
            {
                "name": t.name,
                "voxel_size": t.voxel_size,
                "shape": "×".join(map(str, t.shape or ())),
                "path": t.path,
            }
            for t in store.tomograms()
        ]
    echo_json(rows) if json_out else echo_table(rows, ["name", "voxel_size", "shape", "path"])


def sources_cmd(db: DbOption = DB_DEFAULT, json_out: JsonOption = False) -> None:
    """List imported source files with their picker, adapter and pick count."""
    from picks.core.store.listing import list_sources

    rows = list_sources(existing_store(db))  # plain sqlite3: fast to start
    if json_out:
        echo_json(rows)
        return
    for row in rows:
        row["sha256"] = row["sha256"][:12]
        row["file"] = Path(row["path"]).name
    echo_table(
        rows, ["id", "picker", "role", "adapter", "n_picks", "sha256", "imported_at", "file"]
    )


def runs_cmd(db: DbOption = DB_DEFAULT, json_out: JsonOption = False) -> None:
    """List runs (imports, aggregations, trainings) with their status."""
    from picks.core.store.listing import list_runs

    rows = list_runs(existing_store(db))  # plain sqlite3: fast to start
    echo_json(rows) if json_out else echo_table(
        rows, ["id", "command", "method", "status", "seed", "started_at", "ended_at", "version"]
    )


def audit_cmd(
    ident: Annotated[
        int, typer.Argument(metavar="ID", help="Consensus pick id (or raw pick id with --pick).")
    ],
    pick: Annotated[
        bool, typer.Option("--pick", help="ID is a raw pick, not a consensus pick.")
    ] = False,
    export: Annotated[
        Path | None, typer.Option(help="Write the full audit as JSON to this file.")
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png", help="Also draw the consensus pick's members on a slab through it (PNG)."
        ),
    ] = None,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Why is this pick here? Show its sources, lines, original values and decisions."""
    from picks.core.store import audit

    if png and pick:
        from picks.core.errors import PicksError

        raise PicksError("--png draws a consensus pick's members: it does not apply to --pick")
    with open_store(db, must_exist=True) as store:
        report = audit.audit_pick(store, ident) if pick else audit.audit_consensus(store, ident)
        if png:
            from picks.report.build import audit_png

            audit_png(store, ident, png)
            typer.echo(f"members drawn in {png}", err=True)
    if export:
        import json

        from picks.core.files import atomic_path

        with atomic_path(export, force=True) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str))
        typer.echo(f"audit written to {export}", err=True)
    if json_out:
        echo_json(report)
    elif not export:
        typer.echo(audit.render(report))
