"""The latent-class model's data: the fitted result (:class:`LatentFit`), the binning of scores
and features, the model (:class:`_Model`: E and M steps on the distinct rows) and its priors.

Split out of :mod:`picks.consensus.reliability` (which documents the model); the EM driver
with its initialisations and label guard is :mod:`picks.consensus.reliability_em`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
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
