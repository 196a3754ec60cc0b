"""The SLURM example (docs/examples/dask-slurm) without SLURM: its options, the cluster
arguments and job script they give, the picks command it runs, and the output comparison.
The example itself was run on a one-node SLURM (docs/dask.md); that run needs sbatch and is
not part of the suite."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "dask-slurm"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load("aggregate_slurm")


def test_options_before_the_double_dash_and_picks_arguments_after(example):
    args = example.parse_args(
        ["--jobs", "2", "--cores", "1", "--", "--inputs", "in.toml", "--seed", "3"]
    )
    assert (args.jobs, args.cores, args.processes) == (2, 1, 1)
    assert args.aggregate == ["--inputs", "in.toml", "--seed", "3"]
    assert args.min_workers == 1  # a quarter of 2, at least 1
    assert example.parse_args(["--jobs", "8", "--cores", "8", "--", "x"]).min_workers == 16


@pytest.mark.parametrize(
    "argv",
    [
        ["--jobs", "1"],  # no picks arguments
        ["--", "--inputs", "in.toml", "--scheduler", "local:2"],
        ["--", "--inputs", "in.toml", "--workers=4"],
        ["--cores", "4", "--processes", "3", "--", "x"],
        ["--jobs", "0", "--", "x"],
    ],
)
def test_bad_options_are_refused(example, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        example.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cluster_arguments(example):
    args = example.parse_args(["--cores", "2", "--memory", "4GB", "--", "x"])
    kwargs = example.cluster_kwargs(args)
    assert kwargs["cores"] == kwargs["processes"] == 2  # one thread per process
    assert kwargs["memory"] == "4GB" and kwargs["walltime"] == example.WALLTIME
    for unset in ("queue", "account", "interface", "python", "job_script_prologue"):
        assert unset not in kwargs  # dask-jobqueue's own defaults (and its config) apply
    args = example.parse_args(
        [
            "--queue", "debug", "--account", "lab", "--interface", "ib0",
            "--local-directory", "/scratch", "--log-directory", "logs", "--python", "python",
            "--prologue", "module load python", "--prologue", "source /sw/venv/bin/activate",
            "--extra-sbatch=--qos=short", "--", "x",
        ]
    )  # fmt: skip
    kwargs = example.cluster_kwargs(args)
    assert kwargs["queue"] == "debug" and kwargs["account"] == "lab"
    assert kwargs["interface"] == "ib0" and kwargs["local_directory"] == "/scratch"
    assert kwargs["log_directory"] == "logs" and kwargs["python"] == "python"
    assert kwargs["job_script_prologue"] == ["module load python", "source /sw/venv/bin/activate"]
    assert kwargs["job_extra_directives"] == ["--qos=short"]


def test_job_script(example):
    """What SLURM is sent (dask-jobqueue builds it; no sbatch is run)."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    args = example.parse_args(
        [
            "--cores", "1", "--memory", "2GB", "--walltime", "00:30:00", "--queue", "debug",
            "--python", "python", "--prologue", "source /sw/venv/bin/activate", "--job-script",
        ]
    )  # fmt: skip
    with SLURMCluster(**example.cluster_kwargs(args)) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    for line in ("#SBATCH -J picks-worker", "#SBATCH -p debug", "#SBATCH --cpus-per-task=1"):
        assert line in lines
    assert "#SBATCH --mem=2G" in lines and "#SBATCH -t 00:30:00" in lines
    assert lines.index("source /sw/venv/bin/activate") < len(lines) - 1
    worker = next(x for x in lines if "dask_worker" in x)
    assert worker.startswith("python -m distributed.cli.dask_worker tcp://")
    assert "--nthreads 1" in worker


def test_picks_command_runs_the_cli(example):
    command = example.aggregate_command(["--inputs", "in.toml"], "tcp://10.0.0.1:8786")
    assert command[0] == sys.executable
    assert command[3:] == ["aggregate", "--inputs", "in.toml", "--scheduler", "tcp://10.0.0.1:8786"]
    done = subprocess.run(
        [*command[:4], "--help"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "--scheduler" in done.stdout


def _store(path: Path, out: Path, created: str) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE exports (path TEXT, sha256 TEXT, created_at TEXT)")
        con.execute("INSERT INTO exports VALUES (?, 'abc', ?)", (str(out / "a.csv"), created))


def test_check_identical(tmp_path: Path, capsys):
    check = _load("check_identical")
    for name, started in (("a", "2026-01-01T00:00:00"), ("b", "2026-01-02T10:00:00")):
        out = tmp_path / name / "out"
        out.mkdir(parents=True)
        (out / "a.csv").write_text("x,y\n1,2\n")
        (out / "report.html").write_text(f"<p>Run 1, started {started}, seed 3.</p>")
        _store(tmp_path / name / "picks.db", out.resolve(), started)
    a, b = tmp_path / "a", tmp_path / "b"
    argv = [str(a / "out"), str(a / "picks.db"), str(b / "out"), str(b / "picks.db")]
    # the start time, created_at and the out folder's absolute path do not count
    assert check.main(argv) == 0
    assert "identical: 2 files, 1 tables (1 rows)" in capsys.readouterr().out
    (b / "out" / "a.csv").write_text("x,y\n1,3\n")
    (b / "out" / "extra.csv").write_text("")
    assert check.main(argv) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"only in {b / 'out'}: extra.csv",
        "file differs: a.csv",
    ]
