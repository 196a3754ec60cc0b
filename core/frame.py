"""The canonical frame: voxel index ↔ Ångström arithmetic, the one implementation.

Every adapter (through :class:`picks.plugins.adapter.ReadContext`), the CNN's box extraction
and the simulator convert through these functions, so that a convention (voxel centres, how a
binned grid sits on the reference grid) is decided in one place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLINGS = ("block", "point")


def index_to_angstrom(
    index: Any, picked: Any, reference: Any, *, sampling: str = "block"
) -> np.ndarray:
    """Å in the canonical frame of 0-based voxel-centre indices of a volume with voxels ``picked``.

    The one implementation of the index → Å arithmetic (arguments broadcast, so per-row voxel
    sizes work). ``reference`` is the voxel size of the registered tomogram that defines the
    frame. Two ways a coarser grid can sit on the reference grid:

    * ``"block"`` (default; binning by averaging blocks, IMOD ``binvol`` style): coarse voxel
      ``i`` covers reference voxels ``i·b .. i·b+b−1``, so its centre is at
      ``(i + 0.5)·picked − 0.5·reference``;
    * ``"point"`` (RELION's reconstructions: coarse voxel ``i`` samples position ``i·b`` of the
      fine grid, so voxel 0 of every binning shares its centre): ``i·picked``.

    Both give ``i·v`` when ``picked == reference``.
    """
    index = np.asarray(index, dtype=float)
    if sampling == "point":
        return index * picked
    if sampling != "block":
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    return (index + 0.5) * picked - 0.5 * np.asarray(reference, dtype=float)


def angstrom_to_index(
    angstrom: Any, target: Any, reference: Any, *, sampling: str = "block"
) -> np.ndarray:
    """Inverse of :func:`index_to_angstrom`."""
    angstrom = np.asarray(angstrom, dtype=float)
    if sampling == "point":
        return angstrom / target
    if sampling != "block":
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    return (angstrom + 0.5 * np.asarray(reference, dtype=float)) / target - 0.5
