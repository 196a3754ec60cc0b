"""Image-analysis building blocks for the simulated pickers: matched templates, LoG, peaks.

All detectors work on ``[z, y, x]`` float32 volumes and return voxel-centre indices
``(x, y, z)`` (floats after sub-voxel refinement). They look at the image only: nothing here
knows where the true particles are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage
from scipy.spatial import cKDTree

from picks.simulate.volume import SHAPES, SOFT_EDGE


@dataclass
class Peaks:
    """Detected peaks: voxel-centre indices (n, 3) as x, y, z; score; class index; extra."""

    xyz: np.ndarray
    score: np.ndarray
    label: np.ndarray
    size: np.ndarray  # estimated radius in voxels

    def __len__(self) -> int:
        return len(self.score)

    def take(self, keep: np.ndarray) -> Peaks:
        return Peaks(self.xyz[keep], self.score[keep], self.label[keep], self.size[keep])

    @staticmethod
    def empty() -> Peaks:
        return Peaks(np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=int), np.zeros(0))


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def radial_profile(name: str, radius: float, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Orientation average of a class's shape: (radii Å, mean density) out to radius + edge."""
    radii = np.arange(0.0, radius + 2 * SOFT_EDGE, step)
    directions = _fibonacci_sphere(300)
    points = radii[:, None, None] * directions[None, :, :]
    density = SHAPES[name](points.reshape(-1, 3)).reshape(len(radii), -1).mean(axis=1)
    return radii, density


def _centred_radius(shape_zyx: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """Distance (Å) of every voxel from voxel 0 with periodic wrap (FFT template layout)."""
    axes = [np.minimum(np.arange(n), n - np.arange(n)) * voxel_size for n in shape_zyx]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(zz**2 + yy**2 + xx**2).astype(np.float32)


def class_template(
    name: str, radius: float, r: np.ndarray, transfer: np.ndarray | None, voxel_size: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(zero-mean masked template, mask, mask voxel count, template norm) centred at voxel 0.

    ``r`` is the wrapped distance map of the grid (:func:`_centred_radius`); the template is
    the class's orientation-averaged profile passed through ``transfer``.
    """
    radii, density = radial_profile(name, radius)
    template = np.interp(r, radii, density, right=0.0).astype(np.float32)
    if transfer is not None:
        template = scipy.fft.irfftn(scipy.fft.rfftn(template) * transfer, s=r.shape)
    mask = (r <= radius + voxel_size).astype(np.float32)
    inside = mask > 0
    template = np.where(inside, template - template[inside].mean(), 0.0).astype(np.float32)
    norm = float(np.sqrt((template**2).sum())) or 1.0
    return template, mask, float(mask.sum()), norm


class TemplateMatcher:
    """Fast local normalised cross-correlation with orientation-averaged class templates.

    The templates are passed through the same transfer function as the data (a matched
    filter: the picker "knows" the CTF and the wedge). The correlation is normalised by the
    local standard deviation of the image under the template mask (Roseman's fast local NCC).
    """

    def __init__(
        self,
        volume: np.ndarray,
        voxel_size: float,
        transfer: np.ndarray | None,
        classes: list[str],
        radii: list[float],
    ) -> None:
        self.shape = volume.shape
        self.voxel_size = voxel_size
        self.classes = classes
        self.radii = radii
        self._ft = scipy.fft.rfftn(volume)
        self._ft2 = scipy.fft.rfftn(volume.astype(np.float32) ** 2)
        self._r = _centred_radius(self.shape, voxel_size)
        self._transfer = transfer

    def ncc(self, index: int) -> np.ndarray:
        """NCC map (float32) of class ``index``."""
        template, mask, n, norm = class_template(
            self.classes[index], self.radii[index], self._r, self._transfer, self.voxel_size
        )
        mask_ft = np.conj(scipy.fft.rfftn(mask))
        numerator = scipy.fft.irfftn(self._ft * np.conj(scipy.fft.rfftn(template)), s=self.shape)
        s1 = scipy.fft.irfftn(self._ft * mask_ft, s=self.shape)
        s2 = scipy.fft.irfftn(self._ft2 * mask_ft, s=self.shape)
        variance = np.maximum(s2 - s1 * s1 / n, 1e-6 * n)
        return (numerator / (np.sqrt(variance) * norm)).astype(np.float32)

    def all(self) -> np.ndarray:
        """(n_classes, z, y, x) stack of NCC maps."""
        return np.stack([self.ncc(i) for i in range(len(self.classes))])


def log_stack(volume: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """Scale-normalised Laplacian-of-Gaussian responses, sign flipped so bright blobs are > 0.

    Computed in Fourier space: the transfer function of ``-σ²∇²G_σ`` is
    ``σ²(2πk)²·exp(-2π²σ²k²)`` (k in cycles/voxel). A solid ball of radius r peaks at σ = r/√3.
    """
    ft = scipy.fft.rfftn(volume)
    nz, ny, nx = volume.shape
    kz = scipy.fft.fftfreq(nz).astype(np.float32)[:, None, None]
    ky = scipy.fft.fftfreq(ny).astype(np.float32)[None, :, None]
    kx = scipy.fft.rfftfreq(nx).astype(np.float32)[None, None, :]
    k2 = kz**2 + ky**2 + kx**2
    out = np.empty((len(sigmas), *volume.shape), dtype=np.float32)
    for i, s in enumerate(sigmas):
        tf = (s * s * 4 * np.pi**2 * k2 * np.exp(-2 * np.pi**2 * s * s * k2)).astype(np.float32)
        out[i] = scipy.fft.irfftn(ft * tf, s=volume.shape)
    return out


def robust_z(values: np.ndarray) -> np.ndarray:
    """(v − median) / (1.4826 · MAD): a noise-level–independent scale for thresholds."""
    sample = values.ravel()[:: max(1, values.size // 200_000)]
    median = float(np.median(sample))
    mad = float(np.median(np.abs(sample - median))) * 1.4826 or 1.0
    return (values - median) / mad


def find_peaks(score: np.ndarray, threshold: float, size: int, border: int = 1) -> np.ndarray:
    """Local maxima above ``threshold`` as (n, 3) integer ``[z, y, x]`` indices, best first."""
    maxima = ndimage.maximum_filter(score, size=size, mode="nearest") == score
    maxima &= score > threshold
    if border > 0:
        maxima[:border] = maxima[-border:] = False
        maxima[:, :border] = maxima[:, -border:] = False
        maxima[:, :, :border] = maxima[:, :, -border:] = False
    idx = np.argwhere(maxima)
    order = np.argsort(-score[tuple(idx.T)], kind="stable")
    return idx[order]


def refine(score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Sub-voxel peak positions (x, y, z) by a parabola through each axis' 3 neighbours."""
    out = idx.astype(float).copy()
    for axis in range(3):
        lo = idx.copy()
        hi = idx.copy()
        lo[:, axis] = np.maximum(lo[:, axis] - 1, 0)
        hi[:, axis] = np.minimum(hi[:, axis] + 1, score.shape[axis] - 1)
        s0 = score[tuple(idx.T)]
        sm = score[tuple(lo.T)]
        sp = score[tuple(hi.T)]
        denominator = sm - 2 * s0 + sp
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denominator < 0, 0.5 * (sm - sp) / denominator, 0.0)
        out[:, axis] += np.clip(shift, -0.5, 0.5)
    return out[:, ::-1]  # z, y, x -> x, y, z


def suppress(peaks: Peaks, radii_vox: np.ndarray, fraction: float) -> Peaks:
    """Greedy non-maximum suppression: drop a peak closer than ``fraction × radius`` to a better one.

    The radius is the larger of the two peaks' class radii (in voxels).
    """
    if len(peaks) == 0:
        return peaks
    order = np.argsort(-peaks.score, kind="stable")
    tree = cKDTree(peaks.xyz)
    reach = fraction * float(radii_vox.max())
    dropped = np.zeros(len(peaks), dtype=bool)
    keep = []
    for i in order:
        if dropped[i]:
            continue
        keep.append(i)
        for j in tree.query_ball_point(peaks.xyz[i], reach):
            if j != i and not dropped[j]:
                limit = fraction * max(radii_vox[peaks.label[i]], radii_vox[peaks.label[j]])
                if np.linalg.norm(peaks.xyz[j] - peaks.xyz[i]) < limit:
                    dropped[j] = True
    return peaks.take(np.asarray(keep, dtype=int))


def scale_signatures(
    classes: list[str], radii: list[float], voxel_size: float, transfer_of, sigmas: np.ndarray
) -> np.ndarray:
    """LoG response of each class's orientation-averaged template at its centre, per σ.

    ``transfer_of(shape_zyx)`` gives the rfft-domain transfer function of the data for a grid
    of that shape, so the signature includes the CTF and the wedge. This is what a blob picker
    is "trained" on: the scale profile that identifies each class. Shape (classes, sigmas).
    """
    n = int(max(32, 2 * np.ceil(2.2 * max(radii) / voxel_size)))
    grid = (n, n, n)
    r = _centred_radius(grid, voxel_size)
    transfer = transfer_of(grid)
    out = np.empty((len(classes), len(sigmas)))
    for i, (name, radius) in enumerate(zip(classes, radii, strict=True)):
        rad, density = radial_profile(name, radius)
        template = np.interp(r, rad, density, right=0.0).astype(np.float32)
        template = scipy.fft.irfftn(scipy.fft.rfftn(template) * transfer, s=grid)
        out[i] = log_stack(template, list(sigmas))[:, 0, 0, 0]
    return out


def classify_by_signature(
    responses: np.ndarray, signatures: np.ndarray, *, with_margin: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class index whose signature correlates best with each response vector.

    ``responses`` is (n, features), ``signatures`` (classes, features); rows are centred and
    normalised before comparing. With ``with_margin`` also return best − second-best
    correlation (how sure the choice is) and the best correlation (how particle-like).
    """

    def unit(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=-1, keepdims=True)
        return a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-12)

    similarity = unit(responses) @ unit(signatures).T
    label = similarity.argmax(axis=1)
    if not with_margin:
        return label
    ordered = np.sort(similarity, axis=1)
    return label, ordered[:, -1] - ordered[:, -2], ordered[:, -1]


def ncc_signatures(
    classes: list[str],
    radii: list[float],
    voxel_size: float,
    transfer_of,
    *,
    examples: int = 6,
    seed: int = 0,
) -> np.ndarray:
    """Mean NCC of every class template (columns) at the centre of particles of each class (rows).

    The "training" of the template pickers: a few noise-free particles per class, rendered in
    random orientations and passed through the data's transfer function, give the pattern of
    NCC values across the templates that identifies the class. Shape (classes, classes).
    """
    from scipy.spatial.transform import Rotation

    from picks.simulate.volume import SHAPES, _stamp

    n = int(max(32, 2 * np.ceil(1.6 * max(radii) / voxel_size)))
    grid = (n, n, n)
    r = _centred_radius(grid, voxel_size)
    transfer = transfer_of(grid)
    templates = [
        class_template(c, rad, r, transfer, voxel_size)
        for c, rad in zip(classes, radii, strict=True)
    ]
    rotations = Rotation.random(
        examples * len(classes), rng=np.random.default_rng(seed)
    ).as_matrix()
    centre = np.full(3, (n // 2) * voxel_size)
    out = np.zeros((len(classes), len(classes)))
    for j, (name, radius) in enumerate(zip(classes, radii, strict=True)):
        for e in range(examples):
            matrix = rotations[j * examples + e]
            volume = np.zeros(grid, dtype=np.float32)
            _stamp(
                volume,
                centre,
                radius,
                voxel_size,
                lambda p, m=matrix, f=SHAPES[name]: f(p @ m),
                1.0,
            )
            volume = scipy.fft.irfftn(scipy.fft.rfftn(volume) * transfer, s=grid)
            volume = np.fft.ifftshift(volume)  # particle centre -> voxel 0, like the templates
            for i, (template, mask, count, norm) in enumerate(templates):
                s1 = float((volume * mask).sum())
                s2 = float((volume * volume * mask).sum())
                variance = max(s2 - s1 * s1 / count, 1e-6 * count)
                out[j, i] += (
                    float((volume * template).sum()) / (np.sqrt(variance) * norm) / examples
                )
    return out
