"""The CNN stage as a function over DataFrames: train (or load) the CNN, score, decide.

:func:`decide_cnn` takes a run's consensus candidates as they stand (in memory: the table
aggregate just inserted, or what ``picks score`` read), what training reads of the run
(:class:`~picks.consensus.cnn.train.RunData`: noise, references, avoid points, member picks)
and :class:`~picks.consensus.cnn.options.CnnOptions`, and *returns* the decision
(:class:`CnnDecision`): one row per candidate with its CNN score, decision score, acceptance,
reason and ``decided_by`` (and the refit's posterior), the per-model scores, the drops and the
summary. It never touches the store: :func:`picks.workflows.rescore.store_decision` writes a
decision in one transaction and :func:`apply_decisions` gives the consensus table the store
then holds, so ``picks aggregate`` persists its CNN stage once and reads nothing back.

What is decided (see :mod:`picks.workflows.rescore` for the rules): ``cnn_score`` =
P(particle), the mean over an ensemble; ``score`` = the score the decision used (the CNN
score, the combined probability with ``combine``, or the latent refit's posterior);
``accepted`` = score ≥ threshold, except that trusted references keep their decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from picks.consensus.cnn import combine as combiner
from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.boxes import EdgePolicy, Geometry
from picks.consensus.cnn.options import CnnOptions
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
from picks.workflows.cnn_latent import (
    DECIDED_BY,
    MIN_FEATURE_POSITIVES,
    LatentRefit,
    cnn_feature,
    refit_reasons,
)
from picks.workflows.cnn_scoring import _score

DEFAULT_THRESHOLD = 0.5
FEW_POSITIVES = 100  # below this many training positives the summary warns
TYPICALITY = "typicality"  # the scores row holding a model's typicality of the pick
DECISION_COLUMNS = ("id", "cnn_score", "score", "accepted", "reason", "decided_by", "posterior")


@dataclass
class CnnDecision:
    """What the CNN stage decided for a run; nothing of it is stored yet.

    ``decisions``: one row per candidate (columns :data:`DECISION_COLUMNS`; ``posterior`` is
    NaN where the stored posterior stays: no refit, a trusted or forced row) — None when
    nothing changes (no candidates, or the latent decision stands because the CNN could
    not train). ``models``: dicts with model, card, path, sha256. ``model_scores``: per model
    (consensus ids, output names, values). ``score_drops``: (consensus id, reason);
    ``train_drops``: (kind, ref_id, reason), None when this call did not train.
    """

    summary: dict
    decisions: pd.DataFrame | None = None
    models: list[dict] = field(default_factory=list)
    model_scores: list[tuple[np.ndarray, list[str], np.ndarray]] = field(default_factory=list)
    score_drops: list[tuple[int, str]] = field(default_factory=list)
    train_drops: list[tuple[str, int, str]] | None = None
    result: dict = field(default_factory=dict)  # the summary's tail, once the models have ids

    def finish(self, model_ids: list[int], write_seconds: float) -> dict:
        """The full summary, given the stored models' ids and the seconds the write took."""
        if self.decisions is None:
            return self.summary
        timings = self.summary["timings"]
        timings["write"] = write_seconds
        summary = {k: v for k, v in self.summary.items() if k != "timings"}
        tail = dict(self.result)
        geometry, device = tail.pop("geometry"), tail.pop("device")
        summary.update(
            **tail,
            models=[
                {"id": i, "path": str(m["path"]), "sha256": m["sha256"]}
                for i, m in zip(model_ids, self.models, strict=True)
            ],
            geometry=geometry,
            device=device,
            timings=timings,
        )
        return summary


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
    veto, _, notes = veto_from_statistics(stats, names[known], likely, radii)
    out = candidates.copy()
    out["image_veto"] = False
    out.loc[veto.index[veto.to_numpy()], "image_veto"] = True
    return out, {"vetoed": int(out["image_veto"].sum()), "warnings": notes}


def decide_cnn(
    candidates: pd.DataFrame,
    run: RunData | None,
    options: CnnOptions,
    *,
    run_id: int,
    lookup: dict,
    load_model: Callable[[str], tuple[object, dict]],
    catalog: Catalog | None = None,
    seed: int = 0,
    models_dir: str | Path | None = None,
    progress: Callable | None = None,
    executor=None,
    refit: LatentRefit | None = None,
) -> CnnDecision:
    """Score ``candidates`` (a run's consensus table, id order) with the CNN and decide.

    ``run``: what training reads (:class:`RunData`; its candidates are replaced by
    ``candidates``), needed when ``options.reads_run_data``. ``lookup``: tomograms by name.
    ``load_model(path)`` → (model, card) for saved models (``options.model``). The model
    trained here is saved under ``models_dir`` (a file, not the store). ``refit``: see
    :func:`picks.workflows.rescore.rescore_run`.
    """
    progress = progress or null_progress
    catalog = catalog or Catalog()
    timings: dict[str, float] = {}
    threshold, combine = options.threshold, options.combine
    summary: dict = {
        "method": "cnn",
        "run_id": int(run_id),
        "threshold": threshold,
        "combine": bool(combine),
        "n_candidates": len(candidates),
    }
    if candidates.empty:
        return CnnDecision(
            dict(summary, n_scored=0, n_accepted=0, n_dropped=0, models=[], timings=timings)
        )
    if run is None and options.reads_run_data:
        raise PicksError("the CNN needs the run's noise and references to train or combine")
    policy = EdgePolicy(options.edge, options.outside_limit)
    plan = cnn.select_device(options.device)
    positives = options.positive_rule
    trained = None
    models: list[dict] = []  # each: model, card, path, sha256
    train_drops: list[tuple[str, int, str]] | None = None  # None: no training in this call
    started = time.perf_counter()
    if options.model is None:
        if positives != "posterior":  # the posterior already holds the veto (P = 0)
            candidates, summary["image_veto"] = with_image_veto(
                candidates, lookup, catalog, positives
            )
        try:
            trained = _fit(
                replace(run, candidates=candidates),
                run_id,
                options,
                tomograms=lookup,
                catalog=catalog,
                seed=seed,
                candidates=candidates,
                progress=progress,
            )
        except TooLittleTraining as exc:
            if refit is None:
                raise
            summary["fallback"] = "latent"
            summary["warnings"] = [
                f"the CNN could not train ({exc}): the run keeps the latent-class decision, "
                "without the CNN feature"
            ]
            return CnnDecision(dict(summary, n_scored=0, n_accepted=None, n_dropped=0, models=[]))
        directory = Path(models_dir or "picks-models")
        path = unique_model_path(directory, f"run{run_id}-cnn")
        saving = time.perf_counter()
        digest = cnn.save(trained.model, path, trained.card)
        timings["save"] = time.perf_counter() - saving
        card = dict(trained.card, sha256=digest, file=path.name)
        models.append({"model": trained.model, "card": card, "path": path, "sha256": digest})
        train_drops = trained.dropped
        timings["extract_train"] = trained.extract_seconds
        timings["train"] = trained.train_seconds
        timings["mine"] = trained.mine_seconds
        # what "save" held before it was measured alone: after training, the typicality fit,
        # the validation rule and the card (hashing ~1 GB of boxes); before it, the labels
        timings["finish_train"] = trained.finish_seconds
        timings["prepare_train"] = (
            saving
            - started
            - trained.extract_seconds
            - trained.train_seconds
            - trained.mine_seconds
            - trained.finish_seconds
        )
        _training_summary(summary, card, trained)
    else:
        for p in options.model:
            loaded, card = load_model(p)
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
    typicality = options.typicality
    probs, typ, dropped = _score(
        candidates,
        lookup,
        models,
        policy,
        options.reader,
        progress,
        batch_size=max(256, int(options.batch_size or 0)),
        typicality=typicality,
        timings=timings,
        alpha=options.typicality_alpha,
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
            run, run_id, candidates, particle, models, trained, lookup, policy, catalog, seed,
            options,
        )  # fmt: skip
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
    posterior = np.full(len(candidates), np.nan)  # NaN: the stored posterior stays
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
        # the refit's posterior, next to the first fit's in the run's record; a forced
        # (trusted reference) decision keeps its own
        own = ~trusted & ~candidates["forced"].fillna(False).astype(bool).to_numpy()
        posterior = np.where(own, final, np.nan)
        summary.update(decision=DECIDED_BY, cnn_feature_classes=used, cnn_feature_skipped=skipped)
        if skipped:
            summary.setdefault("warnings", []).append(
                f"the CNN score is not used as evidence for {', '.join(skipped)}: fewer than "
                f"{MIN_FEATURE_POSITIVES} confident training particles of the class; the "
                "pickers decide those"
            )
        timings["refit"] = time.perf_counter() - started

    ids = candidates["id"].to_numpy(dtype=np.int64)
    decisions = pd.DataFrame(
        {
            "id": ids,
            "cnn_score": np.asarray(particle, dtype=float),
            "score": np.asarray(final, dtype=float),
            "accepted": np.asarray(accepted, dtype=bool),
            "reason": pd.Series(reasons, dtype=object),
            "decided_by": pd.Series(decided_by.tolist(), dtype=object),
            "posterior": posterior,
        }
    )
    model_scores = []
    for m, p, t in zip(models, probs, typ, strict=True):
        ok = ~np.isnan(p[:, 0])
        model_scores.append(
            (ids[ok], [*m["card"]["classes"], TYPICALITY], np.column_stack([p[ok], t[ok]]))
        )
    summary["timings"] = timings
    return CnnDecision(
        summary,
        decisions,
        models,
        model_scores,
        [(int(ids[pos]), reason) for pos, reason in sorted(dropped.items())],
        train_drops,
        result={
            "n_scored": n_scored,
            "n_accepted": int(accepted.sum()),
            "n_dropped": len(dropped),
            "n_trusted": int(trusted.sum()),
            "geometry": {
                "box": models[0]["card"]["box"],
                "voxel_size": models[0]["card"]["voxel_size"],
                "edge": policy.mode,
                "max_outside": policy.max_outside,
            },
            "device": plan.describe(),
        },
    )


def apply_decisions(consensus: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """``consensus`` (a run's table, as :meth:`Store.consensus` reads it) with ``decisions``
    applied as :meth:`Store.set_cnn_decisions` stores them: the same values and dtypes the
    store would give back, without reading it back."""
    out = consensus.copy()
    at = pd.Index(out["id"]).get_indexer(decisions["id"])
    if (at < 0).any():
        raise PicksError("CNN decisions for consensus ids the run does not hold")
    # + 0.0: SQLite gives -0.0 back as 0.0 (see Store.add_consensus_frame)
    for column in ("cnn_score", "score"):
        values = out[column].to_numpy(dtype=float).copy()
        values[at] = decisions[column].to_numpy(dtype=float) + 0.0
        out[column] = values
    accepted = out["accepted"].to_numpy(dtype=np.int64).copy()
    accepted[at] = decisions["accepted"].astype(bool).astype(np.int64).to_numpy()
    out["accepted"] = accepted
    for column in ("reason", "decided_by"):
        values = out[column].to_numpy(dtype=object).copy()
        values[at] = decisions[column].astype(str).to_numpy(dtype=object)
        out[column] = values
    posterior = decisions["posterior"].to_numpy(dtype=float)
    given = ~np.isnan(posterior)
    values = out["posterior"].to_numpy(dtype=float).copy()
    values[at[given]] = posterior[given] + 0.0
    out["posterior"] = values
    return out


def _training_summary(summary: dict, card: dict, trained) -> None:
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
        "boxes_seen": trained.result.boxes_seen,  # the last round's (budget: train_boxes)
        "stopped_at_budget": trained.result.stopped_at_budget,
        "val_loss": trained.result.val_loss,
        "val_auc": trained.result.val_auc,
        "samples_per_s": trained.result.samples_per_s,
        "device": trained.result.device,
    }


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
    run: RunData,
    run_id: int,
    candidates,
    particle,
    models,
    trained,
    lookup,
    policy,
    catalog,
    seed,
    options: CnnOptions,
):
    """Fit the logistic regression on labelled points with out-of-sample CNN scores."""
    from picks.consensus.cnn.boxes import extract

    if run.members is None:
        raise PicksError("`combine` needs the run's member picks")
    member_picks = combiner.members(run.members)
    pickers = sorted(set(member_picks["picker"].astype(str))) if not member_picks.empty else []
    if trained is not None:
        rows = trained.data.table.iloc[trained.extracted.index].reset_index(drop=True)
        boxes = trained.extracted.boxes
        use = trained.val_mask
        fit_on = "held-out validation split of the training points"
    else:
        data = training_table(
            replace(run, candidates=candidates),
            run_id,
            catalog=catalog,
            candidates=candidates,
            seed=seed,
            positives=options.positive_rule,
        )
        geometry = Geometry.of_card(models[0]["card"])
        extracted = extract(data.table, lookup, geometry, edge=policy, reader=options.reader)
        rows = data.table.iloc[extracted.index].reset_index(drop=True)
        boxes = extracted.boxes
        use = np.ones(len(rows), dtype=bool)
        fit_on = "all labelled training points of the run (the models did not train on them)"
    rows, boxes = rows[use].reset_index(drop=True), boxes[use]
    box = int(models[0]["card"]["box"])
    typicality, alpha = options.typicality, options.typicality_alpha
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
