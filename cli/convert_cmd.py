"""``picks convert``: any reader to any writer, with the same conventions as import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import JsonOption, echo_json, parse_options, warn


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_cmd)


def convert_cmd(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="Picker file to read.", exists=True, dir_okay=False)
    ],
    target: Annotated[
        Path,
        typer.Argument(metavar="OUT", help="File (or folder, for per-tomogram formats) to write."),
    ],
    to: Annotated[
        str, typer.Option("--to", help="Writer (adapter name); 'picks plugins' lists them.")
    ],
    adapter: Annotated[str, typer.Option(help="Reader (adapter name) or 'auto'.")] = "auto",
    tomograms: Annotated[
        list[Path] | None,
        typer.Option(
            "--tomograms", metavar="PATH", help="Tomograms (for voxel sizes, names, extents)."
        ),
    ] = None,
    voxel_size: Annotated[
        float | None, typer.Option(help="Å per voxel of the input coordinates.")
    ] = None,
    binning: Annotated[
        float, typer.Option(help="Input picked on a tomogram binned by this factor.")
    ] = 1.0,
    particle: Annotated[str | None, typer.Option(help="Class for picks that have none.")] = None,
    tomogram: Annotated[
        str | None, typer.Option(help="Tomogram name for inputs that do not name one.")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", metavar="KEY=VALUE", help="Reader option (adapter option)."),
    ] = None,
    to_voxel_size: Annotated[
        float | None, typer.Option(help="Å per voxel for voxel-unit outputs.")
    ] = None,
    to_binning: Annotated[
        float, typer.Option(help="Write voxel outputs for a tomogram binned by this factor.")
    ] = 1.0,
    to_option: Annotated[
        list[str] | None,
        typer.Option("--to-option", metavar="KEY=VALUE", help="Writer option (adapter option)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    db: Annotated[
        Path | None,
        typer.Option("--db", help="Also import the input into this store (off by default)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Convert picks between formats (nothing is recorded unless --db is given)."""
    from picks.plugins.manager import get_registry
    from picks.workflows.convert import convert, load_tomograms

    registry = get_registry()
    tomos = load_tomograms(tomograms or [])
    options = parse_options(option or [])
    result = convert(
        source,
        target,
        to,
        registry,
        adapter=adapter,
        tomograms=tomos,
        voxel_size=voxel_size,
        binning=binning,
        particle=particle,
        tomogram=tomogram,
        options=options,
        to_voxel_size=to_voxel_size,
        to_binning=to_binning,
        to_options=parse_options(to_option or []),
        force=force,
    )
    if db is not None:
        from picks.core.store import Store
        from picks.workflows.importing import import_file

        with Store(db) as store:
            store.add_tomograms(tomos)
            import_file(
                store,
                source,
                registry,
                adapter=result.reader,
                voxel_size=voxel_size,
                binning=binning,
                particle=particle,
                tomogram=tomogram,
                options=options,
            )
    if json_out:
        echo_json(
            {
                "reader": result.reader,
                "writer": result.writer,
                "n_picks": result.n_picks,
                "written": [str(p) for p in result.written],
                "warnings": result.warnings,
            }
        )
        return
    for warning in result.warnings:
        warn(warning)
    typer.echo(
        f"{result.n_picks} picks read with {result.reader}, written with {result.writer} to:"
    )
    for path in result.written:
        typer.echo(f"  {path}")
