"""The stages of ``picks aggregate`` that fan out per tomogram on an :class:`Executor`.

Each stage splits its input by tomogram (sorted by name), maps a pure function over the
pieces (:mod:`picks.workflows.parallel`: here, or on Dask workers) and joins the pieces in
name order, so the result equals the one the single-process path computes on the whole
table, byte for byte:

* :func:`read_headers`: tomogram headers, read on the workers by path (a shared filesystem),
  never the data;
* :func:`cluster_per_tomogram`: :func:`picks.consensus.cluster.cluster` per tomogram (and
  :func:`cluster_on_two_cores`: in two halves of tomograms, one of them in a forked child;
  :func:`candidate_statistics_on_two_cores` does the same for the image statistics). What
  crosses tomograms is computed here first: the per-picker percentile rank of the scores
  (over the whole run) and the picker-count limit. Consensus rows come back in the canonical
  order within a tomogram, so concatenating in name order (member rows renumbered) is the
  canonical order of the whole run;
* :func:`sample_noise_per_tomogram`: :func:`picks.consensus.noise.sample_noise` per tomogram;
  its random generator is already seeded per tomogram (``seed``, name), never by worker;
* :func:`score_per_tomogram`: the CNN's box extraction and scoring (:func:`score_points`, which
  the single-process path calls on all candidates) per tomogram; boxes are batched per
  tomogram anyway, so the network sees the same batches.

The functions that run on workers (``_read``, ``_cluster``, ``_noise``, ``_score_tomogram``)
take plain data and return DataFrames and arrays; none opens the store.
"""

from __future__ import annotations

import logging
import os
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
log = logging.getLogger("picks.parallel")
MAX_PICKERS = 52  # picker labels in one run (cluster.py keeps them in one 64-bit mask)
# Picks below which cluster_on_two_cores clusters in one process: a fork and the pickled
# result cost more than half of clustering this few.
FORK_MIN_PICKS = 50_000
# Candidates below which candidate_statistics_on_two_cores measures them in one process (a box
# costs ≈ 1 ms: a fork pays off from a few hundred; two thousand leaves a wide margin).
FORK_MIN_CANDIDATES = 2_000


def read_headers(
    executor: Executor, paths: Sequence[Path], *, voxel_size: float | None = None
) -> list[Tomogram]:
    """:func:`read_tomogram` for each path, on the executor, in the order of ``paths``."""
    # Absolute here: a worker's working folder is not the driver's (read_tomogram stores the
    # absolute path either way, so the store is the same).
    items = [(Path(p).name, os.path.abspath(p)) for p in paths]
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
    _check_pickers(picks)
    frame = _cluster_frame(picks)
    tomo = frame["tomogram"].astype(str)
    items = [(str(name), group) for name, group in frame.groupby(tomo, sort=True)]
    parts = executor.map(
        _cluster,
        items,
        label="cluster",
        shared={"radii": dict(radii), "options": options},
    )
    return _join_clusters(parts)


def cluster_on_two_cores(
    picks: pd.DataFrame, radii: Mapping[str | None, float], options: ClusterOptions
) -> Clusters:
    """:func:`cluster` of ``picks``, equal to it, with the tomograms split in two halves
    (:func:`_later_half`): the later half is clustered in a forked child
    (:mod:`picks.workflows.forked`) while this process clusters the earlier one. Done here
    alone when forking is off or not worth it (fewer than :data:`FORK_MIN_PICKS` picks, one
    tomogram), and when the child fails for any reason."""
    late = _later_half(picks["tomogram"], FORK_MIN_PICKS)
    if late is None:
        return cluster(picks, radii, options)
    options.check()
    _check_pickers(picks)
    frame = _cluster_frame(picks)
    shared = {"radii": dict(radii), "options": options}
    earlier, rest = _here_and_in_child(
        lambda part: _cluster(part, **shared), frame[~late], frame[late], "clustering"
    )
    return _join_clusters([earlier, rest])


def candidate_statistics_on_two_cores(
    consensus: pd.DataFrame, tomograms, radii: Mapping[object, float]
) -> pd.DataFrame:
    """:func:`picks.consensus.image_features.candidate_statistics` of ``consensus``, equal to
    it, with the candidates of the later half of the tomograms (:func:`_later_half`) measured
    in a forked child while this process measures the earlier ones. A candidate's statistics
    come from its own box alone (each box is read, smoothed and sampled by itself), so
    splitting the candidates changes no value. In one process when forking is off or not
    worth it (fewer than :data:`FORK_MIN_CANDIDATES` candidates, one tomogram), and when the
    child fails for any reason."""
    from picks.consensus.image_features import candidate_statistics

    late = _later_half(consensus["tomogram"], FORK_MIN_CANDIDATES)
    if late is None:
        return candidate_statistics(consensus, tomograms, radii)
    earlier, rest = _here_and_in_child(
        lambda part: candidate_statistics(part, tomograms, radii),
        consensus[~late],
        consensus[late],
        "image statistics",
    )
    # put back by position (an index label may repeat), in the consensus's row order
    out = pd.DataFrame(np.nan, index=consensus.index, columns=earlier.columns)
    out.iloc[np.flatnonzero(~late)] = earlier.to_numpy()
    out.iloc[np.flatnonzero(late)] = rest.to_numpy()
    return out


def image_statistics(
    consensus: pd.DataFrame, tomograms, radii: Mapping[object, float], *, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The candidates' box statistics and the empty background's
    (:mod:`picks.consensus.background`), measured in one :func:`candidate_statistics_on_two_cores`
    call: the empty boxes are measured like candidates, so they share the two cores.
    Returns (statistics indexed like ``consensus``, the background per tomogram and class)."""
    from picks.consensus import background as bg

    tomograms = list(tomograms or ())
    probes = bg.empty_probes(consensus, tomograms, radii, seed=seed)
    columns = ["tomogram", "particle", "x", "y", "z"]
    both = pd.concat([consensus[columns], probes[columns]], ignore_index=True)
    measured = candidate_statistics_on_two_cores(both, tomograms, radii)
    n = len(consensus)
    stats = measured.iloc[:n].set_axis(consensus.index)
    return stats, bg.summarise_background(probes, measured.iloc[n:])


def _later_half(tomogram: pd.Series, at_least: int) -> np.ndarray | None:
    """Which rows belong to the later half of the tomograms, in name order: from the first
    tomogram whose rows reach half of them. None when the work stays in one process: fewer
    than ``at_least`` rows, one tomogram, or no fork (:func:`~picks.workflows.forked.
    fork_available`)."""
    from picks.workflows.forked import fork_available

    if len(tomogram) < at_least or not fork_available():
        return None
    codes, names = pd.factorize(tomogram.astype(str), sort=True)
    if len(names) < 2:
        return None
    counts = np.bincount(codes, minlength=len(names))
    cut = int(np.searchsorted(np.cumsum(counts), len(tomogram) / 2))
    cut = min(max(cut, 1), len(names) - 1)
    return codes >= cut


def _here_and_in_child(fn, here: pd.DataFrame, there: pd.DataFrame, what: str) -> tuple:
    """``(fn(here), fn(there))``, the second computed in a forked child meanwhile (here
    again if the child fails for any reason)."""
    from picks.workflows.forked import Forked, ForkFailed

    child = Forked(lambda: fn(there))
    mine = fn(here)
    try:
        theirs = child.result()
    except ForkFailed as exc:
        log.debug("%s: the child's half done here (%s)", what, exc)
        theirs = fn(there)
    return mine, theirs


def _check_pickers(picks: pd.DataFrame) -> None:
    n_pickers = picks["picker"].astype(str).nunique()
    if n_pickers > MAX_PICKERS:
        raise PicksError(
            f"{n_pickers} picker labels: at most {MAX_PICKERS} are supported in one run"
        )


def _cluster_frame(picks: pd.DataFrame) -> pd.DataFrame:
    """What :func:`cluster` reads of ``picks``, with each pick's score already ranked per
    picker over the whole run (``_nscore``): the one thing that crosses tomograms."""
    score = (
        picks["score"].to_numpy(dtype=float) if "score" in picks else np.full(len(picks), np.nan)
    )
    # Only what cluster() reads travels (not e.g. each pick's source record).
    columns = [c for c in _CLUSTER_COLUMNS if c in picks.columns]
    return picks[columns].assign(
        _nscore=normalised_scores(picks["picker"].astype(str).to_numpy(), score)
    )


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


def score_points(
    points: pd.DataFrame,
    lookup: Mapping,
    models: Sequence[dict],
    *,
    policy,
    reader: str,
    batch_size: int,
    typicality: bool,
    alpha: float | None,
    advance=None,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, str], dict[str, float]]:
    """Extract the boxes of ``points`` and score them with each model (``model``, ``card``).

    Returns per model the (n, outputs) probabilities and (n,) typicality (NaN where not
    scored), the dropped rows ``{row: reason}`` and the seconds spent extracting and
    predicting. Boxes come in batches per tomogram (:func:`iter_boxes`), so scoring one
    tomogram's points alone gives the same batches, hence the same numbers.
    """
    import time

    from picks.consensus.cnn import network as cnn
    from picks.consensus.cnn.boxes import Geometry, iter_boxes
    from picks.consensus.cnn.ood import typicality

    n = len(points)
    spent = {"extract_score": 0.0, "predict": 0.0}
    probs = [np.full((n, len(m["card"]["classes"])), np.nan, dtype=np.float32) for m in models]
    typ = [np.full(n, np.nan) for _ in models]
    dropped: dict[int, str] = {}
    groups: dict[tuple, list[int]] = {}
    for k, m in enumerate(models):
        groups.setdefault((m["card"]["box"], m["card"]["voxel_size"]), []).append(k)
    for key, members in groups.items():
        geometry = Geometry.of_card(models[members[0]]["card"])
        batches = iter_boxes(
            points, lookup, geometry, edge=policy, reader=reader, batch_size=batch_size
        )
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            spent["extract_score"] += time.perf_counter() - started
            if batch is None:
                break
            started = time.perf_counter()
            for pos, reason in batch.dropped:
                dropped.setdefault(pos, reason)
            if len(batch.index):
                for k in members:
                    p, feats = cnn.predict(
                        models[k]["model"], batch.boxes, box=key[0], features=True
                    )
                    params = models[k]["card"].get("typicality") if typicality else None
                    probs[k][batch.index] = p
                    typ[k][batch.index] = typicality(feats, params, alpha)[2]
            spent["predict"] += time.perf_counter() - started
            if advance is not None:
                advance(len(batch.index) + len(batch.dropped))
    return probs, typ, dropped, spent


def score_per_tomogram(
    executor: Executor,
    candidates: pd.DataFrame,
    lookup: Mapping,
    models: Sequence[dict],
    **options,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, str], dict[str, float]]:
    """:func:`score_points` of ``candidates``, one task per tomogram; equal to the single call.

    The models travel as their saved files' paths (with sha256 and card): each worker loads
    a model once and keeps it for the run's other tomograms (:func:`_worker_model`).
    """
    names = candidates["tomogram"].astype(str).to_numpy()
    points = candidates[["tomogram", "x", "y", "z"]]
    order = sorted(set(names.tolist()))
    rows = {name: np.flatnonzero(names == name) for name in order}
    items = [
        (name, (points.iloc[rows[name]].reset_index(drop=True), lookup.get(name))) for name in order
    ]
    shipped = [
        {"path": os.path.abspath(m["path"]), "sha256": m["sha256"], "card": m["card"]}
        for m in models
    ]
    parts = executor.map(
        _score_tomogram, items, label="score", shared={"models": shipped, "options": options}
    )
    n = len(candidates)
    probs = [np.full((n, len(m["card"]["classes"])), np.nan, dtype=np.float32) for m in models]
    typ = [np.full(n, np.nan) for _ in models]
    dropped: dict[int, str] = {}
    spent = {"extract_score": 0.0, "predict": 0.0}
    for name, (p_part, t_part, d_part, s_part) in zip(order, parts, strict=True):
        index = rows[name]
        for k in range(len(models)):
            probs[k][index] = p_part[k]
            typ[k][index] = t_part[k]
        for pos, reason in d_part.items():
            dropped.setdefault(int(index[pos]), reason)
        for key, value in s_part.items():
            spent[key] += value
    return probs, typ, dropped, spent


def _score_tomogram(payload, *, models: list[dict], options: dict):
    points, tomogram = payload
    lookup = {} if tomogram is None else {str(points["tomogram"].iloc[0]): tomogram}
    loaded = [{"model": _worker_model(m), "card": m["card"]} for m in models]
    return score_points(points, lookup, loaded, **options)


_MODELS: dict[str, object] = {}  # sha256 -> model, per worker process: loaded once per run


def _worker_model(meta: dict):
    from picks.consensus.cnn import network as cnn

    model = _MODELS.get(meta["sha256"])
    if model is None:
        model = _MODELS[meta["sha256"]] = cnn.load(meta["path"], card=meta["card"])[0]
    return model
