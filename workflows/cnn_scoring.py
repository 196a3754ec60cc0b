"""Scoring a run's candidates with saved or trained CNN models (part of
:func:`picks.workflows.rescore.rescore_run`): loading a model with its card, and extracting
and predicting every candidate's box, model by model, one geometry at a time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.boxes import Geometry, iter_boxes
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


def _geometry(card: dict) -> Geometry:
    return Geometry(int(card["box"]), float(card["voxel_size"]), 0)


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
):
    """Per model: (n, outputs) probabilities and (n,) typicality, NaN where dropped.

    ``timings`` (if given) receives the seconds spent extracting and predicting.
    """
    n = len(candidates)
    spent = {"extract_score": 0.0, "predict": 0.0}
    probs = [np.full((n, len(m["card"]["classes"])), np.nan, dtype=np.float32) for m in models]
    typ = [np.full(n, np.nan) for _ in models]
    dropped: dict[int, str] = {}
    groups: dict[tuple, list[int]] = {}
    for k, m in enumerate(models):
        groups.setdefault((m["card"]["box"], m["card"]["voxel_size"]), []).append(k)
    with progress("score", total=n * len(groups)) as advance:
        for key, members in groups.items():
            geometry = _geometry(models[members[0]]["card"])
            batches = iter_boxes(
                candidates, lookup, geometry, edge=policy, reader=reader, batch_size=batch_size
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
                        typ[k][batch.index] = cnn.typicality(feats, params, alpha)[2]
                spent["predict"] += time.perf_counter() - started
                advance(len(batch.index) + len(batch.dropped))
    for pos in dropped:
        for p, t in zip(probs, typ, strict=True):
            p[pos] = np.nan
            t[pos] = np.nan
    if timings is not None:
        timings.update(spent)
    return probs, typ, dropped
