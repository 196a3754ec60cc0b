"""``picks aggregate --scheduler``: the per-tomogram stages on a Dask LocalCluster (2 worker
processes) give the same files and store contents as the single-process run; a failed
tomogram is named and a re-run redoes only what is missing."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.consensus.cnn.options import CnnOptions
from picks.core.errors import PicksError
from picks.core.inputs_file import InputsFileError, read_inputs_file
from picks.core.store import Store
from picks.workflows.aggregate import aggregate
from picks.workflows.parallel import (
    DaskExecutor,
    SerialExecutor,
    TomogramError,
    open_executor,
    parse_scheduler,
    partial_dir,
)

runner = CliRunner()
# Columns that record when and by which process, not what: they differ between any two runs.
MODEL_FILES = (".keras", ".card.json")
VOLATILE = re.compile(r"(_at|^pid|^process_start|^heartbeat.*)$")


@pytest.mark.parametrize(
    ("scheduler", "workers", "expected"),
    [
        (None, None, None),
        (None, 1, None),
        (None, 4, ("local", 4)),
        ("local", None, ("local", 2)),
        ("local", 3, ("local", 3)),
        ("local:8", None, ("local", 8)),
        ("tcp://head-node:8786", 16, ("tcp://head-node:8786", 0)),
    ],
)
def test_scheduler_strings(scheduler, workers, expected):
    assert parse_scheduler(scheduler, workers) == expected


@pytest.mark.parametrize(
    ("scheduler", "workers", "match"),
    [
        ("local:", None, "expected local, local:N"),
        ("slurm", None, "expected local, local:N"),
        ("tcp://host", None, "expected local, local:N"),
        ("local:0", None, "at least 1 worker"),
        ("local:4", 2, "disagree"),
        (None, 0, "whole number"),
    ],
)
def test_bad_scheduler_is_an_error(scheduler, workers, match):
    with pytest.raises(PicksError, match=match):
        parse_scheduler(scheduler, workers)


def test_without_dask_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(PicksError) as info, open_executor("local:2"):
        pass
    assert "not installed" in str(info.value) and "picks[dask]" in info.value.hint
    with open_executor(None) as executor:  # the single-process path needs no Dask
        assert executor is None


def test_the_single_process_path_does_not_import_dask():
    import subprocess

    code = (
        "import sys\n"
        "from picks.workflows.parallel import open_executor\n"
        "import picks.workflows.aggregate, picks.cli.aggregate\n"
        "with open_executor(None, 1) as ex: assert ex is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_cli_rejects_a_bad_scheduler(tmp_path: Path):
    result = runner.invoke(
        get_app(),
        ["aggregate", str(tmp_path / "x.csv"), "--scheduler", "cluster", "--out", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, PicksError)
    assert str(result.exception).startswith("--scheduler 'cluster': expected local")


def test_inputs_file_compute_table(tmp_path: Path):
    (tmp_path / "a.csv").write_text("x\n")
    base = '[[picker]]\nlabel = "a"\npath = "a.csv"\n'
    path = tmp_path / "inputs.toml"
    path.write_text(base + '[compute]\nscheduler = "tcp://head:8786"\nworkers = 4\n')
    job = read_inputs_file(path)
    assert (job.scheduler, job.workers) == ("tcp://head:8786", 4)
    path.write_text(base + '[compute]\nscheduler = "slurm"\n')
    with pytest.raises(InputsFileError, match=r"\[compute\]: scheduler = 'slurm'"):
        read_inputs_file(path)
    path.write_text(base + "[compute]\nworkers = 0\n")
    with pytest.raises(InputsFileError, match=r"\[compute\]: workers = 0"):
        read_inputs_file(path)


def test_serial_executor_names_the_failed_tomogram():
    def half(x):
        return 1 / x

    assert SerialExecutor().map(half, [("a", 2), ("b", 4)], label="stage") == [0.5, 0.25]
    with pytest.raises(TomogramError, match=r"tomogram 'b': stage failed: ZeroDivisionError"):
        SerialExecutor().map(half, [("a", 2), ("b", 0)], label="stage")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"representative": "weighted", "weights": {"p1": 2.0}},
        {"representative": "best", "class_agnostic": True},
    ],
)
def test_clustering_per_tomogram_equals_the_whole_run(options):
    import numpy as np
    import pandas as pd

    from picks.consensus.cluster import ClusterOptions, cluster
    from picks.workflows.per_tomogram import cluster_per_tomogram

    rng = np.random.default_rng(3)
    n = 3000
    centres = rng.uniform(0, 2000, (n // 3, 3))
    picks = pd.DataFrame(
        {
            "id": rng.permutation(n) + 1,
            "picker": rng.choice(["p0", "p1", "p2"], n),
            "tomogram": rng.choice(["TS_b", "TS_a", "TS_c", "TS_10"], n),
            "particle": rng.choice(["ribosome", "apo-ferritin"], n),
            "x": centres[rng.integers(0, len(centres), n), 0] + rng.normal(0, 20, n),
            "y": centres[rng.integers(0, len(centres), n), 1],
            "z": rng.uniform(0, 500, n),
            # scores: a picker's rank spans tomograms; some missing, some tied
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 50, n) / 50),
            "rot": np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0, 360, n)),
            "tilt": 10.0,
            "psi": 20.0,
        }
    )
    radii = {"ribosome": 150.0, "apo-ferritin": 60.0}
    opts = ClusterOptions(**options)
    whole = cluster(picks, radii, opts)
    split = cluster_per_tomogram(SerialExecutor(), picks, radii, opts)
    pd.testing.assert_frame_equal(whole.consensus, split.consensus, check_exact=True)
    pd.testing.assert_frame_equal(whole.members, split.members, check_exact=True)
    assert whole.stats == split.stats


# -- on a LocalCluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_results_in_input_order_and_failures_named_then_resumed(client, tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    broken = tmp_path / "broken"  # the "bad volume": outside the task's inputs, like a file
    broken.write_text("9")

    def work(value, *, offset):  # runs on a worker process (shipped by value)
        (marks / f"{value}").write_text("ran")
        if broken.exists() and broken.read_text() == str(value):
            raise ValueError(f"bad volume {value}")
        return value * 10 + offset

    items = [(f"TS_{v}", v) for v in (5, 3, 9, 1)]
    cache = tmp_path / "partial"
    with pytest.raises(TomogramError) as info:
        DaskExecutor(client, cache_dir=cache).map(work, items, label="noise", shared={"offset": 1})
    message = str(info.value)
    assert "noise failed for 1 of 4 tomogram(s)" in message
    assert "tomogram 'TS_9': ValueError: bad volume 9" in message
    assert "re-run" in info.value.hint
    assert sorted(p.name for p in marks.iterdir()) == ["1", "3", "5", "9"]
    assert len(list(cache.glob("*.pkl"))) == 3  # the three that finished are kept

    for mark in marks.iterdir():
        mark.unlink()
    broken.unlink()  # the volume is fixed; the re-run redoes only TS_9
    again = DaskExecutor(client, cache_dir=cache)
    assert again.map(work, items, label="noise", shared={"offset": 1}) == [51, 31, 91, 11]
    assert [p.name for p in marks.iterdir()] == ["9"]
    assert again.reused == 3
    # Other shared values are other work: nothing reused.
    other = DaskExecutor(client, cache_dir=cache)
    assert other.map(work, items, label="noise", shared={"offset": 2}) == [52, 32, 92, 12]
    assert other.reused == 0


def test_a_task_whose_worker_dies_is_submitted_again(client, tmp_path: Path):
    import os
    import signal

    marks = tmp_path / "marks"
    marks.mkdir()

    def work(value):  # kills its worker the first time it sees 3, as the OOM killer would
        if value == 3 and not any(marks.iterdir()):
            (marks / "killed").write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        return value * 10

    items = [(f"TS_{v}", v) for v in (5, 3, 9, 1)]
    assert DaskExecutor(client).map(work, items, label="noise") == [50, 30, 90, 10]
    assert (marks / "killed").exists()
    client.wait_for_workers(2, timeout=60)  # the nanny's fresh worker, for the tests after


class _GoneClient:
    """A client whose first round has one task that finished on a worker that then died
    before its result was fetched: Dask reports it finished, and fetching it raises
    CancelledError; and whose first ``scatter_failures`` scatters fail as when a worker leaves
    during them (both seen on SLURM when a worker's job was cancelled mid-run)."""

    def __init__(self, gone: str, scatter_failures: int = 0):
        self.gone, self.rounds, self.scatter_failures = gone, 0, scatter_failures

    def scatter(self, values, **_):
        from distributed.comm.core import CommClosedError

        if self.scatter_failures:
            self.scatter_failures -= 1
            raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")
        return list(values)

    def map(self, fn, data, *, key, **shared):
        from concurrent.futures import CancelledError

        self.rounds += 1

        class Future:
            status = "finished"

            def __init__(self, key, value, lost):
                self.key, self.value, self.lost = key, value, lost

            def result(self):
                if self.lost:
                    raise CancelledError(f"{self.key} cancelled for reason: unknown.")
                return fn(self.value, **shared)

            def release(self):
                pass

        first = self.rounds == 1
        return [
            Future(k, v, first and k.startswith(self.gone)) for k, v in zip(key, data, strict=True)
        ]


def test_a_result_lost_with_its_worker_is_computed_again(monkeypatch, caplog):
    import distributed

    monkeypatch.setattr(distributed, "as_completed", iter)
    monkeypatch.setattr("picks.workflows.parallel.time.sleep", lambda s: None)
    # a CLI test earlier in the process stops the picks loggers' propagation (cli/logs.py):
    # caplog listens at the root
    monkeypatch.setattr(logging.getLogger("picks"), "propagate", True)
    client = _GoneClient("noise-TS_3-", scatter_failures=1)
    items = [(f"TS_{v}", v) for v in (5, 3, 9)]
    with caplog.at_level("WARNING", logger="picks"):
        results = DaskExecutor(client).map(
            lambda v, k: v * k, items, label="noise", shared={"k": 2}
        )
    assert results == [10, 6, 18] and client.rounds == 2
    assert "the worker holding the input or result of 'TS_3' died" in caplog.text
    assert "noise: a worker left while the inputs were sent (CommClosedError" in caplog.text


def test_a_scatter_that_keeps_failing_names_the_stage(monkeypatch):
    monkeypatch.setattr("picks.workflows.parallel.time.sleep", lambda s: None)
    client = _GoneClient("-", scatter_failures=3)
    with pytest.raises(PicksError, match="noise: could not send the tomograms' inputs") as exc:
        DaskExecutor(client).map(lambda v: v, [("TS_1", 1)], label="noise")
    assert "3 tries; CommClosedError: in <TCP (closed)" in str(exc.value)
    assert client.rounds == 0


def _world(root: Path, n_tomograms: int, size: tuple[int, int, int] = (64, 64, 32)):
    from picks.simulate.world import simulate

    return simulate(root / "data", seed=7, n_tomograms=n_tomograms, size=size)


def _run(out: Path, db: Path, simulation, executor, *, method: str, **kwargs) -> None:
    from picks.workflows.demo import aggregate_inputs

    with Store(db) as store:
        aggregate(
            store,
            aggregate_inputs(simulation),
            out=out,
            tomograms=[simulation.out / "tomograms"],
            formats=["relion5", "box", "czii-csv"],
            method=method,
            seed=7,
            executor=executor,
            **kwargs,
        )


def _files(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "report.html":  # it shows when the run started
            data = re.sub(rb"started \S+,", b"started -,", data)
        files[str(path.relative_to(folder))] = data
    return files


def _tables(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        tables = {}
        for name in sorted(names):
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({name})")]
            keep = [c for c in columns if not VOLATILE.search(c)]
            rows = con.execute(f"SELECT {', '.join(keep)} FROM {name}").fetchall()
            tables[name] = sorted(rows, key=repr)
    return tables


def _compare(
    tmp_path: Path, simulation, client, method: str, *, skip=frozenset(), **kwargs
) -> None:
    """``skip``: files and tables that differ between any two runs of this method."""
    # The same out path for both runs (summary.json records it), each with its own store.
    out = tmp_path / "out"
    _run(out, tmp_path / "serial.db", simulation, None, method=method, **kwargs)
    shutil.move(str(out), str(tmp_path / "serial"))
    executor = DaskExecutor(client, cache_dir=partial_dir(out))
    _run(out, tmp_path / "dask.db", simulation, executor, method=method, **kwargs)
    assert not partial_dir(out).exists()  # emptied once the run finished
    a, b = _files(tmp_path / "serial"), _files(out)
    assert list(a) == list(b)
    differ = [name for name in a if a[name] != b[name]]
    # TensorFlow's own bytes (model files) are not ours to compare; their scores are.
    assert [n for n in differ if Path(n).name not in skip and not n.endswith(MODEL_FILES)] == []
    ta, tb = _tables(tmp_path / "serial.db"), _tables(tmp_path / "dask.db")
    assert list(ta) == list(tb)
    assert [name for name in ta if ta[name] != tb[name] and name not in skip] == []


def test_demo_world_identical_on_two_workers(client, tmp_path: Path):
    simulation = _world(tmp_path, 2)
    _compare(tmp_path, simulation, client, "auto")


@pytest.mark.slow
def test_twenty_tomograms_identical_on_two_workers(client, tmp_path: Path):
    simulation = _world(tmp_path, 20)
    _compare(tmp_path, simulation, client, "vote")


class _FailingNoise(DaskExecutor):
    """Noise sampling of one tomogram raises (as a bad volume or a dying worker would)."""

    def __init__(self, *args, tomogram: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.tomogram = tomogram

    def map(self, fn, items, *, label, shared=None):
        if label != "noise":
            return super().map(fn, items, label=label, shared=shared)
        bad = next(payload for name, payload in items if name == self.tomogram)

        def failing(payload, **kwargs):
            if payload is bad or payload[0] == bad[0]:
                raise OSError("Input/output error reading the volume")
            return fn(payload, **kwargs)

        # The same name as the real stage function: the results of the other tomograms are
        # cached under the keys the real run looks up.
        failing.__module__, failing.__qualname__ = fn.__module__, fn.__qualname__
        return super().map(failing, items, label=label, shared=shared)


def test_failed_tomogram_is_named_and_the_rerun_completes(client, tmp_path: Path):
    simulation = _world(tmp_path, 3)
    out = tmp_path / "out"
    # The reference: the second of two serial runs in one store (consensus ids continue after
    # the first run's, as they will after the failed run below).
    _run(out, tmp_path / "serial.db", simulation, None, method="vote")
    shutil.rmtree(out)
    _run(out, tmp_path / "serial.db", simulation, None, method="vote")
    shutil.move(str(out), str(tmp_path / "serial"))

    db = tmp_path / "dask.db"
    flaky = _FailingNoise(client, cache_dir=partial_dir(out), tomogram="sim_02")
    with pytest.raises(TomogramError) as info:
        _run(out, db, simulation, flaky, method="vote")
    assert "noise failed for 1 of 3 tomogram(s): tomogram 'sim_02': OSError" in str(info.value)
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == ["failed"]
        assert "sim_02" in store.runs()[0]["message"]
    # headers and clustering: 3 tomograms each; noise: the 2 that finished
    assert len(list(partial_dir(out).glob("*.pkl"))) == 8

    again = DaskExecutor(client, cache_dir=partial_dir(out))
    _run(out, db, simulation, again, method="vote")
    assert again.reused == 8  # only sim_02's noise ran again
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == ["failed", "ok"]
    a, b = _files(tmp_path / "serial"), _files(out)
    assert [name for name in a if a[name] != b.get(name)] == []


def test_cli_workers_runs_on_a_local_cluster(tmp_path: Path):
    pytest.importorskip("distributed")
    from picks.workflows.demo import aggregate_inputs

    simulation = _world(tmp_path, 2)
    args = [f"{s.label}={s.path}" for s in aggregate_inputs(simulation)]
    for spec in aggregate_inputs(simulation):
        args += [
            arg
            for key, value in spec.options.items()
            for arg in ("--input-option", f"{spec.label}:{key}={value}")
        ]
    common = [*args, "--tomograms", str(simulation.out / "tomograms"), "--method", "vote"]
    for tag, extra in (("serial", []), ("dask", ["--workers", "2"])):
        result = runner.invoke(
            get_app(),
            [
                "aggregate",
                *common,
                *extra,
                "--out",
                str(tmp_path / tag),
                "--db",
                str(tmp_path / f"{tag}.db"),
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
    a, b = _files(tmp_path / "serial"), _files(tmp_path / "dask")
    assert list(a) == list(b) and "candidates.csv" in a
    # summary.json records the (different) output folders
    assert [n for n in a if a[n] != b[n]] == ["summary.json"]


@pytest.mark.slow
def test_cnn_scoring_on_workers_gives_the_same_scores(client, tmp_path: Path):
    # Training stays in the driver; extraction and scoring run per tomogram on the workers,
    # each loading the saved model once. summary.json and the runs/models rows hold timings
    # and the training history; everything else must match, scores to the bit.
    from picks.simulate.world import DEFAULT_SIZE

    simulation = _world(tmp_path, 2, DEFAULT_SIZE)  # the demo's world: enough to train on
    _compare(
        tmp_path,
        simulation,
        client,
        "cnn",
        skip={"summary.json", "report.html", "runs", "models"},
        cnn=CnnOptions(epochs=2, device="cpu"),
    )
