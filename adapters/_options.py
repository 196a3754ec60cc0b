"""Adapter options (``--option KEY=VALUE`` / ``--to-option``) that hold one value.

Options arrive as strings (or, from Python callers, as numbers). Every function here returns
``None`` (or the default) when the option is absent or blank, and raises a
:class:`~picks.core.errors.PicksError` that names the option, the value and what was expected
otherwise; nothing is guessed. Maps such as ``labels=1=ribosome,2=apo-ferritin`` are parsed by
:mod:`picks.adapters._labels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from picks.core.errors import PicksError
from picks.plugins.adapter import ReadContext


def option_text(options: Mapping[str, Any], key: str) -> str | None:
    """The option's value as stripped text, or None when absent or blank."""
    raw = options.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    return str(raw).strip()


def option_number(
    options: Mapping[str, Any],
    key: str,
    *,
    expected: str = "a number",
    positive: bool = False,
    where: str = "`options`",
) -> float | None:
    """A finite number (``> 0`` when ``positive``); ``expected`` describes it in the error."""
    raw = options.get(key)
    if option_text(options, key) is None:
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0):
        raise PicksError(f"{where} {key}={raw!r}: expected {expected}")
    return value


def option_numbers(
    options: Mapping[str, Any], key: str, count: int, *, expected: str, where: str = "`options`"
) -> list[float] | None:
    """``count`` positive numbers separated by commas (or ``x``): ``tomo_size=4000,4000,2000``."""
    text = option_text(options, key)
    if text is None:
        return None
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) and v > 0 for v in values):
        raise PicksError(f"{where} {key}={options.get(key)!r}: expected {expected}")
    return values


def option_choice(
    options: Mapping[str, Any],
    key: str,
    choices: Mapping[str, Any],
    default: str,
    *,
    expected: str | None = None,
    where: str = "`options`",
) -> Any:
    """The value ``choices`` gives for the option (case-insensitive), ``default`` when absent.

    ``choices`` may list several spellings for one meaning; ``expected`` describes the
    accepted values in the error (default: every spelling).
    """
    text = (option_text(options, key) or default).lower()
    if text not in choices:
        accepted = expected or " or ".join(repr(c) for c in choices)
        raise PicksError(f"{where} {key}={text!r}: expected {accepted}")
    return choices[text]


def option_file(ctx: ReadContext, key: str) -> Path | None:
    """A file named by the option: as given (``~`` expanded), else beside the file being read."""
    text = option_text(ctx.options, key)
    if text is None:
        return None
    given = Path(text).expanduser()
    for candidate in (given, Path(ctx.path).parent / given):
        if candidate.is_file():
            return candidate
    raise PicksError(f"`options` {key}={text}: no such file")


def slice_option(ctx: ReadContext) -> float | None:
    """``--option z=SLICE``: the tomogram slice (voxels of the picked volume) of 2D picks."""
    return option_number(ctx.options, "z", expected="a slice number (voxels)")


def need_slice(ctx: ReadContext, line: int, what: str) -> float:
    """The ``z`` option, or the error explaining that 2D picks need it."""
    value = slice_option(ctx)
    if value is None:
        raise ctx.error(
            f"{what} holds 2D picks (no Z): they were picked on one slice of a tomogram. "
            "Give that slice (voxels of the picked volume) with `options` z=SLICE to import them",
            line=line,
        )
    return value


# Spellings of the two units a coordinate option or field can name.
ANGSTROM_UNITS = frozenset({"angstrom", "angstroms", "a", "å"})
VOXEL_UNITS = frozenset({"voxel", "voxels", "pixel", "pixels", "px"})


def units_are_voxels(options: Mapping[str, Any], default: str) -> bool:
    """``--option units=voxel|angstrom`` (``default`` when absent): True for voxels."""
    choices = {**dict.fromkeys(ANGSTROM_UNITS, False), **dict.fromkeys(VOXEL_UNITS, True)}
    return option_choice(options, "units", choices, default, expected="voxel or angstrom")
