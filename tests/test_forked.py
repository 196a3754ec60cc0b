"""workflows/forked.py and the aggregate's report drawn in a forked child
(workflows/forked_report.py): same page as when written after the run, and every failure of
the child falls back to writing it in the parent."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from picks.core.store import Store
from picks.workflows import forked_report
from picks.workflows.forked import Forked, ForkFailed

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


@pytest.fixture(autouse=True)
def forks(monkeypatch):
    """Fork as a user's run would: with two cores, and no CNN run's TensorFlow in the process
    (the suite's CNN tests load it; forked_report then stays in the parent)."""
    import sys

    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2), raising=False)
    monkeypatch.delenv("PICKS_NO_FORK", raising=False)


def test_forked_returns_the_childs_value():
    big = list(range(200_000))  # more than a pipe holds: read while the child writes
    job = Forked(lambda: (os.getpid(), sum(big), big))
    pid, total, back = job.result()
    assert pid != os.getpid() and total == sum(big) and back == big


def test_forked_reports_an_exception_as_fork_failed():
    def boom():
        raise ValueError("no luck")

    with pytest.raises(ForkFailed, match="ValueError: no luck"):
        Forked(boom).result()


def test_forked_child_that_dies_is_fork_failed():
    with pytest.raises(ForkFailed, match="status"):
        Forked(lambda: os._exit(3)).result()


def test_forked_off_and_cancel(monkeypatch):
    job = Forked(lambda: time.sleep(60))
    started = time.perf_counter()
    job.cancel()  # killed and reaped, not waited for
    assert time.perf_counter() - started < 5
    with pytest.raises(ForkFailed):
        job.result()
    monkeypatch.setenv("PICKS_NO_FORK", "1")
    off = Forked(lambda: 1)
    assert off.pid is None
    with pytest.raises(ForkFailed, match="not available"):
        off.result()


def _inputs(folder: Path) -> list[str]:
    inputs = []
    for name, dx in (("a", 0), ("b", 7), ("c", 3)):
        rows = "".join(
            f"{i},TS_{1 + i % 2},{'ribosome' if i % 3 else 'apo-ferritin'},{90 * i + dx},"
            f"{300 + (i % 5) * 40},{200 + dx}\n"
            for i in range(1, 40)
        )
        (folder / f"{name}.csv").write_text("id,experiment,particle_type,x,y,z\n" + rows)
        inputs.append(f"{name}={folder / f'{name}.csv'}")
    return inputs


def _run(tmp_path: Path, out: str, **kw):
    from picks.workflows.aggregate import aggregate

    with Store(tmp_path / f"{out}.db") as store:  # one store each: both are run 1
        return aggregate(store, _inputs(tmp_path), out=tmp_path / out, formats=["csv"], **kw)


def _page(path: Path) -> list[str]:
    # the header names the run and when it started: the rest must be the same bytes
    return [line for line in path.read_text().splitlines() if "started 20" not in line]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "report_files").iterdir())}


def test_forked_report_is_the_serial_one(tmp_path, monkeypatch):
    calls = []
    original = forked_report.Forked  # the child is really started (not the fallback)

    def counting(fn):
        calls.append(1)
        return original(fn)

    monkeypatch.setattr(forked_report, "Forked", counting)
    _run(tmp_path, "forked")
    assert calls, "the report was not drawn in a child"
    monkeypatch.setenv("PICKS_NO_FORK", "1")
    _run(tmp_path, "serial")
    forked, serial = tmp_path / "forked", tmp_path / "serial"
    assert _page(forked / "report.html") == _page(serial / "report.html")
    assert _files(forked) == _files(serial) and _files(forked)
    assert not (forked / forked_report.STAGING).exists()


def test_a_child_that_fails_falls_back_to_the_parent(tmp_path, monkeypatch):
    import picks.report.build as build

    def broken(data, out_dir):
        raise RuntimeError("figures failed in the child")

    monkeypatch.setattr(build, "build_report_from_data", broken)
    result = _run(tmp_path, "out")
    assert [r for r in result.outputs if r["format"] == "report"]
    assert (tmp_path / "out" / "report.html").is_file() and _files(tmp_path / "out")
    assert not (tmp_path / "out" / forked_report.STAGING).exists()
    assert not [w for w in result.warnings if "report not written" in w]


def test_a_run_that_fails_after_the_fork_leaves_no_report(tmp_path, monkeypatch):
    import gc

    import picks.workflows.aggregate as aggregate_module

    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(aggregate_module, "write_run_outputs", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        _run(tmp_path, "out")
    gc.collect()
    out = tmp_path / "out"
    assert not (out / forked_report.STAGING).exists()
    assert not (out / "report.html").exists()


# -- the import's read-ahead (importing.prefetch_file) ---------------------------------------
def _import_all(tmp_path: Path, name: str, inputs: list[str], monkeypatch, fork: bool):
    from picks.workflows.aggregate import aggregate

    monkeypatch.setenv("PICKS_NO_FORK", "0" if fork else "1")
    with Store(tmp_path / f"{name}.db") as store:
        result = aggregate(store, inputs, out=tmp_path / name, formats=["csv"], report=False)
        tables = {
            t: store.db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("picks", "consensus_members")
        }
        sources = store.db.execute(
            "SELECT id, sha256, identity, n_picks, warnings, picker FROM sources ORDER BY id"
        ).fetchall()
    return result, tables, sources


def test_read_ahead_stores_what_a_serial_import_stores(tmp_path, monkeypatch):
    from picks.workflows import importing

    started = []
    original = importing.prefetch_file

    def counting(*args, **kwargs):
        job = original(*args, **kwargs)
        started.append(job is not None)
        return job

    monkeypatch.setattr(importing, "prefetch_file", counting)
    inputs = _inputs(tmp_path)
    forked, forked_tables, forked_sources = _import_all(tmp_path, "f", inputs, monkeypatch, True)
    assert any(started)
    serial, serial_tables, serial_sources = _import_all(tmp_path, "s", inputs, monkeypatch, False)
    assert forked_tables == serial_tables and forked_sources == serial_sources
    assert forked.warnings == serial.warnings
    assert (tmp_path / "f" / "candidates.csv").read_bytes() == (
        tmp_path / "s" / "candidates.csv"
    ).read_bytes()


def test_read_ahead_brings_back_the_childs_warnings(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path)
    # the third file in voxels (tiny coordinates): the reader's warning is made in the child
    (tmp_path / "c.csv").write_text(
        "id,experiment,particle_type,x,y,z\n"
        + "".join(f"{i},TS_1,ribosome,{i},{i + 1},{i + 2}\n" for i in range(1, 9))
    )
    forked, _, forked_sources = _import_all(tmp_path, "f", inputs, monkeypatch, True)
    serial, _, serial_sources = _import_all(tmp_path, "s", inputs, monkeypatch, False)
    assert [w for w in forked.warnings if "c.csv" in w]
    assert forked.warnings == serial.warnings and forked_sources == serial_sources


def test_a_bad_file_read_ahead_fails_as_it_does_serially(tmp_path, monkeypatch):
    from picks.core.errors import InputFormatError

    inputs = _inputs(tmp_path)
    text = (tmp_path / "b.csv").read_text().splitlines()
    text[5] = "5,TS_1,ribosome,12,not-a-number,3"
    (tmp_path / "b.csv").write_text("\n".join(text) + "\n")
    messages = []
    for fork in (True, False):
        with pytest.raises(InputFormatError) as caught:
            _import_all(tmp_path, f"bad{fork}", inputs, monkeypatch, fork)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "line 6" in messages[0]


def test_the_same_bytes_twice_are_one_source_with_read_ahead(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path)
    (tmp_path / "copy.csv").write_bytes((tmp_path / "a.csv").read_bytes())
    # right after its twin: read ahead before the twin is stored, then found stored
    inputs.insert(1, f"d={tmp_path / 'copy.csv'}")
    with pytest.raises(Exception) as forked:
        _import_all(tmp_path, "f", inputs, monkeypatch, True)
    with pytest.raises(Exception) as serial:
        _import_all(tmp_path, "s", inputs, monkeypatch, False)
    assert type(forked.value) is type(serial.value)
    assert str(forked.value) == str(serial.value)


def test_no_fork_with_one_core(monkeypatch):
    from picks.workflows import forked

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert not forked.fork_available()
    assert Forked(lambda: 1).pid is None


def test_no_fork_on_a_busy_machine(monkeypatch):
    from picks.workflows import forked

    assert forked.fork_available()
    monkeypatch.setattr(os, "getloadavg", lambda: (4.4, 4.0, 3.0), raising=False)
    assert not forked.fork_available()


# -- clustering on two cores (workflows/per_tomogram.cluster_on_two_cores) ---------------------


def _cluster_picks(n: int, tomograms: list[str], seed: int = 5):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 3000, (n // 3, 3))
    at = rng.integers(0, len(centres), n)
    return pd.DataFrame(
        {
            "id": rng.permutation(n) + 1,
            "picker": rng.choice(["p0", "p1", "p2"], n),
            # uneven tomograms, names whose sorted order is not their numeric one
            "tomogram": rng.choice(
                tomograms,
                n,
                p=np.linspace(1, 3, len(tomograms)) / np.linspace(1, 3, len(tomograms)).sum(),
            ),
            "particle": rng.choice(["ribosome", "apo-ferritin", None], n),
            "x": centres[at, 0] + rng.normal(0, 20, n),
            "y": centres[at, 1] + rng.normal(0, 20, n),
            "z": centres[at, 2] / 6,
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 50, n) / 50),
            "rot": np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0, 360, n)),
            "tilt": 10.0,
            "psi": 20.0,
        }
    )


@pytest.mark.parametrize("fails", [False, True])
def test_clustering_on_two_cores_equals_one(monkeypatch, fails):
    import pandas as pd

    from picks.consensus.cluster import ClusterOptions, cluster
    from picks.workflows import per_tomogram

    monkeypatch.setattr(per_tomogram, "FORK_MIN_PICKS", 100)
    picks = _cluster_picks(6000, ["TS_10", "TS_9", "TS_b", "TS_a", "TS_2"])
    radii = {"ribosome": 150.0, "apo-ferritin": 60.0, None: 100.0}
    forks = []
    real = per_tomogram._cluster

    def counting(part, **kw):
        forks.append(os.getpid())
        if fails and os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real(part, **kw)

    parent = os.getpid()
    monkeypatch.setattr(per_tomogram, "_cluster", counting)
    for options in (ClusterOptions(), ClusterOptions(class_agnostic=True)):
        whole = cluster(picks, radii, options)
        two = per_tomogram.cluster_on_two_cores(picks, radii, options)
        pd.testing.assert_frame_equal(whole.consensus, two.consensus, check_exact=True)
        pd.testing.assert_frame_equal(whole.members, two.members, check_exact=True)
        assert whole.stats == two.stats
    # the parent clustered one half (and, when the child failed, the other as well)
    assert forks.count(parent) == (4 if fails else 2)


def test_clustering_stays_in_one_process_when_it_should(monkeypatch):
    from picks.consensus.cluster import ClusterOptions
    from picks.workflows import per_tomogram

    calls = []
    monkeypatch.setattr(per_tomogram, "_cluster", lambda part, **kw: calls.append(1))
    picks = _cluster_picks(3000, ["TS_1", "TS_2"])
    radii = {"ribosome": 150.0, "apo-ferritin": 60.0, None: 100.0}
    # too few picks to be worth a fork (the default threshold), then one tomogram, then no fork
    assert len(per_tomogram.cluster_on_two_cores(picks, radii, ClusterOptions()).consensus)
    monkeypatch.setattr(per_tomogram, "FORK_MIN_PICKS", 100)
    one = picks.assign(tomogram="TS_1")
    assert len(per_tomogram.cluster_on_two_cores(one, radii, ClusterOptions()).consensus)
    monkeypatch.setenv("PICKS_NO_FORK", "1")
    assert len(per_tomogram.cluster_on_two_cores(picks, radii, ClusterOptions()).consensus)
    assert calls == []


# -- image statistics on two cores (per_tomogram.candidate_statistics_on_two_cores) ------------


@pytest.mark.parametrize("fails", [False, True])
def test_image_statistics_on_two_cores_equal_one(tmp_path, monkeypatch, fails):
    import mrcfile
    import numpy as np
    import pandas as pd

    from picks.consensus import image_features
    from picks.core.tomograms import read_tomogram
    from picks.workflows import per_tomogram

    rng = np.random.default_rng(3)
    tomograms = {}
    for name in ("TS_10", "TS_9", "TS_b"):  # name order is not number order
        path = tmp_path / f"{name}.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(rng.standard_normal((24, 60, 70)).astype(np.float32))
            mrc.voxel_size = 10.0
        tomograms[name] = read_tomogram(path)
    n = 300
    consensus = pd.DataFrame(
        {
            "tomogram": rng.choice(list(tomograms), n, p=[0.2, 0.5, 0.3]),
            "particle": rng.choice(["ribosome", "apo-ferritin", "thyroglobulin"], n),
            "x": rng.uniform(0, 700, n),
            "y": rng.uniform(0, 600, n),
            "z": rng.uniform(0, 240, n),
        },
        index=rng.permutation(n) + 1000,  # an index the result must keep, in this order
    )
    radii = {"ribosome": 130.0, "apo-ferritin": 60.0, "thyroglobulin": 85.0}
    monkeypatch.setattr(per_tomogram, "FORK_MIN_CANDIDATES", 10)
    parent = os.getpid()
    calls = []
    real = image_features.candidate_statistics

    def counting(table, *args, **kw):
        calls.append(os.getpid())
        if fails and os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real(table, *args, **kw)

    monkeypatch.setattr(image_features, "candidate_statistics", counting)
    two = per_tomogram.candidate_statistics_on_two_cores(consensus, tomograms, radii)
    one = real(consensus, tomograms, radii)
    pd.testing.assert_frame_equal(two, one, check_exact=True)
    assert calls.count(parent) == (2 if fails else 1)  # one half here (both if the child failed)
    assert two.notna().any(axis=None) and two.isna().any(axis=None)  # boxes kept and dropped
    repeated = consensus.set_axis(np.arange(n) // 2)  # an index whose labels repeat
    pd.testing.assert_frame_equal(
        per_tomogram.candidate_statistics_on_two_cores(repeated, tomograms, radii),
        real(repeated, tomograms, radii),
        check_exact=True,
    )


def test_no_fork_with_tensorflow_loaded(monkeypatch):
    import sys
    import types

    from picks.workflows.forked import fork_available

    assert fork_available()
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    assert not fork_available()
