"""A function run in a forked child process while the parent goes on (the second core).

Used where a run has independent work left and the parent has other work to do meanwhile
(the HTML report's figures while the pick files are written: workflows/aggregate.py). The
child is a copy of the parent (fork: no data is pickled on the way in); only the function's
return value comes back, pickled through a pipe.

Rules that keep it safe:

* it is an optimisation, never a requirement: :meth:`Forked.result` raises
  :class:`ForkFailed` for anything that went wrong in the child (an exception, a crash, a
  kill, no fork on this platform) and the caller then does the work itself, the same way;
* the child does not touch what it shares with the parent's other threads or its
  connections: it gets fresh ``stdout``/``stderr`` (a lock another thread held at the fork
  would never be released in the child), must not use the parent's SQLite connection
  (SQLite forbids carrying one across a fork) and leaves by ``os._exit``, so no ``atexit``
  handler, buffered output or finaliser of the parent runs twice;
* an abandoned child (the parent failed before asking for the result) is killed and reaped
  when its :class:`Forked` is collected (:func:`weakref.finalize`).

``PICKS_NO_FORK=1`` turns it off, and so does TensorFlow loaded in the process (a CNN run
after its training started: the runtime's threads do not survive a fork), a process allowed
only one core or a machine without a core to spare (1-minute load average, which counts this
process, at or above the usable cores + 0.5): the work is then done in the parent, at the
point where the result is asked for.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import weakref
from collections.abc import Callable
from typing import Any


class ForkFailed(Exception):
    """The child did not return a result (the message says why); do the work here."""


def fork_available() -> bool:
    """Fork exists, is not turned off, this process may use two cores or more and one of them
    is free (else a child only takes turns with the parent: a job given one CPU, a busy
    machine)."""
    if not hasattr(os, "fork") or os.environ.get("PICKS_NO_FORK", "") not in ("", "0"):
        return False
    if "tensorflow" in sys.modules:  # its runtime's threads and devices do not survive a fork
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call (macOS): the machine's count
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    # A core to spare: on a machine already busy, a child only competes with the parent
    # (measured: 1 M picks at load 4.4 on 2 cores, 51.8 s forked against 40.3 s serial; at
    # load 2.6 forked was the faster). The load counts this process (≈ 1) and, decaying over
    # a minute, its earlier children: hence the cores plus a half, not the cores minus one.
    return cores >= 2 and busy < cores + 0.5


class Forked:
    """``fn()`` started in a child process now; :meth:`result` waits for its value."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.pid: int | None = None
        self._done = False
        if not fork_available():
            return
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _child(fn, write_end)
        os.close(write_end)
        self.pid = pid
        self._read_end = read_end
        self._finalizer = weakref.finalize(self, _reap, pid, read_end)

    def result(self) -> Any:
        """The child's return value; :class:`ForkFailed` if there is none."""
        if self.pid is None:
            raise ForkFailed("fork is not available here (or PICKS_NO_FORK is set)")
        if self._done:
            raise ForkFailed("the result was already taken")
        self._done = True
        self._finalizer.detach()
        chunks = []
        try:
            with os.fdopen(self._read_end, "rb") as pipe:  # until the child closes its end
                while block := pipe.read(1 << 20):
                    chunks.append(block)
        finally:
            _, status = os.waitpid(self.pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise ForkFailed(f"the child process ended with status {status}")
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception as exc:  # nothing (or half) written: the child died writing it
            raise ForkFailed(f"no result from the child process ({exc})") from None
        if kind != "ok":
            raise ForkFailed(value)
        return value

    def cancel(self) -> None:
        """Kill the child (if it still runs) and reap it; idempotent."""
        if self.pid is not None and not self._done:
            self._done = True
            self._finalizer()


def _child(fn: Callable[[], Any], write_end: int) -> None:
    code = 0
    try:
        devnull = open(os.devnull, "w")  # noqa: SIM115 (the process ends with os._exit)
        sys.stdout = sys.stderr = devnull
        try:
            payload = ("ok", fn())
        except BaseException as exc:  # reported to the parent, which redoes the work
            payload = ("error", f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _reap(pid: int, read_end: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.close(read_end)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)
