"""The adapter contract: what a picker-format plugin provides, and what it is given.

An adapter turns one picker's output file into the canonical pick table
(:mod:`picks.core.picks`): Ångström, full-tomogram frame, x/y/z, origin at the centre of
voxel 0, box corners already converted to centres, binning undone. It is given a
:class:`ReadContext` that knows the registered tomograms and the user's options, and that
does the unit conversion so that every adapter applies it the same way.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from picks.core.errors import InputFormatError, MissingVoxelSize, PicksError
from picks.core.frame import angstrom_to_index, index_to_angstrom
from picks.core.particles import canonical_name
from picks.core.tomograms import TomogramSet

if TYPE_CHECKING:
    import pandas as pd

# Picks per chunk of a streamed read (:meth:`Adapter.read_chunks`): large enough that per-chunk
# overhead vanishes, small enough that a chunk's Python objects stay well under 100 MB.
CHUNK_ROWS = 200_000


class TrackedOptions(dict):
    """Adapter options that remember which keys the adapter looked at.

    After a read, a key the user gave that the adapter never looked up is a typo or an option
    of another adapter (``unit=voxel`` for ``units=voxel``): :meth:`unused` finds it, and the
    import warns (naming what the adapter did look for) rather than ignore it silently.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.given = frozenset(self)
        self.used: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.used.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.used.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)

    def unused(self) -> list[str]:
        """Given keys the adapter never looked up (internal ``_keys`` excepted)."""
        return sorted(k for k in self.given - self.used if not str(k).startswith("_"))


def _check_sampling(voxel_size: float | None, binning: float) -> None:
    """``--voxel-size`` and ``--binning`` must be positive numbers."""
    if voxel_size is not None and not (np.isfinite(voxel_size) and voxel_size > 0):
        raise PicksError(f"`voxel_size` {voxel_size:g}: expected a positive number of Å per voxel")
    if not (np.isfinite(binning) and binning > 0):
        raise PicksError(f"`binning` {binning:g}: expected a positive factor (1 = unbinned)")


@dataclass
class ReadContext:
    """What an adapter knows when it reads a file.

    :ivar path: the file being read.
    :ivar tomograms: registered tomograms (may be empty).
    :ivar voxel_size: Å per voxel of the coordinates in the file, when the user gave it
        (``--voxel-size``); otherwise the registered tomogram's voxel size × ``binning``.
    :ivar binning: the file's coordinates were picked on a tomogram binned by this factor
        relative to the registered one (``--binning``).
    :ivar particle: class to give picks that have none (``--particle``).
    :ivar tomogram: tomogram name for files that do not name one (``--tomogram``); otherwise
        the file name is used.
    :ivar options: adapter-specific options (``--option key=value``), as strings.
    """

    path: Path
    tomograms: TomogramSet = field(default_factory=TomogramSet)
    voxel_size: float | None = None
    binning: float = 1.0
    particle: str | None = None
    tomogram: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_sampling(self.voxel_size, self.binning)
        if not isinstance(self.options, TrackedOptions):
            self.options = TrackedOptions(self.options)

    def warn(self, message: str) -> None:
        """Record a warning about this file (shown to the user, stored with the source)."""
        self.warnings.append(message)

    def error(
        self, message: str, *, line: int | None = None, record: str | None = None
    ) -> InputFormatError:
        """An :class:`InputFormatError` naming this file (and line), ready to ``raise``."""
        return InputFormatError(self.path, message, line=line, record=record)

    def resolve_tomogram(self, raw: str) -> str:
        """Map a tomogram name written in the file to the registered name."""
        return self.tomograms.resolve(str(raw), source=self.path)

    def resolve_tomograms(self, raw: Iterable[object]) -> list[str]:
        """:meth:`resolve_tomogram` for a whole column; each distinct name is resolved once."""
        names = list(map(str, raw))
        # in the order they first appear (the first unknown name is the one an error names)
        resolved = {name: self.resolve_tomogram(name) for name in dict.fromkeys(names)}
        return list(map(resolved.__getitem__, names))

    def tomogram_from_path(self) -> str:
        """The tomogram of a one-file-per-tomogram format: ``--tomogram`` or the file name."""
        return self.resolve_tomogram(self.tomogram or self.path.name)

    def particle_name(self, raw: object) -> str | None:
        """Canonical class name for a raw label (``None``/empty -> ``--particle`` or None)."""
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
            return canonical_name(self.particle) if self.particle else None
        return canonical_name(str(raw))

    def voxel_sizes(self, tomogram: str) -> tuple[float, float]:
        """(picked, reference) voxel sizes in Å for coordinates picked on ``tomogram``.

        *picked* is the voxel size of the volume the picker saw; *reference* the voxel size of
        the registered (full-resolution) tomogram that defines the canonical frame.
        """
        registered = self.tomograms.get(tomogram)
        reference = registered.voxel_size if registered else None
        picked = self.voxel_size or (reference * self.binning if reference else None)
        if picked is None:
            raise MissingVoxelSize(
                f"{self.path}: coordinates are in voxels but the voxel size of tomogram "
                f"{tomogram!r} is unknown"
            )
        # without a registered tomogram the reference frame is the picked one unbinned
        return picked, reference or picked / self.binning

    def voxels_to_angstrom(
        self,
        frame: pd.DataFrame,
        columns: tuple[str, ...] = ("x", "y", "z"),
        *,
        sampling: str = "block",
    ) -> pd.DataFrame:
        """Convert 0-based voxel-centre coordinates to Å in the canonical frame, in place.

        For a volume binned by ``b`` relative to the reference (voxel sizes ``vb = b·v0``),
        the centre of binned voxel ``i`` lies at ``(i + 0.5)·vb − 0.5·v0`` Å: binned voxels
        cover whole blocks of reference voxels starting at the same outer edge. With no
        binning this is simply ``i·v0``. See :func:`index_to_angstrom` for ``sampling``.
        """
        for tomogram, index in frame.groupby("tomogram", sort=False).groups.items():
            picked, reference = self.voxel_sizes(str(tomogram))
            for column in columns:
                values = frame.loc[index, column].to_numpy(dtype=float)
                frame.loc[index, column] = index_to_angstrom(
                    values, picked, reference, sampling=sampling
                )
        return frame

    def pixels_to_angstrom(
        self,
        frame: pd.DataFrame,
        pixel_size: float | np.ndarray,
        columns: tuple[str, ...] = ("x", "y", "z"),
        *,
        sampling: str = "block",
    ) -> pd.DataFrame:
        """:meth:`voxels_to_angstrom` for files that carry their own pixel size, in place.

        ``pixel_size`` (Å; a number, or one value per row of ``frame``) is the size of the
        pixels the coordinates count; the frame is set by the registered tomogram's voxel size
        (or by ``pixel_size`` itself when the tomogram is not registered). ``--voxel-size`` and
        ``--binning`` are not consulted: the adapter decides whether the user's value overrides
        the file's.
        """
        sizes = np.broadcast_to(np.asarray(pixel_size, dtype=float), (len(frame),))
        if len(frame) and not (np.isfinite(sizes).all() and (sizes > 0).all()):
            raise ValueError("pixel sizes must be positive numbers")
        for tomogram, index in frame.groupby("tomogram", sort=False).groups.items():
            picked = sizes[frame.index.get_indexer(index)]
            registered = self.tomograms.get(str(tomogram))
            reference = registered.voxel_size if registered and registered.voxel_size else picked
            for column in columns:
                values = frame.loc[index, column].to_numpy(dtype=float)
                frame.loc[index, column] = index_to_angstrom(
                    values, picked, reference, sampling=sampling
                )
        return frame


@dataclass
class WriteContext:
    """What a writer knows: tomograms (for voxel formats), voxel size override, options."""

    tomograms: TomogramSet = field(default_factory=TomogramSet)
    voxel_size: float | None = None
    binning: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_sampling(self.voxel_size, self.binning)

    def voxel_sizes(self, tomogram: str) -> tuple[float, float]:
        """(target, reference) voxel sizes in Å; the inverse of :meth:`ReadContext.voxel_sizes`."""
        registered = self.tomograms.get(tomogram)
        reference = registered.voxel_size if registered else None
        target = self.voxel_size or (reference * self.binning if reference else None)
        if target is None:
            raise MissingVoxelSize(
                f"cannot write voxel coordinates for tomogram {tomogram!r}: its voxel size is unknown"
            )
        return target, reference or target / self.binning

    def angstrom_to_voxels(
        self,
        frame: pd.DataFrame,
        columns: tuple[str, ...] = ("x", "y", "z"),
        *,
        sampling: str = "block",
    ) -> pd.DataFrame:
        """Inverse of :meth:`ReadContext.voxels_to_angstrom`; returns a converted copy."""
        out = frame.copy()
        for tomogram, index in out.groupby("tomogram", sort=False).groups.items():
            target, reference = self.voxel_sizes(str(tomogram))
            for column in columns:
                values = out.loc[index, column].to_numpy(dtype=float)
                out.loc[index, column] = angstrom_to_index(
                    values, target, reference, sampling=sampling
                )
        return out


@dataclass(frozen=True)
class AdapterCard:
    """An adapter described without importing it, for ``register(card)``: the class named by
    ``object`` (``"module:Class"``, or ``"Class"`` in the ``.py`` file ``path``) is imported
    on first use, and the loaded adapter shows this card's picker, description and patterns.
    ``write`` says whether it can write (so listing adapters imports none); ``None`` asks the
    loaded adapter."""

    name: str
    object: str
    picker: str = ""
    description: str = ""
    patterns: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    write: bool | None = None
    version: str = ""
    path: str | None = None


class Adapter:
    """Base class for a picker-format adapter. Subclass it and register an instance.

    Class attributes (the adapter's card, shown by ``picks plugins``):

    * ``name`` – unique id used with ``--adapter`` (``cryolo-cbox``).
    * ``picker`` – the program that writes the format (``crYOLO``).
    * ``patterns`` – file-name globs the format uses (``("*.cbox",)``); ``sniff`` is only
      asked about files that match one.
    * ``description`` – one line.
    * ``version`` – bump when the conversion changes (recorded with every import).
    * ``extension`` – file extension for writing (writers only).
    * ``layout`` – how a writer lays picks out: ``"file"`` (one file for everything),
      ``"per_tomogram"`` (one file per tomogram, named ``<tomogram><extension>``),
      ``"per_tomogram_particle"`` (``<tomogram>_<particle><extension>``) or ``"directory"``
      (the writer is given a directory and lays it out itself, e.g. a copick project).
    * ``class_field`` – whether written files hold the class: ``"none"`` (CBOX, RELION),
      ``"optional"`` (a class column that gets an empty or invented value for picks without a
      class: ``picks convert`` warns) or ``"required"`` (CZII CSV's ``particle_type``, copick's
      object name: ``picks convert`` refuses picks without a class).
    """

    name: ClassVar[str] = ""
    picker: ClassVar[str] = ""
    patterns: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    extension: ClassVar[str] = ""
    layout: ClassVar[str] = "file"
    class_field: ClassVar[str] = "none"

    def matches(self, path: Path) -> bool:
        """Whether ``path``'s name fits one of ``patterns`` (case-insensitive)."""
        name = path.name.lower()
        return any(fnmatch.fnmatch(name, p.lower()) for p in self.patterns)

    def sniff(self, path: Path) -> float:
        """How sure the adapter is that ``path`` is its format: 0 (no) .. 1 (certain).

        Read only the start of the file (see :func:`head`). When several adapters claim a
        file the most certain wins; a tie is an error asking for ``--adapter``.
        """
        raise NotImplementedError

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        """Read ``path`` and return the canonical pick table (:mod:`picks.core.picks`).

        Raise ``ctx.error(message, line=...)`` for malformed input; never return partial
        results. Use ``ctx.voxels_to_angstrom`` for voxel coordinates.
        """
        raise NotImplementedError

    def read_chunks(
        self, path: Path, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Read ``path`` as consecutive canonical tables of about ``chunk_size`` picks each
        (optional; the default yields :meth:`read` once).

        Import streams a file through this, storing chunk by chunk in one transaction, so a
        text format with millions of lines need not be held in memory whole. An adapter that
        overrides it must give exactly the picks :meth:`read` gives, in the same order (``read``
        may simply concatenate the chunks), with ``record`` increasing from chunk to chunk;
        errors raised while iterating name the file and the true line (count lines across
        chunks); warnings about the whole file (``ctx.warn``) are given once, when the last
        chunk has been yielded. A failure in any chunk rolls the whole import back.
        """
        yield self.read(path, ctx)

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        """Write canonical picks to ``path`` (optional). ``picks`` may carry the extra columns
        ``consensus_id``, ``support`` and ``status``; write them where the format can hold them.
        The caller handles atomic replacement and ``--force``.
        """
        raise NotImplementedError

    def companions(self, target: Path, options: dict) -> list[Path]:
        """Files :meth:`write` adds next to ``target`` (RELION 5's ``<name>_tomograms.star``,
        Dynamo's ``.doc``), so output planning can keep other outputs off their names."""
        return []

    def shared_companions(self, folder: Path, options: dict) -> list[Path]:
        """Files that all the outputs of this format in one ``folder`` share (RELION 5's
        ``tomograms.star``), written once by :meth:`write_shared` after them. A writer given
        ``options["shared"]`` leaves them to it (and :meth:`companions` does not list them)."""
        return []

    def write_shared(self, picks: pd.DataFrame, folder: Path, ctx: WriteContext) -> list[Path]:
        """Write :meth:`shared_companions` for ``picks`` (every pick written to ``folder``);
        returns the paths written."""
        return []

    @property
    def can_write(self) -> bool:
        return type(self).write is not Adapter.write


def head(path: Path, size: int = 8192) -> str:
    """The first ``size`` bytes of a file decoded as text ('' for binary or unreadable files)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(size)
    except OSError:
        return ""
    if b"\x00" in data:
        return ""
    # without a UTF-8 byte order mark, as read_text gives the file to readers
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")
