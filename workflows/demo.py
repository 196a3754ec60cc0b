"""``picks demo``: simulate a small world, aggregate its pickers, score everything.

The folder it fills (``picks-demo`` by default)::

    data/            picks simulate output (tomograms, ground truth, pickers, manifest)
    picks.db         the provenance store
    consensus/       the consensus picks (aggregate's formats + czii-csv), summary.json
    evaluation.json  per source CZII F-beta (the printed table)
    evaluation.png   precision/recall vs score threshold per source

Running it again replaces these (and only these); a non-empty folder that is not a demo is
refused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from picks.core.defaults import DEFAULT_DB
from picks.core.errors import PicksError
from picks.evaluate.metric import Evaluated
from picks.evaluate.plots import plot_curves
from picks.simulate.world import (
    DEFAULT_SEED,
    DEFAULT_SIZE,
    DEFAULT_SNR,
    SimulationResult,
    picker_inputs,
    simulate,
)
from picks.workflows import evaluate as evaluate_mod

DEMO_ENTRIES = (
    "data",
    "picks.db",
    "picks.db-wal",
    "picks.db-shm",
    "consensus",
    "evaluation.json",
    "evaluation.png",
)


@dataclass
class DemoResult:
    folder: Path
    simulation: SimulationResult
    db: Path
    aggregate: Any  # picks.workflows.aggregate.AggregateResult
    results: list[Evaluated] = field(repr=False)
    evaluation: Path = Path()
    plot: Path | None = None


def aggregate_inputs(
    simulation: SimulationResult | Path, *, voxel_size: float | None = None
) -> list:
    """The simulated pickers as :class:`~picks.workflows.aggregate.InputSpec` inputs.

    For a run **without** tomograms give ``voxel_size`` (Å, of the full-resolution
    tomograms): each file becomes its own input with the voxel size of the volume it was
    picked on (× its binning: ``voxel_size`` is the *picked* volume's, as the adapters define
    it) and, where its file name only decorates a tomogram name (``sim_01_bin2.coords``), that
    tomogram's name. Without them the binned picker's picks would land at half scale in a
    tomogram called ``sim_01_bin2`` — the registered tomograms normally resolve both.
    """
    from picks.core.tomograms import name_key
    from picks.workflows.inputs import InputSpec

    items = picker_inputs(simulation)
    if voxel_size is None:
        return [
            InputSpec(item["path"], item["label"], dict(item["options"]), given=str(item["given"]))
            for item in items
        ]
    out = Path(simulation.out if isinstance(simulation, SimulationResult) else simulation)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    names = {name_key(t["name"]): t["name"] for t in manifest["tomograms"]}
    files = {
        (entry["picker"], str((out / rel).resolve()))
        for picker in manifest["pickers"]
        for entry in picker["imports"]
        for rel in entry["paths"]
    }
    specs = []
    for item in items:
        options = dict(item["options"])
        options["voxel_size"] = f"{voxel_size * float(options.get('binning', 1)):g}"
        path = Path(item["path"])
        members = sorted(
            Path(f) for label, f in files if label == item["label"] and Path(f).parent == path
        )
        for file in members if path.is_dir() else [path]:
            own = dict(options)
            tomogram = names.get(name_key(file.name))
            if tomogram is not None and file.stem != tomogram:
                own["tomogram"] = tomogram
            specs.append(InputSpec(file, item["label"], own, given=str(file)))
    return specs


def _prepare(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise PicksError(f"{folder} exists and is not a folder")
    if folder.is_dir():
        foreign = [p.name for p in folder.iterdir() if p.name not in DEMO_ENTRIES]
        if foreign:
            raise PicksError(
                f"{folder} holds files the demo did not write ({', '.join(sorted(foreign)[:3])})",
                hint="Choose a new or empty folder.",
            )
        if any(folder.iterdir()) and not (folder / "data" / "manifest.json").is_file():
            raise PicksError(
                f"{folder} is not an earlier picks demo folder",
                hint="Choose a new or empty folder.",
            )
        for name in DEMO_ENTRIES:
            path = folder / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def run_demo(
    folder: str | Path = "picks-demo",
    *,
    seed: int = DEFAULT_SEED,
    n_tomograms: int = 2,
    size: tuple[int, int, int] = DEFAULT_SIZE,
    snr: float = DEFAULT_SNR,
    method: str = "auto",
    plot: bool = True,
    progress=None,
) -> DemoResult:
    """Simulate, aggregate (default method: the latent-class decision), evaluate."""
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate
    from picks.workflows.outputs import DEFAULT_FORMATS

    folder = Path(folder)
    _prepare(folder)
    simulation = simulate(folder / "data", seed=seed, n_tomograms=n_tomograms, size=size, snr=snr)
    db = folder / DEFAULT_DB
    truth = evaluate_mod.read_picks_files([simulation.truth_csv], adapter="czii-csv")
    with Store(db) as store:
        result = aggregate(
            store,
            aggregate_inputs(simulation),
            out=folder / "consensus",
            tomograms=[simulation.out / "tomograms"],
            formats=[*DEFAULT_FORMATS, "czii-csv"],
            method=method,
            seed=seed,
            progress=progress,
        )
        results = evaluate_mod.evaluate(truth, store=store, runs=[result.run_id])
    evaluation = folder / "evaluation.json"
    evaluation.write_text(
        json.dumps(
            {"truth": str(simulation.truth_csv), "results": [r.as_dict() for r in results]},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    plot_path = plot_curves(results, truth, folder / "evaluation.png") if plot else None
    return DemoResult(folder, simulation, db, result, results, evaluation, plot_path)
