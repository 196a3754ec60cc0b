"""Write canonical picks through an adapter's writer: file layout, ``--force``, atomicity.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file. Existing files are never replaced without ``force``,
and all targets are checked before the first one is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from picks.core.errors import PicksError
from picks.plugins.adapter import Adapter, WriteContext


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    if path.exists() and not force:
        raise PicksError(f"{path} exists", hint="Use --force to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file owner-only; give it the mode a plain open() would (umask)
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import (os.umask can only be read by setting it)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)) or "unnamed"


def planned_files(picks: pd.DataFrame, adapter: Adapter, out: Path) -> dict[Path, pd.DataFrame]:
    """Map each output file to the picks it will hold, following ``adapter.layout``."""
    if adapter.layout == "file":
        return {out: picks}
    if adapter.layout == "per_tomogram":
        return {
            out / f"{safe_name(t)}{adapter.extension}": g
            for t, g in picks.groupby("tomogram", sort=True)
        }
    if adapter.layout == "per_tomogram_particle":
        keyed = picks.assign(_particle=picks["particle"].fillna("particle"))
        return {
            out / f"{safe_name(t)}_{safe_name(p)}{adapter.extension}": g.drop(columns="_particle")
            for (t, p), g in keyed.groupby(["tomogram", "_particle"], sort=True)
        }
    raise PicksError(f"adapter {adapter.name}: unknown layout {adapter.layout!r}")


def write_picks(
    picks: pd.DataFrame,
    adapter: Adapter,
    out: str | Path,
    ctx: WriteContext | None = None,
    *,
    force: bool = False,
) -> list[Path]:
    """Write ``picks`` with ``adapter`` to ``out`` (a file, or a folder for multi-file layouts)."""
    if not adapter.can_write:
        raise PicksError(f"adapter {adapter.name} cannot write")
    ctx = ctx or WriteContext()
    ctx.options.setdefault("force", force)
    out = Path(out)
    if adapter.layout == "directory":
        adapter.write(picks, out, ctx)
        written = ctx.options.get("written", [out])
        return [Path(p) for p in written]
    files = planned_files(picks, adapter, out)
    clashes = [str(p) for p in files if p.exists()]
    if clashes and not force:
        raise PicksError(
            f"{len(clashes)} output file(s) already exist: {', '.join(clashes[:5])}",
            hint="Use --force to replace them.",
        )
    for path, group in files.items():
        with atomic_path(path, force=force) as tmp:
            # Writers that add companion files (RELION 5's tomograms.star) name them after the
            # final path, not the temporary one they are given.
            ctx.options["target"] = path
            adapter.write(group.reset_index(drop=True), tmp, ctx)
    return list(files)
