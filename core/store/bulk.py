"""Bulk inserts whose references are checked in numpy instead of row by row by SQLite.

With ``PRAGMA foreign_keys = ON`` SQLite looks up the parent row of every reference of every
inserted row: for the million ``consensus_members`` rows of a 1 M-pick aggregate (two
references each: the consensus pick, the raw pick, in random order), that is about half of
the insert's time. (Not for ``export_members``: its references are sorted, SQLite's look-ups
stay in cached pages and a range read per file costs more, measured.) :func:`references_checked_here` turns the row-by-row check
off for one transaction, and :func:`require_ids` checks the same thing for the whole
column at once (one range read of the parent's ids, ``np.isin``): a reference to a missing
row is still an error, and the transaction is rolled back. Nothing else changes: the
transaction, its durability and the schema are the same.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import numpy as np

from picks.core.arrays import distinct


@contextlib.contextmanager
def references_checked_here(conn: sqlite3.Connection) -> Iterator[None]:
    """Around a transaction (the pragma is a no-op inside one: then nothing changes): the
    inserts of the block do not check their references; the caller does (:func:`require_ids`).
    """
    if conn.in_transaction or not conn.execute("PRAGMA foreign_keys").fetchone()[0]:
        yield
        return
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def require_ids(conn: sqlite3.Connection, table: str, ids: np.ndarray, what: str) -> None:
    """Raise ``sqlite3.IntegrityError`` (as the foreign key would) unless every id in ``ids``
    is a row of ``table`` (whose ``id`` is its INTEGER PRIMARY KEY)."""
    ids = distinct(np.asarray(ids, dtype=np.int64))
    if not len(ids):
        return
    # A range with no gap holds every id in it: one count, no million-row read (the usual
    # case: picks and consensus ids are consecutive and never deleted).
    lo, hi = int(ids[0]), int(ids[-1])
    count = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE id BETWEEN ? AND ?", [lo, hi])
    if count.fetchone()[0] == hi - lo + 1:
        return
    rows = conn.execute(
        f"SELECT id FROM {table} WHERE id BETWEEN ? AND ? ORDER BY id",
        [int(ids[0]), int(ids[-1])],
    ).fetchall()
    present = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    missing = ids[~np.isin(ids, present, assume_unique=True)]
    if len(missing):
        raise sqlite3.IntegrityError(
            f"FOREIGN KEY constraint failed: {what} {int(missing[0])} is not in {table}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
