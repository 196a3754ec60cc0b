"""Plots of scored pick sets: precision, recall and F-beta against the score threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from picks.evaluate import metric
from picks.evaluate.metric import Evaluated


def plot_curves(
    results: Sequence[Evaluated],
    truth: pd.DataFrame,
    path: str | Path,
    *,
    multiplier: float = metric.DEFAULT_MULTIPLIER,
    beta: float = metric.DEFAULT_BETA,
    radii: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> Path:
    """Precision, recall and overall F-beta against the score threshold, one panel per source.

    Every picker has its own score scale, so each panel has its own x axis. Sources without
    scores show one point (the whole set).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(results), 1)
    columns = min(3, n)
    rows = (n + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    for ax, result in zip(axes.ravel(), results, strict=False):
        curve = metric.threshold_curve(
            truth, result.picks, multiplier=multiplier, beta=beta, radii=radii, weights=weights
        )
        marker = "o" if len(curve) < 3 else None
        ax.plot(curve["threshold"], curve["precision"], label="precision", marker=marker)
        ax.plot(curve["threshold"], curve["recall"], label="recall", marker=marker)
        ax.plot(
            curve["threshold"],
            curve["fbeta"],
            label=f"F{beta:g} (weighted)",
            marker=marker,
            linestyle="--",
        )
        if not result.picks["score"].notna().any():
            ax.text(
                0.5, 0.5, "no scores: one point", transform=ax.transAxes, ha="center", fontsize=8
            )
        ax.set_title(result.label, fontsize=10)
        ax.set_xlabel("score threshold")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(results) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
