"""The aggregate's HTML report, drawn in a forked child while the parent writes the pick files.

The report is the last ≈ 3–4 s of a million-pick run (its figures) and needs nothing the
pick files add, so :func:`start_report` reads what it needs from the store (in the parent:
the child never touches the SQLite connection), forks, and the child builds the page and its
images in ``OUT/.report-staging``. :func:`finish_report`, once the run is recorded as
finished, moves them into place (:func:`picks.report.build.publish_report`). The page is the
one :func:`picks.report.write_report` writes after the run: the run row it shows is the
finished run's (status ``ok``: a run that fails never gets here, and its staged report is
dropped). When anything goes wrong in the child, or fork is not available
(workflows/forked.py), the report is written here after the run, as before.
"""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path

import pandas as pd

from picks.core.store import Store
from picks.workflows.forked import Forked, ForkFailed, fork_available

STAGING = ".report-staging"


class ReportJob:
    """A report being built in a child process into ``staging``."""

    def __init__(self, forked: Forked, staging: Path) -> None:
        self.forked, self.staging = forked, staging
        # a run that fails before finish_report: the child is stopped, its files removed
        self._cleanup = weakref.finalize(self, _discard, forked, staging)


def _discard(forked: Forked, staging: Path) -> None:
    forked.cancel()
    shutil.rmtree(staging, ignore_errors=True)


def start_report(store: Store, run_id: int, out: Path, final: pd.DataFrame) -> ReportJob | None:
    """Fork the report's child (None where fork is not available: then it is written later).
    ``final``: the run's decisions as the store holds them; the store must already hold the
    run's parameters, estimates and models."""
    if not fork_available():  # (nor after a CNN run: TensorFlow is loaded)
        return None
    from picks.report.build import build_report_from_data
    from picks.report.data import RunData

    staging = Path(out) / STAGING
    if staging.exists():
        shutil.rmtree(staging)  # left by a run that was killed
    staging.mkdir(parents=True)
    data = RunData.load(store, int(run_id), final)
    # the run row as finish_report will find it: finished, and well (else nothing is shown)
    data.run = {**data.run, "status": "ok"}
    forked = Forked(lambda: str(build_report_from_data(data, staging).path))
    if forked.pid is None:
        shutil.rmtree(staging)
        return None
    return ReportJob(forked, staging)


def finish_report(
    job: ReportJob | None, store: Store, run_id: int, out: Path, final: pd.DataFrame
) -> Path:
    """The report's page in ``out``: the child's, published, or (no job, or the child
    failed) written here and now."""
    from picks.report import write_report
    from picks.report.build import publish_report

    if job is not None:
        job._cleanup.detach()
        try:
            job.forked.result()
            if store.run_status(run_id) == "ok":
                return publish_report(job.staging, out)
        except ForkFailed:
            pass
        finally:
            shutil.rmtree(job.staging, ignore_errors=True)
    return write_report(store, run_id, out, consensus=final)


__all__ = ["STAGING", "ReportJob", "finish_report", "fork_available", "start_report"]
