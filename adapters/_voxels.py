"""Voxel sizes written inside files, and box sizes in voxels for writers.

The Å conversion itself is :meth:`~picks.plugins.adapter.ReadContext.voxels_to_angstrom` (and
its inverse on :class:`~picks.plugins.adapter.WriteContext`); this module only decides which
voxel size a reader hands it, and how large a writer makes a box.

* :func:`with_voxel_size` – for formats that may state a voxel size (IMOD header, Dynamo
  ``apix``, copick ``voxel_spacing``) but whose picks are normally imported against a
  registered tomogram: the user's ``--voxel-size`` and registered tomograms win; the file's
  value is used only when neither is known. (The STAR family trusts the file's pixel size
  first instead: :func:`picks.adapters._star.user_pixel_size`.)
* :func:`box_sizes` – the box edge, in voxels of the written volume, of box formats (crYOLO
  CBOX, EMAN ``.box``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from picks.adapters._options import option_number
from picks.core.errors import MissingVoxelSize, PicksError
from picks.core.particles import Catalog
from picks.plugins.adapter import ReadContext, WriteContext


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
                f"no `voxel_size` and no registered tomogram {name!r}: using {what} ({file_size:g} Å)"
            )
            return dataclasses.replace(ctx, voxel_size=file_size)
        if abs(picked - file_size) > 0.01 * picked:
            ctx.warn(
                f"{what} is {file_size:g} Å but {picked:g} Å per voxel is in effect for tomogram "
                f"{name!r} (from `voxel_size` or the registered tomogram × `binning`); "
                "check the binning"
            )
    return ctx


def box_sizes(picks: pd.DataFrame, ctx: WriteContext) -> np.ndarray:
    """Box edge in voxels of the written volume for each pick.

    ``--option box=VOXELS`` wins; otherwise the particle's diameter from the catalog
    (``ctx.options["catalog"]`` when the caller passes one with user radii, else the CZII
    catalog), converted with the voxel size each tomogram is written at
    (:meth:`WriteContext.voxel_sizes`) and rounded to whole voxels.
    """
    box = option_number(ctx.options, "box", expected="a positive box size in voxels", positive=True)
    if box is not None:
        return np.full(len(picks), box)
    catalog = ctx.options.get("catalog")
    if not isinstance(catalog, Catalog):
        catalog = Catalog()
    sizes = np.empty(len(picks))
    particles = picks["particle"].to_numpy(dtype=object)
    for tomogram, index in picks.groupby("tomogram", sort=False).indices.items():
        voxel_size, _reference = ctx.voxel_sizes(str(tomogram))
        cache: dict[object, float] = {}
        for i in index:
            particle = particles[i]
            if particle not in cache:
                cache[particle] = _diameter(particle, catalog, voxel_size)
            sizes[i] = cache[particle]
    return sizes


def _diameter(particle: object, catalog: Catalog, voxel_size: float) -> float:
    """The catalog diameter of ``particle`` in whole voxels (at least 1)."""
    if particle is None or (isinstance(particle, float) and math.isnan(particle)):
        raise PicksError(
            "cannot choose a box size for picks without a particle class: give `options` box=VOXELS"
        )
    if str(particle) not in catalog:
        raise PicksError(
            f"cannot choose a box size for particle {particle!r}: it is not in the "
            "catalog; give `options` box=VOXELS or its radius with `radii` NAME=Å"
        )
    return float(max(1, round(2.0 * catalog.radius(str(particle)) / voxel_size)))
