"""Tomograms: name, path, voxel size and shape, read from headers only; name matching.

Picker files name tomograms in many ways (``TS_01``, ``TS_01.mrc``, ``rec_TS_01``,
``TS_01_denoised.rec``, ``TS_01.tomostar``, a crYOLO file called ``TS_01.cbox``). All are
reduced to one *key* by :func:`name_key` and matched against the registered tomograms by
:class:`TomogramSet`, which fails loudly, listing what was expected and what was found.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from picks.core.errors import MissingVoxelSize, NotFound, PicksError, TomogramNameError

VOLUME_SUFFIXES = (".mrc", ".rec", ".map", ".mrcs", ".st", ".ali", ".zarr", ".ome.zarr")

# Extensions (picker files and volumes) and decorations stripped before comparing names.
_EXTENSIONS = re.compile(
    r"(\.(ome\.zarr|zarr|mrc|mrcs|rec|map|st|ali|tomostar|star|cbox|box|coords|xml|csv|json"
    r"|ndjson|txt|tbl|mod|tloc|em))+$",
    re.IGNORECASE,
)
_DECORATIONS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^rec_",
        r"_(denoised|denoise|filtered|filt|rec|reconstruction|full|flipped|wbp|sirt|isonet"
        r"|corrected|ctfcorrected|cryocare|deconv|lowpass)$",
        r"_bin\d+$",
        r"_\d+(\.\d+)?a?px$",
        r"_(\d+(\.\d+)?)a(ng)?$",
        r"_particles$",
    )
]


def name_key(name: str) -> str:
    """Reduce a tomogram name or file name to the key used for matching.

    >>> name_key("/data/rec_TS_01_denoised.mrc")
    'ts_01'
    >>> name_key("TS_01.tomostar")
    'ts_01'
    """
    stem = Path(str(name).rstrip("/")).name
    stem = _EXTENSIONS.sub("", stem)
    changed = True
    while changed:
        changed = False
        for pattern in _DECORATIONS:
            new = pattern.sub("", stem)
            if new != stem and new:
                stem, changed = new, True
    return stem.casefold()


@dataclass(frozen=True)
class Tomogram:
    """A registered tomogram. ``shape`` is (nx, ny, nz) in voxels; ``voxel_size`` in Å."""

    name: str
    path: str | None
    voxel_size: float | None
    shape: tuple[int, int, int] | None

    @property
    def extent(self) -> tuple[float, float, float] | None:
        """Size in Å along x, y, z (None when shape or voxel size is unknown)."""
        if self.shape is None or not self.voxel_size:
            return None
        return tuple(n * self.voxel_size for n in self.shape)  # type: ignore[return-value]

    def to_row(self) -> dict:
        row = asdict(self)
        row["shape"] = json.dumps(list(self.shape)) if self.shape else None
        return row

    @classmethod
    def from_row(cls, row: dict) -> Tomogram:
        shape = json.loads(row["shape"]) if row.get("shape") else None
        return cls(
            row["name"], row.get("path"), row.get("voxel_size"), tuple(shape) if shape else None
        )


def read_tomogram(
    path: str | Path, *, name: str | None = None, voxel_size: float | None = None
) -> Tomogram:
    """Read a tomogram's header (never its data): MRC via mrcfile, or OME-Zarr.

    ``voxel_size`` overrides the header; a header voxel size of 0 or 1 Å is treated as unset
    (both are what tools write when they do not know it) and is an error unless overridden.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"tomogram {path} does not exist")
    if path.is_dir() or path.suffix == ".zarr":
        shape, header_voxel = _zarr_header(path)
    else:
        shape, header_voxel = _mrc_header(path)
    size = voxel_size or (header_voxel if header_voxel and header_voxel not in (0.0, 1.0) else None)
    if size is None:
        raise MissingVoxelSize(
            f"tomogram {path}: the header gives no usable voxel size (found {header_voxel!r} Å)"
        )
    return Tomogram(name or _display_name(path), os.path.abspath(path), float(size), shape)


def _display_name(path: Path) -> str:
    # copick projects: ExperimentRuns/<run>/VoxelSpacing<s>/<tomo_type>.zarr is named after <run>.
    parts = Path(path).absolute().parts
    if len(parts) >= 4 and parts[-2].startswith("VoxelSpacing") and parts[-4] == "ExperimentRuns":
        return parts[-3]
    stem = _EXTENSIONS.sub("", path.name.rstrip("/"))
    return stem


def _mrc_header(path: Path) -> tuple[tuple[int, int, int], float | None]:
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            header = mrc.header
            shape = (int(header.nx), int(header.ny), int(header.nz))
            vs = mrc.voxel_size
            sizes = {float(vs.x), float(vs.y), float(vs.z)}
    except Exception as exc:  # mrcfile raises ValueError/OSError with a useful text
        raise PicksError(f"tomogram {path}: cannot read the MRC header ({exc})") from None
    sizes.discard(0.0)
    if len(sizes) > 1:
        xs = float(vs.x)
        if abs(float(vs.y) - xs) > 1e-3 * xs or (float(vs.z) and abs(float(vs.z) - xs) > 1e-3 * xs):
            raise MissingVoxelSize(
                f"tomogram {path}: anisotropic voxel size {tuple(vs.tolist())} Å in the header"
            )
    return shape, (max(sizes) if sizes else None)


def _zarr_header(path: Path) -> tuple[tuple[int, int, int], float | None]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        multiscales = group.attrs.get("multiscales") or group.attrs.get("ome", {}).get(
            "multiscales"
        )
        dataset = multiscales[0]["datasets"][0]
        array = group[dataset["path"]]
        nz, ny, nx = array.shape[-3:]
        scale = next(
            t["scale"] for t in dataset["coordinateTransformations"] if t["type"] == "scale"
        )
        axes = multiscales[0].get("axes", [])
        unit = (
            axes[-1].get("unit", "angstrom") if axes and isinstance(axes[-1], dict) else "angstrom"
        )
    except Exception as exc:
        raise PicksError(f"tomogram {path}: cannot read OME-Zarr metadata ({exc})") from None
    factor = {"nanometer": 10.0, "angstrom": 1.0, "micrometer": 1e4}.get(unit, 1.0)
    return (int(nx), int(ny), int(nz)), float(scale[-1]) * factor


def find_volumes(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the tomogram files (MRC family and .zarr) they contain, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not path.name.endswith(".zarr"):
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.name.lower().endswith(VOLUME_SUFFIXES)
                    # copick segmentations are label volumes, not tomograms
                    and "Segmentations" not in p.relative_to(path).parts[:-1]
                    and not any(q.lower().endswith(".zarr") for q in p.relative_to(path).parts[:-1])
                )
            )
        else:
            found.append(path)
    return found


class TomogramSet:
    """Registered tomograms, looked up by any of the names pickers use for them."""

    def __init__(self, tomograms: Iterable[Tomogram] = ()) -> None:
        self._by_name: dict[str, Tomogram] = {}
        self._by_key: dict[str, list[str]] = {}
        for tomo in tomograms:
            self.add(tomo)

    def add(self, tomo: Tomogram) -> None:
        if tomo.name in self._by_name:
            del self._by_name[tomo.name]
            self._by_key = {k: [n for n in v if n != tomo.name] for k, v in self._by_key.items()}
        self._by_name[tomo.name] = tomo
        self._by_key.setdefault(name_key(tomo.name), []).append(tomo.name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self):
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> Tomogram | None:
        return self._by_name.get(name)

    def resolve(self, raw: str, *, source: object = None) -> str:
        """Return the registered name that ``raw`` refers to.

        With no tomograms registered, the name is returned cleaned (extension and decoration
        stripped), so picks from different pickers still line up. With tomograms registered, an
        unknown or ambiguous name is a :class:`TomogramNameError`.
        """
        if raw in self._by_name:
            return raw
        key = name_key(raw)
        if not self._by_name:
            return _EXTENSIONS.sub("", Path(str(raw)).name) or str(raw)
        candidates = self._by_key.get(key, [])
        if not candidates:
            # A picker may add its own prefix/suffix: accept a unique containment match.
            candidates = [
                n for k, names in self._by_key.items() for n in names if k in key or key in k
            ]
        if len(candidates) == 1:
            return candidates[0]
        where = f"{source}: " if source else ""
        expected = ", ".join(self.names()[:20]) + (" ..." if len(self) > 20 else "")
        if not candidates:
            raise TomogramNameError(
                f"{where}tomogram {raw!r}"
                + (f" (compared as {key!r})" if key != raw else "")
                + f" matches none of the registered tomograms ({expected})",
                hint="Register it with `tomograms` PATH, or name it with `tomogram` NAME.",
            )
        raise TomogramNameError(
            f"{where}tomogram {raw!r} is ambiguous: it matches {', '.join(sorted(candidates))}",
            hint="Name it exactly, or with `tomogram` NAME.",
        )
