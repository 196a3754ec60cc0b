"""crYOLO picks: CBOX (``cryolo-cbox``), ``.coords`` (``coords``) and STAR output (``cryolo-star``).

Sources: ``shared/reference/formats.md`` §1 (crYOLO) and §8.4 (TomoTwin), which rest on
MPI-Dortmund/napari-boxmanager ``src/box_manager/io/{cbox,coords,star}.py`` (the crYOLO
group's own reader/writer) and MPI-Dortmund/tomotwin-cryoet ``io/cbox_format.py``.
The EMAN1 ``.box`` file crYOLO also writes is read by ``picks.adapters.eman`` (``eman-box``).

Units and frame (all three formats): **voxels of the tomogram crYOLO was given** (often
binned), 0-based voxel-centre indices along the MRC x (fastest), y, z axes; no voxel size in
the files. Conversion to Å always goes through ``ctx.voxels_to_angstrom`` with
``--voxel-size``/registered tomogram × ``--binning``. One file per tomogram: the tomogram is
``--tomogram`` or the file name (``TS_01.cbox`` -> ``TS_01``), except in STAR files that carry
``rlnMicrographName``.

CBOX (crYOLO ≥ 1.8, STAR-like)
    ``data_global`` (``_cbox_format_version``), ``data_cryolo`` loop (``_CoordinateX
    _CoordinateY _CoordinateZ _Width _Height _Depth _EstWidth _EstHeight _Confidence _NumBoxes
    _Angle`` [+ ``_filamentid``]) and ``data_cryolo_include`` (slice list for training; ignored).
    ``_CoordinateX/_CoordinateY`` are the box's **lower-left corner**: centre = X + Width/2,
    Y + Height/2 (float division, as both writers subtract box/2). ``_CoordinateZ`` is already
    the **centre** slice: no Depth/2 is added. ``<NA>`` is a missing value. Score =
    ``_Confidence`` (``score_field="_Confidence"``; TomoTwin writes its ``metric_best`` there).
    Filament files: each segment becomes one pick (the filament id stays in ``original``).
    Old (pre-1.8) CBOX: whitespace ``x y width height confidence`` (corner convention, 2D); read
    when the file has no ``data_`` block, as the boxmanager's fallback does.
    Writer: the corner is restored (X − box/2, Y − box/2); consensus output adds two columns
    after crYOLO's own, ``_PicksConsensusId`` and ``_PicksSupport``, so each row can be traced
    with ``picks audit ID`` (readers of the format take columns by name).

2D picks (choice made here): a CBOX without Z (column absent or every value ``<NA>``), an old
    CBOX, or a 2D STAR holds picks made on one slice, and the slice is not in the file. Such a
    file is an error that asks for ``--option z=SLICE`` (slice index in voxels of the picked
    volume), which then becomes every pick's z. Guessing z = 0 would put picks on the tomogram's
    edge and hide the mistake. A CBOX whose Z are all 0 (the boxmanager stores 2D picks that
    way, fixture ``2d_particles.cbox``) is read as given with a warning; ``--option z=SLICE``
    replaces those zeros.

``.coords`` (crYOLO ``COORDS``, TomoTwin ``tomotwin_pick``, IMOD point lists)
    ``x y z`` per line, whitespace separated, no header, particle **centres**, no score/class.
    Open question (formats.md §1.3): 0-based voxel centres, or IMOD model coordinates whose
    x, y origin is the pixel corner? Choice: **0-based voxel centres**, because the only code
    that reads and writes the format (boxmanager ``io/coords.py``, TomoTwin's writer) uses the
    values directly as array indices, and crYOLO derives them from the same boxes as its CBOX,
    whose Z is an index. ``--option origin=imod`` reads IMOD ``model2point`` output instead
    (x − 0.5, y − 0.5; z unchanged; formats.md §8.3) and the writer honours it too. The picker
    label defaults to crYOLO: import TomoTwin's files with ``--picker tomotwin``.

STAR output (``cryolo-star``)
    ``rlnCoordinateX/Y(/Z)`` are **centres** (boxmanager ``io/star.py`` adds nothing),
    ``rlnMicrographName`` (optional) names the tomogram of each row (``--tomogram`` overrides
    it), score = ``rlnAutopickFigureOfMerit``. The sniffer only claims STAR files whose columns are all in
    crYOLO's set, so RELION particle files go to the RELION adapters.

Writers
    ``cryolo-cbox`` writes 3D CBOX 1.0: X = x − Width/2, Y = y − Height/2, Z = z (centre),
    Width = Height = Depth = box, ``_Confidence`` = score (``<NA>`` when missing), the other
    columns ``<NA>``, and ``data_cryolo_include`` listing the (rounded) slices that hold picks,
    as the boxmanager does. The box is ``--option box=VOXELS`` or the particle's diameter from
    the catalog (:mod:`picks.core.particles`) in voxels of the written volume.
    ``coords`` writes ``x y z`` centres. Neither format has room for a consensus id.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._fields import (
    data_lines,
    fmt,
    head_rows,
    is_integer,
    is_number,
    number,
    read_text,
)
from picks.adapters._options import need_slice, option_choice, slice_option
from picks.adapters._star import Table, parse, read_head
from picks.adapters._voxels import box_sizes
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext, WriteContext, head

TRACE_COLUMNS = {"consensus_id": "PicksConsensusId", "support": "PicksSupport"}
CBOX_COLUMNS = (
    "CoordinateX",
    "CoordinateY",
    "CoordinateZ",
    "Width",
    "Height",
    "Depth",
    "EstWidth",
    "EstHeight",
    "Confidence",
    "NumBoxes",
    "Angle",
)
CRYOLO_STAR_COLUMNS = frozenset(
    {
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnCoordinateZ",
        "rlnMicrographName",
        "rlnAutopickFigureOfMerit",
        "rlnHelicalTubeID",
    }
)


def _column(table: Table, ctx: ReadContext, label: str) -> np.ndarray:
    """A required numeric column; errors name it as written (``_CoordinateX``)."""
    return table.numbers(ctx, label, what=f"_{label}")


def _optional(table: Table, ctx: ReadContext, label: str) -> np.ndarray:
    """A column that may be absent or hold ``<NA>``: NaN there."""
    if not table.has(label):
        return np.full(len(table), math.nan)
    return table.numbers(ctx, label, allow_missing=True, what=f"_{label}")


def _frame(
    ctx: ReadContext,
    columns: dict[str, object],
    *,
    score_field: str | None,
) -> pd.DataFrame:
    """Canonical table from voxel columns (no class: ``--particle``), converted to Å."""
    scores = np.asarray(columns.get("score", []), dtype=float)
    has_score = scores.size > 0 and bool(np.isfinite(scores).any())
    frame = canonical.make(
        columns,
        particle=ctx.particle_name(None),
        score_field=score_field if has_score else None,
    )
    return ctx.voxels_to_angstrom(frame)


def _apply_slices(zs: np.ndarray, lines: list[int], ctx: ReadContext, what: str) -> np.ndarray:
    """Fill or check Z: 2D files need ``--option z``; all-zero Z get a warning (module doc)."""
    missing = np.isnan(zs)
    option = slice_option(ctx)
    if missing.all():
        return np.full(len(zs), need_slice(ctx, lines[0], what))
    if missing.any():
        first = lines[int(np.flatnonzero(missing)[0])]
        raise ctx.error("Z is missing (<NA>) on this row but present on others", line=first)
    if (zs == 0).all():
        if option is not None:
            return np.full(len(zs), option)
        ctx.warn(
            f"every pick of {what} has Z = 0: if these are 2D picks, re-import with "
            "`options` z=SLICE (the slice they were picked on)"
        )
    elif option is not None:
        ctx.warn(f"`options` z={option:g} ignored: {what} gives a Z for every pick")
    return zs


class CryoloCboxAdapter(Adapter):
    name = "cryolo-cbox"
    picker = "crYOLO"
    patterns = ("*.cbox",)
    extension = ".cbox"
    layout = "per_tomogram"

    def sniff(self, path: Path) -> float:
        text = head(path)
        if "data_cryolo" in text or "_CoordinateX" in text:
            return 0.9
        rows = head_rows(path)
        if rows is None:
            return 0.1  # empty: ours by name, so that read() explains
        if rows and all(len(r) >= 5 and all(is_number(t) for t in r[:5]) for r in rows):
            return 0.5
        return 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        text = read_text(path, ctx)
        if not text.strip():
            raise ctx.error(
                "empty file: no picks (expected a crYOLO CBOX with a data_cryolo loop)", line=1
            )
        if re.search(r"^\s*data_", text, re.MULTILINE):
            return self._read_star(text, ctx)
        return self._read_old(text, ctx)

    def _read_star(self, text: str, ctx: ReadContext) -> pd.DataFrame:
        star = parse(text, ctx)
        header = star.blocks.get("global")
        version = header.pairs.get("cbox_format_version", "") if header else ""
        if version and not version.startswith("1"):
            ctx.warn(f"CBOX format version {version} is newer than the 1.x this reader knows")
        table = star.find("CoordinateX", prefer=("cryolo",))
        if table is None:
            raise ctx.error("no data_cryolo loop with _CoordinateX: not a crYOLO CBOX", line=1)
        required = ("CoordinateX", "CoordinateY", "Width", "Height")
        missing = [f"_{c}" for c in required if c not in table.columns]
        if missing:
            raise ctx.error(
                f"the data_cryolo loop lacks {', '.join(missing)}", line=table.header_line
            )
        if not len(table):
            raise ctx.error("the data_cryolo loop holds no picks", line=table.header_line)
        x, y, width, height = (_column(table, ctx, c) for c in required)
        if table.has("filamentid"):
            ctx.warn(
                "filament CBOX: every segment is read as one pick (filament id kept in 'original')"
            )
        cols = {
            # Corner -> centre for X, Y only (module docstring).
            "x": x + width / 2.0,
            "y": y + height / 2.0,
            "z": _apply_slices(_optional(table, ctx, "CoordinateZ"), table.lines, ctx, "this CBOX"),
            "score": _optional(table, ctx, "Confidence"),
            "record": table.lines,
            "original": table.texts,
            "tomogram": [ctx.tomogram_from_path()] * len(table),
        }
        return _frame(ctx, cols, score_field="_Confidence")

    def _read_old(self, text: str, ctx: ReadContext) -> pd.DataFrame:
        lines = data_lines(text)
        if not lines:
            raise ctx.error("no picks: only comments (expected a crYOLO CBOX)", line=1)
        cols: dict[str, list] = {k: [] for k in ("x", "y", "z", "score", "record", "original")}
        names = ("x", "y", "width", "height", "confidence")
        for line in lines:
            if len(line.fields) < 5:
                raise ctx.error(
                    "expected a data_cryolo block (CBOX ≥ 1.8) or at least 5 fields "
                    f"'x y width height confidence' (old CBOX), found {len(line.fields)}",
                    line=line.number,
                )
            x, y, w, h = (
                number(t, ctx, line.number, n) for t, n in zip(line.fields[:4], names, strict=False)
            )
            cols["x"].append(x + w / 2.0)
            cols["y"].append(y + h / 2.0)
            cols["score"].append(
                number(line.fields[4], ctx, line.number, "confidence", allow_na=True)
            )
            cols["record"].append(line.number)
            cols["original"].append(line.text.strip())
        z = need_slice(ctx, lines[0].number, "this old-style CBOX")
        cols["z"] = [z] * len(lines)
        cols["tomogram"] = [ctx.tomogram_from_path()] * len(lines)
        return _frame(ctx, cols, score_field="_Confidence")

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        vox = ctx.angstrom_to_voxels(picks)
        box = box_sizes(picks, ctx)
        lines = ["", "data_global", "", "_cbox_format_version 1.0", "", "data_cryolo", "", "loop_"]
        # Consensus output: two extra columns after crYOLO's own (crYOLO and napari-boxmanager
        # read columns by name), so every row can be traced with `picks audit ID`.
        extra = [c for c in TRACE_COLUMNS if c in picks and picks[c].notna().all()]
        columns = list(CBOX_COLUMNS) + [TRACE_COLUMNS[c] for c in extra]
        lines += [f"_{c} #{i}" for i, c in enumerate(columns, start=1)]
        scores = picks["score"].to_numpy(dtype=float)
        traces = [picks[c].to_numpy() for c in extra]
        for row, ((x, y, z), b, s) in enumerate(
            zip(vox[["x", "y", "z"]].to_numpy(dtype=float), box, scores, strict=True)
        ):
            fields = [fmt(x - b / 2.0), fmt(y - b / 2.0), fmt(z), fmt(b), fmt(b), fmt(b)]
            fields += ["<NA>", "<NA>", "<NA>" if math.isnan(s) else repr(float(s)), "<NA>", "<NA>"]
            fields += [fmt(float(t[row])) for t in traces]
            lines.append(" ".join(fields))
        slices = sorted({round(float(z)) for z in vox["z"].to_numpy(dtype=float)})
        lines += ["", "data_cryolo_include", "", "loop_", "_slice_index #1"]
        lines += [f"{s:.6f}" for s in slices]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class CoordsAdapter(Adapter):
    name = "coords"
    picker = "crYOLO"
    patterns = ("*.coords",)
    extension = ".coords"
    layout = "per_tomogram"

    def sniff(self, path: Path) -> float:
        rows = head_rows(path)
        if rows is None:
            return 0.1
        if rows and all(len(r) == 3 and all(is_number(t) for t in r) for r in rows):
            return 0.5
        return 0.0

    @staticmethod
    def _origin_shift(options: dict) -> float:
        choices = {"index": 0.0, "centre": 0.0, "center": 0.0, "0": 0.0, "imod": 0.5}
        return option_choice(
            options, "origin", choices, "index", expected="'index' (default) or 'imod'"
        )

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        shift = self._origin_shift(ctx.options)
        lines = data_lines(read_text(path, ctx))
        if not lines:
            raise ctx.error("empty file: no picks (expected lines 'x y z')", line=1)
        cols: dict[str, list] = {k: [] for k in ("x", "y", "z", "record", "original")}
        for line in lines:
            if len(line.fields) != 3:
                hint = ""
                if len(line.fields) >= 4 and is_integer(line.fields[0]):
                    hint = " (a class column first looks like DeepETPicker: `adapter` deepetpicker)"
                raise ctx.error(
                    f"expected 3 fields 'x y z', found {len(line.fields)}{hint}", line=line.number
                )
            x, y, z = (
                number(t, ctx, line.number, a) for t, a in zip(line.fields, "xyz", strict=True)
            )
            cols["x"].append(x - shift)
            cols["y"].append(y - shift)
            cols["z"].append(z)
            cols["record"].append(line.number)
            cols["original"].append(line.text.strip())
        cols["tomogram"] = [ctx.tomogram_from_path()] * len(lines)
        return _frame(ctx, cols, score_field=None)

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        shift = self._origin_shift(ctx.options)
        vox = ctx.angstrom_to_voxels(picks)[["x", "y", "z"]].to_numpy(dtype=float)
        text = "".join(f"{fmt(x + shift)} {fmt(y + shift)} {fmt(z)}\n" for x, y, z in vox)
        path.write_text(text, encoding="utf-8")


class CryoloStarAdapter(Adapter):
    name = "cryolo-star"
    picker = "crYOLO"
    patterns = ("*.star",)
    layout = "per_tomogram"

    def sniff(self, path: Path) -> float:
        if "data_optics" in head(path):
            return 0.0
        found = read_head(path)
        for columns in found.loops if found else ():
            if "rlnCoordinateX" in columns:
                names = set(columns)
                if {"rlnCoordinateX", "rlnCoordinateY"} <= names <= CRYOLO_STAR_COLUMNS:
                    return 0.55
                return 0.0
        return 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        text = read_text(path, ctx)
        if not text.strip():
            raise ctx.error(
                "empty file: no picks (expected a STAR loop with rlnCoordinateX)", line=1
            )
        star = parse(text, ctx)
        table = star.find("rlnCoordinateX", prefer=("particles", ""))
        if table is None:
            raise ctx.error("no loop with _rlnCoordinateX: not a crYOLO STAR file", line=1)
        if "rlnCoordinateY" not in table.columns:
            raise ctx.error("the loop lacks _rlnCoordinateY", line=table.header_line)
        if not len(table):
            raise ctx.error("the particle loop holds no picks", line=table.header_line)
        x = _column(table, ctx, "rlnCoordinateX")
        y = _column(table, ctx, "rlnCoordinateY")
        z = _optional(table, ctx, "rlnCoordinateZ")
        if table.has("rlnMicrographName") and not ctx.tomogram:
            tomograms = ctx.resolve_tomograms(table.strings("rlnMicrographName"))
        else:
            tomograms = [ctx.tomogram_from_path()] * len(table)
        cols = {
            "tomogram": tomograms,
            "x": x,
            "y": y,
            "z": _apply_slices(z, table.lines, ctx, "this STAR file"),
            "score": _optional(table, ctx, "rlnAutopickFigureOfMerit"),
            "record": table.lines,
            "original": table.texts,
        }
        return _frame(ctx, cols, score_field="rlnAutopickFigureOfMerit")
