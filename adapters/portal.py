"""CryoET Data Portal annotations (``.ndjson``) and the portal's plain-CSV deposition inputs.

Three adapters (``shared/reference/formats.md`` §6 and §8.9; the portal's ingestion code
chanzuckerberg/cryoet-data-portal-backend:ingestion_tools/scripts/common/point_converter.py):

``portal-ndjson`` – one JSON object per line, ``type`` ∈ ``point`` / ``orientedPoint`` /
``instancePoint``, ``location {x, y, z}`` and, for oriented points, a 3×3
``xyz_rotation_matrix`` (older ingesters wrote ``rotation_matrix``; both are read).

* Units: **voxels of the tomogram at the annotation's voxel spacing**, origin at the centre of
  voxel 0 (the ingester applies no offset; copick multiplies by the spacing). The spacing is, in
  this order: ``--voxel-size``; ``--option voxel_spacing=Å``; the ``VoxelSpacing<s>`` folder in
  the file's path (``…/<run>/Reconstructions/VoxelSpacing<s>/Annotations/<id>/…``); the
  registered tomogram × ``--binning``. An explicit spacing that differs from the registered
  tomogram's is not an error: binning is undone exactly by ``ctx.voxels_to_angstrom``.
* Rotation: the matrix is the object-to-tomogram rotation, built by the ingester from RELION
  angles as ``Rotation.from_euler("ZYZ", angles).inv()`` (and from STOPGAP/IMOD/copick poses the
  same way), so it is read back as RELION ZYZ angles with ``angle_convention = "portal-matrix"``.
* Tomogram: ``--tomogram``, else the run folder before ``Reconstructions``/``Tomograms`` in the
  path, else the file name. Class: ``--particle``, else the annotation file's prefix
  (``100-cytosolic_ribosome-1.0_orientedpoint.ndjson`` -> ``cytosolic_ribosome``: leading
  ``<id>-``, trailing ``-<version>`` and ``_<shape>`` removed). ``instance_id`` is kept in the
  ``original`` column. No score.
* No real ``.ndjson`` file was available (the portal's test tree holds placeholders), so the
  reader follows the ingester's code and the portal documentation.

``points-csv`` – the portal's CSV deposition input: ``x,y,z`` per line, with or without a
header, any delimiter (comma, tab, pipe, semicolon or blanks). A header names the columns (so
``z,y,x`` files read right); without one the columns are x, y, z (``--option order=zyx`` for
the other order the portal accepts). Units: voxels (0-based centres) unless
``--option units=angstrom``; the voxel size is ``--voxel-size``, ``--option voxel_spacing`` or the
registered tomogram. Tomogram = a ``tomogram`` column when the header has one (extra columns
``kind``, ``label``, ``note`` are kept in ``original`` only), else ``--tomogram`` or the file
name; class = ``--particle``.

``tardis-csv`` – TARDIS instance points ``IDs,X [A],Y [A],Z [A]``. The header says Å, so they
are read as **Å** by default; note that the portal's ingester treats them like any pixel CSV
(divides by the deposition binning only). ``--option units=voxel`` reads them as voxels. The
instance id is kept in ``original``.

Neither CSV adapter claims CZII submission files (``id,experiment,particle_type,x,y,z``, adapter
``czii-csv``): their sniff returns 0 for any header that is not exactly x/y/z (resp. TARDIS).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._euler import is_rotation, relion_angles
from picks.adapters._fields import (
    Line,
    data_lines,
    is_number,
    json_number,
    number,
    parse_json,
    read_text,
    stream_data_lines,
)
from picks.adapters._options import option_choice, option_number, units_are_voxels
from picks.core import picks as canonical
from picks.plugins.adapter import CHUNK_ROWS, Adapter, ReadContext, head

POINT_TYPES = ("point", "orientedPoint", "instancePoint")
MATRIX_KEYS = ("xyz_rotation_matrix", "rotation_matrix")
_SPACING = re.compile(r"^VoxelSpacing(\d+(?:\.\d+)?)$", re.IGNORECASE)
_DELIMITERS = ("|", "\t", ",", ";")
TARDIS_HEADER = ("ids", "x [a]", "y [a]", "z [a]")


def spacing_from_path(path: Path) -> float | None:
    """The ``VoxelSpacing<s>`` folder of a portal path, in Å."""
    for part in reversed(path.parts):
        match = _SPACING.match(part)
        if match:
            return float(match.group(1))
    return None


def run_from_path(path: Path) -> str | None:
    """``…/<run>/(Reconstructions|Tomograms)/VoxelSpacing<s>/…`` -> ``<run>``."""
    parts = path.parts
    for i, part in enumerate(parts):
        if _SPACING.match(part) and i >= 2 and parts[i - 1] in ("Reconstructions", "Tomograms"):
            return parts[i - 2]
    return None


def particle_from_name(path: Path) -> str | None:
    """Annotation file prefix without ``<id>-``, ``-<version>`` and ``_<shape>``."""
    stem = path.name.rsplit(".", 1)[0]
    stem = re.sub(
        r"_(point|orientedpoint|instancepoint|instancesegmentation)$", "", stem, flags=re.IGNORECASE
    )
    stem = re.sub(r"^\d+-", "", stem)
    stem = re.sub(r"-\d+(\.\d+)*$", "", stem)
    return stem or None


def explicit_spacing(ctx: ReadContext, path_spacing: float | None) -> ReadContext:
    """Context whose voxel size is the annotation spacing (unless ``--voxel-size`` was given)."""
    if ctx.voxel_size:
        return ctx
    spacing = (
        option_number(ctx.options, "voxel_spacing", expected="a positive number", positive=True)
        or path_spacing
    )
    return dataclasses.replace(ctx, voxel_size=spacing) if spacing else ctx


class PortalNdjsonAdapter(Adapter):
    name = "portal-ndjson"
    picker = "CryoET Data Portal"
    patterns = ("*.ndjson",)

    def sniff(self, path: Path) -> float:
        for line in head(path).splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                return 0.0
            ok = (
                isinstance(record, dict)
                and record.get("type") in POINT_TYPES
                and "location" in record
            )
            return 0.9 if ok else 0.0
        return 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        lines = data_lines(read_text(path, ctx), comment="")
        if not lines:
            raise ctx.error("empty file; expected one JSON point annotation per line", line=1)
        tomogram = ctx.resolve_tomogram(ctx.tomogram or run_from_path(path) or path.name)
        particle = ctx.particle_name(ctx.particle or particle_from_name(path))
        rows: dict[str, list] = {
            k: []
            for k in ("x", "y", "z", "rot", "tilt", "psi", "angle_convention", "record", "original")
        }
        for line in lines:
            lineno = line.number
            record = parse_json(line.text, ctx, line=lineno)
            if not isinstance(record, dict) or record.get("type") not in POINT_TYPES:
                found = record.get("type") if isinstance(record, dict) else type(record).__name__
                raise ctx.error(
                    f"type {found!r} is not one of {', '.join(POINT_TYPES)}", line=lineno
                )
            location = record.get("location")
            if not isinstance(location, dict):
                raise ctx.error("missing 'location' {x, y, z}", line=lineno)
            for axis in ("x", "y", "z"):
                rows[axis].append(
                    json_number(location.get(axis), ctx, f"location.{axis}", line=lineno)
                )
            angles, convention = (math.nan, math.nan, math.nan), None
            matrix = next((record[k] for k in MATRIX_KEYS if k in record), None)
            if matrix is not None:
                try:
                    array = np.array(matrix, dtype=float)
                except (TypeError, ValueError, OverflowError):
                    array = np.empty(0)
                if not is_rotation(array):
                    raise ctx.error("the rotation matrix is not a 3×3 rotation", line=lineno)
                angles = tuple(float(a[0]) for a in relion_angles(array))
                convention = "portal-matrix"
            rows["rot"].append(angles[0])
            rows["tilt"].append(angles[1])
            rows["psi"].append(angles[2])
            rows["angle_convention"].append(convention)
            rows["record"].append(lineno)
            rows["original"].append(line.text)
        frame = canonical.make(rows, tomogram=tomogram, particle=particle, particle_field=None)
        return explicit_spacing(ctx, spacing_from_path(path)).voxels_to_angstrom(frame)


def _split(line: str, delimiter: str | None) -> list[str]:
    return [f.strip() for f in (line.split(delimiter) if delimiter else line.split())]


def _delimiter(line: str) -> str | None:
    return next((d for d in _DELIMITERS if d in line), None)


# Extra header columns a points CSV may have: a tomogram name per row (several tomograms in
# one file, e.g. `picks simulate`'s decoys.csv), and descriptive columns kept in `original`.
POINTS_EXTRA = frozenset({"tomogram", "kind", "label", "note"})


class PointsCsvAdapter(Adapter):
    name = "points-csv"
    picker = "CSV points (CryoET Data Portal input)"
    patterns = ("*.csv",)

    def sniff(self, path: Path) -> float:
        lines = [line for line in head(path).splitlines() if line.strip()][:5]
        if not lines:
            return 0.0
        delimiter = _delimiter(lines[0])
        first = [f.lower() for f in _split(lines[0], delimiter)]
        if sorted(first) == ["x", "y", "z"]:
            return 0.65
        if {"x", "y", "z"} <= set(first) and set(first) - {"x", "y", "z"} <= POINTS_EXTRA:
            return 0.6
        rows = [_split(line, delimiter) for line in lines]
        if all(len(r) == 3 and all(is_number(f) for f in r) for r in rows):
            return 0.35
        return 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        # one code path for both: the whole file is one (large) chunk
        chunks = list(self.read_chunks(path, ctx, chunk_size=sys.maxsize))
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)

    def read_chunks(
        self, path: Path, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The file line by line (never whole in memory), ``chunk_size`` points at a time."""
        numbered = stream_data_lines(path, ctx, comment="")
        head = next(numbered, None)
        if head is None:
            raise ctx.error("empty file; expected x,y,z per line", line=1)
        delimiter = _delimiter(head.text)
        first = _split(head.text, delimiter)
        if all(is_number(f) for f in first):
            columns = option_choice(
                ctx.options, "order", {"xyz": (0, 1, 2), "zyx": (2, 1, 0)}, "xyz"
            )
            tomo_column = None
            body = itertools.chain([head], numbered)
        else:
            names = [f.lower() for f in first]
            missing = [a for a in ("x", "y", "z") if a not in names]
            if missing:
                raise ctx.error(
                    f"header lacks column(s) {missing}; found {first}", line=head.number
                )
            columns = tuple(names.index(a) for a in ("x", "y", "z"))
            tomo_column = names.index("tomogram") if "tomogram" in names else None
            body = numbered
        width = len(first)
        if width < 3:
            raise ctx.error(f"expected 3 columns x,y,z, found {width}", line=head.number)
        voxels = units_are_voxels(ctx.options, "voxel")
        args = (ctx, delimiter, width, columns, tomo_column, voxels)
        lines: list[Line] = []
        yielded = False
        for line in body:
            lines.append(line)
            if len(lines) >= chunk_size:
                yield self._chunk(lines, *args)
                lines, yielded = [], True
        if lines or not yielded:
            yield self._chunk(lines, *args)

    def _chunk(self, lines: list[Line], ctx: ReadContext, *args) -> pd.DataFrame:
        delimiter, width, columns, tomo_column, voxels = args
        rows = self._frame(lines, ctx, delimiter, width, columns, tomo_column)
        if tomo_column is not None:
            frame = canonical.make(rows, particle=ctx.particle_name(None))
        else:
            frame = canonical.make(
                rows, tomogram=ctx.tomogram_from_path(), particle=ctx.particle_name(None)
            )
        return explicit_spacing(ctx, None).voxels_to_angstrom(frame) if voxels else frame

    @staticmethod
    def _frame(
        lines: list[Line],
        ctx: ReadContext,
        delimiter: str | None,
        width: int,
        columns: tuple[int, ...],
        tomo_column: int | None,
    ) -> dict[str, list]:
        rows: dict[str, list] = {"x": [], "y": [], "z": [], "record": [], "original": []}
        tomograms: list[str] = []
        for line in lines:
            fields = _split(line.text, delimiter)
            if len(fields) != width:
                raise ctx.error(f"expected {width} fields, found {len(fields)}", line=line.number)
            for axis, column in zip(("x", "y", "z"), columns, strict=True):
                rows[axis].append(number(fields[column], ctx, line.number, axis))
            if tomo_column is not None:
                if not fields[tomo_column].strip():
                    raise ctx.error("empty tomogram name", line=line.number)
                tomograms.append(fields[tomo_column].strip())
            rows["record"].append(line.number)
            rows["original"].append(line.text)
        if tomo_column is not None:
            rows["tomogram"] = ctx.resolve_tomograms(tomograms)
        return rows


class TardisCsvAdapter(Adapter):
    name = "tardis-csv"
    picker = "TARDIS"
    patterns = ("*.csv",)

    def sniff(self, path: Path) -> float:
        lines = head(path).splitlines()
        if not lines:
            return 0.0
        header = tuple(f.strip().lower().replace("å", "a") for f in lines[0].split(","))
        return 0.9 if header == TARDIS_HEADER else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        lines = read_text(path, ctx).splitlines()
        if not lines or not lines[0].strip():
            raise ctx.error(f"empty file; expected the header {','.join(TARDIS_HEADER)}", line=1)
        header = tuple(f.strip().lower().replace("å", "a") for f in lines[0].split(","))
        if header != TARDIS_HEADER:
            raise ctx.error(
                f"expected the header 'IDs,X [A],Y [A],Z [A]', found {lines[0]!r}", line=1
            )
        rows: dict[str, list] = {"x": [], "y": [], "z": [], "record": [], "original": []}
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != 4:
                raise ctx.error(
                    f"expected 4 fields (IDs, X, Y, Z), found {len(fields)}", line=lineno
                )
            values = [
                number(text, ctx, lineno, name)
                for name, text in zip(("IDs", "x", "y", "z"), fields, strict=True)
            ]
            for axis, value in zip(("x", "y", "z"), values[1:], strict=True):
                rows[axis].append(value)
            rows["record"].append(lineno)
            rows["original"].append(line)
        frame = canonical.make(
            rows, tomogram=ctx.tomogram_from_path(), particle=ctx.particle_name(None)
        )
        if units_are_voxels(ctx.options, "angstrom"):
            return explicit_spacing(ctx, None).voxels_to_angstrom(frame)
        return frame
