"""``picks evaluate``: CZII F-beta of pickers, consensus runs and picks files against truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import JsonOption, echo_json, echo_table, parse_options

SHORT = {
    "apo-ferritin": "apo",
    "beta-amylase": "b-amy",
    "beta-galactosidase": "b-gal",
    "ribosome": "ribo",
    "thyroglobulin": "thyro",
    "virus-like-particle": "vlp",
}


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)


def _parse_pairs(values: list[str] | None, option: str) -> dict[str, float]:
    from picks.core.errors import PicksError
    from picks.core.particles import canonical_name

    result: dict[str, float] = {}
    for value in values or []:
        name, sep, number = value.partition("=")
        try:
            parsed = float(number)
        except ValueError:
            parsed = -1.0
        if not sep or not name.strip() or parsed < 0:
            raise PicksError(f"{option} {value!r}: expected CLASS=NUMBER, e.g. ribosome=150")
        result[canonical_name(name)] = parsed
    return result


def evaluate_cmd(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[LABEL=]PATH", help="Picks files/folders to score, optionally labelled."
        ),
    ] = None,
    truth: Annotated[
        Path,
        typer.Option(
            "--truth", help="Ground truth: CZII CSV, copick project/file, any picks file."
        ),
    ] = ...,
    truth_adapter: Annotated[
        str, typer.Option(help="Adapter for the truth ('auto' detects).")
    ] = "auto",
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", envvar="PICKS_DB", dir_okay=False, help="Store with pickers and consensus runs."
        ),
    ] = None,
    run: Annotated[
        list[int] | None,
        typer.Option("--run", metavar="ID", help="Consensus run(s) to score (default: all)."),
    ] = None,
    pickers: Annotated[
        bool, typer.Option("--pickers/--no-pickers", help="Score the store's pickers.")
    ] = True,
    include_unfinished: Annotated[
        bool,
        typer.Option(
            "--include-unfinished",
            help="Also score runs that did not finish (failed, stale, running); they are "
            "labelled so. Runs given with --run are scored whatever their status.",
        ),
    ] = False,
    adapter: Annotated[str, typer.Option(help="Adapter for FILES ('auto' detects).")] = "auto",
    tomograms: Annotated[
        list[Path] | None,
        typer.Option("--tomograms", metavar="PATH", help="Tomograms (headers) for voxel files."),
    ] = None,
    voxel_size: Annotated[float | None, typer.Option(help="Å per voxel of voxel FILES.")] = None,
    binning: Annotated[float, typer.Option(help="FILES were picked at this binning.")] = 1.0,
    particle: Annotated[
        str | None, typer.Option(help="Class for FILES' picks that have none.")
    ] = None,
    tomogram: Annotated[str | None, typer.Option(help="Tomogram for FILES that name none.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", metavar="KEY=VALUE", help="Adapter option.")
    ] = None,
    multiplier: Annotated[
        float, typer.Option(help="A pick hits a particle within multiplier × its radius.")
    ] = 0.5,
    beta: Annotated[
        float, typer.Option(help="F-beta's beta (recall weighs beta² × precision).")
    ] = 4.0,
    weight: Annotated[
        list[str] | None,
        typer.Option("--weight", metavar="CLASS=W", help="Class weight (default CZII)."),
    ] = None,
    radius: Annotated[
        list[str] | None,
        typer.Option("--radius", metavar="CLASS=Å", help="Class radius (adds or overrides)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write precision/recall vs score threshold to this PNG.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Score pickers, consensus runs and picks files with the CZII F-beta metric."""
    from picks.core.errors import PicksError
    from picks.core.store import Store
    from picks.core.tomograms import TomogramSet, find_volumes, read_tomogram
    from picks.evaluate import metric
    from picks.evaluate.plots import plot_curves
    from picks.plugins.manager import get_registry
    from picks.workflows import evaluate

    registry = get_registry()
    radii = {**metric.default_radii(), **_parse_pairs(radius, "--radius")}
    weights = {**metric.default_weights(), **_parse_pairs(weight, "--weight")}
    if multiplier <= 0 or beta <= 0:
        raise PicksError("--multiplier and --beta must be positive")
    volumes = TomogramSet(read_tomogram(p) for p in find_volumes(tomograms or []))
    store = None
    if db is None and not files:
        from picks.core.defaults import DEFAULT_DB

        db = Path(DEFAULT_DB)
    if db is not None:
        if not db.exists():
            raise PicksError(
                f"store {db} does not exist", hint="Give --db PATH, or picks files to score."
            )
        store = Store(db)
        for tomo in store.tomograms():
            if tomo.name not in volumes:
                volumes.add(tomo)
    try:
        truth_table = evaluate.read_picks_files(
            [truth], tomograms=volumes, adapter=truth_adapter, registry=registry
        )
        file_tables = {}
        for value in files or []:
            label, sep, path = value.partition("=")
            if not sep or Path(value).exists():
                label, path = Path(value).stem, value
            if label in file_tables:
                raise PicksError(
                    f"two inputs are labelled {label!r}", hint="Label them: LABEL=PATH."
                )
            file_tables[label] = evaluate.read_picks_files(
                [path],
                tomograms=volumes,
                adapter=adapter,
                voxel_size=voxel_size,
                binning=binning,
                particle=particle,
                tomogram=tomogram,
                options=parse_options(option or []),
                registry=registry,
            )
        results = evaluate.evaluate(
            truth_table,
            store=store,
            runs=run,
            pickers=pickers,
            include_unfinished=include_unfinished,
            files=file_tables,
            multiplier=multiplier,
            beta=beta,
            radii=radii,
            weights=weights,
        )
    finally:
        if store is not None:
            store.close()
    if not results:
        raise PicksError("nothing to evaluate: the store holds no pickers or consensus runs")
    if plot is not None:
        plot_curves(
            results,
            truth_table,
            plot,
            multiplier=multiplier,
            beta=beta,
            radii=radii,
            weights=weights,
        )
    if json_out:
        echo_json(
            {
                "truth": str(truth),
                "n_truth": len(truth_table),
                "results": [r.as_dict() for r in results],
                "plot": str(plot) if plot else None,
            }
        )
        return
    classes = sorted({c.particle for r in results for c in r.score.classes})
    rows = []
    for result in results:
        row = result.row()
        rows.append(
            {
                "source": row["source"],
                "n": row["n"],
                **{SHORT.get(c, c): row.get(c) for c in classes},
                "overall": row["overall"],
            }
        )
    header = (
        f"CZII F-beta (beta={beta:g}, hit within {multiplier:g} × radius) against {truth} "
        f"({len(truth_table)} particles)"
    )
    echo_table(rows, ["source", "n", *[SHORT.get(c, c) for c in classes], "overall"], title=header)
    ignored = [
        (r.label, r.score.ignored, r.score.dropped)
        for r in results
        if r.score.ignored or r.score.dropped
    ]
    for label, n_ignored, n_dropped in ignored:
        typer.echo(
            f"note: {label}: {n_ignored} picks of classes absent from the truth and "
            f"{n_dropped} in tomograms absent from it were not scored",
            err=True,
        )
    if plot is not None:
        typer.echo(f"plot written to {plot}")
