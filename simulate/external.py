"""``picks simulate-pickers``: the five simulated pickers of ``picks simulate`` on any tomograms.

``picks simulate`` makes its own world and runs its pickers on it; this module runs the same
pickers (:mod:`picks.simulate.pickers`) on tomograms someone else made (another
simulator such as polnet, or real data), so that the consensus can be measured on worlds
picks did not make. Nothing here knows where the particles are: there is no ground truth.

:func:`run_pickers` writes, under ``OUT``, the layout of ``picks simulate`` without the
truth::

    tomograms/<name>.mrc      symbolic links to the input tomograms (copies where links are
                              impossible), named so that picker files and volumes match
    pickers/...               each picker's output in its program's native format
    manifest.json             the inputs, the contrast decision, the import options per picker
    README.txt                the command to aggregate them

so :func:`picks.simulate.world.picker_inputs` (and ``picks aggregate`` with the command in
README.txt) read them exactly like a simulation.

Contrast: the pickers look for *bright* particles (positive density), as ``picks simulate``
writes them. Real cryo-ET (and most reconstructions) show particles dark; ``--contrast dark``
negates the image the pickers see (the tomogram files are not changed). ``auto`` decides per
tomogram from the tails of a band-passed copy (:func:`contrast_statistic`), says so loudly
and refuses to guess when the tails are too alike or the tomograms disagree.

The trained pickers learn from a training tomogram simulated with picks' own image model
(``--snr``, ``--defocus``): the mismatch between that model and the data is part of what an
independent benchmark measures.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from picks.core.errors import PicksError
from picks.simulate import pickers as sp
from picks.simulate import volume as sv
from picks.simulate.world import (
    SimulatedPicker,
    SimulatedTomogram,
    _prepare_out,
    _write_picker,
    manifest_pickers,
)

CONTRASTS = ("auto", "bright", "dark")
# |log(ratio)| below this: the two tails are too alike to call the polarity (ratio within
# about ±15 %). Measured values: picks simulate (SNR 0.05) ≈ 1.6, polnet fixture ≈ 2; their
# negated copies the inverse.
CONTRAST_MARGIN = float(np.log(1.15))
TAIL = 5e-4  # fraction of voxels in each tail compared by contrast_statistic


@dataclass
class ExternalTomogram:
    name: str
    source: Path  # the input file
    path: Path  # OUT/tomograms/<name>.mrc (link or copy)
    shape: tuple[int, int, int]  # nx, ny, nz
    voxel_size: float
    contrast: str  # bright | dark: what the pickers were told
    statistic: float  # contrast_statistic of the tomogram (> 1: bright tail heavier)


@dataclass
class PickersResult:
    out: Path
    seed: int
    contrast: str  # as requested
    tomograms: list[ExternalTomogram]
    pickers: list[SimulatedPicker]
    manifest: Path
    readme: Path
    messages: list[str] = field(default_factory=list)


def read_volume(path: Path) -> np.ndarray:
    """The tomogram's data as float32 ``[z, y, x]`` (MRC modes incl. float16)."""
    import mrcfile

    try:
        with mrcfile.open(path, permissive=True) as mrc:
            data = mrc.data
            if data is None or data.ndim != 3:
                raise PicksError(f"tomogram {path}: not a 3D volume")
            return np.asarray(data, dtype=np.float32).copy()
    except (OSError, ValueError) as exc:
        raise PicksError(f"tomogram {path}: cannot read the volume ({exc})") from None


def normalise(image: np.ndarray) -> np.ndarray:
    """Mean 0, s.d. 1: the pickers' absolute feature (brightness) is in these units, as in
    ``picks simulate``'s tomograms and the training tomogram."""
    image = image - float(image.mean())
    std = float(image.std())
    if not np.isfinite(std) or std == 0:
        raise PicksError("the tomogram is constant or holds NaN/inf values")
    return (image / std).astype(np.float32)


def contrast_statistic(image: np.ndarray, voxel_size: float) -> float:
    """How much heavier the bright tail of a band-passed copy is than the dark one.

    Particles are sparse compact objects of one polarity, so after a band-pass at particle
    scales (difference of Gaussians, σ ≈ 20 Å and 80 Å) the side they lie on has the longer
    tail. Returns ``q(1 − TAIL) / −q(TAIL)`` of the band-passed values (median-centred):
    > 1 means bright particles, < 1 dark.
    """
    from scipy import ndimage

    small = max(20.0 / voxel_size, 0.7)
    large = max(80.0 / voxel_size, 2 * small)
    band = ndimage.gaussian_filter(image, small) - ndimage.gaussian_filter(image, large)
    values = band.ravel()[:: max(1, band.size // 4_000_000)]
    values = values - float(np.median(values))
    high = float(np.quantile(values, 1 - TAIL))
    low = -float(np.quantile(values, TAIL))
    if high <= 0 or low <= 0:
        return 1.0
    return high / low


def decide_contrast(
    requested: str, statistics: dict[str, float], say: Callable[[str], None]
) -> dict[str, str]:
    """The polarity per tomogram: as requested, or detected (loudly; an error when unsure)."""
    if requested not in CONTRASTS:
        raise PicksError(f"`contrast` {requested!r}: expected one of {', '.join(CONTRASTS)}")
    if requested != "auto":
        for name, value in statistics.items():
            detected = "bright" if value > 1 else "dark"
            if abs(np.log(value)) >= CONTRAST_MARGIN and detected != requested:
                say(
                    f"warning: {name}: `contrast` {requested}, but the image looks {detected} "
                    f"(bright/dark tail ratio {value:.2f}); using {requested} as told"
                )
        return {name: requested for name in statistics}
    unsure = {n: v for n, v in statistics.items() if abs(np.log(v)) < CONTRAST_MARGIN}
    if unsure:
        listed = ", ".join(f"{n} ({v:.2f})" for n, v in unsure.items())
        raise PicksError(
            f"`contrast` auto cannot tell the particle polarity of {listed}: the bright/dark "
            f"tail ratio is within ±15 % of 1",
            hint="Give `contrast` bright (particles white) or `contrast` dark (particles black).",
        )
    decided = {n: ("bright" if v > 1 else "dark") for n, v in statistics.items()}
    if len(set(decided.values())) > 1:
        listed = ", ".join(f"{n}: {decided[n]} ({v:.2f})" for n, v in statistics.items())
        raise PicksError(
            f"`contrast` auto found different polarities across the tomograms ({listed})",
            hint="Check the tomograms; give `contrast` bright or dark if they truly agree.",
        )
    for name, value in statistics.items():
        say(
            f"contrast: {name}: particles detected {decided[name].upper()} (bright/dark tail "
            f"ratio {value:.2f}); pass `contrast` to override"
        )
    return decided


def parse_tomograms(
    values: Sequence[str | Path | tuple[str, str | Path]],
) -> list[tuple[str, Path]]:
    """``[NAME=]PATH`` (file or folder of MRC files) -> unique (name, file) pairs."""
    from picks.core.tomograms import _display_name, find_volumes

    pairs: list[tuple[str, Path]] = []
    for value in values:
        if isinstance(value, tuple):
            name, path = value[0], Path(value[1])
        else:
            text = str(value)
            name, sep, rest = text.partition("=")
            if sep and name and not Path(text).exists():
                path = Path(rest)
            else:
                name, path = "", Path(text)
        if not path.exists():
            raise PicksError(f"tomogram {path} does not exist")
        files = find_volumes([path])
        if name and len(files) != 1:
            raise PicksError(f"{name}={path}: a name needs exactly one tomogram file")
        for file in files:
            if not str(file).lower().endswith((".mrc", ".rec", ".map", ".mrcs")):
                raise PicksError(f"tomogram {file}: only MRC files are supported here")
            pairs.append((name or _display_name(Path(file)), Path(file)))
    if not pairs:
        raise PicksError("no tomograms given")
    seen: dict[str, Path] = {}
    for name, file in pairs:
        if name in seen:
            raise PicksError(
                f"two tomograms are both named {name!r} ({seen[name]} and {file}); picker files "
                "name tomograms, so names must be unique",
                hint="Name them: `tomogram` NAME=PATH (e.g. TS_01=TS_01/tomogram.mrc).",
            )
        seen[name] = file
    return pairs


def run_pickers(
    tomograms: Sequence[str | Path | tuple[str, str | Path]],
    out: str | Path,
    *,
    seed: int = 0,
    contrast: str = "auto",
    voxel_size: float | None = None,
    snr: float = 0.05,
    optics: sv.Optics | None = None,
    bin2: bool = True,
    say: Callable[[str], None] = lambda message: None,
) -> PickersResult:
    """Run the five simulated pickers on ``tomograms`` and write their native outputs to ``out``.

    ``tomograms`` are ``[NAME=]PATH`` (MRC files or folders of them; the name defaults to the
    file stem). ``voxel_size`` overrides the headers. ``snr`` and ``optics`` shape the
    training tomogram and the pickers' matched filters (``optics.defocus = 0``: no CTF).
    ``say`` receives progress lines and the contrast decision. The same inputs and seed give
    byte-identical files.
    """
    from picks.core.tomograms import read_tomogram

    if contrast not in CONTRASTS:
        raise PicksError(f"`contrast` {contrast!r}: expected one of {', '.join(CONTRASTS)}")
    if snr <= 0:
        raise PicksError("`snr` must be positive")
    optics = optics or sv.Optics()
    pairs = parse_tomograms(tomograms)
    headers = [read_tomogram(path, name=name, voxel_size=voxel_size) for name, path in pairs]
    sizes = {round(t.voxel_size, 4) for t in headers}
    if len(sizes) > 1:
        raise PicksError(
            f"the tomograms have different voxel sizes ({', '.join(map(str, sorted(sizes)))} Å); "
            "the trained pickers learn at one voxel size",
            hint="Run simulate-pickers once per voxel size.",
        )
    voxel = float(headers[0].voxel_size)
    for tomo in headers:
        if tomo.shape is None or min(tomo.shape) < 16:
            raise PicksError(f"tomogram {tomo.path}: every edge must be at least 16 voxels")
    out = Path(out)
    for _, path in pairs:
        if out.resolve() in Path(path).resolve().parents:
            # _prepare_out clears OUT/tomograms: never the inputs themselves.
            raise PicksError(
                f"tomogram {path} lies inside `out` {out}", hint="Choose another `out`."
            )
    _prepare_out(out)

    messages: list[str] = []

    def tell(message: str) -> None:
        messages.append(message)
        say(message)

    # Contrast first (reads every volume once), so a refusal comes before the long work.
    statistics = {}
    for name, path in pairs:
        statistics[name] = contrast_statistic(normalise(read_volume(path)), voxel)
    polarity = decide_contrast(contrast, statistics, tell)

    specs = [p for p in sp.PICKERS if bin2 or not p.binned]
    training_seed, *seeds = np.random.SeedSequence(seed).spawn(len(pairs) + 1)
    first = headers[0].shape
    tell(f"training tomogram: simulating {min(first[0], 200)}×{min(first[1], 200)}×{first[2]}")
    training = sp.make_training(
        np.random.default_rng(training_seed), tuple(first), voxel, snr, optics, bin2
    )
    written: list[ExternalTomogram] = []
    picks: dict[str, list[pd.DataFrame]] = {p.label: [] for p in specs}
    for index, ((name, path), tomo, tomo_seed) in enumerate(
        zip(pairs, headers, seeds, strict=True)
    ):
        image = normalise(read_volume(path))
        if polarity[name] == "dark":
            image = -image
        transfer = sv.transfer_functions(image.shape, voxel, optics)[0]
        view = sp.TomogramView(name, image, voxel, transfer, optics, training=training)
        if bin2:
            view.image_bin2 = sv.bin2(image)
            view.transfer_bin2 = sv.transfer_functions(view.image_bin2.shape, 2 * voxel, optics)[0]
        rngs = np.random.SeedSequence(int(tomo_seed.generate_state(1)[0])).spawn(len(specs))
        for spec, rng in zip(specs, rngs, strict=True):
            tell(f"[{index + 1}/{len(pairs)}] {name}: {spec.label}")
            found = sp.PERSONALITIES[spec.label](view, np.random.default_rng(rng))
            picks[spec.label].append(found)
        link = out / "tomograms" / f"{name}.mrc"
        _link(Path(path), link)
        written.append(
            ExternalTomogram(
                name,
                Path(path).resolve(),
                link,
                tuple(int(s) for s in tomo.shape),  # type: ignore[arg-type]
                voxel,
                polarity[name],
                statistics[name],
            )
        )
    # _write_picker needs only the names; the particle counts are unknown (no truth).
    stand_ins = [SimulatedTomogram(t.name, t.path, None, t.shape, voxel, 0) for t in written]
    pickers = []
    for spec in specs:
        frame = pd.concat(picks[spec.label], ignore_index=True)
        pickers.append(_write_picker(out, spec, frame, stand_ins, voxel))
    result = PickersResult(
        out, seed, contrast, written, pickers, out / "manifest.json", out / "README.txt", messages
    )
    _write_manifest(result, snr=snr, voxel_size=voxel, optics=optics)
    _write_readme(result)
    return result


def _link(source: Path, link: Path) -> None:
    """``link`` -> the absolute ``source`` (a copy where the filesystem has no links)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        os.symlink(source.resolve(), link)
    except OSError:
        shutil.copyfile(source, link)


def _write_manifest(result: PickersResult, *, snr: float, voxel_size: float, optics) -> None:
    out = result.out
    manifest = {
        "manifest_version": 1,
        "generator": "picks simulate-pickers",
        "seed": result.seed,
        "voxel_size": voxel_size,
        "training_snr": snr,
        "optics": {
            k: getattr(optics, k)
            for k in ("defocus", "amplitude_contrast", "bfactor", "tilt_range")
        },
        "contrast_requested": result.contrast,
        "tomograms": [
            {
                "name": t.name,
                "path": str(t.path.relative_to(out)),
                "source": str(t.source),
                "shape": list(t.shape),
                "voxel_size": t.voxel_size,
                "contrast": t.contrast,
                "bright_dark_tail_ratio": round(t.statistic, 4),
            }
            for t in result.tomograms
        ],
        "truth": None,
        "pickers": manifest_pickers(result.pickers, out),
    }
    result.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_readme(result: PickersResult) -> None:
    from picks.simulate.world import picker_arguments

    parts = ["picks aggregate", "--db picks.db", "--out consensus", "--tomograms tomograms"]
    parts += picker_arguments(result.out)
    lines = [
        f"Simulated pickers run by `picks simulate-pickers` (seed {result.seed}) on:",
        *[
            f"  {t.name}: {t.source} ({t.contrast} particles, tail ratio {t.statistic:.2f})"
            for t in result.tomograms
        ],
        "",
        "tomograms/<name>.mrc   links to the input tomograms, named as the picker files name them",
        "pickers/<label>/       each picker's output in its program's native format",
        "manifest.json          all of the above, with the import options per picker",
        "",
        "There is no ground truth here. Run inside this folder:",
        "",
        " \\\n    ".join(parts),
        "",
        "Pickers:",
        *[
            f"  {p.label:13s} {p.program} — {p.personality}, {p.n_picks} picks"
            for p in result.pickers
        ],
    ]
    result.readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
