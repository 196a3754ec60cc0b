"""The stages of ``picks aggregate`` that fan out per tomogram on an :class:`Executor`.

Each stage splits its input by tomogram (sorted by name), maps a pure function over the
pieces (:mod:`picks.workflows.parallel`: here, or on Dask workers) and joins the pieces in
name order, so the result equals the one the single-process path computes on the whole
table, byte for byte:

* :func:`read_headers`: tomogram headers, read on the workers by path (a shared filesystem),
  never the data;
* :func:`cluster_per_tomogram`: :func:`picks.consensus.cluster.cluster` per tomogram. What
  crosses tomograms is computed here first: the per-picker percentile rank of the scores
  (over the whole run) and the picker-count limit. Consensus rows come back in the canonical
  order within a tomogram, so concatenating in name order (member rows renumbered) is the
  canonical order of the whole run;
* :func:`sample_noise_per_tomogram`: :func:`picks.consensus.noise.sample_noise` per tomogram;
  its random generator is already seeded per tomogram (``seed``, name), never by worker.

The functions that run on workers (``_read``, ``_cluster``, ``_noise``) take plain data and
return DataFrames; none opens the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from picks.consensus.cluster import ClusterOptions, Clusters, cluster, normalised_scores
from picks.consensus.noise import NoiseResult, sample_noise
from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram, read_tomogram
from picks.workflows.parallel import Executor

_CLUSTER_COLUMNS = (
    "id",
    "picker",
    "tomogram",
    "particle",
    "x",
    "y",
    "z",
    "score",
    "rot",
    "tilt",
    "psi",
)
MAX_PICKERS = 52  # picker labels in one run (cluster.py keeps them in one 64-bit mask)


def read_headers(
    executor: Executor, paths: Sequence[Path], *, voxel_size: float | None = None
) -> list[Tomogram]:
    """:func:`read_tomogram` for each path, on the executor, in the order of ``paths``."""
    items = [(Path(p).name, str(p)) for p in paths]
    return executor.map(_read, items, label="tomograms", shared={"voxel_size": voxel_size})


def _read(path: str, *, voxel_size: float | None) -> Tomogram:
    return read_tomogram(path, voxel_size=voxel_size)


def cluster_per_tomogram(
    executor: Executor,
    picks: pd.DataFrame,
    radii: Mapping[str | None, float],
    options: ClusterOptions,
) -> Clusters:
    """:func:`cluster` of ``picks``, one task per tomogram; equal to ``cluster(picks, ...)``."""
    options.check()
    if picks.empty:
        return cluster(picks, radii, options)
    n_pickers = picks["picker"].astype(str).nunique()
    if n_pickers > MAX_PICKERS:
        raise PicksError(
            f"{n_pickers} picker labels: at most {MAX_PICKERS} are supported in one run"
        )
    score = (
        picks["score"].to_numpy(dtype=float) if "score" in picks else np.full(len(picks), np.nan)
    )
    # Only what cluster() reads travels (not e.g. each pick's source record).
    columns = [c for c in _CLUSTER_COLUMNS if c in picks.columns]
    frame = picks[columns].assign(
        _nscore=normalised_scores(picks["picker"].astype(str).to_numpy(), score)
    )
    tomo = frame["tomogram"].astype(str)
    items = [(str(name), group) for name, group in frame.groupby(tomo, sort=True)]
    parts = executor.map(
        _cluster,
        items,
        label="cluster",
        shared={"radii": dict(radii), "options": options},
    )
    return _join_clusters(parts)


def _cluster(part: pd.DataFrame, *, radii: Mapping, options: ClusterOptions) -> Clusters:
    scores = part["_nscore"].to_numpy(dtype=float)
    return cluster(part.drop(columns="_nscore"), radii, options, scores=scores)


def _join_clusters(parts: Sequence[Clusters]) -> Clusters:
    offsets = np.cumsum([0] + [len(p.consensus) for p in parts[:-1]])
    members = [
        p.members.assign(consensus=p.members["consensus"].to_numpy(dtype=np.int64) + offset)
        for p, offset in zip(parts, offsets.tolist(), strict=True)
    ]
    stats: dict = {}
    for p in parts:
        for key, value in p.stats.items():
            stats[key] = stats.get(key, 0) + value
    return Clusters(
        pd.concat([p.consensus for p in parts], ignore_index=True),
        pd.concat(members, ignore_index=True),
        stats,
    )


def sample_noise_per_tomogram(
    executor: Executor,
    tomograms: Sequence[Tomogram],
    avoid: pd.DataFrame,
    counts: Mapping[str, int],
    *,
    half_box: float,
    seed: int = 0,
    max_batches: int,
) -> NoiseResult:
    """:func:`sample_noise`, one task per tomogram; equal to the single call."""
    by_name = {t.name: t for t in tomograms}
    groups = {str(k): g for k, g in avoid.groupby("tomogram", sort=True)} if len(avoid) else {}
    empty = avoid.iloc[:0]
    items = [
        (name, (by_name.get(name), groups.get(name, empty), {name: int(counts[name])}))
        for name in sorted(counts)
    ]
    parts = executor.map(
        _noise,
        items,
        label="noise",
        shared={"half_box": float(half_box), "seed": int(seed), "max_batches": max_batches},
    )
    result = NoiseResult(pd.DataFrame(columns=["tomogram", "x", "y", "z"]))
    frames = []
    for part in parts:
        result.requested.update(part.requested)
        result.obtained.update(part.obtained)
        result.warnings.extend(part.warnings)
        if len(part.samples):
            frames.append(part.samples)
    if frames:
        result.samples = pd.concat(frames, ignore_index=True)
    return result


def _noise(
    payload: tuple[Tomogram | None, pd.DataFrame, dict[str, int]],
    *,
    half_box: float,
    seed: int,
    max_batches: int,
) -> NoiseResult:
    tomo, avoid, counts = payload
    return sample_noise(
        [tomo] if tomo is not None else [],
        avoid,
        counts,
        half_box=half_box,
        seed=seed,
        max_batches=max_batches,
    )
