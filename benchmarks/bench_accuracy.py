"""Benchmark: the accuracy dashboard — every picker and every consensus method on several worlds.

Worlds (``--worlds``, comma-separated):

* ``sim-<seed>x<n>``: ``picks simulate --seed <seed> --tomograms <n> --size 160 160 64``
  (picks' own simulator: CTF, wedge, gold beads, contamination, a vesicle);
  the default set is ``sim-11x3,sim-12x3,sim-13x5``;
* ``polnet``: the independent polnet fixture (``../shared/fixtures/data/polnet-czii-analog``,
  two 320 × 320 × 128 tomograms made from real PDB structures by polnet, bright particles,
  no CTF); the pickers come from ``picks simulate-pickers`` (``--contrast auto``, no CTF);
* ``polnet@<seed>``: the same, the pickers run with another seed (``polnet`` is seed 0). The
  default set includes ``polnet@2``, the one world of docs/accuracy.md where the default is
  below its best picker (pickers that share labels).

For each world it scores, with the CZII metric (:mod:`picks.evaluate.metric`) at β = 4 and
β = 1, per class and overall: every simulated picker alone; ``union`` (every clustered
candidate: vote with min-support 1); ``vote`` (the default vote); ``vote-k`` for every
min-support k = 2 … n pickers; ``cnn``; ``auto`` (the default method, with the tomograms,
whatever it resolves to) and ``auto-nt`` (the default without tomograms); and any method
given by ``--methods`` that the installed picks knows. Each method runs :func:`aggregate`
into a fresh store, so every wall time includes the import of the picker files.

On ``picks simulate`` worlds it also counts the consensus candidates that sit on a gold bead
or contamination (and on no particle): how many each method accepted and rejected. Where a
run's ``summary.json`` carries truth-free estimates per class (``expected_fbeta``,
``expected_precision``, ``expected_recall``: the latent-class runs, ``latent.classes``) the
dashboard prints them beside the measured values of the scored classes, with how many lie
within ±0.05 (the calibration check of issue #10 §3).

    python benchmarks/bench_accuracy.py --out docs/accuracy-run.md [--quick] [--skip-cnn]
        [--worlds sim-11x3,polnet] [--methods latent] [--work DIR]

Writes the markdown dashboard to ``--out`` and everything as JSON next to it (``.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
POLNET = REPO.parent / "shared" / "fixtures" / "data" / "polnet-czii-analog"
DEFAULT_WORLDS = "sim-11x3,sim-12x3,sim-13x5,polnet,polnet@2"
QUICK_WORLDS = "sim-11x2,polnet-crop"
SIM_SIZE = (160, 160, 64)
# A candidate this close to a decoy centre (and not within 0.5 × radius of a true particle)
# counts as "on" it: bead radius 50 Å + 60 Å (the simulator's own diagnostic distance);
# contamination clusters reach ≈ 220 Å from their first centre.
BEAD_REACH = 110.0
CONTAMINATION_REACH = 260.0
BETAS = (4.0, 1.0)


@dataclass
class World:
    name: str
    folder: Path  # a simulate / simulate-pickers output folder (manifest.json)
    truth: pd.DataFrame
    tomograms: Path
    voxel_size: float
    decoys: pd.DataFrame | None  # picks simulate worlds only
    n_tomograms: int
    seconds: float


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpu": bool(os.environ.get("CUDA_VISIBLE_DEVICES")),
    }


def make_world(name: str, work: Path, say) -> World:
    """Simulate a ``sim-<seed>x<n>`` world or run the pickers on the polnet fixture."""
    from picks.workflows import evaluate as evaluate_mod

    start = time.perf_counter()
    folder = work / name
    if name.startswith("sim-"):
        from picks.simulate.world import simulate

        seed, _, count = name[4:].partition("x")
        result = simulate(folder, seed=int(seed), n_tomograms=int(count or 3), size=SIM_SIZE)
        truth = evaluate_mod.read_picks_files([result.truth_csv], adapter="czii-csv")
        decoys = pd.read_csv(folder / "decoys.csv")
        return World(
            name,
            folder,
            truth,
            folder / "tomograms",
            10.0,
            decoys,
            len(result.tomograms),
            time.perf_counter() - start,
        )
    base, _, picker_seed = name.partition("@")
    if base in ("polnet", "polnet-crop") and (not picker_seed or picker_seed.isdigit()):
        from picks.simulate import volume as sv
        from picks.simulate.external import run_pickers

        if not (POLNET / "ground_truth.csv").is_file():
            raise FileNotFoundError(f"the polnet fixture is not at {POLNET}")
        sources = [
            (f"polnet_czii_0{i}", POLNET / f"polnet_czii_0{i}" / "tomogram_snr0.5.mrc")
            for i in (1, 2)
        ]
        truth = pd.read_csv(POLNET / "ground_truth.csv").rename(
            columns={"experiment": "tomogram", "particle_type": "particle"}
        )[["tomogram", "particle", "x", "y", "z"]]
        if base == "polnet-crop":
            sources, truth = crop_polnet(sources, truth, work / "polnet-crop-input")
        result = run_pickers(
            sources,
            folder,
            seed=int(picker_seed or 0),
            contrast="auto",
            optics=sv.Optics(defocus=0.0),
            say=say,
        )
        return World(
            name,
            folder,
            truth,
            folder / "tomograms",
            result.tomograms[0].voxel_size,
            None,
            len(result.tomograms),
            time.perf_counter() - start,
        )
    raise SystemExit(
        f"unknown world {name!r}: expected sim-<seed>x<n>, polnet or polnet-crop "
        "(polnet@<seed>: the pickers run with another seed)"
    )


def crop_polnet(
    sources: list[tuple[str, Path]], truth: pd.DataFrame, folder: Path, size: int = 192
) -> tuple[list[tuple[str, Path]], pd.DataFrame]:
    """The central ``size`` × ``size`` voxels (full thickness) of each polnet tomogram and the
    truth inside them (shifted to the crop's frame): a quicker, smaller polnet world."""
    import mrcfile

    folder.mkdir(parents=True, exist_ok=True)
    out_sources, frames = [], []
    for name, path in sources:
        with mrcfile.open(path, permissive=True) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32)
            voxel = float(mrc.voxel_size.x)
        ny, nx = data.shape[1:]
        y0, x0 = (ny - size) // 2, (nx - size) // 2
        crop = data[:, y0 : y0 + size, x0 : x0 + size]
        target = folder / f"{name}.mrc"
        with mrcfile.new(target, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(crop))
            mrc.voxel_size = voxel
        out_sources.append((name, target))
        rows = truth[truth["tomogram"] == name].copy()
        rows["x"] -= x0 * voxel
        rows["y"] -= y0 * voxel
        inside = rows["x"].between(0, (size - 1) * voxel) & rows["y"].between(0, (size - 1) * voxel)
        frames.append(rows[inside])
    return out_sources, pd.concat(frames, ignore_index=True)


def method_plan(n_pickers: int, extra: list[str], skip_cnn: bool) -> list[dict]:
    """The consensus runs: label, aggregate keyword arguments, whether the tomograms go in."""
    from picks.workflows import aggregate as pipeline

    plan = [
        {"label": "union", "method": "vote", "min_support": 1, "tomograms": False},
        {"label": "vote", "method": "vote", "min_support": None, "tomograms": False},
    ]
    plan += [
        {"label": f"vote-{k}", "method": "vote", "min_support": k, "tomograms": False}
        for k in range(2, n_pickers + 1)
    ]
    plan.append({"label": "cnn", "method": "cnn", "min_support": None, "tomograms": True})
    plan.append({"label": "auto", "method": "auto", "min_support": None, "tomograms": True})
    plan.append({"label": "auto-nt", "method": "auto", "min_support": None, "tomograms": False})
    for spec in extra:
        # "latent" or "latent:beta=1:picker_scores=true" or
        # "latent:objective=precision@recall=0.8": a method and aggregate() options
        name, *options = spec.split(":")
        kwargs = {}
        for option in options:
            key, _, value = option.partition("=")
            kwargs[key] = _option_value(value)
            if key == "objective":  # "latent:objective=precision@recall=0.8", as on the CLI
                from picks.cli.objective import parse_objective

                kwargs[key] = parse_objective(value)
        plan.append(
            {
                "label": spec,
                "method": name,
                "min_support": None,
                "tomograms": True,
                "kwargs": kwargs,
            }
        )
    for entry in plan:
        if entry["method"] not in pipeline.METHODS:
            entry["skip"] = f"method {entry['method']!r} is not known to this picks"
        resolved = _resolves_to(entry)
        entry["resolves_to"] = resolved
        if skip_cnn and resolved == "cnn":
            entry["skip"] = "--skip-cnn"
    return plan


def _option_value(text: str) -> object:
    """``true``/``false``, a number, or the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _resolves_to(entry: dict) -> str:
    """What ``method`` becomes with or without tomograms (the pipeline's own rule)."""
    from picks.workflows import aggregate as pipeline

    if entry["method"] not in pipeline.METHODS:
        return entry["method"]
    try:
        return pipeline._resolve_method(entry["method"], entry["tomograms"], [])
    except Exception:  # e.g. cnn without tomograms: the run itself will say why
        return entry["method"]


def score_rows(truth: pd.DataFrame, picks: pd.DataFrame) -> dict:
    """CZII metric at each β: overall, and per class F, precision, recall, TP/FP/FN."""
    from picks.evaluate import metric

    out: dict = {"n": len(picks)}
    for beta in BETAS:
        s = metric.score(truth, picks, beta=beta)
        key = f"f{beta:g}"
        out[key] = s.overall
        if beta == BETAS[0]:
            out["classes"] = {
                c.particle: {
                    "precision": c.precision,
                    "recall": c.recall,
                    key: c.fbeta,
                    "tp": c.tp,
                    "fp": c.fp,
                    "fn": c.fn,
                    "weight": c.weight,
                }
                for c in s.classes
            }
            tp, fp, fn = (sum(getattr(c, k) for c in s.classes) for k in ("tp", "fp", "fn"))
            out["precision"], out["recall"], _ = metric.fbeta(tp, fp, fn, beta)
        else:
            for c in s.classes:
                out["classes"][c.particle][key] = c.fbeta
    return out


def decoy_counts(world: World, candidates: pd.DataFrame) -> dict | None:
    """Consensus candidates on a bead / on contamination (and on no true particle)."""
    if world.decoys is None:
        return None
    from scipy.spatial import cKDTree

    from picks.evaluate.metric import default_radii

    radii = default_radii()
    out = {}
    for kind, reach, key in (
        ("gold-bead", BEAD_REACH, "beads"),
        ("contamination", CONTAMINATION_REACH, "contamination"),
    ):
        accepted = rejected = 0
        for tomogram, group in candidates.groupby("tomogram"):
            decoys = world.decoys[
                (world.decoys["tomogram"] == tomogram) & (world.decoys["kind"] == kind)
            ]
            if not len(decoys) or not len(group):
                continue
            xyz = group[["x", "y", "z"]].to_numpy(float)
            near, _ = cKDTree(decoys[["x", "y", "z"]].to_numpy(float)).query(xyz)
            on = near <= reach
            truth = world.truth[world.truth["tomogram"] == tomogram]
            if len(truth):
                d, j = cKDTree(truth[["x", "y", "z"]].to_numpy(float)).query(xyz)
                r = truth["particle"].map(radii).to_numpy(float)[j]
                on &= d > 0.5 * r
            acc = group["accepted"].to_numpy(bool)
            accepted += int((on & acc).sum())
            rejected += int((on & ~acc).sum())
        out[key] = {"accepted": accepted, "rejected": rejected}
    return out


def picker_estimates(summary_path: Path) -> list[dict]:
    """The latent-class model's per-picker, per-class estimates in a run's summary.json."""
    try:
        data = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return []
    latent = data.get("latent") or {}
    return [r for r in latent.get("pickers", []) if r.get("particle")]


def estimate_errors(world: dict, label: str) -> list[dict]:
    """Estimated (no truth) vs measured precision and recall of every picker and class."""
    row = world["rows"].get(label, {})
    out = []
    for est in row.get("picker_estimates") or []:
        measured = (
            world["rows"].get(f"picker:{est['picker']}", {}).get("classes", {}).get(est["particle"])
        )
        if not measured:
            continue
        out.append(
            {
                "picker": est["picker"],
                "particle": est["particle"],
                "precision": est.get("precision"),
                "measured_precision": measured["precision"],
                "recall": est.get("recall"),
                "measured_recall": measured["recall"],
            }
        )
    return out


def expected_scores(summary_path: Path) -> dict[str, dict]:
    """Truth-free per-class estimates from a run's summary.json, wherever they are.

    Looks for mappings that carry ``expected_fbeta`` (and optionally ``expected_precision`` /
    ``expected_recall``) with a class key (``particle``, ``class`` or ``particle_type``), or a
    mapping ``{class: {expected_fbeta: ...}}``. Rows per tomogram are averaged (noted).
    """
    if not summary_path.is_file():
        return {}
    try:
        data = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, list[dict]] = {}
    keys = ("expected_fbeta", "expected_precision", "expected_recall", "expected_fbeta_sd")

    def visit(node, parent_key: str | None = None) -> None:
        if isinstance(node, dict):
            if "expected_fbeta" in node:
                particle = node.get("particle", node.get("class", node.get("particle_type")))
                particle = particle if particle is not None else parent_key
                if particle is not None:
                    found.setdefault(str(particle), []).append(
                        {
                            k: float(node[k])
                            for k in keys
                            if isinstance(node.get(k), int | float) and math.isfinite(node[k])
                        }
                        | {"tomogram": node.get("tomogram")}
                    )
            for key, value in node.items():
                visit(value, str(key))
        elif isinstance(node, list):
            for value in node:
                visit(value, parent_key)

    visit(data)
    out = {}
    for particle, rows in found.items():
        overall = [r for r in rows if r.get("tomogram") is None] or rows
        entry = {
            k: float(np.mean([r[k] for r in overall if k in r]))
            for k in keys
            if any(k in r for r in overall)
        }
        entry["rows"] = len(overall)
        out[particle] = entry
    return out


def inputs_for(world: World, *, with_tomograms: bool) -> list:
    """The world's picker inputs (per file, with voxel sizes and names, when no tomograms)."""
    from picks.workflows.demo import aggregate_inputs

    return aggregate_inputs(world.folder, voxel_size=None if with_tomograms else world.voxel_size)


def run_world(world: World, plan: list[dict], work: Path, say) -> dict:
    from picks.core.store import Store
    from picks.workflows import evaluate as evaluate_mod
    from picks.workflows.aggregate import aggregate
    from picks.workflows.demo import aggregate_inputs

    inputs = aggregate_inputs(world.folder)
    pickers = sorted({spec.label for spec in inputs})
    rows: dict[str, dict] = {}
    done: dict[tuple, str] = {}
    for entry in plan:
        label = entry["label"]
        if entry.get("skip"):
            rows[label] = {"kind": "consensus", "skipped": entry["skip"]}
            say(f"{world.name}: {label}: skipped ({entry['skip']})")
            continue
        # A method that resolves to a run already made (auto -> cnn, auto-nt -> vote) is the
        # same run: deterministic, so it is not repeated.
        key = (
            entry["resolves_to"],
            entry["min_support"],
            entry["tomograms"],
            tuple(sorted(entry.get("kwargs", {}).items())),
        )
        if key in done:
            rows[label] = {**rows[done[key]], "same_as": done[key]}
            say(f"{world.name}: {label}: resolves to {entry['resolves_to']} = {done[key]}")
            continue
        say(f"{world.name}: {label} ...")
        folder = work / "runs" / world.name / label
        start = time.perf_counter()
        try:
            with Store(folder / "picks.db") as store:
                result = aggregate(
                    store,
                    inputs_for(world, with_tomograms=entry["tomograms"]),
                    out=folder / "out",
                    tomograms=[world.tomograms] if entry["tomograms"] else (),
                    formats=["csv"],
                    method=entry["method"],
                    min_support=entry["min_support"],
                    seed=0,
                    **entry.get("kwargs", {}),
                )
                seconds = time.perf_counter() - start
                candidates = evaluate_mod.consensus_picks(store, result.run_id)
                if not rows.get("_pickers_done"):
                    for picker, picks in evaluate_mod.store_pickers(store).items():
                        rows[f"picker:{picker}"] = {
                            "kind": "picker",
                            **score_rows(world.truth, picks),
                        }
                    rows["_pickers_done"] = {"kind": "marker"}
        except Exception as exc:  # one failing method must not hide the others
            rows[label] = {"kind": "consensus", "skipped": f"failed: {exc}"}
            say(f"{world.name}: {label}: FAILED {exc}")
            continue
        accepted = candidates[candidates["accepted"]]
        row = {
            "kind": "consensus",
            "method": result.method,
            "seconds": round(seconds, 2),
            "candidates": len(candidates),
            **score_rows(world.truth, accepted),
            "decoys": decoy_counts(world, candidates),
            "expected": expected_scores(folder / "out" / "summary.json"),
            "picker_estimates": picker_estimates(folder / "out" / "summary.json"),
        }
        rows[label] = row
        done[key] = label
        say(f"{world.name}: {label}: F4 {row['f4']:.3f}  F1 {row['f1']:.3f}  {seconds:.1f} s")
    rows.pop("_pickers_done", None)
    return {
        "world": world.name,
        "tomograms": world.n_tomograms,
        "truth_particles": len(world.truth),
        "pickers": pickers,
        "seconds_to_make": round(world.seconds, 1),
        "rows": rows,
    }


# -- markdown ------------------------------------------------------------------------------
def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    lines = [
        "# Accuracy dashboard",
        "",
        f"Machine: {report['machine']['cpus']} CPU cores, "
        f"{'GPU' if report['machine']['gpu'] else 'no GPU'}, Python {report['machine']['python']}"
        f"; total {report['seconds']:.0f} s. Command: `{report['command']}`",
        "",
    ]
    worlds = report["worlds"]
    labels: list[str] = []
    for world in worlds:
        for label in world["rows"]:
            if label not in labels:
                labels.append(label)
    for key, title in (
        ("f4", "Overall CZII F4 (β = 4, the metric's class weights)"),
        ("f1", "Overall CZII F1 (β = 1, same weights)"),
    ):
        lines += [f"## {title}", ""]
        header = ["method", *[w["world"] for w in worlds], "mean"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label in labels:
            values = [world["rows"].get(label, {}).get(key) for world in worlds]
            scored = [v for v in values if v is not None]
            mean = float(np.mean(scored)) if len(scored) == len(worlds) else None
            cells = [
                _f(v) if v is not None else _skip_note(w["rows"].get(label))
                for v, w in zip(values, worlds, strict=True)
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {_f(mean)} |")
        lines.append("")
    for world in worlds:
        lines += [
            "",
            f"## World {world['world']}: {world['tomograms']} tomograms, "
            f"{world['truth_particles']} true particles",
            "",
            "| method | F4 | F1 | precision | recall | picks | candidates | beads acc/rej "
            "| contamination acc/rej | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, row in world["rows"].items():
            if "skipped" in row:
                lines.append(f"| {label} | skipped: {row['skipped']} |||||||||")
                continue
            decoys = row.get("decoys") or {}
            beads = decoys.get("beads")
            cont = decoys.get("contamination")
            seconds = row.get("seconds")
            if "same_as" in row:
                seconds = f"= {row['same_as']}"
            lines.append(
                f"| {label} | {_f(row['f4'])} | {_f(row['f1'])} | {_f(row['precision'])} "
                f"| {_f(row['recall'])} | {row['n']} | {row.get('candidates', '')} "
                f"| {_pair(beads)} | {_pair(cont)} "
                f"| {seconds if seconds is not None else ''} |"
            )
        classes = sorted({c for row in world["rows"].values() for c in (row.get("classes") or {})})
        lines += [
            "",
            f"Per class (F4 / precision / recall) in {world['world']}:",
            "",
            "| method | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for label, row in world["rows"].items():
            if "skipped" in row:
                continue
            cells = []
            for c in classes:
                entry = row["classes"].get(c)
                cells.append(
                    f"{entry['f4']:.2f} / {entry['precision']:.2f} / {entry['recall']:.2f}"
                    if entry
                    else ""
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += _calibration_lines(world)
        lines += _estimate_lines(world)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


def calibration(world: dict, label: str, tolerance: float = 0.05) -> dict:
    """Expected (truth-free, from summary.json) against measured F4, precision and recall of
    one method's scored classes (weight > 0): per class, and how many lie within
    ``tolerance`` (issue #10 §3: ±0.05)."""
    row = world["rows"].get(label, {})
    classes = []
    for c, est in sorted((row.get("expected") or {}).items()):
        got = (row.get("classes") or {}).get(c)
        if not got or not got.get("weight"):
            continue
        pairs = {
            "f4": (est.get("expected_fbeta"), got.get("f4")),
            "precision": (est.get("expected_precision"), got.get("precision")),
            "recall": (est.get("expected_recall"), got.get("recall")),
        }
        classes.append(
            {
                "particle": c,
                "sd": est.get("expected_fbeta_sd"),
                **{f"expected_{k}": e for k, (e, _) in pairs.items()},
                **{f"measured_{k}": m for k, (_, m) in pairs.items()},
                **{
                    f"within_{k}": e is not None and m is not None and abs(e - m) <= tolerance
                    for k, (e, m) in pairs.items()
                },
            }
        )
    counts = {k: sum(c[f"within_{k}"] for c in classes) for k in ("f4", "precision", "recall")}
    return {"method": label, "classes": classes, "within": counts, "tolerance": tolerance}


def _calibration_lines(world: dict) -> list[str]:
    """Per method with truth-free estimates: expected vs measured per scored class."""
    lines: list[str] = []
    for label, row in world["rows"].items():
        if not row.get("expected") or row.get("same_as"):
            continue
        cal = calibration(world, label)
        if not cal["classes"]:
            continue
        n, w = len(cal["classes"]), cal["within"]
        lines += [
            "",
            f"Expected (truth-free, summary.json) vs measured, {label} in {world['world']}: "
            f"within ±{cal['tolerance']:g} in {w['f4']} of {n} scored classes (F4), "
            f"{w['precision']} (precision), {w['recall']} (recall).",
            "",
            "| class | expected F4 (± sd) | measured F4 | expected P | measured P "
            "| expected R | measured R |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in cal["classes"]:
            sd = f" ± {c['sd']:.3f}" if c["sd"] is not None else ""
            lines.append(
                f"| {c['particle']} | {_f(c['expected_f4'])}{sd} | {_f(c['measured_f4'])} "
                f"| {_f(c['expected_precision'])} | {_f(c['measured_precision'])} "
                f"| {_f(c['expected_recall'])} | {_f(c['measured_recall'])} |"
            )
    return lines


def _estimate_lines(world: dict) -> list[str]:
    """Per picker and class: the model's truth-free estimates against the measured values."""
    label = next(
        (k for k, r in world["rows"].items() if r.get("picker_estimates") and k.startswith("auto")),
        next((k for k, r in world["rows"].items() if r.get("picker_estimates")), None),
    )
    rows = estimate_errors(world, label) if label else []
    if not rows:
        return []
    errors = [
        abs(r[a] - r[f"measured_{a}"])
        for r in rows
        for a in ("precision", "recall")
        if r[a] is not None
    ]
    within = sum(e <= 0.10 for e in errors)
    lines = [
        "",
        f"Picker reliability estimated without truth ({label}) vs measured in {world['world']}: "
        f"|error| median {np.median(errors):.3f}, max {max(errors):.3f}; {within} of "
        f"{len(errors)} estimates within ±0.10.",
        "",
        "| picker | class | est. precision | measured | est. recall | measured |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['picker']} | {r['particle']} | {_f(r['precision'])} | "
            f"{_f(r['measured_precision'])} | {_f(r['recall'])} | {_f(r['measured_recall'])} |"
        )
    return lines


def _pair(counts: dict | None) -> str:
    return f"{counts['accepted']}/{counts['rejected']}" if counts else ""


def _skip_note(row: dict | None) -> str:
    if not row:
        return "—"
    return "skipped" if "skipped" in row else "—"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="markdown dashboard to write")
    parser.add_argument(
        "--worlds", default=None, help=f"comma-separated (default {DEFAULT_WORLDS})"
    )
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_WORLDS}: a few minutes")
    parser.add_argument(
        "--methods",
        default="",
        help="extra aggregate methods, comma-separated, each with optional aggregate() options: "
        "latent:beta=1:picker_scores=true",
    )
    parser.add_argument("--skip-cnn", action="store_true", help="skip methods that run the CNN")
    parser.add_argument("--work", type=Path, default=None, help="keep the worlds and runs here")
    args = parser.parse_args(argv)

    worlds = (args.worlds or (QUICK_WORLDS if args.quick else DEFAULT_WORLDS)).split(",")
    extra = [m for m in args.methods.split(",") if m]

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="picks-accuracy-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for name in worlds:
            say(f"== world {name}")
            try:
                world = make_world(name.strip(), work, say)
            except FileNotFoundError as exc:
                say(f"{name}: skipped ({exc})")
                continue
            plan = method_plan(len(_pickers_of(world)), extra, args.skip_cnn)
            results.append(run_world(world, plan, work, say))
    report = {
        "benchmark": "accuracy dashboard",
        "command": "python benchmarks/bench_accuracy.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "seconds": time.perf_counter() - start,
        "betas": list(BETAS),
        "worlds": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(report), encoding="utf-8")
    args.out.with_suffix(".json").write_text(
        json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8"
    )
    say(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return report


def _pickers_of(world: World) -> list[str]:
    manifest = json.loads((world.folder / "manifest.json").read_text(encoding="utf-8"))
    return [p["label"] for p in manifest["pickers"]]


if __name__ == "__main__":
    main()
