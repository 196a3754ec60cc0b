"""Euler-angle conventions of the STAR-family formats, as rotation matrices.

Every matrix here is the *active* rotation that carries the reference (the average, centred on
the origin) onto the particle in the tomogram: ``x_tomogram = pos + R · x_reference``.

* RELION (``rlnAngleRot/Tilt/Psi``, ZYZ): RELION's ``Euler_angles2matrix`` /
  ``Euler::anglesToMatrix3`` (3dem/relion src/euler.cpp, src/jaz/math/Euler_angles_relion.h)
  build ``A = Rz(−psi)·Ry(−tilt)·Rz(−rot)`` and RELION uses ``A`` itself to map particle
  space into tomogram space (``ParticleSet::getMatrix4x4``). With right-handed active
  rotations this is ``A = (Rz(rot)·Ry(tilt)·Rz(psi))ᵀ``, i.e. scipy's
  ``Rotation.from_euler("ZYZ", [rot, tilt, psi]).inv()`` (the CryoET Data Portal ingester
  uses the same expression).
* STOPGAP / AV3 (``phi, psi, the``, ZXZ): ``sg_euler2matrix`` builds
  ``R = Rz(psi)·Rx(the)·Rz(phi)`` and uses it on reference-frame vectors (geometric
  cleaning rotates neighbour offsets with it), i.e. scipy's
  ``Rotation.from_euler("zxz", [phi, the, psi])``.

Converting between conventions therefore means: build the matrix in one, read the angles of
the same matrix in the other.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation


def _rows(*angles: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(a, dtype=float).reshape(-1) for a in angles], axis=1)


def relion_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION's ``A`` (n×3×3) for ZYZ angles in degrees (see module docstring)."""
    return Rotation.from_euler("ZYZ", _rows(rot, tilt, psi), degrees=True).inv().as_matrix()


def relion_angles(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rot, tilt, psi) in degrees whose :func:`relion_matrix` is ``matrix`` (n×3×3).

    tilt comes out in [0, 180], rot and psi in (−180, 180]. At tilt 0 or 180 only rot ± psi is
    defined; scipy then sets psi to 0 (its gimbal-lock warning is silenced).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        angles = (
            Rotation.from_matrix(np.asarray(matrix, dtype=float))
            .inv()
            .as_euler("ZYZ", degrees=True)
        )
    return angles[:, 0], angles[:, 1], angles[:, 2]


def stopgap_matrix(phi: np.ndarray, psi: np.ndarray, the: np.ndarray) -> np.ndarray:
    """STOPGAP's ``R = Rz(psi)·Rx(the)·Rz(phi)`` (n×3×3) for angles in degrees."""
    return Rotation.from_euler("zxz", _rows(phi, the, psi), degrees=True).as_matrix()


def stopgap_to_relion(
    phi: np.ndarray, psi: np.ndarray, the: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RELION (rot, tilt, psi) of the orientation STOPGAP writes as (phi, psi, the)."""
    return relion_angles(stopgap_matrix(phi, psi, the))
