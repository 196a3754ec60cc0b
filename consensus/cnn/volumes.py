"""Lazy, bounded read access to tomogram volumes, by region (for box extraction).

Only the regions the boxes need are read: MRC through ``mrcfile.mmap`` (``reader="mmap"``) or
with explicit positioned reads of the rows needed (``reader="slab"``); OME-Zarr through zarr
(the pyramid level closest to, but not coarser than, the working voxel size). Volumes are
indexed ``[z, y, x]`` (MRC order, x fastest). Split from :mod:`picks.consensus.cnn.boxes`,
which extracts the boxes and re-exports these names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram

READERS = ("mmap", "slab")


# -- volumes ----------------------------------------------------------------------------------
class Volume:
    """Lazy read access to one tomogram (one pyramid level of an OME-Zarr).

    ``shape`` is ``(nz, ny, nx)``; ``voxel_size`` is Å per voxel of the level read;
    ``origin`` is the canonical position (Å) of the centre of the level's voxel 0 (0 for MRC
    and for level 0).
    """

    def __init__(
        self, name: str, shape: tuple[int, int, int], voxel_size: float, origin: float = 0.0
    ):
        self.name = name
        self.shape = tuple(int(n) for n in shape)
        self.voxel_size = float(voxel_size)
        self.origin = float(origin)

    def region(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        """The float32 block ``[lo, hi)`` (z, y, x), clipped to the volume by the caller."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files."""

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MrcMmapVolume(Volume):
    """MRC read through ``mrcfile.mmap``: only the pages a region touches are read."""

    def __init__(self, name: str, path: str, voxel_size: float) -> None:
        import mrcfile

        try:
            self._mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except Exception as exc:
            raise PicksError(f"tomogram {path}: cannot open the MRC file ({exc})") from None
        data = self._mrc.data
        if data is None or data.ndim != 3:
            self._mrc.close()
            raise PicksError(
                f"tomogram {path}: expected a 3-D volume, found data of shape "
                f"{None if data is None else data.shape}"
            )
        _check_axes(self._mrc.header, path)
        self._data = data
        super().__init__(name, data.shape, voxel_size)

    def region(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        block = self._data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        return np.asarray(block, dtype=np.float32)

    def close(self) -> None:
        self._data = None
        self._mrc.close()


class MrcSlabVolume(Volume):
    """MRC read with positioned reads (``os.pread``) of whole rows, then cropped in x.

    Each region costs one read per z plane (one read in all when the region spans every row),
    so access is sequential on disk.
    """

    def __init__(self, name: str, path: str, voxel_size: float) -> None:
        import mrcfile
        from mrcfile.utils import data_dtype_from_header

        try:
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                header = mrc.header.copy()
        except Exception as exc:
            raise PicksError(f"tomogram {path}: cannot read the MRC header ({exc})") from None
        _check_axes(header, path)
        self._dtype = data_dtype_from_header(header)
        self._offset = 1024 + int(header.nsymbt)
        shape = (int(header.nz), int(header.ny), int(header.nx))
        need = self._offset + int(np.prod(shape)) * self._dtype.itemsize
        if os.path.getsize(path) < need:
            raise PicksError(
                f"tomogram {path}: file is truncated ({os.path.getsize(path)} bytes, "
                f"the header promises {need})"
            )
        self._fd = os.open(path, os.O_RDONLY)
        super().__init__(name, shape, voxel_size)

    def region(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        _nz, ny, nx = self.shape
        item = self._dtype.itemsize
        dz, dy = hi[0] - lo[0], hi[1] - lo[1]
        if dy == ny:  # whole planes: one read
            start = self._offset + lo[0] * ny * nx * item
            raw = os.pread(self._fd, dz * ny * nx * item, start)
            block = np.frombuffer(raw, dtype=self._dtype).reshape(dz, ny, nx)
            return block[:, :, lo[2] : hi[2]].astype(np.float32)
        out = np.empty((dz, dy, hi[2] - lo[2]), dtype=np.float32)
        for k in range(dz):
            start = self._offset + ((lo[0] + k) * ny + lo[1]) * nx * item
            raw = os.pread(self._fd, dy * nx * item, start)
            out[k] = np.frombuffer(raw, dtype=self._dtype).reshape(dy, nx)[:, lo[2] : hi[2]]
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ZarrVolume(Volume):
    """One level of an OME-Zarr multiscale image (v0.4 or v0.5 metadata), read by region."""

    def __init__(self, name: str, path: str, voxel_size: float, target: float | None) -> None:
        import zarr

        try:
            group = zarr.open_group(str(path), mode="r")
            attrs = dict(group.attrs)
            multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
            datasets = multiscales[0]["datasets"]
            levels = [(_scale_translation(d), d["path"]) for d in datasets]
        except Exception as exc:
            raise PicksError(f"tomogram {path}: cannot read OME-Zarr metadata ({exc})") from None
        (scale0, trans0), _ = levels[0]
        chosen = 0
        if target is not None:
            # coarsest level still at least as fine as the working voxel size
            for i, ((scale, _t), _p) in enumerate(levels):
                if scale[-1] / scale0[-1] * voxel_size <= target * 1.001:
                    chosen = i
        (scale, trans), array_path = levels[chosen]
        self._array = group[array_path]
        self._lead = (0,) * (self._array.ndim - 3)
        factor = scale[-1] / scale0[-1]
        origin = (trans[-1] - trans0[-1]) / scale0[-1] * voxel_size
        self.level = chosen
        super().__init__(name, self._array.shape[-3:], voxel_size * factor, origin)

    def region(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        index = (*self._lead, slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        return np.asarray(self._array[index], dtype=np.float32)


def _scale_translation(dataset: dict) -> tuple[list[float], list[float]]:
    scale = translation = None
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            translation = [float(v) for v in t["translation"]]
    if scale is None:
        raise ValueError(f"dataset {dataset.get('path')!r} has no scale transformation")
    return scale, translation or [0.0] * len(scale)


def _check_axes(header, path: str) -> None:
    axes = (int(header.mapc), int(header.mapr), int(header.maps))
    if axes not in ((1, 2, 3), (0, 0, 0)):
        raise PicksError(
            f"tomogram {path}: axis order mapc/mapr/maps = {axes} is not supported "
            "(expected 1, 2, 3: x fastest)"
        )


def open_volume(
    tomogram: Tomogram, *, reader: str = "mmap", target_voxel_size: float | None = None
) -> Volume:
    """Open a registered tomogram for region reads (never reads the whole volume)."""
    if reader not in READERS:
        raise PicksError(f"reader {reader!r}: expected one of {', '.join(READERS)}")
    if not tomogram.path:
        raise PicksError(f"tomogram {tomogram.name!r} has no file path registered")
    if not tomogram.voxel_size:
        raise PicksError(f"tomogram {tomogram.name!r} has no voxel size registered")
    path = Path(tomogram.path)
    if not path.exists():
        raise PicksError(
            f"tomogram {tomogram.name!r}: file {path} does not exist",
            hint="A relative path is resolved from the current folder; register the tomogram "
            "again (picks tomograms PATH) from here or with an absolute path.",
        )
    if path.is_dir() or path.name.endswith(".zarr"):
        return ZarrVolume(tomogram.name, str(path), tomogram.voxel_size, target_voxel_size)
    if reader == "slab":
        return MrcSlabVolume(tomogram.name, str(path), tomogram.voxel_size)
    return MrcMmapVolume(tomogram.name, str(path), tomogram.voxel_size)
