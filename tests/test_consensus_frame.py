"""``Store.add_consensus_frame`` gives exactly what ``Store.consensus`` reads back (the
aggregate keeps it instead of reading a million rows again), and ``Store.picks`` /
``Store.consensus`` read column-wise with the dtypes ``from_records`` gave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picks.core.store import Store
from picks.core.store.frames import read_frame, read_frame_blocks
from picks.workflows.aggregate import aggregate

HEADER = "id,experiment,particle_type,x,y,z,score\n"


def _write(path: Path, rng: np.random.Generator, n: int, shift: float) -> Path:
    lines = [HEADER]
    for i in range(n):
        t = f"TS_{i % 3}"
        p = ("ribosome", "apo-ferritin", "thyroglobulin")[i % 3]
        x, y, z = rng.uniform(200, 4000, 3).round(1) + shift
        lines.append(f"{i},{t},{p},{x},{y},{z},{rng.uniform():.3f}\n")
    path.write_text("".join(lines))
    return path


@pytest.fixture
def picker_files(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(3)
    base = _write(tmp_path / "a.csv", rng, 120, 0.0)
    text = base.read_text().splitlines(keepends=True)
    (tmp_path / "b.csv").write_text("".join(text[:90]))  # b and c find most of a's picks
    (tmp_path / "c.csv").write_text("".join(text[:1] + text[30:]))
    _write(tmp_path / "d.csv", rng, 40, 7.0)
    (tmp_path / "pos.csv").write_text("".join(text[:1] + text[100:110]))
    return [f"{k}={tmp_path / f'{k}.csv'}" for k in "abcd"]


@pytest.mark.parametrize(
    "options",
    [
        {"method": "vote"},
        {"method": "latent"},
        {"method": "vote", "class_agnostic": True},
        {"method": "vote", "positives": "pos"},
    ],
)
@pytest.mark.parametrize("block", [None, 7])
def test_kept_frame_equals_stored(tmp_path, picker_files, monkeypatch, options, block):
    if block is not None:
        # rows inserted a block at a time: the blocks' seams change nothing
        monkeypatch.setattr("picks.core.store.consensus.CONSENSUS_BLOCK", block)
    kept = []
    original = Store.add_consensus_frame

    def keep(self, run_id, table, members):
        # SQLite gives -0.0 back as 0.0 (integral REAL values are stored as integers)
        table.loc[0, "x"] = -0.0
        frame = original(self, run_id, table, members)
        kept.append((run_id, frame.copy()))
        return frame

    monkeypatch.setattr(Store, "add_consensus_frame", keep)
    options = dict(options)
    if options.pop("positives", None):
        options["positives"] = [tmp_path / "pos.csv"]
    with Store(tmp_path / "picks.db") as store:
        result = aggregate(
            store, picker_files, out=tmp_path / "out", formats=["csv"], report=False, **options
        )
        (run_id, frame) = kept[0]
        assert run_id == result.run_id and len(frame) == result.n_consensus > 0
        stored = store.consensus(run_id)
    pd.testing.assert_frame_equal(frame, stored, check_exact=True)
    assert (np.signbit(frame["x"].to_numpy()) == np.signbit(stored["x"].to_numpy())).all()


def test_read_frame_matches_from_records(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (i INTEGER, s TEXT, f REAL, g REAL, n INTEGER, o)")
    rows = [
        (1, "a", 1.5, None, None, "x"),
        (2, None, "2.5", 3.0, 4, 5),
        (3, "c", "no", 1.0, 5, 6.5),
    ]
    conn.executemany("INSERT INTO t VALUES (?,?,?,?,?,?)", rows)
    sql = "SELECT * FROM t ORDER BY i"
    cursor = conn.execute(sql)
    expected = pd.DataFrame.from_records(
        cursor.fetchall(), columns=[d[0] for d in cursor.description]
    )
    for column in ("f", "g"):
        expected[column] = pd.to_numeric(expected[column], errors="coerce").astype(float)
    got = read_frame(conn.execute(sql), floats=("f", "g"))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    empty = read_frame(conn.execute(sql + " LIMIT 0"), floats=("f",))
    assert list(empty.columns) == list(expected.columns) and empty["f"].dtype == float
    # block-wise (blocks of 2 rows: a seam inside the table, the last block short)
    for block in (1, 2, 5):
        blocks = read_frame_blocks(conn.execute(sql), floats=("f", "g"), block=block)
        pd.testing.assert_frame_equal(blocks, expected, check_exact=True)
    empty = read_frame_blocks(conn.execute(sql + " LIMIT 0"), floats=("f",), block=2)
    assert list(empty.columns) == list(expected.columns) and empty["f"].dtype == float
