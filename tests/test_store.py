"""Provenance store: schema, migrations, transactions, idempotent import."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlite_utils import Database

from picks.core import picks as canonical
from picks.core.errors import InputFormatError, SchemaTooNew
from picks.core.store import Store
from picks.core.store.migrations import migrate, migrations, schema_version
from picks.workflows.importing import import_file

CSV = "id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,1500.5,200,300\n1,TS_1,apo-ferritin,10,20,30.25\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_migrate_creates_all_tables_and_is_idempotent():
    db = Database(memory=True)
    migrate(db)
    migrate(db)
    expected = {
        "tomograms",
        "runs",
        "sources",
        "picks",
        "consensus",
        "consensus_members",
        "noise",
        "models",
        "scores",
        "exports",
        "dropped",
    }
    assert expected <= set(db.table_names())
    assert schema_version(db) == len(migrations._migrations)
    assert db["picks"].columns_dict["x"] is float
    assert [i.columns for i in db["sources"].indexes if i.unique] == [["identity"]]


def test_database_from_newer_picks_is_refused(tmp_path: Path):
    db = Database(tmp_path / "new.db")
    migrate(db)
    db["_sqlite_migrations"].insert(
        {"migration_set": "picks", "name": "m999_future", "applied_at": "2099-01-01"}
    )
    with pytest.raises(SchemaTooNew):
        migrate(db)


def test_store_uses_wal(tmp_path: Path):
    with Store(tmp_path / "p.db") as store:
        assert store.db.journal_mode == "wal"


def test_import_then_reimport_is_noop(store: Store, registry, tmp_path: Path):
    path = write(tmp_path / "sub.csv", CSV)
    first = import_file(store, path, registry)
    again = import_file(store, path, registry, picker="other-label")
    assert not first.skipped and first.n_picks == 2
    assert again.skipped and again.source_id == first.source_id
    assert store.count("sources") == 1 and store.count("picks") == 2


def test_m005_rekeys_older_sources_so_reimport_stays_a_no_op(tmp_path: Path, registry):
    """A store whose sources carry the m004 key (bytes + tomograms) before m005 ran, with the
    same file imported twice (an option that changed nothing made a second source then)."""
    from picks.core.store.migrations import source_identity

    db_path = tmp_path / "old.db"
    path = write(tmp_path / "sub.csv", CSV)
    with Store(db_path) as store:
        first = import_file(store, path, registry)
        row = store.get_source(first.source_id)
        store.db["sources"].update(
            first.source_id, {"identity": source_identity(row["sha256"], ["TS_1"])}
        )
        frame = pd.DataFrame(list(store.db["picks"].rows_where("source_id = ?", [1])))
        store.add_source(
            {"path": str(path), "sha256": row["sha256"], "picker": "p", "identity": "old-2"},
            canonical.make(frame[["tomogram", "particle", "x", "y", "z", "record"]]),
        )
        store.db.execute(
            "DELETE FROM _sqlite_migrations WHERE name = 'm005_source_identity_content'"
        )
        store.db.conn.commit()
    with Store(db_path) as store:  # migrates again: m005 re-keys both, without a clash
        first_key = store.get_source(first.source_id)["identity"]
        assert "|picks=" in first_key and "duplicate" not in first_key
        assert "duplicate-of-earlier-import=2" in store.get_source(2)["identity"]
        again = import_file(store, path, registry)
        assert again.skipped and again.source_id == first.source_id
        assert store.count("sources") == 2


def test_imported_values_and_provenance(store: Store, registry, tmp_path: Path):
    path = write(tmp_path / "sub.csv", CSV)
    result = import_file(store, path, registry, picker="yolo")
    frame = store.picks()
    assert list(frame["x"]) == [1500.5, 10.0]
    assert list(frame["record"]) == [2, 3]
    assert frame["original"].iloc[1] == "1,TS_1,apo-ferritin,10,20,30.25"
    source = store.get_source(result.source_id)
    assert source["picker"] == "yolo" and source["adapter"] == "czii-csv"
    assert len(source["sha256"]) == 64 and source["size"] == path.stat().st_size


def test_identical_bytes_in_different_tomograms_are_different_sources(
    store: Store, registry, tmp_path: Path
):
    """A file whose tomogram comes from its name is a new source when the name differs."""
    text = "id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,1,2,3\n"
    a = write(tmp_path / "a.csv", text)
    first = import_file(store, a, registry)
    copy = write(tmp_path / "copy.csv", text)  # a copy elsewhere: same bytes, same tomograms
    again = import_file(store, copy, registry)
    assert again.skipped and again.source_id == first.source_id
    xyz = "1 2 3\n"
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    one = write(tmp_path / "run1" / "TS_A.coords", xyz)
    two = write(tmp_path / "run2" / "TS_B.coords", xyz)
    r1 = import_file(store, one, registry, voxel_size=10)
    r2 = import_file(store, two, registry, voxel_size=10)
    assert not r1.skipped and not r2.skipped and r1.source_id != r2.source_id
    assert import_file(store, one, registry, voxel_size=10).skipped


def test_failed_import_leaves_store_unchanged(store: Store, registry, tmp_path: Path):
    good = write(tmp_path / "good.csv", CSV)
    import_file(store, good, registry)
    bad = write(tmp_path / "bad.csv", CSV + "2,TS_1,ribosome,12,abc,3\n")
    with pytest.raises(InputFormatError) as info:
        import_file(store, bad, registry)
    assert "bad.csv, line 4" in str(info.value) and "'abc'" in str(info.value)
    assert store.count("sources") == 1 and store.count("picks") == 2


def test_transaction_rolls_back_everything(store: Store):
    picks = canonical.make({"tomogram": ["t"], "x": [1.0], "y": [2.0], "z": [3.0], "record": [1]})
    with pytest.raises(RuntimeError), store.transaction():
        store._insert_source(
            {"path": "a", "sha256": "0" * 64, "size": 1, "adapter": "x", "picker": "p"}, picks
        )
        raise RuntimeError("boom")
    assert store.count("sources") == 0 and store.count("picks") == 0


def test_bulk_insert_keeps_nan_as_null(store: Store):
    picks = canonical.make(
        {
            "tomogram": ["t", "t"],
            "x": [1.0, 2.0],
            "y": [0.0, 0.0],
            "z": [0.0, 0.0],
            "record": [1, 2],
            "score": [0.5, float("nan")],
        }
    )
    store.add_source(
        {"path": "a", "sha256": "1" * 64, "size": 1, "adapter": "x", "picker": "p"}, picks
    )
    rows = list(store.db.query("SELECT score FROM picks ORDER BY id"))
    assert rows == [{"score": 0.5}, {"score": None}]
    frame = store.picks()
    assert pd.isna(frame["score"].iloc[1])


def test_run_records_status_and_failure(store: Store):
    with store.run("test", {"a": 1}, seed=3) as run_id:
        pass
    with pytest.raises(ValueError), store.run("test", {}, seed=1):
        raise ValueError("bad things")
    runs = store.runs()
    assert runs[0]["id"] == run_id and runs[0]["status"] == "ok" and runs[0]["seed"] == 3
    assert runs[1]["status"] == "failed" and "bad things" in runs[1]["message"]
