"""Fast read paths for the listing commands (``picks runs``, ``picks sources``): plain sqlite3,
no pandas or sqlite-utils, so they start in a fraction of the time a full :class:`Store` takes.

They read a store whose schema is current. A store that still needs migrating (or comes from
a newer picks) is opened with the full :class:`picks.core.store.Store`, which migrates it (or
refuses it) as every other command does; the rows are the same either way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from picks.core.store.liveness import busy_retry, busy_timeout, find_stale, stale_updates

# Every migration of picks.core.store.migrations, in order. Kept here so this module need not
# import the migrations (sqlite-utils); tests/test_store_listing.py checks the two agree.
MIGRATIONS = (
    "m001_initial",
    "m002_dropped",
    "m003_member_duplicates",
    "m004_source_identity",
    "m005_source_identity_content",
    "m006_decisions_as_data",
    "m007_run_liveness",
    "m008_export_members",
)


def _connect_current(path: Path) -> sqlite3.Connection | None:
    """A connection to the store at ``path`` when its schema is exactly the current one."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout())
    try:
        applied = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'picks'"
            ).fetchall()
        }
    except sqlite3.OperationalError:  # no migrations table yet, or a lock: the full path
        conn.close()
        return None
    if applied != set(MIGRATIONS):
        conn.close()
        return None
    conn.row_factory = sqlite3.Row
    return conn


def _rows(conn: sqlite3.Connection, table: str) -> list[dict]:
    return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()]


def list_runs(path: str | Path) -> list[dict]:
    """Every run, by id, after marking runs whose process died ``stale`` (as
    :meth:`picks.core.store.Store.runs` does)."""
    conn = _connect_current(Path(path))
    if conn is None:
        from picks.core.store import Store

        with Store(path) as store:
            return store.runs()
    try:
        stale = find_stale(conn, set())
        if stale:
            sql, rows = stale_updates(stale)

            def mark() -> None:
                with conn:  # one transaction, taken with the write lock first
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(sql, rows)

            conn.isolation_level = None  # BEGIN is ours
            busy_retry(mark)
        return _rows(conn, "runs")
    finally:
        conn.close()


def list_sources(path: str | Path) -> list[dict]:
    """Every imported source, by id."""
    conn = _connect_current(Path(path))
    if conn is None:
        from picks.core.store import Store

        with Store(path) as store:
            return store.sources()
    try:
        return _rows(conn, "sources")
    finally:
        conn.close()
