"""Benchmark and proof of the CNN method: whole ``picks aggregate`` on ``picks simulate`` data.

Runs the aggregate pipeline (import → cluster → noise → CNN → write) on a simulated dataset,
times every stage, and scores the result with the CZII F-beta against the simulation's ground
truth, next to voting, every single picker and "all candidates". It also reports what
happened to the gold-bead candidates (consensus picks within 100 Å of a bead that no true
particle explains), in particular those that two or more pickers agreed on.

    python benchmarks/bench_cnn.py DATA [--simulate-args "--tomograms 7 --size 464 464 184"]
        [--epochs 30] [--device auto] [--threshold T] [--json results.json]

DATA is a ``picks simulate`` output folder; it is simulated first when missing (the
simulation is timed but not counted in the pipeline). Stage times come from wrapping the
pipeline's own functions (benchmark-only monkeypatching; nothing in the package changes) and
from the timings :func:`picks.workflows.rescore.rescore_consensus` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def timed(module, name: str, times: dict, key: str) -> None:
    """Replace ``module.name`` by a wrapper adding its run time to ``times[key]``."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times[key] = times.get(key, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)


def bead_positions(data: Path) -> dict[str, np.ndarray]:
    """Gold-bead centres (Å) per tomogram: from the manifest when it lists them, else
    recomputed from the simulation seed exactly as ``picks simulate`` placed them."""
    manifest = json.loads((data / "manifest.json").read_text())
    out: dict[str, np.ndarray] = {}
    for tomo in manifest["tomograms"]:
        beads = tomo.get("beads") or (tomo.get("decoys") or {}).get("beads")
        if beads is not None:
            out[tomo["name"]] = np.asarray(beads, dtype=float).reshape(-1, 3)
    if len(out) == len(manifest["tomograms"]):
        return out
    decoys = data / "decoys.csv"
    if decoys.exists():
        table = pd.read_csv(decoys)
        kind = table["kind"] if "kind" in table else table.get("type")
        table = table[kind.astype(str).str.contains("bead")]
        name = "tomogram" if "tomogram" in table else "experiment"
        return {t: g[["x", "y", "z"]].to_numpy(float) for t, g in table.groupby(name)}
    from picks.simulate import volume as sv

    n = len(manifest["tomograms"])
    _, *seeds = np.random.SeedSequence(manifest["seed"]).spawn(n + 1)
    for tomo, seed in zip(manifest["tomograms"], seeds, strict=True):
        scene_rng = np.random.default_rng(seed.spawn(3)[0])
        scene = sv.place_scene(scene_rng, tuple(manifest["size"]), manifest["voxel_size"])
        out[tomo["name"]] = scene.beads
    return out


def label_candidates(
    cons: pd.DataFrame, truth: pd.DataFrame, beads: dict, radii: dict
) -> np.ndarray:
    """What each consensus pick sits on: particle (right class), wrong-class, bead or noise."""
    from scipy.spatial import cKDTree

    on = np.full(len(cons), "noise", dtype=object)
    for name, group in cons.groupby("tomogram"):
        xyz = group[["x", "y", "z"]].to_numpy(float)
        ref = truth[truth["tomogram"] == name]
        label = np.full(len(group), "noise", dtype=object)
        hit = np.zeros(len(group), dtype=bool)
        if len(ref):
            d, k = cKDTree(ref[["x", "y", "z"]].to_numpy(float)).query(xyz)
            cls = ref["particle"].to_numpy()[k]
            hit = d <= 0.5 * np.array([radii[c] for c in cls])
            label[hit] = np.where(
                cls[hit] == group["particle"].to_numpy()[hit], "particle", "wrong-class"
            )
        b = beads.get(name)
        if b is not None and len(b):
            db, _ = cKDTree(b).query(xyz)
            label[(db <= 100.0) & ~hit] = "bead"
        on[cons.index.get_indexer(group.index)] = label
    return on


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--simulate-args", default="--tomograms 7 --size 464 464 184 --no-bin2")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the store and outputs.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--train-boxes", default=None, help="Training budget per round (none: epochs only)."
    )
    parser.add_argument(
        "--pool-per-positive", default=None, help="Hard-negative pool bound (none: unbounded)."
    )
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    results: dict = {"machine": machine(), "data": str(args.data)}
    if not (args.data / "manifest.json").exists():
        from picks.cli import get_app

        start = time.perf_counter()
        get_app()(
            ["simulate", str(args.data), *shlex.split(args.simulate_args)], standalone_mode=False
        )
        results["simulate_seconds"] = time.perf_counter() - start
    data = args.data.resolve()
    work = (args.work or data / "bench-work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    db = work / "picks.db"
    if db.exists():
        db.unlink()

    # TensorFlow is imported where `picks aggregate` imports it (its CNN stage), so the stages
    # before it run as in a user's run (forked children only start while it is not loaded);
    # its import time is measured alone in a fresh process, for information (≈ 4 s), and is
    # inside pipeline_seconds.
    import subprocess

    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from picks.consensus.cnn.device import tensorflow; tensorflow()"],
        check=True,
        capture_output=True,
    )
    times: dict[str, float] = {"tensorflow import": time.perf_counter() - start}
    from picks.consensus.cnn.options import CnnOptions
    from picks.core.store import Store
    from picks.evaluate import metric
    from picks.simulate.world import picker_inputs
    from picks.workflows import aggregate as pipeline
    from picks.workflows import noise as noise_mod

    timed(pipeline, "_import_inputs", times, "import")
    timed(pipeline, "cluster_on_two_cores", times, "cluster")
    timed(Store, "add_consensus", times, "store consensus")
    timed(noise_mod, "noise_for_run", times, "noise")
    timed(pipeline, "write_run_outputs", times, "writing")
    items = picker_inputs(data)
    inputs = [f"{i['label']}={i['path']}" for i in items]
    options = {f"{i['label']}={i['path']}": i["options"] for i in items}
    bounds = {  # the defaults unless given; "none" lifts a bound (the behaviour before them)
        name: None if value.lower() == "none" else float(value)
        for name, value in (
            ("train_boxes", args.train_boxes),
            ("pool_per_positive", args.pool_per_positive),
        )
        if value is not None
    }
    cnn = CnnOptions(epochs=args.epochs, device=args.device, threshold=args.threshold, **bounds)
    start = time.perf_counter()
    with Store(db) as store:
        result = pipeline.aggregate(
            store,
            inputs,
            out=work / "consensus",
            tomograms=[data / "tomograms"],
            formats=["czii-csv"],
            method="cnn",
            input_options=options,
            seed=args.seed,
            cnn=cnn,
            force=True,
        )
        total = time.perf_counter() - start
        cnn = result.cnn if isinstance(result.cnn, dict) else {}
        for key, value in (cnn.get("timings") or {}).items():
            times[f"cnn {key}"] = value
        cons = pd.read_sql_query(
            "SELECT c.*, (SELECT COUNT(DISTINCT picker) FROM consensus_members m "
            "WHERE m.consensus_id = c.id) AS n_pickers FROM consensus c WHERE run_id = ?",
            store.db.conn,
            params=[result.run_id],
        )
        picks = store.picks(roles=("picker",))
    cnn_seconds = sum(v for k, v in times.items() if k.startswith("cnn ") and k != "cnn score")
    other = total - sum(v for k, v in times.items() if k not in ("tensorflow import", "cnn score"))
    times["other (vote, references, records)"] = other
    results.update(
        pipeline_seconds=total,
        stages=times,
        n_picks=result.n_picks,
        n_candidates=len(cons),
        pickers=result.pickers,
        n_tomograms=int(cons["tomogram"].nunique()),
        cnn_seconds=cnn_seconds,
        train=cnn.get("train"),
        geometry=cnn.get("geometry"),
        device=cnn.get("device"),
        predict_samples_per_s=cnn.get("predict_samples_per_s"),
        scoring_samples_per_s=cnn.get("scoring_samples_per_s"),
    )

    truth = pd.read_csv(data / "ground_truth.csv").rename(
        columns={"experiment": "tomogram", "particle_type": "particle"}
    )
    radii = metric.default_radii()
    fbeta = {
        "cnn (accepted)": metric.score(truth, cons[cons["accepted"] == 1]).overall,
        "voting (status positive)": metric.score(truth, cons[cons["status"] == "positive"]).overall,
        "all candidates": metric.score(truth, cons).overall,
    }
    for picker, group in picks.groupby("picker"):
        fbeta[f"picker {picker}"] = metric.score(truth, group).overall
    results["fbeta"] = fbeta
    curve = metric.threshold_curve(
        truth,
        cons.assign(score=cons["cnn_score"].fillna(-1.0)),
        thresholds=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    )
    results["cnn_threshold_curve"] = curve[
        ["threshold", "n_picks", "precision", "recall", "fbeta"]
    ].to_dict("records")
    on = label_candidates(cons, truth, bead_positions(data), radii)
    cons["on"] = on
    beads = cons[cons["on"] == "bead"]
    agreed = beads[beads["n_pickers"] >= 2]
    results["beads"] = {
        "candidates": len(beads),
        "agreed_by_2_or_more": len(agreed),
        "rejected_of_agreed": float(1 - agreed["accepted"].mean()) if len(agreed) else None,
        "rejected_of_all": float(1 - beads["accepted"].mean()) if len(beads) else None,
        "voting_rejected_of_agreed": float((agreed["status"] != "positive").mean())
        if len(agreed)
        else None,
    }
    results["accepted_by_kind"] = (
        cons.groupby("on")["accepted"].agg(["size", "mean"]).round(3).to_dict("index")
    )
    print(json.dumps(results, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
