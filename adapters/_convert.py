"""Helpers shared by the copick, portal, Dynamo, IMOD and TomoTwin adapters.

* Rotation conventions, all converted to the canonical RELION ZYZ Euler angles (degrees):

  - ``object matrix`` (copick ``transformation_`` 3×3 block, CryoET Data Portal
    ``xyz_rotation_matrix``): the object-to-tomogram rotation. copick and the portal ingester
    both build it from RELION angles as ``Rotation.from_euler("ZYZ", (rot, tilt, psi)).inv()``
    (copick/copick:src/copick/util/relion.py ``relion_rows_to_poses``;
    chanzuckerberg/cryoet-data-portal-backend:…/point_converter.py), so the inverse is
    ``Rotation.from_matrix(M).inv().as_euler("ZYZ")``.
  - Dynamo ``tdrot, tilt, narot``: copick converts them with
    ``Rotation.from_euler("zxz", angles).inv()`` into the same object matrix, so the RELION
    angles are ``Rotation.from_euler("zxz", angles).as_euler("ZYZ")``; in closed form
    ``rot = narot − 90°, tilt = tilt, psi = tdrot + 90°`` (because Rx(b) = Rz(−90°)·Ry(b)·Rz(90°)).

* ``parse_mapping`` reads ``--option`` values such as ``1=ribosome,2=TS_02``.
* ``with_voxel_size`` lets a reader use a voxel size stored in the file itself (IMOD header,
  Dynamo ``apix``, copick ``voxel_spacing``, portal ``VoxelSpacing<s>`` folder) when the user gave
  none and no tomogram is registered; the conversion itself stays in
  :meth:`ReadContext.voxels_to_angstrom`.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from picks.core.errors import MissingVoxelSize, PicksError
from picks.plugins.adapter import ReadContext

# A 3×3 block is accepted as a rotation when R·Rᵀ is this close to the identity.
ROTATION_TOLERANCE = 1e-3


def _rotation():
    from scipy.spatial.transform import Rotation

    return Rotation


def is_rotation(matrix: np.ndarray) -> bool:
    """Whether a 3×3 array is a proper rotation (orthonormal, determinant +1)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        return False
    return bool(np.abs(m @ m.T - np.eye(3)).max() < ROTATION_TOLERANCE and np.linalg.det(m) > 0)


def relion_from_object_matrices(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) object-to-tomogram rotations -> (N, 3) RELION rot, tilt, psi in degrees."""
    matrices = np.asarray(matrices, dtype=float).reshape(-1, 3, 3)
    if len(matrices) == 0:
        return np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gimbal lock: angles still describe R
        angles = _rotation().from_matrix(matrices).inv().as_euler("ZYZ", degrees=True)
    return angles + 0.0  # no negative zeros


def object_matrices_from_relion(angles: np.ndarray) -> np.ndarray:
    """(N, 3) RELION angles in degrees -> (N, 3, 3) object-to-tomogram rotations."""
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3, 3))
    return _rotation().from_euler("ZYZ", angles, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def relion_from_dynamo(angles: np.ndarray) -> np.ndarray:
    """(N, 3) Dynamo tdrot, tilt, narot -> (N, 3) RELION rot, tilt, psi (degrees)."""
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        relion = _rotation().from_euler("zxz", angles, degrees=True).as_euler("ZYZ", degrees=True)
    return relion + 0.0


def dynamo_from_relion(angles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relion_from_dynamo`."""
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _rotation().from_euler("ZYZ", angles, degrees=True).as_euler("zxz", degrees=True)


def parse_mapping(text: str, *, option: str) -> dict[str, str]:
    """``"1=ribosome, 2=apo-ferritin"`` -> ``{"1": "ribosome", "2": "apo-ferritin"}``."""
    result: dict[str, str] = {}
    for item in str(text).split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise PicksError(
                f"--option {option}={text!r}: expected KEY=VALUE pairs separated by commas, "
                f"e.g. {option}=1=ribosome,2=apo-ferritin"
            )
        result[key.strip()] = value.strip()
    return result


def option_float(ctx: ReadContext, key: str) -> float | None:
    """A positive float option, or None when absent."""
    raw = ctx.options.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PicksError(f"--option {key}={raw!r}: expected a number") from None
    if not np.isfinite(value) or value <= 0:
        raise PicksError(f"--option {key}={raw!r}: expected a positive number")
    return value


def with_voxel_size(
    ctx: ReadContext, tomograms: list[str], file_size: float | None, what: str
) -> ReadContext:
    """The context to convert voxels with, using ``file_size`` (Å, from the file) as a fallback.

    The user's ``--voxel-size`` and registered tomograms win; the file's own value is used only
    when neither gives a voxel size for every tomogram, and a disagreement of more than 1 % with
    the value in effect is reported as a warning (it usually means binned picks).
    """
    if not file_size or file_size <= 0:
        return ctx
    for name in tomograms:
        try:
            picked, _ = ctx.voxel_sizes(name)
        except MissingVoxelSize:
            ctx.warn(
                f"no --voxel-size and no registered tomogram {name!r}: using {what} ({file_size:g} Å)"
            )
            return dataclasses.replace(ctx, voxel_size=file_size)
        if abs(picked - file_size) > 0.01 * picked:
            ctx.warn(
                f"{what} is {file_size:g} Å but {picked:g} Å per voxel is in effect for tomogram "
                f"{name!r} (from --voxel-size or the registered tomogram × --binning); "
                "check the binning"
            )
    return ctx
