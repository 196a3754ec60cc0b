"""The provenance store: one SQLite file (sqlite-utils) holding every source, pick and decision.

Open it with :class:`Store` (``picks.db`` in the working directory by default, ``--db`` or
``$PICKS_DB`` to choose). Every entry point migrates first, so an old file is upgraded in place.
Writes that belong together run in one transaction (:meth:`Store.transaction`).

The package is light to import: :class:`Store` and its helpers live in
:mod:`picks.core.store.database` (pandas, sqlite-utils) and are loaded on first use, so the
listing commands (:mod:`picks.core.store.listing`, plain sqlite3) start without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from picks.core.store.liveness import (
    DEFAULT_BUSY_TIMEOUT_S,
    DEFAULT_STALE_AFTER_S,
    FINISHED,
    busy_retry,
    busy_timeout,
    default_path,
    is_busy,
    process_alive,
    process_start,
    stale_after,
)

if TYPE_CHECKING:
    from picks.core.store.database import PICK_COLUMNS, Store

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_STALE_AFTER_S",
    "FINISHED",
    "PICK_COLUMNS",
    "Store",
    "busy_retry",
    "busy_timeout",
    "default_path",
    "is_busy",
    "process_alive",
    "process_start",
    "stale_after",
]


def __getattr__(name: str) -> Any:
    """``Store`` (and the rest of :mod:`picks.core.store.database`) on first use (PEP 562)."""
    if name.startswith("__"):
        raise AttributeError(name)
    database = importlib.import_module("picks.core.store.database")
    try:
        return getattr(database, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
