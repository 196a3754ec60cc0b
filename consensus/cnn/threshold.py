"""The CNN's acceptance rule: the F-beta cost threshold and the validation check stored in the
model card (``decision``)."""

from __future__ import annotations

import numpy as np

from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.ood import typicality
from picks.core.fbeta import fbeta

DECISION_BETA = 4.0  # the CZII F-beta weighs recall 16× as much as precision


THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 11))  # 0.05 … 0.5


def choose_threshold(
    scores: np.ndarray, positive: np.ndarray, *, beta: float = DECISION_BETA
) -> tuple[float, float]:
    """The threshold of :data:`THRESHOLD_GRID` that maximises F-beta, and that F-beta.

    Ties go to the lowest threshold (recall is what F-beta with β > 1 rewards). The grid stops
    at 0.5, the Bayes decision of a network trained with balanced classes: a tuned threshold
    may favour recall, never precision beyond it.
    """
    best, best_f = 0.5, -1.0
    for t in THRESHOLD_GRID:
        f = fbeta_at(scores, positive, t, beta=beta)
        if f > best_f + 1e-12:
            best, best_f = t, f
    return float(best), float(best_f)


def fbeta_at(
    scores: np.ndarray, positive: np.ndarray, threshold: float, *, beta: float = DECISION_BETA
) -> float:
    """F-beta of accepting the boxes whose score is ``>= threshold`` (NaN: rejected)."""
    hit = np.nan_to_num(np.asarray(scores, dtype=float), nan=-1.0) >= threshold
    positive = np.asarray(positive, dtype=bool)
    tp, fp, fn = (hit & positive).sum(), (hit & ~positive).sum(), (~hit & positive).sum()
    return fbeta(float(tp), float(fp), float(fn), beta)[2]


def cost_threshold(beta: float = DECISION_BETA) -> float:
    """``1 / (1 + β²)``: accept when P(particle) ≥ this (0.0588 for β = 4).

    F-beta charges a missed particle β² times what it charges a false pick (its denominator
    is ``(1 + β²)·TP + β²·FN + FP``); the Bayes decision for a probability ``p`` under that
    cost ratio accepts when ``β²·p ≥ 1 − p``. The CZII metric uses β = 4.
    """
    return 1.0 / (1.0 + beta * beta)


def decision_rule(model, boxes, labels, val_mask, box: int, typical: dict | None) -> dict:
    """The acceptance rule stored in the model card (``decision``).

    The threshold is :func:`cost_threshold` (β = 4, as the CZII metric): fixed by the metric,
    not fitted, because a held-out split of a few dozen boxes (demo size) is too small to tune
    one and its background boxes are not the candidates' mix. For information the card also
    gives F-beta on the held-out split at that threshold and the grid threshold that
    maximises it (:func:`choose_threshold`).
    """
    threshold = cost_threshold()
    out = {
        "threshold": round(threshold, 4),
        "beta": DECISION_BETA,
        "rule": f"Bayes decision for F{DECISION_BETA:g}'s cost ratio: accept when "
        f"(1 − P(noise)) × typicality ≥ 1/(1 + β²)",
    }
    val = np.asarray(val_mask, dtype=bool)
    positive = np.asarray(labels)[val] > 0
    if positive.any() and not positive.all():
        p, feats = cnn.predict(model, boxes[val], box=box, features=True)
        score = (1.0 - p[:, 0]) * typicality(feats, typical)[2]
        best, best_f = choose_threshold(score, positive)
        out["validation"] = {
            "n": int(val.sum()),
            "fbeta_at_threshold": fbeta_at(score, positive, threshold),
            "best_grid_threshold": best,
            "best_grid_fbeta": best_f,
        }
    return out
