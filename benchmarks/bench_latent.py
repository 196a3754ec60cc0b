"""Benchmark: truth-free latent-class consensus vs pickers, union and voting on simulated worlds.

For every ``picks simulate`` folder given (or made here with ``--seeds``), reads the five
pickers' native outputs through the adapters, clusters them, and scores with the CZII metric
(per class precision / recall / F4, and F1): every picker alone, the union of the candidates,
the default vote, vote with min-support 2, and the latent-class posterior with the
expected-F-beta decision (agreement only, + scores, + the cross-class conflict feature, and
β = 1). Also prints the model's per-picker precision/recall errors against the truth.

    python benchmarks/bench_latent.py [--seeds 7 8 9] [--tomograms 3] [--work DIR] [FOLDER ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import machine


def methods(picks: pd.DataFrame, progress: dict) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Accepted picks per method, and the per-picker estimate table of the full model."""
    from picks.consensus.cluster import cluster
    from picks.consensus.decide import decide_per_class
    from picks.consensus.reliability import conflict_counts, picker_reliability
    from picks.consensus.vote import partition, support_rules
    from picks.evaluate.metric import default_radii

    out: dict[str, pd.DataFrame] = {}
    for label, group in picks.groupby("picker", sort=True):
        out[f"picker {label}"] = group
    clusters = cluster(picks, default_radii())
    cons, members = clusters.consensus, clusters.members
    out["union"] = cons
    out["vote default"] = cons[partition(cons, support_rules(picks))["accepted"].to_numpy()]
    out["vote min-support 2"] = cons[
        partition(cons, support_rules(picks, min_support=2))["accepted"].to_numpy()
    ]
    conflict = pd.DataFrame({"conflict": conflict_counts(cons)}, index=cons.index)
    fits = {}
    for name, scores, feats in (
        ("latent", False, None),
        ("latent+scores", True, None),
        ("latent+conflict", False, conflict),
        ("latent+scores+conflict", True, conflict),
    ):
        start = time.perf_counter()
        post, _, fit = picker_reliability(cons, members, picks, use_scores=scores, features=feats)
        progress[name] = progress.get(name, 0.0) + time.perf_counter() - start
        fits[name] = (post, fit)
        decision, _ = decide_per_class(cons, post, fit, 4.0)
        out[f"{name} F4"] = cons[decision["accepted"].to_numpy()]
    post, fit = fits["latent+scores"]
    decision, _ = decide_per_class(cons, post, fit, 1.0)
    out["latent+scores β=1"] = cons[decision["accepted"].to_numpy()]
    return out, (clusters, fits)


def main() -> None:
    from picks.evaluate import metric
    from picks.simulate.world import simulate
    from picks.workflows.latent_check import read_world, true_picker_rates, truth_matched

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="picks simulate output folders")
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--tomograms", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="where to simulate (kept)")
    args = parser.parse_args()
    folders = list(args.folders)
    tmp = None
    if args.seeds:
        work = args.work
        if work is None:
            tmp = tempfile.TemporaryDirectory(prefix="picks-bench-latent-")
            work = Path(tmp.name)
        for seed in args.seeds:
            folder = work / f"seed{seed}"
            if not (folder / "manifest.json").is_file():
                simulate(folder, seed=seed, n_tomograms=args.tomograms)
            folders.append(folder)
    if not folders:
        parser.error("give simulate folders or --seeds")

    radii = metric.default_radii()
    weights = metric.default_weights()
    totals: dict[str, dict[str, list[int]]] = {}
    errors = []
    timing: dict[str, float] = {}
    per_world: dict[str, dict[str, float]] = {}
    n_cands = 0
    for folder in folders:
        picks, truth = read_world(folder)
        accepted, (clusters, fits) = methods(picks, timing)
        n_cands += len(clusters.consensus)
        for name, chosen in accepted.items():
            sc = metric.score(truth, chosen, beta=4.0)
            per_world.setdefault(name, {})[folder.name] = sc.overall
            for c in sc.classes:
                acc = totals.setdefault(name, {}).setdefault(c.particle, [0, 0, 0])
                acc[0] += c.tp
                acc[1] += c.fp
                acc[2] += c.fn
        true = truth_matched(clusters.consensus, truth, radii)
        rates = true_picker_rates(clusters.consensus, clusters.members, truth, true)
        for name in ("latent", "latent+scores"):
            table = fits[name][1].picker_table().set_index(["picker", "particle"])
            joined = table.join(rates.add_suffix("_true"), how="inner")
            joined = joined[joined["n_reported"] >= 5]
            errors.append(
                pd.DataFrame(
                    {
                        "model": name,
                        "world": folder.name,
                        "recall_err": joined["recall"] - joined["recall_true"],
                        "precision_err": joined["precision"] - joined["precision_true"],
                        "weight": joined.index.get_level_values(1).map(weights).to_numpy(),
                    }
                )
            )

    classes = sorted({c for t in totals.values() for c in t})
    rows = []
    for name, per in totals.items():
        row: dict = {"method": name}
        overall4 = overall1 = 0.0
        for c in classes:
            tp, fp, fn = per.get(c, [0, 0, 0])
            p, r, f4 = metric.fbeta(tp, fp, fn, 4.0)
            f1 = metric.fbeta(tp, fp, fn, 1.0)[2]
            row[c] = f"{p:.2f}/{r:.2f}/{f4:.3f}"
            overall4 += weights.get(c, 0) * f4
            overall1 += weights.get(c, 0) * f1
        row["F4"] = overall4 / sum(weights.values())
        row["F1"] = overall1 / sum(weights.values())
        rows.append(row)
    table = pd.DataFrame(rows)
    short = {
        "apo-ferritin": "apo",
        "beta-amylase": "b-amy(w0)",
        "beta-galactosidase": "b-gal",
        "ribosome": "ribo",
        "thyroglobulin": "thyro",
        "virus-like-particle": "vlp",
    }
    table = table.rename(columns=short)
    print(f"# {len(folders)} worlds ({', '.join(f.name for f in folders)}), {n_cands} candidates")
    print(f"# machine: {machine()}")
    print("# per class: precision/recall/F4 micro-averaged over worlds; F4, F1: CZII weighted")
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n# overall F4 per world")
    with pd.option_context("display.width", 250):
        print(pd.DataFrame(per_world).T.to_string(float_format=lambda v: f"{v:.3f}"))
    err = pd.concat(errors)
    print("\n# model vs truth-matched per (picker, class) with ≥ 5 reports (scored classes)")
    for name, group in err.groupby("model", sort=False):
        s = group[group["weight"] > 0]
        print(
            f"{name:15s} n={len(s):3d}  |recall err| median {s['recall_err'].abs().median():.3f}"
            f" max {s['recall_err'].abs().max():.3f};  |precision err| median "
            f"{s['precision_err'].abs().median():.3f} max {s['precision_err'].abs().max():.3f}"
        )
    print("\n# fit time (s, all worlds): " + ", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
