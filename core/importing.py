"""Import picker files into the store: detect the adapter, read, check, store atomically.

Each file is one transaction: a failure leaves the store unchanged and names the file (and
line); a file whose sha256 is already in the store is a no-op that says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from picks.core import picks as canonical
from picks.core.errors import InputFormatError, NotFound, OutOfExtent, PicksError
from picks.core.migrations import source_identity
from picks.core.store import Store
from picks.core.tomograms import TomogramSet
from picks.plugins.adapter import Adapter, ReadContext
from picks.plugins.manager import AdapterRegistry, safe_sniff

# Picks up to this many reference voxels outside the volume are tolerated (picker rounding).
EXTENT_TOLERANCE_VOXELS = 1.0


@dataclass
class ImportResult:
    path: Path
    source_id: int
    adapter: str
    picker: str
    n_picks: int
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "source_id": self.source_id,
            "adapter": self.adapter,
            "picker": self.picker,
            "n_picks": self.n_picks,
            "skipped": self.skipped,
            "warnings": self.warnings,
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expand_inputs(
    paths: Iterable[str | Path], registry: AdapterRegistry, adapter: str = "auto"
) -> list[Path]:
    """Files as given; folders expanded (recursively, sorted) to the files an adapter claims.

    Inside a folder, a file is kept when one of the adapters' patterns fits its name *and* that
    adapter's ``sniff`` claims it, so side files (a ``labels.txt`` next to DeepFinder lists, a
    README) are passed over. Files named explicitly are always kept (and fail loudly later).
    """
    entries = [registry.entry(adapter)] if adapter != "auto" else list(registry)

    def claimed(p: Path) -> bool:
        return any(e.matches(p) and safe_sniff(e.load(), p) > 0 for e in entries)

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                # never look inside volume stores (a zarr v3 store holds zarr.json files)
                and not any(q.lower().endswith(".zarr") for q in p.relative_to(path).parts[:-1])
                and claimed(p)
            )
            if not found:
                raise PicksError(f"{path}: folder holds no file any adapter reads")
            files.extend(found)
        elif not path.exists():
            raise NotFound(f"{path} does not exist")
        else:
            files.append(path)
    return files


def read_file(adapter: Adapter, ctx: ReadContext) -> pd.DataFrame:
    """Run an adapter and return a checked canonical table; wrap unexpected errors with the file."""
    try:
        frame = adapter.read(ctx.path, ctx)
        frame = canonical.normalise(frame)
        canonical.validate(frame)
    except PicksError:
        raise
    except MemoryError:
        raise InputFormatError(
            ctx.path, f"cannot read as {adapter.name}: the file needs more memory than there is"
        ) from None
    except Exception as exc:
        # Readers name the line for every problem they know of; anything else a malformed
        # file provokes (csv.Error, OverflowError, RecursionError, struct.error...) is still
        # a bad input, never a traceback (--debug shows it).
        text = str(exc)
        text = text if len(text) <= 200 else text[:197] + "..."
        raise InputFormatError(
            ctx.path, f"cannot read as {adapter.name} ({type(exc).__name__}: {text})"
        ) from exc
    unused = ctx.options.unused()  # ReadContext always tracks its options
    if unused:
        # A warning, not an error: some options only apply in some cases (a folder's
        # VoxelSpacing beats voxel_spacing=), but a typo must not pass unnoticed.
        looked = sorted(k for k in ctx.options.used if not str(k).startswith("_"))
        ctx.warn(
            f"adapter {adapter.name} did not use option(s) "
            + ", ".join(f"{k!r}" for k in unused)
            + (f" (it looked for: {', '.join(looked)})" if looked else " (it takes none here)")
            + "; check the spelling against its documentation (docs/conventions.md)"
        )
    check_extent(frame, ctx.tomograms, ctx.path)
    return frame


def check_extent(frame: pd.DataFrame, tomograms: TomogramSet, path: object) -> None:
    """Raise :class:`OutOfExtent` if picks fall outside their tomogram, suggesting why."""
    for name, group in frame.groupby("tomogram", sort=True):
        tomo = tomograms.get(str(name))
        if tomo is None or tomo.shape is None or not tomo.voxel_size:
            continue
        v = tomo.voxel_size
        coords = group[canonical.COORDS].to_numpy(dtype=float)
        lo = -(0.5 + EXTENT_TOLERANCE_VOXELS) * v
        hi = (np.asarray(tomo.shape, dtype=float) - 0.5 + EXTENT_TOLERANCE_VOXELS) * v
        outside = ((coords < lo) | (coords > hi)).any(axis=1)
        if not outside.any():
            continue
        extent = np.asarray(tomo.shape) * v
        ratio = float(np.max(coords.max(axis=0) / extent))
        if ratio > 0.8 * v:
            cause = "coordinates look like Å read as voxels (or multiplied by the voxel size twice)"
        elif ratio > 1.2:
            cause = (
                f"coordinates are about {ratio:.1f}× too large: wrong --binning or --voxel-size "
                f"(the tomogram is {v:g} Å/voxel)"
            )
        elif (coords < lo).any():
            cause = "negative coordinates: the file may use centred coordinates (RELION 5) or a different origin"
        else:
            cause = "wrong tomogram, binning or voxel size"
        first = int(group["record"].to_numpy()[np.flatnonzero(outside)[0]])
        raise OutOfExtent(
            f"{path}: {int(outside.sum())} of {len(group)} picks lie outside tomogram {name!r} "
            f"(extent {extent[0]:g} × {extent[1]:g} × {extent[2]:g} Å; first at record {first}); "
            f"likely cause: {cause}",
            hint="Check --voxel-size/--binning, or the tomogram the file belongs to.",
        )


def import_file(
    store: Store,
    path: str | Path,
    registry: AdapterRegistry,
    *,
    adapter: str = "auto",
    picker: str | None = None,
    role: str = "picker",
    voxel_size: float | None = None,
    binning: float = 1.0,
    particle: str | None = None,
    tomogram: str | None = None,
    options: dict[str, str] | None = None,
    run_id: int | None = None,
) -> ImportResult:
    """Import one picker file as one transaction (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} does not exist or is not a file")
    digest = sha256_file(path)
    chosen = registry.detect(path) if adapter == "auto" else registry.get(adapter)
    ctx = ReadContext(
        path=path,
        tomograms=store.tomograms(),
        voxel_size=voxel_size,
        binning=binning,
        particle=particle,
        tomogram=tomogram,
        options=dict(options or {}),
    )
    frame = read_file(chosen, ctx)
    # Same bytes are the same source unless they land in other tomograms (a copick file whose
    # run comes from its folder), give other picks (another binning, voxel size, class or
    # adapter) or come in another role; so the match is made after reading (see m005).
    identity = source_identity(
        digest, frame["tomogram"].unique(), role=role, content=canonical.content_digest(frame)
    )
    skipped = _skipped(path, store.find_source(digest, identity))
    if skipped is not None:
        return skipped
    label = picker or default_picker_label(chosen)
    meta = {
        "path": str(path.resolve()),
        "sha256": digest,
        "size": path.stat().st_size,
        "adapter": chosen.name,
        "adapter_version": chosen.version,
        "picker": label,
        "role": role,
        "options": {
            "voxel_size": voxel_size,
            "binning": binning,
            "particle": particle,
            "tomogram": tomogram,
            **(options or {}),
        },
        "warnings": ctx.warnings,
        "run_id": run_id,
        "identity": identity,
    }
    # Checked again inside the write transaction: another command may have imported the
    # same file since the check above (which only spares the work of a second insert).
    skipped = _skipped(path, store.find_or_add_source(meta, frame))
    if skipped is not None:
        return skipped
    source_id = int(meta["id"])
    return ImportResult(
        path, source_id, chosen.name, label, len(frame), warnings=list(ctx.warnings)
    )


def _skipped(path: Path, existing: dict | None) -> ImportResult | None:
    if existing is None:
        return None
    return ImportResult(
        path,
        existing["id"],
        existing["adapter"],
        existing["picker"],
        existing["n_picks"],
        skipped=True,
    )


def default_picker_label(adapter: Adapter) -> str:
    """A picker label from the adapter's program name: ``crYOLO`` -> ``cryolo``."""
    label = "".join(ch if ch.isalnum() else "-" for ch in (adapter.picker or adapter.name).lower())
    return "-".join(part for part in label.split("-") if part) or adapter.name
