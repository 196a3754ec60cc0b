"""The store's stdlib-only half: where the store is, how long to wait for its lock, and which
``running`` runs are dead. Light (no pandas, no sqlite-utils), so the listing commands
(:mod:`picks.core.store.listing`) start fast; :class:`picks.core.store.Store` uses the same."""

from __future__ import annotations

import math
import os
import random
import socket
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from picks.core.defaults import DEFAULT_DB
from picks.core.errors import StoreBusy
from picks.core.progress import now

# How long a command waits for another one's write lock before "store busy" (seconds): SQLite's
# own busy handler waits that long for every statement (sqlite3's default, 5 s, made small
# imports die during a large one), and busy_retry retries with backoff until the same deadline
# where SQLite returns BUSY at once (a read snapshot that went stale).
DEFAULT_BUSY_TIMEOUT_S = 300.0
# A run of another host is taken as dead when its process has not written for this long (a
# run of this host is checked directly: its pid). Long enough for any one stage of a run.
DEFAULT_STALE_AFTER_S = 24 * 3600.0
FINISHED = "ok"  # the only status whose results count as a finished run's


def default_path() -> Path:
    return Path(os.environ.get("PICKS_DB", DEFAULT_DB))


def busy_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("PICKS_BUSY_TIMEOUT", DEFAULT_BUSY_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT_S


def is_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database is busy" (another connection writes)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def busy_retry(action, *, retry_on=is_busy):
    """Run ``action()``; while it fails because another command holds the store, retry with
    exponential backoff (and jitter, so waiting commands do not retry in lockstep) until
    :func:`busy_timeout`, then raise :class:`StoreBusy`. ``action`` must be atomic (one
    transaction), so a retry never repeats half of it."""
    deadline = time.monotonic() + busy_timeout()
    delay = 0.02
    while True:
        try:
            return action()
        except (sqlite3.OperationalError, sqlite3.IntegrityError) as exc:
            if not retry_on(exc):
                raise
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"store busy: another picks command holds it ({exc}; waited "
                    f"{busy_timeout():g} s)"
                ) from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


def process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux ``/proc``), or None when unknown: with
    the pid it identifies a process, since pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields after its last ")"
    return stat.rsplit(")", 1)[-1].split()[19]


def process_alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` runs on this host and is the one that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:  # reaped meanwhile; or no /proc (not Linux): trust the pid
        return not Path("/proc").is_dir()
    if fields[0] in ("Z", "X"):  # a zombie: dead, not yet reaped by its parent
        return False
    return started is None or fields[19] == started


def stale_after() -> float:
    try:
        return float(os.environ.get("PICKS_STALE_AFTER", DEFAULT_STALE_AFTER_S))
    except ValueError:
        return DEFAULT_STALE_AFTER_S


def find_stale(conn: sqlite3.Connection, live: set[int]) -> list[tuple[int, str]]:
    """``(run id, why)`` of the ``running`` runs whose process is gone (see
    :meth:`picks.core.store.Store.mark_stale`); runs in ``live`` (this process's) are alive."""
    host = socket.gethostname()
    limit = stale_after()
    stale: list[tuple[int, str]] = []
    rows = conn.execute(
        "SELECT id, pid, host, process_start, heartbeat_at, started_at FROM runs "
        "WHERE status = 'running'"
    ).fetchall()
    for run_id, pid, run_host, started, beat, started_at in rows:
        if run_id in live:
            continue
        if pid is not None and run_host == host:
            if not process_alive(int(pid), started):
                stale.append((run_id, f"process {pid} on {host} ended without finishing"))
            continue
        last = beat or started_at
        try:
            age = (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()
        except (TypeError, ValueError):
            age = math.inf
        if age > limit:
            where = f"process {pid} on {run_host}" if pid is not None else "its process"
            stale.append((run_id, f"{where} has not written for {age / 3600:.1f} h"))
    return stale


def stale_updates(stale: list[tuple[int, str]]) -> tuple[str, list[tuple]]:
    """The statement and rows that mark ``stale`` runs (run in the caller's transaction)."""
    return (
        "UPDATE runs SET status = 'stale', ended_at = ?, message = ? "
        "WHERE id = ? AND status = 'running'",
        [(now(), f"stale: {why} (killed?); its results are incomplete", i) for i, why in stale],
    )
