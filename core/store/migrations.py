"""Schema of the provenance store, as an ordered list of named migrations.

Migrations are applied by :func:`migrate` (sqlite-utils' migration system records each applied
name in ``_sqlite_migrations``). Never edit an applied migration: add a new one. Names are
``mNNN_what`` with NNN never reused.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from picks.core.errors import SchemaTooNew

migrations = Migrations("picks")


@migrations(name="m001_initial")
def m001_initial(db: Database) -> None:
    db["tomograms"].create(
        {"name": str, "path": str, "voxel_size": float, "shape": str, "registered_at": str},
        pk="name",
    )
    db["runs"].create(
        {
            "id": int,
            "command": str,
            "method": str,
            "params": str,  # JSON
            "version": str,
            "seed": int,
            "started_at": str,
            "ended_at": str,
            "status": str,  # running | ok | failed | stale (m007)
            "message": str,
        },
        pk="id",
    )
    db["sources"].create(
        {
            "id": int,
            "path": str,
            "sha256": str,
            "size": int,
            "adapter": str,
            "adapter_version": str,
            "picker": str,
            "role": str,  # picker | positive | negative (trusted reference picks)
            "options": str,  # JSON of the read options (voxel size, binning, ...)
            "warnings": str,  # JSON list
            "n_picks": int,
            "imported_at": str,
            "run_id": int,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["sources"].create_index(["sha256"], unique=True)
    db["picks"].create(
        {
            "id": int,
            "source_id": int,
            "record": int,
            "tomogram": str,
            "particle": str,
            "x": float,
            "y": float,
            "z": float,
            "score": float,
            "score_field": str,
            "particle_field": str,
            "rot": float,
            "tilt": float,
            "psi": float,
            "angle_convention": str,
            "original": str,
        },
        pk="id",
        foreign_keys=[("source_id", "sources", "id")],
    )
    db["picks"].create_index(["source_id"])
    db["picks"].create_index(["tomogram", "particle"])
    db["consensus"].create(
        {
            "id": int,
            "run_id": int,
            "tomogram": str,
            "particle": str,
            "x": float,
            "y": float,
            "z": float,
            "support": float,
            "n_members": int,
            "pickers": str,  # comma-separated picker labels that support it
            "score": float,  # final score used for acceptance (vote fraction or CNN)
            "vote_score": float,
            "cnn_score": float,
            "status": str,  # positive | doubtful | negative (support partition)
            "accepted": int,
            "reason": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["consensus"].create_index(["run_id", "tomogram", "particle"])
    db["consensus_members"].create(
        {"consensus_id": int, "pick_id": int, "picker": str, "distance": float},
        pk=("consensus_id", "pick_id"),
        foreign_keys=[("consensus_id", "consensus", "id"), ("pick_id", "picks", "id")],
    )
    db["consensus_members"].create_index(["pick_id"])
    db["noise"].create(
        {"id": int, "run_id": int, "tomogram": str, "x": float, "y": float, "z": float},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["noise"].create_index(["run_id"])
    db["models"].create(
        {
            "id": int,
            "run_id": int,
            "path": str,
            "sha256": str,
            "card": str,  # JSON model card
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["scores"].create(
        {"consensus_id": int, "model_id": int, "particle": str, "score": float},
        pk=("consensus_id", "model_id", "particle"),
        foreign_keys=[("consensus_id", "consensus", "id"), ("model_id", "models", "id")],
    )
    db["exports"].create(
        {
            "id": int,
            "run_id": int,
            "path": str,
            "format": str,
            "sha256": str,
            "n_rows": int,
            "consensus_ids": str,  # compact ranges "1-40,45" of the consensus ids written
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["exports"].create_index(["run_id"])


@migrations(name="m002_dropped")
def m002_dropped(db: Database) -> None:
    """Picks left out of a stage (e.g. a box crossing the tomogram edge), with the reason."""
    db["dropped"].create(
        {"id": int, "run_id": int, "kind": str, "ref_id": int, "stage": str, "reason": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["dropped"].create_index(["run_id"])


@migrations(name="m003_member_duplicates")
def m003_member_duplicates(db: Database) -> None:
    """Consensus members a picker reported twice: ``duplicate_of`` is the raw pick id of the
    same picker's kept (primary) pick they were merged into; NULL for primary members."""
    db["consensus_members"].add_column("duplicate_of", int)


@migrations(name="m004_source_identity")
def m004_source_identity(db: Database) -> None:
    """A source is a file's bytes *and* the tomograms they were read into: byte-identical files
    whose tomogram comes from their folder (copick runs) are different sources. ``identity`` is
    ``sha256:tomogram,tomogram...`` and is what re-imports are matched on."""
    db["sources"].add_column("identity", str)
    for row in db.query("SELECT id, sha256 FROM sources"):
        names = [
            r["tomogram"]
            for r in db.query(
                "SELECT DISTINCT tomogram FROM picks WHERE source_id = ? ORDER BY tomogram",
                [row["id"]],
            )
        ]
        db["sources"].update(row["id"], {"identity": source_identity(row["sha256"], names)})
    for index in db["sources"].indexes:
        if index.unique and index.columns == ["sha256"]:
            db.execute(f"DROP INDEX [{index.name}]")
    db["sources"].create_index(["sha256"])
    db["sources"].create_index(["identity"], unique=True)


def source_identity(
    sha256: str, tomograms, *, role: str = "picker", content: str | None = None
) -> str:
    """The key re-imports are matched on: the file's bytes, the tomograms they were read into
    (m004), and (m005) the role and a digest of the picks the import produced
    (:func:`picks.core.picks.content_digest`). So importing the same file again is a no-op
    when it gives the same picks, and a new source when other reading options (binning, voxel
    size, class, adapter) change them, or when it is given as trusted references."""
    key = f"{sha256}:{','.join(sorted(set(map(str, tomograms))))}"
    if role != "picker":
        key += f"|role={role}"
    if content is not None:
        key += f"|picks={content}"
    return key


@migrations(name="m005_source_identity_content")
def m005_source_identity_content(db: Database) -> None:
    """Re-key every source on bytes + tomograms + role + the digest of its stored picks."""
    import pandas as pd

    from picks.core.picks import DIGEST_COLUMNS, content_digest

    columns = ", ".join(DIGEST_COLUMNS)
    seen: set[str] = set()
    for row in list(db.query("SELECT id, sha256, role FROM sources ORDER BY id")):
        picks = pd.DataFrame(
            list(db.query(f"SELECT {columns} FROM picks WHERE source_id = ?", [row["id"]])),
            columns=list(DIGEST_COLUMNS),
        )
        identity = source_identity(
            row["sha256"],
            picks["tomogram"].unique(),
            role=row["role"] or "picker",
            content=content_digest(picks),
        )
        if identity in seen:
            # Imported again before m005 with options that did not change the picks: the
            # earliest source keeps the key (a new import matches it), later ones stay apart.
            identity += f"|duplicate-of-earlier-import={row['id']}"
        seen.add(identity)
        db["sources"].update(row["id"], {"identity": identity})


@migrations(name="m006_decisions_as_data")
def m006_decisions_as_data(db: Database) -> None:
    """Decisions become data rather than text (issue 9/10).

    - ``consensus.forced``: 1 when a trusted reference pick decided the candidate (before,
      this was recovered from the English ``reason``); ``decided_by``: the stage whose
      decision stands (``vote``, ``cnn``, ``combined``, ``latent``, ``reference``);
      ``posterior``: the latent-class model's P(particle) where it ran; ``rot/tilt/psi``:
      the orientation written to the output files; ``vote_reason``: the support (or
      reference) reason before any rescoring, which later stages prefix with their own.
    - ``picker_estimates``: per run, picker and class, the truth-free reliability estimates
      of the latent-class model (recall, false-report rate, precision).
    - ``class_decisions``: per run and class, the acceptance threshold and the expected
      precision, recall and F-beta it was chosen for.
    """
    for column, kind in (
        ("forced", int),
        ("decided_by", str),
        ("vote_reason", str),
        ("posterior", float),
        ("rot", float),
        ("tilt", float),
        ("psi", float),
    ):
        db["consensus"].add_column(column, kind)
    import re

    prefix = re.compile(r"^(cnn|combined|not scored)[^;]*; ")
    db.conn.executemany(
        "UPDATE consensus SET vote_reason = ? WHERE id = ?",
        [
            (prefix.sub("", reason or ""), cid)
            for cid, reason in db.execute("SELECT id, reason FROM consensus").fetchall()
        ],
    )
    # Old rows: the reference rule is recovered once, here, from the stored status/reason.
    db.execute(
        "UPDATE consensus SET forced = CASE WHEN status = 'reference' "
        "OR vote_reason LIKE 'positive reference pick%' "
        "OR vote_reason LIKE 'negative reference pick%' THEN 1 ELSE 0 END"
    )
    db.execute(
        "UPDATE consensus SET decided_by = CASE WHEN forced = 1 THEN 'reference' ELSE "
        "COALESCE((SELECT CASE WHEN r.method IN ('cnn', 'vote') THEN r.method ELSE 'vote' END "
        "FROM runs r WHERE r.id = consensus.run_id), 'vote') END"
    )
    db["picker_estimates"].create(
        {
            "id": int,
            "run_id": int,
            "picker": str,
            "particle": str,
            "n_reported": int,
            "recall": float,
            "false_rate": float,
            "precision": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["picker_estimates"].create_index(["run_id"])
    db["class_decisions"].create(
        {
            "id": int,
            "run_id": int,
            "particle": str,
            "beta": float,
            "threshold": float,
            "n_candidates": int,
            "n_accepted": int,
            "expected_particles": float,
            "expected_missed": float,
            "expected_precision": float,
            "expected_recall": float,
            "expected_fbeta": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["class_decisions"].create_index(["run_id"])


@migrations(name="m007_run_liveness")
def m007_run_liveness(db: Database) -> None:
    """Who runs a run, so a run whose process died (kill -9, power loss) is not ``running``
    forever: ``pid`` and ``host`` of the process, ``process_start`` (the kernel's start time
    of that pid, so a reused pid is not taken for the run's) and ``heartbeat_at`` (updated
    with every write of the run's process). Status gains ``stale``: marked by
    :meth:`picks.core.store.Store.mark_stale`. Independent of m006."""
    columns = {c.name for c in db["runs"].columns}
    for name, kind in (("pid", int), ("host", str), ("process_start", str), ("heartbeat_at", str)):
        if name not in columns:
            db["runs"].add_column(name, kind)


@migrations(name="m008_export_members")
def m008_export_members(db: Database) -> None:
    """Which consensus picks each exported file holds, as rows: ``export_members`` has one
    row per (export, consensus pick), indexed both ways, so "which files hold pick N" is one
    indexed query instead of parsing every export's compact range text (``"1-40,45"``, the
    ``exports.consensus_ids`` column before m008, expanded here and dropped)."""
    db["export_members"].create(
        {"export_id": int, "consensus_id": int},
        pk=("export_id", "consensus_id"),
        foreign_keys=[("export_id", "exports", "id"), ("consensus_id", "consensus", "id")],
    )
    db["export_members"].create_index(["consensus_id"])
    spans = []
    for export_id, ranges in db.execute("SELECT id, consensus_ids FROM exports").fetchall():
        for part in (ranges or "").split(","):
            lo, _, hi = part.strip().partition("-")
            if lo:
                spans.append((int(export_id), int(lo), int(hi or lo)))
    # One set-based insert per range; ids that no consensus row has (none should) are skipped
    # rather than failing the foreign key.
    db.conn.executemany(
        "INSERT OR IGNORE INTO export_members (export_id, consensus_id) "
        "SELECT ?, id FROM consensus WHERE id BETWEEN ? AND ?",
        spans,
    )
    db.execute("ALTER TABLE exports DROP COLUMN consensus_ids")  # SQLite >= 3.35


def migrate(db: Database) -> None:
    """Bring ``db`` to the current schema (idempotent); refuse databases from a newer picks."""
    known = {m.name for m in migrations._migrations}
    applied = {m.name for m in migrations.applied(db)}
    unknown = applied - known
    if unknown:
        raise SchemaTooNew(
            f"the database was written by a newer picks (migrations {sorted(unknown)}); upgrade picks"
        )
    migrations.apply(db)


def schema_version(db: Database) -> int:
    """Number of migrations applied."""
    return len(migrations.applied(db))
