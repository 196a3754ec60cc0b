"""The picks an aggregate keeps while importing (:mod:`picks.workflows.kept`) are exactly
what ``Store.picks`` would read back: same columns, order, dtypes and values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from picks.core.store import Store
from picks.workflows.aggregate import PICK_COLUMNS, aggregate
from picks.workflows.importing import import_file
from picks.workflows.kept import KeptPicks

HEADER = "id,experiment,particle_type,x,y,z,score\n"


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


ROWS = [
    "0,TS_01,ribosome,-0.0,10.5,3,0.5",  # -0.0 comes back from SQLite as 0.0
    "1,TS_02,,1.0,2.0,3.0,",  # no class (filled later), no score (NULL -> NaN)
    "2,TS_01,apo-ferritin,1e-300,7.25,8,1",
    "3,TS_03,ribosome,4000.125,0,0,-0.0",
]


def _keep(store: Store, registry, paths: list[Path], kept: KeptPicks) -> list[int]:
    ids = []
    for i, path in enumerate(paths):
        chunks = kept.collector()
        result = import_file(store, path, registry, picker=f"p{i}", chunk_size=2, keep=chunks)
        if not result.skipped:
            kept.add(result.source_id, result.picker, "picker", chunks)
        ids.append(result.source_id)
    return ids


def test_kept_frame_equals_store_picks(tmp_path: Path, registry) -> None:
    a = _write(tmp_path / "a.csv", ROWS)
    b = _write(tmp_path / "b.csv", [*ROWS[::-1], "9,TS_09,thyroglobulin,5,5,5,0.25"])
    with Store(tmp_path / "p.db") as store:
        kept = KeptPicks(PICK_COLUMNS)
        ids = _keep(store, registry, [a, b], kept)
        got = kept.frame(store, ids[::-1])
        want = store.picks(source_ids=ids, roles=("picker",), columns=PICK_COLUMNS)
        assert got is not None and len(got) == 9
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert list(got.dtypes) == list(want.dtypes)
        assert str(got.loc[0, "x"]) == "0.0"  # not -0.0


def test_source_stored_before_is_read_back(tmp_path: Path, registry) -> None:
    a = _write(tmp_path / "a.csv", ROWS)
    b = _write(tmp_path / "b.csv", ROWS[:2])
    with Store(tmp_path / "p.db") as store:
        import_file(store, a, registry, picker="p0")  # an earlier import
        kept = KeptPicks(PICK_COLUMNS)
        ids = _keep(store, registry, [a, b], kept)
        assert ids[0] not in kept.chunks  # a no-op import keeps nothing
        assert kept.frame(store, ids) is None  # the caller reads the store
        assert kept.frame(store, ids[1:]) is not None


def test_aggregate_with_kept_picks_equals_read_back(tmp_path: Path, monkeypatch) -> None:
    a = _write(tmp_path / "a.csv", ROWS)
    b = _write(tmp_path / "b.csv", [*ROWS[:3], "7,TS_01,ribosome,5,5,5,0.25"])
    inputs = [f"a={a}", f"b={b}"]
    with Store(tmp_path / "kept.db") as store:
        kept = aggregate(
            store, inputs, out=tmp_path / "o1", method="vote", report=False, particle="ribosome"
        )
    monkeypatch.setattr(KeptPicks, "frame", lambda self, store, ids: None)
    with Store(tmp_path / "read.db") as store:
        read = aggregate(
            store, inputs, out=tmp_path / "o2", method="vote", report=False, particle="ribosome"
        )
    files = sorted(p.relative_to(tmp_path / "o1") for p in (tmp_path / "o1").rglob("*.csv"))
    assert files
    for name in files:
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    assert kept.summary == read.summary and kept.n_consensus == read.n_consensus == 4
