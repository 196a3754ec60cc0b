"""Check the latent-class model against ground truth (tests and ``benchmarks/bench_latent.py``).

Users never have ground truth; these helpers exist to *measure* how well the truth-free
estimates of :mod:`picks.consensus.reliability` match the truth on simulated worlds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from picks.evaluate.metric import DEFAULT_MULTIPLIER


def read_world(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pickers' native outputs of a ``picks simulate`` folder, read through the adapters
    (columns id, picker, tomogram, particle, x, y, z, score), and its ground truth."""
    from picks.core.tomograms import TomogramSet, read_tomogram
    from picks.simulate.world import picker_inputs
    from picks.workflows.evaluate import read_picks_files

    out = Path(out)
    tomograms = TomogramSet(read_tomogram(p) for p in sorted((out / "tomograms").glob("*.mrc")))
    frames = []
    for item in picker_inputs(out):
        options = dict(item["options"])
        adapter = options.pop("adapter")
        particle = options.pop("particle", None)
        binning = float(options.pop("binning", 1))
        frame = read_picks_files(
            [item["path"]],
            tomograms=tomograms,
            adapter=adapter,
            particle=particle,
            binning=binning,
            options=options,
        )
        frames.append(frame.assign(picker=item["label"]))
    picks = pd.concat(frames, ignore_index=True)
    picks = picks[["picker", "tomogram", "particle", "x", "y", "z", "score"]].copy()
    picks.insert(0, "id", np.arange(1, len(picks) + 1, dtype=np.int64))
    truth = pd.read_csv(out / "ground_truth.csv").rename(
        columns={"experiment": "tomogram", "particle_type": "particle"}
    )
    return picks, truth[["tomogram", "particle", "x", "y", "z"]]


def truth_matched(
    candidates: pd.DataFrame,
    truth: pd.DataFrame,
    radii: Mapping[str, float],
    *,
    multiplier: float = DEFAULT_MULTIPLIER,
) -> np.ndarray:
    """Per candidate: a true particle of its class in its tomogram lies within
    ``multiplier × radius`` (the CZII metric's hit rule, inclusive)."""
    hit = np.zeros(len(candidates), dtype=bool)
    if len(candidates) == 0 or len(truth) == 0:
        return hit
    tomo = candidates["tomogram"].astype(str).to_numpy()
    particle = candidates["particle"].astype(object).to_numpy()
    xyz = candidates[["x", "y", "z"]].to_numpy(dtype=float)
    for (t, p), ref in truth.groupby(["tomogram", "particle"], sort=True):
        rows = np.flatnonzero((tomo == str(t)) & (particle == p))
        if not len(rows) or p not in radii:
            continue
        distance, _ = cKDTree(ref[["x", "y", "z"]].to_numpy(dtype=float)).query(xyz[rows])
        hit[rows] = distance <= multiplier * float(radii[p]) + 1e-9
    return hit


def true_picker_rates(
    consensus: pd.DataFrame, members: pd.DataFrame, truth: pd.DataFrame, true: np.ndarray
) -> pd.DataFrame:
    """Truth-matched per (picker, particle): n_reported, recall, precision, where a picker's
    report is its primary member in a candidate and recall = true candidates it is in /
    true particles of the class (the model's recall counts particles nobody found too)."""
    primaries = members[members["primary"].astype(bool)]
    cons = primaries["consensus"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame(
        {
            "picker": primaries["picker"].astype(str).to_numpy(),
            "particle": consensus["particle"].astype(object).to_numpy()[cons],
            "true": np.asarray(true, dtype=bool)[cons],
        }
    )
    table = frame.groupby(["picker", "particle"], sort=True)["true"].agg(["size", "sum"])
    n_true = truth.groupby("particle").size()
    table["recall"] = table["sum"] / n_true.reindex(table.index.get_level_values(1)).to_numpy()
    table["precision"] = table["sum"] / table["size"]
    return table.rename(columns={"size": "n_reported"})[["n_reported", "recall", "precision"]]
