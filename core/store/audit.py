"""Answer "why is this pick here?" from the store alone (read-only)."""

from __future__ import annotations

import json
from typing import Any

from picks.core.store import Store


def _loads(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def source_summary(source: dict) -> dict:
    keep = ("id", "path", "sha256", "adapter", "adapter_version", "picker", "role", "imported_at")
    out = {k: source.get(k) for k in keep}
    out["options"] = _loads(source.get("options"))
    return out


def audit_pick(store: Store, pick_id: int) -> dict:
    """A raw pick with its source file, record (line) and the original values."""
    pick = store.get_pick(pick_id)
    source = store.get_source(pick["source_id"])
    members = list(
        store.db.query(
            "SELECT m.consensus_id, m.distance, c.run_id, c.status, c.accepted "
            "FROM consensus_members m JOIN consensus c ON c.id = m.consensus_id WHERE m.pick_id = ?",
            [pick_id],
        )
    )
    return {
        "kind": "raw pick",
        "pick": {k: v for k, v in pick.items() if k != "original"},
        "source": source_summary(source),
        "record": pick["record"],
        "original": pick["original"],
        "consensus": members,
    }


def audit_consensus(store: Store, consensus_id: int) -> dict:
    """A consensus pick: members (picker, file, line, original values, distance), support,
    scores, status, the run's parameters and the exported files that contain it."""
    from picks.core.errors import NotFound

    rows = list(store.db.query("SELECT * FROM consensus WHERE id = ?", [consensus_id]))
    if not rows:
        raise NotFound(
            f"no consensus pick with id {consensus_id}",
            hint="Ids are in the 'consensus_id' column of aggregate outputs; use `pick` for raw picks.",
        )
    consensus = rows[0]
    members = list(
        store.db.query(
            "SELECT m.pick_id, m.picker, m.distance, m.duplicate_of, p.record, p.original, "
            "p.x, p.y, p.z, p.score, "
            "p.score_field, p.particle, s.id AS source_id, s.path, s.adapter, s.role "
            "FROM consensus_members m JOIN picks p ON p.id = m.pick_id "
            "JOIN sources s ON s.id = p.source_id WHERE m.consensus_id = ? ORDER BY m.picker, m.pick_id",
            [consensus_id],
        )
    )
    run = store.get_run(consensus["run_id"])
    run["params"] = _loads(run.get("params"))
    scores = list(
        store.db.query(
            "SELECT s.model_id, m.path AS model_path, s.particle, s.score FROM scores s "
            "LEFT JOIN models m ON m.id = s.model_id WHERE s.consensus_id = ? "
            "ORDER BY s.model_id, s.particle",
            [consensus_id],
        )
    )
    # every file that holds the pick (m008), whichever run wrote it (aggregate or export)
    exports = [
        e | {"state": _file_state(e["path"], e["sha256"])}
        for e in store.db.query(
            "SELECT e.id, e.run_id, e.path, e.format, e.sha256, e.created_at FROM exports e "
            "JOIN export_members m ON m.export_id = e.id WHERE m.consensus_id = ? ORDER BY e.id",
            [consensus_id],
        )
    ]
    dropped = list(
        store.db.query(
            "SELECT stage, reason FROM dropped WHERE run_id = ? AND kind = 'consensus' AND ref_id = ?",
            [consensus["run_id"], consensus_id],
        )
    )
    return {
        "kind": "consensus pick",
        "consensus": consensus,
        "members": members,
        "model_scores": scores,
        "dropped": dropped,
        "run": run,
        "exports": exports,
    }


def render(report: dict) -> str:
    """Human-readable text of an audit report."""
    lines: list[str] = []
    if report["kind"] == "raw pick":
        pick, source = report["pick"], report["source"]
        lines.append(
            f"Raw pick {pick['id']} ({pick['tomogram']}, {pick['particle'] or 'no class'})"
        )
        lines.append(f"  position  x={pick['x']:.1f} y={pick['y']:.1f} z={pick['z']:.1f} Å")
        if pick.get("score") is not None:
            lines.append(f"  score     {pick['score']:g} (from {pick.get('score_field') or '?'})")
        lines.append(f"  source    #{source['id']} {source['path']}")
        lines.append(
            f"            adapter {source['adapter']} v{source['adapter_version']}, picker {source['picker']}, sha256 {source['sha256'][:16]}"
        )
        lines.append(f"  record    {report['record']}: {report['original']}")
        for c in report["consensus"]:
            lines.append(
                f"  member of consensus pick {c['consensus_id']} (run {c['run_id']}, {c['status']}, "
                f"{'accepted' if c['accepted'] else 'rejected'}, {c['distance']:.1f} Å from it)"
            )
        return "\n".join(lines)
    c = report["consensus"]
    lines.append(
        f"Consensus pick {c['id']} ({c['tomogram']}, {c['particle'] or 'no class'}) of run {c['run_id']}"
    )
    lines.append(f"  position  x={c['x']:.1f} y={c['y']:.1f} z={c['z']:.1f} Å")
    lines.append(f"  support   {c['support']:g} ({c['pickers']}), status {c['status']}")
    score_bits = [f"final {c['score']:.3f}" if c["score"] is not None else "final -"]
    if c.get("vote_score") is not None:
        score_bits.append(f"vote {c['vote_score']:.3f}")
    if c.get("cnn_score") is not None:
        score_bits.append(f"cnn {c['cnn_score']:.3f}")
    if c.get("posterior") is not None:
        score_bits.append(f"P(particle) {c['posterior']:.3f} (latent-class model)")
    lines.append(f"  scores    {', '.join(score_bits)}")
    by = f" by {c['decided_by']}" if c.get("decided_by") else ""
    lines.append(
        f"  decision  {'ACCEPTED' if c['accepted'] else 'rejected'}{by}"
        + (f" ({c['reason']})" if c.get("reason") else "")
    )
    lines.append(f"  members   {len(report['members'])}")
    for m in report["members"]:
        extra = f" (duplicate of raw pick {m['duplicate_of']})" if m.get("duplicate_of") else ""
        if m.get("role") not in (None, "picker"):
            extra += f" ({m['role']} reference)"
        lines.append(
            f"    - {m['picker']}: raw pick {m['pick_id']}, {m['distance']:.1f} Å away, "
            f"{m['path']} record {m['record']}{extra}"
        )
        lines.append(f"        {m['original']}")
    by_model: dict = {}
    for s in report["model_scores"]:
        by_model.setdefault((s["model_id"], s.get("model_path")), []).append(s)
    for (model_id, path), rows in by_model.items():
        # one line per model of the decision: P(noise), P(class)…, typicality
        order = sorted(
            rows, key=lambda r: (r["particle"] != "noise", r["particle"] == "typicality")
        )
        values = ", ".join(f"{r['particle']} {r['score']:.3f}" for r in order)
        lines.append(f"  cnn       model {model_id} ({path or 'path unknown'}): {values}")
    for d in report["dropped"]:
        lines.append(f"  dropped at {d['stage']}: {d['reason']}")
    run = report["run"]
    lines.append(
        f"  run       #{run['id']} {run['command']} ({run['method']}), picks {run['version']}, seed {run['seed']}, {run['status']}"
    )
    params = run.get("params") or {}
    for key in sorted(params):
        lines.append(f"            {key} = {params[key]}")
    for e in report["exports"]:
        verb = "listed in" if e["format"] == "candidates" else "exported "
        state = "" if e.get("state", "current") == "current" else f" [{e['state']}]"
        lines.append(f"  {verb} {e['path']} ({e['format']}){state}")
    return "\n".join(lines)


def _file_state(path: str, sha256: str | None) -> str:
    """``current`` while the exported file is as written; else ``changed or replaced since``
    (a later run with ``--force``, an edit) or ``missing``."""
    from pathlib import Path

    from picks.core.files import sha256_file

    if not Path(path).is_file():
        return "missing"
    return "current" if sha256_file(Path(path)) == sha256 else "changed or replaced since"
