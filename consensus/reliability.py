"""Picker reliability without ground truth: a latent-class (Dawid–Skene style) model fitted by EM.

Every consensus candidate exists because at least one picker reported it. Each candidate of
class (group) ``g`` is either a particle of that class (``z = 1``) or junk (``z = 0``): a gold
bead, contamination, a noise peak, a particle of another class. Picker ``j`` reports a
particle with probability ``s_jg`` (its recall) and a junk location with probability ``f_jg``,
independently of the other pickers given ``z`` (the *conditional independence* assumption of
every Dawid–Skene model; pickers that share a failure mode — two that both fire on gold beads —
violate it, and the model then over-trusts their joint reports). Pickers that never report a
class are not *eligible* for it and do not count there.

**Truncation.** A location that no picker reported is never a candidate, so the all-zero
detection pattern is unobservable. The likelihood is therefore the *zero-truncated* one:
``P(pattern | z, seen) = Π_j s^d (1−s)^(1−d) / (1 − Π_j (1 − s))`` (and the same with ``f``).
EM treats the unseen all-zero members of each component as missing data: a component with
``N`` seen members has ``N·P0/(1 − P0)`` expected unseen ones (``P0`` = the all-miss
probability), which enter the recall's denominator. For particles this is the honest number
of **particles every picker missed** (:attr:`LatentFit.expected_missed`), so expected recall
is not inflated by counting only what someone found.

**Optional evidence**, each a class-conditional density multiplied into the likelihood
(independent of the detection pattern given ``z``; again an assumption, not a fact):

* ``scores`` — a picker's own score for its report, as a percentile rank in (0, 1] per picker
  and class (NaN where it did not report the candidate or gave no score). Modelled per
  (picker, class, z) as a :data:`SCORE_BINS`-bin histogram, so a picker's low-score reports
  can count less than its confident ones.
* ``features`` — extra per-candidate columns (a CNN probability, the cross-class conflict
  count of :func:`conflict_counts`), each binned (its distinct values when there are few, else
  quantile bins) and modelled per (class, z) as a histogram. NaN = not available (ignored).

**Priors** keep every rate inside (0, 1) and make small classes borrow strength: a class's
rate is shrunk towards the picker's rate pooled over all classes (``prior_strength``
pseudo-observations), the pooled rate has a Beta(1, 1) prior, score histograms are shrunk
towards the picker's pooled histogram, feature histograms towards the class's own marginal
histogram (:data:`FEATURE_PRIOR` candidates of "no information"), and the prevalence has a
Beta(1, 1) prior. The fit is therefore a maximum-a-posteriori EM.

**Identifiability.** From agreement alone a class needs several pickers: the truncated pattern
table of ``m`` pickers has ``2^m − 2`` free cells for ``2m + 1`` parameters, so ``m ≤ 3`` is
not identified by the counts alone (the pooled priors and scores carry it; a warning says so)
and ``m = 1`` carries no agreement information at all: such a class is *predicted*, not fitted
— its prior P(particle) is the picker's estimated precision on the classes where others check
it, its scores are read with the picker's pooled histograms, and its recall is unknown (NaN).

**Fitting.** Stage 1 fits the detection patterns alone (they are what says which component
is "particle") from several deterministic initialisations — posterior 0.85/0.15 from "support
≥ majority of the eligible pickers", from "support ≥ 2", and from the better-scoring half when
scores are given — and keeps the highest log-likelihood. Stage 2 (only with scores or
features) starts from the stage-1 posteriors and adds the evidence, so scores refine that split
rather than find another one. Label-switching guard, after each EM run: the two components are
symmetric in the likelihood, so which one is "particle" is decided from the per-picker report
rates of each component — the classes are oriented relative to each other (a picker's gap,
particle rate − junk rate, has the same sign in most classes: sign synchronisation), then all
together (the junk component is the one with more unseen members: most junk locations are
reported by no picker, most particles by some); in stage 2 a class whose stage-1
particles now score below its stage-1 junk is swapped. A swapped class is refitted.

**Exactness and speed.** Every candidate is described by discrete codes (class, detection
pattern, score bins, feature bins), so EM runs on the distinct rows weighted by their counts:
the same fit as on all rows, independent of the input order, and fast on millions of candidates
(there are rarely more than a few thousand distinct rows).

**Assumptions that fail in practice** (docs/latent.md): conditional independence — faint
particles are missed by all the good pickers together, and aggressive pickers fire on the same
junk — so singletons of a sensitive picker are under-rated and co-reported junk over-rated.

Modules: this one (the entry point :func:`picker_reliability`, :func:`pattern_posterior`,
:func:`conflict_counts`; it re-exports the rest), :mod:`picks.consensus.reliability_model`
(:class:`LatentFit`, binning, the E/M steps and priors) and
:mod:`picks.consensus.reliability_em` (:func:`fit_latent`: initialisations, EM, label guard).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.special import expit

from picks.consensus.reliability_em import _label_guard, fit_latent
from picks.consensus.reliability_model import (
    AGNOSTIC,
    DEFAULT_MAX_ITER,
    DEFAULT_PRIOR_STRENGTH,
    DEFAULT_TOL,
    FEATURE_BINS,
    FEATURE_PRIOR,
    SCORE_BINS,
    LatentFit,
    _is_missing,
    _log1mexp,
    _Model,
)
from picks.core.errors import PicksError

__all__ = [
    "AGNOSTIC",
    "DEFAULT_MAX_ITER",
    "DEFAULT_PRIOR_STRENGTH",
    "DEFAULT_TOL",
    "FEATURE_BINS",
    "FEATURE_PRIOR",
    "SCORE_BINS",
    "LatentFit",
    "_Model",
    "_is_missing",
    "_label_guard",
    "conflict_counts",
    "fit_latent",
    "pattern_posterior",
    "percentile_scores",
    "picker_reliability",
]


def pattern_posterior(fit: LatentFit, group: object, patterns: np.ndarray) -> np.ndarray:
    """P(particle | detection pattern) for ``patterns`` (k, m) bool in class ``group``,
    from the fitted rates and prevalence alone (no scores or features)."""
    k = fit.group_index(group)
    patterns = np.asarray(patterns, dtype=bool)
    elig = fit.eligible[k]
    if elig.sum() <= 1:
        return np.full(len(patterns), float(expit(fit.log_prior_odds[k])))
    s, f = fit.detection_rate[k], fit.junk_rate[k]
    d = patterns.astype(float)
    l1 = (elig * (d * np.log(s) + (1 - d) * np.log1p(-s))).sum(axis=1)
    l0 = (elig * (d * np.log(f) + (1 - d) * np.log1p(-f))).sum(axis=1)
    l1 -= _log1mexp(np.array([(elig * np.log1p(-s)).sum()]))[0]
    l0 -= _log1mexp(np.array([(elig * np.log1p(-f)).sum()]))[0]
    return expit(fit.log_prior_odds[k] + l1 - l0)


# ---------------------------------------------------------------------------------------------
# from cluster output
# ---------------------------------------------------------------------------------------------


def percentile_scores(picks: pd.DataFrame, ids: np.ndarray) -> pd.Series:
    """Percentile rank in (0, 1] of each pick's score among the picks in ``ids`` of the same
    picker and class (ties share the highest rank; no score → NaN), indexed by pick id."""
    frame = picks.set_index("id").loc[ids, ["picker", "particle", "score"]]
    key_particle = frame["particle"].astype(object).where(frame["particle"].notna(), "\0none")
    score = frame["score"].astype(float) if "score" in frame else pd.Series(np.nan, frame.index)
    ranks = score.groupby([frame["picker"].astype(str), key_particle]).rank(method="max", pct=True)
    return ranks


def picker_reliability(
    consensus: pd.DataFrame,
    members: pd.DataFrame,
    picks: pd.DataFrame,
    *,
    class_agnostic: bool = False,
    features: pd.DataFrame | None = None,
    use_scores: bool = True,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    seed: int = 0,
) -> tuple[pd.Series, pd.DataFrame, LatentFit]:
    """Fit the model on the output of :func:`picks.consensus.cluster.cluster`.

    ``picks`` is the pick table that was clustered (``id, picker, particle, score``). A picker
    *detects* a candidate when it has a primary member in it; its score there is the primary's
    score as a percentile rank per picker and class (``use_scores=False`` ignores scores).
    A class's eligible pickers are those that report it anywhere in ``picks`` (as for the
    vote). ``features`` (rows aligned with ``consensus``) are extra evidence columns.

    Returns the posterior P(particle) (indexed like ``consensus``), the per-picker table
    (picker, particle, n_reported, recall, false_rate, precision) and the fit.
    """
    n = len(consensus)
    pickers = sorted(set(picks["picker"].astype(str))) if len(picks) else []
    m = len(pickers)
    if class_agnostic:
        keys = np.full(n, AGNOSTIC, dtype=object)
        group_names: list = [AGNOSTIC]
        eligible = np.ones((1, m), dtype=bool)
    else:
        keys = np.array(
            ["\0none" if _is_missing(p) else str(p) for p in consensus["particle"].astype(object)],
            dtype=object,
        )
        pick_keys = np.array(
            ["\0none" if _is_missing(p) else str(p) for p in picks["particle"].astype(object)],
            dtype=object,
        )
        names = sorted(set(keys.tolist()) | set(pick_keys.tolist()))
        group_names = [None if k == "\0none" else k for k in names]
        code_of = {k: i for i, k in enumerate(names)}
        eligible = np.zeros((len(names), m), dtype=bool)
        picker_code = {k: j for j, k in enumerate(pickers)}
        pk = np.array([picker_code[k] for k in picks["picker"].astype(str)], dtype=np.int64)
        gk = np.array([code_of[k] for k in pick_keys], dtype=np.int64)
        eligible[gk, pk] = True
    code_of = {("\0none" if _is_missing(k) else k): i for i, k in enumerate(group_names)}
    groups = np.array([code_of[k] for k in keys], dtype=np.int64)

    detected = np.zeros((n, m), dtype=bool)
    scores = np.full((n, m), np.nan) if use_scores else None
    primaries = members[members["primary"].astype(bool)]
    if len(primaries):
        # members["consensus"] holds positions in the consensus table (cluster output)
        rows = primaries["consensus"].to_numpy(dtype=np.int64)
        if rows.min() < 0 or rows.max() >= n:
            raise PicksError("members refer to consensus rows beyond the consensus table")
        cols = np.searchsorted(pickers, primaries["picker"].astype(str).to_numpy())
        detected[rows, cols] = True
        if scores is not None and "score" in picks:
            ids = primaries["pick_id"].to_numpy(dtype=np.int64)
            ranks = percentile_scores(picks, ids)
            scores[rows, cols] = ranks.to_numpy(dtype=float)
    feature_array = None
    if features is not None:
        if len(features) != n:
            raise PicksError(f"features have {len(features)} rows, the consensus table {n}")
        feature_array = features.to_numpy(dtype=float)
    fit = fit_latent(
        detected,
        groups,
        eligible,
        scores,
        feature_array,
        group_names=group_names,
        picker_names=pickers,
        max_iter=max_iter,
        tol=tol,
        prior_strength=prior_strength,
        seed=seed,
    )
    posterior = pd.Series(fit.posterior, index=consensus.index, name="posterior")
    return posterior, fit.picker_table(), fit


def conflict_counts(consensus: pd.DataFrame) -> np.ndarray:
    """For each candidate, how many candidates of *other* classes in the same tomogram lie
    within the larger of the two match distances.

    A gold bead that one picker calls ribosome and another apo-ferritin becomes two candidates
    of different classes on one spot; real particles of different classes do not overlap, so a
    conflict is a junk signal. KD-tree per tomogram; O(n log n + pairs).
    """
    n = len(consensus)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    xyz = consensus[["x", "y", "z"]].to_numpy(dtype=float)
    reach = consensus["match_distance"].to_numpy(dtype=float)
    particle = consensus["particle"].astype(object).to_numpy()
    classes = np.array(["\0none" if _is_missing(p) else str(p) for p in particle], dtype=object)
    class_code = pd.factorize(classes, sort=True)[0]
    tomo_code = pd.factorize(consensus["tomogram"].astype(str).to_numpy(), sort=True)[0]
    for t in np.unique(tomo_code):
        idx = np.flatnonzero(tomo_code == t)
        if len(idx) < 2:
            continue
        r = float(np.nanmax(reach[idx]))
        pairs = cKDTree(xyz[idx]).query_pairs(r * (1 + 1e-9) + 1e-9, output_type="ndarray")
        if not len(pairs):
            continue
        a, b = idx[pairs[:, 0]], idx[pairs[:, 1]]
        dist = np.sqrt(((xyz[a] - xyz[b]) ** 2).sum(axis=1))
        keep = (class_code[a] != class_code[b]) & (dist <= np.maximum(reach[a], reach[b]))
        out += np.bincount(a[keep], minlength=n) + np.bincount(b[keep], minlength=n)
    return out
