"""Byte-compare what two checkouts of picks write: ``picks demo`` and a vote aggregate.

Each ROOT is a folder holding a ``picks`` package (e.g. a folder with a ``picks`` symlink to a
checkout). Both run with this interpreter, one after the other, in their own temporary folders,
on the same seed; then every file they wrote is compared byte for byte, except the provenance
database (``*.db*``), CNN model files (``*.keras``, ``*.card.json``: TensorFlow's own bytes)
and ``summary.json`` (it records absolute paths and timings).

    python benchmarks/compare_outputs.py /tmp/basepkg /tmp/newpkg [--demo-method vote]

Exit status 0 when every compared file is identical, 1 otherwise (the differing files listed).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKIP_SUFFIXES = (".keras", ".card.json")
SKIP_NAMES = {"summary.json"}

# Run inside each root: simulate a world, then one vote aggregate over its pickers' native
# files (through the CLI, so the path is the one users take). ``picker_inputs`` moved in the
# architecture step; both homes are tried.
DRIVER = r"""
import json, sys
from picks.cli import main

def run(*args):
    sys.argv = ["picks", *map(str, args)]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise

out, seed = sys.argv[1], sys.argv[2]
run("simulate", f"{out}/sim", "--seed", seed, "--tomograms", "2")
try:
    from picks.simulate.world import picker_inputs
except ImportError:
    from picks.simulate.world import picker_inputs
args = []
for item in picker_inputs(f"{out}/sim"):
    key = f"{item['label']}={item['path']}"
    args.append(key)
    for name, value in item["options"].items():
        args += ["--input-option", f"{key}:{name}={value}"]
run("aggregate", *args, "--method", "vote", "--out", f"{out}/vote", "--db", f"{out}/vote.db",
    "--tomograms", f"{out}/sim/tomograms",
    "--format", "relion5,box,csv,copick")
"""


def _run(command: list[str], cwd: Path, env: dict) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command[:3])}... failed under {env['PYTHONPATH']}:\n{done.stderr}")


def run_root(root: Path, work: Path, seed: int, demo_method: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONHASHSEED="0")
    times = {}
    started = time.perf_counter()
    demo = [sys.executable, "-c", "from picks.cli import main; main()", "demo", str(work / "demo")]
    demo += ["--seed", str(seed), "--method", demo_method]
    _run(demo, work, env)
    times["demo_s"] = time.perf_counter() - started
    started = time.perf_counter()
    _run([sys.executable, "-c", DRIVER, str(work / "world"), str(seed)], work, env)
    times["vote_s"] = time.perf_counter() - started
    return times


def compared_files(folder: Path) -> set[Path]:
    files = set()
    for path in folder.rglob("*"):
        if not path.is_file() or ".db" in path.name or path.name in SKIP_NAMES:
            continue
        if path.name.endswith(SKIP_SUFFIXES):
            continue
        files.add(path.relative_to(folder))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="folder holding the baseline picks package")
    parser.add_argument("new", type=Path, help="folder holding the new picks package")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo-method", default="auto", help="picks demo --method")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="picks-compare-") as tmp:
        dirs = {name: Path(tmp) / name for name in ("base", "new")}
        times = {}
        for name, root in (("base", args.base), ("new", args.new)):
            dirs[name].mkdir()
            times[name] = run_root(root.resolve(), dirs[name], args.seed, args.demo_method)
        base, new = compared_files(dirs["base"]), compared_files(dirs["new"])
        only = sorted(str(p) for p in base ^ new)
        differ, path_only = [], []
        lines: dict[str, list] = {}
        for p in sorted(base & new, key=str):
            if filecmp.cmp(dirs["base"] / p, dirs["new"] / p, shallow=False):
                continue
            # Files that record absolute paths (copick configs, evaluation.json) differ only
            # by the run folder: equal once it is replaced by one placeholder.
            a = (dirs["base"] / p).read_bytes().replace(str(dirs["base"]).encode(), b"<RUN>")
            b = (dirs["new"] / p).read_bytes().replace(str(dirs["new"]).encode(), b"<RUN>")
            (path_only if a == b else differ).append(str(p))
            if a != b:
                lines[str(p)] = _differing_lines(a, b)
        report = {
            "compared": len(base & new),
            "identical": len(base & new) - len(differ) - len(path_only),
            "equal_but_for_the_run_folder": path_only,
            "differ": differ,
            "only_in_one": only,
            # per differing file: how many lines differ and the first three pairs (a file
            # that differs only in a time stamp shows just that line)
            "differing_lines": lines,
            "seconds": times,
        }
        print(json.dumps(report, indent=2))
        return 0 if not differ and not only else 1


def _differing_lines(a: bytes, b: bytes) -> dict:
    left = a.decode(errors="replace").splitlines()
    right = b.decode(errors="replace").splitlines()
    pairs = [(x, y) for x, y in zip(left, right, strict=False) if x != y]
    return {
        "count": len(pairs) + abs(len(left) - len(right)),
        "first": [(x[:200], y[:200]) for x, y in pairs[:3]],
    }


if __name__ == "__main__":
    sys.exit(main())
