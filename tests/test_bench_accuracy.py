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
