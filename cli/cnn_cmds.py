"""CNN commands: ``picks train`` (a model from a run's data) and ``picks score`` (reuse models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.choices import Device, Edge, Positives
from picks.cli.common import DbOption, JsonOption, echo_json, echo_table, open_store, progress
from picks.core.defaults import DEFAULT_DB

DB_DEFAULT = Path(DEFAULT_DB)

DeviceOption = Annotated[Device, typer.Option(help="auto: the GPU when TensorFlow sees one.")]
EdgeOption = Annotated[
    Edge, typer.Option(help="Boxes crossing the tomogram edge: pad (with the box mean).")
]
MaxOutsideOption = Annotated[
    float, typer.Option(help="Drop boxes with more than this fraction outside the tomogram.")
]


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("score")(score_cmd)


def train_cmd(
    run: Annotated[
        int, typer.Option("--run", help="Run whose consensus picks and noise to train on.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Model file (.keras); a card .card.json goes beside it.")
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Maximum epochs (early stopping may end sooner).")
    ] = 30,
    box: Annotated[int, typer.Option(help="Network input edge in voxels.")] = 32,
    margin: Annotated[
        float, typer.Option(help="Box side = largest particle diameter × margin.")
    ] = 1.25,
    working_voxel_size: Annotated[
        float | None, typer.Option(help="Å per box voxel (overrides --margin).")
    ] = None,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (split, augmentation, weights).")] = 0,
    batch_size: Annotated[
        int | None, typer.Option(help="Training batch (default 64 on CPU, 256 per GPU).")
    ] = None,
    edge: EdgeOption = "pad",
    max_outside: MaxOutsideOption = 0.5,
    positives: Annotated[
        Positives,
        typer.Option(
            help="Training positives: auto (full support; all pickers but one when fewer than "
            "50 have it), full, status (the run's positives), or posterior (latent-class "
            "posterior ≥ 0.9 positive, ≤ 0.1 negative; needs a latent or cnn run)."
        ),
    ] = "auto",
    hard_negatives: Annotated[
        float,
        typer.Option(help="Hard negatives mined per noise sample for a second round (0: off)."),
    ] = 1.0,
    patience: Annotated[
        int, typer.Option(help="Early stopping: epochs without a better validation loss.")
    ] = 5,
    train_boxes: Annotated[
        int,
        typer.Option(help="Training budget per round in augmented boxes seen (0: epochs only)."),
    ] = 30_000,
    pool_per_positive: Annotated[
        float,
        typer.Option(
            help="Hard-negative mining scores at most this many background boxes per training "
            "positive (0: no bound)."
        ),
    ] = 2.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing model file.")] = False,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Train the rescoring CNN on a run (its full-support picks against its noise) and save it."""
    from picks.consensus.cnn import network as cnn
    from picks.consensus.cnn.options import CnnOptions
    from picks.consensus.cnn.train import fit, unique_model_path
    from picks.workflows.rescore import load_run_data, record_training, run_catalog

    options = CnnOptions(
        epochs=epochs,
        box=box,
        margin=margin,
        working_voxel_size=working_voxel_size,
        device=device,
        batch_size=batch_size,
        edge=edge,
        max_outside=max_outside,
        positives=positives,
        hard_negatives=hard_negatives,
        patience=patience,
        # 0 lifts a bound (None); a negative value stays, for its error
        train_boxes=None if train_boxes == 0 else train_boxes,
        pool_per_positive=None if pool_per_positive == 0 else pool_per_positive,
    )
    with open_store(db, must_exist=True) as store:
        store.get_run(run)
        params = {
            "run": run,
            "out": str(out) if out else None,
            "epochs": epochs,
            "box": box,
            "margin": margin,
            "working_voxel_size": working_voxel_size,
            "device": device,
            "batch_size": batch_size,
            "edge": edge,
            "max_outside": max_outside,
            "positives": positives,
            "hard_negatives": hard_negatives,
            "patience": patience,
            "train_boxes": options.train_boxes,
            "pool_per_positive": options.pool_per_positive,
        }
        with store.run("train", params, method="cnn", seed=seed) as train_run:
            trained = fit(
                load_run_data(store, run),
                run,
                options,
                tomograms=store.tomograms(),
                catalog=run_catalog(store, run),
                seed=seed,
                progress=progress,
            )
            path = out or unique_model_path(Path("models"), f"run{run}-cnn")
            digest = cnn.save(trained.model, path, trained.card, force=force)
            model_id = record_training(store, train_run, trained, path, digest)
    result = trained.result
    summary = {
        "model_id": model_id,
        "path": str(path),
        "sha256": digest,
        "train_run": train_run,
        "classes": trained.card["classes"],
        "box": trained.card["box"],
        "voxel_size": trained.card["voxel_size"],
        "counts": trained.card["training"]["counts"],
        "split": trained.card["training"]["split"],
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "val_loss": result.val_loss,
        "val_auc": result.val_auc,
        "val_accuracy": result.val_accuracy,
        "samples_per_s": result.samples_per_s,
        "device": result.device,
        "dropped": len(trained.dropped),
    }
    if json_out:
        echo_json(summary)
        return
    typer.echo(
        f"model {model_id}: {path} (card {cnn.card_path(path).name}), trained on run {run} "
        f"[{result.device}]"
    )
    typer.echo(
        f"  input {trained.card['box']}³ at {trained.card['voxel_size']:.2f} Å/voxel; outputs "
        f"{', '.join(trained.card['classes'])}"
    )
    counts = trained.card["training"]["counts"]
    typer.echo(
        f"  {counts['train']} training / {counts['validation']} validation boxes "
        f"({trained.card['training']['split']}); {len(trained.dropped)} dropped at extraction"
    )
    typer.echo(
        f"  best epoch {result.best_epoch} of {result.epochs_run}: val loss {result.val_loss:.3f}, "
        f"val AUC {result.val_auc:.3f}; {result.samples_per_s:.0f} samples/s"
    )


def score_cmd(
    run: Annotated[int, typer.Option("--run", help="Run whose consensus picks to rescore.")],
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            metavar="FILE",
            help="Saved model (.keras); repeat for an ensemble (mean score).",
        ),
    ],
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Accept picks whose score is at least this (default: the model card's, "
            "1/(1+β²) = 0.059 for β = 4; 0.5 with --combine).",
        ),
    ] = None,
    combine: Annotated[
        bool,
        typer.Option(
            "--combine/--no-combine",
            help="Decide with a logistic regression on CNN score, support and picker scores.",
        ),
    ] = False,
    device: DeviceOption = "auto",
    edge: EdgeOption = "pad",
    max_outside: MaxOutsideOption = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed (only --combine uses one).")] = 0,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Rescore a run's consensus picks with saved model(s) and update its accepted set."""
    from picks.consensus.cnn.options import CnnOptions
    from picks.workflows.rescore import rescore_run, run_catalog

    options = CnnOptions(
        model=[str(m) for m in model],
        threshold=threshold,
        combine=combine,
        device=device,
        edge=edge,
        max_outside=max_outside,
    )
    with open_store(db, must_exist=True) as store:
        store.get_run(run)
        params = {
            "run": run,
            "models": [str(m) for m in model],
            "threshold": threshold,
            "combine": combine,
            "device": device,
            "edge": edge,
            "max_outside": max_outside,
        }
        with store.run("score", params, method="cnn", seed=seed):
            summary = rescore_run(
                store,
                run,
                options,
                tomograms=store.tomograms(),
                catalog=run_catalog(store, run),
                seed=seed,
                models_dir=None,
                progress=progress,
            )
    if json_out:
        echo_json(summary)
        return
    typer.echo(
        f"run {run}: {summary['n_scored']} of {summary['n_candidates']} consensus picks scored "
        f"with {len(summary['models'])} model(s) [{summary.get('device', '')}], "
        f"{summary['n_accepted']} accepted (threshold {summary['threshold']:g}"
        f"{', combined' if combine else ''}), {summary['n_dropped']} dropped"
    )
    echo_table(summary["models"], ["id", "path"])
    typer.echo(
        "The store (decisions, scores, picks audit) is updated; files an earlier aggregate "
        "wrote are not: re-run picks aggregate ... --model PATH --force to rewrite them.",
        err=True,
    )
