"""The accuracy dashboard's own logic: truth-free estimates found wherever summary.json puts
them, decoy counting, and the method plan (unknown methods skipped with a note)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_accuracy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_accuracy"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_expected_scores_are_found_in_any_layout(bench, tmp_path: Path):
    path = tmp_path / "summary.json"
    assert bench.expected_scores(path) == {}  # no file: nothing, no error
    path.write_text(
        json.dumps(
            {
                "summary": [
                    {"tomogram": "a", "particle": "ribosome", "expected_fbeta": 0.6},
                    {"tomogram": "b", "particle": "ribosome", "expected_fbeta": 0.8},
                ],
                "decision": {
                    "classes": {
                        "apo-ferritin": {
                            "expected_fbeta": 0.9,
                            "expected_precision": 0.5,
                            "expected_recall": 0.95,
                        }
                    }
                },
            }
        )
    )
    found = bench.expected_scores(path)
    assert found["apo-ferritin"]["expected_precision"] == 0.5
    assert found["apo-ferritin"]["expected_recall"] == 0.95
    assert found["ribosome"]["expected_fbeta"] == pytest.approx(0.7)  # per-tomogram rows: mean
    assert found["ribosome"]["rows"] == 2
    path.write_text("not json")
    assert bench.expected_scores(path) == {}


def test_decoys_are_counted_by_decision_and_real_particles_excluded(bench):
    truth = pd.DataFrame(
        {"tomogram": ["t"], "particle": ["ribosome"], "x": [1000.0], "y": [0.0], "z": [0.0]}
    )
    decoys = pd.DataFrame(
        {
            "tomogram": ["t", "t"],
            "kind": ["gold-bead", "gold-bead"],
            "x": [0.0, 1000.0],
            "y": [0.0, 0.0],
            "z": [0.0, 0.0],
        }
    )
    world = bench.World("w", Path(), truth, Path(), 10.0, decoys, 1, 0.0)
    candidates = pd.DataFrame(
        {
            "tomogram": ["t", "t", "t", "t"],
            "x": [10.0, -50.0, 1010.0, 5000.0],  # on bead, on bead, on the true ribosome, far
            "y": [0.0] * 4,
            "z": [0.0] * 4,
            "accepted": [True, False, True, True],
        }
    )
    counts = bench.decoy_counts(world, candidates)
    assert counts["beads"] == {"accepted": 1, "rejected": 1}
    assert counts["contamination"] == {"accepted": 0, "rejected": 0}


def test_method_plan(bench):
    plan = {e["label"]: e for e in bench.method_plan(5, ["latent-xyz"], skip_cnn=True)}
    assert [k for k in plan if k.startswith("vote-")] == ["vote-2", "vote-3", "vote-4", "vote-5"]
    assert plan["union"]["min_support"] == 1 and plan["union"]["method"] == "vote"
    assert "not known" in plan["latent-xyz"]["skip"]
    assert plan["auto-nt"]["resolves_to"] == "latent" and "skip" not in plan["auto-nt"]
    assert plan["auto"]["resolves_to"] == "latent" and "skip" not in plan["auto"]
    assert plan["cnn"].get("skip") == "--skip-cnn"


def test_calibration_table_reads_the_latent_summary_and_counts_scored_classes(bench, tmp_path):
    """The layout `aggregate` writes (summary.json → latent.classes) is found, and the check
    counts the scored classes (weight > 0) whose expectation lies within ±0.05."""
    path = tmp_path / "summary.json"
    rows = [
        ("apo-ferritin", 0.99, 0.98, 0.99, 0.01),
        ("beta-amylase", 0.5, 0.5, 0.5, 0.1),  # weight 0: not part of the check
        ("thyroglobulin", 0.93, 0.8, 0.94, 0.03),
        ("ribosome", float("nan"), 0.9, float("nan"), float("nan")),  # not fitted
    ]
    classes = [
        {
            "particle": c,
            "expected_fbeta": f,
            "expected_precision": p,
            "expected_recall": r,
            "expected_fbeta_sd": sd,
        }
        for c, f, p, r, sd in rows
    ]
    path.write_text(json.dumps({"latent": {"classes": classes}}).replace("NaN", "null"))
    measured = {
        "apo-ferritin": {"f4": 0.97, "precision": 0.99, "recall": 0.97, "weight": 1},
        "beta-amylase": {"f4": 0.1, "precision": 0.1, "recall": 0.1, "weight": 0},
        "thyroglobulin": {"f4": 0.51, "precision": 0.38, "recall": 0.52, "weight": 2},
        "ribosome": {"f4": 0.9, "precision": 0.9, "recall": 0.9, "weight": 1},
    }
    world = {
        "world": "w",
        "rows": {"auto": {"expected": bench.expected_scores(path), "classes": measured}},
    }
    cal = bench.calibration(world, "auto")
    assert [c["particle"] for c in cal["classes"]] == ["apo-ferritin", "ribosome", "thyroglobulin"]
    # ribosome: its precision is estimated (borrowed), its recall and F4 are not
    assert cal["within"] == {"f4": 1, "precision": 2, "recall": 1}
    lines = "\n".join(bench._calibration_lines(world))
    assert "within ±0.05 in 1 of 3 scored classes (F4)" in lines
    assert "| thyroglobulin | 0.930 ± 0.030 | 0.510 |" in lines


def test_polnet_worlds_name_the_pickers_seed(bench, tmp_path: Path, monkeypatch):
    import picks.simulate.external as external

    if not (bench.POLNET / "ground_truth.csv").is_file():
        pytest.skip("the polnet fixture (../shared) is not here")
    seeds = []

    def fake_run_pickers(sources, folder, **options):
        seeds.append(options["seed"])
        raise RuntimeError("stop before running the pickers")

    monkeypatch.setattr(external, "run_pickers", fake_run_pickers)
    for name in ("polnet", "polnet@2"):
        with pytest.raises(RuntimeError, match="stop before"):
            bench.make_world(name, tmp_path, print)
    assert seeds == [0, 2]
    with pytest.raises(SystemExit, match="polnet@<seed>"):
        bench.make_world("polnet@x", tmp_path, print)
