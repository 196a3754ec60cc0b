"""Write canonical picks through an adapter's writer: file layout, ``--force``, atomicity.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file. Existing files are never replaced without ``force``,
and all targets are checked before the first one is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from picks.core.errors import PicksError
from picks.core.files import TEMP_PATTERN, atomic_path, safe_name, sha256_file
from picks.plugins.adapter import Adapter, WriteContext

if TYPE_CHECKING:
    from picks.core.store import Store


@dataclass(frozen=True)
class PlannedFile:
    """One file an export will write: its path, the format, what it holds (``key``: the
    class, ``tomogram`` for per-tomogram layouts) and whether it is a writer's companion."""

    path: Path
    format: str
    key: tuple[str, ...]
    companion: bool = False


def check_plan(planned: Sequence[PlannedFile]) -> list[PlannedFile]:
    """Refuse two outputs on one path (also when the paths differ only in case, which is one
    file on macOS and Windows): a later file would replace an earlier one and the store
    would record both for one path. Returns ``planned``."""
    seen: dict[str, PlannedFile] = {}
    for item in planned:
        folded = os.path.normcase(str(item.path)).casefold()
        other = seen.get(folded)
        if other is not None:

            def what(p: PlannedFile) -> str:
                role = "companion of " if p.companion else ""
                return f"{p.format} {role}{'/'.join(map(repr, p.key))}"

            raise PicksError(
                f"two outputs would be written to one file {item.path}: {what(other)} and "
                f"{what(item)} (names are made file-safe: characters outside A-Za-z0-9._+- "
                "become '_')",
                hint="Rename one of the classes or tomograms (e.g. --particle, "
                "--input-option LABEL:particle=NAME) so their file names differ.",
            )
        seen[folded] = item
    return list(planned)


def plan_files(
    picks: pd.DataFrame, adapter: Adapter, out: Path, fmt: str, key: tuple[str, ...], options: dict
) -> tuple[dict[Path, pd.DataFrame], list[PlannedFile]]:
    """:func:`planned_files` with the companions each file brings, as :class:`PlannedFile`."""
    files = planned_files(picks, adapter, out) if adapter.layout != "directory" else {}
    planned = []
    for path, group in files.items():
        sub = key
        if adapter.layout != "file" and len(group):
            sub = (*key, str(group["tomogram"].iloc[0]))
            if adapter.layout == "per_tomogram_particle":
                sub = (*sub, str(group["particle"].iloc[0]))
        planned.append(PlannedFile(path, fmt, sub))
        planned.extend(PlannedFile(c, fmt, sub, True) for c in adapter.companions(path, options))
    return files, planned


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
    files, planned = plan_files(picks, adapter, out, adapter.name, (), ctx.options)
    check_plan(planned)
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


def remove_unfinished_outputs(store: Store, out: Path) -> list[str]:
    """What an unfinished (failed or stale) run left under ``out``: picks' own temporary
    files (``.<name>.<random>.tmp``, from a write that was killed) and the finished files it
    recorded in ``exports``, while unchanged since (same sha256). Removed, so a plain re-run
    is not blocked by them and a ``--force`` run does not keep them. Nothing else is touched,
    and nothing while another run that writes to ``out`` is alive."""
    if not out.is_dir():
        return []
    store.mark_stale()
    root = out.resolve()
    for run in store.running_runs("aggregate"):
        try:
            other = Path(json.loads(run[1] or "{}").get("out") or "")
        except ValueError:
            continue
        if str(other) and other.resolve() == root:
            raise PicksError(
                f"run {run[0]} (still running) writes to {out}",
                hint="Wait for it to finish, or use another --out.",
            )
    removed = [str(p) for p in sorted(out.rglob(".*.tmp")) if TEMP_PATTERN.match(p.name)]
    prefix = str(root) + os.sep
    latest: dict[str, tuple[str, str]] = {}
    for path, sha256, status in store.export_history():
        if path.startswith(prefix):
            latest[path] = (sha256, status)  # the last run that wrote the file owns it
    for path, (sha256, status) in sorted(latest.items()):
        file = Path(path)
        if status in ("failed", "stale") and file.is_file() and sha256_file(file) == sha256:
            removed.append(path)
    for path in removed:
        Path(path).unlink(missing_ok=True)
        folder = Path(path).parent  # folders emptied by this (per-class, per-format) go too
        while folder.resolve() != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed
