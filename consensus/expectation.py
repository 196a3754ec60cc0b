"""What a decision is expected to score, per class, as reported to the user (no ground truth).

The decision (:mod:`picks.consensus.decide`) ranks candidates by posterior and picks the set
size with the best expected F-beta, using the latent-class model's count of particles no
picker reported (``LatentFit.expected_missed``). That count assumes the pickers miss
independently. They do not: faint particles are missed by every picker together, so the
independence count is a gross underestimate (docs/latent.md "Limits": 51 missed against 4
expected), and the expected recall and F-beta computed with it were optimistic by 0.1–0.4 in
the classes with many faint particles (docs/accuracy.md "Calibration").

What is reported here keeps the decision as it was (the accepted set is an input) and changes
only the count of missed particles in the recall denominator: the larger of the model's count
and a lower bound that holds however unequal the particles' detectabilities are — the
bias-corrected Chao2 estimator of capture–recapture (Chao 1987; Chao 2005, "Species
estimation and applications"), with the pickers as the sampling occasions and each
candidate's posterior as its weight:

    missed ≥ (m − 1)/m · Q1·(Q1 − 1) / (2·(Q2 + 1)),

Q_k = Σ P(particle) over the candidates exactly k of the class's m pickers reported. Many
particles seen by only one picker relative to those seen by two is the signature of particles
that are hard to see, and then of more that nobody saw. It is a lower bound: particles no
picker can see at all leave no trace in the counts (measured: the reported expectations stay
optimistic on average, but less so).

The posteriors are the ones the decision used (tempered: :data:`picks.consensus.latent.
DEFAULT_TEMPERATURE`). Measured on picks' and polnet's worlds and on synthetic worlds with
hard-to-see particles, expectations from them were closer to the measured values than from
the untempered model (docs/accuracy.md "Calibration"): the dependence that tempering hedges
against in the decision also makes the untempered posteriors rate lone reports too low. The
price is paid where the model is right and a picker floods a class with lone junk: tempered,
that junk lifts Q1 and the reported F-beta comes out a few hundredths low (measured 0.03–0.06).

``expected_fbeta_sd`` is the standard deviation of the realised F-beta if the posteriors
were exact (each candidate a particle with probability p, independently; the missed count
Poisson), by the delta method: where it is large (flat posteriors, few candidates), no
estimate of F-beta can be close to the realised value, however good the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Quality:
    """Expected precision, recall and F-beta of one accepted set, and the F-beta's spread."""

    precision: float
    recall: float
    fbeta: float
    fbeta_sd: float


def missed_lower_bound(posterior: np.ndarray, support: np.ndarray, n_pickers: int) -> float:
    """Particles no picker reported, at least (bias-corrected Chao2; module docstring).

    ``support``: how many of the class's ``n_pickers`` pickers reported each candidate.
    NaN posteriors (candidates not fitted) count as nothing. Fewer than two pickers: NaN
    (with one picker nothing is ever seen twice, so nothing bounds the unseen).
    """
    if n_pickers < 2:
        return float("nan")
    p = np.nan_to_num(np.asarray(posterior, dtype=float), nan=0.0)
    k = np.asarray(support)
    q1 = float(p[k == 1].sum())
    q2 = float(p[k == 2].sum())
    # Q1·(Q1 − 1): weighted counts can be fractional; below one lone particle, no bound
    return (n_pickers - 1) / n_pickers * max(q1 * (q1 - 1.0), 0.0) / (2.0 * (q2 + 1.0))


def expected_quality(
    posterior: np.ndarray, accepted: np.ndarray, expected_missed: float, beta: float
) -> Quality:
    """The ratio-of-expectations precision, recall and F-beta of ``accepted`` (as
    :mod:`picks.consensus.decide` computes them) and the F-beta's delta-method sd."""
    p = np.nan_to_num(np.asarray(posterior, dtype=float), nan=0.0)
    a = np.asarray(accepted, dtype=bool)
    missed = float(expected_missed) if np.isfinite(expected_missed) else 0.0
    k = int(a.sum())
    x = float(p[a].sum())  # E[TP]
    y = float(p[~a].sum())  # E[particles among the rejected]
    total = x + y + missed
    b2 = beta * beta
    if k == 0:
        return Quality(0.0, 0.0, 0.0, 0.0)
    denom = b2 * total + k
    fbeta = (1 + b2) * x / denom
    # F = (1 + β²)·X / (β²·(X + Y + M) + k): X, Y sums of Bernoulli(p), M Poisson(missed)
    d_x = (1 + b2) * (b2 * (y + missed) + k) / denom**2
    d_rest = -(1 + b2) * x * b2 / denom**2
    var_x = float((p[a] * (1 - p[a])).sum())
    var_rest = float((p[~a] * (1 - p[~a])).sum()) + missed
    sd = float(np.sqrt(d_x**2 * var_x + d_rest**2 * var_rest))
    return Quality(x / k, x / total if total > 0 else 0.0, fbeta, sd)


def missed_per_class(
    groups: np.ndarray,
    eligible: np.ndarray,
    model_missed: np.ndarray,
    posterior: np.ndarray,
    support: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per fitted class (``LatentFit`` order): the Chao2 lower bound on the particles no picker
    reported, and the count reported — the larger of it and the model's ``model_missed``
    (NaN where the model has none: a class one picker alone reports is not fitted).

    ``groups``: every candidate's class code (``LatentFit.groups``); ``eligible``: (classes,
    pickers); ``support``: how many pickers reported each candidate (None: no bound, the
    model's count is kept).
    """
    model = np.asarray(model_missed, dtype=float)
    bound = np.full(len(model), np.nan)
    if support is not None:
        p = np.asarray(posterior, dtype=float)
        k = np.asarray(support)
        codes = np.asarray(groups)
        for g in range(len(model)):
            rows = codes == g
            bound[g] = missed_lower_bound(p[rows], k[rows], int(np.asarray(eligible)[g].sum()))
    return bound, _reported_missed(model, bound)


def _reported_missed(model: np.ndarray | float, bound: np.ndarray | float) -> np.ndarray:
    """The count of missed particles reported: the larger of the model's and the bound, the
    model's alone where either is unknown (NaN)."""
    model, bound = np.asarray(model, dtype=float), np.asarray(bound, dtype=float)
    return np.where(np.isfinite(model) & np.isfinite(bound), np.fmax(model, bound), model)


def reported_expectations(
    classes: pd.DataFrame,
    groups: np.ndarray,
    group_names: list,
    model_missed: np.ndarray,
    bound: np.ndarray,
    posterior: np.ndarray,
    accepted: np.ndarray,
    beta: float,
    n_pickers: np.ndarray | None = None,
) -> pd.DataFrame:
    """``classes`` (the per-class table of :func:`~picks.consensus.decide.decide_per_class`)
    with its expectations recomputed as reported (module docstring), for the ``accepted`` set.

    ``n_pickers`` (per class, in ``group_names`` order): how many pickers report it. A class
    two pickers report gets NaN expected precision, recall and F-beta: a latent-class model
    of a particle/junk split needs three conditionally independent pickers to identify its
    rates (with two, the three seen patterns cannot fix five rates), so those numbers would
    be the pooled prior's, not the data's. Measured: all five such classes of 16 simulated
    worlds (the independent polnet world, four picker seeds) were reported 0.21–0.39 too
    optimistic (docs/accuracy.md).

    ``groups``: every candidate's class code into ``group_names`` (``LatentFit.groups``);
    ``model_missed`` (the model's independence count) and ``bound`` (:func:`missed_per_class`)
    per class in that order. Adds ``model_missed``, ``missed_lower_bound`` and
    ``expected_fbeta_sd``; ``expected_missed``, ``expected_precision``, ``expected_recall``
    and ``expected_fbeta`` become the reported values (recall and F-beta NaN for a class that
    was not fitted). Rows and the decision are unchanged.
    """
    out = classes.copy()
    p = np.asarray(posterior, dtype=float)
    acc = np.asarray(accepted, dtype=bool)
    codes = np.asarray(groups)
    model_missed = np.asarray(model_missed, dtype=float)
    bound = np.asarray(bound, dtype=float)
    columns: dict[str, list] = {
        k: []
        for k in (
            "model_missed",
            "missed_lower_bound",
            "expected_missed",
            "expected_precision",
            "expected_recall",
            "expected_fbeta",
            "expected_fbeta_sd",
        )
    }
    for name in out["particle"]:
        code = next(
            (c for c, g in enumerate(group_names) if g == name or (g is None and name is None)),
            None,
        )
        rows = codes == code if code is not None else np.zeros(len(p), dtype=bool)
        own = float(model_missed[code]) if code is not None else float("nan")
        low = float(bound[code]) if code is not None else float("nan")
        used = float(_reported_missed(own, low))
        q = expected_quality(p[rows], acc[rows], used, beta)
        if not np.isfinite(own):
            # A class one picker alone reports is not fitted: nothing says how many of its
            # particles that picker missed, so its recall (and F-beta) is unknown, not 1
            # (a held-out world: expected F4 0.94, measured 0.00). Its precision stays: the
            # picker's precision borrowed from the classes where others check it.
            q = Quality(q.precision, float("nan"), float("nan"), float("nan"))
        elif n_pickers is not None and code is not None and int(n_pickers[code]) == 2:
            q = Quality(float("nan"), float("nan"), float("nan"), float("nan"))
        for key, value in (
            ("model_missed", own),
            ("missed_lower_bound", low),
            ("expected_missed", used),
            ("expected_precision", q.precision),
            ("expected_recall", q.recall),
            ("expected_fbeta", q.fbeta),
            ("expected_fbeta_sd", q.fbeta_sd),
        ):
            columns[key].append(value)
    for key in ("expected_missed", "expected_precision", "expected_recall", "expected_fbeta"):
        out[key] = columns[key]
    out.insert(
        list(out.columns).index("expected_fbeta") + 1,
        "expected_fbeta_sd",
        columns["expected_fbeta_sd"],
    )
    at = list(out.columns).index("expected_missed") + 1
    out.insert(at, "model_missed", columns["model_missed"])
    out.insert(at + 1, "missed_lower_bound", columns["missed_lower_bound"])
    return out
