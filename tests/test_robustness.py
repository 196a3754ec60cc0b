"""One test per defect of the fuzzing campaign (issue 11): names, runs, pickles, locks,
clustering memory, wide lines, reader errors, XML comments, leftovers and byte order marks."""

from __future__ import annotations

import io
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_support import assert_store_empty

from picks.consensus.cluster import cluster
from picks.core.errors import InputFormatError, PicksError, StoreBusy
from picks.core.files import MAX_NAME, safe_name
from picks.core.store import Store
from picks.core.tomograms import Tomogram
from picks.plugins.adapter import ReadContext, WriteContext
from picks.workflows.aggregate import aggregate
from picks.workflows.evaluate import consensus_runs
from picks.workflows.importing import import_file

HEADER = "id,experiment,particle_type,x,y,z,score\n"


def czii(path: Path, rows: list[tuple]) -> Path:
    """rows: (tomogram, class, x, y, z, score)"""
    body = "".join(f"{i},{t},{p},{x},{y},{z},{s}\n" for i, (t, p, x, y, z, s) in enumerate(rows))
    path.write_text(HEADER + body)
    return path


def two_pickers(folder: Path, classes: list[str]) -> list[str]:
    """Two pickers agreeing on one pick per class (classes far apart)."""
    folder.mkdir(exist_ok=True)
    rows = [("TS_1", c, 500.0 + 400 * i, 500.0, 300.0, 0.9) for i, c in enumerate(classes)]
    shifted = [(t, c, x + 5, y, z, s) for t, c, x, y, z, s in rows]
    return [f"a={czii(folder / 'a.csv', rows)}", f"b={czii(folder / 'b.csv', shifted)}"]


def run(store: Store, tmp_path: Path, classes: list[str], **kwargs):
    inputs = two_pickers(tmp_path / "in", classes)
    return aggregate(
        store,
        inputs,
        out=tmp_path / "out",
        method="vote",
        radii={c: 60.0 for c in classes},
        **{"formats": ("csv",), **kwargs},
    )


def particle_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.parent != out)


# -- 1. colliding output names ------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_classes_with_one_file_name_are_refused_before_writing(store, tmp_path, force):
    with pytest.raises(PicksError, match="two outputs would be written to one file"):
        run(store, tmp_path, ["x y", "x/y"], force=force)
    assert particle_files(tmp_path / "out") == []
    assert store.count("exports") == 0


def test_a_class_cannot_take_the_relion5_companion_name(store, tmp_path):
    store.add_tomograms([Tomogram("TS_1", None, 10.0, (400, 400, 100))])
    # the folder's one tomograms.star (for all classes) is planned with the particle files
    with pytest.raises(PicksError, match="companion of 'all classes'"):
        run(store, tmp_path, ["a", "tomograms"], formats=("relion5",), force=True)
    assert particle_files(tmp_path / "out") == []
    # "a_tomograms" no longer takes a per-class companion's name: there is none
    run(store, tmp_path, ["a", "a_tomograms"], formats=("relion5",), force=True)
    assert [p.name for p in sorted((tmp_path / "out" / "relion5").iterdir())] == [
        "a.star",
        "a_tomograms.star",
        "tomograms.star",
    ]


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(store, tmp_path, name):
    with pytest.raises(PicksError, match="names a folder"):
        safe_name(name)
    with pytest.raises(PicksError, match="names a folder"):
        run(store, tmp_path, [name, "ribosome"])
    assert particle_files(tmp_path / "out") == []
    assert not (tmp_path / "out" / "csv.csv").exists()


def test_long_class_names_are_cut_with_a_digest(store, tmp_path):
    long_a, long_b = "r" * 242, "r" * 241 + "s"
    result = run(store, tmp_path, [long_a, long_b])
    names = [Path(o["path"]).name for o in result.outputs if o["format"] == "czii-csv"]
    assert len(names) == 2 and len(set(names)) == 2
    assert all(len(n.encode()) <= MAX_NAME + 4 for n in names)
    assert safe_name(".hidden") == "_hidden"


# -- 2. incomplete runs -------------------------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_run_is_stale_and_not_evaluated(tmp_path):
    db = tmp_path / "picks.db"
    with Store(db) as store:
        result = run(store, tmp_path, ["ribosome"])
        assert consensus_runs(store) == [result.run_id]
        # as a kill -9 leaves it: still "running", its process gone
        store.db.execute(
            "UPDATE runs SET status = 'running', ended_at = NULL, pid = ? WHERE id = ?",
            [dead_pid(), result.run_id],
        )
        store.db.conn.commit()
    with Store(db) as store:
        run_row = store.get_run(result.run_id)
        assert run_row["status"] == "stale"
        assert "ended without finishing" in run_row["message"]
        assert consensus_runs(store) == []
        assert consensus_runs(store, include_unfinished=True) == [result.run_id]


def test_a_live_run_stays_running(tmp_path):
    with Store(tmp_path / "picks.db") as store:
        run_id = store.start_run("aggregate", {})
        with Store(tmp_path / "picks.db") as other:
            assert other.mark_stale() == []
            assert other.get_run(run_id)["status"] == "running"


def test_runs_of_other_hosts_go_stale_after_their_heartbeat(tmp_path, monkeypatch):
    with Store(tmp_path / "picks.db") as store:
        run_id = store.start_run("aggregate", {})
        store.db.execute(
            "UPDATE runs SET host = 'elsewhere', heartbeat_at = '2020-01-01T00:00:00+00:00' "
            "WHERE id = ?",
            [run_id],
        )
        store.db.conn.commit()
        store._live_runs.clear()
        assert store.mark_stale() == [run_id]


def test_noise_without_run_skips_unfinished_runs(tmp_path):
    from typer.testing import CliRunner

    from picks.cli import get_app

    db = tmp_path / "picks.db"
    with Store(db) as store:
        result = run(store, tmp_path, ["ribosome"])
        store.db.execute("UPDATE runs SET status = 'failed' WHERE id = ?", [result.run_id])
        store.db.conn.commit()
    outcome = CliRunner().invoke(get_app(), ["noise", "--db", str(db)])
    assert isinstance(outcome.exception, PicksError)
    assert "no finished consensus run" in str(outcome.exception)


# -- 5. crafted TomoTwin pickles ---------------------------------------------------------------
class _Reduce:
    """Pickles as ``func(*args)`` (what a crafted .tloc can ask for)."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("shape", [(4,), (1 << 40,)])
def test_pickled_ndarray_constructor_is_refused(shape):
    from picks.adapters.tomotwin import RestrictedUnpickler

    # numpy.ndarray(shape, dtype) through REDUCE: uninitialised memory of any size
    payload = pickle.dumps(_Reduce(np.ndarray, (shape, "<f8")), protocol=2)
    with pytest.raises((pickle.UnpicklingError, TypeError)):
        RestrictedUnpickler(io.BytesIO(payload)).load()


def test_pickled_reconstruct_with_a_size_is_refused():
    from picks.adapters.tomotwin import RestrictedUnpickler

    payload = pickle.dumps(
        _Reduce(np._core.multiarray._reconstruct, (np.ndarray, (1 << 20,), b"b")), protocol=4
    )
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(payload)).load()


def test_real_tloc_still_unpickles(formats_dir):
    from picks.adapters.tomotwin import load_dataframe

    table = load_dataframe(formats_dir / "tomotwin" / "valid.tloc")
    assert {"X", "Y", "Z"} <= set(table.columns) and len(table) == 14
    assert np.isfinite(table[["X", "Y", "Z"]].to_numpy(dtype=float)).all()


# -- 6. concurrent commands ---------------------------------------------------------------------
def test_a_writer_waits_for_a_long_lock(tmp_path, registry):
    db = tmp_path / "picks.db"
    Store(db).close()
    csv = czii(tmp_path / "a.csv", [("TS_1", "ribosome", 100, 100, 100, 0.5)])
    holder = sqlite3.connect(db, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(6.0, holder.rollback)  # longer than sqlite3's default 5 s
    timer.start()
    try:
        with Store(db) as store:
            result = import_file(store, csv, registry)
        assert result.n_picks == 1 and not result.skipped
    finally:
        timer.join()
        holder.close()


def test_a_lock_held_too_long_is_one_clear_error(tmp_path, registry, monkeypatch):
    db = tmp_path / "picks.db"
    Store(db).close()
    csv = czii(tmp_path / "a.csv", [("TS_1", "ribosome", 100, 100, 100, 0.5)])
    monkeypatch.setenv("PICKS_BUSY_TIMEOUT", "0.5")
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store(db) as store, pytest.raises(StoreBusy, match="store busy"):
            import_file(store, csv, registry)
    finally:
        holder.rollback()
        holder.close()


def test_find_or_add_is_one_transaction(store, registry, tmp_path, monkeypatch):
    csv = czii(tmp_path / "a.csv", [("TS_1", "ribosome", 100, 100, 100, 0.5)])
    first = import_file(store, csv, registry)
    # another command imported the file between this one's check and its insert
    original = store.find_source
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        return None if len(calls) == 1 else original(*args, **kwargs)

    monkeypatch.setattr(store, "find_source", racing)
    second = import_file(store, csv, registry)
    assert second.skipped and second.source_id == first.source_id
    assert store.count("sources") == 1


# -- 7. clustering memory -----------------------------------------------------------------------
def test_a_million_identical_picks_cluster_in_seconds():
    n = 1_000_000
    picks = pd.DataFrame(
        {
            "id": np.arange(n),
            "picker": np.array(["a", "b", "c", "d"])[np.arange(n) % 4],
            "tomogram": "TS_1",
            "particle": "ribosome",
            "x": 100.0,
            "y": 100.0,
            "z": 100.0,
            "score": np.nan,
        }
    )
    start = time.perf_counter()
    clusters = cluster(picks, {"ribosome": 60.0})
    assert time.perf_counter() - start < 30
    assert len(clusters.consensus) == 1
    assert clusters.consensus["support"].iloc[0] == 4
    assert clusters.stats["n_duplicates"] == n - 4


# -- 8. Dynamo line width -----------------------------------------------------------------------
def test_dynamo_refuses_a_line_wider_than_the_format(store, registry, tmp_path):
    good = " ".join(["1"] * 36)
    path = tmp_path / "t.tbl"
    path.write_text(f"{good}\n{' '.join(['1'] * 1000)}\n")
    with pytest.raises(InputFormatError, match=r"line 2: 1000 columns"):
        import_file(store, path, registry, adapter="dynamo-tbl", voxel_size=10.0)
    assert_store_empty(store)


# -- 9. reader errors ---------------------------------------------------------------------------
def test_czii_csv_field_over_the_csv_limit_names_the_line(store, registry, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "0,TS_1,ribosome,1,2,3,0.5\n" + "1,TS_1," + "r" * 140_000 + ",1,2,3\n")
    with pytest.raises(InputFormatError, match=r"line 3: not a valid CSV line"):
        import_file(store, path, registry, adapter="czii-csv")
    assert_store_empty(store)


def test_czii_csv_reads_cr_only_line_endings(store, registry, tmp_path):
    path = tmp_path / "s.csv"
    rows = "".join(f"{i},TS_1,ribosome,{1000 + i},2000,300,0.5\r" for i in range(3))
    path.write_bytes((HEADER.replace("\n", "\r") + rows).encode())
    result = import_file(store, path, registry, adapter="czii-csv")
    assert result.n_picks == 3


def copick_doc(location: str) -> str:
    return (
        '{"pickable_object_name": "ribosome", "run_name": "TS_1", "points": '
        f'[{{"location": {location}, "score": 1.0}}]}}'
    )


@pytest.mark.parametrize(
    "text, match",
    [
        (copick_doc('{"x": 1' + "0" * 400 + ', "y": 1, "z": 1}'), "location.x = 1000"),
        (copick_doc("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ],
)
def test_copick_json_overflow_and_depth_are_errors(store, registry, tmp_path, text, match):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=match):
        import_file(store, path, registry, adapter="copick")
    assert_store_empty(store)


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"type": "point", "location": {"x": 1' + "0" * 400 + ', "y": 1, "z": 1}}', "line 1"),
        ("[" * 100_000 + "]" * 100_000, "line 1: JSON nested too deeply"),
    ],
)
def test_ndjson_overflow_and_depth_are_errors(store, registry, tmp_path, line, match):
    path = tmp_path / "a.ndjson"
    path.write_text(line + "\n")
    with pytest.raises(InputFormatError, match=match):
        import_file(store, path, registry, adapter="portal-ndjson", voxel_size=10.0)
    assert_store_empty(store)


# -- 11. DeepFinder XML comments ----------------------------------------------------------------
def test_deepfinder_writes_names_with_double_dashes_it_can_read(tmp_path, registry):
    from picks.core import picks as canonical

    adapter = registry.get("deepfinder-xml")
    picks = canonical.make(
        {
            "tomogram": ["TS--1", "TS--1", "T-"],
            "particle": ["a--b", "c-", "a---b"],
            "x": [10.0, 20.0, 30.0],
            "y": [10.0, 20.0, 30.0],
            "z": [10.0, 20.0, 30.0],
            "record": [0, 1, 2],
        }
    )
    path = tmp_path / "out.xml"
    adapter.write(picks, path, WriteContext(voxel_size=10.0))
    ctx = ReadContext(path=path, voxel_size=10.0)
    back = adapter.read(path, ctx)
    assert sorted(back["particle"]) == ["a---b", "a--b", "c-"]
    assert sorted(set(back["tomogram"])) == ["T-", "TS--1"]


# -- 12. leftovers of a killed aggregate -------------------------------------------------------
def test_leftovers_of_an_unfinished_run_do_not_block_a_plain_rerun(tmp_path):
    db = tmp_path / "picks.db"
    with Store(db) as store:
        first = run(store, tmp_path, ["ribosome"])
        # as a kill -9 during the writes leaves it: files recorded, a temp file, no end
        store.db.execute("UPDATE runs SET status = 'failed' WHERE id = ?", [first.run_id])
        store.db.conn.commit()
        (tmp_path / "out" / "summary.json").unlink()
        tmp = tmp_path / "out" / "czii-csv" / ".ribosome.csv.ab_cd123.tmp"
        tmp.write_text("half")
        keep = tmp_path / "out" / ".notes.txt.tmp"  # not our pattern (no random part)
        keep.write_text("not ours")
        second = run(store, tmp_path, ["ribosome"])
        assert store.get_run(second.run_id)["status"] == "ok"
    assert not tmp.exists() and keep.exists()
    assert any("left by an unfinished run" in w for w in second.warnings)


def test_exports_are_recorded_as_they_are_written(store, tmp_path, monkeypatch):
    import picks.workflows.outputs as export

    write = export.write_picks
    calls = []

    def killed_after_first(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt  # the run dies while writing its second set
        return write(*args, **kwargs)

    monkeypatch.setattr(export, "write_picks", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        run(store, tmp_path, ["alpha", "beta"])
    rows = store.db.execute("SELECT path FROM exports").fetchall()
    assert [Path(r[0]).name for r in rows] == ["alpha.csv"]  # written, so recorded
    assert store.runs()[-1]["status"] == "failed"


# -- 13. byte order marks -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "relative, adapter, options",
    [
        ("relion3_4/relion_4.0.star", "relion4", {"voxel_size": 10.0}),
        ("stopgap/portal_stopgap_star.star", "auto", {"voxel_size": 10.0}),
        ("cryolo/3d_particle.cbox", "auto", {"voxel_size": 10.0}),
        ("dynamo/t_double.tbl", "auto", {"voxel_size": 10.0, "options": {"tomograms": "1=a,2=b"}}),
        ("cryoet_portal_inputs/tardis.csv", "auto", {}),
    ],
)
def test_a_utf8_bom_is_not_content(formats_dir, registry, tmp_path, relative, adapter, options):
    source = formats_dir / relative
    plain = tmp_path / "plain" / source.name
    marked = tmp_path / "bom" / source.name
    plain.parent.mkdir()
    marked.parent.mkdir()
    plain.write_bytes(source.read_bytes())
    marked.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    frames = []
    for path in (plain, marked):
        with Store(path.with_suffix(".db")) as store:
            result = import_file(store, path, registry, adapter=adapter, tomogram="TS", **options)
            frames.append(store.picks(source_ids=[result.source_id])[["x", "y", "z"]])
    pd.testing.assert_frame_equal(frames[0], frames[1])


# -- 14. docs -----------------------------------------------------------------------------------
def test_cnn_docs_say_models_must_be_trusted():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cnn.md").read_text()
    assert "Only load models you trust" in text


def test_summary_json_is_plain(tmp_path, store):
    result = run(store, tmp_path, ["ribosome"])
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["run_id"] == result.run_id
    assert os.path.exists(tmp_path / "out" / "candidates.csv")
