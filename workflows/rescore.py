"""Deep rescoring of a run's consensus picks: train (or load) the CNN, score, decide, store.

:func:`rescore_run` is what ``picks score`` and the tests call on a stored run: it reads the
run's consensus, decides with :func:`picks.workflows.cnn_decision.decide_cnn` (the function
``picks aggregate`` calls on the table it has just inserted) and stores the decision with
:func:`store_decision`. For every consensus pick of the run it stores:

* one ``scores`` row per model and output — the probability of each particle class of the
  model card and of ``noise`` (so per-class scores are visible and sum to 1 per model);
* ``consensus.cnn_score`` = ``P(particle) = 1 − P(noise)``, the mean over the models of an
  ensemble; ``consensus.score`` = the score the decision used (the CNN score, or the
  combined probability with ``combine=True``, see :mod:`picks.consensus.cnn.combine`);
* ``consensus.accepted`` = score ≥ ``threshold`` (default: the model card's decision rule,
  ``1/(1 + β²)`` = 0.0588 for the CZII β = 4; 0.5 with ``combine``); ``consensus.reason`` says so,
  names the class the network finds most likely, and keeps the voting reason after ``;``.

Decisions forced by trusted references (status ``reference``, or a reason that starts with
"positive/negative reference pick") are kept: the CNN still scores them, but a user's
reference outranks it. A consensus pick whose box could not be extracted (edge policy, no
volume) gets no CNN score, is not accepted (unless trusted) and is recorded in ``dropped``
(stage ``cnn-score``); training points that were dropped are recorded with stage
``cnn-train``. The trained model is saved as ``.keras`` plus its model card and recorded in
``models``. Re-scoring a run replaces that run's earlier scores of the same models.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from picks.consensus.cnn import network as cnn  # noqa: F401 (tests patch cnn.select_device)
from picks.consensus.cnn.boxes import tomogram_lookup
from picks.consensus.cnn.options import CnnOptions
from picks.consensus.cnn.reasons import MIN_CLASS_POSITIVES  # noqa: F401 (re-exported)
from picks.consensus.cnn.reasons import rare_class_mask as _rare_class_mask  # noqa: F401
from picks.consensus.cnn.train import RunData
from picks.core.particles import Catalog
from picks.core.store import Store
from picks.workflows.cnn_decision import (  # noqa: F401 (re-exported: their old home)
    DEFAULT_THRESHOLD,
    FEW_POSITIVES,
    TYPICALITY,
    CnnDecision,
    _decision_threshold,
    apply_decisions,
    decide_cnn,
    with_image_veto,
)
from picks.workflows.cnn_latent import LatentRefit
from picks.workflows.cnn_scoring import _load


def rescore_run(
    store: Store,
    run_id: int,
    options: CnnOptions,
    *,
    tomograms=None,
    catalog: Catalog | None = None,
    seed: int = 0,
    models_dir: str | Path | None = None,
    progress=None,
    executor=None,
    refit: LatentRefit | None = None,
) -> dict:
    """Score every consensus pick of ``run_id`` with the CNN, decide and store (module doc).

    ``options.model``: None trains a model on this run (saved under ``models_dir``); paths
    reuse saved models (an ensemble: mean score). ``progress`` is a factory
    ``progress(description, total)`` → context manager yielding ``advance(n, info=None)``.
    Returns a summary (counts, model ids and paths, geometry, training metrics, timings).
    ``executor`` (workflows/parallel.py): extraction and scoring per tomogram on its workers.

    ``refit`` (:mod:`picks.workflows.cnn_latent`): the run was decided by the latent-class
    model; the CNN's score becomes one more feature of that model, which decides again
    (``decided_by`` ``cnn+latent``). When the CNN cannot train (too few labelled points) the
    run keeps the latent decision already stored, and the summary says so (``fallback``,
    ``warnings``).
    """
    store.get_run(run_id)
    _, summary = rescore_consensus(
        store,
        run_id,
        store.consensus(run_id),
        options,
        tomograms=tomograms,
        catalog=catalog,
        seed=seed,
        models_dir=models_dir,
        progress=progress,
        executor=executor,
        refit=refit,
    )
    return summary


def rescore_consensus(
    store: Store,
    run_id: int,
    consensus: pd.DataFrame,
    options: CnnOptions,
    *,
    noise: pd.DataFrame | None = None,
    avoid: pd.DataFrame | None = None,
    tomograms=None,
    catalog: Catalog | None = None,
    seed: int = 0,
    models_dir: str | Path | None = None,
    progress=None,
    executor=None,
    refit: LatentRefit | None = None,
) -> tuple[pd.DataFrame, dict]:
    """:func:`rescore_run` on the run's consensus table the caller holds (``consensus``, as
    :meth:`Store.consensus` reads it; ``noise`` and ``avoid`` likewise, else read here):
    decides (:func:`~picks.workflows.cnn_decision.decide_cnn`), stores the decision in one
    transaction, and returns the consensus table the store now holds, built from the
    decision instead of read back, with the summary. ``picks aggregate`` calls it on the
    table it has just inserted."""
    run = None
    if options.reads_run_data and not consensus.empty:
        run = load_run_data(
            store, run_id, consensus, noise=noise, avoid=avoid, members=options.combine
        )
    decision = decide_cnn(
        consensus,
        run,
        options,
        run_id=run_id,
        lookup=tomogram_lookup(tomograms if tomograms is not None else store.tomograms()),
        load_model=lambda path: _load(store, path),
        catalog=catalog,
        seed=seed,
        models_dir=models_dir,
        progress=progress,
        executor=executor,
        refit=refit,
    )
    summary = store_decision(store, run_id, decision)
    if decision.decisions is None:
        return consensus, summary
    return apply_decisions(consensus, decision.decisions), summary


def store_decision(store: Store, run_id: int, decision: CnnDecision) -> dict:
    """Write a CNN decision in one transaction (models, scores, consensus decisions, drops);
    returns its full summary. A decision that changes nothing writes nothing."""
    if decision.decisions is None:
        return decision.finish([], 0.0)
    started = time.perf_counter()
    model_ids = store.set_cnn_decisions(
        run_id,
        decision.models,
        decision.model_scores,
        decision.decisions,
        decision.score_drops,
        decision.train_drops,
    )
    return decision.finish(model_ids, time.perf_counter() - started)


def scores_table(store: Store, run_id: int) -> pd.DataFrame:
    """Per-class scores of a run's consensus picks: one row per pick and model, one column per output."""
    frame = store.scores(run_id)
    if frame.empty:
        return frame
    return frame.pivot_table(
        index=["consensus_id", "model_id"], columns="particle", values="score"
    ).reset_index()


def run_catalog(store, run_id: int, catalog: Catalog | None = None) -> Catalog:
    """The catalog with the radii a run resolved (its params), so boxes match its clustering."""
    catalog = catalog or Catalog()
    try:
        params = json.loads(store.get_run(run_id).get("params") or "{}")
    except (TypeError, ValueError):
        return catalog
    radii = (params.get("resolved") or {}).get("radii") or params.get("radii") or {}
    usable = {}
    for name, radius in radii.items() if isinstance(radii, dict) else ():
        try:
            if name not in (None, "None", "") and float(radius) > 0:
                usable[name] = float(radius)
        except (TypeError, ValueError):
            continue
    return catalog.with_radii(usable) if usable else catalog


def record_training(store: Store, run_id: int, trained, path: str | Path, digest: str) -> int:
    """Record a model trained by ``picks train``: its models row and its extraction drops."""
    card = dict(trained.card, sha256=digest, file=Path(path).name)
    return store.record_model(run_id, path, digest, card, trained.dropped)


def load_run_data(
    store: Store,
    run_id: int,
    candidates: pd.DataFrame | None = None,
    *,
    noise: pd.DataFrame | None = None,
    avoid: pd.DataFrame | None = None,
    members: bool = False,
) -> RunData:
    """What training reads of a run (:class:`picks.consensus.cnn.train.RunData`), from the
    store; ``candidates``, ``noise`` and ``avoid`` when the caller holds them already (the
    aggregate workflow: what it has just stored). ``members``: also the member picks (the
    CNN's ``combine``)."""
    return RunData(
        candidates=store.consensus(run_id) if candidates is None else candidates,
        references=reference_points(store),
        noise=store.noise(run_id) if noise is None else noise,
        avoid=store.avoid_points(run_id) if avoid is None else avoid,
        members=store.member_picks(run_id) if members else None,
    )


def reference_points(store: Store) -> pd.DataFrame:
    """The trusted reference picks (roles positive and negative) training may use."""
    return store.picks(
        roles=("positive", "negative"), columns=["tomogram", "particle", "x", "y", "z"]
    )
