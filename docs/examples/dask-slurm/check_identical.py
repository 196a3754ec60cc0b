"""Compare two ``picks aggregate`` runs of the same inputs and seed: output files and store.

    python check_identical.py serial/out serial/picks.db slurm/out slurm/picks.db

Every output file is compared byte for byte, except the start time that ``report.html``
shows; every table of the two stores is compared row for row, except timestamps and process
ids (the columns ending in ``_at``, ``pid``, ``process_start``, ``heartbeat...``); the output
folder's absolute path, which the store records (exports), reads ``OUT`` in both. Run both
with the same relative ``--out`` name (in two folders): ``summary.json`` records it. Exit
status 0 when all is identical, 1 otherwise (what differs is listed).
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

VOLATILE = re.compile(r"(_at|^pid|^process_start|^heartbeat.*)$")  # as tests/test_dask.py


def files(folder: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "report.html":  # it shows when the run started
            data = re.sub(rb"started \S+,", b"started -,", data)
        found[str(path.relative_to(folder))] = data
    return found


def tables(db: Path, out: Path) -> dict[str, list[tuple]]:
    prefix = str(out.resolve())

    def plain(value):
        return value.replace(prefix, "OUT") if isinstance(value, str) else value

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = {}
        for name in sorted(names):
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({name})")]
            keep = [c for c in columns if not VOLATILE.search(c)]
            rows = con.execute(f"SELECT {', '.join(keep)} FROM {name}").fetchall()
            found[name] = sorted((tuple(map(plain, r)) for r in rows), key=repr)
    return found


def differences(out_a: Path, db_a: Path, out_b: Path, db_b: Path) -> list[str]:
    fa, fb = files(out_a), files(out_b)
    ta, tb = tables(db_a, out_a), tables(db_b, out_b)
    found = [f"only in {out_a}: {n}" for n in fa if n not in fb]
    found += [f"only in {out_b}: {n}" for n in fb if n not in fa]
    found += [f"file differs: {n}" for n in fa if n in fb and fa[n] != fb[n]]
    found += [f"table only in one store: {n}" for n in set(ta) ^ set(tb)]
    found += [f"table differs: {n}" for n in ta if n in tb and ta[n] != tb[n]]
    if not found:
        rows = sum(len(r) for r in ta.values())
        print(f"identical: {len(fa)} files, {len(ta)} tables ({rows} rows)")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.exit(__doc__)
    found = differences(*map(Path, argv))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
