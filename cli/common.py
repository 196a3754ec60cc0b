"""Shared CLI pieces: the ``--db`` option, output as tables or JSON, progress bars, errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

DbOption = Annotated[
    Path,
    typer.Option("--db", envvar="PICKS_DB", help="Provenance database file.", dir_okay=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def existing_store(db: Path) -> Path:
    """``db``, which must exist: a mistyped ``--db`` is an error, not a new, empty database."""
    from picks.core.errors import NotFound

    if not Path(db).is_file():
        raise NotFound(
            f"store {db} does not exist",
            hint="Give --db PATH (or set $PICKS_DB) to the database picks import/aggregate wrote.",
        )
    return Path(db)


def open_store(db: Path, *, must_exist: bool = False):
    """The store at ``db``; commands that only read (or need a run in it) pass ``must_exist``,
    so a mistyped ``--db`` is an error instead of a new, empty database."""
    from picks.core.store import Store

    if must_exist:
        existing_store(db)
    return Store(db)


def registry():
    from picks.plugins.manager import get_registry

    return get_registry()


def echo_json(data: Any) -> None:
    from picks.cli.flags import warnings_to_flags  # warnings name flags, as on stderr

    typer.echo(json.dumps(warnings_to_flags(data), indent=2, default=str, ensure_ascii=False))


def echo_table(rows: Sequence[dict], columns: Sequence[str], *, title: str | None = None) -> None:
    """A plain aligned table (readable in logs and terminals alike)."""
    if title:
        typer.echo(title)
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(_is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ).rstrip()

    typer.echo(line(list(columns)))
    typer.echo("  ".join("-" * w for w in widths))
    for row in cells:
        typer.echo(line(row))


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or value is None


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return (
            f"{value:.4g}"
            if abs(value) < 1e-3 or abs(value) >= 1e6
            else f"{value:.3f}".rstrip("0").rstrip(".")
        )
    return str(value)


@contextmanager
def progress(description: str, total: int | None = None):
    """Progress on stderr, in the library's protocol: yields ``advance(n=1, info=None)``.

    A rich bar on a terminal; one line per stage and a periodic n/N line where stderr is a
    file or pipe (batch logs, :func:`picks.cli.logs.log_progress`); nothing with ``-q`` or
    ``$PICKS_NO_PROGRESS``.
    """
    if os.environ.get("PICKS_NO_PROGRESS") or not logging.getLogger("picks.progress").isEnabledFor(
        logging.INFO
    ):
        yield lambda n=1, **kw: None
        return
    if not sys.stderr.isatty():
        from picks.cli.logs import log_progress

        with log_progress(description, total) as advance:
            yield advance
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None, **_: object) -> None:
            bar.update(task, advance=n, **({"info": info} if info is not None else {}))

        yield advance


def warn(message: str) -> None:
    """A warning for the user (``warning: …`` on stderr, kept with ``-q``)."""
    logging.getLogger("picks.cli").warning(message)


def parse_options(values: Iterable[str]) -> dict[str, str]:
    """``--option key=value`` pairs into a dict."""
    from picks.core.errors import PicksError

    result = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise PicksError(f"--option {value!r}: expected KEY=VALUE")
        result[key.strip()] = val.strip()
    return result
