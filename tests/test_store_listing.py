"""``picks runs`` and ``picks sources`` read the store with plain sqlite3 (fast to start): no
pandas or sqlite-utils is imported, the rows equal the full Store's, a store that needs
migrating goes through the Store, and dead runs are still marked stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlite_utils import Database

from picks.core.store import Store
from picks.core.store.listing import MIGRATIONS, list_runs, list_sources
from picks.core.store.migrations import migrations

HEAVY = ("pandas", "numpy", "sqlite_utils")


def make_store(path: Path) -> None:
    with Store(path) as store:
        with store.run("import", {"files": ["a.csv"]}):
            pass
        store.db["sources"].insert(
            {"path": "/data/a.csv", "sha256": "ab" * 32, "picker": "a", "identity": "x"}
        )


def test_listing_knows_every_migration() -> None:
    assert list(MIGRATIONS) == [m.name for m in migrations._migrations]


def test_listing_commands_import_neither_pandas_nor_sqlite_utils(tmp_path: Path) -> None:
    db = tmp_path / "picks.db"
    make_store(db)
    probe = (
        "import sys, json\n"
        "from picks.cli import main\n"
        "sys.argv = ['picks', sys.argv[1], '--db', sys.argv[2], '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    for command in ("runs", "sources"):
        done = subprocess.run(
            [sys.executable, "-c", probe, command, str(db)],
            capture_output=True,
            text=True,
            env={**os.environ, "PICKS_DEBUG": "1"},
            check=True,
        )
        assert json.loads(done.stderr.strip().splitlines()[-1]) == [], command
        assert json.loads(done.stdout)  # and it listed the rows


def test_listing_rows_equal_the_store_and_old_stores_migrate(tmp_path: Path) -> None:
    db = tmp_path / "picks.db"
    make_store(db)
    with Store(db) as store:
        assert list_runs(db) == store.runs()
        assert list_sources(db) == store.sources()
    # a store from before m008: the full Store migrates it, the rows come back the same
    old = tmp_path / "old.db"
    raw = Database(old)
    migrations.apply(raw, stop_before="m008_export_members")
    raw["runs"].insert({"id": 1, "command": "aggregate", "status": "ok"})
    raw.close()
    assert [r["id"] for r in list_runs(old)] == [1]
    assert {m.name for m in migrations.applied(Database(old))} == set(MIGRATIONS)


def test_listing_marks_dead_runs_stale(tmp_path: Path) -> None:
    db = tmp_path / "picks.db"
    make_store(db)
    with Store(db) as store:
        run_id = store.start_run("aggregate", {})
        # a process that is gone: the pid of a finished child
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        store.db["runs"].update(run_id, {"pid": int(child.stdout), "process_start": "0"})
        store._live_runs.discard(run_id)
    rows = {r["id"]: r for r in list_runs(db)}
    assert rows[run_id]["status"] == "stale"
    assert "ended without finishing" in rows[run_id]["message"]
