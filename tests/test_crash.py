"""Crashes and concurrency through real processes: kill -9 during an import and during an
aggregate, and 8 imports + 2 aggregates at once on one store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HEADER = "id,experiment,particle_type,x,y,z,score\n"
CLASSES = [f"class{i:02d}" for i in range(8)]
SLOW_ADAPTER = '''
import time
from picks.adapters.czii_csv import CziiCsvAdapter


class SlowCsv(CziiCsvAdapter):
    """The CZII CSV writer, 0.4 s per file: a run to kill while it writes."""

    name = "slow-csv"

    def write(self, picks, path, ctx):
        time.sleep(0.4)
        super().write(picks, path, ctx)
'''


def picks_cmd(*args: str, env: dict, wait: bool = True):
    command = [sys.executable, "-c", "from picks.cli import main; main()", *map(str, args)]
    if not wait:
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def write_picks(path: Path, n: int, seed: int, classes=CLASSES, shift: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, 6000, (n, 3)) + shift
    cls = np.array(classes)[np.arange(n) % len(classes)]
    lines = [
        f"{i},TS_1,{c},{x:.2f},{y:.2f},{z:.2f},0.5\n"
        for i, (c, (x, y, z)) in enumerate(zip(cls, xyz, strict=True))
    ]
    path.write_text(HEADER + "".join(lines))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict:
    (tmp_path / "slow_csv.py").write_text(SLOW_ADAPTER)
    registry = tmp_path / "registry.toml"
    registry.write_text(
        '[[adapter]]\nname = "slow-csv"\nobject = "SlowCsv"\npath = "slow_csv.py"\n'
        'patterns = ["*.slowcsv"]\nformats = ["write"]\n'
    )
    return {
        **os.environ,
        "PICKS_REGISTRY": str(registry),
        "PICKS_NO_PROGRESS": "1",
        "PICKS_USER_DIR": str(tmp_path / "user"),
    }


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def wait_for(db: Path, sql: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the command ended before it could be killed: {proc.stderr.read()}")
        try:
            if db.exists() and query(db, sql)[0][0]:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {sql}")


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def runs(db: Path, env: dict) -> list[dict]:
    result = picks_cmd("runs", "--db", db, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_kill_during_import(tmp_path, env):
    db = tmp_path / "picks.db"
    big = write_picks(tmp_path / "big.csv", 150_000, seed=1)
    proc = picks_cmd("import", big, "--db", db, env=env, wait=False)
    wait_for(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'", proc)
    time.sleep(0.5)
    kill9(proc)
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    killed = runs(db, env)
    assert [r["status"] for r in killed] == ["stale"]
    assert query(db, "SELECT COUNT(*) FROM sources")[0][0] in (0, 1)  # all or nothing
    again = picks_cmd("import", big, "--db", db, env=env)
    assert again.returncode == 0, again.stderr
    assert query(db, "SELECT COUNT(*) FROM picks")[0][0] == 150_000
    assert [r["status"] for r in runs(db, env)] == ["stale", "ok"]


def test_kill_during_aggregate_then_plain_rerun(tmp_path, env):
    db = tmp_path / "picks.db"
    a = write_picks(tmp_path / "a.csv", 2_000, seed=2)
    b = write_picks(tmp_path / "b.csv", 2_000, seed=2, shift=5.0)
    args = ["aggregate", f"a={a}", f"b={b}", "--out", tmp_path / "out", "--db", db]
    args += ["--format", "slow-csv", "--method", "vote", "--box-size", "200"]
    proc = picks_cmd(*args, env=env, wait=False)
    # killed after two of its eight class files are written (and while a third is)
    wait_for(db, "SELECT COUNT(*) >= 2 FROM exports", proc)
    kill9(proc)
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert [(r["command"], r["status"]) for r in runs(db, env)] == [("aggregate", "stale")]
    again = picks_cmd(*args, env=env)  # no --force
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert [r["status"] for r in runs(db, env)] == ["stale", "ok"]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "slow-csv").iterdir()) == [f"{c}.csv" for c in CLASSES]
    assert not list(out.rglob("*.tmp"))
    from picks.core.store import Store
    from picks.workflows.evaluate import consensus_runs

    with Store(db) as store:  # evaluate and noise read only the finished run by default
        assert consensus_runs(store) == [2]


def test_parallel_imports_and_aggregates(tmp_path, env):
    db = tmp_path / "picks.db"
    big = write_picks(tmp_path / "big.csv", 200_000, seed=3, classes=["ribosome"])
    small = [
        write_picks(tmp_path / f"s{i}.csv", 50, seed=10 + i, classes=["ribosome"]) for i in range(4)
    ]
    # the same small file imported twice at once: stored once
    files = [big, *small, small[0], small[1], small[2]]
    procs = [picks_cmd("import", f, "--db", db, env=env, wait=False) for f in files]
    for k in range(2):
        procs.append(
            picks_cmd(
                "aggregate",
                *(f"p{i}={f}" for i, f in enumerate(small)),
                "--out",
                tmp_path / f"out{k}",
                "--db",
                db,
                "--format",
                "csv",
                "--method",
                "vote",
                env=env,
                wait=False,
            )
        )
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, stderr in results:
        assert code == 0, stderr
        assert "Traceback" not in stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    # nothing lost, nothing twice: one source per distinct file, every pick stored once
    assert query(db, "SELECT COUNT(*) FROM sources")[0][0] == 5
    assert query(db, "SELECT COUNT(*) FROM picks")[0][0] == 200_000 + 4 * 50
    statuses = [r["status"] for r in runs(db, env)]
    assert statuses == ["ok"] * 10
