"""The provenance store (:class:`Store`): one SQLite file (sqlite-utils) holding every source, pick and decision.

Open it with :class:`Store` (``picks.db`` in the working directory by default, ``--db`` or
``$PICKS_DB`` to choose). Every entry point migrates first, so an old file is upgraded in place.
Writes that belong together run in one transaction (:meth:`Store.transaction`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from picks.core import picks as canonical
from picks.core.errors import NotFound
from picks.core.progress import now
from picks.core.store.bulk import insert_rows
from picks.core.store.consensus import ConsensusTables
from picks.core.store.frames import read_frame
from picks.core.store.liveness import (  # noqa: F401  (the store's public names)
    DEFAULT_BUSY_TIMEOUT_S,
    DEFAULT_STALE_AFTER_S,
    FINISHED,
    busy_retry,
    busy_timeout,
    default_path,
    find_stale,
    is_busy,
    process_alive,
    process_start,
    stale_after,
    stale_updates,
)
from picks.core.store.migrations import migrate, source_identity
from picks.core.tomograms import Tomogram, TomogramSet

PICK_COLUMNS = ["source_id", *canonical.COLUMNS]
# SQLite page cache during bulk writes (KiB): the picks indexes of a multi-million-pick
# import stay in memory instead of being evicted and re-read page by page.
BULK_CACHE_KIB = 256 * 1024


def _json(value: Any) -> str | None:
    """A JSON column's text (``None`` and text as they are)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _pick_values(series: pd.Series, column: str) -> tuple[list[Any], bool]:
    """A picks column as the Python values ``sqlite3`` binds (NaN: ``None``), and whether every
    row has the same one (text, ``None`` or a float of the same bits): then only that one is
    returned, to be bound once. ``record`` is never shared (so a statement binds per row)."""
    dtype = canonical.COLUMNS[column]
    if dtype == "float64":
        array = series.to_numpy(dtype=float)
        missing = np.isnan(array)
        if missing.all():
            return [None], True
        bits = array.view(np.int64)
        if not missing.any() and (bits == bits[0]).all():
            return [float(array[0])], True
        values = array.tolist()
        for row in np.flatnonzero(missing).tolist():
            values[row] = None
        return values, False
    if column == "record":
        return series.to_numpy(dtype=np.int64).tolist(), False
    if column in ("tomogram", "particle") and isinstance(series.dtype, pd.StringDtype):
        # pandas text of a few names: each made a Python str once, not once a row
        codes, names = pd.factorize(series, use_na_sentinel=False)
        values = np.asarray(names.to_numpy(dtype=object), dtype=object)[codes].tolist()
    else:
        values = series.to_numpy(dtype=object).tolist()
    first, last = values[0], values[-1]
    if (
        (first is None or type(first) is str)
        and type(last) is type(first)
        and last == first  # (quick tests first)
        and set(map(type, values)) == {type(first)}
        and values.count(first) == len(values)
    ):
        return [first], True
    return values, False


class _Found(Exception):
    """Raised inside :meth:`Store.stream_source`'s transaction to roll it back: the source
    is stored already."""

    def __init__(self, row: dict) -> None:
        super().__init__(row.get("id"))
        self.row = row


def _has_pending(db: Database) -> bool:
    from picks.core.store.migrations import migrations

    return bool(migrations.pending(db))


def _migration_race(exc: BaseException) -> bool:
    """Busy, or another command created the same table first (then the retry sees it)."""
    return is_busy(exc) or "already exists" in str(exc) or isinstance(exc, sqlite3.IntegrityError)


class Store(ConsensusTables):
    """The provenance database. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path | None = None, *, memory: bool = False) -> None:
        self._live_runs: set[int] = set()  # runs this Store started and has not finished
        if memory:
            self.db = Database(memory=True)
            self.path = None
        else:
            self.path = Path(path) if path else default_path()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout())
            self.db = Database(conn)
            busy_retry(self.db.enable_wal)
        self.db.execute("PRAGMA foreign_keys = ON")
        busy_retry(self._migrate, retry_on=_migration_race)
        if self.path is not None:
            self.mark_stale()

    def _migrate(self) -> None:
        """Apply pending migrations under the write lock: two commands opening a new store
        at once must not both create its tables."""
        if not self.db.conn.in_transaction and _has_pending(self.db):
            with self.transaction():
                migrate(self.db)
        else:
            migrate(self.db)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """All writes inside commit together or not at all. The write lock is taken first
        (BEGIN IMMEDIATE, retried while another command holds it: :func:`busy_retry`)."""
        conn = self.db.conn
        busy_retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.db
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            if self._live_runs:
                # every write of a run's process is a sign of life (see mark_stale)
                conn.execute(
                    f"UPDATE runs SET heartbeat_at = ? WHERE id IN "
                    f"({','.join('?' * len(self._live_runs))})",
                    [now(), *sorted(self._live_runs)],
                )
            conn.execute("COMMIT")

    # -- tomograms ---------------------------------------------------------------------------
    def add_tomograms(self, tomograms: Iterable[Tomogram]) -> None:
        rows = [dict(t.to_row(), registered_at=now()) for t in tomograms]
        if rows:
            with self.transaction():
                self.db["tomograms"].upsert_all(rows, pk="name")

    def tomograms(self) -> TomogramSet:
        return TomogramSet(
            Tomogram.from_row(r) for r in self.db["tomograms"].rows_where(order_by="name")
        )

    # -- runs --------------------------------------------------------------------------------
    def start_run(
        self, command: str, params: dict[str, Any], *, method: str = "", seed: int | None = None
    ) -> int:
        from picks import __version__

        with self.transaction():
            table = self.db["runs"].insert(
                {
                    "command": command,
                    "method": method,
                    "params": json.dumps(params, sort_keys=True, default=str),
                    "version": __version__,
                    "seed": seed,
                    "started_at": now(),
                    "status": "running",
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "process_start": process_start(os.getpid()),
                    "heartbeat_at": now(),
                }
            )
        run_id = int(table.last_pk)
        self._live_runs.add(run_id)
        return run_id

    def finish_run(
        self, run_id: int, status: str = "ok", message: str = "", **updates: Any
    ) -> None:
        self._live_runs.discard(run_id)
        with self.transaction():
            self.db["runs"].update(
                run_id, {"ended_at": now(), "status": status, "message": message, **updates}
            )

    def update_run(self, run_id: int, **values: Any) -> None:
        """Set columns of a runs row (``method``, ``params`` ...)."""
        self.db["runs"].update(run_id, values)

    def mark_stale(self) -> list[int]:
        """Mark ``running`` runs whose process is gone as ``stale`` (killed, crashed, power
        lost: nothing could record the end); returns their ids. A run of this host is gone
        when its pid is not alive (or is another process now); a run of another host, or
        from before m007, when it has not written for ``$PICKS_STALE_AFTER`` seconds."""
        stale = find_stale(self.db.conn, self._live_runs)
        if stale:
            sql, rows = stale_updates(stale)
            with self.transaction():
                self.db.conn.executemany(sql, rows)
        return [run_id for run_id, _ in stale]

    def run_status(self, run_id: int) -> str:
        return str(self.get_run(run_id).get("status") or "")

    @contextlib.contextmanager
    def run(
        self, command: str, params: dict[str, Any], *, method: str = "", seed: int | None = None
    ) -> Iterator[int]:
        """Record a run around a block: status ``ok`` on success, ``failed`` with the error."""
        run_id = self.start_run(command, params, method=method, seed=seed)
        try:
            yield run_id
        except BaseException as exc:
            self.finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self.finish_run(run_id, "ok")

    def runs(self) -> list[dict]:
        self.mark_stale()
        return list(self.db["runs"].rows_where(order_by="id"))

    def get_run(self, run_id: int) -> dict:
        try:
            return self.db["runs"].get(run_id)
        except NotFoundError:  # only a missing row; a lock or an I/O error stays itself
            raise NotFound(f"no run with id {run_id}") from None

    # -- sources and raw picks ---------------------------------------------------------------
    def find_source(self, sha256: str, identity: str | None = None) -> dict | None:
        """A source with these bytes (and, if given, the same identity, see m004)."""
        if identity is None:
            rows = list(self.db["sources"].rows_where("sha256 = ?", [sha256], order_by="id"))
        else:
            rows = list(self.db["sources"].rows_where("identity = ?", [identity]))
        return rows[0] if rows else None

    def add_source(self, meta: dict[str, Any], picks: pd.DataFrame) -> int:
        """Insert one source and all its picks in a single transaction; returns the source id."""
        canonical.validate(picks)
        with self.transaction():
            source_id = self._insert_source(meta, picks)
        return source_id

    def stream_source(
        self,
        meta: dict[str, Any],
        chunks: Iterable[pd.DataFrame],
        complete: Callable[[dict[str, Any]], None],
    ) -> dict | None:
        """Add a source whose picks come chunk by chunk (a streamed read), in ONE transaction:
        a failure in any chunk (or in ``complete``) leaves the store unchanged.

        ``chunks`` is consumed inside the transaction; then ``complete(meta)`` sets what only
        the whole file decides (``identity``, ``n_picks``; ``meta["warnings"]`` is read after
        it). If a source with that identity is stored (another command imported the same file
        meanwhile) nothing is added and its row is returned; otherwise ``None``, with the new
        source's id in ``meta["id"]``."""
        try:
            with self.journals_in_memory(), self.transaction(), self.bulk_writes():
                # a placeholder identity (unique) until the picks have decided it
                row = dict(meta, identity=f"pending:{meta['sha256']}:{os.getpid()}:{now()}")
                source_id = self._insert_source(row, canonical.empty())
                n = 0
                for chunk in chunks:
                    canonical.validate(chunk)
                    self.insert_picks(source_id, chunk)
                    n += len(chunk)
                complete(meta)
                existing = self.find_source(meta["sha256"], meta["identity"])
                if existing is not None:
                    raise _Found(existing)
                self.db.conn.execute(
                    "UPDATE sources SET identity = ?, n_picks = ?, warnings = ? WHERE id = ?",
                    [meta["identity"], n, _json(meta.get("warnings")), source_id],
                )
        except _Found as found:
            return found.row
        meta["id"] = source_id
        return None

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Inside a transaction: a page cache large enough for the indexes of millions of
        inserted rows (SQLite's default, 2 MB, makes every insert into the picks indexes a
        page eviction once they outgrow it). Restored afterwards; durability is unchanged."""
        conn = self.db.conn
        before = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA cache_size = {int(before)}")

    @contextlib.contextmanager
    def journals_in_memory(self) -> Iterator[None]:
        """Around a transaction: SQLite's temporary files in memory. An INSERT of many rows
        (:meth:`insert_picks`) keeps a copy of every page it changes until it ends (the
        foreign key check could undo it); past 64 KB SQLite writes those copies to a
        temporary file, a page at a time (≈ 4 writes for every page the import stores).
        Only the place of that scratch data changes: the database and its WAL are written
        as before. Restored afterwards. Setting it drops TEMP tables (picks makes none; with
        any, or inside a transaction, nothing is changed)."""
        conn = self.db.conn
        if (
            conn.in_transaction
            or conn.execute("SELECT count(*) FROM sqlite_temp_master").fetchone()[0]
        ):
            yield
            return
        before = int(conn.execute("PRAGMA temp_store").fetchone()[0])
        conn.execute("PRAGMA temp_store = MEMORY")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA temp_store = {before}")

    def _insert_source(self, meta: dict[str, Any], picks: pd.DataFrame) -> int:
        row = {k: v for k, v in meta.items() if k != "id"}
        for key in ("options", "warnings"):
            if not isinstance(row.get(key), str | type(None)):
                row[key] = _json(row[key])
        row.setdefault("role", "picker")
        row.setdefault("identity", source_identity(row["sha256"], picks["tomogram"].unique()))
        row["n_picks"] = len(picks)
        row["imported_at"] = now()
        source_id = int(self.db["sources"].insert(row).last_pk)
        self.insert_picks(source_id, picks)
        return source_id

    def insert_picks(self, source_id: int, picks: pd.DataFrame) -> None:
        """Bulk insert of a source's picks, many rows per ``INSERT`` statement
        (:func:`~picks.core.store.bulk.insert_rows`; no per-row Python dicts). A value that
        every row shares (the source id, a column with no value, the score's field name) is
        bound once per statement. The rows, their order (ids) and every stored value are those
        of one ``INSERT`` a row."""
        if picks.empty:
            return
        shared: dict[str, Any] = {"source_id": source_id}
        varying: dict[str, list[Any]] = {}
        for column in canonical.COLUMNS:
            values, same = _pick_values(picks[column], column)
            if same:
                shared[column] = values[0]
            else:
                varying[column] = values
        insert_rows(self.db.conn, "picks", varying, shared)

    def sources(self) -> list[dict]:
        return list(self.db["sources"].rows_where(order_by="id"))

    def get_source(self, source_id: int) -> dict:
        try:
            return self.db["sources"].get(source_id)
        except NotFoundError:  # only a missing row; a lock or an I/O error stays itself
            raise NotFound(f"no source with id {source_id}") from None

    def picks(
        self,
        *,
        source_ids: Sequence[int] | None = None,
        roles: Sequence[str] | None = ("picker",),
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Raw picks joined with their source's picker label and role, as a DataFrame.

        Always includes ``id``, ``source_id``, ``picker`` and ``role``.
        """
        wanted = list(columns) if columns else list(canonical.COLUMNS)
        select = ", ".join(
            ["p.id", "p.source_id", "s.picker", "s.role"]
            + [f"p.{c}" for c in wanted if c not in ("id", "source_id")]
        )
        where, params = [], []
        if source_ids is not None:
            where.append(f"p.source_id IN ({','.join('?' * len(source_ids))})")
            params.extend(int(i) for i in source_ids)
        if roles is not None:
            where.append(f"s.role IN ({','.join('?' * len(roles))})")
            params.extend(roles)
        sql = f"SELECT {select} FROM picks p JOIN sources s ON s.id = p.source_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY p.id"
        cursor = self.db.conn.execute(sql, params)
        return read_frame(cursor, floats=("x", "y", "z", "score", "rot", "tilt", "psi"))

    def pick_ids(self, source_id: int) -> np.ndarray:
        """The ids of a source's picks, ascending (the order they were inserted in)."""
        rows = self.db.conn.execute(
            "SELECT id FROM picks WHERE source_id = ? ORDER BY id", [int(source_id)]
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def get_pick(self, pick_id: int) -> dict:
        rows = list(self.db.query("SELECT * FROM picks WHERE id = ?", [pick_id]))
        if not rows:
            raise NotFound(
                f"no raw pick with id {pick_id}", hint="'picks sources' lists what is imported."
            )
        return rows[0]

    def count(self, table: str) -> int:
        return self.db[table].count

    def run_models(self, run_id: int) -> list[dict]:
        """The CNN models trained for a run or whose scores its candidates carry, by id:
        ``id, run_id, path, sha256, created_at`` and ``card`` (the model card, parsed)."""
        rows = self.db.execute(
            "SELECT id, run_id, path, sha256, created_at, card FROM models WHERE run_id = ? "
            "OR id IN (SELECT DISTINCT s.model_id FROM scores s JOIN consensus c "
            "ON c.id = s.consensus_id WHERE c.run_id = ?) ORDER BY id",
            [int(run_id), int(run_id)],
        ).fetchall()
        out = []
        for model_id, owner, path, sha256, created_at, card in rows:
            try:
                parsed = json.loads(card) if card else {}
            except ValueError:
                parsed = {}
            out.append(
                {
                    "id": int(model_id),
                    "run_id": owner,
                    "path": path,
                    "sha256": sha256,
                    "created_at": created_at,
                    "card": parsed,
                }
            )
        return out
