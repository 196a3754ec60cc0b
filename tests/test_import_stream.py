"""Streamed import: a file read in chunks is stored exactly as one read in one piece, in one
transaction (a failure in any chunk leaves the store unchanged), with errors naming the true
line across chunk boundaries."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picks.core import picks as canonical
from picks.core.errors import InputFormatError
from picks.core.picks import ContentDigest, content_digest
from picks.core.store import Store
from picks.workflows.importing import import_file, read_file

HEADER = "id,experiment,particle_type,x,y,z,score"


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    tomos = ["TS_02", "TS_01", "TS_03"]
    classes = ["ribosome", "apo-ferritin", "", "beta-amylase"]
    rows = []
    for i in range(n):
        x, y, z = rng.uniform(0, 6000, 3)
        score = "" if i % 5 == 0 else f"{rng.random():.5f}"
        rows.append(f"{i},{tomos[i % 3]},{classes[i % 4]},{x:.3f},{y:.3f},{z:.3f},{score}")
    return rows


def _write(path: Path, rows: list[str], *, blank_every: int = 0) -> Path:
    lines = [HEADER]
    for i, row in enumerate(rows):
        if blank_every and i % blank_every == 0:
            lines.append("")  # blank lines are skipped but still count for line numbers
        lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return path


def _stored(store: Store) -> pd.DataFrame:
    return store.picks(roles=None).drop(columns=["id"])


def test_streamed_import_equals_one_shot(tmp_path: Path, registry) -> None:
    path = _write(tmp_path / "big.csv", _lines(95), blank_every=7)
    with Store(tmp_path / "streamed.db") as streamed, Store(tmp_path / "whole.db") as whole:
        calls = []
        insert = streamed.insert_picks
        streamed.insert_picks = lambda sid, p: (len(p) and calls.append(len(p)), insert(sid, p))
        a = import_file(streamed, path, registry, particle="ribosome", chunk_size=10)
        b = import_file(whole, path, registry, particle="ribosome", chunk_size=sys.maxsize)
        assert calls == [10] * 9 + [5]  # really streamed: ten chunks
        assert (a.n_picks, a.warnings) == (b.n_picks, b.warnings) == (95, [])
        pd.testing.assert_frame_equal(_stored(streamed), _stored(whole))
        sa, sb = streamed.get_source(a.source_id), whole.get_source(b.source_id)
        assert sa["identity"] == sb["identity"] and sa["n_picks"] == sb["n_picks"] == 95
        # the identity's digest is the one of the picks read in one piece
        frame = read_file(registry.get("czii-csv"), _ctx(path))
        assert sa["identity"].endswith(f"|picks={content_digest(frame)}")
        # re-importing is a no-op, whatever the chunk size
        again = import_file(streamed, path, registry, particle="ribosome", chunk_size=3)
        assert again.skipped and again.source_id == a.source_id
        assert streamed.count("picks") == 95
        # other reading options give other picks: a new source (read twice: digest, store)
        other = import_file(streamed, path, registry, particle="lysozyme", chunk_size=10)
        assert not other.skipped and streamed.count("picks") == 190


def _ctx(path: Path):
    from picks.plugins.adapter import ReadContext

    return ReadContext(path=path, particle="ribosome")


def test_failure_in_chunk_three_leaves_the_store_unchanged(tmp_path: Path, registry) -> None:
    rows = _lines(50)
    rows[25] = "25,TS_02,ribosome,1.0,oops,3.0,0.5"  # line 27: in the third chunk of 10
    path = _write(tmp_path / "bad.csv", rows)
    with Store(tmp_path / "picks.db") as store:
        import_file(store, _write(tmp_path / "good.csv", _lines(5, seed=1)), registry)
        before = (store.sources(), _stored(store))
        calls = []
        insert = store.insert_picks
        store.insert_picks = lambda sid, p: (len(p) and calls.append(len(p)), insert(sid, p))
        with pytest.raises(InputFormatError, match=r"bad\.csv, line 27: y = 'oops'"):
            import_file(store, path, registry, chunk_size=10)
        assert calls == [10, 10]  # two chunks were stored before the third failed
        assert store.sources() == before[0]
        pd.testing.assert_frame_equal(_stored(store), before[1])
        assert not store.db.conn.in_transaction


def test_line_numbers_are_right_across_chunks(tmp_path: Path, registry) -> None:
    rows = _lines(40)
    rows[13] = rows[13] + ",extra"  # 14th data row: in the second chunk of 10
    path = _write(tmp_path / "bad.csv", rows, blank_every=4)  # blank lines shift the count
    line = path.read_text().splitlines().index(rows[13]) + 1
    with Store(tmp_path / "picks.db") as store:
        for size in (10, 3, sys.maxsize):
            with pytest.raises(InputFormatError, match=rf"bad\.csv, line {line}: expected 7"):
                import_file(store, path, registry, chunk_size=size)
        assert store.count("picks") == 0
    # a bad number earlier in the same chunk is found first, as a line-by-line reader would
    rows[11] = rows[11].replace(",", ",x", 3)
    path = _write(tmp_path / "bad.csv", rows, blank_every=4)
    earlier = path.read_text().splitlines().index(rows[11]) + 1
    assert earlier < line
    with pytest.raises(InputFormatError, match=rf"line {earlier}: x = 'x"):
        read_file(registry.get("czii-csv"), _ctx(path))


def test_whole_file_warnings_are_given_once(tmp_path: Path, registry) -> None:
    # coordinates in voxels: the warning judges the whole file, not each chunk
    rows = [f"{i},TS_01,ribosome,{i % 90}.0,{i % 80}.0,{i % 50}.0," for i in range(30)]
    path = _write(tmp_path / "voxels.csv", rows)
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        streamed = import_file(a, path, registry, chunk_size=4)
        whole = import_file(b, path, registry, chunk_size=sys.maxsize)
    assert len(streamed.warnings) == 1 and "look like voxels" in streamed.warnings[0]
    assert streamed.warnings == whole.warnings


def test_content_digest_over_chunks() -> None:
    rng = np.random.default_rng(3)
    n = 40
    frame = canonical.make(
        {
            "tomogram": rng.choice(["a", "b"], n),
            "particle": rng.choice(["ribosome", None], n),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "z": rng.normal(size=n),
            "record": np.arange(2, n + 2),
        }
    )
    whole = content_digest(frame)
    ordered = ContentDigest()
    for start in range(0, n, 7):
        ordered.update(frame.iloc[start : start + 7])
    assert ordered.hexdigest() == whole
    # chunks out of record order: detected, and digested right when kept
    shuffled = ContentDigest()
    chunks = [frame.iloc[20:], frame.iloc[:20]]
    for chunk in chunks:
        shuffled.update(chunk)
    assert shuffled.broken
    with pytest.raises(ValueError, match="keep=True"):
        shuffled.hexdigest()
    kept = ContentDigest(keep=True)
    for chunk in chunks:
        kept.update(chunk)
    assert kept.hexdigest() == whole
    assert ContentDigest().hexdigest() == content_digest(canonical.empty())


def test_points_csv_streams_too(tmp_path: Path, registry) -> None:
    rows = [f"{i}.5,{i * 2}.25,{i % 7}.0" for i in range(33)]
    text = "x,y,z\n" + "\n".join(r if i % 6 else f"\n{r}" for i, r in enumerate(rows)) + "\n"
    path = tmp_path / "TS_01.csv"
    path.write_text(text)
    opts = {"adapter": "points-csv", "voxel_size": 10.0, "particle": "ribosome"}
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        streamed = import_file(a, path, registry, chunk_size=5, **opts)
        whole = import_file(b, path, registry, chunk_size=sys.maxsize, **opts)
        assert streamed.n_picks == whole.n_picks == 33
        pd.testing.assert_frame_equal(_stored(a), _stored(b))
        assert a.sources()[0]["identity"] == b.sources()[0]["identity"]
        bad = text.replace("20.5,40.25,6.0", "20.5,40.25")
        path.write_text(bad)
        line = bad.splitlines().index("20.5,40.25") + 1
        with pytest.raises(InputFormatError, match=rf"TS_01\.csv, line {line}: expected 3"):
            import_file(a, path, registry, chunk_size=5, **opts)
        assert a.count("picks") == 33
