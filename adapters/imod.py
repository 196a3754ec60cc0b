"""IMOD binary models (``.mod``): every point of every contour is a pick.

Convention (``shared/reference/formats.md`` §8.3; teamtomo/imodmodel:docs/z_coordinate_system_note.md;
IMOD's binary spec https://bio3d.colorado.edu/imod/doc/binspec.html):

* Objects → contours → points, in pixels of the model's image. Parsed with the ``imodmodel``
  package (imported only when a model is read, so ``picks --help`` stays fast).
* **Origin: X and Y count from the pixel edge** (the centre of voxel ``i`` is at ``i + 0.5``),
  **Z from the centre of the first section** (IMOD: the voxel with MATLAB index (1,1,1) is at
  (0.5, 0.5, 0.0)). The 0-based voxel-centre indices are therefore ``(x − 0.5, y − 0.5, z)``,
  then converted to Å by ``ctx.voxels_to_angstrom``. Every fixture sets the header flag that
  imodmodel calls ``z_coordinates_start_from_negative_half`` (the first section spans
  −0.5..0.5, i.e. its centre is z = 0), consistent with this reading; models without it are read
  the same way (no older-convention example was available to test a different rule).
* Tomogram: one model per tomogram -> ``--tomogram`` or the file name.
* Class: IMOD numbers objects from 1 (as 3dmod shows them). ``--option labels=1=ribosome,2=…``
  (alias ``objects=``; keys are object numbers or object names) maps them to particles;
  otherwise the object's name when it has one, else ``--particle``, else ``object<N>``.
  ``particle_field`` is ``object``.
* No score (NaN). ``record`` is the 0-based index of the point over the whole model (objects,
  contours and points in file order); ``original`` holds object number and name, contour,
  point, the raw IMOD x/y/z and the point size when the model stores sizes.
* Orientations: IMOD's ``SLAN`` chunks store 3dmod *slicer* angles (rotations about X, Y, Z of
  the slicer view) per saved view, not per point. When a model has exactly one SLAN chunk per
  point they are kept, in point order, in ``original`` (``slicer_angles``) only; angles stay NaN
  because relating a slicer view to a particle pose needs conventions (sign, order, view vs
  object) that no fixture settles. Otherwise a warning says how many were ignored.
* Voxel size: ``--voxel-size`` or the registered tomogram × ``--binning``. The model header's
  pixel size (``pixsize`` with ``units``, e.g. 1.97 nm) is used only when neither is known, with a
  warning; a disagreement is reported. Model scale factors (``xscale``…) are not applied.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._labels import parse_name_map
from picks.adapters._voxels import with_voxel_size
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext

MAGIC = b"IMOD"
# IMOD header ``units`` -> Å per unit (0 = pixels: no physical size).
UNIT_ANGSTROM = {-12: 0.01, -10: 1.0, -9: 10.0, -6: 1e4, -3: 1e7, -2: 1e8, 1: 1e10}


class ImodAdapter(Adapter):
    name = "imod-mod"
    picker = "IMOD"
    patterns = ("*.mod",)

    def sniff(self, path: Path) -> float:
        try:
            with open(path, "rb") as handle:
                start = handle.read(8)
        except OSError:
            return 0.0
        return 0.95 if start.startswith(MAGIC) and start[4:6] == b"V1" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        model = self._parse(path, ctx)
        labels = parse_name_map(ctx.options.get("labels") or ctx.options.get("objects"), "labels")
        rows: dict[str, list] = {k: [] for k in ("particle", "x", "y", "z", "original")}
        details = []
        for number, obj in enumerate(model.objects, start=1):
            name = (obj.header.name or "").strip()
            raw = (
                labels.get(str(number))
                or labels.get(name)
                or name
                or ctx.particle
                or f"object{number}"
            )
            particle = ctx.particle_name(raw)
            for c, contour in enumerate(obj.contours):
                points = np.asarray(contour.points, dtype=float).reshape(-1, 3)
                sizes = contour.point_sizes
                for p, (x, y, z) in enumerate(points.tolist()):
                    rows["particle"].append(particle)
                    rows["x"].append(x - 0.5)
                    rows["y"].append(y - 0.5)
                    rows["z"].append(z)
                    detail = {
                        "object": number,
                        "object_name": name,
                        "contour": c,
                        "point": p,
                        "x": x,
                        "y": y,
                        "z": z,
                    }
                    if sizes is not None and p < len(sizes):
                        detail["size"] = float(sizes[p])
                    details.append(detail)
        self._slicer_angles(model, details, ctx)
        rows["original"] = [json.dumps(d, separators=(",", ":")) for d in details]
        if not np.isfinite(np.asarray([rows["x"], rows["y"], rows["z"]], dtype=float)).all():
            bad = int(
                np.flatnonzero(
                    ~np.isfinite(np.asarray([rows["x"], rows["y"], rows["z"]])).all(axis=0)
                )[0]
            )
            raise ctx.error("non-finite coordinate", record=f"point {bad}")
        frame = canonical.make(
            {**rows, "record": np.arange(len(details))},
            tomogram=ctx.tomogram_from_path(),
            particle_field="object",
        )
        if frame.empty:
            ctx.warn("the model holds no points")
            return frame
        names = sorted(frame["tomogram"].unique())
        return with_voxel_size(
            ctx, names, self._header_voxel_size(model), "the model header's pixel size"
        ).voxels_to_angstrom(frame)

    @staticmethod
    def _parse(path: Path, ctx: ReadContext):
        with open(path, "rb") as handle:
            start = handle.read(8)
        if not start:
            raise ctx.error("empty file; expected an IMOD binary model (starts with 'IMODV1.2')")
        if not start.startswith(MAGIC):
            raise ctx.error(
                f"not an IMOD binary model: starts with {start!r}, expected b'IMODV1.2'"
            )
        try:
            from imodmodel.parsers import parse_model

            with open(path, "rb") as handle:
                # imodmodel loops for ever on a file cut between chunks (an empty read is no
                # IEOF tag): a short read is an error instead
                return parse_model(_StrictReader(handle))
        except Exception as exc:  # imodmodel raises struct/pydantic/EOF errors on damaged files
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise ctx.error(
                f"cannot parse the IMOD model (truncated or damaged?): {type(exc).__name__}: {message}"
            ) from None

    @staticmethod
    def _slicer_angles(model, details: list[dict], ctx: ReadContext) -> None:
        slicer = list(model.slicer_angles)
        if not slicer:
            return
        if len(slicer) == len(details):
            for detail, slan in zip(details, slicer, strict=True):
                detail["slicer_angles"] = [float(a) for a in slan.angles]
                detail["slicer_center"] = [float(c) for c in slan.center]
            return
        ctx.warn(
            f"the model has {len(slicer)} slicer angle(s) for {len(details)} point(s); "
            "they cannot be matched to points and were ignored"
        )

    @staticmethod
    def _header_voxel_size(model) -> float | None:
        header = model.header
        factor = UNIT_ANGSTROM.get(int(header.units))
        size = float(header.pixelsize)
        if factor is None or not np.isfinite(size) or size <= 0:
            return None
        return size * factor


class _StrictReader:
    """A binary file whose ``read(n)`` raises :class:`EOFError` when fewer than n bytes remain."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if size is not None and size > 0 and len(data) < size:
            raise EOFError(
                f"the file ends at byte {self._handle.tell()}, inside a {size}-byte field"
            )
        return data

    def __getattr__(self, name: str):
        return getattr(self._handle, name)
