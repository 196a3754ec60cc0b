"""Optional learned combination of the CNN score with support and per-picker scores.

With ``combine=True`` the accept decision is made by a scikit-learn logistic regression
(standardised features, L2, C = 1, balanced class weights) on:

* ``cnn_logit`` — logit of the CNN score ``P(particle)`` (ensemble mean), clipped to 1e-4;
* ``support`` — fraction of the run's pickers with a pick at the point (for a consensus pick:
  its member pickers; for any other point: pickers with a pick within the CZII match
  distance, half the class radius);
* ``score:<picker>`` — per picker, the percentile rank (0..1] of its pick's score among all
  that picker's picks in the run (1 when the picker gives no scores), 0 when it has no pick.

It is calibrated on the labelled training points of the same run (positives = full-support
consensus picks and positive references; negatives = noise and negative references), using
only CNN scores the network did not train on: the held-out validation split when the model
was trained on this run, all labelled points when the model came from elsewhere. The output
is a probability; candidates with probability ≥ the threshold are accepted.

Caveat, stated in docs/cnn.md: noise samples are chosen far from every pick, so their support
and picker scores are 0 by construction, and positives have full support by definition; the
support features therefore separate the training labels perfectly, and the regression learns
how much support to demand from the regularised fit rather than from real counter-examples.
Negative references that pickers did pick (e.g. marked gold beads) are what gives the support
weights real evidence; without them, prefer the plain CNN threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from picks.consensus.cnn.train import match_radius
from picks.core.particles import Catalog


def members(frame: pd.DataFrame) -> pd.DataFrame:
    """Member picks of a run's consensus picks (consensus_id, picker, score, tomogram, x, y, z;
    :meth:`picks.core.store.Store.member_picks`) with each pick's score percentile within
    its picker (1.0 for pickers without scores)."""
    frame = frame.copy()
    if frame.empty:
        frame["percentile"] = pd.Series(dtype=float)
        return frame
    pct = frame.groupby("picker")["score"].rank(pct=True, method="average")
    frame["percentile"] = pct.fillna(1.0).to_numpy()
    return frame


def candidate_features(
    candidates: pd.DataFrame, member_picks: pd.DataFrame, pickers: list[str]
) -> pd.DataFrame:
    """Support fraction and per-picker score percentiles of consensus picks (same order)."""
    out = pd.DataFrame(index=pd.Index(candidates["id"].to_numpy(), name="id"))
    if member_picks.empty or not pickers:
        out["support"] = 0.0
        return out.reset_index(drop=True)
    best = member_picks.groupby(["consensus_id", "picker"])["percentile"].max().unstack("picker")
    best = best.reindex(index=out.index, columns=pickers).fillna(0.0)
    out["support"] = (best > 0).sum(axis=1) / len(pickers)
    for picker in pickers:
        out[f"score:{picker}"] = best[picker]
    return out.reset_index(drop=True)


def point_features(
    points: pd.DataFrame, member_picks: pd.DataFrame, pickers: list[str], catalog: Catalog
) -> pd.DataFrame:
    """The same features for arbitrary points (noise, references), from picks within range."""
    radius = match_radius(
        catalog, points["particle"] if "particle" in points else pd.Series([None] * len(points))
    )
    hits = np.zeros((len(points), len(pickers)))
    names = points["tomogram"].astype(str).to_numpy()
    xyz = points[["x", "y", "z"]].to_numpy(float)
    for j, picker in enumerate(pickers):
        mine = member_picks[member_picks["picker"] == picker]
        for name in np.unique(names):
            sel = np.flatnonzero(names == name)
            theirs = mine[mine["tomogram"].astype(str) == name]
            if theirs.empty:
                continue
            d, k = cKDTree(theirs[["x", "y", "z"]].to_numpy(float)).query(xyz[sel])
            ok = d <= radius[sel]
            hits[sel[ok], j] = theirs["percentile"].to_numpy()[k[ok]]
    out = pd.DataFrame({"support": (hits > 0).sum(axis=1) / max(len(pickers), 1)})
    for j, picker in enumerate(pickers):
        out[f"score:{picker}"] = hits[:, j]
    return out


def design(cnn_score: np.ndarray, features: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Feature matrix ``[cnn_logit, support, score:<picker>...]`` and its column names."""
    p = np.clip(np.asarray(cnn_score, dtype=float), 1e-4, 1 - 1e-4)
    columns = ["cnn_logit", *features.columns]
    return np.column_stack([np.log(p / (1 - p)), features.to_numpy(float)]), columns


def fit(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """The calibrated logistic regression (a scikit-learn pipeline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, random_state=seed),
    )
    model.fit(x, y.astype(int))
    return model


def describe(model, columns: list[str]) -> dict:
    """Coefficients on the standardised features, for the run record and docs."""
    scaler, lr = model[0], model[-1]
    return {
        "features": columns,
        "coefficients": [float(c) for c in lr.coef_[0]],
        "intercept": float(lr.intercept_[0]),
        "feature_mean": [float(v) for v in scaler.mean_],
        "feature_scale": [float(v) for v in scaler.scale_],
    }
