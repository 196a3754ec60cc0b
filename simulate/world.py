"""``picks simulate``: a small cryo-ET world with ground truth and five simulated pickers.

:func:`simulate` writes, under ``OUT``::

    tomograms/<name>.mrc                 float32 MRC, voxel size in the header (default 10 Å)
    tomograms_bin2/<name>_bin2.mrc       2×2×2 block average (voxel size doubled), optional
    ground_truth.csv                     CZII CSV: id,experiment,particle_type,x,y,z (Å)
    ground_truth_details.csv             + contrast and orientation (quaternion x,y,z,w)
    ground_truth/copick_config.json      copick project (overlay) with the six classes
    ground_truth/ExperimentRuns/<name>/Picks/truth_0_<class>.json
    pickers/cryolo/<class>/CBOX_3D/<name>.cbox
    pickers/deepfinder/<name>.xml + labels.txt
    pickers/deepetpicker/Coords_All/<name>_bin2.coords (+ labels.txt)
    pickers/yolo/submission.csv
    pickers/yolo-slices/submission.csv
    decoys.csv                           gold beads, contamination and vesicle centres (Å)
    gold_beads.csv                       the gold beads alone (tomogram,x,y,z in Å): negative
                                         references for ``picks aggregate --negative``
    manifest.json                        everything above, with the import options per picker
    README.txt                           the commands to import, aggregate and evaluate

Coordinates in every Å file use the canonical frame ``x_Å = i × voxel_size`` (origin at the
centre of voxel 0). The same seed gives byte-identical files. See
:mod:`picks.simulate.volume` for the image model (and the SNR definition) and
:mod:`picks.simulate.pickers` for the pickers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from picks.core.particles import CZII
from picks.simulate import pickers as sp
from picks.simulate import volume as sv
from picks.simulate import writers as sw

DEFAULT_SIZE = (200, 200, 80)
DEFAULT_SNR = 0.05
DEFAULT_SEED = 0
MANIFEST_VERSION = 1
BEADS_FILE = "gold_beads.csv"


@dataclass
class SimulatedTomogram:
    name: str
    path: Path
    path_bin2: Path | None
    shape: tuple[int, int, int]  # nx, ny, nz
    voxel_size: float
    n_particles: int


@dataclass
class SimulatedPicker:
    """One simulated picker's output files and how to import them."""

    label: str
    program: str
    adapter: str
    personality: str
    paths: list[Path]
    imports: list[dict]  # one per import call: paths, adapter, picker, particle, binning, options
    n_picks: int
    picks: pd.DataFrame = field(repr=False)  # what it picked, canonical Å, + diagnostics


@dataclass
class SimulationResult:
    out: Path
    seed: int
    tomograms: list[SimulatedTomogram]
    pickers: list[SimulatedPicker]
    truth_csv: Path
    truth_copick: Path
    manifest: Path
    readme: Path
    truth: pd.DataFrame = field(repr=False)


def simulate(
    out: str | Path,
    *,
    seed: int = DEFAULT_SEED,
    n_tomograms: int = 2,
    size: tuple[int, int, int] = DEFAULT_SIZE,
    snr: float = DEFAULT_SNR,
    voxel_size: float = 10.0,
    bin2: bool = True,
    optics: sv.Optics | None = None,
) -> SimulationResult:
    """Simulate ``n_tomograms`` tomograms of ``size`` (nx, ny, nz) voxels and five pickers."""
    from picks.core.errors import PicksError

    if n_tomograms < 1:
        raise PicksError("`n_tomograms` must be at least 1")
    if min(size) < 16:
        raise PicksError(f"`size` {size}: every edge must be at least 16 voxels")
    if voxel_size <= 0:
        raise PicksError("`voxel_size` must be positive")
    if snr < 0:
        raise PicksError("`snr` must be positive (0 means no noise)")
    optics = optics or sv.Optics()
    out = Path(out)
    _prepare_out(out)
    size = tuple(int(s) for s in size)  # type: ignore[assignment]
    specs = [p for p in sp.PICKERS if bin2 or not p.binned]
    tomograms: list[SimulatedTomogram] = []
    truths: list[pd.DataFrame] = []
    decoys: list[pd.DataFrame] = []
    picks: dict[str, list[pd.DataFrame]] = {p.label: [] for p in specs}
    training_seed, *seeds = np.random.SeedSequence(seed).spawn(n_tomograms + 1)
    training = sp.make_training(
        np.random.default_rng(training_seed), size, voxel_size, snr, optics, bin2
    )
    for index, tomo_seed in enumerate(seeds):
        name = f"sim_{index + 1:02d}"
        scene_rng, image_rng, picker_seed = (np.random.default_rng(s) for s in tomo_seed.spawn(3))
        scene = sv.place_scene(scene_rng, size, voxel_size)
        image = sv.scene_image(scene, size, voxel_size, snr, image_rng, optics)
        path = out / "tomograms" / f"{name}.mrc"
        _write_mrc(path, image, voxel_size)
        transfer = sv.transfer_functions(image.shape, voxel_size, optics)[0]
        view = sp.TomogramView(name, image, voxel_size, transfer, optics, training=training)
        path_bin2 = None
        if bin2:
            view.image_bin2 = sv.bin2(image)
            view.transfer_bin2 = sv.transfer_functions(
                view.image_bin2.shape, 2 * voxel_size, optics
            )[0]
            path_bin2 = out / "tomograms_bin2" / f"{name}_bin2.mrc"
            _write_mrc(path_bin2, view.image_bin2, 2 * voxel_size)
        tomograms.append(
            SimulatedTomogram(name, path, path_bin2, size, voxel_size, len(scene.classes))
        )
        truths.append(_truth_frame(name, scene))
        decoys.append(_decoy_frame(name, scene))
        picker_rngs = np.random.SeedSequence(int(picker_seed.integers(2**32))).spawn(len(specs))
        for spec, picker_rng in zip(specs, picker_rngs, strict=True):
            found = sp.PERSONALITIES[spec.label](view, np.random.default_rng(picker_rng))
            picks[spec.label].append(sp.explain(found, scene))
    truth = pd.concat(truths, ignore_index=True)
    truth_csv, truth_copick = _write_truth(out, truth, tomograms, voxel_size)
    decoy_table = pd.concat(decoys, ignore_index=True)
    decoy_table.to_csv(out / "decoys.csv", index=False, float_format="%.3f", lineterminator="\n")
    # The fiducials alone, as a user has them from the tilt-series alignment: trusted negative
    # references for `picks aggregate --negative` (points-csv: a tomogram column, Å).
    decoy_table.loc[decoy_table["kind"] == "gold-bead", ["tomogram", "x", "y", "z"]].to_csv(
        out / BEADS_FILE, index=False, float_format="%.3f", lineterminator="\n"
    )
    pickers = [
        _write_picker(
            out, spec, pd.concat(picks[spec.label], ignore_index=True), tomograms, voxel_size
        )
        for spec in specs
    ]
    result = SimulationResult(
        out,
        seed,
        tomograms,
        pickers,
        truth_csv,
        truth_copick,
        out / "manifest.json",
        out / "README.txt",
        truth,
    )
    _write_manifest(result, size=size, snr=snr, voxel_size=voxel_size, optics=optics)
    _write_readme(result)
    return result


OWNED = ("tomograms", "tomograms_bin2", "pickers", "ground_truth")


def _prepare_out(out: Path) -> None:
    """Create ``out``; clear the folders of an earlier simulation there; refuse other content."""
    import shutil

    from picks.core.errors import PicksError

    if out.exists() and not out.is_dir():
        raise PicksError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "manifest.json").is_file():
            raise PicksError(
                f"{out} is not empty and holds no earlier 'picks simulate' output (manifest.json)",
                hint="Choose a new or empty folder.",
            )
        for name in OWNED:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)


def _write_mrc(path: Path, data: np.ndarray, voxel_size: float) -> None:
    import mrcfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = voxel_size
        # mrcfile stamps the creation time into label 0; a fixed label keeps files reproducible.
        mrc.header.label[0] = b"picks simulate"
        mrc.header.nlabl = 1


def _decoy_frame(name: str, scene: sv.Scene) -> pd.DataFrame:
    """Where the things that fool pickers are (Å): gold beads, contamination, the vesicle."""
    rows = [("gold-bead", *c) for c in np.asarray(scene.beads).reshape(-1, 3)]
    rows += [("contamination", *blob[0][0]) for blob in scene.blobs if blob]
    if scene.vesicle is not None:
        rows.append(("vesicle", *scene.vesicle[0]))
    frame = pd.DataFrame(rows, columns=["kind", "x", "y", "z"])
    frame.insert(0, "tomogram", name)
    return frame


def _truth_frame(name: str, scene: sv.Scene) -> pd.DataFrame:
    n = len(scene.classes)
    quat = scene.rotations.as_quat() if n else np.zeros((0, 4))
    return pd.DataFrame(
        {
            "experiment": [name] * n,
            "particle_type": scene.classes,
            "x": scene.centres[:, 0],
            "y": scene.centres[:, 1],
            "z": scene.centres[:, 2],
            "contrast": scene.contrast,
            "qx": quat[:, 0],
            "qy": quat[:, 1],
            "qz": quat[:, 2],
            "qw": quat[:, 3],
        }
    )


def _write_truth(
    out: Path, truth: pd.DataFrame, tomograms: list[SimulatedTomogram], voxel_size: float
) -> tuple[Path, Path]:
    from scipy.spatial.transform import Rotation

    csv = out / "ground_truth.csv"
    truth.insert(0, "id", np.arange(len(truth)))
    truth[["id", "experiment", "particle_type", "x", "y", "z"]].to_csv(
        csv, index=False, float_format="%.3f", lineterminator="\n"
    )
    truth.to_csv(
        out / "ground_truth_details.csv", index=False, float_format="%.6f", lineterminator="\n"
    )
    root = out / "ground_truth"
    config = {
        "config_type": "filesystem",
        "name": "picks simulate ground truth",
        "description": "Ground truth written by picks simulate (Å, x = voxel index × spacing)",
        "version": "0.5.0",
        "pickable_objects": [
            {
                "name": name,
                "is_particle": True,
                "label": sw.class_label(name),
                "radius": CZII[name].radius,
            }
            for name in sv.CLASS_ORDER
        ],
        "overlay_root": "local://" + str(root.resolve()),
        "overlay_fs_args": {"auto_mkdir": True},
    }
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "copick_config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for tomo in tomograms:
        rows = truth[truth["experiment"] == tomo.name]
        for name in sv.CLASS_ORDER:
            subset = rows[rows["particle_type"] == name]
            points = []
            for row in subset.itertuples(index=False):
                transform = np.eye(4)
                transform[:3, :3] = Rotation.from_quat([row.qx, row.qy, row.qz, row.qw]).as_matrix()
                points.append(
                    {
                        "location": {
                            "x": round(row.x, 3),
                            "y": round(row.y, 3),
                            "z": round(row.z, 3),
                        },
                        "transformation_": np.round(transform, 6).tolist(),
                        "instance_id": 0,
                        "score": 1.0,
                    }
                )
            document = {
                "pickable_object_name": name,
                "user_id": "truth",
                "session_id": "0",
                "run_name": tomo.name,
                "voxel_spacing": voxel_size,
                "unit": "angstrom",
                "trust_orientation": True,
                "points": points,
            }
            path = root / "ExperimentRuns" / tomo.name / "Picks" / f"truth_0_{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return csv, config_path


def _write_picker(
    out: Path,
    spec: sp.PickerSpec,
    picks: pd.DataFrame,
    tomograms: list[SimulatedTomogram],
    voxel_size: float,
) -> SimulatedPicker:
    """Write one picker's files; a tomogram (or class) with no picks gets no file, as the
    adapters refuse empty files. ``imports`` paths are relative to ``out``."""
    base = out / "pickers" / spec.label
    labels = base / "labels.txt"
    groups: list[tuple[dict, list[Path]]] = []
    by_tomogram = {t.name: picks[picks["tomogram"] == t.name] for t in tomograms}
    if spec.label == "cryolo":  # one crYOLO model (and output folder) per class
        for name in sv.CLASS_ORDER:
            files = []
            for tomo, subset in by_tomogram.items():
                subset = subset[subset["particle"] == name]
                if len(subset):
                    files.append(base / name / "CBOX_3D" / f"{tomo}.cbox")
                    sw.write_cbox(subset, files[-1], voxel_size, name)
            groups.append(({"particle": name}, files))
    elif spec.label in ("deepfinder", "deepetpicker"):
        sw.write_labels(labels)
        files = []
        for tomo, subset in by_tomogram.items():
            if not len(subset):
                continue
            if spec.label == "deepfinder":
                files.append(base / f"{tomo}.xml")
                sw.write_deepfinder_xml(subset, files[-1], voxel_size)
            else:
                files.append(base / "Coords_All" / f"{tomo}_bin2.coords")
                sw.write_deepetpicker(subset, files[-1])
        entry = {"options": {"labels": str(labels.relative_to(out))}}
        if spec.binned:
            entry["binning"] = 2
        groups.append((entry, files))
    else:
        files = [base / "submission.csv"] if len(picks) else []
        if files:
            sw.write_czii_csv(picks, files[0])
        groups.append(({}, files))
    imports = []
    paths: list[Path] = []
    for entry, files in groups:
        if not files:
            continue
        paths += files
        imports.append(
            {
                "paths": [str(f.relative_to(out)) for f in files],
                "adapter": spec.adapter,
                "picker": spec.label,
                "particle": entry.get("particle"),
                "binning": entry.get("binning", 1),
                "options": entry.get("options", {}),
            }
        )
    return SimulatedPicker(
        spec.label, spec.program, spec.adapter, spec.personality, paths, imports, len(picks), picks
    )


def _write_manifest(
    result: SimulationResult, *, size, snr: float, voxel_size: float, optics: sv.Optics
) -> None:
    out = result.out
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "picks simulate",
        "seed": result.seed,
        "size": list(size),
        "voxel_size": voxel_size,
        "snr": snr,
        "snr_definition": "variance of the filtered particle signal / variance of the noise",
        "contrast": "particles bright (positive density); negate for dark-particle tools",
        "optics": {
            k: getattr(optics, k)
            for k in ("defocus", "amplitude_contrast", "bfactor", "tilt_range")
        },
        "classes": [
            {
                "name": n,
                "radius": CZII[n].radius,
                "weight": CZII[n].weight,
                "label": sw.class_label(n),
            }
            for n in sv.CLASS_ORDER
        ],
        "tomograms": [
            {
                "name": t.name,
                "path": str(t.path.relative_to(out)),
                "path_bin2": str(t.path_bin2.relative_to(out)) if t.path_bin2 else None,
                "shape": list(t.shape),
                "voxel_size": t.voxel_size,
                "n_particles": t.n_particles,
            }
            for t in result.tomograms
        ],
        "truth": {
            "csv": str(result.truth_csv.relative_to(out)),
            "adapter": "czii-csv",
            "copick_config": str(result.truth_copick.relative_to(out)),
            "copick_root": str(result.truth_copick.parent.relative_to(out)),
            "details": "ground_truth_details.csv",
        },
        "pickers": manifest_pickers(result.pickers, out),
    }
    result.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def manifest_pickers(pickers, out: Path) -> list[dict]:
    """The manifest's record of each simulated picker (paths relative to ``out``); shared by
    ``picks simulate`` and ``picks simulate-pickers``."""
    return [
        {
            "label": p.label,
            "program": p.program,
            "adapter": p.adapter,
            "personality": p.personality,
            "n_picks": p.n_picks,
            "paths": [str(x.relative_to(out)) for x in p.paths],
            "imports": p.imports,
        }
        for p in pickers
    ]


def picker_inputs(result: SimulationResult | Path | str) -> list[dict]:
    """One input per import group: ``label``, ``path`` (absolute), ``given`` and ``options``.

    ``options`` are the per-input options of :func:`picks.workflows.aggregate.aggregate`
    (``adapter``, ``particle``, ``binning`` and adapter options such as ``labels``, with
    paths made absolute). Accepts a result or a simulate output folder (reads its manifest).
    """
    out, pickers = _manifest_pickers(result)
    inputs = []
    for picker in pickers:
        for entry in picker["imports"]:
            folders = sorted({str(Path(p).parent) for p in entry["paths"]})
            target = folders[0] if len(folders) == 1 else None
            paths = [target] if target else entry["paths"]
            for rel in paths:
                options = {"adapter": entry["adapter"]}
                if entry.get("particle"):
                    options["particle"] = entry["particle"]
                if entry.get("binning", 1) != 1:
                    options["binning"] = str(entry["binning"])
                for key, value in entry.get("options", {}).items():
                    options[key] = str((out / value).resolve()) if key == "labels" else str(value)
                inputs.append(
                    {
                        "label": entry["picker"],
                        "path": (out / rel).resolve(),
                        "given": rel,
                        "options": options,
                    }
                )
    return inputs


def _manifest_pickers(result: SimulationResult | Path | str) -> tuple[Path, list[dict]]:
    if isinstance(result, SimulationResult):
        return result.out, [{"label": p.label, "imports": p.imports} for p in result.pickers]
    out = Path(result)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return out, manifest["pickers"]


def aggregate_command(
    result: SimulationResult, db: str = "picks.db", out: str = "consensus"
) -> str:
    """The exact ``picks aggregate`` command line for a simulation, run inside its folder."""
    parts = [
        "picks aggregate",
        f"--db {db}",
        f"--out {out}",
        "--tomograms tomograms",
        "--format czii-csv,box",
    ]
    parts += picker_arguments(result)
    return " \\\n    ".join(parts)


def picker_arguments(result: SimulationResult | Path | str) -> list[str]:
    """The ``picks aggregate`` arguments of every picker input (``LABEL=PATH`` and its
    ``--input-option``s), paths relative to the output folder (run inside it)."""
    out = result.out if isinstance(result, SimulationResult) else Path(result)
    parts = []
    for item in picker_inputs(result):
        given = f"{item['label']}={item['given']}"
        parts.append(given)
        for key, value in item["options"].items():
            if key == "labels":
                value = str(Path(value).relative_to(out.resolve()))
            parts.append(f"--input-option {given}:{key}={value}")
    return parts


INPUTS_FILE = "inputs.toml"


def write_inputs(result: SimulationResult, out: str = "consensus") -> Path:
    """``inputs.toml`` beside the data: the aggregate job of :func:`aggregate_command` as one
    file (paths relative to it, so the folder can move)."""
    from picks.core.inputs_file import write_inputs_file

    root = result.out.resolve()
    pickers = []
    for item in picker_inputs(result):
        options = dict(item["options"])
        entry: dict = {"label": item["label"], "path": item["given"]}
        for key in ("adapter", "particle"):
            if key in options:
                entry[key] = options.pop(key)
        if "binning" in options:
            entry["binning"] = float(options.pop("binning"))
        if "labels" in options:
            options["labels"] = str(Path(options["labels"]).relative_to(root))
        if options:
            entry["options"] = options
        pickers.append(entry)
    return write_inputs_file(
        result.out / INPUTS_FILE,
        pickers,
        tomograms=["tomograms"],
        output={"out": out, "formats": ["czii-csv", "box"]},
        notes=[f"written by picks simulate (seed {result.seed}); paths are relative to this file"],
    )


def _write_readme(result: SimulationResult) -> None:
    write_inputs(result)
    lines = [
        f"Simulated cryo-ET data written by `picks simulate` (seed {result.seed}).",
        "",
        "tomograms/*.mrc           the tomograms (register these; tomograms_bin2/ is what the",
        "                          binned picker saw)",
        "ground_truth.csv          CZII CSV (Å, x = voxel index × voxel size); the same as a",
        "                          copick project in ground_truth/",
        "pickers/<label>/          each picker's output in its program's native format",
        "manifest.json             all of the above, with the import options per picker",
        f"{INPUTS_FILE:<26}the aggregate job below as one file (picks aggregate --inputs)",
        "",
        "Run inside this folder:",
        "",
        "# 1. consensus of all pickers (imports them into picks.db; the default decision",
        "#    estimates each picker's reliability from agreement: picks pickers shows it)",
        f"picks aggregate --inputs {INPUTS_FILE} --db picks.db",
        "",
        f"#    the same with flags only ({INPUTS_FILE} holds exactly these inputs and options):",
        aggregate_command(result),
        "",
        "# 2. accuracy of every picker and of the consensus (CZII F-beta, beta = 4)",
        "picks evaluate --db picks.db --truth ground_truth.csv",
        "",
        "# 3. the same with the gold beads (fiducials) as trusted negative references: the",
        "#    consensus picks on a bead are rejected whatever the pickers agree on",
        "#    (append to the command of step 1, with --out consensus-beads)",
        f"    --negative beads={BEADS_FILE} --input-option beads:units=angstrom",
        "",
        "Pickers:",
        *[
            f"  {p.label:13s} {p.program} — {p.personality}, {p.n_picks} picks"
            for p in result.pickers
        ],
    ]
    result.readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
