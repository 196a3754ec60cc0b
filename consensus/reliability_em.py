"""Fitting the latent-class model: :func:`fit_latent` (EM from deterministic initialisations,
the label guard that says which component is "particle", the per-class summary).

Split out of :mod:`picks.consensus.reliability`, which documents the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from picks.consensus.reliability_model import (
    _INIT_HIGH,
    DEFAULT_MAX_ITER,
    DEFAULT_PRIOR_STRENGTH,
    DEFAULT_TOL,
    FEATURE_BINS,
    SCORE_BINS,
    LatentFit,
    _feature_bins,
    _group_sum,
    _Model,
    _Params,
    _score_bins,
    _unseen_ratio,
)
from picks.core.errors import PicksError

# Below this largest posterior change per iteration, an EM run stopped by `max_iter` has
# settled for every decision (posteriors are compared with thresholds, not to 1e-5).
STALL_TOL = 1e-3


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
            text = (
                f"class {name}: {n_elig[k]} pickers report it; agreement among so few does not "
                "identify every rate, the estimates lean on the rates pooled over classes"
            )
            if scores is not None:
                text += " and the scores"
            if n_elig[k] == 2:  # consensus.expectation.reported_expectations reports NaN
                text += (
                    " (its expected precision, recall and F-beta are not reported: three "
                    "pickers are needed to identify them)"
                )
            warnings.append(text)
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
        # EM crawls along a flat direction of the likelihood (a class whose junk and particles
        # the pickers barely tell apart): at `max_iter` the posteriors may still move by 1e-5
        # per step, which changes no decision. Say so only when they still move materially.
        step = _step_size(model if (model.has_scores or model.has_features) else agree, params)
        if step >= STALL_TOL:
            warnings.append(
                f"EM did not converge in {max_iter} iterations: posteriors still move by up to "
                f"{step:.1e} per iteration (kept the last estimate)"
            )

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


def _step_size(model: _Model, params: _Params) -> float:
    """The largest change of any posterior that one more EM iteration from ``params`` makes."""
    w, _ = model.posterior(params)
    if not len(w):
        return 0.0
    after, _ = model.posterior(model.m_step(w, params))
    return float(np.max(np.abs(after - w)))


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
