"""Messages and progress for terminals *and* batch logs.

Everything the commands say besides their results goes through :mod:`logging` under the
``picks`` logger (``picks.cli``, ``picks.import``, ``picks.progress``…), written to stderr by
one handler that :func:`setup_logging` installs: warnings as ``warning: …``, progress and
notes as plain lines, debug lines (``-v``) as ``debug: …``. ``-q`` keeps warnings only.

Progress keeps the library's protocol (``with progress(desc, total) as advance``, then
``advance(n, info=None)``): on a terminal a rich bar; elsewhere (a SLURM log, a pipe)
:func:`log_progress` prints one line when a stage starts, then at most one line every
:data:`INTERVAL_S` seconds with the stage, n/N and the elapsed time (also while one step runs
long: a heartbeat thread ticks), and a closing line for stages that lasted that long. So a
long run shows where it is without filling the log with bar redraws.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from picks.cli.flags import flag_text

ROOT = "picks"
INTERVAL_S = 30.0

log = logging.getLogger("picks.cli")


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (looked up at each record: test runners and rich's
    live display replace it), so one handler serves every invocation."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # the library names parameters (`voxel_size`); a user of the command reads the flag
        message = flag_text(record.getMessage())
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        if record.levelno < logging.INFO:
            return f"debug: [{record.name}] {message}"
        return message


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Level of the ``picks`` loggers for this invocation: ``-q`` warnings only, default info
    (stage lines, notes), ``-v`` debug. Installs the stderr handler once per process."""
    logger = logging.getLogger(ROOT)
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 0 else logging.INFO
    logger.setLevel(level)
    # Each invocation starts from the root's level: a command may have quietened a child
    # logger for itself (``picks import`` its name-pattern lines), and tests run many commands
    # in one process.
    for name, child in logging.Logger.manager.loggerDict.items():
        if name.startswith(ROOT + ".") and isinstance(child, logging.Logger):
            child.setLevel(logging.NOTSET)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
    # Our handler is the only output: a root handler someone else configured (TensorFlow,
    # absl) would print every line a second time.
    logger.propagate = False


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: short enough for a log line, exact enough to compare."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StageLog:
    """The state of one stage in a batch log; :meth:`tick` prints when the interval is due.

    ``clock`` and ``emit`` are parameters so that a test can drive it with a fake clock.
    """

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
        interval: float = INTERVAL_S,
    ) -> None:
        self.description = description
        self.total = total
        self.clock = clock
        self.emit = emit or logging.getLogger("picks.progress").info
        self.interval = interval
        self.done = 0
        self.info: str | None = None
        self.started = clock()
        self.last_line = self.started
        self._lock = threading.Lock()

    def _count(self) -> str:
        if not self.total:
            return str(self.done)
        percent = 100.0 * self.done / self.total
        return f"{self.done}/{self.total} ({percent:.0f}%)"

    def start(self) -> None:
        what = f" ({self.total} to do)" if self.total else ""
        self.emit(f"{self.description}: started{what}")

    def advance(self, n: int = 1, info: str | None = None, **_: object) -> None:
        with self._lock:
            self.done += n
            if info is not None:
                self.info = info
        self.tick()

    def tick(self) -> None:
        """One line if ``interval`` seconds passed since the last one (thread-safe)."""
        with self._lock:
            now = self.clock()
            if now - self.last_line < self.interval:
                return
            self.last_line = now
            line = (
                f"{self.description}: {self._count()} after {format_duration(now - self.started)}"
            )
            if self.info:
                line += f", {self.info}"
        self.emit(line)

    def finish(self) -> None:
        """A closing line for a stage long enough to have had periodic lines."""
        elapsed = self.clock() - self.started
        if elapsed >= self.interval:
            self.emit(f"{self.description}: finished {self._count()} in {format_duration(elapsed)}")


@contextmanager
def log_progress(
    description: str,
    total: int | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    emit: Callable[[str], None] | None = None,
    interval: float = INTERVAL_S,
    heartbeat: bool = True,
) -> Iterator[Callable[..., None]]:
    """The progress protocol as batch-log lines (module docstring). ``heartbeat`` runs a
    daemon thread that ticks every ``interval`` so a single long step still shows up."""
    stage = StageLog(description, total, clock=clock, emit=emit, interval=interval)
    stage.start()
    stop = threading.Event()
    thread = None
    if heartbeat:

        def beat() -> None:
            while not stop.wait(interval):
                stage.tick()

        thread = threading.Thread(target=beat, name=f"picks-progress-{description}", daemon=True)
        thread.start()
    try:
        yield stage.advance
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=1.0)
    stage.finish()
