"""A small STAR reader that keeps line numbers (crYOLO CBOX and crYOLO's STAR output).

Only what those files use: ``data_NAME`` blocks, ``_key value`` pairs, and ``loop_`` tables
whose column names may carry a ``#N`` index comment. Tokens are split on whitespace; single or
double quotes group a token with spaces. ``<NA>`` is kept as a token for the caller to treat
as missing. A row whose field count differs from the loop's column count (a truncated or
hand-edited file) is an error naming the line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from picks.adapters._columns import Line
from picks.plugins.adapter import ReadContext


@dataclass
class Loop:
    columns: list[str]
    header_line: int
    rows: list[Line] = field(default_factory=list)


@dataclass
class Block:
    name: str
    line: int
    pairs: dict[str, tuple[str, int]] = field(default_factory=dict)
    loops: list[Loop] = field(default_factory=list)


_BLOCK = re.compile(r"^data_(\S*)\s*$")


def _split(text: str, ctx: ReadContext, number: int) -> list[str]:
    if "'" not in text and '"' not in text:
        return text.split()
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise ctx.error(f"unbalanced quotes ({exc})", line=number) from None


def parse(text: str, ctx: ReadContext) -> dict[str, Block]:
    """Parse STAR text into blocks keyed by name (``""`` for a bare ``data_``)."""
    blocks: dict[str, Block] = {}
    block: Block | None = None
    loop: Loop | None = None
    in_header = False
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _BLOCK.match(stripped)
        if match:
            block = Block(match.group(1), number)
            if block.name in blocks:
                raise ctx.error(f"block data_{block.name} appears twice", line=number)
            blocks[block.name] = block
            loop, in_header = None, False
            continue
        if block is None:
            raise ctx.error(f"expected a 'data_' block before {stripped[:40]!r}", line=number)
        if stripped == "loop_":
            loop = Loop([], number)
            block.loops.append(loop)
            in_header = True
            continue
        if stripped.startswith("_"):
            if loop is not None and in_header:
                loop.columns.append(stripped.split()[0][1:])
                continue
            if loop is not None and loop.rows:
                loop = None  # a key-value pair after a loop ends it
            parts = _split(stripped, ctx, number)
            if len(parts) < 2:
                raise ctx.error(f"key {parts[0]!r} has no value", line=number)
            block.pairs[parts[0][1:]] = (" ".join(parts[1:]), number)
            loop = None
            continue
        if loop is None or not loop.columns:
            raise ctx.error(f"data outside a loop: {stripped[:60]!r}", line=number)
        in_header = False
        fields = _split(stripped, ctx, number)
        if len(fields) != len(loop.columns):
            raise ctx.error(
                f"expected {len(loop.columns)} fields ({' '.join(loop.columns)}), "
                f"found {len(fields)}",
                line=number,
            )
        loop.rows.append(Line(number, raw.rstrip("\r\n"), fields))
    return blocks


def loop_with(
    blocks: dict[str, Block], column: str, prefer: tuple[str, ...] = ()
) -> tuple[Block, Loop] | None:
    """The first loop that has ``column``, looking in the ``prefer`` blocks first."""
    ordered = [blocks[n] for n in prefer if n in blocks] + [
        b for n, b in blocks.items() if n not in prefer
    ]
    for block in ordered:
        for loop in block.loops:
            if column in loop.columns:
                return block, loop
    return None


def header_columns(text: str) -> list[list[str]]:
    """Column names of each loop in ``text`` (a file head), for sniffing without errors."""
    loops: list[list[str]] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped == "loop_":
            current = []
            loops.append(current)
        elif stripped.startswith("_") and current is not None:
            current.append(stripped.split()[0][1:])
        elif stripped and not stripped.startswith("#"):
            current = None
    return loops
