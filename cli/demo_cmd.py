"""``picks demo``: the one-line tour (simulate → aggregate → evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.choices import Method
from picks.cli.common import JsonOption, echo_json, echo_table, progress, warn


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    folder: Annotated[
        Path, typer.Argument(help="Folder for everything the demo writes.", file_okay=False)
    ] = Path("picks-demo"),
    seed: Annotated[int, typer.Option(help="Random seed (simulation, noise, CNN).")] = 0,
    tomograms: Annotated[
        int, typer.Option("--tomograms", help="Number of simulated tomograms.")
    ] = 2,
    size: Annotated[
        tuple[int, int, int], typer.Option(help="Tomogram size X Y Z in voxels.", metavar="X Y Z")
    ] = (
        200,
        200,
        80,
    ),
    method: Annotated[
        Method,
        typer.Option(
            help="Aggregation method: auto (the latent-class decision), latent, vote or cnn."
        ),
    ] = "auto",
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write evaluation.png.")] = True,
    json_out: JsonOption = False,
) -> None:
    """Simulate pickers on tomograms with ground truth, build their consensus, and score all."""
    import time

    from picks.cli.evaluate_cmd import SHORT
    from picks.workflows.demo import run_demo

    start = time.perf_counter()
    demo = run_demo(
        folder,
        seed=seed,
        n_tomograms=tomograms,
        size=size,
        method=method,
        plot=plot,
        progress=progress,
    )
    elapsed = time.perf_counter() - start
    if json_out:
        echo_json(
            {
                "folder": str(demo.folder),
                "seconds": round(elapsed, 1),
                "run_id": demo.aggregate.run_id,
                "method": demo.aggregate.method,
                "results": [r.as_dict() for r in demo.results],
            }
        )
        return
    sim = demo.simulation
    typer.echo(f"picks demo: done in {elapsed:.0f} s. Everything is in {demo.folder}/")
    typer.echo(
        f"  tomograms     {sim.out / 'tomograms'}/ ({len(sim.tomograms)} × {'×'.join(map(str, size))} voxels)"
    )
    typer.echo(
        f"  ground truth  {sim.truth_csv} ({len(sim.truth)} particles; copick: {sim.truth_copick.parent}/)"
    )
    for picker in sim.pickers:
        where = picker.paths[0].parent if picker.paths else sim.out / "pickers" / picker.label
        typer.echo(f"  {picker.label:13s} {where}/ ({picker.program}; {picker.personality})")
    typer.echo(f"  store         {demo.db} (picks runs / sources / audit --db {demo.db})")
    for row in demo.aggregate.outputs:
        typer.echo(f"  consensus     {row['path']} ({row['format']}, {row['n_rows']} picks)")
    typer.echo(f"  scores        {demo.evaluation}" + (f", {demo.plot}" if demo.plot else ""))
    typer.echo(f"  how it was made: {sim.readme}")
    typer.echo("")
    classes = sorted({c.particle for r in demo.results for c in r.score.classes})
    rows = [
        {
            "source": r.label,
            "n": len(r.picks),
            **{SHORT.get(c, c): r.row().get(c) for c in classes},
            "overall": r.score.overall,
        }
        for r in demo.results
    ]
    echo_table(
        rows,
        ["source", "n", *[SHORT.get(c, c) for c in classes], "overall"],
        title=f"CZII F-beta (beta=4) against the ground truth; consensus method: {demo.aggregate.method}",
    )
    for warning in demo.aggregate.warnings:
        warn(warning)
    typer.echo(f"\nTrace any consensus pick: picks audit --db {demo.db} CONSENSUS_ID")
