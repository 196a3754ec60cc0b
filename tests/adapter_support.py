"""Helpers shared by the adapter tests (tests/test_adapter_*.py).

Imported as a plain module (``import adapter_support as support``): tests/conftest.py puts
tests/ on ``sys.path`` because tests run with ``--import-mode=importlib`` and tests/ is not a
package. Helpers that need the ``store``/``registry`` fixtures are wrapped as the
``rejects_import`` fixture in conftest.py; everything hypothesis needs at import time
(strategies, settings) lives here.

Conventions: coordinates are Å in the canonical frame (origin at the centre of voxel 0), so a
pick lies inside a tomogram of ``shape`` voxels of ``v`` Å when ``0 <= x <= (n - 1)·v``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from picks.core import picks as canonical
from picks.core.errors import InputFormatError, PicksError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import ReadContext, WriteContext
from picks.workflows.importing import import_file, read_file

XYZ = ["x", "y", "z"]

#: Writer/reader round trips: few examples, each writes files.
ROUND_TRIP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Mutated-file fuzzing: cheap examples, many of them.
MUTATION = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- tomograms and files ----------------------------------------------------------------------


def one_tomogram(
    name: str, voxel: float, shape: tuple[int, int, int] | None, path: str | None = None
) -> TomogramSet:
    """A TomogramSet holding a single registered tomogram."""
    return TomogramSet([Tomogram(name, path, voxel, shape)])


def write_text(folder: Path, relative: str, text: str) -> Path:
    """Write ``text`` to ``folder/relative`` (parents created) and return the path."""
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- reading ----------------------------------------------------------------------------------


def read_checked(adapter, path: Path, **ctx_kwargs) -> tuple[pd.DataFrame, ReadContext]:
    """Read like ``picks import`` does (core.importing.read_file: normalise, validate, extent)."""
    ctx = ReadContext(path=path, **ctx_kwargs)
    return read_file(adapter, ctx), ctx


def read_raw(
    adapter, path: Path, *, normalise: bool = True, **ctx_kwargs
) -> tuple[pd.DataFrame, ReadContext]:
    """Call ``adapter.read`` directly (no error wrapping, no extent check) and validate.

    ``normalise=False`` validates the adapter's own table, so a test sees exactly what the
    adapter produced.
    """
    ctx = ReadContext(path=path, **ctx_kwargs)
    frame = adapter.read(path, ctx)
    if normalise:
        frame = canonical.normalise(frame)
    canonical.validate(frame)
    return frame, ctx


def row(frame: pd.DataFrame, line: int) -> pd.Series:
    """The pick read from source record/line ``line``."""
    return frame.set_index("record").loc[line]


# --- importing into the store -----------------------------------------------------------------


def assert_store_empty(store) -> None:
    """A failed import must leave neither a source nor a pick behind."""
    assert store.count("sources") == 0
    assert store.count("picks") == 0


def expect_import_error(
    store,
    registry,
    path: Path,
    *,
    error: type[Exception] = InputFormatError,
    match: str | None = None,
    **import_kwargs,
) -> pytest.ExceptionInfo:
    """Import ``path``; it must raise ``error`` (matching ``match``) and store nothing."""
    with pytest.raises(error, match=match) as info:
        import_file(store, path, registry, **import_kwargs)
    assert_store_empty(store)
    return info


# --- orientations -----------------------------------------------------------------------------


def relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """Rz(rot)·Ry(tilt)·Rz(psi) for RELION ZYZ angles in degrees."""
    return Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix()


def copick_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """copick's/the portal's object matrix for RELION angles: (Rz(rot)·Ry(tilt)·Rz(psi))ᵀ."""
    return Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv().as_matrix()


# --- hypothesis strategies --------------------------------------------------------------------


def tomogram_shapes() -> st.SearchStrategy[tuple[int, int, int]]:
    """(nx, ny, nz) of a plausible binned tomogram."""
    return st.tuples(st.integers(64, 700), st.integers(64, 700), st.integers(32, 300))


def positions_in(tomo: Tomogram) -> st.SearchStrategy[list[float]]:
    """[x, y, z] in Å anywhere between the centres of the first and last voxels."""
    return st.tuples(*(st.floats(0, 1, allow_nan=False) for _ in tomo.shape)).map(
        lambda f: [a * (s - 1) * tomo.voxel_size for a, s in zip(f, tomo.shape, strict=True)]
    )


def relion_angles() -> st.SearchStrategy[tuple[float, float, float]]:
    """(rot, tilt, psi) in RELION's ranges."""
    return st.tuples(st.floats(-180, 180), st.floats(0, 180), st.floats(-180, 180))


@st.composite
def oriented_pick_tables(
    draw,
    tomograms: TomogramSet,
    *,
    max_picks: int,
    particles: Sequence[str] = ("ribosome", "apo-ferritin", "thyroglobulin"),
    orientation_per_pick: bool = False,
) -> pd.DataFrame:
    """Canonical picks with scores, inside ``tomograms``; all, none or some oriented.

    ``orientation_per_pick`` draws for each pick whether it has angles; otherwise the whole
    table is oriented or not.
    """
    names = [t.name for t in tomograms]
    oriented = draw(st.booleans())
    rows = []
    for _ in range(draw(st.integers(1, max_picks))):
        tomo = tomograms.get(draw(st.sampled_from(names)))
        x, y, z = draw(positions_in(tomo))
        if orientation_per_pick:
            oriented = draw(st.booleans())
        rot, tilt, psi = draw(relion_angles()) if oriented else (np.nan,) * 3
        rows.append(
            {
                "tomogram": tomo.name,
                "particle": draw(st.sampled_from(list(particles))),
                "x": x,
                "y": y,
                "z": z,
                "score": draw(st.floats(0, 1)),
                "rot": rot,
                "tilt": tilt,
                "psi": psi,
                "record": len(rows),
            }
        )
    return canonical.make(pd.DataFrame(rows))


# --- round trips ------------------------------------------------------------------------------


def write_then_read(
    adapter,
    picks: pd.DataFrame,
    filename: str,
    tomograms: TomogramSet,
    *,
    binning: float = 1.0,
    write_options: dict[str, str] | None = None,
    **read_kwargs,
) -> pd.DataFrame:
    """``adapter.write`` then ``adapter.read`` the same file (in a temporary folder); validate."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        write_ctx = WriteContext(
            tomograms=tomograms, binning=binning, options=dict(write_options or {})
        )
        adapter.write(picks, path, write_ctx)
        read_ctx = ReadContext(path=path, tomograms=tomograms, binning=binning, **read_kwargs)
        frame = adapter.read(path, read_ctx)
    canonical.validate(frame)
    return frame


def assert_positions_close(got: pd.DataFrame, expected: pd.DataFrame, atol: float = 1e-3) -> None:
    """Same x, y, z (Å) row by row, to ``atol``."""
    np.testing.assert_allclose(got[XYZ].to_numpy(), expected[XYZ].to_numpy(), atol=atol)


# --- never a traceback: mutated files ---------------------------------------------------------


def mutations(tokens: Iterable[str]) -> st.SearchStrategy[list[tuple[str, float, str]]]:
    """Up to five edits (delete a character, insert a token, truncate) at relative places."""
    return st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "truncate"]),
            st.floats(0, 1),
            st.sampled_from(list(tokens)),
        ),
        max_size=5,
    )


def mutate(text: str, edits: Iterable[tuple[str, float, str]]) -> str:
    """Apply ``mutations()`` edits to ``text`` in order."""
    for op, where, token in edits:
        i = int(where * len(text))
        text = {
            "delete": text[:i] + text[i + 1 :],
            "insert": text[:i] + token + text[i:],
            "truncate": text[:i],
        }[op]
    return text


def assert_reads_or_picks_error(adapter, path: Path, **ctx_kwargs) -> None:
    """Sniffing never raises; reading gives a valid table or a PicksError, nothing else."""
    adapter.sniff(path)
    try:
        frame = adapter.read(path, ReadContext(path=path, **ctx_kwargs))
    except PicksError:
        return
    canonical.validate(canonical.normalise(frame))
