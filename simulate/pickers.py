"""Simulated pickers for ``picks simulate``: real detectors with distinct personalities.

Every picker looks only at the tomogram (never at the ground truth); their mistakes are
therefore the ones image-based pickers make: false positives on gold beads, contamination,
the membrane, the ice edge and noise peaks; misses on small or faint particles.

============  ===========================  ==================================================
label         personality                  method
============  ===========================  ==================================================
cryolo        conservative (precise)       matched-template NCC, high threshold, clear class
                                           margin required, bead veto (a trained net knows gold)
deepfinder    aggressive (high recall)     multi-scale LoG, low threshold, no veto: picks
                                           beads, contamination, membrane and noise peaks
yolo          class confuser               LoG detection; class from the estimated size only,
                                           so 60/65 Å and 130/135/150 Å classes get swapped
yolo-slices   duplicates                   2D detection per z slice, linked into 3D tracks
                                           with no gap allowed: broken tracks report one
                                           particle several times
deepetpicker  binned                       matched-template NCC on the bin-2 tomogram
============  ===========================  ==================================================

Each returns a :class:`Detections` table in the canonical frame (Å, full-resolution
``x = i × voxel_size``); :mod:`picks.simulate.writers` writes it in the program's
native format.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from picks.core.particles import CZII
from picks.simulate.detect import (
    Peaks,
    TemplateMatcher,
    classify_by_signature,
    find_peaks,
    log_stack,
    refine,
    robust_z,
    scale_signatures,
    suppress,
)
from picks.simulate.volume import (
    BEAD_RADIUS,
    CLASS_ORDER,
    Optics,
    Scene,
    transfer_functions,
)

RADII = np.array([CZII[c].radius for c in CLASS_ORDER])


@dataclass
class PickerSpec:
    """A simulated picker: label, the program whose format it writes, adapter, personality."""

    label: str
    program: str
    adapter: str
    personality: str
    binned: bool = False


PICKERS: list[PickerSpec] = [
    PickerSpec("cryolo", "crYOLO 3D (CBOX_3D)", "cryolo-cbox", "conservative"),
    PickerSpec("deepfinder", "DeepFinder (object list XML)", "deepfinder-xml", "aggressive"),
    PickerSpec("yolo", "YOLO / CZII submission CSV", "czii-csv", "class confuser"),
    PickerSpec("yolo-slices", "YOLO 2D slices / CZII submission CSV", "czii-csv", "duplicates"),
    PickerSpec(
        "deepetpicker", "DeepETPicker (Coords_All, bin 2)", "deepetpicker", "binned", binned=True
    ),
]


@dataclass
class TomogramView:
    """What pickers see of one tomogram: the image (and its bin-2 copy) and the optics."""

    name: str
    image: np.ndarray  # [z, y, x], voxel_size Å
    voxel_size: float
    transfer: np.ndarray  # rfft-domain signal transfer of ``image``
    optics: Optics = field(default_factory=Optics)
    image_bin2: np.ndarray | None = None
    transfer_bin2: np.ndarray | None = None
    training: Training | None = None
    cache: dict = field(default_factory=dict)

    def transfer_of(self, shape_zyx: tuple[int, int, int]) -> np.ndarray:
        return transfer_functions(shape_zyx, self.voxel_size, self.optics)[0]


def _log_scales(view: TomogramView, n: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(σ grid in voxels, z-scored LoG stack, class signatures weighted like the stack)."""
    sigmas = np.geomspace(0.35 * RADII.min(), 0.75 * RADII.max(), n) / view.voxel_size
    raw = log_stack(view.image, list(sigmas))
    sample = raw[:, ::2, ::2, ::2].reshape(len(sigmas), -1)
    median = np.median(sample, axis=1)
    spread = np.median(np.abs(sample - median[:, None]), axis=1) * 1.4826
    stack = (raw - median[:, None, None, None]) / spread[:, None, None, None]
    signatures = _log_signatures(view.voxel_size, view.optics, tuple(float(x) for x in sigmas))
    return sigmas, stack, signatures / spread[None, :]


def _frame(
    view: TomogramView, peaks: Peaks, picked_voxel: float, extra: dict | None = None
) -> pd.DataFrame:
    """Peaks (voxel indices of the picked volume) -> Å in the full-resolution frame."""
    reference = view.voxel_size
    xyz = (peaks.xyz + 0.5) * picked_voxel - 0.5 * reference
    frame = pd.DataFrame(
        {
            "tomogram": view.name,
            "particle": [CLASS_ORDER[i] for i in peaks.label],
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "score": peaks.score.astype(float),
            "size": peaks.size.astype(float) * picked_voxel,
        }
    )
    for key, value in (extra or {}).items():
        frame[key] = value
    return frame


@functools.lru_cache(maxsize=8)
def _log_signatures(voxel_size: float, optics: Optics, sigmas: tuple[float, ...]) -> np.ndarray:
    return scale_signatures(
        CLASS_ORDER,
        list(RADII),
        voxel_size,
        lambda g: transfer_functions(g, voxel_size, optics)[0],
        np.asarray(sigmas),
    )


@dataclass
class Training:
    """A labelled tomogram like the data (same optics and SNR) that trained pickers learn from.

    Real pickers are trained on annotated tomograms; this one is simulated with its own seed,
    so the pickers never see the ground truth of the tomograms they pick.
    """

    image: np.ndarray
    voxel_size: float
    transfer: np.ndarray
    centres: np.ndarray  # Å
    classes: list[str]
    image_bin2: np.ndarray | None = None
    transfer_bin2: np.ndarray | None = None
    cache: dict = field(default_factory=dict)


def make_training(
    rng: np.random.Generator,
    size: tuple[int, int, int],
    voxel_size: float,
    snr: float,
    optics: Optics,
    bin2: bool,
) -> Training:
    """Simulate the training tomogram (at most 200 × 200 voxels in x, y; same thickness)."""
    from picks.simulate import volume as sv

    shape = (min(size[0], 200), min(size[1], 200), size[2])
    scene = sv.place_scene(rng, shape, voxel_size)
    image = sv.scene_image(scene, shape, voxel_size, snr, rng, optics)
    training = Training(
        image,
        voxel_size,
        transfer_functions(image.shape, voxel_size, optics)[0],
        scene.centres,
        scene.classes,
    )
    if bin2:
        training.image_bin2 = sv.bin2(image)
        training.transfer_bin2 = transfer_functions(
            training.image_bin2.shape, 2 * voxel_size, optics
        )[0]
    return training


class LinearDiscriminant:
    """Gaussian classes with a shared covariance (LDA), with a ridge so that small classes work."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
        self.scale = features.std(axis=0) + 1e-6
        x = features / self.scale
        self.means = np.zeros((n_classes, x.shape[1]))
        self.log_prior = np.full(n_classes, -np.inf)
        residual = []
        for k in range(n_classes):
            members = x[labels == k]
            if len(members):
                self.means[k] = members.mean(axis=0)
                self.log_prior[k] = 0.0  # uniform priors: the rare classes are the point
                residual.append(members - self.means[k])
        covariance = np.cov(np.vstack(residual).T) if len(x) > 1 else np.eye(x.shape[1])
        self.precision = np.linalg.inv(np.atleast_2d(covariance) + 0.1 * np.eye(x.shape[1]))

    def proba(self, features: np.ndarray) -> np.ndarray:
        x = features / self.scale
        diff = x[:, None, :] - self.means[None, :, :]
        logits = -0.5 * np.einsum("nki,ij,nkj->nk", diff, self.precision, diff) + self.log_prior
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


BACKGROUND = len(CLASS_ORDER)  # label of "not a particle" in the trained classifiers


def _ncc_detect(
    image: np.ndarray, voxel_size: float, transfer: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(peak indices [z, y, x], per-class z-scored NCC stack, max over classes)."""
    matcher = TemplateMatcher(image, voxel_size, transfer, CLASS_ORDER, list(RADII))
    # Large templates give lower NCC values: detect on per-class robust z-scores.
    stack = np.stack([robust_z(m) for m in matcher.all()])
    best = stack.max(axis=0)
    size = max(3, round(0.8 * RADII.min() / voxel_size) | 1)
    return find_peaks(best, threshold, size, border=2), stack, best


def _features(
    stack: np.ndarray, image: np.ndarray, idx: np.ndarray, voxel_size: float
) -> np.ndarray:
    """Per peak: the NCC z-scores of all templates, the shape (normalised second moments of
    the local density, sorted) and the local brightness (beads are far brighter than protein)."""
    smooth = ndimage.gaussian_filter(image, 1.5)
    reach = int(np.ceil(140.0 / voxel_size))
    offsets = np.mgrid[-reach : reach + 1, -reach : reach + 1, -reach : reach + 1].reshape(3, -1).T
    ball = (offsets**2).sum(axis=1) <= reach * reach
    offsets = offsets[ball]
    shape = np.array(image.shape)
    moments = np.zeros((len(idx), 3))
    for k, centre in enumerate(idx):
        points = centre + offsets
        inside = ((points >= 0) & (points < shape)).all(axis=1)
        pts = points[inside]
        values = smooth[tuple(pts.T)]
        weights = np.clip(values - np.median(values), 0.0, None)
        total = weights.sum()
        if total <= 0:
            continue
        rel = (pts - centre) * weights[:, None]
        covariance = rel.T @ (pts - centre) / total
        eig = np.sort(np.linalg.eigvalsh(covariance))[::-1]
        moments[k] = eig / (eig.sum() + 1e-9)
    brightness = ndimage.gaussian_filter(image, 2.0)[tuple(idx.T)] if len(idx) else np.zeros(0)
    ncc = stack[(slice(None), *idx.T)].T if len(idx) else np.zeros((0, len(CLASS_ORDER)))
    return np.hstack([ncc, moments, brightness[:, None]])


def _trained_classifier(training: Training, binned: bool, threshold: float) -> LinearDiscriminant:
    """Fit the classifier on the training tomogram's detections (background = no particle near)."""
    key = ("ncc", binned, threshold)
    if key in training.cache:
        return training.cache[key]
    image = training.image_bin2 if binned else training.image
    transfer = training.transfer_bin2 if binned else training.transfer
    voxel = training.voxel_size * (2 if binned else 1)
    idx, stack, _ = _ncc_detect(image, voxel, transfer, threshold)
    xyz = (idx[:, ::-1] + 0.5) * voxel - 0.5 * training.voxel_size
    labels = np.full(len(idx), BACKGROUND)
    if len(training.classes) and len(idx):
        dist, j = cKDTree(training.centres).query(xyz)
        radius = np.array([CZII[training.classes[k]].radius for k in j])
        hit = dist <= 0.5 * radius
        labels[hit] = [CLASS_ORDER.index(training.classes[k]) for k in j[hit]]
    classifier = LinearDiscriminant(_features(stack, image, idx, voxel), labels, BACKGROUND + 1)
    training.cache[key] = classifier
    return classifier


def _ncc_peaks(view: TomogramView, binned: bool, threshold: float, min_probability: float) -> Peaks:
    """Template-matching peaks classified by the trained classifier; background dropped.

    ``score`` is the classifier's probability of the chosen class; peaks below
    ``min_probability`` are dropped (an unsure picker stays quiet).
    """
    image = view.image_bin2 if binned else view.image
    transfer = view.transfer_bin2 if binned else view.transfer
    voxel = view.voxel_size * (2 if binned else 1)
    if image is None or transfer is None or view.training is None:
        raise ValueError(
            "the template pickers need the image (and bin-2 copy) and a training tomogram"
        )
    key = ("ncc", binned, threshold)
    if key not in view.cache:
        view.cache[key] = _ncc_detect(image, voxel, transfer, threshold)
    idx, stack, best = view.cache[key]
    if not len(idx):
        return Peaks.empty()
    classifier = _trained_classifier(view.training, binned, threshold)
    proba = classifier.proba(_features(stack, image, idx, voxel))
    label = proba.argmax(axis=1)
    probability = proba[np.arange(len(idx)), label]
    keep = (label != BACKGROUND) & (probability >= min_probability)
    idx, label, probability = idx[keep], label[keep], probability[keep]
    peaks = Peaks(refine(best, idx), probability, label, RADII[label] / voxel)
    return suppress(peaks, RADII / voxel, 0.9)


def conservative(view: TomogramView, rng: np.random.Generator) -> pd.DataFrame:
    """crYOLO-like: trained classifier, high detection threshold, only confident picks."""
    peaks = _ncc_peaks(view, binned=False, threshold=5.0, min_probability=0.8)
    peaks.score = np.round(peaks.score, 4)
    return _frame(view, peaks, view.voxel_size)


def aggressive(view: TomogramView, rng: np.random.Generator) -> pd.DataFrame:
    """DeepFinder-like: multi-scale LoG, low threshold, no veto; class from the scale profile."""
    _, stack, signatures = _log_scales(view)
    best = stack.max(axis=0)
    idx = find_peaks(best, 4.0, 5, border=2)
    if not len(idx):
        return _frame(
            view, Peaks.empty(), view.voxel_size, {"cluster_size": np.zeros(0, dtype=int)}
        )
    label = classify_by_signature(stack[(slice(None), *idx.T)].T, signatures)
    peaks = Peaks(refine(best, idx), best[tuple(idx.T)], label, RADII[label] / view.voxel_size)
    peaks = suppress(peaks, RADII / view.voxel_size, 0.6)
    # DeepFinder's confidence is the cluster size: voxels above half the peak in the class ball.
    cluster = np.empty(len(peaks), dtype=int)
    shape = np.array(view.image.shape)
    for k, (centre, lab) in enumerate(zip(peaks.xyz[:, ::-1], peaks.label, strict=True)):
        r = int(np.ceil(RADII[lab] / view.voxel_size))
        c = np.round(centre).astype(int)
        lo, hi = np.maximum(c - r, 0), np.minimum(c + r + 1, shape)
        box = best[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        cluster[k] = int(np.count_nonzero(box > 0.5 * peaks.score[k]))
    return _frame(view, peaks, view.voxel_size, {"cluster_size": cluster})


def class_confuser(view: TomogramView, rng: np.random.Generator) -> pd.DataFrame:
    """YOLO-like: finds blobs well, but names them from a noisy size estimate alone."""
    sigmas, stack, signatures = _log_scales(view)
    best = stack.max(axis=0)
    idx = find_peaks(best, 5.0, 7, border=2)
    if not len(idx):
        return _frame(view, Peaks.empty(), view.voxel_size)
    # Characteristic σ of each class vs the detected σ (jittered): size only, no shape.
    class_sigma = sigmas[signatures.argmax(axis=1)]
    found = sigmas[stack[(slice(None), *idx.T)].argmax(axis=0)] * rng.lognormal(0.0, 0.15, len(idx))
    label = np.abs(np.log(found[:, None] / class_sigma[None, :])).argmin(axis=1)
    peaks = Peaks(refine(best, idx), best[tuple(idx.T)], label, found * np.sqrt(3))
    peaks = suppress(peaks, RADII / view.voxel_size, 0.8)
    peaks.score = np.round(1.0 / (1.0 + np.exp(-(peaks.score - 7.0))), 4)
    return _frame(view, peaks, view.voxel_size)


def duplicator(view: TomogramView, rng: np.random.Generator) -> pd.DataFrame:
    """YOLO on z slices: 2D LoG peaks per slice, linked across slices only without gaps.

    A particle whose 2D detection drops out in one slice (noise, the missing wedge blurs z)
    becomes two or more 3D tracks, i.e. the same particle reported several times, each a
    little off in z.
    """
    image = view.image
    sigmas = RADII / view.voxel_size / np.sqrt(2)  # a disc of radius r peaks at σ = r/√2 in 2D
    ft = np.fft.rfft2(image, axes=(1, 2))
    ky = np.fft.fftfreq(image.shape[1]).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(image.shape[2]).astype(np.float32)[None, :]
    k2 = kx**2 + ky**2
    responses = np.empty((len(sigmas), *image.shape), dtype=np.float32)
    for i, s in enumerate(sigmas):
        tf = (s * s * 4 * np.pi**2 * k2 * np.exp(-2 * np.pi**2 * s * s * k2)).astype(np.float32)
        responses[i] = robust_z(np.fft.irfft2(ft * tf, s=image.shape[1:], axes=(1, 2)))
    best = responses.max(axis=0)
    label = responses.argmax(axis=0)
    maxima = (ndimage.maximum_filter(best, size=(1, 7, 7), mode="nearest") == best) & (best > 4.0)
    maxima[:, :2] = maxima[:, -2:] = False
    maxima[:, :, :2] = maxima[:, :, -2:] = False
    tracks: list[list[tuple[int, float, float, float, int]]] = []
    active: list[int] = []
    for z in range(image.shape[0]):
        ys, xs = np.nonzero(maxima[z])
        points = np.stack([xs, ys], axis=1).astype(float)
        next_active: list[int] = []
        taken: set[int] = set()
        if len(points) and active:
            ends = np.array([tracks[t][-1][1:3] for t in active])
            dist, which = cKDTree(points).query(ends, distance_upper_bound=1.5)
            for t, d, w in zip(active, dist, which, strict=True):
                if np.isfinite(d) and w not in taken:
                    taken.add(int(w))
                    tracks[t].append(
                        (
                            z,
                            points[w, 0],
                            points[w, 1],
                            float(best[z, ys[w], xs[w]]),
                            int(label[z, ys[w], xs[w]]),
                        )
                    )
                    next_active.append(t)
        for w in range(len(points)):
            if w not in taken:
                tracks.append(
                    [
                        (
                            z,
                            points[w, 0],
                            points[w, 1],
                            float(best[z, ys[w], xs[w]]),
                            int(label[z, ys[w], xs[w]]),
                        )
                    ]
                )
                next_active.append(len(tracks) - 1)
        active = next_active
    rows = []
    for track in tracks:
        if len(track) < 3:
            continue
        arr = np.array(track)
        weights = arr[:, 3]
        top = int(arr[:, 3].argmax())
        rows.append(
            (
                float((arr[:, 1] * weights).sum() / weights.sum()),
                float((arr[:, 2] * weights).sum() / weights.sum()),
                float((arr[:, 0] * weights).sum() / weights.sum()),
                float(weights.mean()),
                int(arr[top, 4]),
            )
        )
    if not rows:
        return _frame(view, Peaks.empty(), view.voxel_size)
    arr = np.array(rows)
    arr = arr[arr[:, 3] > 5.0]
    # The classification head: the trained classifier at the track centre, best particle class.
    key = ("ncc", False, 5.0)
    if key not in view.cache:
        view.cache[key] = _ncc_detect(view.image, view.voxel_size, view.transfer, 5.0)
    stack = view.cache[key][1]
    idx = np.clip(np.round(arr[:, 2::-1]).astype(int), 0, np.array(image.shape) - 1)
    if view.training is not None and len(idx):
        proba = _trained_classifier(view.training, False, 5.0).proba(
            _features(stack, image, idx, view.voxel_size)
        )
        label = proba[:, :BACKGROUND].argmax(axis=1)
    else:
        label = arr[:, 4].astype(int)
    peaks = Peaks(arr[:, :3], arr[:, 3], label, RADII[label] / view.voxel_size)
    peaks.score = np.round(1.0 / (1.0 + np.exp(-(peaks.score - 6.0))), 4)
    return _frame(view, peaks, view.voxel_size)


def binned(view: TomogramView, rng: np.random.Generator) -> pd.DataFrame:
    """DeepETPicker-like on the bin-2 tomogram: trained classifier, integer bin-2 voxels."""
    peaks = _ncc_peaks(view, binned=True, threshold=5.0, min_probability=0.7)
    peaks.xyz = np.round(peaks.xyz)  # DeepETPicker writes integer voxel indices
    extra = {"bin2_x": peaks.xyz[:, 0], "bin2_y": peaks.xyz[:, 1], "bin2_z": peaks.xyz[:, 2]}
    return _frame(view, peaks, 2 * view.voxel_size, extra)


PERSONALITIES = {
    "cryolo": conservative,
    "deepfinder": aggressive,
    "yolo": class_confuser,
    "yolo-slices": duplicator,
    "deepetpicker": binned,
}


def explain(picks: pd.DataFrame, scene: Scene) -> pd.DataFrame:
    """Label each pick with what it sits on (diagnostics only, never used to pick).

    ``on`` is ``particle`` (within 0.5 × the radius of a true particle, any class), ``bead``,
    ``contamination``, ``membrane``, ``edge`` (near the ice surface) or ``noise``; ``truth``
    is the index of the nearest true particle and ``class_ok`` whether the class is right.
    """
    out = picks.copy()
    n = len(out)
    xyz = out[["x", "y", "z"]].to_numpy(dtype=float).reshape(-1, 3)
    on = np.full(n, "noise", dtype=object)
    truth = np.full(n, -1, dtype=int)
    class_ok = np.zeros(n, dtype=bool)
    if len(scene.classes) and n:
        dist, j = cKDTree(scene.centres).query(xyz)
        radius = np.array([CZII[scene.classes[k]].radius for k in j])
        hit = dist <= 0.5 * radius
        truth = np.where(hit, j, -1)
        on[hit] = "particle"
        class_ok = hit & (out["particle"].to_numpy() == np.array([scene.classes[k] for k in j]))
    free = on == "noise"
    if len(scene.beads) and free.any():
        d, _ = cKDTree(scene.beads).query(xyz)
        on[free & (d <= BEAD_RADIUS + 60.0)] = "bead"
    for balls in scene.blobs:
        for centre, r in balls:
            near = np.linalg.norm(xyz - centre, axis=1) <= r + 60.0
            on[(on == "noise") & near] = "contamination"
    if scene.vesicle is not None:
        centre, radius = scene.vesicle
        near = np.abs(np.linalg.norm(xyz - centre, axis=1) - radius) <= 60.0
        on[(on == "noise") & near] = "membrane"
    bottom, top, _, _ = scene.ice
    near = (np.abs(xyz[:, 2] - bottom) <= 60.0) | (np.abs(xyz[:, 2] - top) <= 60.0)
    on[(on == "noise") & near] = "edge"
    out["on"] = on
    out["truth"] = truth
    out["class_ok"] = class_ok
    return out
