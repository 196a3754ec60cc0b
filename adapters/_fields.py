"""Reading the fields of picker files: text, data lines and numbers, with errors naming the line.

The one place for the rules every reader follows:

* :func:`read_text` – the file as UTF-8; bytes that are not UTF-8 (a binary file given to a
  text format) are an :class:`~picks.core.errors.InputFormatError` naming the line they are on.
* :func:`data_lines` – the non-blank, non-comment lines with their 1-based number, text and
  whitespace-separated fields; :func:`head_rows` – the same for the first lines, for sniffers.
* :func:`number` / :func:`integer` – one field as a finite float / an integer. Missing-value
  tokens (:data:`NA_TOKENS`: ``<NA>`` as crYOLO and starfile write it, ``nan``, ``None``…) are
  NaN only where the caller allows a missing value; every other problem is an error naming the
  file, the line, the field and the token. :func:`numbers` does the same for a whole column
  (STAR tables) and :func:`json_number` for a JSON value (copick, CryoET Data Portal).
* :func:`is_number` / :func:`is_integer` – the same tests without errors, for sniffers.
* :func:`fmt` / :func:`integer_text` – numbers as writers put them into text files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from picks.plugins.adapter import ReadContext, head

BOM = "\ufeff"
NA_TOKENS = frozenset({"<NA>", "<na>", "NA", "nan", "NaN", "NAN", "None", "null"})


@dataclass(frozen=True)
class Line:
    """One data line: 1-based line number, the text (without newline) and its fields."""

    number: int
    text: str
    fields: list[str]


def read_text(path: Path, ctx: ReadContext) -> str:
    """The file as text; undecodable bytes are an error naming the line they are on."""
    data = Path(path).read_bytes()
    try:
        # a UTF-8 byte order mark (Windows editors, Excel's "CSV UTF-8") is not content
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ctx.error("not a text file (bytes that are not UTF-8)", line=line) from None


def data_lines(text: str, *, comment: str = "#") -> list[Line]:
    """Non-blank lines that do not start with ``comment`` (``""``: none are comments), split on
    whitespace (tabs included)."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or (comment and stripped.startswith(comment)):
            continue
        lines.append(Line(number, raw.rstrip("\r\n"), stripped.split()))
    return lines


def numbered_lines(path: Path, ctx: ReadContext) -> Iterator[tuple[int, str]]:
    """The lines of :func:`read_text` with their 1-based numbers, read line by line (the file is
    never whole in memory): the same lines and numbers as ``enumerate(text.splitlines(), 1)``,
    since each physical line is split further by ``str.splitlines`` as the whole text would be;
    bytes that are not UTF-8 raise :func:`read_text`'s error (naming their line) when they are
    reached."""
    number = 0
    try:
        # newline=None: CRLF and CR end lines, as splitlines ends them; utf-8-sig: a byte
        # order mark is not content
        with open(path, encoding="utf-8-sig", newline=None) as handle:
            for physical in handle:
                for raw in physical.splitlines():
                    number += 1
                    yield number, raw
    except UnicodeDecodeError:
        read_text(path, ctx)  # raises the error naming the line of the bad bytes
        raise


def stream_data_lines(path: Path, ctx: ReadContext, *, comment: str = "#") -> Iterator[Line]:
    """:func:`data_lines` of :func:`read_text`, read line by line (:func:`numbered_lines`): the
    same lines, numbers and fields."""
    for number, raw in numbered_lines(path, ctx):
        stripped = raw.strip()
        if not stripped or (comment and stripped.startswith(comment)):
            continue
        yield Line(number, raw.rstrip("\r\n"), stripped.split())


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


def number(token: str, ctx: ReadContext, line: int, what: str, *, allow_na: bool = False) -> float:
    """``token`` as a finite float (or NaN for :data:`NA_TOKENS` when ``allow_na``)."""
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


def numbers(
    tokens: Sequence[str],
    lines: Sequence[int],
    ctx: ReadContext,
    what: str,
    *,
    allow_na: bool = False,
) -> np.ndarray:
    """A column of tokens as floats, with :func:`number`'s rules and errors (``lines[i]`` is the
    line of ``tokens[i]``). Vectorised: only tokens pandas cannot read go through
    :func:`number`, which raises or returns the value."""
    column = pd.Series(list(tokens), dtype=object)
    values = np.array(pd.to_numeric(column, errors="coerce"), dtype=float)  # a writable copy
    unread = ~np.isfinite(values)
    if allow_na:
        unread &= ~column.isin(NA_TOKENS).to_numpy()  # missing values stay NaN
    for row in np.flatnonzero(unread):
        values[row] = number(tokens[row], ctx, lines[row], what, allow_na=allow_na)
    return values


def integer(token: str, ctx: ReadContext, line: int, what: str) -> int:
    """``token`` as an integer; ``3.0`` is accepted (numpy writes integral floats that way)."""
    value = number(token, ctx, line, what)
    if value != int(value):
        raise ctx.error(f"{what} = {token!r} is not an integer", line=line)
    return int(value)


def json_number(
    value: object,
    ctx: ReadContext,
    what: str,
    *,
    line: int | None = None,
    record: str | None = None,
    allow_missing: bool = False,
) -> float:
    """A JSON value as a finite float (``true``/``false`` and strings are not numbers);
    ``null`` and ``NaN`` are NaN only when ``allow_missing``."""
    if allow_missing and (value is None or (isinstance(value, float) and math.isnan(value))):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(f"{what} = {value!r} is not a finite number", line=line, record=record)
    try:
        result = float(value)  # a 400-digit JSON integer overflows here
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
        raise ctx.error(f"{what} = {shown} is not a finite number", line=line, record=record)
    return result


def parse_json(text: str, ctx: ReadContext, *, line: int | None = None) -> object:
    """``text`` as JSON; malformed or absurdly nested JSON (Python's parser recurses: 100,000
    open brackets exhaust the stack) is an error naming the line (``line`` for one line of
    an NDJSON file, else the line in ``text``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = exc.lineno if line is None else line
        raise ctx.error(f"not valid JSON ({exc.msg}, column {exc.colno})", line=where) from None
    except RecursionError:
        raise ctx.error("JSON nested too deeply to read", line=line or 1) from None


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


def fmt(value: float) -> str:
    """A coordinate for a text file: 6 decimals (1e-6 voxel), trailing zeros kept short."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def integer_text(value: object) -> str:
    """An id or class number as text: ``7.0`` and ``"2.000000"`` (programs that write every
    number as a float) become ``"7"`` and ``"2"``; anything else is kept as written."""
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isfinite(as_float) and as_float == int(as_float):
        return str(int(as_float))
    return str(value)
