"""``picks simulate``: write a small simulated world (tomograms, truth, five pickers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import JsonOption, echo_json


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)


def simulate_cmd(
    out: Annotated[
        Path, typer.Argument(help="Folder to write (created if needed).", file_okay=False)
    ],
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives identical files.")
    ] = 0,
    tomograms: Annotated[int, typer.Option("--tomograms", help="Number of tomograms.")] = 2,
    size: Annotated[
        tuple[int, int, int], typer.Option(help="Tomogram size X Y Z in voxels.", metavar="X Y Z")
    ] = (200, 200, 80),
    snr: Annotated[
        float,
        typer.Option(
            help="Signal-to-noise ratio: variance of the filtered particle signal / noise variance."
        ),
    ] = 0.05,
    voxel_size: Annotated[float, typer.Option(help="Voxel size in Å.")] = 10.0,
    bin2: Annotated[
        bool,
        typer.Option("--bin2/--no-bin2", help="Also write bin-2 tomograms and the binned picker."),
    ] = True,
    json_out: JsonOption = False,
) -> None:
    """Simulate tomograms with ground truth and the outputs of five pickers in native formats."""
    import time

    from picks.consensus.simulate import simulate

    start = time.perf_counter()
    result = simulate(
        out, seed=seed, n_tomograms=tomograms, size=size, snr=snr, voxel_size=voxel_size, bin2=bin2
    )
    elapsed = time.perf_counter() - start
    if json_out:
        echo_json(
            {
                "out": str(result.out),
                "manifest": str(result.manifest),
                "seconds": round(elapsed, 2),
                "tomograms": [
                    {"name": t.name, "path": str(t.path), "particles": t.n_particles}
                    for t in result.tomograms
                ],
                "pickers": [
                    {"label": p.label, "adapter": p.adapter, "picks": p.n_picks}
                    for p in result.pickers
                ],
            }
        )
        return
    typer.echo(f"simulated {len(result.tomograms)} tomograms in {elapsed:.1f} s -> {result.out}")
    for t in result.tomograms:
        typer.echo(
            f"  {t.path}  {'×'.join(map(str, t.shape))} @ {t.voxel_size:g} Å, {t.n_particles} particles"
        )
    typer.echo(f"  ground truth: {result.truth_csv} and {result.truth_copick.parent}/")
    for p in result.pickers:
        typer.echo(f"  {p.label:13s} {p.n_picks:5d} picks  ({p.program}; {p.personality})")
    typer.echo(f"  manifest: {result.manifest}")
    typer.echo(f"next: see {result.readme} for the import/aggregate/evaluate commands")
