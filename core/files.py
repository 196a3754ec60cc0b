"""Files: content hashes, atomic writes, file-safe names (no plugin, no store).

Every output is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from picks.core.errors import PicksError


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    if path.exists() and not force:
        raise PicksError(f"{path} exists", hint="Use `force=True` to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file owner-only; give it the mode a plain open() would (umask)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@functools.cache
def _umask() -> int:
    """The process umask, read once on first use (never at import: importing picks must not
    touch process state). Linux reports it in /proc; elsewhere os.umask can only be read by
    setting it, which is done once and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Longest file-name part made from a class or tomogram name: with a format folder's suffixes
# (``_tomograms.star``) it stays well under the 255 bytes file systems allow.
MAX_NAME = 120
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_path leaves when killed


def safe_name(text: str) -> str:
    """A class or tomogram name as a file-name part: characters outside ``[A-Za-z0-9._+-]``
    become ``_``, a leading ``.`` becomes ``_`` (no hidden files, nothing that looks like
    our temporary files), and a name longer than :data:`MAX_NAME` is cut and ends with 12 hex
    digits of its SHA-1 (so two long names stay apart). ``.`` and ``..`` are refused: they
    name folders. Different names can give the same part (``x y``, ``x/y``):
    :func:`plan_outputs` refuses such collisions before anything is written."""
    raw = str(text)
    if raw in (".", ".."):
        raise PicksError(
            f"{raw!r} cannot name an output file (it names a folder)",
            hint="Rename the class or tomogram (`particle`, `tomogram`).",
        )
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", raw) or "unnamed"
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}-{digest}"
    return name
