"""Training data for the rescoring CNN, its held-out split, and training a model on a run.

Labels (what the network learns from, nothing else):

* **positives** — consensus picks chosen by :mod:`picks.consensus.cnn.labels` (full support,
  or a latent posterior ≥ 0.9 under the ``posterior`` rule) or status ``reference`` (a trusted positive pick that matched
  no consensus pick), plus trusted positive reference picks (sources with role
  ``positive``) on the run's tomograms that no such consensus pick already stands for;
* **negatives** — the run's noise samples (random background far from every pick) plus
  trusted negative reference picks (role ``negative``, e.g. gold beads), plus confident junk
  (the image veto's candidates; under the ``posterior`` rule a posterior ≤ 0.1).

Doubtful candidates are scored later but never used as labels.

One model with a class output (see docs/cnn.md): output 0 is noise, output ``k`` the ``k``-th
particle class of the positives. Classes are balanced by sample weights — noise and particles
each carry half of the total weight — after undersampling the larger side to at most
``max_ratio`` times the smaller.

The validation split is held out **by location**: points are grouped into cubic spatial
blocks (per tomogram) and whole blocks go to validation, so a validation box never shares
its neighbourhood with a training box (apart from the thin layer where two blocks touch).
The split happens before augmentation. When blocks cannot give both classes on both sides
(very small data) it falls back to a stratified split by sample.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.boxes import EdgePolicy, Extracted, describe, extract, geometry_for
from picks.consensus.cnn.labels import (  # noqa: F401 (re-exported: the labels' old home)
    MIN_FULL_POSITIVES,
    POSITIVE_RULES,
    image_vetoed,
    is_trusted,
    match_radius,
    mining_room,
    mining_sizes,
    negative_selection,
    positive_selection,
)
from picks.consensus.cnn.options import CnnOptions
from picks.consensus.cnn.split import _guard_band, spatial_split
from picks.consensus.cnn.threshold import decision_rule
from picks.core.errors import PicksError
from picks.core.jsonable import jsonable
from picks.core.particles import Catalog
from picks.core.progress import now, null_progress

UNLABELLED = "unlabelled"  # class of positive references that name no class
MIN_POSITIVES = 10


class TooLittleTraining(PicksError):
    """The run does not hold enough labelled points to train (a caller may fall back)."""


MIN_NEGATIVES = 10


@dataclass
class RunData:
    """What training reads of a run, loaded by the caller (the store side,
    :func:`picks.workflows.rescore.load_run_data`): its consensus candidates, the trusted
    reference picks (roles positive/negative) on its tomograms, its noise samples, the
    points background sampling must avoid (every clustered pick and trusted reference) and,
    for the CNN's ``combine`` only, its member picks (``Store.member_picks``)."""

    candidates: pd.DataFrame
    references: pd.DataFrame
    noise: pd.DataFrame
    avoid: pd.DataFrame
    members: pd.DataFrame | None = None


# -- the labelled table ------------------------------------------------------------------------


@dataclass
class TrainingTable:
    """Labelled points: columns kind, ref_id, tomogram, particle, x, y, z, label, weight."""

    table: pd.DataFrame
    classes: list[str]  # particle classes; label k ≥ 1 is classes[k - 1], label 0 is noise
    counts: dict = field(default_factory=dict)

    @property
    def outputs(self) -> list[str]:
        return [cnn.NOISE, *self.classes]


def training_table(
    run: RunData,
    run_id: int,
    *,
    catalog: Catalog,
    candidates: pd.DataFrame | None = None,
    seed: int = 0,
    max_ratio: float = 3.0,
    max_samples: int = 40000,
    positives: str = "auto",
) -> TrainingTable:
    """Positives and negatives of a run (see the module docstring), with class weights."""
    candidates = run.candidates if candidates is None else candidates
    tomos = set(candidates["tomogram"].astype(str))
    mask, positive_rule = positive_selection(candidates, positives)
    pos = candidates[mask]
    # Confident junk (the image veto's candidates; under the posterior rule also what the
    # latent model is sure is junk) trains as negatives, like noise samples.
    junk_mask = negative_selection(candidates, positives)
    junk = candidates[junk_mask]
    junk_kind = np.where(image_vetoed(candidates)[junk_mask], "image-veto", "latent-junk")
    frames = [
        pd.DataFrame(
            {
                "kind": "consensus",
                "ref_id": pos["id"].to_numpy(dtype=np.int64),
                "tomogram": pos["tomogram"].astype(str).to_numpy(),
                "particle": pos["particle"].to_numpy(dtype=object),
                "x": pos["x"].to_numpy(),
                "y": pos["y"].to_numpy(),
                "z": pos["z"].to_numpy(),
                "negative": False,
            }
        )
    ]
    refs = run.references
    if not refs.empty:
        refs = refs[refs["tomogram"].astype(str).isin(tomos)].reset_index(drop=True)
    n_pos_refs = n_neg_refs = n_pos_refs_merged = 0
    if not refs.empty:
        negative = (refs["role"] == "negative").to_numpy()
        keep = negative | ~_near(refs, pos, match_radius(catalog, refs["particle"]))
        n_pos_refs_merged = int((~negative & ~keep).sum())
        refs = refs[keep]
        negative = (refs["role"] == "negative").to_numpy()
        n_pos_refs, n_neg_refs = int((~negative).sum()), int(negative.sum())
        frames.append(
            pd.DataFrame(
                {
                    "kind": "reference",
                    "ref_id": refs["id"].to_numpy(dtype=np.int64),
                    "tomogram": refs["tomogram"].astype(str).to_numpy(),
                    "particle": np.where(negative, None, refs["particle"].to_numpy(dtype=object)),
                    "x": refs["x"].to_numpy(),
                    "y": refs["y"].to_numpy(),
                    "z": refs["z"].to_numpy(),
                    "negative": negative,
                }
            )
        )
    if len(junk):
        frames.append(
            pd.DataFrame(
                {
                    "kind": junk_kind,
                    "ref_id": junk["id"].to_numpy(dtype=np.int64),
                    "tomogram": junk["tomogram"].astype(str).to_numpy(),
                    "particle": None,
                    "x": junk["x"].to_numpy(),
                    "y": junk["y"].to_numpy(),
                    "z": junk["z"].to_numpy(),
                    "negative": True,
                }
            )
        )
    noise = run.noise
    frames.append(
        pd.DataFrame(
            {
                "kind": "noise",
                "ref_id": noise["id"].to_numpy(dtype=np.int64),
                "tomogram": noise["tomogram"].astype(str).to_numpy(),
                "particle": None,
                "x": noise["x"].to_numpy(),
                "y": noise["y"].to_numpy(),
                "z": noise["z"].to_numpy(),
                "negative": True,
            }
        )
    )
    table = pd.concat([f for f in frames if len(f)], ignore_index=True)
    positive = ~table["negative"].to_numpy(dtype=bool)
    particle = table["particle"].where(table["particle"].notna(), UNLABELLED).astype(object)
    table["particle"] = np.where(positive, particle, None)
    classes = sorted(set(particle[positive].astype(str)))
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < MIN_POSITIVES or n_neg < MIN_NEGATIVES:
        raise TooLittleTraining(
            f"run {run_id}: too little training data for the CNN ({n_pos} positives, {n_neg} "
            f"negatives; at least {MIN_POSITIVES} of each are needed)",
            hint="Sample noise for the run (picks noise), add trusted `positives` references, "
            "or use `method` vote.",
        )
    rng = np.random.default_rng([int(seed), 7])
    keep = np.ones(len(table), dtype=bool)
    undersampled = {"positive": 0, "negative": 0}
    for side, other, name in ((~positive, positive, "negative"), (positive, ~positive, "positive")):
        limit = int(max_ratio * other.sum())
        idx = np.flatnonzero(side)
        if len(idx) > limit:
            drop = rng.choice(idx, len(idx) - limit, replace=False)
            keep[drop] = False
            undersampled[name] = len(drop)
    if keep.sum() > max_samples:
        idx = np.flatnonzero(keep)
        drop = rng.choice(idx, int(keep.sum()) - max_samples, replace=False)
        keep[drop] = False
        undersampled["cap"] = len(drop)
    table = table[keep].reset_index(drop=True)
    positive = ~table["negative"].to_numpy(dtype=bool)
    lookup = {c: i + 1 for i, c in enumerate(classes)}
    table["label"] = [
        lookup[p] if pos_ else 0 for p, pos_ in zip(table["particle"], positive, strict=True)
    ]
    n_total, n_p = len(table), int(positive.sum())
    table["weight"] = np.where(positive, n_total / (2.0 * n_p), n_total / (2.0 * (n_total - n_p)))
    counts = {
        "positives": {c: int(((table["particle"] == c) & positive).sum()) for c in classes},
        "positive_rule": positive_rule,
        "positive_consensus": int((table["kind"] == "consensus").sum()),
        "positive_references": n_pos_refs,
        "positive_references_already_in_consensus": n_pos_refs_merged,
        "negative_references": n_neg_refs,
        "noise": int((table["kind"] == "noise").sum()),
        "image_vetoed": int((table["kind"] == "image-veto").sum()),
        "latent_junk": int((table["kind"] == "latent-junk").sum()),
        "undersampled": undersampled,
    }
    return TrainingTable(table.drop(columns=["negative"]), classes, counts)


def _near(points: pd.DataFrame, others: pd.DataFrame, radius: np.ndarray) -> np.ndarray:
    """Whether each point has one of ``others`` (same tomogram) within its radius."""
    out = np.zeros(len(points), dtype=bool)
    if others.empty or points.empty:
        return out
    names = points["tomogram"].astype(str).to_numpy()
    other_names = others["tomogram"].astype(str).to_numpy()
    for name in np.unique(names):
        mine = np.flatnonzero(names == name)
        theirs = others[other_names == name]
        if theirs.empty:
            continue
        d, _ = cKDTree(theirs[["x", "y", "z"]].to_numpy(float)).query(
            points.iloc[mine][["x", "y", "z"]].to_numpy(float)
        )
        out[mine] = d <= radius[mine]
    return out


# -- held-out split ----------------------------------------------------------------------------
@dataclass
class Trained:
    """A model trained on a run, with everything needed to record and reuse it."""

    model: object
    card: dict
    result: cnn.TrainResult
    data: TrainingTable
    extracted: Extracted
    val_mask: np.ndarray  # over extracted rows
    dropped: list[tuple[str, int, str]]  # (kind, ref_id, reason)
    extract_seconds: float = 0.0
    train_seconds: float = 0.0  # all training rounds
    mine_seconds: float = 0.0  # sampling, extracting and scoring the hard-negative pool
    # the typicality fit, the validation rule and the model card (its hashes) after training
    finish_seconds: float = 0.0


def fit(
    run: RunData,
    run_id: int,
    options: CnnOptions,
    *,
    tomograms,
    catalog: Catalog,
    seed: int = 0,
    candidates: pd.DataFrame | None = None,
    progress: Callable | None = None,
) -> Trained:
    """Extract the run's labelled boxes and train the CNN on them (nothing is written)."""
    from picks import __version__
    from picks.consensus.cnn.boxes import DEFAULT_MARGIN

    progress = progress or null_progress
    edge = EdgePolicy(options.edge, options.outside_limit)
    plan = cnn.select_device(options.device)
    shift, widths, epochs = options.shift, options.widths, options.epochs
    data = training_table(
        run,
        run_id,
        catalog=catalog,
        candidates=candidates,
        seed=seed,
        positives=options.positive_rule,
    )
    radii = [catalog.radius(c) for c in data.classes if c in catalog]
    if not radii:
        raise PicksError(
            f"run {run_id}: none of the classes {data.classes} has a known radius",
            hint="Give one with `radii` CLASS=ÅNGSTROM.",
        )
    margin = DEFAULT_MARGIN if options.margin is None else options.margin
    working_voxel_size = options.working_voxel_size
    geometry = geometry_for(
        radii,
        box=options.box,
        margin=margin,
        working_voxel_size=working_voxel_size,
        border=int(shift),
    )
    table = data.table
    started = time.perf_counter()
    # room after the training boxes for the hard negatives: adding them copies no box
    size, room = geometry.size, mining_room(table, options, MIN_NEGATIVES)
    buffer = np.empty((len(table) + room, size, size, size), dtype=np.float16)
    with progress("extract training boxes", total=len(table)) as advance:
        extracted = extract(
            table,
            tomograms,
            geometry,
            edge=edge,
            reader=options.reader,
            progress=advance,
            out=buffer,
        )
    extract_seconds = time.perf_counter() - started
    # the dropped table's kind names the table ref_id points to (junk rows: consensus picks)
    kinds = (
        table["kind"].astype(str).replace({"image-veto": "consensus", "latent-junk": "consensus"})
    )
    dropped = [
        (str(kinds.iat[i]), int(table["ref_id"].iat[i]), reason) for i, reason in extracted.dropped
    ]
    rows = table.iloc[extracted.index].reset_index(drop=True)
    extracted = Extracted(np.arange(len(rows)), extracted.boxes, extracted.dropped)
    data.table = rows
    labels = rows["label"].to_numpy(dtype=np.int64)
    if (labels > 0).sum() < MIN_POSITIVES or (labels == 0).sum() < MIN_NEGATIVES:
        raise TooLittleTraining(
            f"run {run_id}: after extraction only {(labels > 0).sum()} positive and "
            f"{(labels == 0).sum()} negative boxes remain (see 'dropped')"
        )
    boxes = extracted.boxes
    model, result, val_mask, split = _train_round(
        boxes,
        rows,
        labels,
        geometry,
        data,
        options,
        seed=seed,
        plan=plan,
        progress=progress,
        title="train",
    )
    mined_info = None
    train_seconds, mine_seconds = result.train_seconds, 0.0
    if options.hard_negatives > 0:
        started = time.perf_counter()
        n_noise = int((rows["kind"] == "noise").sum())
        wanted, pool_size = mining_sizes(
            max(n_noise, MIN_NEGATIVES), int((labels > 0).sum()), options
        )
        pool = background_pool(run, tomograms, catalog, geometry, pool_size, seed)
        with progress("mine hard negatives", total=len(pool)) as advance:
            mined = extract(
                pool, tomograms, geometry, edge=edge, reader=options.reader, progress=advance
            )
        pool_score = 1.0 - cnn.predict(model, mined.boxes, box=geometry.box)[:, 0]
        top = np.argsort(-pool_score, kind="stable")[: min(wanted, len(pool_score))]
        top = np.sort(top)
        mine_seconds = time.perf_counter() - started
        extra = pool.iloc[mined.index[top]].reset_index(drop=True)
        extra = extra.assign(kind="mined", ref_id=-1, particle=None, label=0, weight=1.0)
        rows = pd.concat([rows, extra[rows.columns]], ignore_index=True)
        # the hard negatives go into the room left after the training boxes (see above)
        n_before = len(boxes)
        boxes = buffer[: n_before + len(top)]
        boxes[n_before:] = mined.boxes[top]
        labels = rows["label"].to_numpy(dtype=np.int64)
        mined_info = {
            "wanted": wanted,
            "pool_per_positive": options.pool_per_positive,
            "pool": len(pool),
            "pool_extracted": len(mined.index),
            "kept": len(top),
            "score_of_kept": [float(pool_score[top].min()), float(pool_score[top].max())]
            if len(top)
            else None,
            "rule": f"background positions sampled like noise (seed {seed}), the {len(top)} the "
            "first-round model scored highest added as negatives, then a second round trained",
        }
        model, result, val_mask, split = _train_round(
            boxes,
            rows,
            labels,
            geometry,
            data,
            options,
            seed=seed,
            plan=plan,
            progress=progress,
            title="train (with hard negatives)",
        )
        train_seconds += result.train_seconds
        extracted = Extracted(np.arange(len(rows)), boxes, extracted.dropped)
        data.table = rows
    started = time.perf_counter()
    typical = None
    if options.typicality:
        _, feats = cnn.predict(model, extracted.boxes, box=geometry.box, features=True)
        positive = labels > 0
        held_out = positive & val_mask
        calibration = feats[held_out] if held_out.sum() >= 10 else feats[positive]
        typical = cnn.fit_typicality(
            feats[positive & ~val_mask], labels[positive & ~val_mask], calibration
        )
        typical["calibration"] = (
            "held-out validation positives"
            if held_out.sum() >= 10
            else "all positives (fewer than 10 held out)"
        )
    decision = decision_rule(model, extracted.boxes, labels, val_mask, geometry.box, typical)
    card = {
        "format": "picks-cnn/1",
        "picks_version": __version__,
        "created_at": now(),
        "box": geometry.box,
        "voxel_size": geometry.voxel_size,
        "side_angstrom": geometry.side,
        "margin": None if working_voxel_size is not None else margin,
        "edge": {"mode": edge.mode, "max_outside": edge.max_outside},
        "classes": data.outputs,
        "score": "(1 - P(noise)) × typicality",
        "decision": decision,
        "typicality": typical,
        "architecture": {"widths": list(widths), "parameters": int(model.count_params())},
        "seed": int(seed),
        "training": {
            "run_id": int(run_id),
            "counts": dict(
                data.counts,
                train=int((~val_mask).sum()),
                validation=int(val_mask.sum()),
                dropped_at_extraction=len(dropped),
            ),
            "split": split,
            "shift_voxels": int(shift),
            "hard_negatives": mined_info,
            "epochs_requested": int(epochs),
            "train_boxes": options.train_boxes,
            **{k: v for k, v in result.as_dict().items() if k != "history"},
            "history": result.history,
        },
        "validation": {
            "loss": result.val_loss,
            "auc": result.val_auc,
            "accuracy": result.val_accuracy,
        },
        "data": {
            "training_table_sha256": table_hash(rows),
            # the same bytes hashed through a view: tobytes() copied the ~1 GB of boxes
            "boxes_sha256": hashlib.sha256(
                np.ascontiguousarray(extracted.boxes).reshape(-1).view(np.uint8)
            ).hexdigest(),
            "tomograms": describe(_used_tomograms(tomograms, rows)),
        },
    }
    return Trained(
        model,
        json.loads(json.dumps(card, default=jsonable)),
        result,
        data,
        extracted,
        val_mask,
        dropped,
        extract_seconds,
        train_seconds,
        mine_seconds,
        time.perf_counter() - started,
    )


def _train_round(
    boxes,
    rows,
    labels,
    geometry,
    data,
    options: CnnOptions,
    *,
    seed,
    plan,
    progress,
    title,
):
    """One training run on ``rows`` (``options``: epochs, batch size, widths, patience,
    validation fraction): balanced weights, spatial split, the CNN."""
    positive = labels > 0
    n, n_pos = len(labels), int(positive.sum())
    weights = np.where(positive, n / (2.0 * n_pos), n / (2.0 * (n - n_pos))).astype(np.float32)
    rows["weight"] = weights
    val_mask, split = spatial_split(
        rows, block=4 * geometry.side, val_fraction=options.val_fraction, seed=seed
    )
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    if split.startswith("spatial"):
        train_idx, split = _guard_band(rows, train_idx, val_idx, positive, geometry.side, split)
    with progress(title, total=options.epochs) as advance:

        def on_epoch(r: dict) -> None:
            advance(
                1,
                info=f"epoch {r['epoch']}: loss {r['loss']:.3f} val_loss "
                f"{r['val_loss']:.3f} val_auc {r['val_auc']:.3f}",
            )

        model, result = cnn.train(
            boxes,
            labels,
            weights,
            train_idx,
            val_idx,
            n_outputs=len(data.outputs),
            box=geometry.box,
            epochs=options.epochs,
            batch_size=options.batch_size,
            seed=seed,
            plan=plan,
            widths=options.widths,
            patience=options.patience,
            on_epoch=on_epoch,
            max_boxes=options.train_boxes,
        )
    return model, result, val_mask, split


def background_pool(
    run: RunData, tomograms, catalog: Catalog, geometry, count: int, seed: int
) -> pd.DataFrame:
    """``count`` background positions drawn by the noise module's rule (far from every pick
    and reference of the run, a half box inside the tomogram), spread over the tomograms in
    proportion to their noise samples."""
    from picks.consensus import noise as noise_mod
    from picks.consensus.cnn.boxes import tomogram_lookup

    lookup = tomogram_lookup(tomograms)
    noise = run.noise
    per = noise["tomogram"].value_counts()
    names = [t for t in sorted(per.index) if t in lookup]
    if not names or count <= 0:
        return pd.DataFrame(columns=["tomogram", "x", "y", "z"])
    total = float(per[names].sum())
    counts = {t: max(1, round(count * per[t] / total)) for t in names}
    avoid = run.avoid.copy()
    radii = {p.name: p.radius for p in catalog}
    avoid["evasion"] = noise_mod.evasion_radii(avoid["particle"], radii)  # None, NaN: no class
    result = noise_mod.sample_noise(
        [lookup[t] for t in names], avoid, counts, half_box=geometry.side / 2, seed=int(seed) + 1
    )
    return result.samples.reset_index(drop=True)


def table_hash(rows: pd.DataFrame) -> str:
    """sha256 of the labelled points (kind, id, tomogram, x, y, z to 0.01 Å, label)."""
    text = "\n".join(
        f"{k}\t{i}\t{t}\t{x:.2f}\t{y:.2f}\t{z:.2f}\t{lab}"
        for k, i, t, x, y, z, lab in zip(
            rows["kind"],
            rows["ref_id"],
            rows["tomogram"],
            rows["x"],
            rows["y"],
            rows["z"],
            rows["label"],
            strict=True,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _used_tomograms(tomograms, rows: pd.DataFrame) -> list:
    from picks.consensus.cnn.boxes import tomogram_lookup

    names = set(rows["tomogram"].astype(str))
    return [t for name, t in sorted(tomogram_lookup(tomograms).items()) if name in names]


def unique_model_path(directory: Path, stem: str) -> Path:
    """``directory/stem.keras``, or ``stem-2.keras``... when taken."""
    directory = Path(directory)
    path = directory / f"{stem}.keras"
    k = 2
    while path.exists():
        path = directory / f"{stem}-{k}.keras"
        k += 1
    return path
