"""The typicality gate of the rescoring network: how far a box's pooled features lie from the
positives the network was trained on (out-of-distribution detection, docs/cnn.md). Pure NumPy /
SciPy / scikit-learn over feature arrays (:func:`picks.consensus.cnn.network.predict` with
``features=True`` gives them). Split from :mod:`picks.consensus.cnn.network`, which re-exports
these names.
"""

from __future__ import annotations

import numpy as np

# -- typicality (out-of-distribution gate) ----------------------------------------------------
DEFAULT_ALPHA = 1e-6


def fit_typicality(
    features: np.ndarray,
    labels: np.ndarray,
    calibration: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> dict:
    """How far from the positives a box may lie in feature space (see docs/cnn.md).

    Class means of the positives' pooled features and a shared, Ledoit-Wolf-shrunk covariance
    give each box its Mahalanobis distance ``d`` to the nearest class. ``log d`` of the
    ``calibration`` positives (held-out ones where available) is modelled as normal
    (μ, σ); the one-sided p-value of a box is ``1 − Φ((log d − μ)/σ)`` and its typicality
    ``T = min(1, p/alpha)``: 1 for every box that is not a gross outlier (alpha = 1e-6, i.e.
    more than ≈ 4.75 σ beyond the positives), falling to 0 for boxes unlike any positive —
    gold beads and contamination, which the network never saw as negatives, land there.
    """
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64)
    classes = np.unique(labels)
    means = np.stack([features[labels == k].mean(axis=0) for k in classes])
    resid = np.concatenate([features[labels == k] - means[i] for i, k in enumerate(classes)])
    precision = LedoitWolf().fit(resid).precision_
    params = {"means": means.tolist(), "precision": precision.tolist(), "alpha": float(alpha)}
    logd = np.log(np.maximum(_distance(calibration, params), 1e-6))
    params["log_mu"] = float(logd.mean())
    params["log_sigma"] = float(max(logd.std(ddof=1) if len(logd) > 1 else 0.0, 0.05))
    params["n_calibration"] = len(logd)
    return params


def _distance(features: np.ndarray, params: dict) -> np.ndarray:
    means = np.asarray(params["means"], dtype=np.float64)
    precision = np.asarray(params["precision"], dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    d2 = np.stack([np.einsum("ij,jk,ik->i", x - m, precision, x - m) for m in means])
    return np.sqrt(np.maximum(d2.min(axis=0), 0.0))


def typicality(
    features: np.ndarray, params: dict | None, alpha: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distance, p_value, T)`` per box; T = 1 everywhere when ``params`` is None.

    ``alpha`` overrides the model card's level.
    """
    from scipy.special import ndtr

    n = len(features)
    if not params:
        return np.full(n, np.nan), np.ones(n), np.ones(n)
    d = _distance(features, params)
    z = (np.log(np.maximum(d, 1e-6)) - params["log_mu"]) / params["log_sigma"]
    p = ndtr(-z)  # the upper tail, accurate far out
    return d, p, np.minimum(1.0, p / (alpha if alpha is not None else params["alpha"]))
