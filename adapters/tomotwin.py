"""TomoTwin ``tomotwin_locate`` output (``.tloc``): a pickled pandas DataFrame, read safely.

Convention (``shared/reference/formats.md`` §8.4; MPI-Dortmund/napari-boxmanager:src/box_manager/io/tloc.py):

* Columns ``X, Y, Z`` — voxel *centres* (0-based) of the tomogram TomoTwin saw (usually
  rescaled to ~10 Å/voxel), converted with ``ctx.voxels_to_angstrom`` (``--voxel-size`` or the
  registered tomogram × ``--binning``); ``predicted_class`` — index into
  ``attrs["references"]`` (reference file names); ``metric_best`` — similarity score (the
  ``score``, ``score_field = "metric_best"``); ``size`` — cluster size; ``width, height, depth``
  — box size. Newer files may add ``filename`` (the tomogram) and ``predicted_class_name``.
* Class: ``--option labels=cluster_2=ribosome,…`` (keys are reference names without extension
  or class indices) maps references to particles; otherwise the reference name without its
  extension (``cluster_2.pkl`` -> ``cluster_2``), else ``--particle``. ``particle_field =
  "predicted_class"``.
* Tomogram: ``--tomogram``, else the ``filename`` column, else the ``.tloc`` file name.
* ``original`` holds the row's fields as JSON (size, box, class index…).

**Security.** A pickle can run any code when loaded, so this reader never calls
``pickle.load``. It uses :class:`RestrictedUnpickler`, whose ``find_class`` only returns the
pandas/numpy reconstruction callables that a pickled DataFrame of numbers and strings needs
(found with ``pickletools.dis`` on the fixtures: DataFrame, BlockManager, ``_unpickle_block``,
``_new_Index``, Index, RangeIndex, ndarray ``_reconstruct``/``_frombuffer``, dtype, slice);
any other global — ``os.system``, ``builtins.eval``, a class from another package — is refused
with an error naming it, and nothing is imported or called. Tables pickled by pandas ≥ 3 keep
string labels in pyarrow arrays whose reconstructors are not on the list; such files are refused
too (export them with ``tomotwin_pick`` to ``.coords``/``.cbox``, or re-save with pandas 2).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._labels import parse_name_map
from picks.core import picks as canonical
from picks.core.errors import InputFormatError
from picks.plugins.adapter import Adapter, ReadContext

REQUIRED = ("X", "Y", "Z")
# (module, name) written in the pickle -> (module to import, attribute). numpy 2 moved
# numpy.core to numpy._core; pickles written with numpy 1 name the old module.
ALLOWED_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    ("pandas.core.frame", "DataFrame"): ("pandas.core.frame", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"): (
        "pandas.core.internals.managers",
        "BlockManager",
    ),
    ("pandas._libs.internals", "_unpickle_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.base", "Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas.core.indexes.range", "RangeIndex"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    # ``ndarray`` is only ever handed to ``_reconstruct`` as a marker (see _NdarrayMarker), and
    # ``_reconstruct`` only through _reconstruct_empty: an array gets its size from its data.
    ("numpy", "ndarray"): ("", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"): ("", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "slice"): ("builtins", "slice"),
}
_FALLBACK_MODULES = {
    "numpy._core.multiarray": "numpy.core.multiarray",
    "numpy._core.numeric": "numpy.core.numeric",
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a callable outside :data:`ALLOWED_GLOBALS`."""


class _NdarrayMarker:
    """What the pickle gets for ``numpy.ndarray``: not callable, so ``ndarray(shape, dtype)``
    through REDUCE (an uninitialised array of any size, from a few bytes of pickle) fails;
    its only use is as the first argument of :func:`_reconstruct_empty`."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayMarker()


def _reconstruct_empty(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """numpy's pickle path for an array: an *empty* ndarray, filled by ``__setstate__`` from
    the bytes (or objects) the pickle carries, which numpy checks against the shape. Anything
    else (a subclass, a non-empty shape that would be allocated uninitialised) is refused."""
    if subtype is not _NDARRAY or tuple(shape) != (0,):  # type: ignore[arg-type]
        raise RefusedGlobal(f"numpy _reconstruct({subtype!r}, {shape!r}) (only (ndarray, (0,)))")
    return np.ndarray.__new__(np.ndarray, (0,), dtype)  # type: ignore[call-overload]


_LOCAL = {"ndarray": _NDARRAY, "_reconstruct": _reconstruct_empty}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build pandas DataFrames of plain data (see module docstring)."""

    def find_class(self, module: str, name: str):
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise RefusedGlobal(f"{module}.{name}")
        module_name, attribute = target
        if not module_name:
            return _LOCAL[attribute]
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError):
            fallback = _FALLBACK_MODULES.get(module_name)
            if fallback is None:
                raise
            return getattr(importlib.import_module(fallback), attribute)


def load_dataframe(path: Path) -> pd.DataFrame:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; it must hold a DataFrame."""
    data = path.read_bytes()
    # Walk the opcodes first (nothing is built): a length field that claims more bytes than
    # the file holds (a damaged or crafted .tloc) is an error here, where the unpickler would
    # first try to allocate it (MemoryError, and CPython's "deallocated bytearray" noise).
    for _ in pickletools.genops(io.BytesIO(data)):
        pass
    obj = RestrictedUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, pd.DataFrame):
        raise TypeError(f"the pickle holds a {type(obj).__name__}, not a pandas DataFrame")
    # Every row of a table with X/Y/Z columns holds at least 3 bytes of data in the file; a
    # longer table comes from a lazy index (RangeIndex) or a shape that the data do not back.
    size = path.stat().st_size
    if len(obj) > size:
        raise ValueError(f"the table claims {len(obj)} rows, more than a {size}-byte file holds")
    return obj


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TomoTwinAdapter(Adapter):
    name = "tomotwin-tloc"
    picker = "TomoTwin"
    patterns = ("*.tloc",)

    def sniff(self, path: Path) -> float:
        try:
            with open(path, "rb") as handle:
                start = handle.read(256)
        except OSError:
            return 0.0
        return 0.9 if start[:1] == b"\x80" and b"pandas" in start and b"DataFrame" in start else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        if path.stat().st_size == 0:
            raise ctx.error("empty file; expected a pickled pandas DataFrame (.tloc)")
        try:
            table = load_dataframe(path)
        except RefusedGlobal as exc:
            raise InputFormatError(
                path,
                f"refusing to unpickle: the file asks for {exc}, which a TomoTwin table written by "
                "pandas < 3 does not need (a pickle can run code; only pandas/numpy data "
                "reconstructors are allowed)",
                hint="Export the picks with tomotwin_pick (.coords or .cbox) and import those.",
            ) from None
        except Exception as exc:  # truncated/corrupt pickles raise many different errors
            raise ctx.error(
                f"cannot read the pickled table ({type(exc).__name__}: {exc})"
            ) from None
        missing = [c for c in REQUIRED if c not in table.columns]
        if missing:
            raise ctx.error(f"table lacks column(s) {missing}; found {list(table.columns)}")
        coords = table[list(REQUIRED)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(coords).all():
            bad = int(np.flatnonzero(~np.isfinite(coords).all(axis=1))[0])
            raise ctx.error("X/Y/Z is not a finite number", record=f"row {bad}")
        particles = self._particles(table, ctx)
        scores = (
            pd.to_numeric(table["metric_best"], errors="coerce").to_numpy(dtype=float)
            if "metric_best" in table
            else np.full(len(table), np.nan)
        )
        originals = [
            json.dumps({k: _plain(v) for k, v in row.items()}, separators=(",", ":"), default=str)
            for row in table.to_dict(orient="records")
        ]
        frame = canonical.make(
            {
                "tomogram": self._tomograms(table, ctx),
                "particle": particles,
                "x": coords[:, 0],
                "y": coords[:, 1],
                "z": coords[:, 2],
                "score": scores,
                "record": np.arange(len(table)),
                "original": originals,
            },
            score_field="metric_best" if "metric_best" in table else None,
            particle_field="predicted_class" if "predicted_class" in table else None,
        )
        return ctx.voxels_to_angstrom(frame)

    @staticmethod
    def _tomograms(table: pd.DataFrame, ctx: ReadContext) -> list[str]:
        if ctx.tomogram or "filename" not in table:
            return [ctx.tomogram_from_path()] * len(table)
        return ctx.resolve_tomograms(table["filename"].astype(str))

    @staticmethod
    def _particles(table: pd.DataFrame, ctx: ReadContext) -> list[str | None]:
        labels = parse_name_map(ctx.options.get("labels"), "labels")
        references = [str(r) for r in table.attrs.get("references", [])]
        if "predicted_class" not in table:
            return [ctx.particle_name(None)] * len(table)
        classes = table["predicted_class"].tolist()
        names = (
            table["predicted_class_name"].astype(str).tolist()
            if "predicted_class_name" in table
            else None
        )
        out = []
        for row, value in enumerate(classes):
            try:
                index = int(value)
            except (TypeError, ValueError):
                raise ctx.error(
                    f"predicted_class = {value!r} is not an integer", record=f"row {row}"
                ) from None
            if names is not None:
                reference = names[row]
            elif 0 <= index < len(references):
                reference = references[index]
            else:
                reference = ""
            stem = Path(reference).name.split(".")[0] if reference else ""
            raw = labels.get(stem) or labels.get(reference) or labels.get(str(index)) or stem
            out.append(ctx.particle_name(raw or None))
        return out
