"""The CLI as a user meets it: choices checked at parse time and listed in --help, readable
metavars, a fast --help, -v/-q, and progress that reads well in a batch (SLURM) log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picks.cli import COMMAND_MODULES, choices, get_app
from picks.cli.logs import StageLog, format_duration, log_progress

runner = CliRunner()
CSV = "id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,1500.5,2000,3000\n1,TS_1,ribosome,4000,2000,3000\n"


def invoke(*args: object):
    return runner.invoke(get_app(), [str(a) for a in args])


def commands() -> list[str]:
    from typer.main import get_command

    return sorted(get_command(get_app()).commands)


# -- choices and metavars -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aggregate", "--method", "vot"], "'vot' is not one of 'auto', 'vote', 'latent', 'cnn'"),
        (
            ["aggregate", "--representative", "mean"],
            "'mean' is not one of 'centroid', 'weighted', 'best'",
        ),
        (["aggregate", "--edge", "wrap"], "'wrap' is not one of 'pad', 'reflect', 'drop'"),
        (["aggregate", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'gpu'"),
        (["train", "--run", "1", "--device", "cuda"], "'cuda' is not one of 'auto', 'cpu', 'gpu'"),
        (["score", "--run", "1", "--model", "m.keras", "--edge", "x"], "'x' is not one of"),
        (
            ["train", "--run", "1", "--positives", "most"],
            "'most' is not one of 'auto', 'full', 'status'",
        ),
        (
            ["import", "x.csv", "--role", "truth"],
            "'truth' is not one of 'picker', 'positive', 'negative'",
        ),
    ],
)
def test_a_typo_in_a_choice_fails_at_parse_time(tmp_path: Path, args: list[str], message: str):
    result = invoke(*args, "--db", tmp_path / "never.db")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "never.db").exists()  # nothing ran


def test_help_lists_choices_with_readable_metavars():
    text = invoke("aggregate", "--help").output
    for shown in (
        "--method <auto|vote|latent|cnn>",
        "--representative <centroid|weighted|best>",
        "--edge <pad|reflect|drop>",
        "--device <auto|cpu|gpu>",
        "--input-option LABEL:KEY=VALUE",
        "--weights LABEL=W",
        "--radius CLASS=Å",
        "--positive [LABEL=]FILE",
        "[LABEL=]PATH",
    ):
        assert shown in text, shown
    assert "--positives <auto|full|status|posterior>" in invoke("train", "--help").output


@pytest.mark.parametrize("command", commands())
def test_no_python_types_in_help(command: str):
    text = invoke(command, "--help").output
    assert "Usage" in text and "list[" not in text and "<list" not in text
    assert " range>" not in text  # typer's "<int range>" for a bounded number


def test_cli_choices_match_the_library():
    """cli/choices.py spells the vocabularies out (importing the library would make --help slow);
    a method, representative, edge mode, device or positives rule added on one side must be
    added on the other."""
    from picks.consensus.cluster import REPRESENTATIVES
    from picks.consensus.cnn import boxes as extract
    from picks.consensus.cnn import device, train
    from picks.workflows import aggregate as pipeline

    assert choices.METHODS == pipeline.METHODS
    assert choices.REPRESENTATIVES == REPRESENTATIVES
    assert choices.EDGES == extract.EDGE_MODES
    assert choices.DEVICES == device.DEVICES
    assert choices.POSITIVES == train.POSITIVE_RULES


# What makes `picks --help` slow is a heavy import at module level (pandas alone costs ~0.3 s,
# TensorFlow ~4 s). The time itself is measured by benchmarks/bench_startup.py (target < 0.3 s):
# a wall-clock assert here failed whenever the machine was busy, and proved nothing then.
HEAVY = (
    "pandas",
    "numpy",
    "scipy",
    "sqlite_utils",
    "tensorflow",
    "dask",
    "distributed",
    "matplotlib",
    "mrcfile",
    "sklearn",
    "starfile",
    "zarr",
)


def test_help_imports_no_heavy_library():
    """``picks --help`` (and every command's ``--help``) loads no numeric or storage library."""
    code = (
        "import sys\n"
        "from picks.cli import main\n"
        "for argv in (['picks', '--help'], ['picks', 'aggregate', '--help'],\n"
        "             ['picks', 'export', '--help'], ['picks', 'runs', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stderr.strip().splitlines()[-1].split() if done.stderr.strip() else []
    assert "Usage" in done.stdout
    assert loaded == [], f"picks --help imported {loaded}"


def test_every_command_module_registers():
    import importlib

    assert {"aggregate", "import", "convert", "train", "pickers"} <= set(commands())
    for name in COMMAND_MODULES:
        assert callable(importlib.import_module(f"picks.cli.{name}").register), name


# -- messages and progress ----------------------------------------------------------------------


def two_pickers(tmp_path: Path) -> list[str]:
    # Same picks, a few Å apart: two files (the same bytes would be one source).
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "b.csv").write_text(CSV.replace(",3000\n", ",3010\n"))
    return [f"a={tmp_path / 'a.csv'}", f"b={tmp_path / 'b.csv'}"]


def test_batch_log_shows_each_stage(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PICKS_NO_PROGRESS")  # conftest silences progress for other tests
    inputs = two_pickers(tmp_path)
    result = invoke(
        "aggregate", *inputs, "--format", "csv", "--out", tmp_path / "o", "--db", tmp_path / "p.db"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for stage in ("import: started (2 to do)", "cluster: started (1 to do)", "write: started"):
        assert any(line.startswith(stage) for line in lines), stage
    # Stage lines come before the results table, in order.
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(s))
        for s in ("import:", "cluster:", "write:")
    ]
    assert order == sorted(order) and order[-1] < lines.index(
        next(x for x in lines if x.startswith("Run "))
    )


def test_quiet_keeps_warnings_and_results_only(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PICKS_NO_PROGRESS")
    inputs = two_pickers(tmp_path)
    # The default formats need registered tomograms: without them the pipeline warns.
    args = ["aggregate", *inputs, "--out", tmp_path / "o", "--db", tmp_path / "p.db"]
    quiet = invoke("-q", *args)
    assert quiet.exit_code == 0, quiet.output
    assert "started" not in quiet.output
    assert "warning: tomogram(s) TS_1 not registered" in quiet.output
    assert "consensus per tomogram and class" in quiet.output


def test_verbose_adds_debug_lines(tmp_path: Path):
    (tmp_path / "a.csv").write_text(CSV)
    result = invoke("-v", "import", tmp_path / "a.csv", "--db", tmp_path / "p.db")
    assert result.exit_code == 0, result.output
    assert "debug: [picks.import]" in result.output and "2 picks as source 1" in result.output
    plain = invoke("import", tmp_path / "a.csv", "--db", tmp_path / "p2.db")
    assert "debug:" not in plain.output


def test_stage_log_periodic_lines_with_a_fake_clock():
    now = [100.0]
    lines: list[str] = []
    stage = StageLog("score", 40, clock=lambda: now[0], emit=lines.append, interval=30.0)
    stage.start()
    for t, n, info in (
        (10, 5, None),
        (29.9, 5, None),
        (31, 2, "batch 3"),
        (45, 10, None),
        (61.5, 8, None),
    ):
        now[0] = 100.0 + t
        stage.advance(n, info=info)
    now[0] = 100.0 + 75
    stage.finish()
    assert lines == [
        "score: started (40 to do)",
        "score: 12/40 (30%) after 31s, batch 3",  # first line once 30 s have passed
        "score: 30/40 (75%) after 1m01s, batch 3",  # not at 45 s: 30 s since the last line
        "score: finished 30/40 (75%) in 1m15s",
    ]


def test_short_stage_is_one_line_and_unknown_totals_count():
    now = [0.0]
    lines: list[str] = []
    stage = StageLog("scan", None, clock=lambda: now[0], emit=lines.append)
    stage.start()
    now[0] = 40.0
    stage.advance(7)
    now[0] = 41.0
    stage.finish()
    assert lines == ["scan: started", "scan: 7 after 40s", "scan: finished 7 in 41s"]
    short: list[str] = []
    quick = StageLog("write", 3, clock=lambda: 0.0, emit=short.append)
    quick.start()
    quick.advance(3)
    quick.finish()
    assert short == ["write: started (3 to do)"]


def test_heartbeat_reports_a_long_single_step():
    """A step that takes longer than the interval (one CNN epoch, one cluster call) still
    shows up in the log while it runs."""
    lines: list[str] = []
    with log_progress("cluster", 1, emit=lines.append, interval=0.05) as advance:
        time.sleep(0.3)
        advance(1)
    assert lines[0] == "cluster: started (1 to do)"
    assert any(line.startswith("cluster: 0/1 (0%) after ") for line in lines[1:])
    assert lines[-1].startswith("cluster: finished 1/1 (100%) in ")


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.9, 60, 3599, 3600, 7325)] == [
        "0s",
        "59s",
        "1m00s",
        "59m59s",
        "1h00m",
        "2h02m",
    ]
