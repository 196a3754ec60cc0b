"""picks: one validated set of cryo-ET particle picks from many pickers, with provenance.

The repository root is installed as the ``picks`` package (see pyproject.toml), so
``core/`` is ``picks.core``, ``adapters/`` is ``picks.adapters`` and so on.
"""

from picks.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
