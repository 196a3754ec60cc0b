"""``picks evaluate``: score pickers and consensus runs against ground truth (CZII metric).

Everything is read through the adapters (:mod:`picks.plugins.manager`), so the truth and the
picks share one set of conventions: a CZII CSV, a copick project or file, or any picker file
can be the truth. What is scored:

* every picker in the store (``--db``): all its ``picker`` sources together, by label;
* every consensus run in the store (or the ones named with ``--run``): its **accepted**
  consensus picks, and separately all its candidates (accepted or not, scored by their final
  score, so the threshold curve shows what a different acceptance threshold would give);
* picks files given directly, each labelled ``LABEL=PATH`` or by its file name.

The metric is :mod:`picks.evaluate.metric` (see ``docs/metric.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from picks.core.errors import PicksError, UnknownAdapter
from picks.core.tomograms import TomogramSet
from picks.evaluate import metric
from picks.evaluate.metric import Evaluated


def read_picks_files(
    paths: Iterable[str | Path],
    *,
    tomograms: TomogramSet | None = None,
    adapter: str = "auto",
    voxel_size: float | None = None,
    binning: float = 1.0,
    particle: str | None = None,
    tomogram: str | None = None,
    options: Mapping[str, str] | None = None,
    registry=None,
) -> pd.DataFrame:
    """Read files (or folders) through the adapters into one canonical table.

    Files inside a folder that no adapter recognises (a copick project's config, a label map)
    are skipped; a file named directly must be readable.
    """
    from picks.plugins.adapter import ReadContext
    from picks.plugins.manager import get_registry
    from picks.workflows.importing import expand_inputs, read_file

    registry = registry or get_registry()
    frames = []
    for raw in paths:
        raw = Path(raw)
        for path in expand_inputs([raw], registry, adapter):
            try:
                chosen = registry.detect(path) if adapter == "auto" else registry.get(adapter)
            except UnknownAdapter:
                if raw.is_dir():
                    continue
                raise
            ctx = ReadContext(
                path=path,
                tomograms=tomograms or TomogramSet(),
                voxel_size=voxel_size,
                binning=binning,
                particle=particle,
                tomogram=tomogram,
                options=dict(options or {}),
            )
            frames.append(read_file(chosen, ctx))
    if not frames:
        raise PicksError(f"no picks found in {', '.join(map(str, paths))}")
    return pd.concat(frames, ignore_index=True)


def store_pickers(store) -> dict[str, pd.DataFrame]:
    """Picks of every ``picker`` source in the store, by picker label."""
    picks = store.picks(roles=("picker",), columns=["tomogram", "particle", "x", "y", "z", "score"])
    return {
        str(label): group.reset_index(drop=True)
        for label, group in picks.groupby("picker", sort=True)
    }


def consensus_runs(
    store, run_ids: Sequence[int] | None = None, *, include_unfinished: bool = False
) -> list[int]:
    """Run ids with consensus picks (all, or the given ones, which must exist). By default
    only finished runs (status ``ok``): a run killed or failed after storing its consensus
    rows holds half-decided picks (a CNN run killed in training still has its vote scores).
    Runs named in ``run_ids`` are scored whatever their status (that is asking for them;
    an unfinished one is labelled with its status)."""
    store.mark_stale()
    present = store.consensus_run_ids(finished_only=not include_unfinished)
    if not run_ids:
        return present
    present = store.consensus_run_ids()
    for run_id in run_ids:
        store.get_run(run_id)
        if run_id not in present:
            raise PicksError(
                f"run {run_id} has no consensus picks", hint="'picks runs' lists the runs."
            )
    return list(run_ids)


def consensus_picks(store, run_id: int) -> pd.DataFrame:
    """All consensus candidates of a run (tomogram, particle, x, y, z, score, accepted)."""
    return store.consensus_points(run_id)


def evaluate(
    truth: pd.DataFrame,
    *,
    store=None,
    runs: Sequence[int] | None = None,
    pickers: bool = True,
    files: Mapping[str, pd.DataFrame] | None = None,
    multiplier: float = metric.DEFAULT_MULTIPLIER,
    beta: float = metric.DEFAULT_BETA,
    radii: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    include_unfinished: bool = False,
) -> list[Evaluated]:
    """Score every requested source against ``truth`` (a canonical table); consensus runs
    that did not finish (failed, stale, running) only when named or ``include_unfinished``."""
    kwargs = {"multiplier": multiplier, "beta": beta, "radii": radii, "weights": weights}
    results: list[Evaluated] = []
    if store is not None:
        if pickers:
            for label, picks in store_pickers(store).items():
                results.append(
                    Evaluated(label, "picker", picks, metric.score(truth, picks, **kwargs))
                )
        for run_id in consensus_runs(store, runs, include_unfinished=include_unfinished):
            candidates = consensus_picks(store, run_id)
            accepted = candidates[candidates["accepted"]].reset_index(drop=True)
            status = store.run_status(run_id)
            # an unfinished run is never shown under a finished run's name
            unfinished = "" if status == "ok" else f" ({status or 'no status'}, unfinished)"
            results.append(
                Evaluated(
                    f"consensus run {run_id}{unfinished}",
                    "consensus",
                    accepted,
                    metric.score(truth, accepted, **kwargs),
                    run_id,
                )
            )
            results.append(
                Evaluated(
                    f"run {run_id} all candidates{unfinished}",
                    "consensus-candidates",
                    candidates,
                    metric.score(truth, candidates, **kwargs),
                    run_id,
                )
            )
    for label, picks in (files or {}).items():
        results.append(Evaluated(label, "file", picks, metric.score(truth, picks, **kwargs)))
    return results
