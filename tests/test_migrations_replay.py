"""Migrations replay: a store written at every historical schema (m001 … the one before the
last) is upgraded to the current one with its rows intact, and the current schema is pinned
exactly by a snapshot (tests/data/schema.sql).

The old stores are built by the old code path itself: the migrations are applied up to the
historical schema (``stop_before``), then a run, two sources, picks, a consensus pick with
its members, a score, noise, a model, an export and a dropped row are written with the
columns that schema has — what a picks of that version wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from picks.core.store import Store
from picks.core.store.audit import audit_consensus, audit_pick
from picks.core.store.migrations import migrate, migrations

SNAPSHOT = Path(__file__).parent / "data" / "schema.sql"
NAMES = [m.name for m in migrations._migrations]

# Every column any schema had, with the value an old picks would have written. Columns a
# historical schema lacks are left out when its rows are written.
ROWS = {
    "tomograms": [
        {
            "name": "TS_01",
            "path": "/data/TS_01.mrc",
            "voxel_size": 10.0,
            "shape": "[64, 64, 32]",
            "registered_at": "2026-01-01T00:00:00+00:00",
        }
    ],
    "runs": [
        {
            "id": 1,
            "command": "aggregate",
            "method": "vote",
            "params": '{"out": "/data/consensus"}',
            "version": "0.0.1",
            "seed": 0,
            "started_at": "2026-01-01T00:00:00+00:00",
            "ended_at": "2026-01-01T00:01:00+00:00",
            "status": "ok",
            "message": "",
        }
    ],
    "sources": [
        {
            "id": i,
            "path": f"/data/{label}.csv",
            "sha256": f"{i:064x}",
            "size": 100,
            "adapter": "czii-csv",
            "adapter_version": "0.0.1",
            "picker": label,
            "role": role,
            "options": "{}",
            "warnings": "[]",
            "n_picks": 1,
            "imported_at": "2026-01-01T00:00:00+00:00",
            "run_id": 1,
            "identity": f"{i:064x}:TS_01",
        }
        for i, label, role in ((1, "cryolo", "picker"), (2, "hand", "positive"))
    ],
    "picks": [
        {
            "id": i,
            "source_id": i,
            "record": 1,
            "tomogram": "TS_01",
            "particle": "ribosome",
            "x": 100.0 + i,
            "y": 200.0,
            "z": 50.0,
            "score": 0.9,
            "score_field": "score",
            "particle_field": "particle_type",
            "rot": None,
            "tilt": None,
            "psi": None,
            "angle_convention": None,
            "original": '{"x": "100"}',
        }
        for i in (1, 2)
    ],
    "consensus": [
        {
            "id": 1,
            "run_id": 1,
            "tomogram": "TS_01",
            "particle": "ribosome",
            "x": 101.5,
            "y": 200.0,
            "z": 50.0,
            "support": 1.0,
            "n_members": 1,
            "pickers": "cryolo",
            "score": 0.97,
            "vote_score": 1.0,
            "cnn_score": 0.97,
            "status": "positive",
            "accepted": 1,
            "reason": "cnn 0.970 ≥ 0.059; positive reference pick (hand) within 1.0 Å",
        }
    ],
    "consensus_members": [
        {"consensus_id": 1, "pick_id": 1, "picker": "cryolo", "distance": 0.5, "duplicate_of": None}
    ],
    "noise": [{"id": 1, "run_id": 1, "tomogram": "TS_01", "x": 10.0, "y": 10.0, "z": 10.0}],
    "models": [
        {
            "id": 1,
            "run_id": 1,
            "path": "/data/models/m.keras",
            "sha256": "ab" * 32,
            "card": '{"classes": ["noise", "ribosome"]}',
            "created_at": "2026-01-01T00:00:30+00:00",
        }
    ],
    "scores": [{"consensus_id": 1, "model_id": 1, "particle": "ribosome", "score": 0.97}],
    "exports": [
        {
            "id": 1,
            "run_id": 1,
            "path": "/data/consensus/relion5/ribosome.star",
            "format": "relion5",
            "sha256": "cd" * 32,
            "n_rows": 1,
            "consensus_ids": "1",
            "created_at": "2026-01-01T00:01:00+00:00",
        }
    ],
    "dropped": [
        {"id": 1, "run_id": 1, "kind": "noise", "ref_id": 1, "stage": "cnn-train", "reason": "edge"}
    ],
}


def schema(db: Database) -> str:
    """Every table, index and trigger statement, in a fixed order (the migrations' own
    bookkeeping table excepted: it records dates)."""
    rows = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE '_sqlite_migrations%' ORDER BY type, name"
    ).fetchall()
    return "\n".join(f"-- {kind} {name}\n{sql};" for kind, name, sql in rows) + "\n"


def old_store(path: Path, last: str) -> Database:
    """A store at the schema whose last migration is ``last``, with one row of everything."""
    db = Database(path)
    index = NAMES.index(last)
    if index + 1 < len(NAMES):
        migrations.apply(db, stop_before=NAMES[index + 1])
    else:
        migrations.apply(db)
    for table, rows in ROWS.items():
        if not db[table].exists():
            continue
        columns = {c.name for c in db[table].columns}
        db[table].insert_all([{k: v for k, v in r.items() if k in columns} for r in rows])
    return db


def test_there_is_a_replay_for_every_historical_schema() -> None:
    assert NAMES[:8] == [
        "m001_initial",
        "m002_dropped",
        "m003_member_duplicates",
        "m004_source_identity",
        "m005_source_identity_content",
        "m006_decisions_as_data",
        "m007_run_liveness",
        "m008_export_members",
    ]


@pytest.mark.parametrize("last", NAMES[:-1])
def test_old_store_migrates_to_the_current_schema(tmp_path: Path, last: str) -> None:
    old = old_store(tmp_path / "old.db", last)
    counts = {t: old[t].count for t in ROWS if old[t].exists()}
    old.close()
    fresh = Database(tmp_path / "fresh.db")
    migrate(fresh)

    with Store(tmp_path / "old.db") as store:
        assert schema(store.db) == schema(fresh)
        assert [m.name for m in migrations.applied(store.db)] == NAMES
        for table, n in counts.items():
            assert store.db[table].count == n, table  # nothing lost
        source = store.get_source(1)
        assert source["identity"].startswith(f"{1:064x}:TS_01")  # m004/m005 keyed it
        consensus = store.consensus(1)
        assert consensus["id"].tolist() == [1]
        if NAMES.index(last) < NAMES.index("m006_decisions_as_data"):
            # m006 read the decision back from the old reason once: forced by the reference,
            # and the vote's reason without the CNN's prefix
            row = store.db["consensus"].get(1)
            assert row["forced"] == 1 and row["decided_by"] == "reference"
            assert row["vote_reason"] == "positive reference pick (hand) within 1.0 Å"
        # audit of an old run still works
        report = audit_consensus(store, 1)
        assert report["consensus"]["id"] == 1
        assert [m["pick_id"] for m in report["members"]] == [1]
        assert audit_pick(store, 1)["pick"]["id"] == 1
        # m008: the export's compact range "1" became one export_members row
        assert store.export_members(1) == [1]
        assert [e["id"] for e in report["exports"]] == [1]


def test_schema_snapshot_is_exact(tmp_path: Path) -> None:
    """The current schema, statement by statement. After adding a migration, write the new
    snapshot with ``python tests/test_migrations_replay.py`` and review the diff."""
    db = Database(tmp_path / "fresh.db")
    migrate(db)
    assert schema(db) == SNAPSHOT.read_text(encoding="utf-8")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "fresh.db")
        migrate(db)
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(schema(db), encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
