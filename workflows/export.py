"""Writing a run's decisions: the one code path of ``picks aggregate`` (at the end of a run)
and ``picks export`` (any stored run, later: after ``picks score``, or for an old run).

:func:`write_run_outputs` writes the format files, ``candidates.csv`` and (with czii-csv)
``submission.csv`` from the stored decisions; :func:`export_run` does it for a stored run as
its own recorded run (command ``export``), so the files it writes are in ``exports`` and
``picks audit`` names them for each pick.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from picks.core.errors import PicksError
from picks.core.progress import Progress, null_progress
from picks.core.store import FINISHED, Store
from picks.workflows.outputs import (
    DEFAULT_FORMATS,
    _check_outputs,
    _remove_stale_outputs,
    _write_candidates,
    _write_outputs,
    _write_submission,
    remove_unfinished_outputs,
    resolve_formats,
)


def write_run_outputs(
    store: Store,
    run_id: int,
    final: pd.DataFrame,
    writers: list[tuple[str, Any]],
    out: Path,
    *,
    force: bool,
    progress: Progress,
    voxel_size: float | None = None,
    accepted_only: bool = True,
    record_run: int | None = None,
    radii: Mapping[object, float] | None = None,
) -> tuple[list[dict], list[str]]:
    """The files of run ``run_id``'s decisions ``final`` under ``out``: one set per format
    and class, ``candidates.csv``, ``submission.csv`` with czii-csv; with ``force``, files
    an earlier run exported into these format folders and that this one does not write again
    are removed. Every file is recorded in ``exports`` under ``record_run`` (default
    ``run_id``). Returns the outputs (format, particle, path, n_rows) and warnings."""
    recorder = run_id if record_run is None else record_run
    warnings: list[str] = []
    outputs = _write_outputs(
        store,
        run_id,
        final,
        writers,
        out,
        force=force,
        progress=progress,
        voxel_size=voxel_size,
        accepted_only=accepted_only,
        record_run=recorder,
        radii={str(k): float(v) for k, v in (radii or {}).items() if k is not None},
    )
    outputs.append(_write_candidates(store, run_id, final, out, recorder))
    if any(adapter.name == "czii-csv" for _, adapter in writers):
        row, warning = _write_submission(store, recorder, final, out, accepted_only=accepted_only)
        outputs.append(row)
        if warning:
            warnings.append(warning)
    if force:
        stale = _remove_stale_outputs(store, recorder, writers, out, outputs)
        if stale:
            warnings.append(
                f"`force=True`: removed {len(stale)} file(s) an earlier run had written under "
                f"{out} that this run no longer writes (e.g. {stale[0]})"
            )
    return outputs, warnings


@dataclass
class ExportResult:
    run_id: int  # the run whose decisions were written
    export_run_id: int  # the export's own run (its files are recorded under it)
    status: str  # the exported run's status (ok, or failed/stale/running with allow_incomplete)
    out: Path
    formats: list[str]
    accepted_only: bool
    n_written: int  # picks in the format files (accepted, or all candidates)
    outputs: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "export_run_id": self.export_run_id,
            "status": self.status,
            "out": str(self.out),
            "formats": self.formats,
            "accepted_only": self.accepted_only,
            "n_written": self.n_written,
            "outputs": self.outputs,
            "warnings": self.warnings,
        }


def export_run(
    store: Store,
    run_id: int,
    out: str | Path,
    *,
    formats: Iterable[str] | None = None,
    force: bool = False,
    accepted_only: bool = True,
    allow_incomplete: bool = False,
    registry=None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write stored run ``run_id``'s current decisions to ``out`` exactly as ``picks
    aggregate`` does (``formats`` default: the run's own), as a recorded run of command
    ``export``. A run that did not finish (failed, stale, still running) holds incomplete
    decisions: refused unless ``allow_incomplete``."""
    from picks.plugins.manager import get_registry

    progress = progress or null_progress
    registry = registry or get_registry()
    out = Path(out)
    store.mark_stale()
    run = store.get_run(int(run_id))
    status = str(run.get("status") or "")
    final = store.consensus(int(run_id))
    if final.empty:
        raise PicksError(
            f"run {run_id} ({run.get('command')}) holds no decisions to export",
            hint="`picks runs` lists the runs; export an aggregate run.",
        )
    if status != FINISHED and not allow_incomplete:
        raise PicksError(
            f"run {run_id} is {status or 'without status'}, not finished: its decisions may "
            "be incomplete",
            hint="Export a finished run, or use `allow_incomplete=True` to write them anyway.",
        )
    try:
        params = json.loads(run.get("params") or "{}")
    except ValueError:
        params = {}
    given = [f for f in (formats or []) if str(f).strip()]
    writers = resolve_formats(given or params.get("formats") or DEFAULT_FORMATS, registry)
    warnings: list[str] = []
    if status != FINISHED:
        warnings.append(
            f"run {run_id} is {status or 'without status'}: its decisions may be incomplete"
        )
    cleaned = remove_unfinished_outputs(store, out)
    if cleaned:
        warnings.append(
            f"removed {len(cleaned)} file(s) under {out} left by an unfinished run "
            f"(e.g. {cleaned[0]})"
        )
    _check_outputs(out, writers, force)
    resolved = params.get("resolved") or {}
    radii = resolved.get("radii") or params.get("radii") or {}
    export_params = {
        "run": int(run_id),
        "out": str(out),
        "formats": [name for name, _ in writers],
        "force": force,
        "accepted_only": accepted_only,
        "allow_incomplete": allow_incomplete,
    }
    with store.run("export", export_params, method=str(run.get("method") or "")) as export_id:
        outputs, written_warnings = write_run_outputs(
            store,
            int(run_id),
            final,
            writers,
            out,
            force=force,
            progress=progress,
            voxel_size=params.get("voxel_size"),
            accepted_only=accepted_only,
            record_run=export_id,
            radii={k: v for k, v in radii.items() if k not in ("None", "")},
        )
    chosen = final["accepted"].astype(bool) if accepted_only else pd.Series(True, final.index)
    return ExportResult(
        run_id=int(run_id),
        export_run_id=export_id,
        status=status,
        out=out,
        formats=[name for name, _ in writers],
        accepted_only=accepted_only,
        n_written=int(chosen.sum()),
        outputs=outputs,
        warnings=warnings + written_warnings,
    )
