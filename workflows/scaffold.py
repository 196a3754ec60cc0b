"""``picks init DIR``: a starting inputs file for a folder of picker outputs, with what was
detected and what could not be decided (said in comments, never guessed silently)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from picks.core.errors import PicksError
from picks.core.inputs_file import write_inputs_file

VOLUME_SUFFIXES = (".mrc", ".rec", ".map", ".zarr")
LABEL_FILES = ("labels.txt", "labels.csv", "classes.txt")
# formats whose coordinates are in Å: no binning to decide
ANGSTROM_FORMATS = ("czii-csv", "copick", "portal-ndjson", "relion5")
# crYOLO and friends name files TOMO__CLASS.ext: offer the name pattern that reads them
_DOUBLE_UNDERSCORE = re.compile(r"^[^_].*[^_]__[^_].*$")


@dataclass
class Scaffold:
    path: Path
    pickers: list[dict] = field(default_factory=list)
    tomograms: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scaffold(folder: str | Path, out: str | Path | None = None, *, registry=None) -> Scaffold:
    """Detect the picker outputs under ``folder`` (one input per top-level file or folder and
    adapter) and write ``out`` (default ``folder/inputs.toml``, never overwritten)."""
    from picks.plugins.manager import get_registry
    from picks.workflows.importing import expand_inputs

    registry = registry or get_registry()
    folder = Path(folder)
    if not folder.is_dir():
        raise PicksError(f"{folder}: not a folder")
    target = Path(out) if out else folder / "inputs.toml"
    if target.exists():
        raise PicksError(f"{target} exists", hint="Give another `out`, or remove it.")
    result = Scaffold(target)
    base = target.parent.resolve()
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.resolve() == target.resolve():
            continue
        if _is_volume_folder(child):
            result.tomograms.append(_rel(child, base))
            continue
        try:
            files = expand_inputs([child], registry)
        except PicksError:
            result.skipped.append(f"{child.name}: no file any adapter reads")
            continue
        by_adapter: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            try:
                by_adapter[registry.detect(path).name].append(path)
            except PicksError as exc:
                result.undecided.append(str(exc))
        for adapter, paths in sorted(by_adapter.items()):
            label = _label(child, adapter, len(by_adapter) > 1)
            entry: dict = {"label": label, "path": _rel(child, base), "adapter": adapter}
            notes = [f"{len(paths)} file(s) read by {adapter}, e.g. {paths[0].name}"]
            labels = next((child / n for n in LABEL_FILES if (child / n).is_file()), None)
            if labels is not None:
                entry["options"] = {"labels": _rel(labels, base)}
                notes.append(f"class numbers mapped by {labels.name} (check it)")
            elif adapter in ("deepfinder-xml", "deepetpicker", "relion5", "relion"):
                notes.append(
                    "UNDECIDED: if its classes are numbers, map them: "
                    'options = { labels = "1=ribosome,2=apo-ferritin" } (or a labels file)'
                )
                result.undecided.append(f"{label}: class numbers may need a labels map")
            pattern = _class_folder_pattern(child, paths)
            if pattern:
                entry.setdefault("options", {})["name"] = pattern
                notes.append(f"one folder per class: names read as {pattern} (check it)")
            elif all(_DOUBLE_UNDERSCORE.match(p.stem) for p in paths):
                entry.setdefault("options", {})["name"] = "{tomogram}__{particle}"
                notes.append("file names read as TOMOGRAM__CLASS (check the pattern)")
            if adapter not in ANGSTROM_FORMATS:
                # a file in voxels does not say which binning the picker saw
                notes.append(
                    "UNDECIDED: if it picked on a binned tomogram, add binning = N "
                    "(voxel coordinates do not say; a wrong binning misplaces every pick)"
                )
                result.undecided.append(f"{label}: binning (voxel coordinates)")
            entry["_note"] = "\n".join(notes)
            result.pickers.append(entry)
    if not result.pickers:
        raise PicksError(f"{folder}: found no picker output", hint="'picks plugins' lists formats.")
    notes = [f"written by picks init from {folder}; paths are relative to this file"]
    if not result.tomograms:
        notes.append("no tomograms found: add [tomograms] paths = [...] for sizes and voxel sizes")
        result.undecided.append("no tomogram folder found")
    write_inputs_file(
        target,
        result.pickers,
        tomograms=result.tomograms or None,
        output={"out": "consensus"},
        notes=notes,
    )
    return result


def _class_folder_pattern(child: Path, paths: list[Path]) -> str | None:
    """``{particle}/{}/{tomogram}`` when the files sit in one folder per known class (crYOLO's
    ``ribosome/CBOX_3D/TS_01.cbox``), else None."""
    from picks.core.particles import Catalog, canonical_name

    if not child.is_dir() or len(paths) < 2:
        return None
    parts = [p.relative_to(child).parts for p in paths]
    depth = {len(q) for q in parts}
    if len(depth) != 1 or (d := depth.pop()) < 2:
        return None
    first = {q[0] for q in parts}
    catalog = Catalog()
    if len(first) < 2 or not all(canonical_name(f) in catalog for f in first):
        return None
    return "/".join(["{particle}", *["{}"] * (d - 2), "{tomogram}"])


def _is_volume_folder(path: Path) -> bool:
    if path.is_file():
        return False
    if path.suffix == ".zarr":
        return True
    inside = [p for p in path.iterdir() if not p.name.startswith(".")]
    return bool(inside) and all(p.suffix.lower() in VOLUME_SUFFIXES for p in inside)


def _label(child: Path, adapter: str, several: bool) -> str:
    stem = child.stem if child.is_file() else child.name
    label = re.sub(r"[^A-Za-z0-9_.+-]+", "-", stem).strip("-") or adapter
    return f"{label}-{adapter}" if several else label


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path.resolve())
