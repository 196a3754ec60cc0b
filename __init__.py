"""picks: one validated set of cryo-ET particle picks from many pickers, with provenance.

The repository root is installed as the ``picks`` package (see pyproject.toml), so
``core/`` is ``picks.core``, ``adapters/`` is ``picks.adapters`` and so on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from picks.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # ``from picks import hookimpl`` loads pluggy on first use only: ``picks --help`` and
    # ``picks --version`` never need it (about 35 ms of start-up).
    if name == "hookimpl":
        from picks.plugins.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'picks' has no attribute {name!r}")
