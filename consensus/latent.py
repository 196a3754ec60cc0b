"""The latent-class decision stage: votes in, decisions by expected F-beta out (no store).

:func:`decide_latent` takes the clusters, the clustered picks and the vote (with reference
decisions already applied), fits the latent-class model of :mod:`picks.consensus.reliability`
and accepts, per class, the candidates that maximise the expected F-beta
(:mod:`picks.consensus.decide`). A trusted reference's decision always stands: forced rows
keep their decision (and count as decided by ``reference``), but they are part of the fit like
every candidate, because the pickers' agreement there is evidence like any other.

The support partition (``status``: positive / doubtful / negative) is kept as it was: it says
how many pickers agreed, and the CNN's training labels are read from it. What changes is
``accepted``, ``score`` (= the posterior), ``reason`` and ``decided_by``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from picks.consensus.cluster import Clusters
from picks.consensus.decide import Objective, as_objective, decide_per_class, implied_support_rule
from picks.consensus.expectation import missed_per_class, reported_expectations
from picks.consensus.reliability import conflict_counts, picker_reliability
from picks.core.errors import PicksError
from picks.core.jsonable import json_records

DEFAULT_BETA = 4.0
# The latent-class model multiplies the pickers' evidence as if they erred independently.
# Real pickers share failure modes (two detectors fire on the same gold bead, the good ones
# miss the same faint particles together), so its posteriors are overconfident: a candidate
# that only a sensitive picker reported gets P ≈ 0.05 where about a fifth of such candidates
# are particles. Dividing the log-odds by this temperature counts the evidence of two
# agreeing pickers as that of about one independent picker. Measured on 10 simulated worlds
# (docs/latent.md): at 2 the decision beat accepting every candidate on every world; at 1
# (no tempering) it lost to it on two, by up to 0.044 F4 on the independent polnet world.
DEFAULT_TEMPERATURE = 2.0


@dataclass
class LatentDecision:
    """The decided vote table and what the run summary and the store need to show it."""

    votes: pd.DataFrame  # the input vote plus posterior, score, decided_by, vote_reason
    pickers: pd.DataFrame  # per picker and class: n_reported, recall, false_rate, precision
    classes: pd.DataFrame  # per class: threshold, expected precision/recall/F-beta, ...
    rules: dict[str, str] = field(default_factory=dict)  # class -> implied voting rule (text)
    warnings: list[str] = field(default_factory=list)
    fit: object = None
    objective: Objective = field(default_factory=lambda: Objective.fbeta(DEFAULT_BETA))

    def summary(self) -> dict:
        return {
            "beta": float(self.objective.beta),
            "objective": str(self.objective),
            "classes": json_records(self.classes),
            "pickers": json_records(self.pickers),
            "implied_rules": self.rules,
            "warnings": list(self.warnings),
        }


def decide_latent(
    clusters: Clusters,
    picks: pd.DataFrame,
    votes: pd.DataFrame,
    *,
    beta: float | Objective = DEFAULT_BETA,
    class_agnostic: bool = False,
    conflicts: bool = True,
    picker_scores: bool = False,
    temperature: float = DEFAULT_TEMPERATURE,
    images: pd.DataFrame | None = None,
    image_evidence: bool = False,
    radii: Mapping[object, float] | None = None,
    background: pd.DataFrame | None = None,
    seed: int = 0,
    extra_features: pd.DataFrame | None = None,
) -> LatentDecision:
    """Posterior P(particle) for every candidate and the decision per class.

    ``beta``: the F-beta whose expectation the decision maximises, or an
    :class:`~picks.consensus.decide.Objective` (e.g. ``precision@recall=0.8``: the most
    precise set whose expected recall reaches 0.8; warned where no set reaches it).

    ``conflicts`` adds the cross-class conflict count (another class's candidate on the same
    spot: a bead called ribosome by one picker and apo-ferritin by another) as evidence.
    ``picker_scores`` adds each picker's own score (a percentile rank per picker and class).
    It is off by default: on simulated worlds a picker's faint true particles score low and
    its gold beads high, so scores added nothing (docs/latent.md). ``temperature`` tempers
    the model's log-odds before deciding (see :data:`DEFAULT_TEMPERATURE`); the stored
    posterior is the tempered one, the probability the decision used.

    ``images`` (with tomograms): the box statistics of
    :func:`picks.consensus.image_features.candidate_statistics`, indexed like the consensus.
    A candidate far denser than its class's typical box (a gold bead, contamination; the
    likely particles, P ≥ 0.5, say which way is dense) gets
    P(particle) = 0 and is rejected with the reason (:func:`~picks.consensus.image_features.
    density_veto`), whatever the pickers' agreement. **Experimental** ``image_evidence``
    (off by default) also makes the same statistics evidence in the fit
    (:func:`image_evidence_columns`): each class learns, without truth, how its particles'
    boxes differ from its junk's. It helps where the images separate particles from the junk
    the pickers agree on (the independent polnet world: F4 +0.03, F1 at β = 1 +0.10) and can
    hurt where they do not (docs/latent.md "Images as evidence"). ``radii`` (class → Å, the
    radii the boxes were cut with; else the candidates' match distances stand in): a
    candidate no denser than the likely particles of a larger class is never vetoed — a true
    particle of a class whose likely particles are junk (:func:`~picks.consensus.
    image_features.typical_of_another_class`).

    ``background`` (with ``images``): the empty boxes' statistics of
    :func:`picks.consensus.background.empty_background`. Where a class's well-supported
    candidates stand far out of the empty background, a candidate no denser than empty
    background (a noise peak some pickers reported) gets P(particle) = 0 and is rejected
    with the reason (:func:`picks.consensus.background.empty_veto`).

    ``extra_features`` (indexed like the consensus): more evidence columns, e.g. the CNN's
    P(particle) (:mod:`picks.workflows.cnn_latent`). Each is binned and gets a histogram per
    class and latent state, like the conflict count; NaN means "no evidence" for that row.
    """
    if not (np.isfinite(temperature) and temperature >= 1):
        raise PicksError(f"temperature {temperature!r}: expected a number ≥ 1 (1: no tempering)")
    consensus = clusters.consensus
    features = None
    if conflicts and not class_agnostic and len(consensus):
        features = pd.DataFrame({"conflicts": conflict_counts(consensus)}, index=consensus.index)
    if extra_features is not None and len(extra_features.columns):
        if not extra_features.index.equals(consensus.index):
            raise PicksError("extra features must be indexed like the consensus candidates")
        features = extra_features if features is None else features.join(extra_features)
    if images is not None and image_evidence and not class_agnostic and len(consensus):
        if not images.index.equals(consensus.index):
            raise PicksError("image statistics must be indexed like the consensus candidates")
        own = image_evidence_columns(consensus, images)
        features = own if features is None else features.join(own)
    posterior, pickers, fit = picker_reliability(
        consensus,
        clusters.members,
        picks,
        class_agnostic=class_agnostic,
        features=features,
        use_scores=picker_scores,
        seed=seed,
    )
    veto = pd.Series(False, index=consensus.index)
    image_notes: list[str] = []
    z = None
    empty = None
    if images is not None and len(consensus) and not class_agnostic:
        veto, z, image_notes = _image_veto(consensus, images, posterior, radii)
        if background is not None:
            empty = _empty_boxes(consensus, images, background, fit, veto)
    # the density veto and the empty boxes are disjoint (an empty box is never dense)
    rejected = veto if empty is None else veto | empty[0]
    posterior = temper(posterior, temperature)
    posterior = posterior.where(~rejected.to_numpy(), 0.0)
    objective = as_objective(beta)
    # Particles every picker missed together, which the model's independence count does not
    # see (expectation.py): what is reported counts them. A recall target is decided on
    # that count, so that the recall it claims to reach is the recall reported; the F-beta
    # decision keeps the model's count (measured: the reported expectations came closer to
    # the truth, while the decisions, and so the F4 of the default, stay as they were).
    support = consensus["n_pickers"].to_numpy() if "n_pickers" in consensus else None
    bound, missed = missed_per_class(
        fit.groups, fit.eligible, fit.expected_missed, posterior.to_numpy(dtype=float), support
    )
    decided, classes = decide_per_class(
        consensus, posterior, fit, objective, missed if objective.kind == "recall" else None
    )
    classes.insert(1, "beta", float(objective.beta))
    classes.insert(2, "objective", str(objective))

    out = votes.copy()
    forced = out["forced"].fillna(False).astype(bool).to_numpy()
    out["vote_reason"] = out["reason"].astype(str)
    out["posterior"] = decided["posterior"].to_numpy(dtype=float)
    accepted = np.where(forced, out["accepted"].astype(bool), decided["accepted"].to_numpy())
    out["accepted"] = accepted
    out["score"] = out["posterior"]
    # what the accepted set (a trusted reference's decisions included) is expected to give
    classes = reported_expectations(
        classes,
        fit.groups,
        list(fit.group_names),
        fit.expected_missed,
        bound,
        out["posterior"].to_numpy(dtype=float),
        accepted,
        float(objective.beta),
        n_pickers=np.asarray(fit.eligible).sum(axis=1),
    )
    out["decided_by"] = np.where(forced, "reference", "latent")
    own = decided["reason"].astype(str).to_numpy().astype(object)
    if veto.any():
        dense = np.nan_to_num(z.to_numpy(dtype=float), nan=-np.inf)
        worst = np.asarray(z.columns)[dense.argmax(axis=1)]
        top = dense.max(axis=1)
        for i in np.flatnonzero(veto.to_numpy()):
            own[i] = (
                f"image: {worst[i]} {top[i]:.1f} robust spreads denser than the typical "
                f"{consensus['particle'].iloc[i]} box (a bead or contamination): rejected"
            )
    if empty is not None:
        mask, contrast, levels = empty
        for i in np.flatnonzero(mask.to_numpy()):
            level, cut = levels[str(consensus["particle"].iloc[i])]
            own[i] = (
                f"image: an empty box, {contrast.iloc[i]:.1f} robust spreads above empty "
                f"background (below {cut:.1f}; the class's well-supported candidates: "
                f"{level:.1f}): a noise peak, rejected"
            )
    out["reason"] = [
        (f"{head}, but a trusted reference decides: {'accepted' if ok else 'rejected'}; {base}")
        if f
        else f"{head}; {base}"
        for head, base, f, ok in zip(
            own, out["vote_reason"].tolist(), forced.tolist(), accepted.tolist(), strict=True
        )
    ]

    if images is not None:
        keys = consensus["particle"].astype(str).to_numpy()
        masks = {"image_vetoed": veto} | ({} if empty is None else {"image_empty": empty[0]})
        for column, mask in masks.items():
            counts = mask.groupby(keys).sum()
            classes[column] = (
                classes["particle"].astype(str).map(counts).fillna(0).astype(int).to_numpy()
            )
    notes = list(fit.warnings) + [f"image veto: {w}" for w in image_notes]
    notes += _unreached(classes, objective)
    rules: dict[str, str] = {}
    if not len(fit.group_names) or not fit.eligible.any():
        return LatentDecision(out, pickers, classes, rules, notes, fit, objective)
    for k, name in enumerate(fit.group_names):
        if not fit.fitted[k]:
            continue
        try:
            rules[str(name)] = implied_support_rule(fit, name, beta=objective).text
        except PicksError as exc:  # a report (too many pickers to list), never a failure
            rules[str(name)] = f"(not shown: {exc})"
    return LatentDecision(out, pickers, classes, rules, notes, fit, objective)


def _unreached(classes: pd.DataFrame, objective: Objective) -> list[str]:
    """One warning per class whose recall or precision target no set of candidates reaches."""
    out = []
    for row in classes[~classes["reached"].astype(bool)].to_dict("records"):
        name = "none" if row["particle"] is None else row["particle"]
        if objective.kind == "recall":
            missed = row["expected_missed"]
            why = (
                f" (about {missed:.1f} particles no picker reported)" if np.isfinite(missed) else ""
            )
            out.append(
                f"{name}: {objective} is out of reach: accepting all {row['n_candidates']} "
                f"candidates gives an expected recall of {row['expected_recall']:.3f}{why}; "
                "all accepted"
            )
        else:
            out.append(
                f"{name}: {objective} is out of reach: even its most probable candidates "
                "have a lower expected precision; none accepted"
            )
    return out


def _image_veto(
    consensus: pd.DataFrame,
    images: pd.DataFrame,
    posterior: pd.Series,
    radii: Mapping[object, float] | None = None,
) -> tuple[pd.Series, pd.DataFrame, list[str]]:
    """The density veto against each class's likely particles (see :func:`decide_latent`)."""
    from picks.consensus.image_features import veto_from_statistics

    if not images.index.equals(consensus.index):
        raise PicksError("image statistics must be indexed like the consensus candidates")
    likely = posterior.fillna(0.0).to_numpy(dtype=float) >= 0.5
    sizes = radii
    if sizes is None and "match_distance" in consensus:  # a fixed fraction of the radius
        keys = consensus["particle"].astype(str).to_numpy()
        sizes = consensus["match_distance"].groupby(keys).median().to_dict()
    return veto_from_statistics(images, consensus["particle"], likely, sizes)


def _empty_boxes(
    consensus: pd.DataFrame,
    images: pd.DataFrame,
    background: pd.DataFrame,
    fit,
    vetoed: pd.Series,
) -> tuple[pd.Series, pd.Series, dict[str, tuple[float, float]]]:
    """The empty-box veto (:mod:`picks.consensus.background`): the mask, each candidate's
    contrast against empty background, and per class that applied it (level, cut)."""
    from picks.consensus.background import empty_veto, object_contrast, well_supported

    eligible = np.asarray(fit.eligible, dtype=bool)
    per_class = (
        {name: int(eligible[k].sum()) for k, name in enumerate(fit.group_names)}
        if eligible.ndim == 2
        else {}
    )
    dense = vetoed.to_numpy(dtype=bool)
    reference = well_supported(consensus, per_class) & ~dense
    contrast = object_contrast(images, consensus, background, reference)
    mask, cuts = empty_veto(contrast, consensus["particle"], reference)
    mask = mask & ~dense
    return mask, contrast, cuts


def image_evidence_columns(consensus: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The image statistics as evidence for the fit: ``image_core``, ``image_body``,
    ``image_peak``, each a robust z against all candidates of the class
    (:func:`picks.consensus.image_features.robust_scores`; NaN where a class has too few
    measured candidates or a box is missing: no evidence).

    Unlike the veto (a fixed rule for the extreme), these enter the fit as per-class
    histograms (:mod:`picks.consensus.reliability`), so nothing here says which way a
    particle differs from junk: each class learns it from where the pickers' agreement puts
    its particles. Why it is worth having: the image is evidence that does not come from the
    pickers, so it is not subject to their shared failure modes — on data unlike the pickers'
    training data (the polnet world) the particles' boxes are denser than the junk the
    pickers agree on, and agreement alone cannot see that. Why it is not the default: where a
    class's particles and junk have alike boxes, the extra histograms let EM re-split the
    class along the junk's own heterogeneity (docs/latent.md "Images as evidence"). The z
    (not the raw statistic) makes one set of quantile bins fit every class.
    """
    from picks.consensus.image_features import robust_scores

    z = robust_scores(images, consensus["particle"])
    return z.add_prefix("image_").set_axis(consensus.index)


def temper(posterior: pd.Series, temperature: float) -> pd.Series:
    """``P`` with its log-odds divided by ``temperature`` (NaN stays NaN; 0 and 1 stay put)."""
    if temperature == 1:
        return posterior
    p = posterior.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tempered = expit(logit(p) / temperature)
    return pd.Series(tempered, index=posterior.index, name=posterior.name)
