"""The held-out validation split of the CNN's training points: by location, so a validation box
never shares its neighbourhood with a training box (see :mod:`picks.consensus.cnn.train`)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def spatial_split(
    table: pd.DataFrame,
    *,
    block: float,
    val_fraction: float = 0.2,
    seed: int = 0,
    min_blocks: int = 10,
) -> tuple[np.ndarray, str]:
    """Boolean validation mask from whole spatial blocks, and a description of the split.

    ``block`` (Å) is the starting block edge; it is halved (down to a quarter) until there are
    at least ``min_blocks`` occupied blocks. Blocks are shuffled with ``seed`` and added to
    validation until it holds ``val_fraction`` of the samples.
    """
    positive = table["label"].to_numpy() > 0
    xyz = table[["x", "y", "z"]].to_numpy(float)
    names = table["tomogram"].astype(str).to_numpy()
    rng = np.random.default_rng([int(seed), 11])
    size = float(block) * 2.0
    for _ in range(3):
        size /= 2.0  # the size of the blocks factorised below, also when the loop runs out
        cells = np.floor(xyz / size).astype(np.int64)
        keys = pd.Series(list(zip(names, cells[:, 0], cells[:, 1], cells[:, 2], strict=True)))
        codes, uniques = pd.factorize(keys, sort=True)
        if len(uniques) >= min_blocks:
            break
    order = rng.permutation(len(uniques))
    counts = np.bincount(codes, minlength=len(uniques))
    val_blocks = np.zeros(len(uniques), dtype=bool)
    target = val_fraction * len(table)
    total = 0
    for b in order:
        if total >= target:
            break
        val_blocks[b] = True
        total += counts[b]
    val = val_blocks[codes]
    if len(uniques) >= 2 and _both_sides(val, positive):
        return (
            val,
            f"spatial blocks of {size:.0f} Å ({int(val_blocks.sum())} of {len(uniques)} blocks held out)",
        )
    val = np.zeros(len(table), dtype=bool)
    for cls in (True, False):
        idx = np.flatnonzero(positive == cls)
        k = max(1, round(val_fraction * len(idx)))
        val[rng.choice(idx, min(k, len(idx) - 1), replace=False)] = True
    return val, "stratified by sample (too few spatial blocks for a spatial split)"


def _guard_band(rows, train_idx, val_idx, positive, side: float, split: str):
    """Training points whose box overlaps a validation box (centres closer than one box side
    on every axis, across a block face or corner) are left out of training, so validation
    sees no voxel training saw.
    Kept when leaving them out would empty a class on the training side."""
    from scipy.spatial import cKDTree

    xyz = rows[["x", "y", "z"]].to_numpy(float)
    names = rows["tomogram"].astype(str).to_numpy()
    near = np.zeros(len(train_idx), dtype=bool)
    for name in np.unique(names[val_idx]):
        t = names[train_idx] == name
        if not t.any():
            continue
        tree = cKDTree(xyz[val_idx[names[val_idx] == name]])
        # cubes overlap when every axis is closer than a side: the Chebyshev distance
        distance, _ = tree.query(xyz[train_idx[t]], p=np.inf, distance_upper_bound=side)
        near[np.flatnonzero(t)] = np.isfinite(distance) & (distance < side)
    kept = train_idx[~near]
    if not near.any() or not (positive[kept].any() and (~positive[kept]).any()):
        return train_idx, split
    return (
        kept,
        f"{split}; {int(near.sum())} training points within one box side of a validation point left out",
    )


def _both_sides(val: np.ndarray, positive: np.ndarray) -> bool:
    return all(np.any(side & cls) for side in (val, ~val) for cls in (positive, ~positive))


# -- training a model on a run -----------------------------------------------------------------
