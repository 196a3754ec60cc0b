"""Convert picks between formats through the adapters, without touching the store.

Reading and writing use the same adapters (and so the same conventions) as import and
aggregate; the canonical table in between makes any reader → writer pair possible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from picks.core.errors import PicksError
from picks.core.tomograms import TomogramSet, find_volumes, read_tomogram
from picks.plugins.adapter import ReadContext, WriteContext
from picks.plugins.manager import AdapterRegistry
from picks.workflows.importing import read_file
from picks.workflows.name_patterns import check_named, names_from_pattern
from picks.workflows.outputs import write_picks


@dataclass
class ConversionResult:
    reader: str
    writer: str
    n_picks: int
    written: list[Path]
    warnings: list[str]


def load_tomograms(paths: Iterable[str | Path], voxel_size: float | None = None) -> TomogramSet:
    """Read tomogram headers (files or folders) into a :class:`TomogramSet`."""
    return TomogramSet(read_tomogram(p, voxel_size=voxel_size) for p in find_volumes(paths))


def convert(
    source: str | Path,
    target: str | Path,
    to: str,
    registry: AdapterRegistry,
    *,
    adapter: str = "auto",
    tomograms: TomogramSet | None = None,
    voxel_size: float | None = None,
    binning: float = 1.0,
    particle: str | None = None,
    tomogram: str | None = None,
    options: dict[str, str] | None = None,
    to_voxel_size: float | None = None,
    to_binning: float = 1.0,
    to_options: dict[str, str] | None = None,
    force: bool = False,
) -> ConversionResult:
    """Read ``source`` with ``adapter`` (or the detected one) and write it to ``target`` as ``to``."""
    source = Path(source)
    tomograms = tomograms or TomogramSet()
    reader = registry.detect(source) if adapter == "auto" else registry.get(adapter)
    writer = registry.get(to)
    tomogram, particle, from_name, reader_options = names_from_pattern(
        source, options, tomogram, particle
    )
    ctx = ReadContext(
        path=source,
        tomograms=tomograms,
        voxel_size=voxel_size,
        binning=binning,
        particle=particle,
        tomogram=tomogram,
        options=reader_options,
    )
    picks = read_file(reader, ctx)
    if from_name:
        check_named(picks, from_name, ctx)
    unnamed = int(picks["particle"].isna().sum())
    if unnamed:
        # A pick without a class would get an empty or invented class: formats that key on the
        # class (CZII CSV's particle_type, copick's object) would be wrong, so they refuse.
        what = (
            f"{source}: {unnamed} of {len(picks)} picks have no class (the file names none and "
            "no `particle` was given)"
        )
        if writer.class_field == "required":
            raise PicksError(
                f"{what}; {writer.name} needs a class for every pick",
                hint="Give `particle` NAME (or `options` name={tomogram}__{particle} when the "
                "file names say it).",
            )
        if writer.class_field != "none":
            ctx.warn(
                f"{what}: {writer.name} writes them with an empty or made-up class; give "
                "`particle` NAME"
            )
    out_ctx = WriteContext(
        tomograms=tomograms,
        voxel_size=to_voxel_size,
        binning=to_binning,
        options=dict(to_options or {}),
    )
    written = write_picks(picks, writer, Path(target), out_ctx, force=force)
    return ConversionResult(reader.name, writer.name, len(picks), written, list(ctx.warnings))
