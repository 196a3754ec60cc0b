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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.special import expit

from picks.core.errors import PicksError

SCORE_BINS = 5
FEATURE_BINS = 6
FEATURE_PRIOR = 20.0  # pseudo-candidates behind each class's feature histograms
DEFAULT_MAX_ITER = 2000  # slow near a flat junk direction; ~1 s on a 3-tomogram run
DEFAULT_TOL = 1e-5  # largest change of any posterior between iterations
DEFAULT_PRIOR_STRENGTH = 2.0
AGNOSTIC = "*"  # the group of every candidate when clustering is class-agnostic
_CLIP = 1e-9
_INIT_HIGH = 0.85


@dataclass
class LatentFit:
    """The fitted model. Arrays over groups are indexed like :attr:`group_names`; arrays over
    pickers like :attr:`picker_names`; per-candidate arrays follow the input rows."""

    posterior: np.ndarray  # (n,) P(particle | everything given); NaN for rows not fitted
    agreement_posterior: np.ndarray  # (n,) P(particle | detection pattern only)
    groups: np.ndarray  # (n,) group code of every candidate
    group_names: list
    picker_names: list
    eligible: np.ndarray  # (G, m)
    fitted: np.ndarray  # (G,) the group was fitted (≥ 2 eligible pickers)
    n_candidates: np.ndarray  # (G,)
    prevalence: np.ndarray  # (G,) fraction of candidates that are particles
    expected_particles: np.ndarray  # (G,) Σ posterior over the group's candidates
    expected_missed: np.ndarray  # (G,) particles no picker reported (NaN: not identifiable)
    recall: np.ndarray  # (G, m) s = P(reports | particle); NaN where not eligible / unknown
    false_rate: np.ndarray  # (G, m) P(reports | junk candidate), seen-conditional
    precision: np.ndarray  # (G, m) P(particle | picker reported it)
    n_reported: np.ndarray  # (G, m)
    detection_rate: np.ndarray = field(repr=False)  # (G, m) s as fitted (model parameter)
    junk_rate: np.ndarray = field(repr=False)  # (G, m) f as fitted (untruncated parameter)
    log_prior_odds: np.ndarray = field(repr=False)  # (G,) log π/(1−π)
    log_likelihood: float = 0.0
    iterations: int = 0
    converged: bool = True
    init: str = ""
    warnings: list[str] = field(default_factory=list)

    def group_index(self, group: object) -> int:
        for k, name in enumerate(self.group_names):
            if name == group or (_is_missing(name) and _is_missing(group)):
                return k
        raise PicksError(
            f"class {group!r} is not in the fit ({', '.join(map(str, self.group_names))})"
        )

    def picker_table(self) -> pd.DataFrame:
        """One row per eligible (picker, class): n_reported, recall, false_rate, precision."""
        rows = []
        for g, name in enumerate(self.group_names):
            for j, picker in enumerate(self.picker_names):
                if not self.eligible[g, j]:
                    continue
                rows.append(
                    {
                        "picker": picker,
                        "particle": name,
                        "n_reported": int(self.n_reported[g, j]),
                        "recall": float(self.recall[g, j]),
                        "false_rate": float(self.false_rate[g, j]),
                        "precision": float(self.precision[g, j]),
                    }
                )
        columns = ["picker", "particle", "n_reported", "recall", "false_rate", "precision"]
        return pd.DataFrame(rows, columns=columns)

    def group_table(self) -> pd.DataFrame:
        """One row per class: candidates, prevalence, expected particles found and missed."""
        return pd.DataFrame(
            {
                "particle": list(self.group_names),
                "n_candidates": self.n_candidates.astype(int),
                "n_pickers": self.eligible.sum(axis=1).astype(int),
                "fitted": self.fitted,
                "prevalence": self.prevalence,
                "expected_particles": self.expected_particles,
                "expected_missed": self.expected_missed,
            }
        )


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


# ---------------------------------------------------------------------------------------------
# the core model on arrays
# ---------------------------------------------------------------------------------------------


def _score_bins(scores: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Bin index of every (candidate, picker) score in (0, 1]; -1 where absent."""
    valid = np.isfinite(scores) & detected
    clipped = np.clip(np.where(valid, scores, 0.5), 0.0, 1.0)
    bins = np.minimum(np.ceil(clipped * SCORE_BINS).astype(np.int64) - 1, SCORE_BINS - 1)
    bins = np.maximum(bins, 0)
    return np.where(valid, bins, -1)


def _feature_bins(features: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes per feature column (-1 = NaN) and the number of bins of each column.

    A column with at most ``n_bins`` distinct values keeps them (a count feature stays exact);
    otherwise its quantiles make the edges, so the bins hold similar numbers of candidates.
    """
    n, n_features = features.shape
    codes = np.full((n, n_features), -1, dtype=np.int64)
    sizes = np.ones(n_features, dtype=np.int64)
    for c in range(n_features):
        column = features[:, c]
        valid = np.isfinite(column)
        if not valid.any():
            continue
        distinct = np.unique(column[valid])
        if len(distinct) <= n_bins:
            codes[valid, c] = np.searchsorted(distinct, column[valid])
            sizes[c] = len(distinct)
        else:
            edges = np.unique(np.quantile(column[valid], np.linspace(0, 1, n_bins + 1)[1:-1]))
            codes[valid, c] = np.searchsorted(edges, column[valid], side="right")
            sizes[c] = len(edges) + 1
    return codes, sizes


@dataclass
class _Params:
    pi: np.ndarray  # (G,)
    s: np.ndarray  # (G, m)
    f: np.ndarray  # (G, m)
    h1: np.ndarray  # (G, m, K) score histograms
    h0: np.ndarray
    q1: np.ndarray  # (G, F, B) feature histograms
    q0: np.ndarray


class _Model:
    """Arrays shared by the EM steps: the distinct rows and how many candidates each is."""

    def __init__(
        self,
        detected: np.ndarray,
        groups: np.ndarray,
        eligible: np.ndarray,
        score_bins: np.ndarray | None,
        feature_codes: np.ndarray | None,
        feature_sizes: np.ndarray | None,
        prior_strength: float,
        fallback_pi: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        self.d = detected.astype(float)
        self.c = counts.astype(float)  # how many candidates each (unique) row stands for
        self.g = groups
        self.eligible = eligible
        self.n_groups, self.m = eligible.shape
        self.e = eligible[groups].astype(float)  # (n, m)
        self.n_g = np.bincount(groups, weights=self.c, minlength=self.n_groups)
        self.fitted = eligible.sum(axis=1) >= 2
        self.kappa = prior_strength
        self.fallback_pi = fallback_pi
        self.score_bins = score_bins
        self.has_scores = score_bins is not None and bool((score_bins >= 0).any())
        self.codes = feature_codes
        self.sizes = feature_sizes
        self.has_features = feature_codes is not None and feature_codes.shape[1] > 0
        self.n_bins_max = int(feature_sizes.max()) if self.has_features else 1
        # Flat indices into the (G, m, K) score and (G, F, B) feature histograms, computed
        # once: the E-step gathers with them every iteration.
        if self.has_scores:
            valid = score_bins >= 0
            self.score_valid = valid
            self.score_index = np.where(
                valid, (groups[:, None] * self.m + np.arange(self.m)) * SCORE_BINS + score_bins, 0
            )
        if self.has_features:
            nf = feature_codes.shape[1]
            valid = feature_codes >= 0
            self.feature_valid = valid
            self.feature_index = np.where(
                valid, (groups[:, None] * nf + np.arange(nf)) * self.n_bins_max + feature_codes, 0
            )

    # -- E-step --------------------------------------------------------------------------
    def log_terms(self, p: _Params, *, evidence: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: log P(data | z=1, seen), log P(data | z=0, seen)."""
        g = self.g
        ls, l1s = np.log(p.s), np.log1p(-p.s)
        lf, l1f = np.log(p.f), np.log1p(-p.f)
        elig = self.eligible.astype(float)
        log_p0_1 = (elig * l1s).sum(axis=1)
        log_p0_0 = (elig * l1f).sum(axis=1)
        l1 = (self.e * (self.d * ls[g] + (1 - self.d) * l1s[g])).sum(axis=1)
        l0 = (self.e * (self.d * lf[g] + (1 - self.d) * l1f[g])).sum(axis=1)
        l1 -= _log1mexp(log_p0_1)[g]
        l0 -= _log1mexp(log_p0_0)[g]
        # A class with one eligible picker: every candidate has the same pattern, so the
        # pattern says nothing (both terms are log 1 = 0 exactly; enforce it against rounding).
        single = ~self.fitted[g]
        l1[single] = 0.0
        l0[single] = 0.0
        if evidence and self.has_scores:
            index, valid = self.score_index, self.score_valid
            l1 += np.where(valid, np.log(p.h1.ravel())[index], 0.0).sum(axis=1)
            l0 += np.where(valid, np.log(p.h0.ravel())[index], 0.0).sum(axis=1)
        if evidence and self.has_features:
            index, valid = self.feature_index, self.feature_valid
            l1 += np.where(valid, np.log(p.q1.ravel())[index], 0.0).sum(axis=1)
            l0 += np.where(valid, np.log(p.q0.ravel())[index], 0.0).sum(axis=1)
        return l1, l0

    def posterior(self, p: _Params, *, evidence: bool = True) -> tuple[np.ndarray, float]:
        l1, l0 = self.log_terms(p, evidence=evidence)
        lp = np.log(p.pi)[self.g] + l1
        ln = np.log1p(-p.pi)[self.g] + l0
        return expit(lp - ln), float((self.c * np.logaddexp(lp, ln)).sum())

    # -- M-step --------------------------------------------------------------------------
    def m_step(self, w: np.ndarray, old: _Params | None) -> _Params:
        G, m, g = self.n_groups, self.m, self.g
        elig = self.eligible
        wc, uc = w * self.c, (1 - w) * self.c
        n1 = np.bincount(g, weights=wc, minlength=G)
        n0 = self.n_g - n1
        a1 = _group_sum(g, wc[:, None] * self.d, G)  # (G, m) weighted reports
        a0 = _group_sum(g, uc[:, None] * self.d, G)
        if old is None:
            m1 = np.zeros(G)
            m0 = np.zeros(G)
        else:
            m1 = n1 * _unseen_ratio(old.s, elig)
            m0 = n0 * _unseen_ratio(old.f, elig)
        fit = self.fitted[:, None] & elig
        s = _shrunk_rates(a1, (n1 + m1)[:, None] * np.ones((1, m)), fit, self.kappa)
        f = _shrunk_rates(a0, (n0 + m0)[:, None] * np.ones((1, m)), fit, self.kappa)
        pi = (n1 + 1.0) / (self.n_g + 2.0)
        pi = np.where(self.fitted, pi, self.fallback_pi)
        k = SCORE_BINS
        if self.has_scores:
            valid = self.score_valid
            idx = self.score_index[valid]
            w_rep = np.broadcast_to(wc[:, None], valid.shape)[valid]
            u_rep = np.broadcast_to(uc[:, None], valid.shape)[valid]
            c1 = np.bincount(idx, weights=w_rep, minlength=G * m * k).reshape(G, m, k)
            c0 = np.bincount(idx, weights=u_rep, minlength=G * m * k).reshape(G, m, k)
            h1 = _shrunk_histograms(c1, self.fitted, float(k))
            h0 = _shrunk_histograms(c0, self.fitted, float(k))
        else:
            h1 = h0 = np.full((G, m, k), 1.0 / k)
        if self.has_features:
            nf, nb = self.codes.shape[1], self.n_bins_max
            valid = self.feature_valid
            idx = self.feature_index[valid]
            w_rep = np.broadcast_to(wc[:, None], valid.shape)[valid]
            u_rep = np.broadcast_to(uc[:, None], valid.shape)[valid]
            c1 = np.bincount(idx, weights=w_rep, minlength=G * nf * nb).reshape(G, nf, nb)
            c0 = np.bincount(idx, weights=u_rep, minlength=G * nf * nb).reshape(G, nf, nb)
            used = np.arange(nb)[None, :] < self.sizes[:, None]  # (F, B)
            q1 = _feature_histograms(c1, c1 + c0, self.fitted, used)
            q0 = _feature_histograms(c0, c1 + c0, self.fitted, used)
        else:
            q1 = q0 = np.ones((G, 0, 1))
        return _Params(pi, s, f, h1, h0, q1, q0)


def _group_sum(g: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.zeros((n_groups, values.shape[1]))
    np.add.at(out, g, values)
    return out


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 − exp(x)) for x ≤ 0, accurate near 0; −inf-safe."""
    x = np.minimum(x, -1e-300)
    return np.where(x > -0.693, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _unseen_ratio(rates: np.ndarray, elig: np.ndarray) -> np.ndarray:
    """P0 / (1 − P0) per group: unseen members per seen member (P0 = all eligible miss)."""
    log_p0 = (elig * np.log1p(-rates)).sum(axis=1)
    with np.errstate(over="ignore"):
        return np.exp(log_p0 - _log1mexp(log_p0))


def _shrunk_rates(
    hits: np.ndarray, trials: np.ndarray, fit: np.ndarray, kappa: float
) -> np.ndarray:
    """Per (group, picker) rate shrunk towards the picker's pooled rate (Beta(1, 1) on it).

    Groups that are not fitted (one eligible picker) take the pooled rate itself.
    """
    pooled = ((hits * fit).sum(axis=0) + 1.0) / ((trials * fit).sum(axis=0) + 2.0)  # (m,)
    rate = (hits + kappa * pooled) / (trials + kappa)
    rate = np.where(fit, rate, pooled[None, :])
    return np.clip(rate, _CLIP, 1 - _CLIP)


def _shrunk_histograms(
    counts: np.ndarray, fitted: np.ndarray, kappa: float, used: np.ndarray | None = None
) -> np.ndarray:
    """Histograms (G, A, K) shrunk towards the pooled one of each A (Laplace on the pooled)."""
    used = np.ones(counts.shape[1:], dtype=bool) if used is None else used
    fit_counts = counts * fitted[:, None, None]
    pooled = fit_counts.sum(axis=0) + used  # (A, K)
    pooled = np.where(used, pooled, 0.0)
    pooled /= pooled.sum(axis=1, keepdims=True)
    hist = (counts + kappa * pooled[None]) / (counts.sum(axis=2, keepdims=True) + kappa)
    hist = np.where(fitted[:, None, None], hist, pooled[None])
    return np.where(used[None], np.maximum(hist, _CLIP), 1.0)


def _feature_histograms(
    counts: np.ndarray, marginal: np.ndarray, fitted: np.ndarray, used: np.ndarray
) -> np.ndarray:
    """Feature histograms (G, F, B) shrunk towards the class's own marginal histogram.

    Unlike scores (percentile ranks of one picker, comparable across classes), a feature can
    point different ways in different classes — a cross-class conflict marks junk among small
    classes but true virus-like particles, whose insides other pickers call smaller classes —
    so the prior is "no information" (the same histogram for particles and junk), and a class
    must show :data:`FEATURE_PRIOR` candidates' worth of evidence before a feature moves its
    posteriors much. Unfitted classes get no feature information at all.
    """
    prior = np.where(used[None], marginal + 1.0, 0.0)
    prior /= prior.sum(axis=2, keepdims=True)
    hist = (counts + FEATURE_PRIOR * prior) / (counts.sum(axis=2, keepdims=True) + FEATURE_PRIOR)
    hist = np.where(fitted[:, None, None], hist, prior)
    return np.where(used[None], np.maximum(hist, _CLIP), 1.0)


def fit_latent(
    detected: np.ndarray,
    groups: np.ndarray,
    eligible: np.ndarray,
    scores: np.ndarray | None = None,
    features: np.ndarray | None = None,
    *,
    group_names: Sequence | None = None,
    picker_names: Sequence | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    seed: int = 0,
) -> LatentFit:
    """Fit the latent-class model (see the module docstring).

    ``detected[i, j]``: picker ``j`` reported candidate ``i``; ``groups[i]``: its class code
    (0 ≤ code < ``len(eligible)``); ``eligible[g, j]``: picker ``j`` reports class ``g`` at
    all. ``scores`` (n, m): percentile ranks in (0, 1], NaN where absent; ``features`` (n, f):
    any numbers, NaN where absent. ``seed`` is accepted for interface stability: every
    initialisation is deterministic, so it does not change the result.
    """
    del seed  # deterministic initialisations; nothing random
    detected = np.asarray(detected, dtype=bool)
    groups = np.asarray(groups, dtype=np.int64)
    eligible = np.asarray(eligible, dtype=bool)
    if detected.ndim != 2:
        raise PicksError(
            f"detected must be a 2-D array (candidates × pickers), got {detected.shape}"
        )
    n, m = detected.shape
    if eligible.ndim != 2 or eligible.shape[1] != m:
        raise PicksError(f"eligible must be (classes × {m} pickers), got {eligible.shape}")
    n_groups = eligible.shape[0]
    if groups.shape != (n,):
        raise PicksError(f"groups must have one code per candidate ({n}), got {groups.shape}")
    if n and (groups.min() < 0 or groups.max() >= n_groups):
        raise PicksError(f"group codes must lie in 0..{n_groups - 1}")
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (n, m):
            raise PicksError(f"scores must be ({n}, {m}), got {scores.shape}")
        finite = scores[np.isfinite(scores)]
        if len(finite) and (finite.min() < 0 or finite.max() > 1):
            raise PicksError("scores must be percentile ranks in (0, 1] (NaN where absent)")
    if features is not None:
        features = np.asarray(features, dtype=float)
        if features.ndim == 1:
            features = features[:, None]
        if features.shape[0] != n:
            raise PicksError(f"features must have {n} rows, got {features.shape[0]}")
    group_names = list(group_names) if group_names is not None else list(range(n_groups))
    picker_names = list(picker_names) if picker_names is not None else list(range(m))
    warnings: list[str] = []

    # Rows without a report from an eligible picker cannot come from this model.
    counted = (detected & eligible[groups]).any(axis=1) if n else np.zeros(0, dtype=bool)
    if n and not counted.all():
        warnings.append(
            f"{int((~counted).sum())} candidate(s) have no report from a picker of their class; "
            "they were left out of the fit (posterior NaN)"
        )
    rows = np.flatnonzero(counted)
    d_rows, g_rows = detected[rows], groups[rows]
    n_elig = eligible.sum(axis=1)
    n_g = np.bincount(g_rows, minlength=n_groups)
    for k in range(n_groups):
        if n_g[k] == 0:
            continue
        name = group_names[k]
        if n_elig[k] == 1:
            only = picker_names[int(np.flatnonzero(eligible[k])[0])]
            warnings.append(
                f"class {name}: only picker {only} reports it, so agreement cannot judge its "
                f"{n_g[k]} candidate(s); P(particle) is {only}'s estimated precision on the "
                "other classes (0.5 if none) and its recall is unknown"
            )
        elif n_elig[k] <= 3:
            warnings.append(
                f"class {name}: {n_elig[k]} pickers report it; agreement among so few does not "
                "identify every rate, the estimates lean on the rates pooled over classes"
                + (" and the scores" if scores is not None else "")
            )
        if n_g[k] < 10:
            warnings.append(f"class {name}: only {n_g[k]} candidate(s); estimates are rough")

    sb_rows = _score_bins(scores[rows], d_rows) if scores is not None else None
    if features is not None and features.shape[1]:
        codes_rows, sizes = _feature_bins(features[rows], FEATURE_BINS)
    else:
        codes_rows = sizes = None
    # Every candidate is described by discrete codes (class, pattern, score bins, feature
    # bins), so EM runs on the distinct rows with their counts: exact, much faster on large
    # runs, and independent of the input order (np.unique sorts the rows).
    keys = [g_rows[:, None], d_rows.astype(np.int64)]
    if sb_rows is not None:
        keys.append(sb_rows)
    if codes_rows is not None:
        keys.append(codes_rows)
    table = np.concatenate(keys, axis=1) if len(rows) else np.zeros((0, 1 + m), np.int64)
    unique, inverse, counts = np.unique(table, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    g = unique[:, 0]
    d = unique[:, 1 : 1 + m].astype(bool)
    sb = unique[:, 1 + m : 1 + 2 * m] if sb_rows is not None else None
    codes = (
        unique[:, 1 + (2 if sb_rows is not None else 1) * m :] if codes_rows is not None else None
    )

    fallback_pi = np.full(n_groups, 0.5)
    # Stage 1: agreement only, from several initialisations (the detection pattern is what
    # identifies which component is "particle"). Stage 2: all the evidence, started from the
    # stage-1 posteriors, so scores and features refine that split instead of finding another
    # one (a mixture over many histograms can otherwise split the particles by score).
    # Stage 1 runs on the distinct (class, pattern) rows: far fewer than with score bins.
    pattern_rows, to_pattern = np.unique(unique[:, : 1 + m], axis=0, return_inverse=True)
    to_pattern = to_pattern.reshape(-1)
    pattern_counts = np.bincount(to_pattern, weights=counts, minlength=len(pattern_rows))
    agree = _Model(
        pattern_rows[:, 1:].astype(bool),
        pattern_rows[:, 0],
        eligible,
        None,
        None,
        None,
        prior_strength,
        fallback_pi,
        pattern_counts,
    )
    model = _Model(d, g, eligible, sb, codes, sizes, prior_strength, fallback_pi, counts)
    best: tuple | None = None
    for name, init in _initialisations(d, g, eligible, sb):
        if len(g) == 0:
            break
        init = np.bincount(to_pattern, weights=init * counts) / pattern_counts
        result = _guarded_em(agree, init, max_iter, tol, group_names)
        if best is None or result[1] > best[1] + 1e-9 * abs(best[1]):
            best = (*result[:4], name + result[4])
    if best is None:
        return _empty_fit(n, groups, eligible, group_names, picker_names, warnings)
    if model.has_scores or model.has_features:
        w_agree = agree.posterior(best[0])[0][to_pattern]
        result = _guarded_em(model, w_agree, max_iter, tol, group_names, anchor=w_agree)
        best = (*result[:4], best[4] + ", then all evidence" + result[4])
    params, loglik, iterations, converged, init_name = best
    if not converged:
        warnings.append(f"EM did not converge in {max_iter} iterations (kept the last estimate)")

    # Single-picker classes: P(particle) = the picker's precision where others check it.
    if (~model.fitted & (n_g > 0)).any():
        post_fit, _ = model.posterior(params)
        prec = _precision(post_fit, d, g, eligible, n_groups, model.c)
        reported = _group_sum(g, model.c[:, None] * d, n_groups)
        for k in np.flatnonzero(~model.fitted & (n_g > 0)):
            j = int(np.flatnonzero(eligible[k])[0]) if n_elig[k] else -1
            others = model.fitted & eligible[:, j] & (n_g > 0) if j >= 0 else model.fitted & False
            weights = reported[others, j] if j >= 0 else None
            if j >= 0 and others.any() and weights.sum() > 0:
                fallback_pi[k] = float(np.average(prec[others, j], weights=weights))
        fallback_pi = np.clip(fallback_pi, 0.01, 0.99)
        model.fallback_pi = fallback_pi
        params.pi = np.where(model.fitted, params.pi, fallback_pi)

    post_sorted, loglik = model.posterior(params)
    agree_sorted, _ = model.posterior(params, evidence=False)

    posterior = np.full(n, np.nan)
    agreement = np.full(n, np.nan)
    posterior[rows] = post_sorted[inverse]
    agreement[rows] = agree_sorted[inverse]
    return _summarise(
        params,
        model,
        post_sorted,
        d,
        g,
        groups,
        posterior,
        agreement,
        group_names,
        picker_names,
        loglik,
        iterations,
        converged,
        init_name,
        warnings,
    )


def _guarded_em(
    model: _Model,
    w: np.ndarray,
    max_iter: int,
    tol: float,
    names: list,
    anchor: np.ndarray | None = None,
) -> tuple[_Params, float, int, bool, str]:
    """EM, then the label guard; a class found the wrong way round is swapped and refitted.

    With ``anchor`` (the agreement-only posteriors) the guard is instead: a class is swapped
    when its candidates that agreement called particles now score lower on average than the
    rest (stage 2 keeps stage 1's orientation).
    """
    result = _run_em(model, w, max_iter, tol)
    note = ""
    for _ in range(3):  # refit after a swap, then look again (at most three rounds)
        w = model.posterior(result[0])[0]
        # stage 2 keeps the orientation stage 1 chose; stage 1 compares classes
        swap = (
            _label_guard(model, result[0], w)
            if anchor is None
            else _anchor_flipped(model, w, anchor)
        )
        if not swap.any():
            break
        note += " (swapped " + ", ".join(str(names[k]) for k in np.flatnonzero(swap)) + ")"
        w = np.where(swap[model.g], 1 - w, w)
        result = _run_em(model, w, max_iter, tol)
    return (*result, note)


def _anchor_flipped(model: _Model, w: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    G, g = model.n_groups, model.g
    hi = (anchor > 0.5) * model.c
    lo = (anchor <= 0.5) * model.c
    n_hi = np.bincount(g, weights=hi, minlength=G)
    n_lo = np.bincount(g, weights=lo, minlength=G)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_hi = np.bincount(g, weights=w * hi, minlength=G) / n_hi
        mean_lo = np.bincount(g, weights=w * lo, minlength=G) / n_lo
    return model.fitted & (n_hi > 0) & (n_lo > 0) & (mean_hi < mean_lo)


def _initialisations(
    d: np.ndarray, g: np.ndarray, eligible: np.ndarray, score_bins: np.ndarray | None
) -> list[tuple[str, np.ndarray]]:
    support = (d & eligible[g]).sum(axis=1)
    n_elig = eligible.sum(axis=1)[g]
    inits = [
        ("support ≥ majority", support > n_elig / 2.0),
        ("support ≥ 2", support >= np.minimum(2, n_elig)),
    ]
    if score_bins is not None and (score_bins >= 0).any():
        valid = score_bins >= 0
        mean_bin = np.where(valid, score_bins, 0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        inits.append(("score in the upper half", mean_bin >= (SCORE_BINS - 1) / 2.0))
    out = []
    seen: set[bytes] = set()
    for name, rule in inits:
        key = np.packbits(rule).tobytes()
        if key in seen:
            continue
        seen.add(key)
        out.append((name, np.where(rule, _INIT_HIGH, 1 - _INIT_HIGH)))
    return out


def _run_em(
    model: _Model, w: np.ndarray, max_iter: int, tol: float
) -> tuple[_Params, float, int, bool]:
    params = model.m_step(w, None)
    loglik = -np.inf
    for iteration in range(1, max_iter + 1):
        new_w, loglik = model.posterior(params)
        params = model.m_step(new_w, params)
        change = float(np.max(np.abs(new_w - w))) if len(w) else 0.0
        w = new_w
        if change < tol:
            _, loglik = model.posterior(params)
            return params, loglik, iteration, True
    _, loglik = model.posterior(params)
    return params, loglik, max_iter, False


def _label_guard(model: _Model, params: _Params, w: np.ndarray) -> np.ndarray:
    """Classes whose components are the wrong way round (True = swap them).

    EM's two components are symmetric, so which one is "particle" is decided outside the
    likelihood, in two steps:

    1. *Relative*: a picker's gap (its report rate among a component's seen members, particle
       minus junk) has the same sign in most classes — a picker that finds ribosomes also
       finds apo-ferritin more often than it fires on junk — so the classes are oriented
       against each other by the orientation (±1 per class) that maximises
       Σ o_k o_l ⟨gap_k, gap_l⟩ (sign synchronisation, one vote per class whatever its size).
    2. *Global* (and the only step for a class that shares no picker information with the
       others, e.g. a run of one class): most junk locations are reported by no picker at all,
       most particles by some, so the junk component is the one with the larger all-miss
       probability P0 (the truncation); one vote per class. "Particles are reported by more
       pickers" is not used for this: junk that several pickers share (beads, blobs) breaks it
       in small classes.
    """
    G, g, elig = model.n_groups, model.g, model.eligible
    fit = model.fitted[:, None] & elig
    wc, uc = w * model.c, (1 - w) * model.c
    n1 = np.bincount(g, weights=wc, minlength=G)
    n0 = model.n_g - n1
    a1 = _group_sum(g, wc[:, None] * model.d, G)
    a0 = _group_sum(g, uc[:, None] * model.d, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate1 = np.where(n1[:, None] > 0, a1 / n1[:, None], 0.0)
        rate0 = np.where(n0[:, None] > 0, a0 / n0[:, None], 0.0)
    gap = np.where(fit, rate1 - rate0, 0.0)
    swap = np.zeros(G, dtype=bool)
    classes = np.flatnonzero(model.fitted & (model.n_g > 0))
    if not len(classes):
        return swap
    log_p0_particle = (elig * np.log1p(-params.s)).sum(axis=1)[classes]
    log_p0_junk = (elig * np.log1p(-params.f)).sum(axis=1)[classes]
    unseen = log_p0_junk - log_p0_particle  # > 0: the junk component is the more unseen
    own = np.where(
        np.abs(unseen) > 1e-9, np.sign(unseen), np.where(gap[classes].sum(axis=1) < 0, -1, 1)
    ).astype(int)
    orientation = _synchronise(gap[classes] @ gap[classes].T, own)
    if float((orientation * own).sum()) < 0:
        orientation = -orientation
    swap[classes] = orientation < 0
    return swap


MAX_EXHAUSTIVE = 12  # classes oriented by trying every combination; more: greedy flips


def _synchronise(agreement: np.ndarray, own: np.ndarray) -> np.ndarray:
    """±1 per class maximising Σ_{k≠l} o_k o_l A_kl; a class that shares no information
    with the others keeps its own sign. Deterministic (ties: the first combination)."""
    a = agreement.copy()
    np.fill_diagonal(a, 0.0)
    linked = np.abs(a).sum(axis=1) > 1e-12
    out = own.copy()
    idx = np.flatnonzero(linked)
    if len(idx) < 2:
        return out
    sub = a[np.ix_(idx, idx)]
    if len(idx) <= MAX_EXHAUSTIVE:
        # the first class fixed at +1 (the global sign is decided afterwards)
        bits = (np.arange(2 ** (len(idx) - 1))[:, None] >> np.arange(len(idx) - 1)) & 1
        combos = np.hstack([np.ones((len(bits), 1)), 1 - 2 * bits])
        value = np.einsum("ck,kl,cl->c", combos, sub, combos)
        best = combos[int(np.argmax(value))]
    else:
        best = own[idx].astype(float)
        improved = True
        while improved:
            improved = False
            for k in range(len(idx)):
                if best[k] * (sub[k] @ best) < -1e-12:
                    best[k] = -best[k]
                    improved = True
    out[idx] = best.astype(int)
    return out


def _precision(
    post: np.ndarray,
    d: np.ndarray,
    g: np.ndarray,
    eligible: np.ndarray,
    n_groups: int,
    counts: np.ndarray,
) -> np.ndarray:
    reported = _group_sum(g, counts[:, None] * d, n_groups)
    true_reported = _group_sum(g, (counts * post)[:, None] * d, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = true_reported / reported
    return np.where(eligible & (reported > 0), prec, np.nan)


def _summarise(
    params: _Params,
    model: _Model,
    post_sorted: np.ndarray,
    d: np.ndarray,
    g: np.ndarray,
    groups_in: np.ndarray,
    posterior: np.ndarray,
    agreement: np.ndarray,
    group_names: list,
    picker_names: list,
    loglik: float,
    iterations: int,
    converged: bool,
    init_name: str,
    warnings: list[str],
) -> LatentFit:
    G = model.n_groups
    eligible, fitted = model.eligible, model.fitted
    n_g = model.n_g
    expected = np.bincount(g, weights=model.c * post_sorted, minlength=G)
    missed = expected * _unseen_ratio(params.s, eligible)
    missed = np.where(fitted, missed, np.nan)
    recall = np.where(eligible & fitted[:, None], params.s, np.nan)
    # seen-conditional junk report rate: P(j reports | junk candidate)
    p0_0 = np.exp((eligible * np.log1p(-params.f)).sum(axis=1))
    false_rate = params.f / (1 - p0_0)[:, None]
    false_rate = np.where(eligible & fitted[:, None], np.clip(false_rate, 0, 1), np.nan)
    return LatentFit(
        posterior=posterior,
        agreement_posterior=agreement,
        groups=groups_in,
        group_names=group_names,
        picker_names=picker_names,
        eligible=eligible,
        fitted=fitted & (n_g > 0),
        n_candidates=n_g,
        prevalence=np.where(n_g > 0, expected / np.maximum(n_g, 1), np.nan),
        expected_particles=expected,
        expected_missed=missed,
        recall=recall,
        false_rate=false_rate,
        precision=_precision(post_sorted, d, g, eligible, G, model.c),
        n_reported=np.rint(_group_sum(g, model.c[:, None] * d, G)).astype(int) * eligible,
        detection_rate=params.s,
        junk_rate=params.f,
        log_prior_odds=np.log(params.pi) - np.log1p(-params.pi),
        log_likelihood=loglik,
        iterations=iterations,
        converged=converged,
        init=init_name,
        warnings=warnings,
    )


def _empty_fit(
    n: int,
    groups: np.ndarray,
    eligible: np.ndarray,
    group_names: list,
    picker_names: list,
    warnings: list[str],
) -> LatentFit:
    G, m = eligible.shape
    warnings.append("no candidates to fit")
    nan_gm = np.full((G, m), np.nan)
    return LatentFit(
        posterior=np.full(n, np.nan),
        agreement_posterior=np.full(n, np.nan),
        groups=groups,
        group_names=group_names,
        picker_names=picker_names,
        eligible=eligible,
        fitted=np.zeros(G, dtype=bool),
        n_candidates=np.zeros(G),
        prevalence=np.full(G, np.nan),
        expected_particles=np.zeros(G),
        expected_missed=np.full(G, np.nan),
        recall=nan_gm,
        false_rate=nan_gm.copy(),
        precision=nan_gm.copy(),
        n_reported=np.zeros((G, m), dtype=int),
        detection_rate=np.full((G, m), 0.5),
        junk_rate=np.full((G, m), 0.5),
        log_prior_odds=np.zeros(G),
        log_likelihood=0.0,
        iterations=0,
        converged=True,
        init="",
        warnings=warnings,
    )


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
