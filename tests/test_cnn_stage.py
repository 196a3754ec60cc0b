"""The aggregate workflow's CNN stage decides on the consensus table it has just inserted and
stores its decision once: nothing is read back, and what it hands on is what the store holds.
The network itself is replaced by a stand-in decision (no TensorFlow): this is about the flow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from test_aggregate import inputs, labelled, write_tomogram  # noqa: F401 (inputs: a fixture)

from picks.consensus.cnn.options import CnnOptions
from picks.core.store import Store
from picks.workflows.aggregate import aggregate


def _stand_in(seen: dict):
    """A decide_cnn that records what it was given and decides by a fixed rule."""
    from picks.workflows.cnn_decision import CnnDecision

    def decide(candidates, run, options, *, run_id, **kwargs):
        seen.update(candidates=candidates.copy(), run=run, options=options, kwargs=kwargs)
        n = len(candidates)
        ids = candidates["id"].to_numpy()
        cnn_score = np.linspace(0.0, 1.0, n)
        cnn_score[0] = np.nan  # a box that could not be extracted
        score = cnn_score.copy()
        score[1] = -0.0  # SQLite gives it back as 0.0
        posterior = np.full(n, np.nan)  # NaN: the stored (latent) posterior stays
        posterior[2:] = 0.25
        decisions = pd.DataFrame(
            {
                "id": ids,
                "cnn_score": cnn_score,
                "score": score,
                "accepted": np.nan_to_num(cnn_score) > 0.5,
                "reason": [f"stand-in {i}" for i in range(n)],
                "decided_by": "cnn",
                "posterior": posterior,
            }
        )
        tail = {"n_scored": n - 1, "n_accepted": int(decisions["accepted"].sum())}
        tail.update(geometry={"box": 16}, device="stand-in")
        summary = {"method": "cnn", "run_id": run_id, "timings": {}}
        return CnnDecision(summary, decisions, [], [], [(int(ids[0]), "edge")], None, tail)

    return decide


def test_the_cnn_stage_decides_in_memory_and_stores_once(tmp_path: Path, inputs, monkeypatch):  # noqa: F811
    from picks.workflows import cnn_decision, rescore

    tomos = tmp_path / "tomos"
    tomos.mkdir()
    write_tomogram(tomos / "TS_1.mrc")
    write_tomogram(tomos / "TS_2.mrc", (60, 300, 300))
    seen: dict = {}
    monkeypatch.setattr(rescore, "decide_cnn", _stand_in(seen))
    handed_on: list[pd.DataFrame] = []

    def apply(consensus, decisions):
        handed_on.append(cnn_decision.apply_decisions(consensus, decisions))
        return handed_on[-1]

    monkeypatch.setattr(rescore, "apply_decisions", apply)
    read_back = Store.consensus

    def refuse(self, run_id):
        raise AssertionError("the CNN stage read the consensus back")

    monkeypatch.setattr(Store, "consensus", refuse)
    monkeypatch.setattr(Store, "noise", lambda self, run_id: refuse(self, run_id))
    with Store(tmp_path / "p.db") as store:
        result = aggregate(
            store,
            labelled(inputs),
            out=tmp_path / "out",
            tomograms=[tomos],
            formats=["csv"],
            method="cnn",
            cnn={"epochs": 2},  # a mapping is converted
        )
        monkeypatch.setattr(Store, "consensus", read_back)
        monkeypatch.undo()
        stored = store.consensus(result.run_id)
        noise = store.noise(result.run_id)
        dropped = list(store.db["dropped"].rows_where("run_id = ?", [result.run_id]))
        params = json.loads(store.get_run(result.run_id)["params"])
    # what the stage handed on (to the writers, summary and report) is what the store holds
    (final,) = handed_on
    pd.testing.assert_frame_equal(final, stored)
    assert (stored["decided_by"] == "cnn").all() and stored["reason"].str.startswith(
        "stand-in"
    ).all()
    assert stored["cnn_score"].isna().tolist() == [True] + [False] * (len(stored) - 1)
    assert not np.signbit(final["score"].to_numpy()[1])  # -0.0: 0.0, as the store gives it
    assert (stored["posterior"].iloc[2:] == 0.25).all()
    assert (stored["posterior"].iloc[:2] != 0.25).all()  # the latent posterior stayed
    assert result.n_accepted == int(stored["accepted"].sum())
    assert [(d["ref_id"], d["stage"]) for d in dropped] == [(int(stored["id"][0]), "cnn-score")]
    # the stage got the inserted table, the noise as stored (ids) and aggregate's options
    inserted = seen["candidates"]
    pd.testing.assert_frame_equal(inserted[["id", "x", "y", "z"]], stored[["id", "x", "y", "z"]])
    pd.testing.assert_frame_equal(seen["run"].noise, noise)
    assert seen["options"] == CnnOptions(epochs=2, positives="posterior")
    assert seen["kwargs"]["refit"] is not None  # not combine: the CNN refits the latent model
    # the run records every option under the names it always had
    assert params["cnn_options"] == CnnOptions(epochs=2, positives="posterior").as_dict()
