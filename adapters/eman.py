"""EMAN1 ``.box`` files (``eman-box``), as written by crYOLO, EMAN and the napari-boxmanager.

Sources: ``shared/reference/formats.md`` §1.1 and §8.1, resting on MPI-Dortmund/napari-boxmanager
``src/box_manager/io/box.py``; fixtures ``fixtures/formats/eman2_box/`` (SOURCES.md).

Convention applied
    One pick per line, whitespace separated, no header: ``x y width height`` (a fifth EMAN
    column, e.g. a ``-3`` manual-pick flag, is ignored and kept in ``original``). ``x, y`` are
    the box's **lower-left corner** in pixels/voxels of the image that was picked; the centre is
    ``x + width/2, y + height/2``. The fixtures confirm it: ``2d_left.box`` (``14 35 20 10``)
    and ``2d_center.box`` (``24 40 0 0``, box size 0 so corner == centre) hold the same picks.
    Division is exact (float): the boxmanager's reader uses ``width // 2`` but its writer
    subtracts ``width / 2``, so for odd box sizes writers disagree by half a pixel; we follow
    the writers that subtract ``box/2``. No score, no class (``--particle``). Units: voxels of
    the picked volume, converted with ``ctx.voxels_to_angstrom`` (``--voxel-size``/``--binning``).
    One file per tomogram (``--tomogram`` or the file name).

2D picks (choice made here)
    A ``.box`` has no z: its picks lie on one slice of a tomogram that the file does not name.
    Reading requires ``--option z=SLICE`` (slice index in voxels of the picked volume); without
    it the reader stops with an error that says so instead of guessing z = 0.

Not read
    The filament ("helicon") variant with ``#micrograph:``/``#helix:`` headers, and
    three-column ``x y z`` ``.box`` files (EMAN2 3D / DeepETPicker "box" export, read by the
    ``deepetpicker`` adapter).

Errors
    A word in a numeric column (fixture ``2d_corrupt_has_string.box``), a line with fewer than
    four fields, and an empty file (fixture ``2d_empty.box``) are each an ``InputFormatError``
    naming the file and line; nothing is imported.

Writer
    ``x − box/2, y − box/2, box, box`` with the box from ``--option box=VOXELS`` or the
    particle's diameter in the catalog. The format is 2D: the writer refuses picks of one
    tomogram that lie on different slices (more than half a voxel apart) and points to
    ``cryolo-cbox``/``coords``; read the file back with ``--option z=SLICE``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from picks.adapters._fields import data_lines, fmt, head_rows, is_number, number, read_text
from picks.adapters._options import need_slice
from picks.adapters._voxels import box_sizes
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.plugins.adapter import Adapter, ReadContext, WriteContext, head

FIELDS = ("x", "y", "width", "height")


class EmanBoxAdapter(Adapter):
    name = "eman-box"
    picker = "EMAN/crYOLO"
    patterns = ("*.box",)
    extension = ".box"
    layout = "per_tomogram"

    def sniff(self, path: Path) -> float:
        if head(path).lstrip().startswith("#micrograph"):
            return 0.0
        rows = head_rows(path)
        if rows is None:
            return 0.1  # empty: ours by name, so that read() explains
        if not rows or not all(len(r) in (4, 5) for r in rows):
            return 0.0
        numeric = sum(all(is_number(t) for t in r) for r in rows)
        # A corrupt line among numeric ones is still a box file with a bad line (read explains).
        return 0.6 if numeric == len(rows) else (0.3 if numeric else 0.0)

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        text = read_text(path, ctx)
        if text.lstrip().startswith("#micrograph"):
            raise ctx.error("filament (helicon) .box files are not supported", line=1)
        lines = data_lines(text)
        if not lines:
            raise ctx.error("empty file: no picks (expected lines 'x y width height')", line=1)
        cols: dict[str, list] = {k: [] for k in ("x", "y", "record", "original")}
        for line in lines:
            if len(line.fields) < 4:
                raise ctx.error(
                    f"expected 4 fields 'x y width height', found {len(line.fields)}",
                    line=line.number,
                )
            x, y, w, h = (
                number(t, ctx, line.number, n) for t, n in zip(line.fields[:4], FIELDS, strict=True)
            )
            # Lower-left corner -> centre (module docstring).
            cols["x"].append(x + w / 2.0)
            cols["y"].append(y + h / 2.0)
            cols["record"].append(line.number)
            cols["original"].append(line.text.strip())
        z = need_slice(ctx, lines[0].number, "this .box file")
        cols["z"] = [z] * len(lines)
        cols["tomogram"] = [ctx.tomogram_from_path()] * len(lines)
        frame = canonical.make(cols, particle=ctx.particle_name(None))
        return ctx.voxels_to_angstrom(frame)

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        vox = ctx.angstrom_to_voxels(picks)
        for tomogram, group in vox.groupby("tomogram", sort=False):
            z = group["z"].to_numpy(dtype=float)
            if z.size and z.max() - z.min() > 0.5:
                raise PicksError(
                    f"EMAN .box is 2D but the picks of tomogram {tomogram!r} span slices "
                    f"{z.min():.1f}–{z.max():.1f}",
                    hint="Write 3D picks with `to` cryolo-cbox or `to` coords.",
                )
        box = box_sizes(picks, ctx)
        lines = [
            f"{fmt(x - b / 2.0)}\t{fmt(y - b / 2.0)}\t{fmt(b)}\t{fmt(b)}\n"
            for (x, y), b in zip(vox[["x", "y"]].to_numpy(dtype=float), box, strict=True)
        ]
        path.write_text("".join(lines), encoding="utf-8")
