"""Scoring a run's candidates with saved or trained CNN models (part of
:func:`picks.workflows.rescore.rescore_run`): loading a model with its card, and extracting
and predicting every candidate's box, model by model, one geometry at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from picks.consensus.cnn import network as cnn
from picks.core.errors import PicksError
from picks.core.store import Store


def _load(store: Store, path) -> tuple[object, dict]:
    """A saved model and its card (sidecar file, else the store's copy by sha256)."""
    path = Path(path)
    if not path.exists():
        raise PicksError(f"model {path} does not exist")
    card = None
    if not cnn.card_path(path).exists():
        card = store.model_card(cnn.sha256_file(path))
    model, card = cnn.load(path, card=card)
    return model, card


def _score(
    candidates,
    lookup,
    models,
    policy,
    reader,
    progress,
    *,
    batch_size: int,
    typicality: bool,
    timings: dict | None = None,
    alpha: float | None = None,
    executor=None,
):
    """Per model: (n, outputs) probabilities and (n,) typicality, NaN where dropped.

    ``timings`` (if given) receives the seconds spent extracting and predicting. With an
    ``executor`` each tomogram is scored by a worker (workflows/per_tomogram.py).
    """
    from picks.workflows import per_tomogram

    options = {
        "policy": policy,
        "reader": reader,
        "batch_size": batch_size,
        "typicality": typicality,
        "alpha": alpha,
    }
    if executor is not None:
        probs, typ, dropped, spent = per_tomogram.score_per_tomogram(
            executor, candidates, lookup, models, **options
        )
    else:
        n_groups = len({(m["card"]["box"], m["card"]["voxel_size"]) for m in models})
        with progress("score", total=len(candidates) * n_groups) as advance:
            probs, typ, dropped, spent = per_tomogram.score_points(
                candidates, lookup, models, advance=advance, **options
            )
    for pos in dropped:
        for p, t in zip(probs, typ, strict=True):
            p[pos] = np.nan
            t[pos] = np.nan
    if timings is not None:
        timings.update(spent)
    return probs, typ, dropped
