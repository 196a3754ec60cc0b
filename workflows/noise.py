"""Sample background (noise) positions for a consensus run and store them (the store side of
:mod:`picks.consensus.noise`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pandas as pd

from picks.consensus.noise import (
    DEFAULT_EVASION_FACTOR,
    DEFAULT_HALF_BOX_FACTOR,
    DEFAULT_MAX_BATCHES,
    DEFAULT_NOISE_RATIO,
    NoiseResult,
    evasion_radii,
    sample_noise,
)
from picks.core.errors import PicksError
from picks.core.store import Store
from picks.workflows.parallel import Executor


def noise_for_run(
    store: Store,
    run_id: int,
    radii: Mapping[object, float],
    *,
    ratio: float = DEFAULT_NOISE_RATIO,
    count: int | None = None,
    evasion: float | None = None,
    evasion_factor: float = DEFAULT_EVASION_FACTOR,
    half_box: float | None = None,
    seed: int = 0,
    max_batches: int = DEFAULT_MAX_BATCHES,
    replace: bool = False,
    executor: Executor | None = None,
    avoid: pd.DataFrame | None = None,
) -> NoiseResult:
    """Sample and store noise for a consensus run: ``count`` per tomogram, or ``ratio`` ×
    its positives. Existing noise of the run is an error unless ``replace``. The result's
    ``samples`` are as stored (with their ``id``), so a later stage need not read them back.
    ``avoid``: the run's :meth:`Store.avoid_points` when the caller holds them already."""
    existing = store.noise_count(run_id)
    if existing and not replace:
        raise PicksError(
            f"run {run_id} already has {existing} noise samples",
            hint="Use `force=True` to replace them.",
        )
    positives = store.positive_counts(run_id)
    if not positives:
        raise PicksError(f"run {run_id} has no consensus picks to sample noise for")
    counts = {
        t: (int(count) if count is not None else round(ratio * n)) for t, n in positives.items()
    }
    avoid = store.avoid_points(run_id) if avoid is None else avoid.copy()
    avoid["evasion"] = evasion_radii(
        avoid["particle"],  # None and NaN alike: no class
        radii,
        evasion=evasion,
        factor=evasion_factor,
    )
    if half_box is None:
        half_box = DEFAULT_HALF_BOX_FACTOR * (max(radii.values()) if radii else 0.0)
    if executor is not None:  # one task per tomogram (workflows/per_tomogram.py): same samples
        from picks.workflows.per_tomogram import sample_noise_per_tomogram

        result = sample_noise_per_tomogram(
            executor,
            store.tomograms(),
            avoid,
            counts,
            half_box=half_box,
            seed=seed,
            max_batches=max_batches,
        )
    else:
        result = sample_noise(
            store.tomograms(), avoid, counts, half_box=half_box, seed=seed, max_batches=max_batches
        )
    stored = store.add_noise_frame(run_id, result.samples, replace=replace)
    return dataclasses.replace(result, samples=stored)
