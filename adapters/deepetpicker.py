"""DeepETPicker coordinates (``deepetpicker``): ``Coords_All``, ``Coords_withArea`` and its exports.

Sources: ``shared/reference/formats.md`` §3, and cbmi-group/DeepETPicker ``test.py`` (the
writer of both folders), ``utils/misc.py`` (``de_dup``), ``utils/coordFormatConvert.py``
(``coords2box``/``coords2coords``) and the GUI's conversion (``convert_ok``). No real file was
found (SOURCES.md), so the tests use small files written to this description.

Files, one per tomogram, tab separated, no header (``numpy.savetxt``):

* ``Coords_All/<name>.coords``: ``class x y z`` as integers;
* ``Coords_withArea/<name>.coords``: ``class x y z h`` as floats (``1.0  120.0 …``). In
  ``test.py`` the rows come from ``_nms_v2`` as ``[channel + 1, x, y, z, h_val]`` where
  ``h_val`` is the mean-pooled segmentation heat-map maximum at the peak; ``de_dup`` only drops
  rows. The 5th column is kept as the score with ``score_field="heatmap"``; further columns
  (none in the code read) stay in ``original``. Some versions name files
  ``<name>_thresh=<t>.coords``: the ``_thresh=…`` suffix is dropped from the tomogram name.
* the GUI's "box" export ``<dir>_cls<N>_box/<name>.box``: ``x y z`` (x, y with one decimal,
  z rounded), tab separated - **not** an EMAN ``x y w h`` box; and ``<dir>_cls<N>_coords/
  <name>.coords``: ``x y z`` integers. The class is the ``N`` of the folder name.

Convention applied: ``class`` is **1-based** (network channel + 1); a row of class 0 is the
"nothing found" placeholder ``[0, 0, 0, 0, 0]`` that ``get_centroids`` returns, skipped with a
warning. ``x y z`` are true x, y, z (reversed from the array's ``(z, y, x)``), **0-based voxel
indices** of the (pre-processed, possibly binned) input tomogram: converted with
``ctx.voxels_to_angstrom``; DeepETPicker stores no voxel size and does not undo its own
binning, so give ``--voxel-size``/``--binning``. Tomogram = ``--tomogram`` or the file stem.
Classes: ``--option labels=1=apo-ferritin,2=ribosome`` (or a labels file, see
``picks.adapters._labels``), else a ``# picks labels:`` comment our writer leaves (``numpy.
loadtxt`` skips ``#`` lines), else ``--particle`` when the file holds a single class, else the
number as a string. ``particle_field="class"``.

Sniffing (``.coords`` is shared with crYOLO/TomoTwin): 4 or more numeric columns with an
integer first column → DeepETPicker; exactly 3 columns → the ``coords`` adapter, unless the
folder is a DeepETPicker ``*_cls<N>_coords`` export. A 3-column ``.box`` is always
DeepETPicker's export (EMAN boxes have 4 columns).

Writer: ``Coords_All``-style ``class x y z`` per tomogram, tab separated, plus the score as a
5th column (``Coords_withArea`` layout) when any pick has one; coordinates keep 6 decimals
rather than DeepETPicker's integers so a round trip stays within 1e-3 Å (``numpy.loadtxt``
reads both). Class numbers follow ``--option labels``; an unnamed class read as ``"3"`` keeps
3; other classes take the free numbers from 1 in sorted order, and
the map is written as a leading ``# picks labels: …`` comment. The numbers are shared by all
the files of one export (the first file fixes them, later files add new classes after them).
No room for a consensus id.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters import _labels
from picks.adapters._fields import (
    data_lines,
    fmt,
    head_rows,
    is_integer,
    is_number,
    number,
    read_text,
)
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext, WriteContext

_EXPORT_DIR = re.compile(r"_cls(\d+)_(box|coords)$", re.IGNORECASE)
_THRESH = re.compile(r"_thresh=[0-9.eE+-]+$")


def _export_class(path: Path) -> int | None:
    match = _EXPORT_DIR.search(path.parent.name)
    return int(match.group(1)) if match else None


class DeepEtPickerAdapter(Adapter):
    name = "deepetpicker"
    picker = "DeepETPicker"
    patterns = ("*.coords", "*.box")
    extension = ".coords"
    layout = "per_tomogram"
    class_field = "optional"  # the class column is a number, invented for picks without one

    def sniff(self, path: Path) -> float:
        rows = head_rows(path)
        if rows is None:
            return 0.05  # empty .coords: the generic coords adapter (0.1) explains
        if not rows or not all(all(is_number(t) for t in r) for r in rows):
            return 0.0
        widths = {len(r) for r in rows}
        if path.suffix.lower() == ".box":
            # EMAN boxes have 4+ columns; DeepETPicker's "box" export has exactly x y z.
            return 0.7 if widths == {3} else 0.0
        if min(widths) >= 4 and all(is_integer(r[0]) for r in rows):
            return 0.7
        if widths == {3} and _export_class(path) is not None:
            return 0.7
        return 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        text = read_text(path, ctx)
        lines = data_lines(text)
        if not lines:
            raise ctx.error("empty file: no picks (expected tab-separated 'class x y z')", line=1)
        width = len(lines[0].fields)
        if width < 3:
            raise ctx.error(
                f"expected 'class x y z' (4+ fields) or 'x y z' (3), found {width}",
                line=lines[0].number,
            )
        has_class = width >= 4
        labels = _labels.class_map(ctx.options.get("labels")) or _labels.comment_map(text, "labels")
        folder_class = None if has_class else _export_class(path)
        cols: dict[str, list] = {k: [] for k in ("x", "y", "z", "score", "record", "original")}
        classes: list[int | None] = []
        placeholders = 0
        for line in lines:
            if len(line.fields) != width:
                raise ctx.error(
                    f"expected {width} fields like line {lines[0].number}, found {len(line.fields)}",
                    line=line.number,
                )
            fields = line.fields
            label = folder_class
            if has_class:
                value = number(fields[0], ctx, line.number, "class")
                if value != int(value) or value < 0:
                    raise ctx.error(
                        f"class = {fields[0]!r} is not a class number (1, 2, ...)", line=line.number
                    )
                label = int(value)
                fields = fields[1:]
            xyz = [number(t, ctx, line.number, a) for t, a in zip(fields[:3], "xyz", strict=True)]
            if label == 0:
                placeholders += 1
                continue
            classes.append(label)
            cols["x"].append(xyz[0])
            cols["y"].append(xyz[1])
            cols["z"].append(xyz[2])
            cols["score"].append(
                number(fields[3], ctx, line.number, "heatmap", allow_na=True)
                if len(fields) > 3
                else math.nan
            )
            cols["record"].append(line.number)
            cols["original"].append(line.text.strip())
        if placeholders:
            ctx.warn(
                f"skipped {placeholders} row(s) of class 0 (DeepETPicker's 'nothing found' placeholder)"
            )
        if not classes:
            raise ctx.error(
                "no picks: every row has class 0 (DeepETPicker found nothing)", line=lines[0].number
            )
        distinct = {c for c in classes if c is not None}
        single = ctx.particle if len(distinct) == 1 else None
        cols["particle"] = [
            ctx.particle_name(None if c is None else _labels.name_for(c, labels, single))
            for c in classes
        ]
        stem = _THRESH.sub("", path.stem)
        tomogram = ctx.tomogram_from_path() if ctx.tomogram else ctx.resolve_tomogram(stem)
        cols["tomogram"] = [tomogram] * len(classes)
        has_score = width >= 5
        frame = canonical.make(
            cols,
            particle_field="class" if (has_class or folder_class is not None) else None,
            score_field="heatmap" if has_score else None,
        )
        return ctx.voxels_to_angstrom(frame)

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        # One map for every file of an export (the writer is called once per tomogram with the
        # same context), so class 2 means the same particle in all of them.
        given = ctx.options.get("_deepetpicker_labels")
        if given is None:
            given = {n: name for n, name in _labels.class_map(ctx.options.get("labels")).items()}
        numbers = _labels.assign_numbers(picks["particle"].tolist(), given)
        ctx.options["_deepetpicker_labels"] = {n: name for name, n in numbers.items()} | dict(given)
        vox = ctx.angstrom_to_voxels(picks)[["x", "y", "z"]].to_numpy(dtype=float)
        scores = picks["score"].to_numpy(dtype=float)
        with_score = bool(np.isfinite(scores).any())
        label_map = {n: name for name, n in numbers.items()}
        out = [f"# {_labels.format_comment_map('labels', label_map)}\n"]
        for particle, (x, y, z), score in zip(picks["particle"].tolist(), vox, scores, strict=True):
            fields = [str(numbers[_labels.class_key(particle)]), fmt(x), fmt(y), fmt(z)]
            if with_score:
                fields.append("nan" if math.isnan(score) else repr(float(score)))
            out.append("\t".join(fields) + "\n")
        path.write_text("".join(out), encoding="utf-8")
