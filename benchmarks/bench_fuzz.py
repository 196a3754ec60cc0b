"""Benchmark: fuzz every reader with ≥ 1,000 seeded mutations of its real fixture file, through
the import path and through ``picks convert`` (see ``tests/fuzz_support.py`` for the
mutations and the rule checked). Prints a summary per reader and path, and the failures
(reader, seed, mutation, what happened) so any one can be replayed.

    nice python benchmarks/bench_fuzz.py [--cases 1000] [--kinds import,convert] [--json]

Needs ``shared/fixtures/formats`` beside the repository (``--formats`` to point elsewhere).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_support import READERS, fuzz_reader  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="mutated inputs per reader")
    parser.add_argument("--kinds", default="import,convert")
    parser.add_argument("--formats", type=Path, default=ROOT.parent / "shared/fixtures/formats")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    if not args.formats.is_dir():
        print(f"{args.formats} is missing: nothing to fuzz", file=sys.stderr)
        return 2

    from picks.plugins.manager import get_registry

    registry = get_registry(load_entrypoints=False, local=False)
    seeds = range(args.first_seed, args.first_seed + args.cases)
    rows, failures = [], []
    start = time.perf_counter()
    for kind in args.kinds.split(","):
        for relative in sorted(READERS):
            with tempfile.TemporaryDirectory() as work:
                tally = fuzz_reader(kind, args.formats, relative, seeds, Path(work), registry)
            rows.append({"path": kind, "reader": READERS[relative][0], **tally.as_dict()})
            failures.extend(tally.failures)
            print(
                f"{kind:8s} {READERS[relative][0]:15s} {tally.cases:6d} cases "
                f"{tally.imported:5d} read {tally.errors:5d} clean errors "
                f"{len(tally.failures):3d} failures {tally.seconds:7.1f} s",
                file=sys.stderr,
                flush=True,
            )
    total = {
        "cases": sum(r["cases"] for r in rows),
        "read": sum(r["imported"] for r in rows),
        "clean_errors": sum(r["clean_errors"] for r in rows),
        "failures": len(failures),
        "seconds": round(time.perf_counter() - start, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps({"total": total, "readers": rows, "failures": failures}, indent=2))
    else:
        print(json.dumps(total))
        for failure in failures[:50]:
            print(json.dumps(failure))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
