"""Helpers for whitespace/tab separated picker files (no header): lines, numbers, box sizes.

Every parse error is an :class:`~picks.core.errors.InputFormatError` naming the file and the
1-based line, with the offending token and what was expected, never a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from picks.core.errors import PicksError
from picks.core.particles import Catalog
from picks.plugins.adapter import ReadContext, WriteContext, head

NA_TOKENS = frozenset({"<NA>", "<na>", "NA", "nan", "NaN", "NAN", "None", "null"})


@dataclass(frozen=True)
class Line:
    """One data line: 1-based line number, the text (without newline) and its fields."""

    number: int
    text: str
    fields: list[str]


def read_text(path: Path, ctx: ReadContext) -> str:
    """The file as text; undecodable bytes are an error naming the line they are on."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ctx.error("not a text file (bytes that are not UTF-8)", line=line) from None


def data_lines(text: str, *, comment: str = "#") -> list[Line]:
    """Non-blank lines that do not start with ``comment``, split on whitespace (tabs included)."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or (comment and stripped.startswith(comment)):
            continue
        lines.append(Line(number, raw.rstrip("\r\n"), stripped.split()))
    return lines


def number(token: str, ctx: ReadContext, line: int, what: str, *, allow_na: bool = False) -> float:
    """``token`` as a finite float (or NaN for ``<NA>``-like tokens when ``allow_na``)."""
    if token in NA_TOKENS:
        if allow_na:
            return math.nan
        raise ctx.error(f"{what} is {token!r}; expected a number", line=line)
    try:
        value = float(token)
    except ValueError:
        raise ctx.error(f"{what} = {token!r} is not a number", line=line) from None
    if not math.isfinite(value):
        raise ctx.error(f"{what} = {token!r} is not a finite number", line=line)
    return value


def integer(token: str, ctx: ReadContext, line: int, what: str) -> int:
    """``token`` as an integer; ``3.0`` is accepted (numpy writes integral floats that way)."""
    value = number(token, ctx, line, what)
    if value != int(value):
        raise ctx.error(f"{what} = {token!r} is not an integer", line=line)
    return int(value)


def is_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def is_integer(token: str) -> bool:
    try:
        value = float(token)
    except ValueError:
        return False
    return math.isfinite(value) and value == int(value)


def head_rows(path: Path, limit: int = 20) -> list[list[str]] | None:
    """Fields of the first data lines, for sniffing; ``None`` for an empty file, ``[]`` when the
    head is not text."""
    text = head(path)
    if not text.strip():
        try:
            return None if path.stat().st_size == 0 or not path.read_bytes().strip() else []
        except OSError:
            return []
    lines = text.splitlines()
    if len(text) >= 8192 and lines:
        lines = lines[:-1]  # the last line may be cut by the head limit
    rows = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return rows[:limit]


def slice_option(ctx: ReadContext) -> float | None:
    """``--option z=SLICE``: the tomogram slice (voxels of the picked volume) of 2D picks."""
    raw = ctx.options.get("z")
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PicksError(f"--option z={raw!r}: expected a slice number (voxels)") from None
    if not math.isfinite(value):
        raise PicksError(f"--option z={raw!r}: expected a finite slice number")
    return value


def need_slice(ctx: ReadContext, line: int, what: str) -> float:
    """The ``z`` option, or the error explaining that 2D picks need it."""
    value = slice_option(ctx)
    if value is None:
        raise ctx.error(
            f"{what} holds 2D picks (no Z): they were picked on one slice of a tomogram. "
            "Give that slice (voxels of the picked volume) with --option z=SLICE to import them",
            line=line,
        )
    return value


def box_sizes(picks: pd.DataFrame, ctx: WriteContext, voxel_size: float) -> np.ndarray:
    """Box edge in voxels of the written volume for each pick.

    ``--option box=VOXELS`` wins; otherwise the particle's diameter from the catalog
    (``ctx.options["catalog"]`` when the caller passes one with user radii, else the CZII
    catalog), converted with ``voxel_size`` (Å per written voxel) and rounded to whole voxels.
    """
    raw = ctx.options.get("box")
    if raw is not None and str(raw).strip() != "":
        try:
            box = float(raw)
        except ValueError:
            raise PicksError(f"--option box={raw!r}: expected a box size in voxels") from None
        if not math.isfinite(box) or box <= 0:
            raise PicksError(f"--option box={raw!r}: expected a positive box size in voxels")
        return np.full(len(picks), box)
    catalog = ctx.options.get("catalog")
    if not isinstance(catalog, Catalog):
        catalog = Catalog()
    sizes = np.empty(len(picks))
    cache: dict[object, float] = {}
    for i, particle in enumerate(picks["particle"].to_numpy(dtype=object)):
        if particle not in cache:
            if particle is None or (isinstance(particle, float) and math.isnan(particle)):
                raise PicksError(
                    "cannot choose a box size for picks without a particle class: "
                    "give --option box=VOXELS"
                )
            if str(particle) not in catalog:
                raise PicksError(
                    f"cannot choose a box size for particle {particle!r}: it is not in the "
                    "catalog; give --option box=VOXELS or its radius with --radius NAME=Å"
                )
            diameter = 2.0 * catalog.radius(str(particle)) / voxel_size
            cache[particle] = float(max(1, round(diameter)))
        sizes[i] = cache[particle]
    return sizes


def fmt(value: float) -> str:
    """A coordinate for a text file: 6 decimals (1e-6 voxel), trailing zeros kept short."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
