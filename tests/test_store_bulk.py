"""Bulk inserts check their references per column (core/store/bulk.py), not per row: a
reference to a missing row is still refused, the transaction rolled back, and the
connection's foreign keys are on again afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picks.core.store import Store
from picks.workflows.aggregate import aggregate

HEADER = "id,experiment,particle_type,x,y,z,score\n"


def _run(tmp_path: Path, store: Store) -> int:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [f"{i},TS_01,ribosome,{100 + 400 * i},200,300,0.5\n" for i in range(4)]
    (tmp_path / "a.csv").write_text(HEADER + "".join(rows))
    (tmp_path / "b.csv").write_text(HEADER + "".join(rows[:3]))
    inputs = [f"a={tmp_path / 'a.csv'}", f"b={tmp_path / 'b.csv'}"]
    return aggregate(store, inputs, out=tmp_path / "out", method="vote", report=False).run_id


def _members(pick_id: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": [0],
            "pick_id": [pick_id],
            "picker": ["a"],
            "distance": [0.0],
            "duplicate_of": [None],
        }
    )


def _foreign_keys(store: Store) -> int:
    return store.db.conn.execute("PRAGMA foreign_keys").fetchone()[0]


def test_members_of_missing_picks_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        run_id = _run(tmp_path, store)
        table = store.consensus(run_id).head(1)
        before = (store.count("consensus"), store.count("consensus_members"))
        pick = int(store.picks()["id"].max())
        with pytest.raises(sqlite3.IntegrityError, match=f"pick {pick + 5} is not in picks"):
            store.add_consensus(run_id, table, _members(pick + 5))
        assert (store.count("consensus"), store.count("consensus_members")) == before
        assert _foreign_keys(store) == 1
        with pytest.raises(sqlite3.IntegrityError, match="run 999 is not in runs"):
            store.add_consensus(999, table, _members(pick))
        first = store.add_consensus(run_id, table, _members(pick))  # a real pick: stored
        assert store.count("consensus_members") == before[1] + 1
        exported = (store.count("exports"), store.count("export_members"))
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):  # SQLite's own check
            store.add_exports([(run_id, "x.csv", "csv", "0" * 64, np.array([first + 7]), "t")])
        assert (store.count("exports"), store.count("export_members")) == exported
        ids = store.add_exports([(run_id, "y.csv", "csv", "0" * 64, np.array([first]), "t")])
        assert store.export_members(ids[0]) == [first]
        assert _foreign_keys(store) == 1
        # a foreign key is still checked by SQLite outside these bulk inserts
        with pytest.raises(sqlite3.IntegrityError):
            store.db.conn.execute(
                "INSERT INTO consensus_members (consensus_id, pick_id) VALUES (?, ?)",
                [first, pick + 99],
            )


def test_members_inserted_in_blocks_are_the_same_rows(tmp_path: Path, monkeypatch) -> None:
    from picks.core.store import consensus as tables

    def members(name: str) -> list[tuple]:
        with Store(tmp_path / name / "p.db") as store:
            _run(tmp_path / name, store)
            return store.db.conn.execute(
                "SELECT * FROM consensus_members ORDER BY consensus_id, pick_id"
            ).fetchall()

    whole = members("whole")
    monkeypatch.setattr(tables, "MEMBER_BLOCK", 2)
    assert members("blocks") == whole and len(whole) == 7


class _NoJson:
    """A connection without SQLite's JSON functions (as some builds are)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args):
        if "json_each" in sql:
            raise sqlite3.OperationalError("no such table: json_each")
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, rows):
        return self.conn.executemany(sql, rows)


@pytest.mark.parametrize("block", [2, 1_000_000])
@pytest.mark.parametrize("json", [True, False])
def test_export_members_rows(tmp_path, monkeypatch, block: int, json: bool) -> None:
    """export_members rows: one per distinct id, ascending, in that order (rowids), whatever
    the order given, in blocks, with or without json_each."""
    from picks.core.store import consensus

    monkeypatch.setattr(consensus, "EXPORT_MEMBER_BLOCK", block)
    if not json:
        insert = consensus._insert_members
        monkeypatch.setattr(
            consensus, "_insert_members", lambda conn, e, m: insert(_NoJson(conn), e, m)
        )
    with Store(tmp_path / "picks.db") as store:
        run_id = _run(tmp_path, store)
        ids = sorted(store.consensus(run_id)["id"].astype(int))
        given = [ids[2], ids[0], ids[2], ids[1]]  # unsorted, one twice
        before = store.count("export_members")
        new = store.add_exports(
            [
                (run_id, "a.csv", "csv", "0" * 64, np.array(given), "t"),
                (run_id, "b.csv", "csv", "0" * 64, np.array(ids), "t"),
                (run_id, "c.csv", "csv", "0" * 64, np.array([], dtype=np.int64), "t"),
            ]
        )
        rows = store.db.conn.execute(
            "SELECT export_id, consensus_id FROM export_members ORDER BY rowid"
        ).fetchall()[before:]
        assert rows == [(new[0], i) for i in ids[:3]] + [(new[1], i) for i in ids]
        n_rows = store.db.conn.execute(
            f"SELECT n_rows FROM exports WHERE id IN ({','.join(map(str, new))}) ORDER BY id"
        ).fetchall()
        assert n_rows == [(3,), (len(ids),), (0,)]
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            store.add_exports([(run_id, "d.csv", "csv", "0" * 64, np.array([ids[-1] + 9]), "t")])
