"""Objective-aware decisions: accept the candidates that maximise the *expected* F-beta.

Given calibrated posteriors ``p_i = P(candidate i is a particle)`` (from
:mod:`picks.consensus.reliability`), accepting a set ``A`` gives ``TP = Σ_{i∈A} z_i`` and
``F = (1 + β²)·TP / (β²·#true + |A|)``. Its expectation has no closed form, so we use the
**ratio of expectations**:

    E[F] ≈ (1 + β²)·E[TP] / (β²·E[#true] + |A|),
    E[TP] = Σ_{i∈A} p_i,   E[#true] = Σ_all p_i + expected_missed,

where ``expected_missed`` is the model's estimate of the particles no picker reported (they
count against recall whatever we accept). The approximation is good when the counts are not
tiny (the ratio's fluctuations are then small relative to its mean); for a handful of
candidates it slightly favours larger sets. For a fixed ``|A| = k`` the best set is the ``k``
most probable candidates, so the search is a sort and a cumulative sum: O(n log n).

Ties in posterior are all-or-none (candidates with the same evidence get the same decision),
and between equally good sets the smaller wins, so the result is deterministic. Since the
objective has increasing differences in (k, β), the accepted set grows with β (Topkis): β = 1
accepts a subset of what β = 4 accepts.

Other objectives (:class:`Objective`) rank the candidates the same way and choose the set
size differently: ``precision@recall=R`` accepts the smallest set whose expected recall
``E[TP] / E[#true]`` reaches R (the most precise set that does: :func:`expected_recall_decision`),
``precision=P`` the largest set whose expected precision ``E[TP] / |A|`` is at least P
(:func:`expected_precision_decision`). Both still report the expected F-beta (β = 4 unless told).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from picks.consensus.reliability import AGNOSTIC, LatentFit, _is_missing, pattern_posterior
from picks.core.errors import PicksError

# Candidates whose posteriors differ by less than this are one tie group: posteriors from
# identical evidence can differ in the last bits after the canonical-order sums.
_TIE = 1e-12


@dataclass
class Decision:
    """The accepted set of one class and its expected quality."""

    threshold: float  # accept when posterior ≥ threshold (inf: nothing accepted)
    accepted: np.ndarray  # bool mask over the input posteriors
    expected_precision: float
    expected_recall: float
    expected_fbeta: float
    expected_true: float  # E[#true] including the expected missed particles
    beta: float
    reached: bool = True  # False: a recall/precision target no set of candidates reaches


@dataclass(frozen=True)
class Objective:
    """What the per-class decision optimises (module docstring).

    ``kind`` ``fbeta``: maximise the expected F-``value``; ``recall``: the smallest set with
    expected recall ≥ ``value`` (``precision@recall=value``); ``precision``: the largest set
    with expected precision ≥ ``value``. ``beta`` is the F-beta reported alongside (for
    ``fbeta`` it is ``value``).
    """

    kind: Literal["fbeta", "recall", "precision"]
    value: float
    beta: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in ("fbeta", "recall", "precision"):
            raise PicksError(f"objective kind {self.kind!r}: expected fbeta, recall or precision")
        if self.kind == "fbeta":
            if not (np.isfinite(self.value) and self.value > 0):
                raise PicksError(f"objective f{self.value:g}: beta must be a number > 0")
            # the F-beta maximised is the one reported (frozen: set through object)
            object.__setattr__(self, "beta", float(self.value))
        elif not (np.isfinite(self.value) and 0 < self.value <= 1):
            raise PicksError(f"objective {self}: the target must lie in (0, 1]")
        elif not (np.isfinite(self.beta) and self.beta > 0):
            raise PicksError(f"objective {self}: the reported beta must be a number > 0")

    @classmethod
    def fbeta(cls, beta: float) -> Objective:
        return cls("fbeta", float(beta), float(beta))

    def __str__(self) -> str:
        if self.kind == "fbeta":
            return f"f{self.value:g}"
        if self.kind == "recall":
            return f"precision@recall={self.value:g}"
        return f"precision={self.value:g}"

    @property
    def description(self) -> str:
        """How the threshold was chosen, for reasons and titles."""
        if self.kind == "fbeta":
            return f"expected F{self.beta:g} max"
        if self.kind == "recall":
            return f"smallest set with expected recall ≥ {self.value:g}"
        return f"largest set with expected precision ≥ {self.value:g}"


def as_objective(objective: float | Objective) -> Objective:
    """A bare number is a beta (the historical ``beta=`` argument)."""
    return objective if isinstance(objective, Objective) else Objective.fbeta(objective)


@dataclass
class _Ranked:
    """Candidates sorted by posterior and the set sizes a decision may take (tie-group ends)."""

    p: np.ndarray
    order: np.ndarray
    sorted_p: np.ndarray
    sizes: np.ndarray  # 0 and the end of every tie group among the valid posteriors
    tp: np.ndarray  # E[TP] at each size
    total: float  # E[#true]


def _ranked(posterior: np.ndarray, expected_missed: float) -> _Ranked:
    p = np.asarray(posterior, dtype=float)
    missed = float(expected_missed) if np.isfinite(expected_missed) else 0.0
    if missed < 0:
        raise PicksError(f"expected_missed must be ≥ 0, got {expected_missed!r}")
    valid = np.isfinite(p)
    if valid.any() and (p[valid].min() < 0 or p[valid].max() > 1):
        raise PicksError("posteriors must lie in [0, 1]")
    q = np.where(valid, p, -np.inf)
    order = np.argsort(-q, kind="stable")
    sorted_p = q[order]
    n_valid = int(valid.sum())
    head = sorted_p[:n_valid]
    ends = np.flatnonzero(np.r_[np.abs(np.diff(head)) > _TIE, True]) + 1 if n_valid else []
    sizes = np.r_[0, np.asarray(ends, dtype=np.int64)].astype(np.int64)
    cum = np.r_[0.0, np.cumsum(head)]
    return _Ranked(p, order, sorted_p, sizes, cum[sizes], float(p[valid].sum()) + missed)


def _fbeta(r: _Ranked, beta: float) -> np.ndarray:
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(r.sizes > 0, (1 + b2) * r.tp / (b2 * r.total + r.sizes), 0.0)
    return np.nan_to_num(f, nan=0.0)


def _decision(r: _Ranked, best: int, beta: float, reached: bool = True) -> Decision:
    k = int(r.sizes[best])
    accepted = np.zeros(len(r.p), dtype=bool)
    accepted[r.order[:k]] = True
    e_tp = float(r.tp[best])
    return Decision(
        threshold=float(r.sorted_p[k - 1]) if k else float("inf"),
        accepted=accepted,
        expected_precision=e_tp / k if k else 0.0,
        expected_recall=e_tp / r.total if r.total > 0 else 0.0,
        expected_fbeta=float(_fbeta(r, beta)[best]),
        expected_true=r.total,
        beta=float(beta),
        reached=reached,
    )


def expected_recall_decision(
    posterior: np.ndarray, recall: float, expected_missed: float = 0.0, *, beta: float = 4.0
) -> Decision:
    """The smallest posterior-ranked set whose expected recall reaches ``recall``.

    Ranked by posterior, it is also the most precise set that reaches it. Ties are
    all-or-none. When even every candidate falls short (the expected missed particles alone
    can cap the recall), all valid candidates are accepted and ``reached`` is False. A class
    with no expected particle accepts nothing (the recall is vacuous). ``beta``: the F-beta
    reported.
    """
    if not (np.isfinite(recall) and 0 < recall <= 1):
        raise PicksError(f"recall target must lie in (0, 1], got {recall!r}")
    r = _ranked(posterior, expected_missed)
    if r.total <= 0:
        return _decision(r, 0, beta)
    # the slack absorbs the rounding of the cumulative sum (recall 1 of a complete set)
    ok = np.flatnonzero(r.tp / r.total >= recall - 1e-12)
    if len(ok):
        return _decision(r, int(ok[0]), beta)
    return _decision(r, len(r.sizes) - 1, beta, reached=False)


def expected_precision_decision(
    posterior: np.ndarray, precision: float, expected_missed: float = 0.0, *, beta: float = 4.0
) -> Decision:
    """The largest posterior-ranked set whose expected precision is at least ``precision``.

    The mean of the top-k posteriors never grows with k, so this is the last size that
    qualifies. When not even the most probable tie group qualifies, nothing is accepted and
    ``reached`` is False.
    """
    if not (np.isfinite(precision) and 0 < precision <= 1):
        raise PicksError(f"precision target must lie in (0, 1], got {precision!r}")
    r = _ranked(posterior, expected_missed)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(r.sizes > 0, r.tp / np.maximum(r.sizes, 1), np.inf)
    ok = np.flatnonzero(prec >= precision - 1e-12)
    best = int(ok[-1])  # size 0 always qualifies
    return _decision(r, best, beta, reached=best > 0 or len(r.sizes) == 1)


def decide(
    posterior: np.ndarray, objective: float | Objective, expected_missed: float = 0.0
) -> Decision:
    """The decision for ``objective`` (a bare number is a beta)."""
    obj = as_objective(objective)
    if obj.kind == "recall":
        return expected_recall_decision(posterior, obj.value, expected_missed, beta=obj.beta)
    if obj.kind == "precision":
        return expected_precision_decision(posterior, obj.value, expected_missed, beta=obj.beta)
    return expected_fbeta_decision(posterior, obj.beta, expected_missed)


def expected_fbeta_decision(
    posterior: np.ndarray, beta: float, expected_missed: float = 0.0
) -> Decision:
    """The posterior threshold that maximises the expected F-beta (module docstring).

    NaN posteriors are never accepted and do not count as expected particles.
    """
    if not beta > 0:
        raise PicksError(f"beta must be > 0, got {beta!r}")
    r = _ranked(posterior, expected_missed)
    f = _fbeta(r, beta)
    # Best F; on (near-)ties the smaller set (the first maximum).
    return _decision(r, int(np.flatnonzero(f >= f.max() - 1e-12)[0]), beta)


def _group_keys(consensus: pd.DataFrame, fit: LatentFit) -> list:
    if list(fit.group_names) == [AGNOSTIC]:
        return [AGNOSTIC] * len(consensus)
    return [None if _is_missing(p) else p for p in consensus["particle"].astype(object)]


def decide_per_class(
    consensus: pd.DataFrame,
    posterior: pd.Series | np.ndarray,
    fit: LatentFit,
    beta: float | Objective,
    missed: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decision per class for ``beta`` (a number: maximum expected F-beta; or an
    :class:`Objective`).

    ``missed``: the particles no picker reported, per class in ``fit`` order (default: the
    model's ``fit.expected_missed``; :mod:`picks.consensus.latent` passes a larger count to a
    recall target, see :mod:`picks.consensus.expectation`).

    Returns (per candidate, indexed like ``consensus``: accepted, posterior, threshold,
    expected_precision, expected_recall, expected_fbeta of its class, reason) and (per class:
    particle, n_candidates, n_accepted, threshold, expected_particles, expected_missed,
    expected_precision, expected_recall, expected_fbeta, reached: False where a recall or
    precision target was out of reach) for the run summary.
    """
    objective = as_objective(beta)
    missed_by_class = None if missed is None else np.asarray(missed, dtype=float)
    p = np.asarray(posterior, dtype=float)
    if len(p) != len(consensus):
        raise PicksError(f"{len(p)} posteriors for {len(consensus)} candidates")
    keys = _group_keys(consensus, fit)
    n = len(consensus)
    accepted = np.zeros(n, dtype=bool)
    thresholds = np.full(n, np.nan)
    e_prec = np.full(n, np.nan)
    e_rec = np.full(n, np.nan)
    e_f = np.full(n, np.nan)
    reasons = np.empty(n, dtype=object)
    rows = []
    why = objective.description
    codes = np.array([fit.group_index(k) for k in dict.fromkeys(keys)], dtype=np.int64)
    key_code = {
        (None if _is_missing(k) else k): c for k, c in zip(dict.fromkeys(keys), codes, strict=True)
    }
    cand_code = np.array([key_code[k] for k in keys], dtype=np.int64)
    for code in sorted(set(cand_code.tolist())):
        idx = np.flatnonzero(cand_code == code)
        name = fit.group_names[code]
        missed = float((fit.expected_missed if missed_by_class is None else missed_by_class)[code])
        decision = decide(p[idx], objective, missed if np.isfinite(missed) else 0.0)
        accepted[idx] = decision.accepted
        thresholds[idx] = decision.threshold
        e_prec[idx] = decision.expected_precision
        e_rec[idx] = decision.expected_recall
        e_f[idx] = decision.expected_fbeta
        shown = "none" if name is None else name
        for i, ok in zip(idx.tolist(), decision.accepted.tolist(), strict=True):
            if not np.isfinite(p[i]):
                reasons[i] = f"no P(particle) (not fitted): rejected ({shown})"
            elif np.isinf(decision.threshold):
                reasons[i] = (
                    f"P(particle)={p[i]:.3g}: expected F{objective.beta:g} is highest accepting "
                    f"no {shown} candidate"
                    if objective.kind == "fbeta"
                    else f"P(particle)={p[i]:.3g}: no {shown} candidate reaches the target "
                    f"({why}): rejected"
                )
            else:
                sign = "≥" if ok else "<"
                reasons[i] = (
                    f"P(particle)={p[i]:.3g} {sign} {decision.threshold:.3g} "
                    f"({why} for {shown}): {'accepted' if ok else 'rejected'}"
                )
        rows.append(
            {
                "particle": name,
                "n_candidates": len(idx),
                "n_accepted": int(decision.accepted.sum()),
                "threshold": decision.threshold,
                "expected_particles": float(np.nansum(p[idx])),
                "expected_missed": missed,
                "expected_precision": decision.expected_precision,
                "expected_recall": decision.expected_recall,
                "expected_fbeta": decision.expected_fbeta,
                "reached": decision.reached,
            }
        )
    candidates = pd.DataFrame(
        {
            "accepted": accepted,
            "posterior": p,
            "threshold": thresholds,
            "expected_precision": e_prec,
            "expected_recall": e_rec,
            "expected_fbeta": e_f,
            "reason": reasons,
        },
        index=consensus.index,
    )
    columns = [
        "particle",
        "n_candidates",
        "n_accepted",
        "threshold",
        "expected_particles",
        "expected_missed",
        "expected_precision",
        "expected_recall",
        "expected_fbeta",
        "reached",
    ]
    return candidates, pd.DataFrame(rows, columns=columns)


@dataclass
class ImpliedRule:
    """Which detection patterns the fitted model accepts in one class (no scores/features)."""

    group: object
    threshold: float
    patterns: pd.DataFrame  # pickers, support, posterior, accepted (one row per pattern)
    min_support_any: int | None  # the smallest support at which some pattern is accepted
    min_support_all: int | None  # the smallest support from which every pattern is accepted
    text: str
    minimal: list[str]  # accepted below min_support_all with no accepted proper subset


MAX_PATTERN_PICKERS = 12


def implied_support_rule(
    fit: LatentFit,
    group: object,
    *,
    beta: float | Objective = 4.0,
    threshold: float | None = None,
) -> ImpliedRule:
    """The voting rule the fitted reliabilities imply for ``group``.

    Without scores or features the posterior depends only on which pickers reported a
    candidate, so a posterior threshold is a rule over picker combinations. ``threshold``
    defaults to the decision for ``beta`` (a number or an :class:`Objective`) on the class's
    agreement-only posteriors.
    Patterns of up to :data:`MAX_PATTERN_PICKERS` eligible pickers are enumerated.
    """
    k = fit.group_index(group)
    eligible = np.flatnonzero(fit.eligible[k])
    m = len(eligible)
    name = "none" if group is None else str(group)
    if m > MAX_PATTERN_PICKERS:
        raise PicksError(
            f"class {name}: {m} pickers; enumerating their {2**m - 1} combinations is too many "
            f"(at most {MAX_PATTERN_PICKERS} pickers)"
        )
    if threshold is None:
        rows = fit.groups == k
        post = fit.agreement_posterior[rows]
        missed = float(fit.expected_missed[k])
        threshold = decide(post, beta, missed if np.isfinite(missed) else 0.0).threshold
    combos = [c for r in range(1, m + 1) for c in itertools.combinations(range(m), r)]
    patterns = np.zeros((len(combos), len(fit.picker_names)), dtype=bool)
    for row, combo in enumerate(combos):
        patterns[row, eligible[list(combo)]] = True
    post = pattern_posterior(fit, group, patterns) if combos else np.zeros(0)
    support = patterns.sum(axis=1)
    accepted = post >= threshold - 1e-12
    labels = [",".join(str(fit.picker_names[j]) for j in eligible[list(c)]) for c in combos]
    table = pd.DataFrame(
        {"pickers": labels, "support": support, "posterior": post, "accepted": accepted}
    ).sort_values(["support", "posterior", "pickers"], ascending=[True, False, True])
    table = table.reset_index(drop=True)
    any_ok = table.loc[table["accepted"], "support"]
    min_any = int(any_ok.min()) if len(any_ok) else None
    min_all = None
    for s in range(m, 0, -1):
        if table.loc[table["support"] >= s, "accepted"].all():
            min_all = s
        else:
            break
    fixed = m - 1 if m >= 3 else m
    # Monotone (upward closed: adding a reporter never rejects an accepted combination) when
    # every picker reports particles more often than junk; a picker that mostly reports junk
    # of this class (a class confuser) makes its report count *against* a candidate.
    position = {str(fit.picker_names[j]): b for b, j in enumerate(eligible)}
    masks = np.array(
        [sum(1 << position[p] for p in c.split(",")) for c in table["pickers"]], dtype=np.int64
    )
    accepted_by_mask = np.zeros(2**m, dtype=bool)
    accepted_by_mask[masks] = table["accepted"].to_numpy()
    everything = np.arange(2**m)
    lowering = []
    for b in range(m):
        without = everything[(everything >> b) & 1 == 0]
        if (accepted_by_mask[without] & ~accepted_by_mask[without | (1 << b)])[1:].any():
            lowering.append(str(fit.picker_names[eligible[b]]))
    below = table[(table["support"] < (min_all or m + 1)) & table["accepted"]]
    # reduced to the minimal combinations: "cryolo alone" says every combination containing
    # cryolo is accepted too — exactly so when the rule is monotone; otherwise the text adds
    # which picker's report can tip a combination below the threshold (the table is exact)
    sets = [frozenset(p.split(",")) for p in below["pickers"]]
    minimal = [",".join(sorted(a)) for a in sets if not any(b < a for b in sets)]
    shown = [f"{p} alone" if "," not in p else " + ".join(p.split(",")) for p in minimal]
    more = f" (and {len(shown) - 6} more)" if len(shown) > 6 else ""
    if min_any is None:
        text = f"{name}: no combination of its {m} pickers is accepted"
    elif min_all is not None:
        text = f"{name}: accept when ≥ {min_all} of {m} pickers agree"
        text += "".join(f", or {s}" for s in shown[:6]) + more
    else:
        text = f"{name}: accept " + "; ".join(shown[:6]) + more
    if lowering and min_any is not None:
        text += (
            f"; but a report from {', '.join(lowering)} lowers P(particle) and can tip a "
            "combination below the threshold"
        )
    text += f" (fixed default: {fixed} of {m})"
    return ImpliedRule(group, float(threshold), table, min_any, min_all, text, minimal)
