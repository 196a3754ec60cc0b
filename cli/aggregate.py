"""``picks aggregate`` (consensus of pickers) and ``picks noise`` (background samples)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.choices import Device, Edge, Method, Representative
from picks.cli.common import (
    DbOption,
    JsonOption,
    echo_json,
    echo_table,
    open_store,
    progress,
    warn,
)
from picks.core.defaults import DEFAULT_DB

DB_DEFAULT = Path(DEFAULT_DB)


def register(app: typer.Typer) -> None:
    app.command("aggregate")(aggregate_cmd)
    app.command("init")(init_cmd)
    app.command("noise")(noise_cmd)


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def aggregate_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[LABEL=]PATH",
            help="Picker outputs (files or folders), optionally labelled: cryolo=picks/cryolo/. None: every picker source already imported.",
        ),
    ] = None,
    inputs_file: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            metavar="FILE",
            help="An inputs file (TOML) naming every picker output with its options, the "
            "tomograms and the output settings (docs/inputs.md); options given here win.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("consensus"),
    tomograms: Annotated[
        list[Path] | None,
        typer.Option(
            "--tomograms",
            metavar="PATH",
            help="Tomogram files/folders (register them; enables noise sampling and the CNN).",
        ),
    ] = None,
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="Output formats (adapter names, or box, csv, star); repeat or comma-separate. Default: relion5,box.",
        ),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            help="auto (= latent, or cnn when CNN options are given with tomograms), latent "
            "(picker reliability estimated from agreement, decided by expected F-beta), vote "
            "(a fixed support rule) or cnn (a 3D CNN trained on the consensus; tomograms)."
        ),
    ] = "auto",
    beta: Annotated[
        float | None,
        typer.Option(
            help="latent: the F-beta the decision maximises per class: 4 (the CZII metric, "
            "recall-heavy; the default) or 1 (a precise set for subtomogram averaging)."
        ),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            metavar="OBJECTIVE",
            help="latent: what the decision optimises per class, instead of --beta: f1, f4, "
            "fBETA (e.g. f2: the same as --beta 2), precision@recall=R (the most precise set "
            "whose expected recall reaches R, e.g. 0.8) or precision=P (the largest set whose "
            "expected precision is at least P). Expected values come from the latent model, "
            "without ground truth (docs/latent.md).",
        ),
    ] = None,
    picker_scores: Annotated[
        bool,
        typer.Option(
            "--picker-scores/--no-picker-scores",
            help="latent: also use each picker's own scores as evidence (off by default: on "
            "simulated worlds they added nothing, see docs/latent.md).",
        ),
    ] = False,
    min_support: Annotated[
        str | None,
        typer.Option(
            metavar="N|all|all-but-one|majority",
            help="Support a positive needs: a number, all, all-but-one or majority (default: all but one picker with ≥3 pickers, else all).",
        ),
    ] = None,
    doubtful_support: Annotated[
        int, typer.Option(help="Pickers a doubtful pick needs (fewer: negative).")
    ] = 2,
    match_fraction: Annotated[
        float | None,
        typer.Option(
            help="Match distance as a fraction of the class radius (default 1.0; the CZII metric's hit radius is 0.5)."
        ),
    ] = None,
    match_distance: Annotated[
        float | None,
        typer.Option(help="Match distance in Å for every class (overrides --match-fraction)."),
    ] = None,
    radius: Annotated[
        list[str] | None,
        typer.Option(
            "--radius",
            metavar="CLASS=Å",
            help="Class radius CLASS=Å (adds or overrides catalog classes).",
        ),
    ] = None,
    box_size: Annotated[
        float | None,
        typer.Option(
            help="Box edge in Å (pixels × sampling) for classes with no known radius: radius = box/2."
        ),
    ] = None,
    particle: Annotated[str | None, typer.Option(help="Class for picks that have none.")] = None,
    class_agnostic: Annotated[
        bool,
        typer.Option("--class-agnostic", help="Cluster across classes; report the majority class."),
    ] = False,
    representative: Annotated[
        Representative,
        typer.Option(
            help="centroid, weighted (score-weighted centroid) or best (best-scoring member)."
        ),
    ] = "centroid",
    weights: Annotated[
        list[str] | None,
        typer.Option("--weights", metavar="LABEL=W", help="Per-picker weight (default 1)."),
    ] = None,
    positive: Annotated[
        list[str] | None,
        typer.Option(
            "--positive", metavar="[LABEL=]FILE", help="Trusted positive reference picks."
        ),
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option(
            "--negative",
            metavar="[LABEL=]FILE",
            help="Trusted negative reference picks, e.g. gold beads.",
        ),
    ] = None,
    noise_ratio: Annotated[
        float, typer.Option(help="Noise samples per positive pick (with --tomograms).")
    ] = 1.0,
    noise_evasion: Annotated[
        float | None,
        typer.Option(
            help="Distance in Å every noise sample keeps from every pick (default: 2 × the "
            "pick's class radius)."
        ),
    ] = None,
    noise_half_box: Annotated[
        float | None,
        typer.Option(
            help="Distance in Å noise samples keep from the tomogram faces (default: 1.25 × "
            "largest class radius)."
        ),
    ] = None,
    voxel_size: Annotated[
        float | None,
        typer.Option(help="Å per voxel of the tomograms/coordinates when headers lack it."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (noise, CNN).")] = 0,
    input_option: Annotated[
        list[str] | None,
        typer.Option(
            "--input-option",
            metavar="LABEL:KEY=VALUE",
            help="Per-input option: adapter, binning, voxel_size, particle, tomogram, role, "
            "name (a file-name pattern such as {tomogram}__{particle}), or an adapter option "
            "(labels=1=ribosome,...).",
        ),
    ] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option(
            "--model", metavar="FILE", help="CNN: reuse a trained model (repeat for an ensemble)."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="CNN: most training epochs per round (default 30).")
    ] = None,
    train_boxes: Annotated[
        int | None,
        typer.Option(
            help="CNN: training budget per round in augmented boxes seen (default 30000; "
            "0: no budget, epochs only)."
        ),
    ] = None,
    pool_per_positive: Annotated[
        float | None,
        typer.Option(
            help="CNN: hard-negative mining scores at most this many background boxes per "
            "training positive (default 2; 0: no bound, 8 per hard negative wanted)."
        ),
    ] = None,
    box: Annotated[int | None, typer.Option(help="CNN: network input box in voxels.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="CNN: acceptance threshold on the CNN score (default: the model card's, "
            "1/(1+β²) = 0.059 for the CZII F-beta, β = 4; see docs/cnn.md)."
        ),
    ] = None,
    combine: Annotated[
        bool | None,
        typer.Option(
            "--combine/--no-combine",
            help="CNN: learned combination of CNN score, support and picker scores.",
        ),
    ] = None,
    device: Annotated[
        Device | None, typer.Option(help="CNN: auto (GPU when TensorFlow sees one), cpu or gpu.")
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(help="CNN: box side = largest particle diameter × margin (default 1.25)."),
    ] = None,
    working_voxel_size: Annotated[
        float | None, typer.Option(help="CNN: Å per box voxel (overrides --margin).")
    ] = None,
    edge: Annotated[
        Edge | None,
        typer.Option(help="CNN: boxes crossing the tomogram edge: pad (box mean, default)."),
    ] = None,
    max_outside: Annotated[
        float | None,
        typer.Option(help="CNN: drop boxes with more than this fraction outside (default 0.5)."),
    ] = None,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Write report.html (slabs with every candidate, picker agreement, score "
            "histograms, box galleries, picker reliability) into --out.",
        ),
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace existing output files.")] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            metavar="local[:N]|tcp://HOST:PORT",
            help="Run the per-tomogram stages on Dask (picks[dask]): a local cluster of N "
            "worker processes, or an existing scheduler. Default: this process.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Worker processes; > 1 without --scheduler means local:N."
        ),
    ] = None,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Aggregate several pickers' outputs into one consensus set, with provenance."""
    from picks.consensus.cluster import DEFAULT_MATCH_FRACTION
    from picks.consensus.cnn.options import CnnOptions
    from picks.core.particles import parse_radius_options
    from picks.workflows.aggregate import aggregate
    from picks.workflows.outputs import DEFAULT_FORMATS

    given = {
        "model": [str(m) for m in model] if model else None,
        "epochs": epochs,
        "train_boxes": train_boxes,
        "pool_per_positive": pool_per_positive,
        "box": box,
        "threshold": threshold,
        "combine": combine,
        "device": device,
        "margin": margin,
        "working_voxel_size": working_voxel_size,
        "edge": edge,
        "max_outside": max_outside,
    }
    given = {k: v for k, v in given.items() if v is not None}
    # 0 lifts a CNN bound (None in CnnOptions); a negative value stays, for its error
    given.update({k: None for k in ("train_boxes", "pool_per_positive") if given.get(k) == 0})
    # Any CNN flag asks for the CNN (method auto); its errors name the flag (cli/flags.py).
    cnn = CnnOptions(**given) if given else None
    all_inputs: list = list(inputs or [])
    names = ("--beta", "--objective")
    if inputs_file is not None:
        from picks.core.inputs_file import read_inputs_file
        from picks.workflows.inputs import InputSpec

        job = read_inputs_file(inputs_file)
        all_inputs = [
            InputSpec(p.path, p.label, p.input_options(), given=f"{p.label}={p.path}")
            for p in job.pickers
        ] + all_inputs
        # The file's settings stand where the command line left the default.
        tomograms = [*job.tomograms, *(tomograms or [])]
        out = job.out if job.out is not None and out == Path("consensus") else out
        fmt = fmt or job.formats
        method = job.method if job.method is not None and method == "auto" else method
        if beta is None and objective is None:  # the command line's choice stands whole
            beta, objective = job.beta, job.objective
            names = (f"{inputs_file}: [decision] beta", f"{inputs_file}: [decision] objective")
        min_support = min_support if min_support is not None else job.min_support
        voxel_size = voxel_size if voxel_size is not None else job.voxel_size
        seed = job.seed if job.seed is not None and seed == 0 else seed
        force = force or bool(job.force)
        scheduler = scheduler if scheduler is not None else job.scheduler
        workers = workers if workers is not None else job.workers
    from picks.cli.objective import resolve_objective

    decision = resolve_objective(beta, objective, names=names)
    from picks.workflows.parallel import open_executor, partial_dir

    with (
        open_executor(
            scheduler, workers, progress=progress, cache_dir=partial_dir(out)
        ) as executor,
        open_store(db) as store,
    ):
        result = aggregate(
            store,
            all_inputs,
            out=out,
            tomograms=tomograms or (),
            formats=_split(fmt) or DEFAULT_FORMATS,
            method=method,
            min_support=min_support,
            doubtful_support=doubtful_support,
            match_fraction=match_fraction if match_fraction is not None else DEFAULT_MATCH_FRACTION,
            match_distance=match_distance,
            representative=representative,
            class_agnostic=class_agnostic,
            particle=particle,
            radii=parse_radius_options(radius or []),
            box_size=box_size,
            weights=weights or [],
            positives=positive or [],
            negatives=negative or [],
            input_options=input_option or [],
            noise_ratio=noise_ratio,
            noise_evasion=noise_evasion,
            noise_half_box=noise_half_box,
            voxel_size=voxel_size,
            seed=seed,
            cnn=cnn,
            beta=decision.beta,
            objective=decision if objective is not None else None,
            picker_scores=picker_scores,
            report=report,
            force=force,
            progress=progress,
            executor=executor,
        )
    if json_out:
        echo_json(result.as_dict())
        return
    for warning in result.warnings:
        warn(warning)
    columns = ["tomogram", "particle", *[f"in:{p}" for p in result.pickers], "consensus"]
    columns += [
        s
        for s in ("positive", "doubtful", "negative", "reference")
        if any(s in r for r in result.summary)
    ]
    columns.append("accepted")
    echo_table(
        result.summary,
        columns,
        title=f"Run {result.run_id} ({result.method}): consensus per tomogram and class",
    )
    ids = result.consensus_ids
    typer.echo(
        f"\n{result.n_picks} picks from {len(result.pickers)} pickers -> {result.n_consensus} consensus picks"
        + (f" (ids {ids[0]}-{ids[1]})" if ids else "")
        + f", {result.n_accepted} accepted"
    )
    if result.noise:
        sampled = sum(r["sampled"] for r in result.noise)
        typer.echo(f"noise: {sampled} background samples stored for the CNN")
    if result.latent:
        _echo_latent(result.latent)
    for row in result.outputs:
        typer.echo(f"wrote {row['path']} ({row['format']}, {row['n_rows']} picks)")
    typer.echo("Trace any output row with: picks audit CONSENSUS_ID")
    if result.latent:
        typer.echo(f"Picker reliability (no ground truth used): picks pickers {result.run_id}")


def _echo_latent(latent: dict) -> None:
    """Per class: the threshold chosen and what it is expected to give (no ground truth)."""
    objective = latent.get("objective") or f"f{latent.get('beta'):g}"
    typer.echo("")
    echo_table(
        latent["classes"],
        [
            "particle",
            "n_candidates",
            "n_accepted",
            "threshold",
            "expected_precision",
            "expected_recall",
            "expected_fbeta",
        ],
        title=f"Decision per class (objective: {objective}; expected values estimated without "
        "ground truth)",
    )
    for _, rule in sorted(latent.get("implied_rules", {}).items()):
        typer.echo(f"  rule implied by the pickers' reliabilities: {rule}")


def noise_cmd(
    run: Annotated[
        int | None, typer.Option(help="Consensus run (default: the latest aggregate run).")
    ] = None,
    noise_ratio: Annotated[float, typer.Option(help="Samples per positive consensus pick.")] = 1.0,
    count: Annotated[
        int | None, typer.Option(help="Samples per tomogram (instead of --noise-ratio).")
    ] = None,
    evasion: Annotated[
        float | None,
        typer.Option(
            help="Distance in Å every sample keeps from every pick (default: 2 × the pick's class radius)."
        ),
    ] = None,
    half_box: Annotated[
        float | None,
        typer.Option(
            help="Distance in Å kept from the tomogram faces (default: 1.25 × largest class radius)."
        ),
    ] = None,
    radius: Annotated[
        list[str] | None, typer.Option("--radius", metavar="CLASS=Å", help="Class radius.")
    ] = None,
    box_size: Annotated[
        float | None, typer.Option(help="Box edge in Å for classes with no known radius.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_batches: Annotated[
        int, typer.Option(help="Give up (with fewer samples) after this many batches.")
    ] = 20,
    tomograms: Annotated[
        list[Path] | None,
        typer.Option("--tomograms", metavar="PATH", help="Register these tomograms first."),
    ] = None,
    voxel_size: Annotated[
        float | None, typer.Option(help="Voxel size in Å when the headers lack it.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the run's existing noise samples.")
    ] = False,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Sample background positions away from every pick, for training the CNN."""
    import json

    from picks.consensus.cluster import resolve_radii
    from picks.core.errors import NotFound, PicksError
    from picks.core.particles import Catalog, parse_radius_options
    from picks.core.tomograms import find_volumes, read_tomogram
    from picks.workflows.noise import noise_for_run

    with open_store(db, must_exist=True) as store:
        if tomograms:
            store.add_tomograms(
                [read_tomogram(p, voxel_size=voxel_size) for p in find_volumes(tomograms)]
            )
        if run is None:
            # the latest *finished* run: a killed or failed run's picks are half-decided
            store.mark_stale()
            latest = store.latest_finished_consensus_run()
            if latest is None:
                raise NotFound(
                    "no finished consensus run in the store",
                    hint="Run 'picks aggregate' first (or name an unfinished one with --run).",
                )
            run = latest
        params = json.loads(store.get_run(run).get("params") or "{}")
        catalog = Catalog().with_radii(
            {**params.get("radii", {}), **parse_radius_options(radius or [])}
        )
        classes = store.consensus_classes(run)
        if not classes:
            raise PicksError(f"run {run} has no consensus picks")
        radii = resolve_radii(classes, catalog, box_size=box_size or params.get("box_size"))
        result = noise_for_run(
            store,
            run,
            radii,
            ratio=noise_ratio,
            count=count,
            evasion=evasion,
            half_box=half_box,
            seed=seed,
            max_batches=max_batches,
            replace=force,
        )
    if json_out:
        echo_json({"run_id": run, "tomograms": result.as_rows(), "warnings": result.warnings})
        return
    for warning in result.warnings:
        warn(warning)
    echo_table(
        result.as_rows(), ["tomogram", "requested", "sampled"], title=f"Noise samples of run {run}"
    )


def init_cmd(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A folder of picker outputs.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Inputs file to write (DIR/inputs.toml)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Write a starting inputs file for a folder of picker outputs: what was detected, and
    (as comments) what could not be decided, e.g. a class-number map."""
    from picks.workflows.scaffold import scaffold

    result = scaffold(folder, out)
    if json_out:
        echo_json(
            {
                "path": str(result.path),
                "pickers": [{k: v for k, v in p.items() if k != "_note"} for p in result.pickers],
                "tomograms": result.tomograms,
                "undecided": result.undecided,
                "skipped": result.skipped,
            }
        )
        return
    typer.echo(f"wrote {result.path}: {len(result.pickers)} input(s)")
    for p in result.pickers:
        typer.echo(f"  {p['label']}: {p['path']} ({p['adapter']})")
    for t in result.tomograms:
        typer.echo(f"  tomograms: {t}")
    for item in result.skipped:
        typer.echo(f"  skipped {item}")
    for item in result.undecided:
        warn(f"to decide: {item}")
    typer.echo(f"Check it, then: picks aggregate --inputs {result.path}")
