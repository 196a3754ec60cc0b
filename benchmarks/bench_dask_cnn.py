"""Benchmark: the CNN scoring stage on Dask (``--scheduler local:N``) vs one process.

Issue 13 asks for "the CNN scoring stage on 100k candidates": extraction of every
candidate's box from its tomogram and the network's prediction (with the typicality gate),
as ``picks aggregate --method cnn`` and ``picks rescore`` run it
(:func:`picks.workflows.per_tomogram.score_points` in one process,
:func:`~picks.workflows.per_tomogram.score_per_tomogram` on a cluster: one task per
tomogram, each worker loading the model once).

The world: ``--tomograms`` noise tomograms (float32 MRC on disk, read memory-mapped, as in a
real run) and ``--candidates`` candidate positions spread over them; the model is the
project's ~75k-parameter network (``network.build_model``), untrained (its weights do not
change the cost), saved with a card as ``picks train`` saves one. Each mode runs in its own
child process, so each pays its own TensorFlow import and model load, and reports its peak
memory. The probabilities of both modes are compared (they must be equal: the same boxes in
the same batches per tomogram).

    python benchmarks/bench_dask_cnn.py [--candidates 100000] [--tomograms 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import machine
from bench_dask import run_modes

VOXEL = 10.0
SHAPE = (128, 256, 256)  # z, y, x voxels: 32 MiB of float32 per tomogram
BOX = 32


def _write_world(root: Path, n_candidates: int, n_tomograms: int, seed: int) -> None:
    import mrcfile
    import numpy as np
    import pandas as pd

    from picks.consensus.cnn import network

    rng = np.random.default_rng(seed)
    volumes = root / "tomograms"
    volumes.mkdir()
    names = [f"TS_{i:03d}" for i in range(n_tomograms)]
    for name in names:
        with mrcfile.new(volumes / f"{name}.mrc") as mrc:
            mrc.set_data(rng.standard_normal(SHAPE, dtype=np.float32))
            mrc.voxel_size = VOXEL
    # Candidates inside the volumes, away from the faces by half a box (no edge handling).
    nz, ny, nx = SHAPE
    lo = BOX / 2 * VOXEL
    points = pd.DataFrame(
        {
            "tomogram": rng.choice(names, n_candidates),
            "x": rng.uniform(lo, nx * VOXEL - lo, n_candidates),
            "y": rng.uniform(lo, ny * VOXEL - lo, n_candidates),
            "z": rng.uniform(lo, nz * VOXEL - lo, n_candidates),
        }
    ).sort_values(["tomogram", "x"], kind="stable", ignore_index=True)
    points.to_pickle(root / "candidates.pkl")
    model = network.build_model(BOX, 6)
    card = {"box": BOX, "voxel_size": VOXEL, "classes": ["noise", "a", "b", "c", "d", "e"]}
    network.save(model, root / "model.keras", card)


def _child(root: Path, scheduler: str | None) -> dict:
    import numpy as np
    import pandas as pd

    from picks.consensus.cnn import network
    from picks.consensus.cnn.boxes import EdgePolicy, tomogram_lookup
    from picks.workflows.parallel import open_executor
    from picks.workflows.per_tomogram import score_per_tomogram, score_points

    points = pd.read_pickle(root / "candidates.pkl")
    report: dict = {"mode": scheduler or "serial", "candidates": len(points)}
    t = time.perf_counter()
    lookup = tomogram_lookup(sorted((root / "tomograms").glob("*.mrc")))
    report["headers_s"] = round(time.perf_counter() - t, 3)
    path = root / "model.keras"
    options = {
        "policy": EdgePolicy(),
        "reader": "mmap",
        "batch_size": 256,
        "typicality": False,  # an untrained model has no typicality parameters on its card
        "alpha": None,
    }
    started = time.perf_counter()
    with open_executor(scheduler) as executor:
        report["startup_s"] = round(time.perf_counter() - started, 3)
        t = time.perf_counter()
        model, card = network.load(path)
        meta = {"path": str(path), "sha256": network.sha256_file(path), "card": card}
        if executor is None:
            report["model_load_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            probs, _, dropped, spent = score_points(
                points, lookup, [{"model": model, "card": card, **meta}], **options
            )
        else:
            t = time.perf_counter()  # the workers load the model inside the stage
            probs, _, dropped, spent = score_per_tomogram(
                executor, points, lookup, [{"model": None, **meta}], **options
            )
        report["score_s"] = round(time.perf_counter() - t, 3)
    report["boxes_per_s"] = round(len(points) / report["score_s"], 1)
    report["worker_seconds"] = {k: round(v, 3) for k, v in spent.items()}
    report["dropped"] = len(dropped)
    np.save(root / f"probs-{report['mode'].replace(':', '-')}.npy", probs[0])
    report["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return report


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--tomograms", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode = None if args.child == "serial" else args.child
        print(json.dumps(_child(Path(args.root), mode)))
        return
    with tempfile.TemporaryDirectory(prefix="picks-bench-dask-cnn-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        _write_world(root, args.candidates, args.tomograms, args.seed)
        setup = time.perf_counter() - t
        runs = run_modes(__file__, root, ("serial", f"local:{args.workers}"))
        serial, dask = runs["serial"], runs[f"local:{args.workers}"]
        a = np.load(root / "probs-serial.npy")
        b = np.load(root / f"probs-local-{args.workers}.npy")
        result = {
            "machine": machine(),
            "load_average": list(__import__("os").getloadavg()),
            "setup_s": round(setup, 1),
            "runs": runs,
            "speedup_score": round(serial["score_s"] / dask["score_s"], 2),
            "identical_probabilities": bool(np.array_equal(a, b, equal_nan=True)),
            "max_abs_difference": float(np.nanmax(np.abs(a - b))) if len(a) else 0.0,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
