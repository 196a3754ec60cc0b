"""Clock and the progress protocol shared by every stage (no output, no store)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

Progress = Callable[..., contextlib.AbstractContextManager[Callable[..., None]]]


def now() -> str:
    """UTC timestamp to the second, as stored in every ``*_at`` column."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _ignore(n: int = 1, *args: object, **kwargs: object) -> None:
    return None


@contextlib.contextmanager
def null_progress(description: str = "", total: int | None = None) -> Iterator[Callable[..., None]]:
    """The progress protocol without output: ``with progress(desc, total) as advance``."""
    yield _ignore
