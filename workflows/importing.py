"""Import picker files into the store: detect the adapter, read, check, store atomically.

Each file is one transaction: a failure leaves the store unchanged and names the file (and
line); a file whose sha256 is already in the store is a no-op that says so. Files are streamed:
the adapter reads them a chunk at a time (:meth:`~picks.plugins.adapter.Adapter.read_chunks`;
CZII and points CSV line by line) and each chunk is stored as it comes, inside that one
transaction, so a 5-million-line file is never whole in memory; the checks that judge the whole
file (extent, implausible coordinates, unused options) gather over the chunks
(:mod:`picks.workflows.checks`) and speak once, after the last.

Two things pickers' outputs need before any adapter sees them, handled here for every adapter:

* **Name patterns** (option ``name=PATTERN``, :class:`NamePattern`): pickers such as crYOLO
  write one file per tomogram *and class* and say which in the file name
  (``TS_01__ribosome.cbox``) or the folder (``ribosome/TS_01.cbox``). The pattern names the
  parts, ``{tomogram}__{particle}`` or ``{particle}/{tomogram}``, and gives each file its
  tomogram (as ``--tomogram`` would) and class (as ``--particle`` would: a fill for picks the
  file leaves without one).
* **copick project configs** (:func:`copick_config_roots`): a ``copick_config.json`` given as
  input stands for its project's local overlay/static folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from picks.core import picks as canonical
from picks.core.errors import InputFormatError, NotFound, OutOfExtent, PicksError
from picks.core.files import sha256_file
from picks.core.picks import ContentDigest
from picks.core.store import Store
from picks.core.store.migrations import source_identity
from picks.plugins.adapter import CHUNK_ROWS, Adapter, ReadContext
from picks.plugins.manager import AdapterRegistry, safe_sniff
from picks.workflows.checks import FileChecks, check_extent, implausible_coordinates
from picks.workflows.name_patterns import (
    NAME_OPTION,
    NamePattern,
    _own_classes,
    _warn_named,
    check_named,
    describe_named,
    names_from_pattern,
)

# re-exported: their old home
__all__ = [
    "NAME_OPTION",
    "NamePattern",
    "check_extent",
    "check_named",
    "describe_named",
    "implausible_coordinates",
    "names_from_pattern",
]

log = logging.getLogger("picks.import")
# ``file -> tomogram, class`` lines of name patterns: ``picks aggregate`` shows them from here;
# ``picks import`` prints them in its own report and silences this logger.
names_log = logging.getLogger("picks.import.names")


@dataclass
class ImportResult:
    path: Path
    source_id: int
    adapter: str
    picker: str
    n_picks: int
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)
    # What a name pattern read from the path: {"tomogram": ..., "particle": ...} (else empty).
    from_name: dict[str, str] = field(default_factory=dict)

    @property
    def named(self) -> str:
        """``tomogram TS_01, class ribosome`` for the import report ('' without a pattern)."""
        return describe_named(self.from_name)

    def as_dict(self) -> dict:
        return dict(asdict(self), path=str(self.path))


# -- copick project configs ------------------------------------------------------------------
COPICK_ROOTS = ("overlay_root", "static_root")


def is_copick_config(path: Path) -> bool:
    """A copick project config (``pickable_objects`` + an ``overlay_root``), not a picks file."""
    if path.suffix.lower() != ".json" or not path.is_file() or path.stat().st_size > (1 << 22):
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("pickable_objects"), list)
        and any(key in doc for key in COPICK_ROOTS)
        and "points" not in doc
    )


def copick_config_roots(path: Path) -> list[Path]:
    """The local folders of a copick project config: its ``overlay_root`` and ``static_root``.

    copick writes roots as fsspec URLs (``local:///data/project/``); plain paths are read too,
    relative ones against the config's folder. Remote roots (``s3://``, the Data Portal) are an
    error naming the key: picks reads local files only, so a project that is partly remote would
    silently lose picks.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    roots = []
    for key in COPICK_ROOTS:
        raw = doc.get(key)
        if raw in (None, ""):
            continue
        text = str(raw)
        protocol, sep, rest = text.partition("://")
        if sep and protocol not in ("local", "file"):
            raise PicksError(
                f"{path}: {key} {text!r} is not a local folder; picks reads local copick projects",
                hint="Copy (or sync) the project locally and give its folder.",
            )
        folder = Path(rest if sep else text).expanduser()
        if not folder.is_absolute():
            folder = path.parent / folder
        if not folder.is_dir():
            raise NotFound(f"{path}: {key} {text!r}: no such folder ({folder})")
        if folder not in roots:
            roots.append(folder)
    if not roots:
        raise PicksError(f"{path}: copick config names no overlay_root or static_root")
    return roots


def expand_inputs(
    paths: Iterable[str | Path], registry: AdapterRegistry, adapter: str = "auto"
) -> list[Path]:
    """Files as given; folders expanded (recursively, sorted) to the files an adapter claims.

    Inside a folder, a file is kept when one of the adapters' patterns fits its name *and* that
    adapter's ``sniff`` claims it, so side files (a ``labels.txt`` next to DeepFinder lists, a
    README) are passed over. Files named explicitly are always kept (and fail loudly later).
    """
    entries = [registry.entry(adapter)] if adapter != "auto" else list(registry)

    def claimed(p: Path) -> bool:
        return any(e.matches(p) and safe_sniff(e.load(), p) > 0 for e in entries)

    def in_folder(folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.rglob("*")
            if p.is_file()
            # never look inside volume stores (a zarr v3 store holds zarr.json files)
            and not any(q.lower().endswith(".zarr") for q in p.relative_to(folder).parts[:-1])
            and claimed(p)
        )

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = in_folder(path)
            if not found:
                raise PicksError(f"{path}: folder holds no file any adapter reads")
            files.extend(found)
        elif not path.exists():
            raise NotFound(f"{path} does not exist")
        elif is_copick_config(path):
            # The project's picks live under its roots; the config itself holds none.
            roots = copick_config_roots(path)
            found = sorted({p for root in roots for p in in_folder(root)})
            if not found:
                raise PicksError(
                    f"{path}: the copick project ({', '.join(map(str, roots))}) holds no picks file"
                )
            log.info(
                "%s: copick project config, %d picks file(s) under %s",
                path,
                len(found),
                ", ".join(map(str, roots)),
            )
            files.extend(found)
        else:
            files.append(path)
    return files


def read_file(adapter: Adapter, ctx: ReadContext) -> pd.DataFrame:
    """Run an adapter and return a checked canonical table; wrap unexpected errors with the file."""
    frames = list(read_chunks(adapter, ctx, chunk_size=sys.maxsize))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_chunks(
    adapter: Adapter, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """:func:`read_file` a chunk at a time (:meth:`Adapter.read_chunks`): each chunk checked
    canonical table as it comes; the checks that judge the whole file (the extent, unused
    options, implausible coordinates) once the last chunk is in, with the messages a one-piece
    read gives. Always yields at least one (maybe empty) table."""
    checks = FileChecks(ctx.tomograms)
    chunks = adapter.read_chunks(ctx.path, ctx, chunk_size)
    yielded = False
    while True:
        with _reading(adapter, ctx):
            frame = next(chunks, None)
            if frame is None:
                break
            frame = canonical.normalise(frame)
            canonical.validate(frame)
        checks.add(frame)
        yielded = True
        yield frame
    if not yielded:
        yield canonical.empty()
    unused = ctx.options.unused()  # ReadContext always tracks its options
    if unused:
        # A warning, not an error: some options only apply in some cases (a folder's
        # VoxelSpacing beats voxel_spacing=), but a typo must not pass unnoticed.
        looked = sorted(k for k in ctx.options.used if not str(k).startswith("_"))
        ctx.warn(
            f"adapter {adapter.name} did not use option(s) "
            + ", ".join(f"{k!r}" for k in unused)
            + (f" (it looked for: {', '.join(looked)})" if looked else " (it takes none here)")
            + "; check the spelling against its documentation (docs/conventions.md)"
        )
    checks.raise_outside(ctx.path)
    implausible = checks.implausible()
    if implausible:
        ctx.warn(implausible)


@contextlib.contextmanager
def _reading(adapter: Adapter, ctx: ReadContext) -> Iterator[None]:
    """Errors of a reader as one :class:`InputFormatError` naming the file."""
    try:
        yield
    except PicksError:
        raise
    except MemoryError:
        raise InputFormatError(
            ctx.path, f"cannot read as {adapter.name}: the file needs more memory than there is"
        ) from None
    except Exception as exc:
        # Readers name the line for every problem they know of; anything else a malformed
        # file provokes (csv.Error, OverflowError, RecursionError, struct.error...) is still
        # a bad input, never a traceback (--debug shows it).
        text = str(exc)
        text = text if len(text) <= 200 else text[:197] + "..."
        raise InputFormatError(
            ctx.path, f"cannot read as {adapter.name} ({type(exc).__name__}: {text})"
        ) from exc


def _stored_by_source(store: Store, picks: pd.DataFrame | None = None):
    """(source path, its picks) for every source in ``picks`` (default: every stored pick),
    with the registered tomograms; nothing when none is registered."""
    known = store.tomograms()
    if not len(known):
        return known, []
    if picks is None:
        picks = store.picks(roles=None, columns=["tomogram", "x", "y", "z", "record"])
    paths = {s["id"]: s["path"] for s in store.sources()}
    groups = picks.groupby("source_id", sort=True)
    return known, [(paths[int(source_id)], group) for source_id, group in groups]


def check_stored_extent(store: Store, picks: pd.DataFrame | None = None) -> None:
    """Raise :class:`OutOfExtent` (naming the source file) for stored picks outside their
    now registered tomogram, as an import with the tomograms would have."""
    known, groups = _stored_by_source(store, picks)
    for path, group in groups:
        check_extent(group, known, path)


def stored_outside_extent(store: Store) -> list[str]:
    """For each stored source with picks outside their (now registered) tomogram, the
    :class:`OutOfExtent` message an import with the tomograms would have given."""
    known, groups = _stored_by_source(store)
    found = []
    for path, group in groups:
        try:
            check_extent(group, known, path)
        except OutOfExtent as exc:
            found.append(str(exc))
    return found


def import_file(
    store: Store,
    path: str | Path,
    registry: AdapterRegistry,
    *,
    adapter: str = "auto",
    picker: str | None = None,
    role: str = "picker",
    voxel_size: float | None = None,
    binning: float = 1.0,
    particle: str | None = None,
    tomogram: str | None = None,
    options: dict[str, str] | None = None,
    run_id: int | None = None,
    chunk_size: int = CHUNK_ROWS,
    keep: list[pd.DataFrame] | None = None,
    prefetched: Prefetched | None = None,
) -> ImportResult:
    """Import one picker file as one transaction (see module docstring), streamed: the adapter
    reads it ``chunk_size`` picks at a time (:meth:`Adapter.read_chunks`) and each chunk is
    stored as it comes, so a file of millions of lines is never whole in memory. ``keep``: a
    list that receives the chunks stored (left empty when nothing new is stored), for a
    caller that would otherwise read them back (:mod:`picks.workflows.kept`).
    ``prefetched``: this file already read by :func:`prefetch_file` with the same arguments
    (stored from there; the file is read here after all if that read failed)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} does not exist or is not a file")
    digest = sha256_file(path)
    if prefetched is not None and prefetched.digest != digest:  # the file changed meanwhile
        prefetched.discard()
        prefetched = None
    chosen, ctx, from_name, adapter_options = _read_context(
        store, path, registry, adapter, options, tomogram, particle, voxel_size, binning
    )
    label = picker or default_picker_label(chosen)
    meta = {
        "path": str(path.resolve()),
        "sha256": digest,
        "size": path.stat().st_size,
        "adapter": chosen.name,
        "adapter_version": chosen.version,
        "picker": label,
        "role": role,
        "options": {
            "voxel_size": voxel_size,
            "binning": binning,
            "particle": particle,
            "tomogram": tomogram,
            **(options or {}),
        },
        "warnings": ctx.warnings,
        "run_id": run_id,
    }
    # Same bytes are the same source unless they land in other tomograms (a copick file whose
    # run comes from its folder), give other picks (another binning, voxel size, class or
    # adapter) or come in another role; so the match is made after reading (see m005). Bytes
    # never stored cannot match: the file streams straight into the store. Bytes stored before
    # are read once for their identity first, and only stored (read again) when it is new.
    if store.find_source(digest) is not None:
        if prefetched is not None:  # stored meanwhile (the same bytes given twice)
            prefetched.discard()
            prefetched = None
        reading = _Reading(chosen, ctx, from_name, role, digest, chunk_size)
        for _ in reading.chunks():
            pass
        skipped = _skipped(path, store.find_source(digest, reading.identity()), from_name)
        if skipped is not None:
            _log_named(path, from_name)
            return skipped
        ctx = dataclasses.replace(ctx, warnings=[], options=dict(adapter_options))
        meta["warnings"] = ctx.warnings
    reading = _Reading(chosen, ctx, from_name, role, digest, chunk_size)
    read_ahead = prefetched.take(ctx) if prefetched is not None else None
    if read_ahead is not None:
        reading = read_ahead

    def complete(row: dict) -> None:
        row["identity"] = reading.identity()
        row["n_picks"] = reading.n

    # Checked again inside the write transaction: another command may have imported the
    # same file meanwhile.
    chunks = reading.chunks()
    if keep is not None:
        chunks = _keeping(chunks, keep)
    skipped = _skipped(path, store.stream_source(meta, chunks, complete), from_name)
    _log_named(path, from_name)
    if skipped is not None:
        if keep is not None:
            keep.clear()
        return skipped
    source_id = int(meta["id"])
    log.debug("%s: %d picks as source %d (%s, %s)", path, reading.n, source_id, chosen.name, label)
    return ImportResult(
        path,
        source_id,
        chosen.name,
        label,
        reading.n,
        warnings=list(ctx.warnings),
        from_name=from_name,
    )


# Files up to this size are read ahead in a child process (the whole file's tables come back
# at once, so the size bounds the memory this costs).
PREFETCH_MAX_BYTES = 256 * 1024 * 1024


class _ReadAhead:
    """What a :class:`_Reading` of the file gave in the child: its tables, count, identity."""

    def __init__(self, frames: list[pd.DataFrame], n: int, identity: str) -> None:
        self.frames, self.n, self._identity = frames, n, identity

    def chunks(self) -> Iterator[pd.DataFrame]:
        while self.frames:
            yield self.frames.pop(0)  # handed on, not kept twice

    def identity(self) -> str:
        return self._identity


class Prefetched:
    """A file being read in a forked child (:func:`prefetch_file`)."""

    def __init__(self, digest: str, job) -> None:
        self.digest, self.job = digest, job

    def take(self, ctx: ReadContext) -> _ReadAhead | None:
        """The child's reading, its warnings added to ``ctx``; None if it failed (an error
        in the file: the parent reads it again and reports it the usual way)."""
        from picks.workflows.forked import ForkFailed

        try:
            frames, n, identity, warnings = self.job.result()
        except ForkFailed:
            return None
        ctx.warnings.extend(warnings)
        return _ReadAhead(frames, n, identity)

    def discard(self) -> None:
        self.job.cancel()


def prefetch_file(
    store: Store,
    path: str | Path,
    registry: AdapterRegistry,
    *,
    adapter: str = "auto",
    role: str = "picker",
    voxel_size: float | None = None,
    binning: float = 1.0,
    particle: str | None = None,
    tomogram: str | None = None,
    options: dict[str, str] | None = None,
    chunk_size: int = CHUNK_ROWS,
    **_ignored: object,
) -> Prefetched | None:
    """Start reading a picker file in a forked child (workflows/forked.py), so that the
    parent can store the file before it meanwhile: pass the result to :func:`import_file`
    with the same arguments. None (nothing started) for a file already stored, one over
    :data:`PREFETCH_MAX_BYTES`, or where fork is not available. The child reads exactly as
    :func:`import_file` would; it uses the store's tomograms, which an import does not
    change (they are registered before)."""
    from picks.workflows.forked import Forked, fork_available

    path = Path(path)
    if not fork_available() or not path.is_file() or path.stat().st_size > PREFETCH_MAX_BYTES:
        return None
    digest = sha256_file(path)
    if store.find_source(digest) is not None:
        return None
    try:
        chosen, ctx, from_name, _ = _read_context(
            store, path, registry, adapter, options, tomogram, particle, voxel_size, binning
        )
    except PicksError:
        return None  # said when it is imported

    def read() -> tuple[list[pd.DataFrame], int, str, list[str]]:
        reading = _Reading(chosen, ctx, from_name, role, digest, chunk_size)
        frames = list(reading.chunks())
        return frames, reading.n, reading.identity(), list(ctx.warnings)

    job = Forked(read)
    return Prefetched(digest, job) if job.pid is not None else None


def _read_context(
    store: Store,
    path: Path,
    registry: AdapterRegistry,
    adapter: str,
    options: dict[str, str] | None,
    tomogram: str | None,
    particle: str | None,
    voxel_size: float | None,
    binning: float,
) -> tuple[Adapter, ReadContext, dict[str, str], dict[str, str]]:
    """The adapter for ``path``, its read context, the names taken from the file name and
    the adapter's own options: what :func:`import_file` and :func:`prefetch_file` read with."""
    chosen = registry.detect(path) if adapter == "auto" else registry.get(adapter)
    name_tomogram, name_particle, from_name, adapter_options = names_from_pattern(
        path, options, tomogram, particle
    )
    ctx = ReadContext(
        path=path,
        tomograms=store.tomograms(),
        voxel_size=voxel_size,
        binning=binning,
        particle=name_particle,
        tomogram=name_tomogram,
        options=adapter_options,
    )
    return chosen, ctx, from_name, adapter_options


def _keeping(chunks: Iterator[pd.DataFrame], keep: list[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        keep.append(chunk)
        yield chunk


def _log_named(path: Path, from_name: dict[str, str]) -> None:
    if from_name:
        names_log.info("%s -> %s", path, describe_named(from_name))


class _Reading:
    """One streamed read of a file: its checked chunks, and what the source's identity needs
    (the tomograms, the digest of the picks), gathered on the way."""

    def __init__(
        self,
        adapter: Adapter,
        ctx: ReadContext,
        from_name: dict,
        role: str,
        sha256: str,
        chunk_size: int,
    ) -> None:
        self.adapter, self.ctx, self.from_name = adapter, ctx, from_name
        self.role, self.sha256, self.chunk_size = role, sha256, chunk_size
        self.n = 0
        self.tomograms: set[str] = set()
        self.digest = ContentDigest()
        self.own: set[str] = set()

    def chunks(self) -> Iterator[pd.DataFrame]:
        for frame in read_chunks(self.adapter, self.ctx, self.chunk_size):
            self.n += len(frame)
            self.tomograms.update(frame["tomogram"].unique())
            self.digest.update(frame)
            self.own.update(_own_classes(frame, self.from_name))
            yield frame
        _warn_named(self.own, self.from_name, self.ctx)

    def identity(self) -> str:
        if self.digest.broken:  # chunks out of record order: digest them all at once
            self.digest = ContentDigest(keep=True)
            ctx = dataclasses.replace(self.ctx, warnings=[], options=dict(self.ctx.options))
            for frame in read_chunks(self.adapter, ctx, self.chunk_size):
                self.digest.update(frame)
        content = self.digest.hexdigest()
        return source_identity(self.sha256, self.tomograms, role=self.role, content=content)


def _skipped(
    path: Path, existing: dict | None, from_name: dict | None = None
) -> ImportResult | None:
    if existing is None:
        return None
    return ImportResult(
        path,
        existing["id"],
        existing["adapter"],
        existing["picker"],
        existing["n_picks"],
        skipped=True,
        from_name=from_name or {},
    )


def default_picker_label(adapter: Adapter) -> str:
    """A picker label from the adapter's program name: ``crYOLO`` -> ``cryolo``."""
    label = "".join(ch if ch.isalnum() else "-" for ch in (adapter.picker or adapter.name).lower())
    return "-".join(part for part in label.split("-") if part) or adapter.name
