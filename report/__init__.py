"""``picks report``: a self-contained HTML report (one page and a folder of PNGs) that lets a
user check a run's picks without ground truth; see ``docs/report.md``.

:func:`write_report` is the entry point (matplotlib is imported with it: keep this import
inside command bodies, so that ``picks --help`` stays fast).
"""

from __future__ import annotations


def write_report(store, run_id: int, out_dir, *, truth=None, consensus=None):
    """See :func:`picks.report.build.write_report` (imported on first use)."""
    from picks.report.build import write_report as _write

    return _write(store, run_id, out_dir, truth=truth, consensus=consensus)


__all__ = ["write_report"]
