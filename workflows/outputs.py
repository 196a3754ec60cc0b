"""Outputs of a run: file layout per format, atomic writes through the adapters' writers,
``exports`` rows, ``candidates.csv``, ``summary.json``, and the files an unfinished or earlier
run left behind. Existing files are never replaced without ``force``, and all targets are
checked before the first one is written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.core.files import TEMP_PATTERN, atomic_path, safe_name, sha256_file
from picks.core.progress import Progress, now
from picks.core.store import Store
from picks.plugins.adapter import Adapter, WriteContext

if TYPE_CHECKING:
    from picks.core.store import Store
    from picks.workflows.aggregate import AggregateResult


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
                hint="Rename one of the classes or tomograms (e.g. `particle`, "
                "`input_options` LABEL:particle=NAME) so their file names differ.",
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
            hint="Use `force=True` to replace them.",
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
    for run in store.running_runs("aggregate") + store.running_runs("export"):
        try:
            other = Path(json.loads(run[1] or "{}").get("out") or "")
        except ValueError:
            continue
        if str(other) and other.resolve() == root:
            raise PicksError(
                f"run {run[0]} (still running) writes to {out}",
                hint="Wait for it to finish, or use another `out`.",
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


DEFAULT_FORMATS = ("relion5", "box")
# Output format aliases -> adapter names (the first one registered wins). "box" is crYOLO's
# 3D CBOX: the box format tomography pickers read; EMAN .box is the fallback.


FORMAT_ALIASES: dict[str, tuple[str, ...]] = {
    "box": ("cryolo-cbox", "eman-box"),
    "cbox": ("cryolo-cbox",),
    "csv": ("czii-csv",),
    "czii": ("czii-csv",),
    "star": ("relion5",),
}


SUMMARY_FILE = "summary.json"


CANDIDATES_FILE = "candidates.csv"
# With the czii-csv format: every accepted pick in one file, exactly the columns the CZII
# scorer and the Kaggle submission format read (the per-class files keep the provenance
# columns consensus_id and support).
SUBMISSION_FILE = "submission.csv"
SUBMISSION_COLUMNS = ["id", "experiment", "particle_type", "x", "y", "z"]


def resolve_formats(formats: Iterable[str], registry) -> list[tuple[str, Any]]:
    """(format name, writer adapter) for each requested format (comma lists allowed)."""
    names: list[str] = []
    for item in formats:
        names.extend(part.strip() for part in str(item).split(",") if part.strip())
    known = set(registry.names())
    chosen: list[tuple[str, Any]] = []
    for name in dict.fromkeys(names):
        targets = FORMAT_ALIASES.get(name, ()) if name not in known else (name,)
        target = next((t for t in targets if t in known), None)
        if target is None:
            writers = ", ".join(sorted(registry.writers()))
            raise PicksError(
                f"`formats` {name!r}: no such writer (known: {writers}; aliases: {', '.join(FORMAT_ALIASES)})"
            )
        adapter = registry.get(target)
        if not adapter.can_write:
            raise PicksError(f"`formats` {name!r}: adapter {target} cannot write")
        if all(adapter.name != a.name for _, a in chosen):
            chosen.append((target, adapter))
    if not chosen:
        raise PicksError("no output format given")
    return chosen


def _default_writers(
    writers: list[tuple[str, Any]],
    store: Store,
    tomograms: list[str],
    registry,
    warnings: list[str],
) -> list[tuple[str, Any]]:
    """The default formats (RELION 5, box) need each tomogram's voxel size and size; without
    them, write the CZII CSV (Å) instead of failing after all the work."""
    known = store.tomograms()
    missing = [
        t for t in tomograms if (k := known.get(t)) is None or not k.voxel_size or k.shape is None
    ]
    if not missing:
        return writers
    warnings.append(
        f"tomogram(s) {', '.join(missing[:5])} not registered (no voxel size/size): writing "
        "czii-csv (Å) instead of the default relion5 and box; give `tomograms` (or `formats`)"
    )
    return resolve_formats(["csv"], registry)


def _check_outputs(out: Path, writers: list[tuple[str, Any]], force: bool) -> None:
    if force or not out.exists():
        return
    clashes = [
        out / name for name, _ in writers if (out / name).exists() and any((out / name).iterdir())
    ]
    clashes += [
        out / f for f in (SUMMARY_FILE, CANDIDATES_FILE, SUBMISSION_FILE) if (out / f).exists()
    ]
    if clashes:
        raise PicksError(
            f"{', '.join(map(str, clashes))} exist(s)",
            hint="Use `force=True` to replace, or another `out`.",
        )


def output_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Canonical picks for writers, plus ``consensus_id``, ``support``, ``status``."""
    angles = rows[["rot", "tilt", "psi"]].to_numpy(dtype=float)
    has_angles = np.isfinite(angles).all(axis=1)
    frame = canonical.make(
        {
            "tomogram": rows["tomogram"].astype(str).array,
            "particle": rows["particle"].to_numpy(dtype=object),
            "x": rows["x"].to_numpy(dtype=float),
            "y": rows["y"].to_numpy(dtype=float),
            "z": rows["z"].to_numpy(dtype=float),
            "score": rows["score"].to_numpy(dtype=float),
            "rot": angles[:, 0],
            "tilt": angles[:, 1],
            "psi": angles[:, 2],
            "angle_convention": np.where(has_angles, "relion-zyz", None),
            "record": rows["id"].to_numpy(dtype=np.int64),
            "original": "",
        },
        score_field="consensus_score",
    )
    frame["consensus_id"] = rows["id"].to_numpy(dtype=np.int64)
    frame["support"] = rows["support"].to_numpy(dtype=float)
    frame["status"] = rows["status"].astype(str).array
    return frame


def _write_outputs(
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
    radii: dict | None = None,
) -> list[dict]:
    """Accepted picks (every candidate with ``accepted_only=False``), one set per class and
    format, plus each format folder's shared files (RELION 5's ``tomograms.star``); every
    file recorded in ``exports`` under ``record_run`` (default ``run_id``, the run whose
    decisions they hold), with the consensus ids it holds.

    Voxel formats take each tomogram's registered voxel size; with no tomogram registered,
    ``voxel_size`` (the run's ``--voxel-size``). ``radii`` (Å per class) go to writers that
    describe classes (copick's project config)."""
    recorder = run_id if record_run is None else record_run
    # (only the columns output_frame reads: the selection and the sort copy fewer)
    used = ["id", "tomogram", "particle", "x", "y", "z", "score", "rot", "tilt", "psi"]
    chosen = final[[*used, "support", "status"]]
    chosen = chosen[final["accepted"].astype(bool)] if accepted_only else chosen
    frame = output_frame(chosen.sort_values("id", kind="stable"))
    codes, names = _class_codes(frame["particle"])
    tomos = store.tomograms()
    options = {"shared": True, "radii": dict(radii or {})}
    jobs: list[tuple[str, Any, Path, pd.DataFrame, str]] = []
    for name, adapter in writers:
        if adapter.layout == "directory":
            jobs.append((name, adapter, out / name, frame, "*"))
            continue
        for cls in sorted(names):
            subset = frame[codes == names.index(cls)].reset_index(drop=True)
            base = out / name / safe_name(cls)
            target = (
                base.with_name(base.name + adapter.extension) if adapter.layout == "file" else base
            )
            jobs.append((name, adapter, target, subset, cls))
    # Every file (companions included) is planned before the first is written: two classes
    # whose file-safe names agree are an error now, not a half-written or overwritten set.
    plan = [
        PlannedFile(out / f, "aggregate", (f,))
        for f in (SUMMARY_FILE, CANDIDATES_FILE, SUBMISSION_FILE)
    ]
    for name, adapter, target, subset, cls in jobs:
        if not subset.empty:
            plan += plan_files(subset, adapter, target, name, (cls,), options)[1]
    for name, adapter in writers:
        if adapter.layout != "directory" and len(frame):
            plan += [
                PlannedFile(p, name, ("all classes",), True)
                for p in adapter.shared_companions(out / name, options)
            ]
    check_plan(plan)

    def record(path: Path, name: str, held: pd.Series, cls: str | None) -> dict:
        # recorded as soon as written: a killed run's files are known (and removed later)
        store.add_exports([_export_row(recorder, path, name, held)])
        return {"format": name, "particle": cls, "path": str(path), "n_rows": len(held)}

    rows: list[dict] = []
    with progress("write", total=len(jobs)) as advance:
        for name, adapter, target, subset, cls in jobs:
            if subset.empty:
                advance(1)
                continue
            ctx = WriteContext(
                tomograms=tomos,
                voxel_size=None if len(tomos) else voxel_size,
                options=dict(options),
            )
            groups = planned_files(subset, adapter, target) if adapter.layout != "directory" else {}
            companions = set(adapter.companions(target, options))
            written = write_picks(subset, adapter, target, ctx, force=force)
            written += ctx.options.get("project_files") or []  # copick's config
            updated = ctx.options.get("updated") or []
            ours = {path for path, _, _ in store.export_history()} if updated else set()
            for path in written:
                path = Path(path)
                if not path.is_file():
                    continue
                if path in updated and str(path.resolve()) not in ours:
                    # a project file of the user's that the writer added to (copick's
                    # config): not recorded, so no cleanup ever takes it for picks' own
                    continue
                if path in companions:  # a project file (copick's config): holds no pick
                    held = subset["consensus_id"].iloc[:0]
                elif path in groups:
                    held = groups[path]["consensus_id"]
                else:
                    held = _directory_rows(subset, path)["consensus_id"]
                rows.append(record(path, name, held, None if cls == "*" else cls))
            advance(1)
    for name, adapter in writers:
        if adapter.layout == "directory" or frame.empty:
            continue
        ctx = WriteContext(
            tomograms=tomos, voxel_size=None if len(tomos) else voxel_size, options=dict(options)
        )
        ctx.options["force"] = force
        for path in adapter.write_shared(frame, out / name, ctx):
            # it describes the tomograms, it holds no pick: no members, so audit does not
            # list it as a file a pick is in
            rows.append(record(Path(path), name, frame["consensus_id"].iloc[:0], None))
    return rows


def _class_codes(particle: pd.Series) -> tuple[np.ndarray, list[str]]:
    """The file key of each pick's class (``"unclassified"`` for None, else ``str(p)``) as
    codes into the distinct keys: each distinct class converted once, not once per pick."""
    values = particle.to_numpy(dtype=object)

    def key(p: object) -> str:
        return "unclassified" if p is None else str(p)

    codes, uniques = pd.factorize(values)  # missing (None, NaN): -1
    if any(type(u) is not str for u in uniques.tolist()):  # (numbers: 1 and 1.0 are one)
        keys = [key(p) for p in values.tolist()]
    else:
        keys = np.array([*uniques.tolist(), ""], dtype=object)[codes]
        missing = np.flatnonzero(codes < 0)
        keys[missing] = [key(p) for p in values[missing].tolist()]
    codes, names = pd.factorize(np.asarray(keys, dtype=object))
    return codes, list(names.tolist())


def _export_row(run_id: int, path: Path, fmt: str, consensus_ids: pd.Series) -> tuple:
    """One ``exports`` row: the file, its hash, and the consensus picks it holds."""
    return (
        run_id,
        str(path.resolve()),
        fmt,
        sha256_file(path),
        consensus_ids.to_numpy(dtype=np.int64),
        now(),
    )


def _record_exports(store: Store, rows: list[tuple]) -> None:
    store.add_exports(rows)


def _remove_stale_outputs(
    store: Store, run_id: int, writers: list[tuple[str, Any]], out: Path, outputs: list[dict]
) -> list[str]:
    """With ``--force``, files that earlier runs exported into this run's format folders and
    that this run did not write again (a class with no accepted pick now): removed, so a
    folder never mixes two runs. Only files the store recorded, and only while unchanged
    since (same sha256); anything else in the folders is left alone."""
    roots = [str((out / name).resolve()) + os.sep for name, _ in writers]
    written = {str(Path(row["path"]).resolve()) for row in outputs}
    previous = store.exports_of_other_runs(run_id)
    removed = []
    for path, sha256 in previous:
        if path in written or not any(path.startswith(root) for root in roots):
            continue
        file = Path(path)
        if file.is_file() and sha256_file(file) == sha256:
            file.unlink()
            removed.append(path)
    return sorted(removed)


def _directory_rows(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows a file of a directory-layout writer (copick) holds, judged by the tomogram (a
    folder or the file name) and the class (the end of the file name) in its path; all rows
    when its path names neither."""
    from picks.core.files import safe_name

    parts = set(path.parts[:-1]) | {path.stem}
    stem = path.stem

    def suffix(p: object) -> int:  # length of the class name the file name ends with, or 0
        names = {str(p), safe_name(str(p))}
        hits = [len(n) for n in names if stem == n or stem.endswith(("_" + n, "-" + n))]
        return max(hits, default=0)

    tomo_hit = frame["tomogram"].map(lambda t: str(t) in parts or safe_name(str(t)) in parts)
    # the longest class name that ends the file name: "…_apo-ferritin" is not "ferritin"
    length = frame["particle"].map(lambda p: 0 if p is None else suffix(p))
    cls_hit = (length > 0) & (length == length.max())
    if tomo_hit.any() and cls_hit.any():
        return frame[tomo_hit & cls_hit]
    if tomo_hit.any():
        return frame[tomo_hit]
    if cls_hit.any():
        return frame[cls_hit]
    return frame


def candidates_table(store: Store, run_id: int, final: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every consensus pick of a run with its decision: status, support, pickers, vote, CNN
    score, accepted, reason and, when the CNN scored it, the per-class probabilities
    (``p_<class>``, ``p_noise``) and typicality, averaged over the models of the decision."""
    from picks.workflows.rescore import TYPICALITY, scores_table

    final = store.consensus(run_id) if final is None else final
    columns = ["id", "tomogram", "particle", "x", "y", "z", "support", "n_members", "pickers"]
    columns += ["status", "vote_score", "cnn_score", "score", "accepted", "reason"]
    if "posterior" in final and final["posterior"].notna().any():
        # a latent-class run: its posterior and who decided each pick (reference or model)
        columns[columns.index("score") + 1 : columns.index("score") + 1] = ["posterior"]
        columns.insert(columns.index("reason"), "decided_by")
    table = final[columns].rename(columns={"id": "consensus_id"}).copy()
    table["accepted"] = table["accepted"].fillna(0).astype(int)
    scores = scores_table(store, run_id)
    if len(scores):
        per_pick = scores.drop(columns="model_id").groupby("consensus_id").mean()
        models = scores.groupby("consensus_id")["model_id"].apply(
            lambda ids: ",".join(str(int(i)) for i in sorted(set(ids)))
        )
        per_pick = per_pick.rename(
            columns=lambda c: "typicality" if c == TYPICALITY else f"p_{c}"
        ).assign(model_ids=models)
        classes = sorted(c for c in per_pick.columns if c.startswith("p_") and c != "p_noise")
        order = [*classes, "p_noise", "typicality", "model_ids"]
        per_pick = per_pick[[c for c in order if c in per_pick.columns]]
        table = table.merge(per_pick, left_on="consensus_id", right_index=True, how="left")
    return table


def _write_candidates(
    store: Store, run_id: int, final: pd.DataFrame, out: Path, record_run: int | None = None
) -> dict:
    """``candidates.csv``: the decision on every candidate, accepted or not (docs/consensus.md);
    recorded under ``record_run`` (default ``run_id``)."""
    from picks.core.csvtext import write_csv
    from picks.core.files import atomic_path

    table = candidates_table(store, run_id, final)
    path = out / CANDIDATES_FILE
    # _check_outputs refused an existing file before the run unless --force.
    with atomic_path(path, force=True) as tmp:  # (creates the folder)
        write_csv(table, tmp, float_format="%.6g")  # to_csv's bytes, faster
    recorder = run_id if record_run is None else record_run
    _record_exports(store, [_export_row(recorder, path, "candidates", table["consensus_id"])])
    return {"format": "candidates", "particle": None, "path": str(path), "n_rows": len(table)}


def _write_submission(
    store: Store, run_id: int, final: pd.DataFrame, out: Path, *, accepted_only: bool = True
) -> tuple[dict, str | None]:
    """``submission.csv``: the accepted picks of every class in the CZII submission format
    (``id,experiment,particle_type,x,y,z`` in Å; ids unique across classes, in the order
    tomogram, class, consensus id). Picks without a class cannot be scored: left out, said.
    ``accepted_only=False``: every candidate. Recorded under ``run_id`` (the writing run)."""
    from picks.core.csvtext import write_csv
    from picks.core.files import atomic_path

    accepted = final[["id", "tomogram", "particle", "x", "y", "z"]]  # (the columns it reads)
    accepted = accepted[final["accepted"].astype(bool)] if accepted_only else accepted
    classless = accepted["particle"].isna()
    rows = accepted[~classless].sort_values(["tomogram", "particle", "id"], kind="stable")
    table = pd.DataFrame(
        {
            "id": np.arange(len(rows)),
            "experiment": rows["tomogram"].astype(str).array,
            "particle_type": rows["particle"].astype(str).array,
            "x": rows["x"].to_numpy(dtype=float),
            "y": rows["y"].to_numpy(dtype=float),
            "z": rows["z"].to_numpy(dtype=float),
        },
        columns=SUBMISSION_COLUMNS,
    )
    path = out / SUBMISSION_FILE
    with atomic_path(path, force=True) as tmp:  # _check_outputs refused an existing one
        write_csv(table, tmp, float_format="%.3f")
    _record_exports(store, [_export_row(run_id, path, "czii-submission", rows["id"])])
    warning = (
        f"{SUBMISSION_FILE}: {int(classless.sum())} accepted pick(s) without a class left out "
        "(a CZII submission needs one; give `particle`)"
        if classless.any()
        else None
    )
    return (
        {"format": "czii-submission", "particle": None, "path": str(path), "n_rows": len(table)},
        warning,
    )


def _write_summary(out: Path, result: AggregateResult, force: bool) -> None:
    from picks.core.files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    # _check_outputs refused an existing summary before the run unless --force.
    with atomic_path(out / SUMMARY_FILE, force=True) as tmp:
        tmp.write_text(json.dumps(result.as_dict(), indent=2, default=str))
