"""``picks simulate``: write a small simulated world (tomograms, truth, five pickers);
``picks simulate-pickers``: the same five pickers on tomograms made elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import JsonOption, echo_json


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
    app.command("simulate-pickers")(simulate_pickers_cmd)


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

    from picks.simulate.world import simulate

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


def simulate_pickers_cmd(
    tomograms: Annotated[
        list[str],
        typer.Option(
            "--tomograms",
            "--tomogram",
            metavar="[NAME=]PATH",
            help="[NAME=]PATH: an MRC tomogram or a folder of them (repeatable). The name "
            "defaults to the file stem; picker files name the tomogram by it.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write (created if needed).", file_okay=False)
    ],
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives identical files.")
    ] = 0,
    contrast: Annotated[
        str,
        typer.Option(
            help="Particle polarity: bright (positive density, e.g. polnet, picks simulate), "
            "dark (real cryo-ET), or auto (detected per tomogram and reported; an error when "
            "unclear)."
        ),
    ] = "auto",
    voxel_size: Annotated[
        float | None, typer.Option(help="Voxel size in Å (default: from the MRC header).")
    ] = None,
    snr: Annotated[
        float, typer.Option(help="SNR of the simulated training tomogram the pickers learn from.")
    ] = 0.05,
    defocus: Annotated[
        float,
        typer.Option(
            help="Defocus (µm) of the CTF the pickers' matched filters assume; 0: no CTF "
            "(e.g. polnet without its TEM stage)."
        ),
    ] = 3.0,
    bin2: Annotated[
        bool, typer.Option("--bin2/--no-bin2", help="Also run the binned picker (DeepETPicker).")
    ] = True,
    json_out: JsonOption = False,
) -> None:
    """Run the five simulated pickers of 'picks simulate' on your own tomograms.

    Writes their outputs in the native formats (crYOLO CBOX, DeepFinder XML, DeepETPicker
    coords, CZII CSV) under OUT/pickers, links the tomograms under OUT/tomograms, and the
    'picks aggregate' command in OUT/README.txt. The pickers look only at the images (no
    ground truth is read); use 'picks evaluate' with your own truth to score the result.
    """
    import time

    from picks.cli.flags import flag_text
    from picks.simulate import volume as sv
    from picks.simulate.external import run_pickers

    start = time.perf_counter()
    result = run_pickers(
        tomograms,
        out,
        seed=seed,
        contrast=contrast,
        voxel_size=voxel_size,
        snr=snr,
        optics=sv.Optics(defocus=defocus * 1e4),
        bin2=bin2,
        say=lambda message: typer.echo(flag_text(message), err=True),
    )
    elapsed = time.perf_counter() - start
    if json_out:
        echo_json(
            {
                "out": str(result.out),
                "manifest": str(result.manifest),
                "seconds": round(elapsed, 2),
                "tomograms": [
                    {
                        "name": t.name,
                        "source": str(t.source),
                        "contrast": t.contrast,
                        "bright_dark_tail_ratio": round(t.statistic, 4),
                    }
                    for t in result.tomograms
                ],
                "pickers": [
                    {"label": p.label, "adapter": p.adapter, "picks": p.n_picks}
                    for p in result.pickers
                ],
            }
        )
        return
    typer.echo(
        f"ran {len(result.pickers)} simulated pickers on {len(result.tomograms)} tomograms in {elapsed:.1f} s"
    )
    for p in result.pickers:
        typer.echo(f"  {p.label:13s} {p.n_picks:5d} picks  ({p.program}; {p.personality})")
    typer.echo(f"  manifest: {result.manifest}")
    typer.echo(f"next: see {result.readme} for the aggregate command")
