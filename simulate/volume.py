"""The physics of ``picks simulate``: particle shapes, crowding, decoys, CTF, wedge and noise.

Everything is NumPy/SciPy and deterministic for a :class:`numpy.random.Generator`.

Conventions
-----------
* Volumes are float32 arrays indexed ``[z, y, x]`` (the MRC order: x is the fastest axis).
* Positions are in Å in the canonical frame: ``x_Å = i × voxel_size`` for the 0-based voxel
  index ``i`` (the origin is the centre of voxel 0), the frame of copick and the CZII metric.
* Density is **positive**: protein is brighter than ice (like polnet's density maps); vacuum
  outside the ice slab is darker than ice. Negate the tomogram for tools that expect dark
  particles.

Image formation (a cheap stand-in for projection + reconstruction, applied in Fourier space):

1. ``signal = particles + decoys + ice slab`` (decoys: gold beads, contamination, a vesicle);
2. multiplied by a phase-flipped CTF ``|sqrt(1-A²)·sin χ + A·cos χ|`` with
   ``χ = π·λ·Δf·k²`` (300 kV, Cs neglected at these resolutions), flattened to 1 below its
   first maximum (a deconvolved tomogram, as pickers usually get; ``Optics.deconvolved``),
   a B-factor envelope and a high-pass (low resolutions lost in reconstruction);
3. multiplied by a missing-wedge mask: tilts within ±``tilt_range`` degrees around the Y axis
   keep the Fourier components with ``|k_z| ≤ tan(tilt_range)·|k_x|`` (beam along z);
4. plus Gaussian noise that went through the same wedge and envelope (noise in the tilt images
   is reconstructed like the signal) scaled to the requested **SNR = variance of the filtered
   particle signal / variance of the noise**, both over the whole volume (decoys and the ice
   edge are not counted as signal, so the SNR means the same with or without them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from picks.core.particles import CZII

# Relativistic electron wavelength at 300 kV, in Å.
WAVELENGTH_300KV = 0.019687
SOFT_EDGE = 4.0  # Å, width of the anti-aliased edge of every shape

CLASS_ORDER = [
    "apo-ferritin",
    "beta-amylase",
    "beta-galactosidase",
    "ribosome",
    "thyroglobulin",
    "virus-like-particle",
]

# Particles per 10⁹ Å³ of ice, per class (≈ 50 particles in a 200×200×80 tomogram at 10 Å).
NUMBER_DENSITY = {
    "apo-ferritin": 5.0,
    "beta-amylase": 3.5,
    "beta-galactosidase": 4.0,
    "ribosome": 3.0,
    "thyroglobulin": 4.0,
    "virus-like-particle": 2.5,
}
# Mean contrast relative to protein = 1 (beta-amylase is small and faint: the "hard" class).
CLASS_CONTRAST = {
    "apo-ferritin": 1.0,
    "beta-amylase": 0.7,
    "beta-galactosidase": 1.0,
    "ribosome": 1.0,
    "thyroglobulin": 1.0,
    "virus-like-particle": 1.0,
}
BEAD_RADIUS = 50.0  # Å
BEAD_CONTRAST = 5.0
CONTAMINATION_CONTRAST = 2.5
MEMBRANE_CONTRAST = 1.2
VACUUM_CONTRAST = -1.0
GAP = 10.0  # Å kept free between any two objects


# -- shapes ----------------------------------------------------------------------------------
def _soft(distance: np.ndarray) -> np.ndarray:
    """1 inside (distance < 0), 0 outside, with a linear ramp SOFT_EDGE Å wide."""
    return np.clip(0.5 - distance / SOFT_EDGE, 0.0, 1.0)


def _ball(p: np.ndarray, centre: tuple[float, float, float], radius: float) -> np.ndarray:
    return _soft(np.linalg.norm(p - np.asarray(centre), axis=-1) - radius)


def _ellipsoid(
    p: np.ndarray, centre: tuple[float, float, float], axes: tuple[float, float, float]
) -> np.ndarray:
    scaled = np.linalg.norm((p - np.asarray(centre)) / np.asarray(axes), axis=-1)
    return _soft((scaled - 1.0) * min(axes))


def _shell(p: np.ndarray, outer: float, inner: float) -> np.ndarray:
    r = np.linalg.norm(p, axis=-1)
    return _soft(r - outer) * (1.0 - _soft(r - inner))


_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(
    3
)
_VLP_CORE = np.array([[0.6, 0.2, 0.1], [-0.3, 0.5, -0.3], [-0.2, -0.5, 0.4], [0.1, -0.1, -0.6]])


def apo_ferritin(p: np.ndarray) -> np.ndarray:
    """Hollow spherical shell (outer 60 Å, cavity 38 Å), like the 24-mer cage."""
    return _shell(p, 58.0, 38.0)


def beta_amylase(p: np.ndarray) -> np.ndarray:
    """Small compact, slightly flattened blob."""
    return _ellipsoid(p, (0, 0, 0), (55.0, 44.0, 36.0))


def beta_galactosidase(p: np.ndarray) -> np.ndarray:
    """Tetrahedral cluster of four blobs (the D2 tetramer)."""
    return np.max([_ball(p, tuple(48.0 * v), 38.0) for v in _TETRAHEDRON], axis=0)


def ribosome(p: np.ndarray) -> np.ndarray:
    """Two unequal lobes: a large subunit and a flatter small subunit."""
    large = _ball(p, (35.0, 0.0, 0.0), 100.0)
    small = _ellipsoid(p, (-72.0, 10.0, 0.0), (70.0, 95.0, 60.0))
    return np.maximum(large, small)


def thyroglobulin(p: np.ndarray) -> np.ndarray:
    """Elongated dimer: two overlapping globular halves along x (a peanut ~230 × 120 Å)."""
    return np.maximum(_ball(p, (-54.0, 0.0, 0.0), 60.0), _ball(p, (54.0, 0.0, 0.0), 60.0))


def virus_like_particle(p: np.ndarray) -> np.ndarray:
    """Thick hollow capsid (outer 132 Å, inner 100 Å) with four dense spots inside."""
    shell = _shell(p, 132.0, 100.0)
    core = np.max([_ball(p, tuple(100.0 * v), 22.0) for v in _VLP_CORE], axis=0)
    return np.maximum(shell, core)


SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "apo-ferritin": apo_ferritin,
    "beta-amylase": beta_amylase,
    "beta-galactosidase": beta_galactosidase,
    "ribosome": ribosome,
    "thyroglobulin": thyroglobulin,
    "virus-like-particle": virus_like_particle,
}


# -- scene -----------------------------------------------------------------------------------
@dataclass
class Scene:
    """Everything placed in one tomogram (positions in Å, canonical frame)."""

    classes: list[str]
    centres: np.ndarray  # (n, 3) particle centres x, y, z
    rotations: Rotation  # particle orientation (body -> tomogram)
    contrast: np.ndarray  # (n,) particle contrast
    beads: np.ndarray  # (m, 3) gold bead centres
    blobs: list[
        list[tuple[np.ndarray, float]]
    ]  # contamination: per blob, its (centre, radius) balls
    vesicle: tuple[np.ndarray, float] | None  # (centre, radius) of the membrane vesicle
    ice: tuple[float, float, float, float]  # z_bottom, z_top (Å), slope_x, slope_y


def place_scene(
    rng: np.random.Generator,
    shape_xyz: tuple[int, int, int],
    voxel_size: float,
    *,
    density_scale: float = 1.0,
    max_tries: int = 400,
) -> Scene:
    """Crowd particles and decoys into the ice without overlap (KD-tree rejection sampling).

    Each candidate is tested against everything placed so far (a KD-tree over the placed
    centres, queried with the largest possible contact distance, then checked exactly). A class
    gets at most ``max_tries`` candidates per wanted particle, so crowded settings return fewer
    particles instead of looping forever.
    """
    extent = np.asarray(shape_xyz, dtype=float) * voxel_size
    margin_z = max(3.0, 0.08 * shape_xyz[2]) * voxel_size
    ice = (
        margin_z + rng.uniform(-1, 1) * voxel_size,
        extent[2] - margin_z + rng.uniform(-1, 1) * voxel_size,
        float(np.tan(np.radians(rng.uniform(-2, 2)))),
        float(np.tan(np.radians(rng.uniform(-2, 2)))),
    )
    ice_volume = extent[0] * extent[1] * max(ice[1] - ice[0], 1.0)

    def z_range(x: float, y: float, radius: float) -> tuple[float, float]:
        tilt = ice[2] * (x - extent[0] / 2) + ice[3] * (y - extent[1] / 2)
        return ice[0] + tilt + radius, ice[1] + tilt - radius

    placed_c: list[np.ndarray] = []
    placed_r: list[float] = []
    vesicle: tuple[np.ndarray, float] | None = None

    def free(c: np.ndarray, r: float, tree: cKDTree | None, tree_rmax: float, recent: int) -> bool:
        if vesicle is not None:
            d = np.linalg.norm(c - vesicle[0])
            if abs(d - vesicle[1]) < r + 40.0 + GAP:
                return False
        if tree is not None:
            idx = tree.query_ball_point(c, r + tree_rmax + GAP)
            for i in idx:
                if np.linalg.norm(placed_c[i] - c) < r + placed_r[i] + GAP:
                    return False
        for i in range(recent, len(placed_c)):  # placed since the tree was built
            if np.linalg.norm(placed_c[i] - c) < r + placed_r[i] + GAP:
                return False
        return True

    def sample(radius: float, count: int, where: str = "ice") -> list[np.ndarray]:
        tree = cKDTree(np.asarray(placed_c)) if placed_c else None
        rmax = max(placed_r) if placed_r else 0.0
        start = len(placed_c)
        out: list[np.ndarray] = []
        for _ in range(max_tries * max(count, 1)):
            if len(out) >= count:
                break
            x = rng.uniform(radius, extent[0] - radius)
            y = rng.uniform(radius, extent[1] - radius)
            lo, hi = z_range(x, y, radius if where == "ice" else 0.0)
            if where == "surface":  # beads stick to the ice surfaces
                z = (lo if rng.random() < 0.5 else hi) + rng.uniform(-1, 1) * radius
            else:
                if hi <= lo:
                    continue
                z = rng.uniform(lo, hi)
            c = np.array([x, y, z])
            if free(c, radius, tree, rmax, start):
                placed_c.append(c)
                placed_r.append(radius)
                out.append(c)
        return out

    area = extent[0] * extent[1] / 4e6  # in units of 2000 × 2000 Å
    # The vesicle: one per tomogram, a bilayer sphere partly inside the volume.
    v_radius = float(rng.uniform(0.25, 0.4) * min(extent[0], extent[1], 2.5 * (ice[1] - ice[0])))
    v_centre = np.array(
        [rng.uniform(0, extent[0]), rng.uniform(0, extent[1]), (ice[0] + ice[1]) / 2]
    )
    vesicle = (v_centre, v_radius)
    # Contamination: irregular clusters of balls.
    blobs: list[list[tuple[np.ndarray, float]]] = []
    for _ in range(max(1, round(1.5 * area))):
        radius = float(rng.uniform(120, 200))
        got = sample(radius, 1)
        if not got:
            continue
        balls = [(got[0], radius * 0.7)]
        for _ in range(int(rng.integers(3, 7))):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            balls.append(
                (
                    got[0] + direction * radius * rng.uniform(0.3, 0.6),
                    radius * rng.uniform(0.3, 0.5),
                )
            )
        blobs.append(balls)
    beads = sample(BEAD_RADIUS, max(2, round(6 * area)), where="surface")

    classes: list[str] = []
    centres: list[np.ndarray] = []
    # Largest first: small particles fill the gaps.
    for name in sorted(CLASS_ORDER, key=lambda n: -CZII[n].radius):
        wanted = int(rng.poisson(NUMBER_DENSITY[name] * density_scale * ice_volume / 1e9))
        got = sample(CZII[name].radius, max(wanted, 1))
        classes.extend([name] * len(got))
        centres.extend(got)
    n = len(classes)
    order = np.lexsort(np.asarray(centres).T[::-1]) if n else np.zeros(0, dtype=int)
    classes = [classes[i] for i in order]
    centre_array = np.asarray(centres, dtype=float).reshape(-1, 3)[order]
    rotations = Rotation.random(max(n, 1), random_state=rng)[: max(n, 1)]
    contrast = np.array([CLASS_CONTRAST[c] for c in classes]) * np.clip(
        rng.lognormal(0.0, 0.25, size=n), 0.45, 1.6
    )
    return Scene(
        classes=classes,
        centres=centre_array,
        rotations=rotations if n else Rotation.identity(0),
        contrast=contrast,
        beads=np.asarray(beads, dtype=float).reshape(-1, 3),
        blobs=blobs,
        vesicle=vesicle,
        ice=ice,
    )


# -- rendering -------------------------------------------------------------------------------
def _stamp(
    volume: np.ndarray,
    centre: np.ndarray,
    radius: float,
    voxel_size: float,
    density: Callable[[np.ndarray], np.ndarray],
    scale: float,
) -> None:
    """Add ``scale × density(p)`` in a box around ``centre`` (p in Å relative to the centre)."""
    nz, ny, nx = volume.shape
    ci = centre / voxel_size
    half = int(np.ceil((radius + SOFT_EDGE) / voxel_size)) + 1
    lo = np.maximum(np.floor(ci).astype(int) - half, 0)
    hi = np.minimum(np.floor(ci).astype(int) + half + 1, [nx, ny, nz])
    if np.any(hi <= lo):
        return
    xs = np.arange(lo[0], hi[0]) * voxel_size - centre[0]
    ys = np.arange(lo[1], hi[1]) * voxel_size - centre[1]
    zs = np.arange(lo[2], hi[2]) * voxel_size - centre[2]
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    p = np.stack([xx, yy, zz], axis=-1)
    volume[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] += (scale * density(p)).astype(np.float32)


def render_particles(
    scene: Scene, shape_xyz: tuple[int, int, int], voxel_size: float
) -> np.ndarray:
    """Noise-free density of the particles only (float32, [z, y, x])."""
    volume = np.zeros(shape_xyz[::-1], dtype=np.float32)
    matrices = scene.rotations.as_matrix() if len(scene.classes) else []
    for name, centre, matrix, contrast in zip(
        scene.classes, scene.centres, matrices, scene.contrast, strict=False
    ):
        shape = SHAPES[name]
        # Row vectors: p_body = R^T p_lab  <=>  p_body_row = p_lab_row @ R.
        _stamp(
            volume,
            centre,
            CZII[name].radius,
            voxel_size,
            lambda p, m=matrix, s=shape: s(p @ m),
            contrast,
        )
    return volume


def render_decoys(scene: Scene, shape_xyz: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """Beads, contamination, vesicle membrane and the ice slab (vacuum outside), float32."""
    nx, ny, nz = shape_xyz
    volume = np.zeros((nz, ny, nx), dtype=np.float32)
    for centre in scene.beads:
        _stamp(
            volume,
            centre,
            BEAD_RADIUS,
            voxel_size,
            lambda p: _ball(p, (0, 0, 0), BEAD_RADIUS),
            BEAD_CONTRAST,
        )
    for balls in scene.blobs:
        # Union of the balls (max), stamped once over their common bounding sphere.
        centre = balls[0][0]
        reach = max(np.linalg.norm(c - centre) + r for c, r in balls)
        rel = [(tuple(c - centre), r) for c, r in balls]
        _stamp(
            volume,
            centre,
            reach,
            voxel_size,
            lambda p, rel=rel: np.max([_ball(p, c, r) for c, r in rel], axis=0),
            CONTAMINATION_CONTRAST,
        )
    z = np.arange(nz, dtype=np.float32)[:, None, None] * voxel_size
    y = np.arange(ny, dtype=np.float32)[None, :, None] * voxel_size
    x = np.arange(nx, dtype=np.float32)[None, None, :] * voxel_size
    if scene.vesicle is not None:
        centre, radius = scene.vesicle
        r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
        leaflets = _soft(np.abs(r - (radius - 18.0)) - 7.0) + _soft(
            np.abs(r - (radius + 18.0)) - 7.0
        )
        volume += (MEMBRANE_CONTRAST * leaflets).astype(np.float32)
    bottom, top, sx, sy = scene.ice
    tilt = sx * (x - nx * voxel_size / 2) + sy * (y - ny * voxel_size / 2)
    inside = _soft(bottom + tilt - z) * _soft(z - top - tilt)
    volume += (VACUUM_CONTRAST * (1.0 - inside)).astype(np.float32)
    return volume


# -- image formation -------------------------------------------------------------------------
@dataclass(frozen=True)
class Optics:
    """Parameters of the Fourier-space image formation (see the module docstring)."""

    defocus: float = 30000.0  # Å (3 µm underfocus)
    amplitude_contrast: float = 0.07
    bfactor: float = 400.0  # Å², envelope exp(-B k² / 4)
    tilt_range: float = 60.0  # degrees, ± around the Y axis
    wavelength: float = WAVELENGTH_300KV
    # Deconvolved tomogram (like Warp's "deconv"): the CTF is flattened to 1 up to its first
    # maximum, so particles keep their low-resolution contrast; beyond it the phase-flipped
    # lobes and zeros stay. False: the raw phase-flipped |CTF| (particles become mostly edges).
    deconvolved: bool = True
    highpass: float = 600.0  # Å; frequencies below 1/highpass are attenuated (lost low res)


def _frequencies(shape_zyx: tuple[int, int, int], voxel_size: float) -> tuple[np.ndarray, ...]:
    nz, ny, nx = shape_zyx
    kz = scipy.fft.fftfreq(nz, d=voxel_size).astype(np.float32)[:, None, None]
    ky = scipy.fft.fftfreq(ny, d=voxel_size).astype(np.float32)[None, :, None]
    kx = scipy.fft.rfftfreq(nx, d=voxel_size).astype(np.float32)[None, None, :]
    return kz, ky, kx


def wedge_mask(shape_zyx: tuple[int, int, int], voxel_size: float, tilt_range: float) -> np.ndarray:
    """Boolean rfft-domain mask: True where the tilt series measured the Fourier component.

    Tilting around Y by θ samples the central plane through the k_y axis and the direction
    (cos θ, 0, sin θ) in (k_x, k_z); tilts within ±tilt_range cover ``|k_z| ≤ tan(tilt_range)·|k_x|``.
    """
    kz, _, kx = _frequencies(shape_zyx, voxel_size)
    limit = np.tan(np.radians(tilt_range))
    mask = np.abs(kz) <= limit * np.abs(kx) + 1e-12
    mask = np.broadcast_to(mask, (shape_zyx[0], shape_zyx[1], kx.shape[2])).copy()
    mask[0, :, 0] = True  # k_x = k_z = 0: the tilt axis itself is measured
    return mask


def transfer_functions(
    shape_zyx: tuple[int, int, int], voxel_size: float, optics: Optics
) -> tuple[np.ndarray, np.ndarray]:
    """(signal transfer, noise transfer) in the rfft domain: CTF×envelope×wedge, envelope×wedge."""
    kz, ky, kx = _frequencies(shape_zyx, voxel_size)
    k2 = kz**2 + ky**2 + kx**2
    chi = np.pi * optics.wavelength * optics.defocus * k2
    a = optics.amplitude_contrast
    phase = np.arctan2(a, np.sqrt(1 - a * a))
    ctf = np.abs(np.sin(chi + phase))
    if optics.deconvolved:
        ctf = np.where(chi + phase < np.pi / 2, 1.0, ctf)
    envelope = np.exp(-optics.bfactor * k2 / 4.0)
    if optics.highpass > 0:
        envelope = envelope * (1.0 - np.exp(-k2 * optics.highpass**2))
    wedge = wedge_mask(shape_zyx, voxel_size, optics.tilt_range)
    signal = (ctf * envelope * wedge).astype(np.float32)
    noise = (envelope * wedge).astype(np.float32)
    return signal, noise


def form_image(
    particles: np.ndarray,
    decoys: np.ndarray,
    voxel_size: float,
    snr: float,
    rng: np.random.Generator,
    optics: Optics = Optics(),
) -> np.ndarray:
    """Filtered signal + wedge-shaped noise at the given SNR, normalised to mean 0, std 1."""
    shape = particles.shape
    signal_tf, noise_tf = transfer_functions(shape, voxel_size, optics)
    particle_ft = scipy.fft.rfftn(particles)
    decoy_ft = scipy.fft.rfftn(decoys)
    filtered_particles = scipy.fft.irfftn(particle_ft * signal_tf, s=shape)
    filtered = filtered_particles + scipy.fft.irfftn(decoy_ft * signal_tf, s=shape)
    noise = scipy.fft.irfftn(
        scipy.fft.rfftn(rng.standard_normal(shape, dtype=np.float32)) * noise_tf, s=shape
    )
    signal_var = float(np.var(filtered_particles))
    noise_var = float(np.var(noise))
    if snr > 0 and noise_var > 0 and signal_var > 0:
        noise *= np.sqrt(signal_var / snr / noise_var)
    else:
        noise *= 0.0
    image = filtered + noise
    image -= image.mean()
    image /= image.std() or 1.0
    return image.astype(np.float32)


def scene_image(
    scene: Scene,
    shape_xyz: tuple[int, int, int],
    voxel_size: float,
    snr: float,
    rng: np.random.Generator,
    optics: Optics = Optics(),
) -> np.ndarray:
    """The tomogram of a scene: its particles and decoys rendered, then imaged (form_image)."""
    return form_image(
        render_particles(scene, shape_xyz, voxel_size),
        render_decoys(scene, shape_xyz, voxel_size),
        voxel_size,
        snr,
        rng,
        optics,
    )


def bin2(volume: np.ndarray) -> np.ndarray:
    """Average 2×2×2 blocks (a trailing odd voxel is dropped): binned voxel i covers 2i, 2i+1."""
    nz, ny, nx = (s // 2 * 2 for s in volume.shape)
    v = volume[:nz, :ny, :nx]
    return v.reshape(nz // 2, 2, ny // 2, 2, nx // 2, 2).mean(axis=(1, 3, 5)).astype(np.float32)
