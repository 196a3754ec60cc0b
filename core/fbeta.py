"""F-beta from counts: the one formula the metric (:mod:`picks.evaluate.metric`) and the CNN's
decision threshold (:mod:`picks.consensus.cnn.train`) share."""

from __future__ import annotations


def fbeta(tp: float, fp: float, fn: float, beta: float) -> tuple[float, float, float]:
    """(precision, recall, F-beta) with the reference code's zero conventions."""
    precision = tp / (tp + fp) if (tp + fp) > 0 else 0.0
    recall = tp / (tp + fn) if (tp + fn) > 0 else 0.0
    if precision + recall <= 0:
        return precision, recall, 0.0
    b2 = beta * beta
    return precision, recall, (1 + b2) * precision * recall / (b2 * precision + recall)
