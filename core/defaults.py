"""Defaults shared by the library and the command line, in a module light enough for
``picks --help`` to import."""

from __future__ import annotations

DEFAULT_DB = "picks.db"  # the provenance store, in the working directory ($PICKS_DB, --db)
