"""Every rotation convention the adapters meet, converted to and from RELION ZYZ Euler angles.

The canonical table stores orientations as RELION ``rot, tilt, psi`` (ZYZ, degrees). Every
matrix here is RELION's ``A``: the rotation that carries the reference (the average, centred
on the origin) onto the particle in the tomogram, ``x_tomogram = pos + A · x_reference``.

* **RELION** (``rlnAngleRot/Tilt/Psi``): RELION's ``Euler_angles2matrix`` /
  ``Euler::anglesToMatrix3`` (3dem/relion src/euler.cpp, src/jaz/math/Euler_angles_relion.h)
  build ``A = Rz(−psi)·Ry(−tilt)·Rz(−rot)`` and RELION uses ``A`` itself to map particle
  space into tomogram space (``ParticleSet::getMatrix4x4``). With right-handed active
  rotations this is ``A = (Rz(rot)·Ry(tilt)·Rz(psi))ᵀ``, i.e. scipy's
  ``Rotation.from_euler("ZYZ", [rot, tilt, psi]).inv()`` (:func:`relion_matrix`;
  :func:`relion_angles` is its inverse).
* **Object matrices** of copick (the 3×3 block of ``transformation_``) and of the CryoET Data
  Portal (``xyz_rotation_matrix``) are this same ``A``: both build it from RELION angles as
  ``Rotation.from_euler("ZYZ", (rot, tilt, psi)).inv()`` (copick/copick:src/copick/util/
  relion.py ``relion_rows_to_poses``; chanzuckerberg/cryoet-data-portal-backend:…/
  point_converter.py), so they go through :func:`relion_matrix` / :func:`relion_angles` too.
  :func:`is_rotation` checks such a block before it is trusted.
* **STOPGAP / AV3** (``phi, psi, the``, ZXZ): ``sg_euler2matrix`` builds
  ``R = Rz(psi)·Rx(the)·Rz(phi)`` and uses it on reference-frame vectors (geometric cleaning
  rotates neighbour offsets with it), i.e. scipy's ``Rotation.from_euler("zxz", [phi, the,
  psi])`` = ``A`` (:func:`stopgap_matrix`, :func:`stopgap_to_relion`).
* **Dynamo** (``tdrot, tilt, narot``, ZXZ): copick converts them with
  ``Rotation.from_euler("zxz", angles).inv()`` into the object matrix ``A``, so the RELION
  angles are ``Rotation.from_euler("zxz", angles).as_euler("ZYZ")``; in closed form
  ``rot = narot − 90°, tilt = tilt, psi = tdrot + 90°`` (because Rx(b) = Rz(−90°)·Ry(b)·Rz(90°))
  (:func:`relion_from_dynamo`, :func:`dynamo_from_relion`).

Converting between conventions therefore means: build the matrix in one, read the angles of
the same matrix in the other. At tilt 0 or 180 only rot ± psi is defined; scipy then sets the
third angle to 0 (its gimbal-lock warning is silenced). scipy is imported when a conversion
runs, not when an adapter module is imported.
"""

from __future__ import annotations

import warnings

import numpy as np

# A 3×3 block is accepted as a rotation when R·Rᵀ is this close to the identity.
ROTATION_TOLERANCE = 1e-3


def _rotation():
    from scipy.spatial.transform import Rotation

    return Rotation


def _rows(*angles: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(a, dtype=float).reshape(-1) for a in angles], axis=1)


def relion_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION's ``A`` (n×3×3) for ZYZ angles in degrees (see module docstring)."""
    rows = _rows(rot, tilt, psi)
    if len(rows) == 0:
        return np.zeros((0, 3, 3))
    return _rotation().from_euler("ZYZ", rows, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def relion_angles(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rot, tilt, psi) in degrees whose :func:`relion_matrix` is ``matrix`` (n×3×3).

    tilt comes out in [0, 180], rot and psi in (−180, 180]; never −0.
    """
    matrices = np.asarray(matrix, dtype=float).reshape(-1, 3, 3)
    if len(matrices) == 0:
        empty = np.zeros(0)
        return empty, empty.copy(), empty.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        angles = _rotation().from_matrix(matrices).inv().as_euler("ZYZ", degrees=True) + 0.0
    return angles[:, 0], angles[:, 1], angles[:, 2]


def is_rotation(matrix: np.ndarray) -> bool:
    """Whether a 3×3 array is a proper rotation (orthonormal, determinant +1)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        return False
    return bool(np.abs(m @ m.T - np.eye(3)).max() < ROTATION_TOLERANCE and np.linalg.det(m) > 0)


def stopgap_matrix(phi: np.ndarray, psi: np.ndarray, the: np.ndarray) -> np.ndarray:
    """STOPGAP's ``R = Rz(psi)·Rx(the)·Rz(phi)`` (n×3×3) for angles in degrees."""
    return _rotation().from_euler("zxz", _rows(phi, the, psi), degrees=True).as_matrix()


def stopgap_to_relion(
    phi: np.ndarray, psi: np.ndarray, the: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RELION (rot, tilt, psi) of the orientation STOPGAP writes as (phi, psi, the)."""
    return relion_angles(stopgap_matrix(phi, psi, the))


def relion_from_dynamo(angles: np.ndarray) -> np.ndarray:
    """(N, 3) Dynamo tdrot, tilt, narot -> (N, 3) RELION rot, tilt, psi (degrees)."""
    return _same_rotation(angles, "zxz", "ZYZ")


def dynamo_from_relion(angles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relion_from_dynamo`."""
    return _same_rotation(angles, "ZYZ", "zxz")


def _same_rotation(angles: np.ndarray, source: str, target: str) -> np.ndarray:
    """(N, 3) Euler angles in scipy sequence ``source`` -> the same rotations in ``target``."""
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rotation = _rotation().from_euler(source, angles, degrees=True)
        return rotation.as_euler(target, degrees=True) + 0.0
