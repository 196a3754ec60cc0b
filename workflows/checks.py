"""Checks on imported picks that judge a whole file, computed over the chunks of a streamed read.

An import reads a large text file in chunks (:meth:`picks.plugins.adapter.Adapter.read_chunks`)
so that it is never whole in memory; but its errors and warnings are about the file: "12 of
30,000 picks lie outside tomogram 'TS_01' ... first at record 812". :class:`FileChecks` keeps,
per chunk, the few numbers those messages need (counts, extremes, the first record) and gives
the message once the last chunk is in: the same message, word for word, that the file read in
one piece gives (:func:`check_extent` and :func:`implausible_coordinates` are the one-chunk
case).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from picks.core import picks as canonical
from picks.core.errors import OutOfExtent
from picks.core.tomograms import TomogramSet

# Picks up to this many reference voxels outside the volume are tolerated (picker rounding).
EXTENT_TOLERANCE_VOXELS = 1.0
# No tomogram is larger than this (10,000 voxels of 10 Å); a coordinate beyond it, or further
# below zero than any box centre can be, is a unit or frame error, not a position.
PLAUSIBLE_MAX_ANGSTROM = 1.0e5
PLAUSIBLE_MIN_ANGSTROM = -1.0e3


@dataclass
class _Outside:
    """One tomogram's picks outside its extent, so far."""

    n: int = 0
    n_outside: int = 0
    first: int | None = None
    top: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    below: bool = False


@dataclass
class FileChecks:
    """The extent check and the implausible-coordinate warning over a file's chunks."""

    tomograms: TomogramSet
    outside: dict[str, _Outside] = field(default_factory=dict)
    n: int = 0
    n_bad: int = 0
    low: float = np.inf
    high: float = -np.inf
    first_bad: int | None = None

    def add(self, frame: pd.DataFrame) -> None:
        self.n += len(frame)
        self._add_extent(frame)
        self._add_implausible(frame)

    def _add_extent(self, frame: pd.DataFrame) -> None:
        # only the tomograms whose extent is known (often none: a file read before the
        # tomograms are registered) are grouped
        names = frame["tomogram"].unique()
        sized = [name for name in names if self._sized(name)]
        if not sized:
            return
        if len(sized) < len(names):
            frame = frame[frame["tomogram"].isin(sized)]
        for name, group in frame.groupby("tomogram", sort=True):
            tomo = self.tomograms.get(str(name))
            if tomo is None or tomo.shape is None or not tomo.voxel_size:
                continue
            v = tomo.voxel_size
            coords = group[canonical.COORDS].to_numpy(dtype=float)
            lo = -(0.5 + EXTENT_TOLERANCE_VOXELS) * v
            hi = (np.asarray(tomo.shape, dtype=float) - 0.5 + EXTENT_TOLERANCE_VOXELS) * v
            outside = ((coords < lo) | (coords > hi)).any(axis=1)
            seen = self.outside.setdefault(str(name), _Outside())
            seen.n += len(group)
            seen.top = np.maximum(seen.top, coords.max(axis=0))  # the cause judges every pick
            if not outside.any():
                continue
            seen.n_outside += int(outside.sum())
            if seen.first is None:
                seen.first = int(group["record"].to_numpy()[np.flatnonzero(outside)[0]])
            seen.below = seen.below or bool((coords < lo).any())

    def _sized(self, name: object) -> bool:
        tomo = self.tomograms.get(str(name))
        return tomo is not None and tomo.shape is not None and bool(tomo.voxel_size)

    def _add_implausible(self, frame: pd.DataFrame) -> None:
        names = frame["tomogram"].astype(str)
        # one look-up per tomogram name, not per pick (imports hold millions of picks)
        sized = {
            name: (t := self.tomograms.get(name)) is not None
            and t.shape is not None
            and bool(t.voxel_size)
            for name in names.unique()
        }
        if not any(sized.values()) and not names.hasnans:  # (often none is registered)
            unknown = np.ones(len(names), dtype=bool)
        else:
            unknown = ~names.map(sized).to_numpy(dtype=bool)
        if not unknown.any():
            return
        coords = frame[canonical.COORDS].to_numpy(dtype=float)[unknown]
        bad = ((coords > PLAUSIBLE_MAX_ANGSTROM) | (coords < PLAUSIBLE_MIN_ANGSTROM)).any(axis=1)
        if not bad.any():
            return
        self.n_bad += int(bad.sum())
        self.low = min(self.low, float(coords[bad].min()))
        self.high = max(self.high, float(coords[bad].max()))
        if self.first_bad is None:
            self.first_bad = int(frame["record"].to_numpy()[unknown][bad][0])

    def raise_outside(self, path: object) -> None:
        """Raise :class:`OutOfExtent` if picks fall outside their tomogram, suggesting why."""
        for name in sorted(self.outside):
            seen = self.outside[name]
            if not seen.n_outside:
                continue
            tomo = self.tomograms.get(name)
            v = tomo.voxel_size
            extent = np.asarray(tomo.shape) * v
            ratio = float(np.max(seen.top / extent))
            if ratio > 0.8 * v:
                cause = (
                    "coordinates look like Å read as voxels (or multiplied by the voxel size twice)"
                )
            elif ratio > 1.2:
                cause = (
                    f"coordinates are about {ratio:.1f}× too large: wrong `binning` or "
                    f"`voxel_size` (the tomogram is {v:g} Å/voxel)"
                )
            elif seen.below:
                cause = "negative coordinates: the file may use centred coordinates (RELION 5) or a different origin"
            else:
                cause = "wrong tomogram, binning or voxel size"
            raise OutOfExtent(
                f"{path}: {seen.n_outside} of {seen.n} picks lie outside tomogram {name!r} "
                f"(extent {extent[0]:g} × {extent[1]:g} × {extent[2]:g} Å; first at record "
                f"{seen.first}); likely cause: {cause}",
                hint="Check `voxel_size`/`binning`, or the tomogram the file belongs to.",
            )

    def implausible(self) -> str | None:
        """A warning for picks whose tomogram's size is not known (so the extent check cannot
        judge them) and whose coordinates no tomogram can hold; None if there are none."""
        if not self.n_bad:
            return None
        return (
            f"{self.n_bad} of {self.n} picks have coordinates no tomogram can hold "
            f"(from {self.low:.4g} to {self.high:.4g} Å; first at record {self.first_bad}): a "
            "unit, binning or origin error? They are kept for now and checked against the "
            "tomograms when those are registered (give `tomograms` to check them at import)"
        )


def check_extent(frame: pd.DataFrame, tomograms: TomogramSet, path: object) -> None:
    """Raise :class:`OutOfExtent` if picks fall outside their tomogram, suggesting why."""
    checks = FileChecks(tomograms)
    checks._add_extent(frame)
    checks.raise_outside(path)


def implausible_coordinates(frame: pd.DataFrame, tomograms: TomogramSet) -> str | None:
    """A warning for picks whose tomogram's size is not known (so :func:`check_extent`
    cannot judge them) and whose coordinates no tomogram can hold; None if there are none.
    The picks are kept: the extent is checked again when the tomograms become known."""
    checks = FileChecks(tomograms)
    checks.n = len(frame)
    checks._add_implausible(frame)
    return checks.implausible()
