"""``picks aggregate --scheduler tcp://...`` against a real, separately started Dask cluster: a
``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, as a user would start them
(docs/dask.md). The run gives the same files and store contents as the single-process run; a
worker killed in the middle of a task is survived (Dask retries the task on another worker),
and a task that kills every worker it runs on is reported with its tomogram, after which a
re-run completes. Marked slow: starting the processes takes seconds.

What a killed worker does (seen here first): the input a task was given (``client.scatter``)
lives on one worker only, so when that worker dies Dask cannot retry the task and cancels it,
with every other task whose input was there; :class:`DaskExecutor` submits those again with
their inputs scattered afresh (``LOST_RESUBMITS`` times) before it reports them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dask import _files, _run, _tables, _world
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.store import Store
from picks.workflows.parallel import DaskExecutor, TomogramError, partial_dir

pytestmark = pytest.mark.slow
runner = CliRunner()
START_TIMEOUT_S = 90.0


def _dask_command(kind: str) -> list[str]:
    """The venv's ``dask scheduler``/``dask worker``, or the module when there is no script."""
    script = Path(sys.executable).with_name("dask")
    if script.is_file():
        return [str(script), kind]
    return [sys.executable, "-m", f"distributed.cli.dask_{kind}"]


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group started here (the worker's nanny has a child), then SIGKILL
    what is left after a grace period."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: a nanny's orphaned worker too
        proc.wait(timeout=10)


@pytest.fixture
def tcp_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler on 127.0.0.1 (a free port chosen by the OS, learned from its scheduler file)
    and two single-threaded workers, each under a nanny; yields ``tcp://127.0.0.1:PORT``."""
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "dask"
    folder.mkdir()
    scheduler_file = folder / "scheduler.json"
    env = dict(os.environ)
    # A task whose worker dies while its input lives on another worker is retried by Dask
    # (KilledWorker after allowed-failures); once, not Dask's default three, to be quick.
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "1"
    procs: list[subprocess.Popen] = []

    def start(args: list[str], name: str) -> None:
        log = (folder / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        )

    try:
        start(
            [
                *_dask_command("scheduler"),
                *("--host", "127.0.0.1", "--port", "0", "--no-dashboard"),
                *("--scheduler-file", str(scheduler_file)),
            ],
            "scheduler",
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.is_file():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail("dask scheduler did not start:\n" + _logs(folder))
            time.sleep(0.2)
        for i in range(2):
            start(
                [
                    *_dask_command("worker"),
                    *("--scheduler-file", str(scheduler_file)),
                    *("--nworkers", "1", "--nthreads", "1", "--no-dashboard"),
                    *("--local-directory", str(folder / f"worker{i}")),
                ],
                f"worker{i}",
            )
        with distributed.Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
            try:
                client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            except TimeoutError:
                pytest.fail("dask workers did not join:\n" + _logs(folder))
            address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        yield address
    finally:
        _stop(procs)


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(folder.glob("*.log")))


def _cli_args(simulation) -> list[str]:
    from picks.workflows.demo import aggregate_inputs

    args = [f"{s.label}={s.path}" for s in aggregate_inputs(simulation)]
    for spec in aggregate_inputs(simulation):
        args += [
            arg
            for key, value in spec.options.items()
            for arg in ("--input-option", f"{spec.label}:{key}={value}")
        ]
    return [*args, "--tomograms", str(simulation.out / "tomograms"), "--method", "vote"]


def test_cli_over_tcp_gives_the_single_process_files_and_store(tcp_cluster, tmp_path: Path):
    simulation = _world(tmp_path, 4)
    out = tmp_path / "out"  # the same out path for both runs: summary.json records it
    common = [*_cli_args(simulation), "--format", "relion5", "--format", "czii-csv"]
    for tag, extra in (("serial", []), ("tcp", ["--scheduler", tcp_cluster])):
        result = runner.invoke(
            get_app(),
            ["aggregate", *common, *extra, "--out", str(out), "--db", str(tmp_path / f"{tag}.db")],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        if tag == "serial":
            shutil.move(str(out), str(tmp_path / "serial"))
    assert not partial_dir(out).exists()
    a, b = _files(tmp_path / "serial"), _files(out)
    assert list(a) == list(b) and "candidates.csv" in a and "summary.json" in a
    assert [name for name in a if a[name] != b[name]] == []
    ta, tb = _tables(tmp_path / "serial.db"), _tables(tmp_path / "tcp.db")
    assert list(ta) == list(tb)
    assert [name for name in ta if ta[name] != tb[name]] == []


class _KillingNoise(DaskExecutor):
    """Noise sampling of one tomogram SIGKILLs the worker process running it: the first
    ``times`` attempts (counted in files, since every attempt runs in a fresh process)."""

    def __init__(self, *args, tomogram: str, marks: Path, times: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.tomogram, self.marks, self.times = tomogram, marks, times

    def map(self, fn, items, *, label, shared=None):
        if label != "noise":
            return super().map(fn, items, label=label, shared=shared)
        bad = next(payload for name, payload in items if name == self.tomogram)
        marks, times = self.marks, self.times

        def killing(payload, **kwargs):
            if payload is bad or payload[0] == bad[0]:
                attempts = len(list(marks.iterdir()))
                if attempts < times:
                    (marks / str(os.getpid())).write_text("killed")
                    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
            return fn(payload, **kwargs)

        # the real stage's name: the cache keys are the ones a plain re-run looks up
        killing.__module__, killing.__qualname__ = fn.__module__, fn.__qualname__
        return super().map(killing, items, label=label, shared=shared)


def _serial_reference(tmp_path: Path, simulation, runs: int) -> Path:
    """The files of the ``runs``-th serial run in one store (consensus ids continue after the
    earlier runs', as they do after a failed run)."""
    out = tmp_path / "out"
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        _run(out, tmp_path / "serial.db", simulation, None, method="vote")
    shutil.move(str(out), str(tmp_path / "serial"))
    return tmp_path / "serial"


def test_a_killed_worker_is_survived_over_tcp(tcp_cluster, tmp_path: Path):
    distributed = pytest.importorskip("distributed")
    simulation = _world(tmp_path, 3)
    reference = _serial_reference(tmp_path, simulation, 1)
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    with distributed.Client(tcp_cluster, timeout="30s") as client:
        # killed once: the task (and any other whose input was on that worker) is cancelled,
        # submitted again, and the run completes with the single-process bytes
        flaky = _KillingNoise(
            client, cache_dir=partial_dir(out), tomogram="sim_02", marks=marks, times=1
        )
        _run(out, tmp_path / "dask.db", simulation, flaky, method="vote")
        assert len(list(marks.iterdir())) == 1
        with Store(tmp_path / "dask.db") as store:
            assert [r["status"] for r in store.runs()] == ["ok"]
        a, b = _files(reference), _files(out)
        assert [name for name in a if a[name] != b.get(name)] == []


def test_a_task_that_kills_its_workers_is_named_and_the_rerun_completes(
    tcp_cluster, tmp_path: Path
):
    distributed = pytest.importorskip("distributed")
    simulation = _world(tmp_path, 3)
    reference = _serial_reference(tmp_path, simulation, 2)
    out, marks, db = tmp_path / "out", tmp_path / "marks", tmp_path / "dask.db"
    marks.mkdir()
    with distributed.Client(tcp_cluster, timeout="30s") as client:
        deadly = _KillingNoise(
            client, cache_dir=partial_dir(out), tomogram="sim_02", marks=marks, times=99
        )
        with pytest.raises(TomogramError) as info:
            _run(out, db, simulation, deadly, method="vote")
        message = str(info.value)
        assert (
            "noise failed for 1 of 3 tomogram(s): tomogram 'sim_02': cancelled 3 times: the "
            "worker holding its input died each time" in message
        ), message
        assert len(list(marks.iterdir())) == 3  # the first try and the two resubmissions
        with Store(db) as store:
            assert [r["status"] for r in store.runs()] == ["failed"]
            assert "sim_02" in store.runs()[0]["message"]
        # the nannies restart the killed workers; the re-run redoes only sim_02's noise
        client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        again = DaskExecutor(client, cache_dir=partial_dir(out))
        _run(out, db, simulation, again, method="vote")
        assert again.reused == 8  # headers and clustering of 3, noise of the 2 that finished
        with Store(db) as store:
            assert [r["status"] for r in store.runs()] == ["failed", "ok"]
    a, b = _files(reference), _files(out)
    assert [name for name in a if a[name] != b.get(name)] == []
