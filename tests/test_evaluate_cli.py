"""picks evaluate: pickers, consensus runs and files scored with the CZII metric via the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.evaluate import metric
from picks.simulate.world import picker_inputs, simulate


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate
    from picks.workflows.inputs import InputSpec

    root = tmp_path_factory.mktemp("eval")
    result = simulate(root / "sim", seed=5, n_tomograms=2, size=(96, 96, 48))
    inputs = [
        InputSpec(i["path"], i["label"], dict(i["options"]), given=str(i["path"]))
        for i in picker_inputs(result)
    ]
    with Store(root / "picks.db") as store:
        run = aggregate(
            store,
            inputs,
            out=root / "consensus",
            tomograms=[result.out / "tomograms"],
            method="vote",
            formats=["czii-csv"],
        )
    return result, root / "picks.db", run


def invoke(*args):
    return CliRunner().invoke(get_app(), [str(a) for a in args])


def test_store_pickers_and_consensus_run(world, tmp_path):
    result, db, run = world
    plot = tmp_path / "curves.png"
    out = invoke("evaluate", "--db", db, "--truth", result.truth_csv, "--json", "--plot", plot)
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    rows = {r["source"]: r for r in data["results"]}
    assert set(rows) == {p.label for p in result.pickers} | {
        f"consensus run {run.run_id}",
        f"run {run.run_id} all candidates",
    }
    truth = result.truth
    for picker in result.pickers:  # the store's picks are the simulated picks, read back
        expected = metric.score(truth, picker.picks)
        assert rows[picker.label]["overall"] == pytest.approx(expected.overall, abs=1e-9)
        assert rows[picker.label]["n_picks"] == len(picker.picks)
    accepted = rows[f"consensus run {run.run_id}"]
    assert accepted["n_picks"] == run.n_accepted
    assert rows[f"run {run.run_id} all candidates"]["n_picks"] == run.n_consensus
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_table_output_and_run_selection(world):
    result, db, run = world
    out = invoke(
        "evaluate", "--db", db, "--truth", result.truth_csv, "--run", run.run_id, "--no-pickers"
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "overall" in lines[1] and "thyro" in lines[1]
    assert any(line.startswith(f"consensus run {run.run_id}") for line in lines)
    assert not any(line.startswith("cryolo") for line in lines)
    missing = invoke("evaluate", "--db", db, "--truth", result.truth_csv, "--run", 999)
    assert missing.exit_code != 0


def test_files_against_copick_truth(world):
    result, _, _ = world
    yolo = result.out / "pickers" / "yolo" / "submission.csv"
    out = invoke(
        "evaluate",
        "--truth",
        result.out / "ground_truth",
        f"mine={yolo}",
        result.truth_csv,
        "--json",
        "--beta",
        "1",
        "--multiplier",
        "0.6",
        "--weight",
        "beta-amylase=1",
    )
    assert out.exit_code == 0, out.output
    rows = {r["source"]: r for r in json.loads(out.output)["results"]}
    assert rows["ground_truth"]["overall"] == pytest.approx(1.0)
    picks = pd.read_csv(yolo)
    weights = {**metric.default_weights(), "beta-amylase": 1.0}
    expected = metric.score(result.truth, picks, beta=1.0, multiplier=0.6, weights=weights)
    assert rows["mine"]["overall"] == pytest.approx(expected.overall, abs=1e-6)
    assert rows["mine"]["beta"] == 1.0


def test_errors_are_one_line(tmp_path, world):
    result, _, _ = world
    bad = tmp_path / "bad.csv"
    bad.write_text("id,experiment,particle_type,x,y,z\n0,sim_01,proteasome,1000,1000,300\n")
    out = invoke("evaluate", "--truth", result.truth_csv, bad)
    assert out.exit_code != 0
    assert "proteasome" in str(out.exception) or "proteasome" in out.output
    out = invoke("evaluate", "--db", tmp_path / "none.db", "--truth", result.truth_csv)
    assert out.exit_code != 0


def test_demo_runs_end_to_end_and_reruns(tmp_path):
    folder = tmp_path / "demo"
    args = [
        "demo",
        folder,
        "--size",
        "96",
        "96",
        "48",
        "--tomograms",
        "1",
        "--method",
        "vote",
        "--no-plot",
    ]
    out = invoke(*args)
    assert out.exit_code == 0, out.output
    assert "consensus run 1" in out.output and "deepetpicker" in out.output
    assert (folder / "data" / "manifest.json").is_file() and (folder / "picks.db").is_file()
    data = json.loads((folder / "evaluation.json").read_text())
    assert {r["kind"] for r in data["results"]} == {"picker", "consensus", "consensus-candidates"}
    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["run_id"] == 1  # a fresh store, not a second run
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    refused = invoke("demo", tmp_path / "other", "--size", "48", "48", "32", "--method", "vote")
    assert refused.exit_code != 0
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
