"""``--objective``: precision@recall=R, precision=P and fBETA decisions on the latent posteriors."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_latent_pipeline import _world
from typer.testing import CliRunner

from picks.cli import get_app
from picks.cli.objective import parse_objective, resolve_objective
from picks.consensus.decide import (
    Objective,
    decide,
    expected_fbeta_decision,
    expected_precision_decision,
    expected_recall_decision,
)
from picks.core.errors import PicksError
from picks.core.store import Store
from picks.workflows.aggregate import aggregate

runner = CliRunner()


def _main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point: where a PicksError becomes one ``Error:`` line on stderr."""
    return subprocess.run(
        [sys.executable, "-c", "from picks.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _subsets(n: int):
    for k in range(n + 1):
        for combo in itertools.combinations(range(n), k):
            yield np.array(combo, dtype=np.int64)


@pytest.mark.parametrize("seed", range(8))
def test_recall_decision_is_the_smallest_and_most_precise_set_reaching_the_recall(seed):
    rng = np.random.default_rng(seed)
    n = 9
    p = rng.uniform(0, 1, n)  # continuous: no ties
    missed = float(rng.uniform(0, 1.5))
    total = p.sum() + missed
    subsets = list(_subsets(n))
    for target in (0.05, 0.3, 0.5, 0.7, 0.85):
        d = expected_recall_decision(p, target, missed)
        reaching = [s for s in subsets if p[s].sum() / total >= target]
        if not reaching:
            assert not d.reached and d.accepted.all()
            continue
        smallest = min(len(s) for s in reaching)
        best_tp = max(p[s].sum() for s in reaching if len(s) == smallest)
        assert d.reached
        assert d.accepted.sum() == smallest
        assert p[d.accepted].sum() == pytest.approx(best_tp)
        assert d.expected_recall >= target - 1e-12
        assert d.expected_recall == pytest.approx(p[d.accepted].sum() / total)
        assert d.expected_precision == pytest.approx(p[d.accepted].mean())


@pytest.mark.parametrize("seed", range(5))
def test_precision_decision_is_the_largest_set_with_that_precision(seed):
    rng = np.random.default_rng(100 + seed)
    n = 9
    p = rng.uniform(0, 1, n)
    subsets = list(_subsets(n))[1:]
    for target in (0.2, 0.5, 0.8, 0.95):
        d = expected_precision_decision(p, target)
        qualifying = [s for s in subsets if p[s].mean() >= target]
        largest = max((len(s) for s in qualifying), default=0)
        assert d.accepted.sum() == largest
        assert d.reached == (largest > 0)
        if largest:
            assert d.expected_precision >= target - 1e-12


def test_recall_decision_grows_with_the_target_and_keeps_ties_together():
    rng = np.random.default_rng(3)
    p = np.round(rng.uniform(0, 1, 400), 1)  # many ties
    p[:5] = np.nan  # never accepted, not expected particles
    previous = np.zeros(len(p), dtype=bool)
    for target in np.linspace(0.05, 1.0, 40):
        d = expected_recall_decision(p, target, expected_missed=2.0)
        assert (previous <= d.accepted).all()  # nested: monotone in R
        assert not d.accepted[:5].any()
        for value in np.unique(p[np.isfinite(p)]):
            group = d.accepted[p == value]
            assert group.all() or not group.any()  # all-or-none
        previous = d.accepted
    # the same input in another order gives the same decision per candidate
    perm = rng.permutation(len(p))
    a = expected_recall_decision(p, 0.6, 2.0).accepted
    b = expected_recall_decision(p[perm], 0.6, 2.0).accepted
    assert (a[perm] == b).all()


def test_unreachable_recall_accepts_everything_and_says_so():
    p = np.array([0.9, 0.8, 0.1, np.nan])
    d = expected_recall_decision(p, 0.9, expected_missed=1.0)  # at best 1.8 / 2.8 = 0.64
    assert not d.reached
    assert d.accepted.tolist() == [True, True, True, False]
    assert d.expected_recall == pytest.approx(1.8 / 2.8)
    # no expected particle at all: the target is vacuous, nothing is accepted
    assert not expected_recall_decision(np.zeros(3), 0.5).accepted.any()


def test_fbeta_objective_is_the_beta_decision():
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 200)
    for beta in (1.0, 2.0, 4.0):
        a = decide(p, Objective.fbeta(beta), 3.0)
        b = expected_fbeta_decision(p, beta, 3.0)
        assert (a.accepted == b.accepted).all() and a.expected_fbeta == b.expected_fbeta
    assert (decide(p, 4.0).accepted == decide(p, Objective.fbeta(4)).accepted).all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("f4", Objective.fbeta(4)),
        ("F1", Objective.fbeta(1)),
        ("f0.5", Objective.fbeta(0.5)),
        ("precision@recall=0.8", Objective("recall", 0.8)),
        (" precision@recall = .9 ", Objective("recall", 0.9)),
        ("precision=0.95", Objective("precision", 0.95)),
    ],
)
def test_parse_objective(text, expected):
    assert parse_objective(text) == expected
    assert parse_objective(str(expected)) == expected  # the shown form parses back


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("f0", "expected f1, f4"),
        ("fscore", "expected f1, f4"),
        ("precision@recall=80", r"\(0, 1\]"),
        ("precision@recall=0", r"\(0, 1\]"),
        ("recall=0.8", "expected f1, f4"),
        ("", "expected f1, f4"),
    ],
)
def test_parse_objective_errors(text, match):
    with pytest.raises(PicksError, match=match):
        parse_objective(text)


def test_beta_and_objective_must_agree():
    assert resolve_objective(None, None) == Objective.fbeta(4)
    assert resolve_objective(1.0, None) == Objective.fbeta(1)
    assert resolve_objective(2.0, "f2") == Objective.fbeta(2)
    with pytest.raises(PicksError, match=r"--beta 1 and --objective f4 disagree"):
        resolve_objective(1.0, "f4")
    with pytest.raises(PicksError, match=r"--beta 4 and --objective precision@recall=0.8"):
        resolve_objective(4.0, "precision@recall=0.8")


def test_cli_objective_errors_are_one_clean_line(tmp_path):
    _, inputs = _world(11, tmp_path / "in", n_per_class=5)
    base = ["aggregate", *inputs, "--format", "csv", "--out", str(tmp_path / "o")]
    base += ["--db", str(tmp_path / "p.db")]
    for extra, text in (
        (["--objective", "precision@recall=80"], "--objective 'precision@recall=80'"),
        (["--objective", "f1", "--beta", "2"], "--beta 2 and --objective f1 disagree"),
    ):
        proc = _main(*base, *extra)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and text in errors[0], proc.stderr
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_inputs_file_objective_key(tmp_path):
    from picks.core.inputs_file import read_inputs_file

    _, inputs = _world(12, tmp_path / "in", n_per_class=5)
    pickers = "".join(
        f'[[picker]]\nlabel = "{s.split("=", 1)[0]}"\npath = "{s.split("=", 1)[1]}"\n'
        for s in inputs
    )
    good = tmp_path / "good.toml"
    good.write_text('[decision]\nobjective = "precision@recall=0.8"\n' + pickers)
    assert read_inputs_file(good).objective == "precision@recall=0.8"
    bad = tmp_path / "bad.toml"
    bad.write_text('[decision]\nobjective = "recall80"\n' + pickers)
    proc = _main("aggregate", "--inputs", str(bad), "--db", str(tmp_path / "p.db"))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert "bad.toml: [decision] objective 'recall80'" in errors[0]


def test_aggregate_precision_at_recall_reaches_the_recall_with_fewer_candidates(tmp_path):
    _, inputs = _world(13, tmp_path / "in")
    app = get_app()
    summaries = {}
    for name, extra in (("f4", []), ("r90", ["--objective", "precision@recall=0.9"])):
        out = tmp_path / name
        args = ["aggregate", *inputs, "--method", "latent", "--format", "csv", "--out", str(out)]
        res = runner.invoke(app, [*args, "--db", str(tmp_path / "p.db"), *extra])
        assert res.exit_code == 0, res.output
        summaries[name] = json.loads((out / "summary.json").read_text())["latent"]
    assert "objective: precision@recall=0.9" in res.output
    html = "".join(p.read_text() for p in (tmp_path / "r90").rglob("*.html"))
    assert "chosen for the objective precision@recall=0.9" in html
    r90, f4 = summaries["r90"], summaries["f4"]
    assert r90["objective"] == "precision@recall=0.9" and f4["objective"] == "f4"
    for row in r90["classes"]:
        assert row["expected_recall"] >= 0.9 and row["reached"]
    n_f4 = {r["particle"]: r["n_accepted"] for r in f4["classes"]}
    n_r90 = {r["particle"]: r["n_accepted"] for r in r90["classes"]}
    assert set(n_r90) == set(n_f4) and all(n_r90[c] <= n_f4[c] for c in n_f4)
    res = runner.invoke(app, ["pickers", "--db", str(tmp_path / "p.db"), "--json"])
    assert json.loads(res.output)["objective"] == "precision@recall=0.9"
    res = runner.invoke(app, ["pickers", "1", "--db", str(tmp_path / "p.db")])
    assert "objective: f4" in res.output


def test_unreachable_recall_warns_naming_the_class(tmp_path):
    _, inputs = _world(14, tmp_path / "in", n_per_class=20)
    with Store(tmp_path / "p.db") as store:
        res = aggregate(
            store,
            inputs,
            out=tmp_path / "o",
            method="latent",
            formats=["csv"],
            objective=Objective("recall", 1.0),
        )
    classes = {r["particle"]: r for r in res.latent["classes"]}
    unreached = [c for c, r in classes.items() if not r["reached"]]
    assert unreached  # the model expects some particles no picker reported
    for c in unreached:
        assert classes[c]["n_accepted"] == classes[c]["n_candidates"]
        assert any(
            f"{c}: precision@recall=1 is out of reach" in w and "all accepted" in w
            for w in res.warnings
        ), res.warnings
    with Store(tmp_path / "q.db") as store, pytest.raises(PicksError, match="disagree"):
        aggregate(
            store,
            inputs,
            out=tmp_path / "o2",
            beta=1,
            objective=Objective("recall", 0.8),
            formats=["csv"],
        )


def test_an_objective_given_to_a_vote_run_is_reported_as_ignored(tmp_path):
    _, inputs = _world(15, tmp_path / "in", n_per_class=5)
    with Store(tmp_path / "p.db") as store:
        res = aggregate(
            store,
            inputs,
            out=tmp_path / "o",
            method="vote",
            formats=["csv"],
            objective=Objective("recall", 0.8),
        )
    assert any("objective precision@recall=0.8 ignored" in w for w in res.warnings)


def test_objective_type_checks_its_values():
    assert Objective("fbeta", 2.0) == Objective.fbeta(2) and Objective("fbeta", 2.0).beta == 2.0
    assert str(Objective("precision", 0.9)) == "precision=0.9"
    for kind, value in (("recall", 1.5), ("recall", 0.0), ("precision", float("nan"))):
        with pytest.raises(PicksError, match=r"\(0, 1\]"):
            Objective(kind, value)
    with pytest.raises(PicksError, match="beta must be"):
        Objective("fbeta", -1.0)
    with pytest.raises(PicksError, match="kind"):
        Objective("auc", 0.5)
