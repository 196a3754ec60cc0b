"""Deep rescoring of a run's consensus picks: train (or load) the CNN, score, decide, store.

:func:`rescore_run` is what ``picks aggregate`` (CNN method), ``picks score`` and the tests
call. For every consensus pick of the run it stores:

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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from picks.consensus.cnn import combine as combiner
from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.boxes import EdgePolicy, Geometry, tomogram_lookup
from picks.consensus.cnn.reasons import MIN_CLASS_POSITIVES  # noqa: F401 (re-exported)
from picks.consensus.cnn.reasons import cnn_reasons as _reasons
from picks.consensus.cnn.reasons import decision_score as _decision_score
from picks.consensus.cnn.reasons import rare_class_mask as _rare_class_mask
from picks.consensus.cnn.train import (
    RunData,
    TooLittleTraining,
    is_trusted,
    positive_selection,
    training_table,
    unique_model_path,
)
from picks.consensus.cnn.train import fit as _fit
from picks.core.errors import PicksError
from picks.core.particles import Catalog
from picks.core.progress import null_progress
from picks.core.store import Store
from picks.workflows.cnn_latent import (
    DECIDED_BY,
    MIN_FEATURE_POSITIVES,
    LatentRefit,
    cnn_feature,
    refit_reasons,
)
from picks.workflows.cnn_scoring import _load, _score

DEFAULT_THRESHOLD = 0.5
FEW_POSITIVES = 100  # below this many training positives the summary warns
TYPICALITY = "typicality"  # the scores row holding a model's typicality of the pick


def with_image_veto(
    candidates: pd.DataFrame, lookup: dict, catalog: Catalog, positives: str
) -> tuple[pd.DataFrame, dict]:
    """``candidates`` with an ``image_veto`` column: the beads and contamination that the
    pickers agree on, which must not become training positives (issue 10 §4). The likely
    particles are the training positives the support rule would choose."""
    from picks.consensus.image_features import candidate_statistics, veto_from_statistics

    names = candidates["particle"]
    known = names.map(lambda p: isinstance(p, str) and p in catalog).to_numpy(dtype=bool)
    radii = {p: catalog.radius(p) for p in set(names[known])}
    stats = candidate_statistics(candidates[known], lookup, radii)
    likely, _ = positive_selection(candidates[known], positives)
    veto, _, notes = veto_from_statistics(stats, names[known], likely)
    out = candidates.copy()
    out["image_veto"] = False
    out.loc[veto.index[veto.to_numpy()], "image_veto"] = True
    return out, {"vetoed": int(out["image_veto"].sum()), "warnings": notes}


def rescore_run(
    store: Store,
    run_id: int,
    *,
    tomograms=None,
    catalog: Catalog | None = None,
    seed: int = 0,
    models_dir: str | Path | None = None,
    progress: Callable | None = None,
    model: str | Path | Sequence[str | Path] | None = None,
    epochs: int = 30,
    box: int = 32,
    threshold: float | None = None,
    combine: bool = False,
    device: str = "auto",
    batch_size: int | None = None,
    margin: float | None = None,
    working_voxel_size: float | None = None,
    edge: str = "pad",
    max_outside: float | None = None,
    reader: str = "mmap",
    typicality: bool = True,
    typicality_alpha: float | None = None,
    positives: str = "auto",
    executor=None,
    refit: LatentRefit | None = None,
) -> dict:
    """Score every consensus pick of ``run_id`` with the CNN and decide (see module doc).

    ``model``: None trains a model on this run (saved under ``models_dir``); a path, or a list
    of paths for an ensemble (mean score), reuses saved models. ``progress`` is a factory
    ``progress(description, total)`` → context manager yielding ``advance(n, info=None)``.
    Returns a summary (counts, model ids and paths, geometry, training metrics, timings).
    ``executor`` (workflows/parallel.py): extraction and scoring per tomogram on its workers.

    ``refit`` (the aggregate workflow's, :mod:`picks.workflows.cnn_latent`): the run was
    decided by the latent-class model; the CNN's score becomes one more feature of that model,
    which decides again (``decided_by`` ``cnn+latent``). When the CNN cannot train (too few
    labelled points) the run keeps the latent decision already stored, and the summary says
    so (``fallback``, ``warnings``).
    """
    progress = progress or null_progress
    catalog = catalog or Catalog()
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise PicksError(f"`threshold` {threshold}: expected a probability between 0 and 1")
    store.get_run(run_id)
    timings: dict[str, float] = {}
    candidates = store.consensus(run_id)
    summary: dict = {
        "method": "cnn",
        "run_id": int(run_id),
        "threshold": threshold,
        "combine": bool(combine),
        "n_candidates": len(candidates),
    }
    if candidates.empty:
        return dict(summary, n_scored=0, n_accepted=0, n_dropped=0, models=[], timings=timings)
    lookup = tomogram_lookup(tomograms if tomograms is not None else store.tomograms())
    policy = EdgePolicy(edge, 0.5 if max_outside is None else float(max_outside))
    plan = cnn.select_device(device)
    trained = None
    models: list[dict] = []  # each: model, card, path, sha256, id (None until stored)
    train_drops: list[tuple[str, int, str]] | None = None  # None: no training in this call
    started = time.perf_counter()
    if model is None:
        if positives != "posterior":  # the posterior already holds the veto (P = 0)
            candidates, summary["image_veto"] = with_image_veto(
                candidates, lookup, catalog, positives
            )
        try:
            trained = _fit(
                load_run_data(store, run_id, candidates),
                run_id,
                tomograms=lookup,
                catalog=catalog,
                seed=seed,
                epochs=epochs,
                box=box,
                margin=margin,
                working_voxel_size=working_voxel_size,
                edge=policy,
                device=device,
                batch_size=batch_size,
                reader=reader,
                candidates=candidates,
                progress=progress,
                typicality=typicality,
                positives=positives,
            )
        except TooLittleTraining as exc:
            if refit is None:
                raise
            summary["fallback"] = "latent"
            summary["warnings"] = [
                f"the CNN could not train ({exc}): the run keeps the latent-class decision, "
                "without the CNN feature"
            ]
            return dict(summary, n_scored=0, n_accepted=None, n_dropped=0, models=[])
        directory = Path(models_dir or "picks-models")
        path = unique_model_path(directory, f"run{run_id}-cnn")
        digest = cnn.save(trained.model, path, trained.card)
        card = dict(trained.card, sha256=digest, file=path.name)
        models.append({"model": trained.model, "card": card, "path": path, "sha256": digest})
        train_drops = trained.dropped
        timings["extract_train"] = trained.extract_seconds
        timings["train"] = trained.train_seconds
        timings["mine"] = trained.mine_seconds
        timings["save"] = (
            time.perf_counter()
            - started
            - trained.extract_seconds
            - trained.train_seconds
            - trained.mine_seconds
        )
        n_pos = int(sum(card["training"]["counts"]["positives"].values()))
        if n_pos < FEW_POSITIVES:
            summary.setdefault("warnings", []).append(
                f"the CNN trained on only {n_pos} positives "
                f"({card['training']['counts'].get('positive_rule', 'full support')}); below about "
                f"{FEW_POSITIVES} it barely tells particles from picker noise and accepts "
                "nearly every candidate (see docs/cnn.md §6): more tomograms or trusted "
                "`positives` references help"
            )
        summary["train"] = {
            "counts": card["training"]["counts"],
            "split": card["training"]["split"],
            "best_epoch": trained.result.best_epoch,
            "epochs_run": trained.result.epochs_run,
            "val_loss": trained.result.val_loss,
            "val_auc": trained.result.val_auc,
            "samples_per_s": trained.result.samples_per_s,
            "device": trained.result.device,
        }
    else:
        paths = [model] if isinstance(model, str | Path) else list(model)
        if not paths:
            raise PicksError("no model given")
        for p in paths:
            loaded, card = _load(store, p)
            models.append(
                {
                    "model": loaded,
                    "card": card,
                    "path": Path(p),
                    "sha256": card.get("sha256") or cnn.sha256_file(p),
                }
            )
        timings["load"] = time.perf_counter() - started

    threshold, summary["threshold_rule"] = _decision_threshold(threshold, models, combine)
    summary["threshold"] = threshold

    # -- scoring ---------------------------------------------------------------------------
    started = time.perf_counter()
    probs, typ, dropped = _score(
        candidates,
        lookup,
        models,
        policy,
        reader,
        progress,
        batch_size=max(256, int(batch_size or 0)),
        typicality=typicality,
        timings=timings,
        alpha=typicality_alpha,
        executor=executor,
    )
    timings["score"] = time.perf_counter() - started
    n_scored = int((~np.isnan(probs[0][:, 0])).sum()) if probs else 0
    summary["predict_samples_per_s"] = (
        n_scored * len(models) / timings["predict"] if timings.get("predict") else 0.0
    )
    summary["scoring_samples_per_s"] = (
        n_scored * len(models) / timings["score"] if timings["score"] else 0.0
    )
    rare = [_rare_class_mask(candidates, m, typicality) for m in models]
    per_model = np.stack(
        [_decision_score(p, t, r) for p, t, r in zip(probs, typ, rare, strict=True)]
    )
    particle = per_model.mean(axis=0)  # NaN where dropped (dropped for every model alike)
    scored = ~np.isnan(particle)
    rare_any = np.any(np.stack(rare), axis=0)  # for an ensemble: in at least one model
    summary["typicality_only_classes"] = sorted(
        {str(p) for p in candidates.loc[rare_any, "particle"]}
    )

    # -- decision --------------------------------------------------------------------------
    final = particle.copy()
    if combine:
        started = time.perf_counter()
        final, summary["combine_model"] = _combine(
            store,
            run_id,
            candidates,
            particle,
            models,
            trained,
            lookup,
            policy,
            reader,
            catalog,
            seed,
            positives,
            typicality,
            typicality_alpha,
        )
        timings["combine"] = time.perf_counter() - started
    trusted = is_trusted(candidates)
    # Classes without (enough) training positives are judged by typicality alone (see
    # MIN_CLASS_POSITIVES); the reason says so.
    known = set().union(*(m["card"]["classes"][1:] for m in models))
    unknown = ~candidates["particle"].map(lambda p: p in known).to_numpy(dtype=bool)
    accepted = np.where(
        trusted,
        candidates["accepted"].fillna(0).astype(int).to_numpy() > 0,
        scored & (np.nan_to_num(final, nan=-1.0) >= threshold),
    )
    summary["unseen_classes"] = sorted({str(p) for p in candidates.loc[unknown, "particle"]})
    reasons = _reasons(
        candidates,
        particle,
        final,
        accepted,
        trusted,
        unknown,
        dropped,
        probs,
        typ,
        models,
        threshold,
        combine,
        rare_any,
    )

    decided_by = np.where(trusted, "reference", "combined" if combine else "cnn")
    if refit is not None:
        # The latent-class model decides again, with the CNN's score as evidence.
        started = time.perf_counter()
        p_particle = np.mean(np.stack([1.0 - p[:, 0] for p in probs]), axis=0)
        feature, used, skipped = cnn_feature(candidates, p_particle, models)
        table = refit(feature)
        final = table["posterior"].to_numpy(dtype=float)
        accepted = np.where(trusted, accepted, table["accepted"].to_numpy(dtype=bool))
        latent_reasons = refit_reasons(
            table, feature, p_particle, used, candidates["particle"].tolist()
        )
        reasons = [
            r if t else lr for r, lr, t in zip(reasons, latent_reasons, trusted, strict=True)
        ]
        decided_by = np.where(trusted, "reference", DECIDED_BY)
        summary.update(decision=DECIDED_BY, cnn_feature_classes=used, cnn_feature_skipped=skipped)
        if skipped:
            summary.setdefault("warnings", []).append(
                f"the CNN score is not used as evidence for {', '.join(skipped)}: fewer than "
                f"{MIN_FEATURE_POSITIVES} confident training particles of the class; the "
                "pickers decide those"
            )
        timings["refit"] = time.perf_counter() - started

    # -- writing ---------------------------------------------------------------------------
    started = time.perf_counter()
    model_ids = _write(
        store,
        run_id,
        candidates,
        models,
        probs,
        typ,
        particle,
        final,
        accepted,
        reasons,
        dropped,
        train_drops,
        decided_by.tolist(),
    )
    if refit is not None:  # the refit's posterior, next to the first fit's in the run's record
        rows = ~trusted
        store.set_decisions(
            pd.DataFrame(
                {
                    "id": candidates["id"].to_numpy()[rows],
                    "accepted": accepted[rows],
                    "score": final[rows],
                    "reason": np.asarray(reasons, dtype=object)[rows],
                    "decided_by": decided_by[rows],
                    "posterior": final[rows],
                }
            )
        )
    timings["write"] = time.perf_counter() - started
    summary.update(
        n_scored=n_scored,
        n_accepted=int(accepted.sum()),
        n_dropped=len(dropped),
        n_trusted=int(trusted.sum()),
        models=[
            {"id": i, "path": str(m["path"]), "sha256": m["sha256"]}
            for i, m in zip(model_ids, models, strict=True)
        ],
        geometry={
            "box": models[0]["card"]["box"],
            "voxel_size": models[0]["card"]["voxel_size"],
            "edge": policy.mode,
            "max_outside": policy.max_outside,
        },
        device=plan.describe(),
        timings=timings,
    )
    return summary


def _decision_threshold(threshold, models, combine: bool) -> tuple[float, str]:
    """The threshold the decision uses: the given one, else the model cards' tuned one.

    A model card's ``decision.threshold`` is the Bayes decision for the CZII F-beta's cost
    ratio, ``1/(1 + β²)`` with β = 4 (see :func:`picks.consensus.cnn.threshold.decision_rule`); an
    ensemble uses the mean of its members'. Models without one, and ``combine`` (whose
    logistic regression outputs a calibrated probability), use :data:`DEFAULT_THRESHOLD`.
    """
    if threshold is not None:
        return float(threshold), "given"
    tuned = [
        float(m["card"]["decision"]["threshold"])
        for m in models
        if isinstance(m["card"].get("decision"), dict) and "threshold" in m["card"]["decision"]
    ]
    if combine or len(tuned) != len(models):
        return DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD:g}"
    return float(np.mean(tuned)), "model card: 1/(1 + β²), β = 4 (F-beta cost ratio)"


def _combine(
    store,
    run_id,
    candidates,
    particle,
    models,
    trained,
    lookup,
    policy,
    reader,
    catalog,
    seed,
    positives="auto",
    typicality=True,
    alpha=None,
):
    """Fit the logistic regression on labelled points with out-of-sample CNN scores."""
    from picks.consensus.cnn.boxes import extract

    member_picks = combiner.members(store.member_picks(run_id))
    pickers = sorted(set(member_picks["picker"].astype(str))) if not member_picks.empty else []
    if trained is not None:
        rows = trained.data.table.iloc[trained.extracted.index].reset_index(drop=True)
        boxes = trained.extracted.boxes
        use = trained.val_mask
        fit_on = "held-out validation split of the training points"
    else:
        data = training_table(
            load_run_data(store, run_id, candidates),
            run_id,
            catalog=catalog,
            candidates=candidates,
            seed=seed,
            positives=positives,
        )
        geometry = Geometry.of_card(models[0]["card"])
        extracted = extract(data.table, lookup, geometry, edge=policy, reader=reader)
        rows = data.table.iloc[extracted.index].reset_index(drop=True)
        boxes = extracted.boxes
        use = np.ones(len(rows), dtype=bool)
        fit_on = "all labelled training points of the run (the models did not train on them)"
    rows, boxes = rows[use].reset_index(drop=True), boxes[use]
    box = int(models[0]["card"]["box"])
    scores = []
    for m in models:
        p, feats = cnn.predict(m["model"], boxes, box=box, features=True)
        params = m["card"].get("typicality") if typicality else None
        t = cnn.typicality(feats, params, alpha)[2]
        # the same rule as for the candidates, so the regression is fitted on what it decides on
        scores.append(_decision_score(p, t, _rare_class_mask(rows, m, typicality)))
    score = np.mean(scores, axis=0)
    labels = (rows["label"].to_numpy() > 0).astype(int)
    if labels.min() == labels.max():
        raise PicksError("`combine`: the labelled points hold only one class; cannot calibrate")
    x_fit, columns = combiner.design(
        score, combiner.point_features(rows, member_picks, pickers, catalog)
    )
    model = combiner.fit(x_fit, labels, seed)
    cand = combiner.candidate_features(candidates, member_picks, pickers)
    x_all, _ = combiner.design(np.nan_to_num(particle, nan=0.5), cand)
    final = model.predict_proba(x_all)[:, 1]
    final[np.isnan(particle)] = np.nan
    info = combiner.describe(model, columns)
    info.update(fit_on=fit_on, n_fit=len(labels), n_fit_positive=int(labels.sum()))
    return final, info


def _write(
    store: Store,
    run_id,
    candidates,
    models,
    probs,
    typ,
    particle,
    final,
    accepted,
    reasons,
    dropped,
    train_drops,
    decided_by,
):
    """One transaction: models, scores, consensus updates and dropped rows."""
    ids = candidates["id"].to_numpy(dtype=np.int64)
    model_scores = []
    for m, p, t in zip(models, probs, typ, strict=True):
        ok = ~np.isnan(p[:, 0])
        model_scores.append(
            (ids[ok], [*m["card"]["classes"], TYPICALITY], np.column_stack([p[ok], t[ok]]))
        )
    updates = zip(
        _nullable(particle),
        _nullable(final),
        accepted.astype(int).tolist(),
        reasons,
        decided_by,
        ids.tolist(),
        strict=True,
    )
    score_drops = [(int(ids[pos]), reason) for pos, reason in sorted(dropped.items())]
    return store.set_cnn_decisions(run_id, models, model_scores, updates, score_drops, train_drops)


def _nullable(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


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


def load_run_data(store: Store, run_id: int, candidates: pd.DataFrame | None = None) -> RunData:
    """What training reads of a run (:class:`picks.consensus.cnn.train.RunData`), from the store."""
    return RunData(
        candidates=store.consensus(run_id) if candidates is None else candidates,
        references=store.picks(
            roles=("positive", "negative"), columns=["tomogram", "particle", "x", "y", "z"]
        ),
        noise=store.noise(run_id),
        avoid=store.avoid_points(run_id),
    )
