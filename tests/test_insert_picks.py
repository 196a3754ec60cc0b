"""Store.insert_picks (many rows per INSERT, shared values bound once) stores what one INSERT
a row stores: the same rows, ids, values and SQLite types."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from picks.core import picks as canonical
from picks.core.store import Store

COLUMNS = ["source_id", *canonical.COLUMNS]


def _reference_insert(store: Store, source_id: int, picks: pd.DataFrame) -> None:
    """The insert before multi-row statements: one INSERT a row, NaN stored as NULL."""
    values = [np.full(len(picks), source_id, dtype=object)]
    for column in canonical.COLUMNS:
        series = picks[column]
        if canonical.COLUMNS[column] == "float64":
            array = series.to_numpy(dtype=float).astype(object)
            array[np.isnan(series.to_numpy(dtype=float))] = None
            values.append(array)
        elif column == "record":
            values.append(series.to_numpy(dtype=np.int64).astype(object))
        else:
            values.append(series.to_numpy(dtype=object))
    sql = f"INSERT INTO picks ({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"
    store.db.conn.executemany(sql, zip(*[v.tolist() for v in values], strict=True))


def _rows(store: Store) -> list[tuple]:
    typed = ", ".join(f"{c}, typeof({c})" for c in ["id", *COLUMNS])
    rows = store.db.conn.execute(f"SELECT {typed} FROM picks ORDER BY id").fetchall()
    # -0.0 and 0.0 compare equal: compare the bits of floats
    return [tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows]


def _frame(rng: np.random.Generator, n: int, kind: str) -> pd.DataFrame:
    data = {
        "tomogram": rng.choice(["TS_01", "TS_02", "β"], n).astype(object),
        "particle": np.array(rng.choice(["ribosome", None, "apo"], n), dtype=object),
        "x": rng.normal(0, 1000, n),
        "y": rng.uniform(0, 10, n),
        "z": np.where(rng.random(n) < 0.3, -0.0, rng.normal(size=n)),
        "score": np.where(rng.random(n) < 0.4, np.nan, rng.random(n)),
        "record": rng.permutation(n) + 2,
        "original": [f"line {i}, 'quoted' \"text\"" for i in range(n)],
    }
    constants = {"particle_field": "particle_type", "score_field": "score"}
    if kind == "same":  # every row alike but the record: most columns shared
        for key in ("tomogram", "particle", "original"):
            data[key] = np.full(n, data[key][0] if n else "", dtype=object)
        for key in ("x", "y", "z", "score"):
            data[key] = np.full(n, data[key][0] if n else 0.0)
    if kind == "angles":
        data.update(rot=rng.normal(size=n), tilt=np.full(n, 1.5), psi=np.full(n, np.nan))
        constants["angle_convention"] = "relion"
    frame = canonical.make(data, **constants)
    if kind == "text":  # pandas text columns (as a CSV reader's chunk has them)
        for key in ("tomogram", "particle"):
            frame[key] = frame[key].astype("str")
    return frame


@pytest.mark.parametrize("kind", ["mixed", "same", "angles", "text"])
@pytest.mark.parametrize("n", [1, 2, 199, 200, 201, 457])
def test_same_rows_as_one_insert_a_row(kind: str, n: int) -> None:
    rng = np.random.default_rng(n)
    frames = [_frame(rng, n, kind), _frame(rng, max(n // 3, 1), kind)]
    with Store(memory=True) as fast, Store(memory=True) as slow:
        for store in (fast, slow):
            store.db.conn.execute(
                "INSERT INTO sources (id, path, sha256, identity) VALUES (7, 'p', 's', 'i')"
            )
        for frame in frames:
            fast.insert_picks(7, frame)
            _reference_insert(slow, 7, frame)
        assert _rows(fast) == _rows(slow)
        assert len(_rows(fast)) == sum(map(len, frames))


def test_under_a_low_limit_of_bound_values() -> None:
    rng = np.random.default_rng(5)
    frame = _frame(rng, 123, "mixed")
    with Store(memory=True) as fast, Store(memory=True) as slow:
        fast.db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 40)  # 4 rows a statement
        for store in (fast, slow):
            store.db.conn.execute(
                "INSERT INTO sources (id, path, sha256, identity) VALUES (1, 'p', 's', 'i')"
            )
        fast.insert_picks(1, frame)
        _reference_insert(slow, 1, frame)
        assert _rows(fast) == _rows(slow)


def test_a_streamed_import_keeps_temporary_files_in_memory(tmp_path) -> None:
    with Store(tmp_path / "picks.db") as store:
        conn = store.db.conn
        before = conn.execute("PRAGMA temp_store").fetchone()[0]
        with store.journals_in_memory():
            assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == before
        conn.execute("CREATE TEMP TABLE kept (x)")  # TEMP tables: left alone
        with store.journals_in_memory():
            assert conn.execute("PRAGMA temp_store").fetchone()[0] == before
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
