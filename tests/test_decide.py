"""Expected-F-beta decisions: optimality (brute force), ties, monotonicity in beta, per-class
tables and reasons, the support rule implied by fitted reliabilities."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from picks.consensus.decide import (
    decide_per_class,
    expected_fbeta_decision,
    implied_support_rule,
)
from picks.consensus.reliability import fit_latent
from picks.core.errors import PicksError


def expected_f(p: np.ndarray, chosen: np.ndarray, beta: float, missed: float) -> float:
    k = int(chosen.sum())
    if k == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * p[chosen].sum() / (b2 * (p.sum() + missed) + k)


@pytest.mark.parametrize("seed", range(20))
def test_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    p = rng.random(n) ** rng.uniform(0.3, 3)
    beta = float(rng.choice([0.5, 1.0, 2.0, 4.0]))
    missed = float(rng.choice([0.0, rng.uniform(0, 3)]))
    best = max(
        expected_f(p, np.array(mask, dtype=bool), beta, missed)
        for mask in itertools.product([False, True], repeat=n)
    )
    decision = expected_fbeta_decision(p, beta, missed)
    assert decision.expected_fbeta == pytest.approx(best, abs=1e-12)
    assert expected_f(p, decision.accepted, beta, missed) == pytest.approx(best, abs=1e-12)
    if decision.accepted.any():
        assert decision.threshold == p[decision.accepted].min()
        assert (p[~decision.accepted] < decision.threshold).all()
        e_tp = p[decision.accepted].sum()
        assert decision.expected_precision == pytest.approx(e_tp / decision.accepted.sum())
        assert decision.expected_recall == pytest.approx(e_tp / (p.sum() + missed))


@pytest.mark.parametrize("seed", range(10))
def test_larger_beta_accepts_a_superset(seed):
    rng = np.random.default_rng(100 + seed)
    p = rng.beta(0.5, 0.8, int(rng.integers(5, 300)))
    missed = float(rng.uniform(0, 5))
    previous = None
    thresholds = []
    for beta in (0.5, 1.0, 2.0, 4.0, 8.0):
        decision = expected_fbeta_decision(p, beta, missed)
        if previous is not None:
            assert (previous & ~decision.accepted).sum() == 0  # subset
        previous = decision.accepted
        thresholds.append(decision.threshold)
    assert all(a >= b for a, b in itertools.pairwise(thresholds))
    one = expected_fbeta_decision(p, 1.0, missed).accepted
    four = expected_fbeta_decision(p, 4.0, missed).accepted
    assert four.sum() >= one.sum()


def test_ties_are_all_or_none():
    # Accepting one of the tied 0.3s would be worth it on its own at beta = 1; all three not.
    p = np.array([0.9, 0.9, 0.3, 0.3, 0.3, 0.05])
    for beta in (0.5, 1.0, 2.0, 4.0):
        accepted = expected_fbeta_decision(p, beta).accepted
        assert accepted[2:5].all() or not accepted[2:5].any()
        assert accepted[0] == accepted[1]
    # the same set whatever the input order
    perm = np.array([5, 2, 0, 4, 1, 3])
    a = expected_fbeta_decision(p, 1.0).accepted
    b = expected_fbeta_decision(p[perm], 1.0).accepted
    np.testing.assert_array_equal(a[perm], b)


def test_edge_cases():
    empty = expected_fbeta_decision(np.zeros(0), 4.0)
    assert not empty.accepted.any() and np.isinf(empty.threshold)
    zeros = expected_fbeta_decision(np.zeros(5), 4.0)
    assert not zeros.accepted.any() and zeros.expected_fbeta == 0.0
    with_nan = expected_fbeta_decision(np.array([0.9, np.nan, 0.8]), 4.0)
    assert with_nan.accepted.tolist() == [True, False, True]
    ones = expected_fbeta_decision(np.ones(4), 1.0, expected_missed=4.0)
    assert ones.accepted.all() and ones.expected_recall == pytest.approx(0.5)
    with pytest.raises(PicksError, match="beta"):
        expected_fbeta_decision(np.ones(2), 0.0)
    with pytest.raises(PicksError, match=r"\[0, 1\]"):
        expected_fbeta_decision(np.array([1.5]), 1.0)


def test_missed_particles_lower_expected_recall_not_the_choice_direction():
    p = np.array([0.95, 0.9, 0.6, 0.2, 0.1])
    without = expected_fbeta_decision(p, 4.0, 0.0)
    with_missed = expected_fbeta_decision(p, 4.0, 10.0)
    assert with_missed.expected_recall < without.expected_recall
    # more particles out of reach: relatively more weight on recall, never fewer accepted
    assert with_missed.accepted.sum() >= without.accepted.sum()


def _two_class_fit():
    rng = np.random.default_rng(0)
    rows, groups, truth = [], [], []
    for g, (n_true, n_junk) in enumerate(((150, 300), (120, 200))):
        s = np.array([0.9, 0.7, 0.8, 0.6])
        f = np.array([0.05, 0.3, 0.1, 0.25])
        z = np.r_[np.ones(n_true, int), np.zeros(n_junk, int)]
        d = rng.random((len(z), 4)) < np.where(z[:, None] == 1, s, f)
        keep = d.any(axis=1)
        rows.append(d[keep])
        groups.append(np.full(keep.sum(), g))
        truth.append(z[keep])
    d, g = np.vstack(rows), np.concatenate(groups)
    fit = fit_latent(
        d,
        g,
        np.ones((2, 4), bool),
        group_names=["ribosome", "apo-ferritin"],
        picker_names=["a", "b", "c", "d"],
    )
    consensus = pd.DataFrame(
        {"particle": np.where(g == 0, "ribosome", "apo-ferritin")},
        index=pd.RangeIndex(10, 10 + len(g)),
    )
    return consensus, fit, d, np.concatenate(truth)


def test_decide_per_class_tables_and_reasons():
    consensus, fit, _, _ = _two_class_fit()
    posterior = pd.Series(fit.posterior, index=consensus.index)
    per_candidate, per_class = decide_per_class(consensus, posterior, fit, 4.0)
    assert per_candidate.index.equals(consensus.index)
    assert list(per_class["particle"]) == ["ribosome", "apo-ferritin"]
    for _, row in per_class.iterrows():
        rows = (consensus["particle"] == row["particle"]).to_numpy()
        alone = expected_fbeta_decision(
            fit.posterior[rows], 4.0, fit.expected_missed[fit.group_index(row["particle"])]
        )
        np.testing.assert_array_equal(per_candidate["accepted"].to_numpy()[rows], alone.accepted)
        assert row["threshold"] == alone.threshold
        assert row["n_accepted"] == alone.accepted.sum()
    first = per_candidate[per_candidate["accepted"]].iloc[0]
    assert "≥" in first["reason"] and "expected F4 max for" in first["reason"]
    assert first["reason"].endswith("accepted")
    rejected = per_candidate[~per_candidate["accepted"]]
    if len(rejected):
        assert "<" in rejected["reason"].iloc[0]
    # beta = 1 accepts a subset in every class
    strict, _ = decide_per_class(consensus, posterior, fit, 1.0)
    assert not (strict["accepted"] & ~per_candidate["accepted"]).any()


def test_implied_support_rule_for_equal_pickers_is_a_minimum_support():
    # Symmetric data (each pattern's count depends on its support only): equal fitted rates.
    patterns = np.array(list(itertools.product([False, True], repeat=4))[1:])
    support = patterns.sum(axis=1)
    expected = 300 * 0.8**support * 0.2 ** (4 - support) + 500 * 0.12**support * 0.88 ** (
        4 - support
    )
    counts = np.round(expected).astype(int)
    d = np.repeat(patterns, counts, axis=0)
    fit = fit_latent(d, np.zeros(len(d), int), np.ones((1, 4), bool), picker_names=list("abcd"))
    rule = implied_support_rule(fit, 0, beta=4.0)
    assert len(rule.patterns) == 15
    assert rule.min_support_any == rule.min_support_all == 2
    assert rule.text == "0: accept when ≥ 2 of 4 pickers agree (fixed default: 3 of 4)"
    strict = implied_support_rule(fit, 0, beta=1.0)
    assert strict.min_support_all >= rule.min_support_all


def test_implied_rule_is_upward_closed():
    """Adding a reporter never turns an accepted combination into a rejected one (every
    picker's recall exceeds its false-report rate)."""
    _, fit, _, _ = _two_class_fit()
    rule = implied_support_rule(fit, "apo-ferritin", beta=4.0)
    accepted = [set(p.split(",")) for p in rule.patterns.loc[rule.patterns["accepted"], "pickers"]]
    for _, row in rule.patterns.iterrows():
        if any(a <= set(row["pickers"].split(",")) for a in accepted):
            assert row["accepted"], row["pickers"]


def test_implied_support_rule_names_a_trusted_lone_picker():
    _, fit, _, _ = _two_class_fit()
    rule = implied_support_rule(fit, "ribosome", beta=4.0)
    table = rule.patterns.set_index("pickers")
    # picker a (recall 0.9, false 0.05) alone is more credible than picker b alone
    assert table.loc["a", "posterior"] > table.loc["b", "posterior"]
    assert rule.text.startswith("ribosome: ")
    if table.loc["a", "accepted"] and (rule.min_support_all or 5) > 1:
        assert "a" in rule.minimal and ", or a alone" in rule.text
        # a minimal combination has no accepted proper subset
        assert not any(p != "a" and "a" in p.split(",") for p in rule.minimal)
    with pytest.raises(PicksError, match="not in the fit"):
        implied_support_rule(fit, "thyroglobulin")


def test_implied_rule_names_a_picker_whose_report_counts_against():
    """A class confuser (reports junk of this class more often than its particles): adding its
    report lowers P(particle), so the rule is not a minimum support and says why."""
    rng = np.random.default_rng(8)
    s = np.array([0.9, 0.85, 0.8, 0.2])
    f = np.array([0.1, 0.1, 0.15, 0.7])
    z = np.r_[np.ones(300, int), np.zeros(500, int)]
    d = rng.random((800, 4)) < np.where(z[:, None] == 1, s, f)
    keep = d.any(axis=1)
    fit = fit_latent(
        d[keep], np.zeros(keep.sum(), int), np.ones((1, 4), bool), picker_names=list("abcx")
    )
    table = implied_support_rule(fit, 0, beta=1.0).patterns.set_index("pickers")
    with_x, without = table.loc["a,b,x", "posterior"], table.loc["a,b", "posterior"]
    assert with_x < without
    rule = implied_support_rule(fit, 0, threshold=(with_x + without) / 2)
    assert "but a report from x lowers P(particle)" in rule.text
    assert rule.min_support_all is None or rule.min_support_all == 4
