"""Dynamo particle tables (``.tbl``) with their tomogram index map (``.doc``).

Convention (``shared/reference/formats.md`` §8.2; the Dynamo wiki "Table convention" as
listed in teamtomo/dynamotable:dynamotable/constants.py; copick/copick:src/copick/util/formats.py):

* whitespace-separated numbers, no header, one particle per line; columns (1-based) used here:
  1 ``tag``, 4–6 ``dx, dy, dz`` (shift, px), 7–9 ``tdrot, tilt, narot`` (ZXZ Euler, degrees),
  10 ``cc``, 20 ``tomo`` (integer tomogram index), 22 ``class``, 24–26 ``x, y, z`` (px) and,
  when present, 36 ``apix`` (Å/px, often 0). Tables need at least 26 columns (the cryoCAT
  fixture has exactly 26; Dynamo writes 35 or more).
* Position = ``(x, y, z) + (dx, dy, dz)`` in voxels of the tomogram the table refers to.
* **Index base (open question, formats.md §8.2):** Dynamo is MATLAB, whose first voxel has
  index 1; Dynamo crops subtomograms by indexing the volume with the table position, so the
  default here is **1-based** (``voxel index = position − 1``). copick converts Dynamo pixels with
  no offset; ``--option index_base=0`` reproduces that reading. The choice moves picks by one
  voxel, within every consensus radius, and is recorded with the import options.
* MATLAB-written tables may hold complex numbers (``0+1.2074e-06i``, fixture
  ``t_complex.tbl``); the real part is used and a warning gives the largest imaginary part.
  (``dynamotable`` 0.3 leaves such columns as text and cannot name a bad line, so this module
  parses tables itself.)
* Tomograms: the ``tomo`` index is mapped to a name through ``--option tomograms=1=TS_01,2=TS_02``
  (inline or a file of pairs, :mod:`picks.adapters._labels`), or a Dynamo tomogram doc file
  (``index<TAB>path`` per line) given as ``--option tomogram_map=PATH`` (as given or next to
  the table) or found next to the table as ``<table stem>.doc``. A map entry
  that is a registered tomogram's path names that tomogram; other entries go through the usual
  name matching (``tomo_ts01.mrc_15.00Apx.mrc`` -> ``tomo_ts01.mrc_15.00Apx`` when nothing is
  registered). Without a map a table that
  uses a single index takes ``--tomogram`` or its file name; a table with several indices and no
  map is an error (a bare number names no tomogram).
* Angles: ``tdrot, tilt, narot`` -> RELION ZYZ via copick's Dynamo path,
  ``Rotation.from_euler("zxz", …)`` equal to RELION ``from_euler("ZYZ", …)``; in closed form
  ``rot = narot − 90°, tilt = tilt, psi = tdrot + 90°``. ``angle_convention = "dynamo-zxz"``.
* Score = ``cc`` (``score_field = "cc"``). Class: Dynamo's ``class`` is a number; with
  ``--option classes=1=ribosome,2=…`` (alias ``labels``) it becomes the particle
  (``particle_field = "class"``), otherwise every pick gets ``--particle`` (or none). The tag, class and every column stay in
  ``original`` (the line).
* Voxel size: ``--voxel-size`` or the registered tomogram × ``--binning``; ``apix`` is used only
  when neither is known (with a warning), and a disagreement is reported.

Writer (layout ``file``, one ``.tbl`` for all tomograms): 36 columns — tag (``consensus_id`` when present, else 1..N), aligned = averaged
= 1, zero shifts, Dynamo angles (0 when a pick has none), cc = score (0 when none), tomo index,
class, x/y/z in voxels of the registered tomogram (× ``--binning``) with the same index base
(``--option index_base``), apix = that voxel size — and ``<table stem>.doc`` next to it mapping
each tomo index (1.. in name order) to the registered tomogram's path, or its name. Classes are
numbered 1.. in alphabetical order of particle name (0 for picks without a class) unless
``--option classes=1=ribosome,…`` fixes the numbering; read them back with the same option.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._euler import dynamo_from_relion, relion_from_dynamo
from picks.adapters._fields import data_lines, fmt, head_rows, integer_text, read_text
from picks.adapters._labels import parse_int_map, read_map_file
from picks.adapters._options import option_choice, option_file
from picks.adapters._voxels import with_voxel_size
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.core.files import atomic_path
from picks.plugins.adapter import Adapter, ReadContext, WriteContext

MIN_COLUMNS = 26
N_WRITE_COLUMNS = 36
# Dynamo's documented columns end at 42 (eig2); 64 leaves room for a few user columns. A wider
# line is not a Dynamo table (one 250,000-number line once cost rows × width of memory).
MAX_COLUMNS = 64
# 0-based positions of the columns used (the Dynamo numbering minus one).
TAG, DX, TDROT, CC, TOMO, CLASS, X, APIX = 0, 3, 6, 9, 19, 21, 23, 35
_COMPLEX = re.compile(
    r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[+-](\d+\.?\d*|\.\d+)?([eE][+-]?\d+)?[ij]$"
)


def _parse_number(token: str) -> tuple[float, float | None] | None:
    """(real part, |imaginary part| or None for a real number) of a token; None if not a number."""
    try:
        return float(token), None
    except ValueError:
        pass
    if _COMPLEX.match(token):
        value = complex(token[:-1] + "j")
        return value.real, abs(value.imag)
    return None


def read_tomogram_map(path: Path) -> dict[int, str]:
    """A Dynamo tomogram doc file: ``index<whitespace>path`` per line."""
    return read_map_file(path, "tomogram_map", entry="'index<TAB>tomogram path'")


def _index_base(options: dict) -> int:
    return option_choice(options, "index_base", {"0": 0, "1": 1}, "1", expected="0 or 1")


class DynamoAdapter(Adapter):
    name = "dynamo-tbl"
    picker = "Dynamo"
    patterns = ("*.tbl",)
    extension = ".tbl"
    layout = "file"
    class_field = "optional"  # the class column is a number, invented for picks without one

    def sniff(self, path: Path) -> float:
        rows = head_rows(path, limit=5)
        if not rows:
            return 0.0
        for tokens in rows:
            if len(tokens) < MIN_COLUMNS or any(_parse_number(t) is None for t in tokens):
                return 0.0
        return 0.9

    # -- reading -----------------------------------------------------------------------------

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        numbered = data_lines(read_text(path, ctx), comment="")
        if not numbered:
            raise ctx.error(
                f"empty file; expected a Dynamo table (≥ {MIN_COLUMNS} numbers per line)", line=1
            )
        for line in numbered:
            if len(line.fields) > MAX_COLUMNS:
                raise ctx.error(
                    f"{len(line.fields)} columns; a Dynamo table has at most {MAX_COLUMNS} "
                    "(its documented columns end at 42)",
                    line=line.number,
                )
        width = max(len(line.fields) for line in numbered)
        # Only the columns read (up to apix) are kept; the line itself stays in `original`.
        table = np.zeros((len(numbered), N_WRITE_COLUMNS))
        largest_imaginary, n_complex = 0.0, 0
        for row, line in enumerate(numbered):
            tokens, number = line.fields, line.number
            if len(tokens) < MIN_COLUMNS:
                raise ctx.error(
                    f"expected at least {MIN_COLUMNS} columns (x, y, z are columns 24–26), found {len(tokens)}",
                    line=number,
                )
            try:
                values = [float(t) for t in tokens]
                table[row, : min(len(values), N_WRITE_COLUMNS)] = values[:N_WRITE_COLUMNS]
                continue
            except ValueError:
                pass
            for column, token in enumerate(tokens):
                parsed = _parse_number(token)
                if parsed is None:
                    raise ctx.error(f"column {column + 1} = {token!r} is not a number", line=number)
                if column >= N_WRITE_COLUMNS:
                    continue
                table[row, column] = parsed[0]
                if parsed[1] is not None:
                    n_complex += 1
                    largest_imaginary = max(largest_imaginary, parsed[1])
        if n_complex:
            ctx.warn(
                f"{n_complex} value(s) are MATLAB complex numbers; their real part was used "
                f"(largest imaginary part {largest_imaginary:.3g})"
            )
        if not np.isfinite(table).all():
            row = int(np.flatnonzero(~np.isfinite(table).all(axis=1))[0])
            raise ctx.error("non-finite value (NaN or Inf)", line=numbered[row].number)
        records = [line.number for line in numbered]
        tomograms = self._tomograms(table[:, TOMO], records, path, ctx)
        particles, particle_field = self._particles(table[:, CLASS], records, ctx)
        base = _index_base(ctx.options)
        positions = table[:, X : X + 3] + table[:, DX : DX + 3] - base
        angles = relion_from_dynamo(table[:, TDROT : TDROT + 3])
        frame = canonical.make(
            {
                "tomogram": tomograms,
                "particle": particles,
                "x": positions[:, 0],
                "y": positions[:, 1],
                "z": positions[:, 2],
                "score": table[:, CC],
                "rot": angles[:, 0],
                "tilt": angles[:, 1],
                "psi": angles[:, 2],
                "record": records,
                "original": [line.text for line in numbered],
            },
            score_field="cc",
            particle_field=particle_field,
            angle_convention="dynamo-zxz",
        )
        apix = table[:, APIX] if width > APIX else np.zeros(len(table))
        file_size = (
            float(apix[0]) if len(apix) and apix[0] > 0 and np.allclose(apix, apix[0]) else None
        )
        names = sorted(frame["tomogram"].unique())
        return with_voxel_size(
            ctx, names, file_size, "the table's apix (column 36)"
        ).voxels_to_angstrom(frame)

    def _tomograms(
        self, column: np.ndarray, records: list[int], path: Path, ctx: ReadContext
    ) -> list[str]:
        # 1e308 is "integral" but no int64: the cast would give garbage, not an error
        bad = np.flatnonzero((column != np.round(column)) | (np.abs(column) >= 2**31))
        if bad.size:
            raise ctx.error(
                f"tomo (column 20) = {column[bad[0]]:g} is not an integer index",
                line=records[bad[0]],
            )
        indices = column.astype(int)
        mapping, source = self._tomogram_map(path, ctx)
        if mapping is None:
            unique = sorted(set(indices.tolist()))
            if len(unique) > 1:
                raise ctx.error(
                    f"the table uses {len(unique)} tomogram indices ({', '.join(map(str, unique[:10]))}"
                    f"{' …' if len(unique) > 10 else ''}) and no tomogram map names them; give "
                    "`options` tomogram_map=FILE.doc (index<TAB>path) or `options` tomograms=1=NAME,2=NAME"
                )
            return [ctx.tomogram_from_path()] * len(indices)
        names: dict[int, str] = {}
        for row, index in enumerate(indices.tolist()):
            if index not in names:
                if index not in mapping:
                    raise ctx.error(
                        f"tomo index {index} (column 20) is not in {source}", line=records[row]
                    )
                names[index] = self._tomogram_name(mapping[index], ctx)
        return [names[i] for i in indices.tolist()]

    @staticmethod
    def _tomogram_name(raw: str, ctx: ReadContext) -> str:
        """A map entry -> tomogram name: a registered tomogram's own path maps to its name."""
        target = Path(raw).expanduser().absolute()
        for tomo in ctx.tomograms:
            if tomo.path and (
                tomo.path == raw or Path(tomo.path).expanduser().absolute() == target
            ):
                return tomo.name
        return ctx.resolve_tomogram(raw)

    @staticmethod
    def _tomogram_map(path: Path, ctx: ReadContext) -> tuple[dict[int, str] | None, str]:
        mapping = parse_int_map(ctx.options.get("tomograms"), "tomograms")
        if mapping:
            return mapping, "`options` tomograms"
        given = option_file(ctx, "tomogram_map")
        if given is not None:
            return read_tomogram_map(given), f"the tomogram map {given}"
        beside = path.with_suffix(".doc")
        if beside.exists():
            return read_tomogram_map(beside), f"the tomogram map {beside}"
        return None, ""

    @staticmethod
    def _particles(
        column: np.ndarray, records: list[int], ctx: ReadContext
    ) -> tuple[list, str | None]:
        raw = ctx.options.get("classes") or ctx.options.get("labels")
        if not raw:
            return [ctx.particle_name(None)] * len(column), None
        mapping = parse_int_map(raw, "classes")
        out = []
        for row, value in enumerate(column.tolist()):
            if not float(value).is_integer() or int(value) not in mapping:
                raise ctx.error(
                    f"class {integer_text(value)} (column 22) is not in `options` classes",
                    line=records[row],
                )
            out.append(ctx.particle_name(mapping[int(value)]))
        return out, "class"

    # -- writing -----------------------------------------------------------------------------

    def companions(self, target: Path, options: dict) -> list[Path]:
        return [target.with_suffix(".doc")]

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        # ``path`` may be the caller's temporary file; the map is named after the final path.
        target = Path(ctx.options.get("target") or path)
        doc_path = self.companions(target, ctx.options)[0]
        force = bool(ctx.options.get("force", False))
        if doc_path.exists() and not force:
            raise PicksError(f"{doc_path} exists", hint="Use `force=True` to replace it.")
        base = _index_base(ctx.options)
        names = sorted(picks["tomogram"].astype(str).unique())
        tomo_index = {name: i for i, name in enumerate(names, start=1)}
        classes = self._class_numbers(picks, ctx)
        table = np.zeros((len(picks), N_WRITE_COLUMNS))
        table[:, TAG] = self._tags(picks)
        table[:, 1] = table[:, 2] = 1
        angles = picks[canonical.ANGLES].to_numpy(dtype=float)
        known = np.isfinite(angles).all(axis=1)
        if known.any():
            table[known, TDROT : TDROT + 3] = dynamo_from_relion(angles[known])
        scores = picks["score"].to_numpy(dtype=float)
        table[:, CC] = np.where(np.isfinite(scores), scores, 0.0)
        table[:, TOMO] = [tomo_index[str(t)] for t in picks["tomogram"]]
        table[:, CLASS] = [
            classes.get(p, 0) if isinstance(p, str) else 0 for p in picks["particle"]
        ]
        if len(picks):
            voxels = ctx.angstrom_to_voxels(picks)
            table[:, X : X + 3] = voxels[canonical.COORDS].to_numpy(dtype=float) + base
            table[:, APIX] = [ctx.voxel_sizes(str(t))[0] for t in picks["tomogram"]]
        integer_columns = {TAG, 1, 2, TOMO, CLASS}
        lines = [
            " ".join(str(int(v)) if c in integer_columns else fmt(v) for c, v in enumerate(row))
            for row in table
        ]
        doc_lines = []
        for name in names:
            registered = ctx.tomograms.get(name)
            doc_lines.append(
                f"{tomo_index[name]}\t{registered.path if registered and registered.path else name}"
            )
        with atomic_path(doc_path, force=force) as tmp:
            tmp.write_text("".join(line + "\n" for line in doc_lines), encoding="utf-8")
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    @staticmethod
    def _tags(picks: pd.DataFrame) -> np.ndarray:
        if "consensus_id" in picks:
            ids = pd.to_numeric(picks["consensus_id"], errors="coerce").to_numpy(dtype=float)
            if np.isfinite(ids).all() and (ids > 0).all() and len(np.unique(ids)) == len(ids):
                return ids
        return np.arange(1, len(picks) + 1)

    @staticmethod
    def _class_numbers(picks: pd.DataFrame, ctx: WriteContext) -> dict[str, int]:
        mapping = parse_int_map(ctx.options.get("classes"), "classes")
        if mapping:
            numbers = {name: number for number, name in mapping.items()}
            missing = sorted({p for p in picks["particle"].dropna() if p not in numbers})
            if missing:
                raise PicksError(f"`options` classes has no number for {', '.join(missing)}")
            return numbers
        names = sorted({str(p) for p in picks["particle"].dropna()})
        return {name: i for i, name in enumerate(names, start=1)}
