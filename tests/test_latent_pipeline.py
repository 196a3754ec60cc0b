"""``aggregate(method="latent")``: picker reliability from agreement, expected-F-beta decisions,
stored as data (posterior, decided_by, estimates) and shown by ``picks pickers``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.store import Store
from picks.evaluate.metric import score
from picks.workflows.aggregate import aggregate

runner = CliRunner()
CLASSES = {"ribosome": 150.0, "apo-ferritin": 60.0}
# (recall, false picks per tomogram and class) of four simulated pickers with distinct habits
PICKERS = {"precise": (0.8, 2), "sloppy": (0.9, 60), "timid": (0.5, 1), "noisy": (0.7, 30)}


def _world(seed: int, folder: Path, n_per_class: int = 40) -> tuple[pd.DataFrame, list[str]]:
    """Truth in two tomograms and one CZII CSV per picker (each picker: recall and junk)."""
    rng = np.random.default_rng(seed)
    truth = []
    for tomo in ("TS_1", "TS_2"):
        for cls, radius in CLASSES.items():
            # a grid keeps particles of one class ≥ 3 radii apart (no accidental overlaps)
            grid = np.stack(np.meshgrid(*(np.arange(1, 9),) * 2, indexing="ij"), -1).reshape(-1, 2)
            pick = grid[rng.choice(len(grid), n_per_class, replace=False)]
            z = 800.0 if cls == "ribosome" else 2200.0
            for gx, gy in pick:
                truth.append((tomo, cls, gx * 3.2 * radius, gy * 3.2 * radius, z))
    truth_df = pd.DataFrame(truth, columns=["tomogram", "particle", "x", "y", "z"])
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for label, (recall, junk) in PICKERS.items():
        rows = []
        for t, p, x, y, z in truth:
            if rng.random() < recall:
                jitter = rng.normal(0, 0.1 * CLASSES[p], 3)
                rows.append((t, p, x + jitter[0], y + jitter[1], z + jitter[2]))
        for tomo in ("TS_1", "TS_2"):
            for cls in CLASSES:
                for _ in range(junk):
                    rows.append((tomo, cls, *rng.uniform(0, 9000, 2), rng.uniform(3000, 6000)))
        lines = ["id,experiment,particle_type,x,y,z"]
        lines += [f"{i},{t},{p},{x:.1f},{y:.1f},{z:.1f}" for i, (t, p, x, y, z) in enumerate(rows)]
        path = folder / f"{label}.csv"
        path.write_text("\n".join(lines) + "\n")
        inputs.append(f"{label}={path}")
    return truth_df, inputs


def f_score(truth: pd.DataFrame, picks: pd.DataFrame, beta: float = 4.0) -> float:
    """The CZII F-beta over this world's two classes (equal weights)."""
    return score(truth, picks, beta=beta, weights=dict.fromkeys(CLASSES, 1.0)).overall


def _accepted(store: Store, run_id: int) -> pd.DataFrame:
    frame = store.consensus(run_id)
    return frame[frame["accepted"].astype(bool)].reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_latent_beats_every_picker_and_accepting_everything(tmp_path, seed):
    truth, inputs = _world(seed, tmp_path / "in")
    with Store(tmp_path / "p.db") as store:
        union = aggregate(
            store, inputs, out=tmp_path / "u", method="vote", min_support=1, formats=["csv"]
        )
        # the pickers here err independently, as the model assumes: no tempering needed
        latent = aggregate(
            store, inputs, out=tmp_path / "l", method="latent", temperature=1.0, formats=["csv"]
        )
        default = aggregate(store, inputs, out=tmp_path / "d", formats=["csv"])
        f_union = f_score(truth, _accepted(store, union.run_id))
        f_latent = f_score(truth, _accepted(store, latent.run_id))
        f_default = f_score(truth, _accepted(store, default.run_id))
        pickers = store.picks(columns=["tomogram", "particle", "x", "y", "z"])
        best = max(f_score(truth, g) for _, g in pickers.groupby("picker"))
        frame = store.consensus(latent.run_id)
        est, classes = store.estimates(latent.run_id)
    assert f_latent >= f_union + 0.02, (f_latent, f_union)
    assert f_latent >= best + 0.05, (f_latent, best)
    # the default (latent, tempered log-odds) hedges against pickers that err together: it
    # gives up part of the gain here, never the union's level
    assert default.method == "latent" and f_default >= f_union - 0.005, (f_default, f_union)
    assert set(frame["decided_by"]) == {"latent"}
    assert frame["posterior"].between(0, 1).all()
    assert (frame["score"] == frame["posterior"]).all()
    assert frame["reason"].str.contains("expected F4 max").all()
    assert frame["vote_reason"].str.startswith("support").all()
    # the picker that reports 60 junk locations per class is estimated as imprecise
    sloppy = est[est["picker"] == "sloppy"]["precision"].mean()
    precise = est[est["picker"] == "precise"]["precision"].mean()
    assert sloppy < precise
    assert sorted(classes["particle"]) == sorted(CLASSES) and (classes["beta"] == 4.0).all()
    assert latent.latent["classes"] and latent.latent["beta"] == 4.0


def test_beta_one_accepts_a_subset_of_beta_four_and_is_more_precise(tmp_path):
    truth, inputs = _world(3, tmp_path / "in")
    with Store(tmp_path / "p.db") as store:
        r4 = aggregate(store, inputs, out=tmp_path / "a", method="latent", formats=["csv"])
        r1 = aggregate(store, inputs, out=tmp_path / "b", method="latent", beta=1, formats=["csv"])
        a4, a1 = _accepted(store, r4.run_id), _accepted(store, r1.run_id)
    key = ["tomogram", "particle", "x", "y", "z"]
    assert set(map(tuple, a1[key].to_numpy().tolist())) <= set(
        map(tuple, a4[key].to_numpy().tolist())
    )
    assert (
        score(truth, a1, beta=1).classes[0].precision
        >= score(truth, a4, beta=1).classes[0].precision
    )


def test_latent_outputs_do_not_depend_on_input_order(tmp_path):
    _, inputs = _world(4, tmp_path / "in")
    outs = []
    for k, order in enumerate((inputs, inputs[::-1])):
        with Store(tmp_path / f"p{k}.db") as store:
            aggregate(store, order, out=tmp_path / f"o{k}", method="latent", formats=["csv"])
        outs.append(sorted((tmp_path / f"o{k}").rglob("*.csv")))
    for a, b in zip(*outs, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()


def test_a_trusted_reference_decision_stands_under_the_latent_model(tmp_path):
    truth, inputs = _world(5, tmp_path / "in")
    # a negative reference on a location every picker agrees on (a true ribosome)
    target = truth[truth["particle"] == "ribosome"].iloc[0]
    refs = tmp_path / "beads.csv"
    refs.write_text(
        "id,experiment,particle_type,x,y,z\n"
        f"0,{target.tomogram},ribosome,{target.x},{target.y},{target.z}\n"
    )
    with Store(tmp_path / "p.db") as store:
        result = aggregate(
            store, inputs, out=tmp_path / "o", method="latent", negatives=[refs], formats=["csv"]
        )
        frame = store.consensus(result.run_id)
    forced = frame[frame["forced"]]
    assert len(forced) == 1
    row = forced.iloc[0]
    assert not row["accepted"] and row["decided_by"] == "reference"
    assert "a trusted reference decides: rejected" in row["reason"]
    assert row["vote_reason"].startswith("negative reference pick")


def test_picks_pickers_command_shows_estimates(tmp_path):
    _, inputs = _world(6, tmp_path / "in")
    db = tmp_path / "p.db"
    app = get_app()
    res = runner.invoke(
        app,
        [
            "aggregate",
            *inputs,
            "--method",
            "latent",
            "--format",
            "csv",
            "--out",
            str(tmp_path / "o"),
            "--db",
            str(db),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Decision per class (objective: f4;" in res.output
    assert "picks pickers 1" in res.output
    res = runner.invoke(app, ["pickers", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["run_id"] == 1
    assert {r["picker"] for r in data["pickers"]} == set(PICKERS)
    assert all(0 <= r["precision"] <= 1 for r in data["pickers"])
    res = runner.invoke(app, ["pickers", "1", "--db", str(db)])
    assert res.exit_code == 0 and "expected_fbeta" in res.output
    # a vote run has no estimates: a clear error, exit 3
    runner.invoke(
        app,
        [
            "aggregate",
            *inputs,
            "--method",
            "vote",
            "--format",
            "csv",
            "--out",
            str(tmp_path / "v"),
            "--db",
            str(db),
        ],
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from picks.cli import main; main()",
            "pickers",
            "2",
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3 and "run 2 has no picker estimates" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_beta_must_be_positive(tmp_path):
    from picks.core.errors import PicksError

    _, inputs = _world(7, tmp_path / "in", n_per_class=5)
    with Store(tmp_path / "p.db") as store, pytest.raises(PicksError, match="beta"):
        aggregate(store, inputs, out=tmp_path / "o", method="latent", beta=0, formats=["csv"])


def test_pickers_json_never_holds_infinity_or_nan():
    from picks.cli.pickers_cmd import _records

    frame = pd.DataFrame({"threshold": [float("inf"), 0.2], "recall": [float("nan"), 0.5]})
    assert _records(frame) == [
        {"threshold": None, "recall": None},
        {"threshold": 0.2, "recall": 0.5},
    ]


def test_czii_submission_file_has_exactly_the_scorer_columns_and_unique_ids(tmp_path):
    truth, inputs = _world(8, tmp_path / "in")
    with Store(tmp_path / "p.db") as store:
        result = aggregate(store, inputs, out=tmp_path / "o", formats=["csv"], report=False)
        accepted = _accepted(store, result.run_id)
    path = tmp_path / "o" / "submission.csv"
    assert any(r["format"] == "czii-submission" for r in result.outputs)
    table = pd.read_csv(path)
    assert list(table.columns) == ["id", "experiment", "particle_type", "x", "y", "z"]
    assert table["id"].tolist() == list(range(len(accepted)))
    # the same picks as the accepted set, so the CZII score of the file is the run's
    as_picks = table.rename(columns={"experiment": "tomogram", "particle_type": "particle"})
    assert f_score(truth, as_picks) == pytest.approx(f_score(truth, accepted), abs=1e-9)
