"""Figures of the report: arrays and tables in, PNG files out (matplotlib, Agg canvas).

Pure functions: no store, no file reading besides what they are given. Every figure is drawn
on its own :class:`~matplotlib.figure.Figure` (no pyplot state) at a fixed DPI and saved
without metadata, so the same inputs give the same bytes (Agg writes no timestamp; the
``Software`` text chunk, which names the matplotlib version, is left out too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure

DPI = 100
# Decision colours (colour-blind safe: Okabe–Ito); the page's legend uses the same values.
COLOURS = {"accepted": "#009E73", "rejected": "#D55E00", "reference": "#0072B2"}
DECISIONS = ("accepted", "rejected", "reference")
PICKER_COLOURS = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#000000",
)
# Pixels outside the volume (NaN) are mid grey, not white.
GREY = matplotlib.colormaps["gray"].with_extremes(bad="#808080")
# Deterministic PNG bytes: no Software chunk (the only metadata Agg writes by default).
_METADATA = {"Software": None}
# zlib level 1: encoding at the default level 6 took a third of the report's time; the files
# grow by about a quarter.
COMPRESS = 1


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, metadata=_METADATA, pil_kwargs={"compress_level": COMPRESS})
    return path


def thumbnail(source: Path, path: Path, width: int = 220) -> Path:
    """A smaller copy of a PNG (Pillow, Lanczos; no metadata: the bytes are deterministic)."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        height = max(1, round(image.height * width / image.width))
        small = image.resize((width, height), Image.Resampling.LANCZOS)
    small.save(path, format="PNG", optimize=False, compress_level=COMPRESS)
    return Path(path)


def contrast(image: np.ndarray) -> tuple[float, float]:
    """Display range: the 1st and 99th percentiles of the finite values (robust to outliers,
    such as gold beads, that would otherwise turn everything else grey)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1.0, 99.0])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


# -- slabs ------------------------------------------------------------------------------------
def slab_image(
    image: np.ndarray | None,
    shape_xy: tuple[int, int],
    circles: pd.DataFrame,
    path: Path,
    *,
    min_side: int = 600,
    max_side: int = 1200,
) -> Path:
    """A slab (2-D ``[y, x]`` mean projection, or None for a blank background) with circles.

    ``circles``: x, y, radius (voxels of the full-resolution tomogram; ``image`` may be binned,
    it is stretched over ``shape_xy = (nx, ny)``), decision (accepted / rejected / reference),
    label (text beside the circle), inside (True: centre within the projected band, solid
    line; False: elsewhere in the slab's z range, dotted). y grows upwards, as in IMOD.
    """
    nx, ny = shape_xy
    scale = min(max(1.0, min_side / max(nx, ny)), max_side / max(nx, ny))
    width, height = max(1, round(nx * scale)), max(1, round(ny * scale))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    extent = (-0.5, nx - 0.5, -0.5, ny - 0.5)
    if image is not None:
        lo, hi = contrast(image)
        ax.imshow(
            image,
            cmap=GREY,
            vmin=lo,
            vmax=hi,
            origin="lower",
            extent=extent,
            interpolation="bilinear",
            resample=False,
        )
    else:
        ax.set_facecolor("#808080")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if len(circles):
        for decision in DECISIONS:
            for inside, style in ((True, "solid"), (False, "dotted")):
                sel = circles[
                    (circles["decision"] == decision) & (circles["inside"].astype(bool) == inside)
                ]
                if sel.empty:
                    continue
                diameter = 2 * sel["radius"].to_numpy(dtype=float)
                ax.add_collection(
                    EllipseCollection(
                        diameter,
                        diameter,
                        np.zeros(len(sel)),
                        units="xy",
                        offsets=sel[["x", "y"]].to_numpy(dtype=float),
                        offset_transform=ax.transData,
                        facecolors="none",
                        edgecolors=COLOURS[decision],
                        linewidths=1.4 if inside else 1.0,
                        linestyles=style,
                    )
                )
        fontsize = 7 if max(width, height) <= 800 else 8
        for x, y, r, label, decision in zip(
            circles["x"],
            circles["y"],
            circles["radius"],
            circles["label"],
            circles["decision"],
            strict=True,
        ):
            if label:
                ax.text(
                    x + 0.72 * r,
                    y + 0.72 * r,
                    str(label),
                    color=COLOURS[decision],
                    fontsize=fontsize,
                    ha="left",
                    va="bottom",
                    clip_on=True,
                )
    return _save(figure, path)


# -- agreement --------------------------------------------------------------------------------
def agreement(
    pickers: pd.Series, accepted: pd.Series, order: Sequence[str], path: Path, *, top: int = 12
) -> Path:
    """Which pickers found which candidates of one class.

    Left: co-occurrence matrix (cell i, j = candidates found by both pickers; the diagonal =
    candidates each found). Right: the most frequent picker combinations (UpSet-style), bars
    split into accepted and rejected candidates.
    """
    found = _indicators(pickers, order)
    matrix = found.T.astype(np.int64) @ found.astype(np.int64)
    combos = (
        pd.DataFrame({"combo": pickers.astype(str), "accepted": accepted.astype(bool)})
        .groupby("combo", sort=True)["accepted"]
        .agg(["size", "sum"])
        .reset_index()
        .sort_values(["size", "combo"], ascending=[False, True], kind="mergesort")
        .head(top)
    )
    n = len(order)
    figure = Figure(figsize=(4.0 + 0.25 * n + 5.5, max(3.6, 1.2 + 0.3 * max(n, len(combos)))))
    left = figure.add_axes((0.12, 0.26, 0.30, 0.64))
    left.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, int(matrix.max())))
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            dark = value > 0.6 * max(1, int(matrix.max()))
            left.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    left.set_xticks(range(n), order, rotation=45, ha="right", fontsize=7)
    left.set_yticks(range(n), order, fontsize=7)
    left.set_title("found by both (diagonal: by each)", fontsize=8)
    right = figure.add_axes((0.62, 0.26, 0.35, 0.64))
    y = np.arange(len(combos))[::-1]
    n_acc = combos["sum"].to_numpy(dtype=float)
    n_rej = combos["size"].to_numpy(dtype=float) - n_acc
    right.barh(y, n_acc, color=COLOURS["accepted"], label="accepted")
    right.barh(y, n_rej, left=n_acc, color=COLOURS["rejected"], label="rejected")
    right.set_yticks(y, [c.replace(",", " + ") for c in combos["combo"]], fontsize=7)
    right.set_xlabel("candidates", fontsize=8)
    right.set_title(f"picker combinations (top {len(combos)})", fontsize=8)
    right.tick_params(axis="x", labelsize=7)
    right.legend(fontsize=7, loc="lower right")
    return _save(figure, path)


def _indicators(pickers: pd.Series, order: Sequence[str]) -> np.ndarray:
    """(candidates × pickers) booleans from comma-joined picker lists."""
    column = {p: i for i, p in enumerate(order)}
    # one row per distinct list (a handful of picker combinations), then gathered: no Python
    # loop over hundreds of thousands of candidates
    codes, combos = pd.factorize(pickers.astype(str))
    table = np.zeros((len(combos), len(order)), dtype=bool)
    for row, text in enumerate(combos):
        for name in text.split(","):
            if name in column:
                table[row, column[name]] = True
    return table[codes]


# -- histograms -------------------------------------------------------------------------------
def histograms(
    support: np.ndarray,
    score: np.ndarray,
    decision: np.ndarray,
    path: Path,
    *,
    threshold: float | None,
    score_label: str,
    max_support: float | None = None,
) -> Path:
    """Support (left) and decision score (right) of one class, stacked by decision; the
    acceptance threshold as a vertical line where one is known."""
    figure = Figure(figsize=(8.0, 2.8))
    axes = figure.subplots(1, 2)
    top = max(float(np.nanmax(support)) if len(support) else 1.0, max_support or 0.0)
    if np.allclose(support, np.round(support)):
        edges = np.arange(0.5, np.floor(top) + 1.5)
    else:
        edges = np.linspace(0, top, 21)
    finite = score[np.isfinite(score)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    score_edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 26)
    for ax, values, bins, label in (
        (axes[0], support, edges, "support (pickers, weighted)"),
        (axes[1], score, score_edges, score_label),
    ):
        stacks = [values[(decision == d) & np.isfinite(values)] for d in DECISIONS]
        ax.hist(
            stacks,
            bins=bins,
            stacked=True,
            color=[COLOURS[d] for d in DECISIONS],
            label=list(DECISIONS),
        )
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("candidates", fontsize=8)
        ax.tick_params(labelsize=7)
    if threshold is not None and np.isfinite(threshold):
        axes[1].axvline(threshold, color="black", linestyle="--", linewidth=1)
        axes[1].text(
            threshold,
            0.97,
            f" threshold {threshold:.3g}",
            transform=axes[1].get_xaxis_transform(),
            fontsize=7,
            va="top",
        )
    missing = int((~np.isfinite(score)).sum())
    if missing:
        axes[1].set_title(f"{missing} candidate(s) without a score not shown", fontsize=7)
    axes[0].legend(fontsize=7)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
    return _save(figure, path)


# -- CNN training -----------------------------------------------------------------------------
def training_curve(history: Sequence[Mapping], best_epoch: int, path: Path, *, title: str) -> Path:
    """Loss (train and validation) and validation AUC per epoch; the best epoch marked."""
    frame = pd.DataFrame(list(history))
    figure = Figure(figsize=(8.0, 2.8))
    axes = figure.subplots(1, 2)
    epochs = frame["epoch"].to_numpy() if "epoch" in frame else np.arange(1, len(frame) + 1)
    for key, label in (("loss", "training loss"), ("val_loss", "validation loss")):
        if key in frame:
            axes[0].plot(epochs, frame[key].to_numpy(dtype=float), marker=".", label=label)
    if "val_auc" in frame:
        axes[1].plot(epochs, frame["val_auc"].to_numpy(dtype=float), marker=".", color="#0072B2")
    axes[1].set_ylabel("validation AUC", fontsize=8)
    axes[0].set_ylabel("loss", fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if best_epoch:
            ax.axvline(best_epoch, color="black", linestyle="--", linewidth=1)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"{title}: best epoch {best_epoch}", fontsize=8)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
    return _save(figure, path)


# -- gallery ----------------------------------------------------------------------------------
def gallery(
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray | None, str, float]]]],
    path: Path,
    *,
    tile_px: int = 96,
) -> Path:
    """Rows of box slices: ``rows`` is ``[(row title, [(image or None, caption, radius in
    pixels), ...]), ...]``. Each tile gets its own contrast and a dotted circle of the class
    radius at its centre; pixels outside the volume are mid grey. One mosaic image in one
    axes (one axes per tile costs ten times as much to draw)."""
    n_cols = max([len(tiles) for _, tiles in rows] + [1])
    n_rows = max(len(rows), 1)
    side = max([t[0].shape[0] for _, tiles in rows for t in tiles if t[0] is not None] + [8])
    gap = max(2, side // 4)
    cell = side + gap
    mosaic = np.ones((n_rows * cell, n_cols * cell))
    circles, texts = [], []
    for r, (_title, tiles) in enumerate(rows):
        top = (n_rows - 1 - r) * cell  # origin="lower": the first row at the top
        for c, (image, caption, radius) in enumerate(tiles):
            left = c * cell
            block = np.full((side, side), 0.5)
            if image is not None and np.isfinite(image).any():
                lo, hi = contrast(image)
                scaled = np.clip((image - lo) / (hi - lo), 0, 1)
                scaled = np.where(np.isfinite(scaled), scaled, 0.5)
                oy, ox = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
                block[oy : oy + image.shape[0], ox : ox + image.shape[1]] = scaled
                circles.append((left + (side - 1) / 2, top + (side - 1) / 2, radius))
            else:
                texts.append((left + side / 2, top + side / 2, "no volume", 6))
            mosaic[top : top + side, left : left + side] = block
            texts.append((left + side / 2, top + side + gap * 0.15, caption, 6.5))
    scale = tile_px / side
    label_px = 120
    width = n_cols * cell * scale + label_px
    height = n_rows * cell * scale + 8
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = figure.add_axes(
        (label_px / width, 0, 1 - label_px / width, n_rows * cell * scale / height)
    )
    ax.set_axis_off()
    ax.imshow(
        mosaic,
        cmap="gray",
        vmin=0,
        vmax=1,
        origin="lower",
        interpolation="nearest",
        extent=(-0.5, mosaic.shape[1] - 0.5, -0.5, mosaic.shape[0] - 0.5),
    )
    ax.set_xlim(-0.5, mosaic.shape[1] - 0.5)
    ax.set_ylim(-0.5, mosaic.shape[0] - 0.5)
    if circles:
        xy = np.array([(x, y) for x, y, _ in circles])
        diameter = np.array([2 * r for _, _, r in circles])
        ax.add_collection(
            EllipseCollection(
                diameter,
                diameter,
                np.zeros(len(circles)),
                units="xy",
                offsets=xy,
                offset_transform=ax.transData,
                facecolors="none",
                edgecolors="#E69F00",
                linewidths=0.8,
                linestyles="dotted",
            )
        )
    for x, y, text, size in texts:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=size, clip_on=False)
    for r, (title, tiles) in enumerate(rows):
        y = 1 - (r + 0.5) / n_rows * (n_rows * cell * scale / height) - 8 / height
        figure.text(0.01, y, title + ("" if tiles else "\n(none)"), fontsize=7, va="center")
    return _save(figure, path)


# -- with ground truth ------------------------------------------------------------------------
def truth_curves(
    curves: Mapping[str, pd.DataFrame], thresholds: Mapping[str, float], path: Path, *, beta: float
) -> Path:
    """Per class: precision, recall and F-beta of the candidates kept at score ≥ t, against
    t (measured against the ground truth); the run's threshold as a vertical line."""
    names = list(curves)
    n_cols = min(3, max(len(names), 1))
    n_rows = (len(names) + n_cols - 1) // n_cols or 1
    figure = Figure(figsize=(3.6 * n_cols, 2.8 * n_rows))
    axes = np.atleast_1d(figure.subplots(n_rows, n_cols, squeeze=False).ravel())
    for ax, name in zip(axes, names, strict=False):
        curve = curves[name]
        marker = "o" if len(curve) < 3 else None
        t = curve["threshold"].to_numpy(dtype=float)
        ax.plot(t, curve["precision"], label="precision", marker=marker)
        ax.plot(t, curve["recall"], label="recall", marker=marker)
        ax.plot(t, curve["fbeta"], label=f"F{beta:g}", marker=marker, linestyle="--")
        chosen = thresholds.get(name)
        if chosen is not None and np.isfinite(chosen):
            ax.axvline(chosen, color="black", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("score threshold", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7, loc="lower left")
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.93, wspace=0.25, hspace=0.45)
    return _save(figure, path)


def reliability_diagram(bins: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """Per class (and all classes together, first): predicted P(particle) (bin mean) against
    the measured fraction of true particles in the bin; the diagonal is perfect calibration;
    point size grows with the bin's count, which is written beside it."""
    names = list(bins)
    n_cols = min(4, max(len(names), 1))
    n_rows = (len(names) + n_cols - 1) // n_cols or 1
    figure = Figure(figsize=(3.0 * n_cols, 2.9 * n_rows))
    axes = np.atleast_1d(figure.subplots(n_rows, n_cols, squeeze=False).ravel())
    for ax, name in zip(axes, names, strict=False):
        frame = bins[name]
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        if len(frame):
            counts = frame["n"].to_numpy(dtype=float)
            sizes = 10 + 50 * np.sqrt(counts / max(1.0, counts.max()))
            ax.plot(frame["predicted"], frame["measured"], color="#0072B2", linewidth=1)
            ax.scatter(frame["predicted"], frame["measured"], s=sizes, color="#0072B2", zorder=3)
            for x, y, n in zip(frame["predicted"], frame["measured"], frame["n"], strict=True):
                ax.annotate(
                    str(int(n)), (x, y), textcoords="offset points", xytext=(4, -9), fontsize=6
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("predicted P(particle)", fontsize=7)
        ax.set_ylabel("measured precision", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.93, wspace=0.35, hspace=0.5)
    return _save(figure, path)


# -- one consensus pick -----------------------------------------------------------------------
def members_view(
    image: np.ndarray | None,
    window: tuple[float, float, float, float],
    centre: tuple[float, float],
    radius: float,
    members: pd.DataFrame,
    path: Path,
    *,
    title: str,
) -> Path:
    """The member picks of one consensus pick on a slab around it (voxel units): the
    consensus position with its class radius, each member a marker coloured by picker.

    ``window`` = (x0, x1, y0, y1), the extent of ``image``; ``members``: picker, x, y, z
    offset (dz, voxels) and distance (Å)."""
    figure = Figure(figsize=(6.4, 5.2))
    ax = figure.add_axes((0.08, 0.08, 0.6, 0.82))
    x0, x1, y0, y1 = window
    if image is not None:
        lo, hi = contrast(image)
        ax.imshow(image, cmap=GREY, vmin=lo, vmax=hi, origin="lower", extent=(x0, x1, y0, y1))
    else:
        ax.set_facecolor("#808080")
        ax.text(0.5, 0.02, "volume not available", transform=ax.transAxes, ha="center", fontsize=7)
    ax.add_collection(
        EllipseCollection(
            [2 * radius],
            [2 * radius],
            [0.0],
            units="xy",
            offsets=[centre],
            offset_transform=ax.transData,
            facecolors="none",
            edgecolors="white",
            linewidths=1.2,
        )
    )
    ax.plot(*centre, marker="+", color="white", markersize=10)
    pickers = sorted(set(members["picker"].astype(str)))
    for k, picker in enumerate(pickers):
        sel = members[members["picker"].astype(str) == picker]
        ax.scatter(
            sel["x"],
            sel["y"],
            s=40,
            marker="os^Dv<>p"[k % 8],
            facecolors="none",
            edgecolors=PICKER_COLOURS[k % len(PICKER_COLOURS)],
            linewidths=1.5,
            label=", ".join(
                f"{picker} ({d:.0f} Å, dz {dz:+.0f})"
                for d, dz in zip(sel["distance"], sel["dz"], strict=True)
            ),
        )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x (voxels)", fontsize=8)
    ax.set_ylabel("y (voxels)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    if pickers:
        ax.legend(
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            title="member (distance, dz voxels)",
            title_fontsize=7,
            frameon=False,
        )
    return _save(figure, path)
