"""Decisions stored as data (m006): forced flags, who decided, angles, estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlite_utils import Database

from picks.core.store import Store
from picks.core.store.migrations import migrate, migrations


def _old_store(path) -> Database:
    """A store as picks wrote it before m006, with one CNN run's consensus rows."""
    db = Database(path)
    migrations.apply(db, stop_before="m006_decisions_as_data")
    db["runs"].insert({"id": 1, "command": "aggregate", "method": "cnn", "status": "ok"})
    rows = [
        (1, "support 3/3 (3 of 3 pickers), ≥ 2: positive", "positive", 1),
        (
            2,
            "cnn 0.120 < 0.5: rejected; support 1/3 (1 of 3 pickers), < 2: negative",
            "negative",
            0,
        ),
        (
            3,
            "cnn 0.900 ≥ 0.5: accepted, but a trusted reference decides: rejected; "
            "negative reference pick #7 (beads) 3.0 Å away; by support it was positive (...)",
            "negative",
            0,
        ),
        (4, "positive reference pick #8 (refs); no picker found it", "reference", 1),
    ]
    for cid, reason, status, accepted in rows:
        db["consensus"].insert(
            {
                "id": cid,
                "run_id": 1,
                "tomogram": "t",
                "particle": "ribosome",
                "x": 1.0,
                "y": 2.0,
                "z": 3.0,
                "status": status,
                "accepted": accepted,
                "reason": reason,
            }
        )
    return db


def test_m006_recovers_forced_decisions_and_base_reasons_from_old_rows(tmp_path):
    db = _old_store(tmp_path / "old.db")
    migrate(db)
    rows = {r["id"]: r for r in db["consensus"].rows}
    assert [rows[i]["forced"] for i in (1, 2, 3, 4)] == [0, 0, 1, 1]
    assert [rows[i]["decided_by"] for i in (1, 2, 3, 4)] == ["cnn", "cnn", "reference", "reference"]
    assert rows[2]["vote_reason"] == "support 1/3 (1 of 3 pickers), < 2: negative"
    assert rows[3]["vote_reason"].startswith("negative reference pick #7")
    assert rows[1]["rot"] is None and rows[1]["posterior"] is None
    assert {"picker_estimates", "class_decisions"} <= set(db.table_names())


def _table(n: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.DataFrame(
        {
            "tomogram": ["t"] * n,
            "particle": ["ribosome", None, "ribosome"][:n],
            "x": np.arange(n, dtype=float),
            "y": 0.0,
            "z": 0.0,
            "support": [3.0, 1.0, 2.0][:n],
            "n_pickers": [3, 1, 2][:n],
            "n_members": [3, 1, 2][:n],
            "pickers": ["a,b,c", "a", "a,b"][:n],
            "member_score": np.nan,
            "match_distance": 10.0,
            "rot": [10.0, np.nan, 30.0][:n],
            "tilt": [20.0, np.nan, 40.0][:n],
            "psi": [5.0, np.nan, 6.0][:n],
            "status": ["positive", "negative", "positive"][:n],
            "vote_score": [1.0, 1 / 3, 2 / 3][:n],
            "accepted": [True, False, True][:n],
            "reason": ["r0", "r1", "positive reference pick #1 (x)"][:n],
            "forced": [False, False, True][:n],
        }
    )
    members = pd.DataFrame(
        {
            "row": [0, 1],
            "pick_id": [1, 2],
            "picker": ["a", "a"],
            "distance": [0.0, 0.0],
            "duplicate_of": pd.array([None, None], dtype="Int64"),
        }
    )
    return table, members


def _pick_rows(store: Store) -> None:
    store.db["runs"].insert({"id": 1, "command": "aggregate", "status": "ok"})
    store.db["sources"].insert({"id": 1, "path": "p", "sha256": "s", "picker": "a"})
    for i in (1, 2):
        store.db["picks"].insert({"id": i, "source_id": 1, "tomogram": "t", "x": 0, "y": 0, "z": 0})


def test_consensus_round_trip_keeps_angles_forced_and_who_decided(tmp_path):
    with Store(tmp_path / "s.db") as store:
        _pick_rows(store)
        table, members = _table()
        first = store.add_consensus(1, table, members)
        frame = store.consensus(1)
        assert frame["id"].tolist() == [first, first + 1, first + 2]
        assert frame["forced"].tolist() == [False, False, True]
        assert frame["decided_by"].tolist() == ["vote", "vote", "reference"]
        assert frame["vote_reason"].tolist() == ["r0", "r1", "positive reference pick #1 (x)"]
        np.testing.assert_array_equal(frame["rot"].to_numpy(), table["rot"].to_numpy())
        assert frame["particle"].tolist() == ["ribosome", None, "ribosome"]


def test_set_decisions_never_overwrites_a_forced_decision(tmp_path):
    with Store(tmp_path / "s.db") as store:
        _pick_rows(store)
        table, members = _table()
        first = store.add_consensus(1, table, members)
        store.set_decisions(
            pd.DataFrame(
                {
                    "id": [first, first + 2],
                    "accepted": [False, False],
                    "score": [0.01, 0.02],
                    "reason": ["latent says no", "latent says no"],
                    "decided_by": ["latent", "latent"],
                    "posterior": [0.01, 0.02],
                }
            )
        )
        frame = store.consensus(1).set_index("id")
        assert not frame.loc[first, "accepted"] and frame.loc[first, "decided_by"] == "latent"
        assert frame.loc[first, "posterior"] == 0.01
        assert frame.loc[first + 2, "accepted"] == 1  # the reference decides
        assert frame.loc[first + 2, "decided_by"] == "reference"


def test_estimates_are_replaced_per_run(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.db["runs"].insert({"id": 1, "command": "aggregate", "status": "ok"})
        pickers = pd.DataFrame(
            {
                "picker": ["a", "b"],
                "particle": ["ribosome", "ribosome"],
                "n_reported": [10, 5],
                "recall": [0.9, np.float64(0.4)],
                "false_rate": [0.1, 0.5],
                "precision": [0.8, np.nan],
            }
        )
        store.set_estimates(1, pickers)
        store.set_estimates(1, pickers.iloc[:1])
        got, classes = store.estimates(1)
        assert got["picker"].tolist() == ["a"] and classes.empty
        assert got["recall"].tolist() == [0.9]
