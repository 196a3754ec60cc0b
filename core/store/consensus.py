"""The decision tables: consensus, its members, scores, models, noise, exports, dropped.

:class:`ConsensusTables` is mixed into :class:`picks.core.store.Store`; it holds every SQL
statement the aggregate, noise, CNN, evaluation and export stages need, so that those stages
pass DataFrames in and out and never write SQL themselves.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlite_utils import Database

from picks.core.progress import now
from picks.core.store.bulk import insert_rows, references_checked_here, require_ids
from picks.core.store.frames import read_frame, read_frame_blocks


def _floats(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


# consensus_members rows inserted per block (bounds the Python objects built at once)
MEMBER_BLOCK = 200_000
# consensus rows (22 columns) inserted per block, for the same reason
CONSENSUS_BLOCK = 50_000
# export_members rows inserted per statement (the ids go as one JSON array of text)
EXPORT_MEMBER_BLOCK = 1_000_000

# columns inserted NULL for NaN (the others are never missing, or go as SQLite takes them)
_NULLABLE = ("particle", "score", "posterior", "rot", "tilt", "psi")


class ConsensusTables:
    """Consensus, scores, models, noise, exports and dropped rows of the store."""

    db: Database  # and transaction(), bulk_writes(): provided by Store

    # -- consensus picks and their decisions ---------------------------------------------------
    def add_consensus(self, run_id: int, table: pd.DataFrame, members: pd.DataFrame) -> int:
        """Bulk insert a run's consensus rows (explicit, consecutive ids, in ``table``'s order)
        and their members; returns the first id. ``table`` carries the cluster columns and the
        decision (``status, vote_score, accepted, reason, forced``); ``members`` has ``row``
        (position in ``table``), ``pick_id, picker, distance, duplicate_of``."""
        return self._insert_consensus(run_id, table, members)[0]

    def add_consensus_frame(
        self, run_id: int, table: pd.DataFrame, members: pd.DataFrame
    ) -> pd.DataFrame:
        """:meth:`add_consensus`, returning what :meth:`consensus` would now read for the
        run (same columns, dtypes and values), built from the inserted columns instead of
        read back: a second pass over a million rows saved."""
        _, columns = self._insert_consensus(run_id, table, members)
        if not len(table):
            return self.consensus(run_id)
        names = [row[1] for row in self.db.conn.execute("PRAGMA table_info(consensus)")]
        data: dict[str, object] = {}
        n = len(table)
        for name in names:
            values = columns.pop(name, None)
            if values is None:  # a column this insert leaves NULL
                data[name] = np.full(n, np.nan) if name in _CONSENSUS_FLOATS else [None] * n
            elif name in _CONSENSUS_FLOATS:
                # + 0.0: SQLite gives -0.0 back as 0.0 (integral REAL values are stored as
                # integers); NaN and None are NULL, read back as NaN
                data[name] = np.asarray(values, dtype=float) + 0.0
            elif name == "particle":  # the only TEXT column not built with astype(str)
                data[name] = pd.Series(
                    [v if v is None else str(v) for v in _nullable(np.asarray(values))]
                )
            elif isinstance(values, pd.Series):  # text: as a list of str would give it
                data[name] = values.reset_index(drop=True)
            else:
                data[name] = pd.Series(values)
        return _consensus_dtypes(pd.DataFrame(data))

    def _insert_consensus(
        self, run_id: int, table: pd.DataFrame, members: pd.DataFrame
    ) -> tuple[int, dict[str, np.ndarray | pd.Series]]:
        """The insert of :meth:`add_consensus`; returns the first id and the inserted
        columns (arrays and text Series, by column name)."""
        conn = self.db.conn
        n = len(table)
        # references checked once per column, not per row (core/store/bulk.py)
        with references_checked_here(conn), self.transaction(), self.bulk_writes():
            require_ids(conn, "runs", np.array([run_id]), "run")
            first = (
                int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM consensus").fetchone()[0]) + 1
            )
            ids = np.arange(first, first + n)
            forced = table["forced"].fillna(False).astype(bool).to_numpy()
            reason = table["reason"].astype(str)
            score = table["score"] if "score" in table else table["vote_score"]
            posterior = table["posterior"] if "posterior" in table else pd.Series([np.nan] * n)
            # Columns stay arrays (floats, ints) or pandas text; Python values are made a
            # block of rows at a time: 675,000 rows x 22 columns of Python objects at once
            # were the peak of a 2 M-pick aggregate.
            columns: dict[str, np.ndarray | pd.Series] = {
                "id": ids,
                "run_id": np.full(n, run_id, dtype=np.int64),
                "tomogram": table["tomogram"].astype(str),
                "particle": table["particle"].astype(object).to_numpy(),
                "x": table["x"].to_numpy(dtype=float),
                "y": table["y"].to_numpy(dtype=float),
                "z": table["z"].to_numpy(dtype=float),
                "support": table["support"].to_numpy(dtype=float),
                "n_members": table["n_members"].to_numpy(dtype=np.int64),
                "pickers": table["pickers"].astype(str),
                "score": score.to_numpy(dtype=float),
                "vote_score": table["vote_score"].to_numpy(dtype=float),
                "status": table["status"].astype(str),
                "accepted": table["accepted"].astype(bool).to_numpy().astype(np.int64),
                "reason": reason,
                "forced": forced.astype(np.int64),
                "decided_by": (
                    table["decided_by"].astype(str)
                    if "decided_by" in table
                    else pd.Series(np.where(forced, "reference", "vote")).astype(str)
                ),
                "vote_reason": (
                    table["vote_reason"].astype(str) if "vote_reason" in table else reason
                ),
                "posterior": posterior.to_numpy(dtype=float),
                "rot": table["rot"].to_numpy(dtype=float),
                "tilt": table["tilt"].to_numpy(dtype=float),
                "psi": table["psi"].to_numpy(dtype=float),
            }
            for a in range(0, n, CONSENSUS_BLOCK):
                block = {
                    name: _values(name, values, a, a + CONSENSUS_BLOCK)
                    for name, values in columns.items()
                    if name != "run_id"
                }
                insert_rows(conn, "consensus", block, {"run_id": int(run_id)})
                del block
            rows = members["row"].to_numpy(dtype=np.int64)
            if len(rows) and (rows.min() < 0 or rows.max() >= n):
                raise sqlite3.IntegrityError("FOREIGN KEY constraint failed: member of no row")
            pick_ids = members["pick_id"].to_numpy(dtype=np.int64)
            require_ids(conn, "picks", pick_ids, "pick")
            # pick ids or None, without a per-row pd.isna (a million members)
            dup = pd.to_numeric(members["duplicate_of"], errors="coerce").to_numpy(dtype=float)
            dup_ids = np.nan_to_num(dup).astype(np.int64).astype(object)
            dup_ids[np.isnan(dup)] = None
            consensus_ids = ids[rows]
            picker = members["picker"].astype(str).to_numpy(dtype=object)
            distance = members["distance"].to_numpy(dtype=float)
            # a block of rows at a time: Python objects for 200,000 members, not a million
            for a in range(0, len(members), MEMBER_BLOCK):
                b = a + MEMBER_BLOCK
                insert_rows(
                    conn,
                    "consensus_members",
                    {
                        "consensus_id": consensus_ids[a:b].tolist(),
                        "pick_id": pick_ids[a:b].tolist(),
                        "picker": picker[a:b].tolist(),
                        "distance": distance[a:b].tolist(),
                        "duplicate_of": dup_ids[a:b].tolist(),
                    },
                )
        return first, columns

    def consensus(self, run_id: int) -> pd.DataFrame:
        """A run's consensus picks with their current decisions, ordered by id."""
        cursor = self.db.conn.execute(
            "SELECT * FROM consensus WHERE run_id = ? ORDER BY id", [int(run_id)]
        )
        return _consensus_dtypes(read_frame(cursor, floats=_CONSENSUS_FLOATS))

    def set_decisions(self, decisions: pd.DataFrame) -> None:
        """Store new decisions (columns ``id, accepted, score, reason, decided_by`` and
        optionally ``posterior``) in one transaction. Forced rows are the caller's to leave
        out: a trusted reference's decision is never overwritten here."""
        posterior = (
            decisions["posterior"]
            if "posterior" in decisions
            else pd.Series([np.nan] * len(decisions))
        )
        rows = zip(
            decisions["accepted"].astype(bool).astype(int).tolist(),
            _nullable(decisions["score"].to_numpy(dtype=float)),
            decisions["reason"].astype(str).tolist(),
            decisions["decided_by"].astype(str).tolist(),
            _nullable(posterior.to_numpy(dtype=float)),
            decisions["id"].astype(np.int64).tolist(),
            strict=True,
        )
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE consensus SET accepted = ?, score = ?, reason = ?, decided_by = ?, "
                "posterior = COALESCE(?, posterior) WHERE id = ? AND NOT COALESCE(forced, 0)",
                rows,
            )

    def set_estimates(
        self, run_id: int, pickers: pd.DataFrame, classes: pd.DataFrame | None = None
    ) -> None:
        """Replace a run's per-picker reliability estimates and per-class decision rules."""
        with self.transaction():
            for table, frame in (("picker_estimates", pickers), ("class_decisions", classes)):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", [int(run_id)])
                if frame is None or frame.empty:
                    continue
                columns = [c for c in self.db[table].columns_dict if c not in ("id", "run_id")]
                rows = [
                    {"run_id": int(run_id), **{c: _plain(r.get(c)) for c in columns}}
                    for r in frame.to_dict("records")
                ]
                self.db[table].insert_all(rows)

    def latest_run_with_estimates(self) -> int | None:
        row = self.db.execute("SELECT MAX(run_id) FROM picker_estimates").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def estimates(self, run_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per-picker estimates, per-class decision rules) stored for a run."""
        out = []
        for table in ("picker_estimates", "class_decisions"):
            rows = list(self.db[table].rows_where("run_id = ?", [int(run_id)], order_by="id"))
            frame = pd.DataFrame(rows)
            out.append(frame.drop(columns=["id", "run_id"]) if len(frame) else frame)
        return out[0], out[1]

    # -- noise samples -----------------------------------------------------------------------
    def save_noise(self, run_id: int, samples: pd.DataFrame, *, replace: bool = False) -> int:
        """Store samples in the ``noise`` table under ``run_id`` (bulk); returns rows written."""
        return len(self.add_noise_frame(run_id, samples, replace=replace))

    def add_noise_frame(
        self, run_id: int, samples: pd.DataFrame, *, replace: bool = False
    ) -> pd.DataFrame:
        """:meth:`save_noise`, returning what :meth:`noise` would now read for the run (ids,
        columns and values), built from the inserted values instead of read back."""
        tomograms = samples["tomogram"].astype(str).tolist()
        xyz = {c: samples[c].astype(float).tolist() for c in ("x", "y", "z")}
        conn = self.db.conn
        with self.transaction():
            if replace:
                conn.execute("DELETE FROM noise WHERE run_id = ?", [int(run_id)])
            # explicit ids: the ones SQLite gives a rowid table (largest + 1, in order)
            first = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM noise").fetchone()[0]) + 1
            ids = list(range(first, first + len(samples)))
            conn.executemany(
                "INSERT INTO noise (id, run_id, tomogram, x, y, z) VALUES (?, ?, ?, ?, ?, ?)",
                zip(ids, [int(run_id)] * len(ids), tomograms, *xyz.values(), strict=True),
            )
        # + 0.0: SQLite gives -0.0 back as 0.0 (integral REAL values are stored as integers)
        columns = {c: np.array(v, dtype=float) + 0.0 for c, v in xyz.items()}
        return pd.DataFrame({"id": np.array(ids, dtype=np.int64), "tomogram": tomograms, **columns})

    def noise_count(self, run_id: int) -> int:
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM noise WHERE run_id = ?", [int(run_id)]
            ).fetchone()[0]
        )

    def noise(self, run_id: int) -> pd.DataFrame:
        """A run's noise samples (id, tomogram, x, y, z), ordered by id."""
        cursor = self.db.conn.execute(
            "SELECT id, tomogram, x, y, z FROM noise WHERE run_id = ? ORDER BY id", [int(run_id)]
        )
        frame = pd.DataFrame.from_records(
            cursor.fetchall(), columns=["id", "tomogram", "x", "y", "z"]
        )
        return _floats(frame, ("x", "y", "z"))

    def positive_counts(self, run_id: int) -> dict[str, int]:
        """Positive consensus picks (incl. reference-only ones) per tomogram of a run."""
        rows = self.db.execute(
            "SELECT tomogram, COUNT(*) FROM consensus WHERE run_id = ? "
            "AND status IN ('positive', 'reference') GROUP BY tomogram",
            [int(run_id)],
        ).fetchall()
        tomos = self.db.execute(
            "SELECT DISTINCT tomogram FROM consensus WHERE run_id = ?", [int(run_id)]
        ).fetchall()
        counts = {str(t): 0 for (t,) in tomos}
        counts.update({str(t): int(c) for t, c in rows})
        return counts

    def avoid_points(self, run_id: int) -> pd.DataFrame:
        """Every pick clustered in the run plus every trusted reference in its tomograms."""
        sql = (
            "SELECT p.tomogram, p.particle, p.x, p.y, p.z FROM picks p "
            "JOIN consensus_members m ON m.pick_id = p.id JOIN consensus c ON c.id = m.consensus_id "
            "WHERE c.run_id = ? "
            "UNION ALL SELECT p.tomogram, p.particle, p.x, p.y, p.z FROM picks p "
            "JOIN sources s ON s.id = p.source_id WHERE s.role IN ('positive', 'negative') "
            "AND p.tomogram IN (SELECT DISTINCT tomogram FROM consensus WHERE run_id = ?)"
        )
        # block-wise: a run's every clustered pick (millions), not all as Python rows at once
        return read_frame_blocks(
            self.db.conn.execute(sql, [int(run_id), int(run_id)]), floats=("x", "y", "z")
        )

    # -- consensus reads for later stages ----------------------------------------------------
    def member_picks(self, run_id: int) -> pd.DataFrame:
        """Member picks of a run's consensus picks: consensus_id, picker, score, tomogram, x, y, z."""
        cursor = self.db.conn.execute(
            "SELECT m.consensus_id, m.picker, p.score, p.tomogram, p.x, p.y, p.z "
            "FROM consensus_members m JOIN consensus c ON c.id = m.consensus_id "
            "JOIN picks p ON p.id = m.pick_id WHERE c.run_id = ?",
            [int(run_id)],
        )
        frame = pd.DataFrame.from_records(
            cursor.fetchall(),
            columns=["consensus_id", "picker", "score", "tomogram", "x", "y", "z"],
        )
        return _floats(frame, ("score", "x", "y", "z"))

    def consensus_points(self, run_id: int) -> pd.DataFrame:
        """All consensus candidates of a run (id, tomogram, particle, x, y, z, score, accepted)."""
        cursor = self.db.execute(
            "SELECT id, tomogram, particle, x, y, z, score, accepted FROM consensus "
            "WHERE run_id = ? ORDER BY id",
            [run_id],
        )
        frame = pd.DataFrame.from_records(
            cursor.fetchall(), columns=[d[0] for d in cursor.description]
        )
        frame = _floats(frame, ("x", "y", "z", "score"))
        frame["accepted"] = frame["accepted"].fillna(0).astype(int).astype(bool)
        return frame

    def consensus_run_ids(self, *, finished_only: bool = False) -> list[int]:
        """Ids of the runs that have consensus picks (only status ``ok`` ones if asked)."""
        return [
            int(r[0])
            for r in self.db.execute(
                "SELECT DISTINCT c.run_id FROM consensus c JOIN runs r ON r.id = c.run_id "
                + ("WHERE r.status = 'ok' " if finished_only else "")
                + "ORDER BY c.run_id"
            ).fetchall()
        ]

    def latest_finished_consensus_run(self) -> int | None:
        """The newest run with status ``ok`` that has consensus picks."""
        row = self.db.execute(
            "SELECT MAX(r.id) FROM runs r WHERE r.status = 'ok' AND "
            "EXISTS (SELECT 1 FROM consensus c WHERE c.run_id = r.id)"
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def consensus_classes(self, run_id: int) -> list:
        """The distinct classes of a run's consensus picks."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT particle FROM consensus WHERE run_id = ?", [run_id]
            )
        ]

    # -- CNN models and scores ---------------------------------------------------------------
    def model_card(self, sha256: str) -> dict | None:
        """The stored card of the model with this sha256, if any."""
        row = next(iter(self.db["models"].rows_where("sha256 = ?", [sha256], limit=1)), None)
        return None if row is None else json.loads(row["card"])

    def _model_row(self, run_id: int, path: str | Path, digest: str, card: dict) -> int:
        """The id of the models row with this sha256, inserted when new (inside a transaction)."""
        row = next(iter(self.db["models"].rows_where("sha256 = ?", [digest], limit=1)), None)
        if row is not None:
            return int(row["id"])
        table = self.db["models"].insert(
            {
                "run_id": int(run_id),
                "path": str(Path(path).resolve()),
                "sha256": digest,
                "card": json.dumps(card, sort_keys=True, default=str),
                "created_at": now(),
            }
        )
        return int(table.last_pk)

    def record_model(
        self, run_id: int, path: str | Path, digest: str, card: dict, dropped: Sequence[tuple]
    ) -> int:
        """A trained model's row and its extraction drops ``(kind, ref_id, reason)``."""
        with self.transaction():
            model_id = self._model_row(run_id, path, digest, card)
            self.db.conn.executemany(
                "INSERT INTO dropped (run_id, kind, ref_id, stage, reason) VALUES (?, ?, ?, ?, ?)",
                [(int(run_id), kind, ref, "cnn-train", reason) for kind, ref, reason in dropped],
            )
        return model_id

    def set_cnn_decisions(
        self,
        run_id: int,
        models: Sequence[dict],
        model_scores: Sequence[tuple[np.ndarray, list[str], np.ndarray]],
        decisions: pd.DataFrame,
        score_drops: Sequence[tuple[int, str]],
        train_drops: Sequence[tuple] | None,
    ) -> list[int]:
        """One transaction for a CNN decision: the models rows (``path, sha256, card``); the
        scores of each model (consensus ids, output names, one column of values per name),
        replacing the run's earlier scores; the consensus decisions (columns ``id, cnn_score,
        score, accepted, reason, decided_by, posterior``; a NaN posterior keeps the stored
        one); and the ``cnn-score`` drops ``(consensus id, reason)`` and, when given, the
        ``cnn-train`` ones ``(kind, ref_id, reason)``."""
        conn = self.db.conn
        updates = zip(
            _nullable(decisions["cnn_score"].to_numpy(dtype=float)),
            _nullable(decisions["score"].to_numpy(dtype=float)),
            decisions["accepted"].astype(bool).astype(int).tolist(),
            decisions["reason"].astype(str).tolist(),
            decisions["decided_by"].astype(str).tolist(),
            _nullable(decisions["posterior"].to_numpy(dtype=float)),
            decisions["id"].astype(np.int64).tolist(),
            strict=True,
        )
        with self.transaction():
            model_ids = [self._model_row(run_id, m["path"], m["sha256"], m["card"]) for m in models]
            # The scores rows are those of the decision being stored: an earlier decision's
            # models (another ensemble, say) must not linger beside it in `picks audit`.
            conn.execute(
                "DELETE FROM scores WHERE consensus_id IN "
                "(SELECT id FROM consensus WHERE run_id = ?)",
                [int(run_id)],
            )
            rows = []
            for model_id, (ids, columns, values) in zip(model_ids, model_scores, strict=True):
                n = len(ids)
                for j, name in enumerate(columns):
                    rows.extend(
                        zip(
                            ids.tolist(),
                            [model_id] * n,
                            [name] * n,
                            values[:, j].astype(float).tolist(),
                            strict=True,
                        )
                    )
            conn.executemany(
                "INSERT INTO scores (consensus_id, model_id, particle, score) VALUES (?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "UPDATE consensus SET cnn_score = ?, score = ?, accepted = ?, reason = ?, "
                "decided_by = ?, posterior = COALESCE(?, posterior) WHERE id = ?",
                updates,
            )
            # Training drops are replaced only by a new training: scoring with a saved model
            # keeps the record of what the run's own training left out.
            stages = ("cnn-score",) if train_drops is None else ("cnn-score", "cnn-train")
            conn.execute(
                f"DELETE FROM dropped WHERE run_id = ? AND stage IN ({','.join('?' * len(stages))})",
                [int(run_id), *stages],
            )
            drops = [
                (int(run_id), "consensus", int(ref), "cnn-score", reason)
                for ref, reason in score_drops
            ]
            drops += [
                (int(run_id), kind, ref, "cnn-train", reason)
                for kind, ref, reason in train_drops or []
            ]
            conn.executemany(
                "INSERT INTO dropped (run_id, kind, ref_id, stage, reason) VALUES (?, ?, ?, ?, ?)",
                drops,
            )
        return model_ids

    def scores(self, run_id: int) -> pd.DataFrame:
        """Score rows of a run's consensus picks: consensus_id, model_id, particle, score."""
        cursor = self.db.conn.execute(
            "SELECT s.consensus_id, s.model_id, s.particle, s.score FROM scores s "
            "JOIN consensus c ON c.id = s.consensus_id WHERE c.run_id = ?",
            [int(run_id)],
        )
        return pd.DataFrame.from_records(
            cursor.fetchall(), columns=["consensus_id", "model_id", "particle", "score"]
        )

    # -- exported files ----------------------------------------------------------------------
    def add_exports(self, rows: Sequence[tuple]) -> list[int]:
        """``exports`` rows ``(run_id, path, format, sha256, consensus_ids, created_at)``, with
        ``consensus_ids`` the ids of the consensus picks the file holds (``n_rows`` is their
        number; each becomes an ``export_members`` row, m008). One transaction; returns the
        new export ids."""
        ids: list[int] = []
        if not rows:
            return ids
        # SQLite checks these references row by row: the ids are sorted, so its look-ups
        # stay in cached pages (cheaper than require_ids' range read per file, measured)
        with self.transaction(), self.bulk_writes():
            for run_id, path, fmt, sha256, members, created_at in rows:
                members = np.asarray(members, dtype=np.int64)
                if len(members) > 1 and not (members[1:] > members[:-1]).all():
                    members = np.unique(members)  # (already ascending and distinct: as it is)
                cursor = self.db.conn.execute(
                    "INSERT INTO exports (run_id, path, format, sha256, n_rows, created_at) "
                    "VALUES (?,?,?,?,?,?)",
                    (int(run_id), str(path), fmt, sha256, len(members), created_at),
                )
                export_id = int(cursor.lastrowid)
                _insert_members(self.db.conn, export_id, members)
                ids.append(export_id)
        return ids

    def export_members(self, export_id: int) -> list[int]:
        """The consensus ids an exported file holds, ascending."""
        return [
            int(r[0])
            for r in self.db.execute(
                "SELECT consensus_id FROM export_members WHERE export_id = ? ORDER BY consensus_id",
                [int(export_id)],
            ).fetchall()
        ]

    def exports_of_other_runs(self, run_id: int) -> list[tuple[str, str]]:
        """``(path, sha256)`` of every file another run exported."""
        return [
            tuple(r)
            for r in self.db.execute(
                "SELECT DISTINCT path, sha256 FROM exports WHERE run_id != ?", [run_id]
            ).fetchall()
        ]

    def export_history(self) -> list[tuple[str, str, str]]:
        """``(path, sha256, run status)`` of every export, oldest first."""
        return [
            tuple(r)
            for r in self.db.execute(
                "SELECT e.path, e.sha256, r.status FROM exports e JOIN runs r ON r.id = e.run_id "
                "ORDER BY e.id"
            ).fetchall()
        ]

    def running_runs(self, command: str) -> list[tuple[int, str | None]]:
        """``(id, params)`` of the runs of ``command`` still marked running."""
        return [
            (int(r[0]), r[1])
            for r in self.db.execute(
                "SELECT id, params FROM runs WHERE status = 'running' AND command = ?", [command]
            ).fetchall()
        ]


def _insert_members(conn: sqlite3.Connection, export_id: int, members: np.ndarray) -> None:
    """``export_members`` rows ``(export_id, m)`` for the ascending ids ``members``, in that
    order: one statement over a JSON array of the ids (``json_each``) rather than one
    ``executemany`` step per row (a third of the time at a million rows); the same rows, in
    the same order, with the same foreign-key checks. SQLite without JSON functions: the
    ``executemany``."""
    for start in range(0, len(members), EXPORT_MEMBER_BLOCK):  # (bounds the JSON text)
        ids = members[start : start + EXPORT_MEMBER_BLOCK].tolist()
        try:
            conn.execute(
                "INSERT INTO export_members (export_id, consensus_id) "
                "SELECT ?, value FROM json_each(?)",
                (int(export_id), "[" + ",".join(map(str, ids)) + "]"),
            )
        except sqlite3.OperationalError as exc:
            if "json_each" not in str(exc):
                raise
            conn.executemany(
                "INSERT INTO export_members (export_id, consensus_id) VALUES (?,?)",
                zip(itertools.repeat(int(export_id)), ids),
            )


_CONSENSUS_FLOATS = (
    "x",
    "y",
    "z",
    "support",
    "score",
    "vote_score",
    "cnn_score",
    "posterior",
    "rot",
    "tilt",
    "psi",
)


def _consensus_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """The types :meth:`ConsensusTables.consensus` gives (no class: None; forced: bool)."""
    frame["particle"] = frame["particle"].astype(object).where(frame["particle"].notna(), None)
    frame["forced"] = frame["forced"].fillna(0).astype(int).astype(bool)
    return frame


def _values(name: str, values: np.ndarray | pd.Series, a: int, b: int) -> list:
    """Rows ``a:b`` of an inserted column as the Python values ``executemany`` takes."""
    part = values.iloc[a:b].tolist() if isinstance(values, pd.Series) else values[a:b]
    if name in _NULLABLE:
        return _nullable(np.asarray(part))
    return part if isinstance(part, list) else part.tolist()


def _nullable(values: np.ndarray) -> list:
    """NaN/None -> NULL; everything else as a plain Python value."""
    values = np.asarray(values)
    if values.dtype.kind == "f":  # the common case, without a Python test per value
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out.tolist()
    return [
        None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values.tolist()
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
