"""Run one function per tomogram, here or on a Dask cluster (``picks[dask]``).

:class:`Executor` is the one abstraction the stages that fan out per tomogram use:
``map(fn, items, label=..., shared=...)`` calls ``fn(payload, **shared)`` for each
``(tomogram, payload)`` of ``items`` and returns the results **in the order of ``items``**,
whatever order the workers finish in, so the driver concatenates them deterministically.

* :class:`SerialExecutor` calls ``fn`` in this process, in order (no Dask import).
* :class:`DaskExecutor` sends each payload to a worker (``client.scatter``: data go to the
  workers directly, not through the scheduler's task graph), passes the small ``shared``
  objects (radii, options, a model's path and card) inside each task, and reports each
  finished task to the driver's progress (``as_completed``). A failed task does not stop the
  others: every task runs to its end, the results that finished are kept, and one
  :class:`TomogramError` names every failed tomogram with its error. A task cancelled because
  the worker holding its input (or its finished result) died is submitted again
  (``LOST_RESUBMITS`` times) before it counts as failed.

**Resuming.** With ``cache_dir``, each finished result is pickled there by the driver under a
key that is the SHA-256 of (picks version, stage label, function, payload, shared objects):
the same work on the same data. A re-run after a failure submits only the items with no cached
result. The driver alone writes and reads the cache (workers never touch it nor the store);
:func:`aggregate` empties it once a run has finished.

Workers never open the SQLite store: they return DataFrames and arrays, and the driver writes
them in bulk (docs/dask.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from picks.core.errors import PicksError
from picks.core.progress import Progress, null_progress

log = logging.getLogger("picks.parallel")

Item = tuple[str, Any]  # (tomogram name, payload)

_SCHEDULER = re.compile(r"^(local(:(?P<n>[0-9]+))?|(tcp|tls)://[^\s:/]+:[0-9]+)$")
PARTIAL_DIR = ".picks-partial"  # under --out: per-tomogram results of an unfinished run
INSTALL_HINT = "Install the Dask extra: pip install 'picks[dask]'."
# A task cancelled because the worker holding its input died is submitted again this many
# times (its input scattered afresh) before it counts as failed.
LOST_RESUBMITS = 2
# Tries of a scatter that fails because a worker left during it (a SLURM job cancelled or out
# of walltime: the connection to it closes); each try sends to the workers still there.
SCATTER_TRIES = 3
LOST = "the worker holding its input died each time (killed, or out of memory?)"


class TomogramError(PicksError):
    """One or more per-tomogram tasks failed; the message names each tomogram and its error."""


class Executor(Protocol):
    """Maps a function over per-tomogram items; results come back in the items' order."""

    workers: int

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Item],
        *,
        label: str,
        shared: Mapping[str, Any] | None = None,
    ) -> list[Any]: ...


class SerialExecutor:
    """This process, in order: today's behaviour and cost."""

    workers = 1

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress or null_progress

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Item],
        *,
        label: str,
        shared: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        results = []
        with self.progress(label, total=len(items)) as advance:
            for name, payload in items:
                try:
                    results.append(fn(payload, **dict(shared or {})))
                except PicksError:
                    raise
                except Exception as exc:
                    raise TomogramError(
                        f"tomogram {name!r}: {label} failed: {_describe(exc)}"
                    ) from exc
                advance(1)
        return results


def parse_scheduler(scheduler: str | None, workers: int | None) -> tuple[str, int] | None:
    """``(address, n_workers)`` for a Dask run, or None for the single-process path.

    ``scheduler``: ``local`` (a LocalCluster of ``workers`` processes, default 2), ``local:N``
    or ``tcp://host:port`` (an existing cluster; ``workers`` is then ignored). Without a
    scheduler, ``workers`` > 1 means ``local:workers``.
    """
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise PicksError(f"`workers` {workers!r}: expected a whole number ≥ 1")
    if scheduler is None or scheduler == "":
        if workers is None or workers == 1:
            return None
        return "local", workers
    text = str(scheduler).strip()
    match = _SCHEDULER.match(text)
    if not match:
        raise PicksError(
            f"`scheduler` {scheduler!r}: expected local, local:N or tcp://HOST:PORT",
            hint="e.g. local:8 for 8 worker processes here, tcp://head-node:8786 for a cluster.",
        )
    if text.startswith("local"):
        n = int(match.group("n")) if match.group("n") else (workers or 2)
        if n < 1:
            raise PicksError(f"`scheduler` {scheduler!r}: at least 1 worker")
        if match.group("n") and workers is not None and workers != n:
            raise PicksError(
                f"`scheduler` {scheduler!r} and `workers` {workers} disagree",
                hint="Give one of them.",
            )
        return "local", n
    return text, 0


@contextlib.contextmanager
def open_executor(
    scheduler: str | None,
    workers: int | None = None,
    *,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
) -> Iterator[Executor | None]:
    """The executor for ``scheduler``/``workers`` (see :func:`parse_scheduler`), or None for
    the single-process path (which then imports nothing of Dask). A LocalCluster started
    here is closed on leaving."""
    parsed = parse_scheduler(scheduler, workers)
    if parsed is None:
        yield None
        return
    address, n = parsed
    try:
        import distributed
    except ImportError:
        raise PicksError(
            f"`scheduler` {address}: Dask is not installed", hint=INSTALL_HINT
        ) from None
    with contextlib.ExitStack() as stack:
        if address == "local":
            # Dask's own chatter (start-up, a task's traceback) would drown the run's messages:
            # a failed task is reported once, by map(), naming its tomogram.
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                    local_directory=tempfile.gettempdir(),
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(address, timeout="30s"))
            except OSError as exc:
                raise PicksError(
                    f"`scheduler` {address}: cannot connect ({exc})",
                    hint="Is `dask scheduler` running there, and the port reachable?",
                ) from None
        n_workers = len(client.scheduler_info().get("workers", {})) or n
        log.info("dask: %s, %d worker(s)", address, n_workers)
        yield DaskExecutor(client, progress=progress, cache_dir=cache_dir, workers=n_workers)


class DaskExecutor:
    """Per-tomogram tasks on a ``distributed.Client`` (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        progress: Progress | None = None,
        cache_dir: str | Path | None = None,
        workers: int = 0,
    ) -> None:
        self.client = client
        self.progress = progress or null_progress
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = workers
        self.reused = 0  # results taken from the cache, for tests and the log

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Item],
        *,
        label: str,
        shared: Mapping[str, Any] | None = None,
    ) -> list[Any]:

        shared = dict(shared or {})
        shared_digest = _digest(shared) if self.cache_dir is not None else b""
        results: list[Any] = [None] * len(items)
        todo: list[int] = []
        keys: list[str | None] = [None] * len(items)
        for i, (_, payload) in enumerate(items):
            if self.cache_dir is not None:
                keys[i] = _cache_key(label, fn, payload, shared_digest)
                cached = self._load(keys[i])
                if cached is not None:
                    results[i] = cached[0]
                    self.reused += 1
                    continue
            todo.append(i)
        failures: list[tuple[str, str]] = []
        with self.progress(label, total=len(items)) as advance:
            if len(items) > len(todo):
                log.info(
                    "%s: %d of %d tomogram(s) reused", label, len(items) - len(todo), len(items)
                )
                advance(len(items) - len(todo))
            for attempt in range(1 + LOST_RESUBMITS):
                if not todo:
                    break
                if attempt:
                    log.warning(
                        "%s: the worker holding the input or result of %s died; submitting again",
                        label,
                        ", ".join(repr(items[i][0]) for i in todo),
                    )
                todo = self._round(fn, items, todo, shared, label, results, keys, failures, advance)
            for i in todo:
                failures.append((items[i][0], f"cancelled {1 + LOST_RESUBMITS} times: {LOST}"))
                advance(1)
        if failures:
            failures.sort()
            done = len(items) - len(failures)
            raise TomogramError(
                f"{label} failed for {len(failures)} of {len(items)} tomogram(s): "
                + "; ".join(f"tomogram {name!r}: {error}" for name, error in failures),
                hint=(
                    f"The {done} other result(s) are kept under {self.cache_dir}: a re-run "
                    "with the same inputs redoes only the failed tomogram(s)."
                    if self.cache_dir is not None
                    else None
                ),
            )
        return results

    def _round(
        self,
        fn: Callable[..., Any],
        items: Sequence[Item],
        todo: list[int],
        shared: dict[str, Any],
        label: str,
        results: list[Any],
        keys: list[str | None],
        failures: list[tuple[str, str]],
        advance: Callable[[int], None],
    ) -> list[int]:
        """Submit the items ``todo`` and collect them as they finish (results, cache, failures);
        returns the items whose task was cancelled, to be submitted again.

        A scattered input lives on one worker only and has no recipe: when that worker dies,
        Dask cannot retry the task elsewhere and cancels it (and every other task whose input
        was there). Submitting it again, with its input scattered afresh, is the retry. So too
        for a task that finished on a worker that died before its result was fetched (a SLURM
        job cancelled or out of walltime): the result is gone and fetching it raises
        CancelledError."""
        from concurrent.futures import CancelledError

        from distributed import as_completed

        data = self._scatter([items[i][1] for i in todo], label)
        # ``shared`` travels inside each task, not scattered with broadcast=True: a worker
        # that dies during the broadcast makes the scheduler's replicate() loop for ever
        # (dask/distributed#5704; seen on SLURM when a worker's job was cancelled), and a
        # single scattered copy would take every pending task down with its worker.
        futures = self.client.map(
            fn, data, **shared, key=[f"{label}-{items[i][0]}-{_token()}" for i in todo]
        )
        slot = {f.key: i for f, i in zip(futures, todo, strict=True)}
        lost = []
        for future in as_completed(futures):
            i = slot[future.key]
            if future.status == "cancelled":  # its worker, and the input sent to it, are gone
                lost.append(i)
                future.release()
                continue
            if future.status == "error":
                failures.append((items[i][0], _describe(future.exception())))
            elif future.status != "finished":
                failures.append((items[i][0], f"task {future.status}"))
            else:
                try:
                    results[i] = future.result()
                except (CancelledError, OSError):  # finished, but its worker died with the result
                    lost.append(i)
                    future.release()
                    continue
                if keys[i] is not None:
                    self._save(keys[i], results[i])
            advance(1)
            future.release()
        return sorted(lost)

    def _scatter(self, values: list[Any], label: str) -> list[Any]:
        """``client.scatter(values)``, sent again when a worker leaves during it: the
        connection to it closes (CommClosedError) or no worker is left for a while
        (TimeoutError), both OSError. The last failure is a PicksError naming the stage."""
        for attempt in range(1, SCATTER_TRIES + 1):
            try:
                # hash=False: equal payloads of two calls must not share a key (a released one
                # would cancel the other call's task, "lost dependencies").
                return self.client.scatter(values, hash=False)
            except OSError as exc:
                problem = _describe(exc)
                if attempt == SCATTER_TRIES:
                    raise PicksError(
                        f"{label}: could not send the tomograms' inputs to the Dask workers "
                        f"({SCATTER_TRIES} tries; {problem})",
                        hint="Are the workers still running (squeue, or the Dask dashboard)?",
                    ) from None
                log.warning(
                    "%s: a worker left while the inputs were sent (%s); sending again",
                    label,
                    problem,
                )
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def _load(self, key: str) -> tuple[Any] | None:
        path = self.cache_dir / f"{key}.pkl"
        if not path.is_file():
            return None
        try:
            with path.open("rb") as handle:
                return (pickle.load(handle),)
        except Exception:  # a truncated file from a killed driver: just redo that item
            return None

    def _save(self, key: str, value: Any) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".", suffix=".part")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.cache_dir / f"{key}.pkl")


def partial_dir(out: str | Path) -> Path:
    """Where a Dask run keeps its per-tomogram results until the run has finished."""
    return Path(out) / PARTIAL_DIR


def clear_cache(cache_dir: str | Path) -> None:
    """Remove a finished run's per-tomogram results."""
    shutil.rmtree(cache_dir, ignore_errors=True)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = type(exc).__name__
    # A worker process that died (killed, out of memory) surfaces as KilledWorker.
    if kind == "KilledWorker":
        return f"the worker running it died ({text or kind})"
    if isinstance(exc, PicksError):
        return text
    return f"{kind}: {text}" if text else kind


def _digest(value: Any) -> bytes:
    return hashlib.sha256(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def _cache_key(label: str, fn: Callable[..., Any], payload: Any, shared_digest: bytes) -> str:
    from picks import __version__

    h = hashlib.sha256()
    for part in (__version__, label, getattr(fn, "__module__", ""), fn.__qualname__):
        h.update(str(part).encode() + b"\0")
    h.update(shared_digest)
    h.update(_digest(payload))
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', label)}-{h.hexdigest()[:32]}"


def _token() -> str:
    return os.urandom(6).hex()
