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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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


# Rows per INSERT statement of :func:`insert_rows` (fewer where SQLite's limit on the values
# bound to one statement, 999 before 3.32 and 32,766 since, would be passed).
ROWS_PER_INSERT = 200


def insert_rows(
    conn: sqlite3.Connection,
    table: str,
    columns: Mapping[str, Sequence[Any]],
    shared: Mapping[str, Any] | None = None,
) -> None:
    """Insert ``len(column)`` rows given column by column (Python values as ``sqlite3``
    binds them), up to :data:`ROWS_PER_INSERT` rows per ``INSERT`` statement.

    One statement of many rows keeps SQLite's cursors on the table and its indexes where the
    last row went; a statement per row (``executemany`` of one row) looks every row up from
    the B-trees' roots again (≈ 2.5× the time for the picks). ``shared`` holds the values
    every row has (a run id, a source id, a column with no value): bound once per statement.
    The rows, their order (their ids) and every stored value are those of one ``INSERT`` a
    row; the column order of the statement does not matter to SQLite."""
    shared = dict(shared or {})
    names = list(columns)
    if not names:  # every value shared: the row count would be unknown
        raise ValueError(f"insert_rows into {table}: no column varies (how many rows?)")
    width = len(names)
    n = len(columns[names[0]])
    if not n:
        return
    flat: list[Any] = [None] * (n * width)  # the varying values, row after row
    for j, name in enumerate(names):
        values = columns[name]
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} values, not {n}")
        flat[j::width] = values
    head = [f"?{k + 1}" for k in range(len(shared))]
    into = f"INSERT INTO {table} ({', '.join([*shared, *names])}) VALUES "

    def statement(rows: int) -> str:
        groups = []
        for row in range(rows):
            first = len(shared) + row * width + 1
            groups.append(f"({','.join(head + [f'?{first + j}' for j in range(width)])})")
        return into + ",".join(groups)

    bound = list(shared.values())
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    rows = max(1, min(ROWS_PER_INSERT, (limit - len(bound)) // width))
    step = rows * width
    full = n // rows * step
    if full:
        conn.executemany(
            statement(rows), (bound + flat[start : start + step] for start in range(0, full, step))
        )
    if full < len(flat):
        conn.execute(statement(n % rows), bound + flat[full:])
