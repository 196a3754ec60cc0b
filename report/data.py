"""What a report reads from the store: the run's candidates with their class, radius and
decision (:class:`RunData`), and the names derived from them (file-name slugs, picker letters).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram

NO_CLASS = "(no class)"


@dataclass
class RunData:
    run_id: int
    run: dict
    params: dict
    method: str
    frame: pd.DataFrame  # the candidates, with cls, decision, radius (Å)
    radii: dict[str, float]
    pickers: list[str]
    estimates: pd.DataFrame
    classes: pd.DataFrame
    tomograms: dict[str, Tomogram]
    models: list[dict]

    @classmethod
    def load(cls, store, run_id: int, consensus: pd.DataFrame | None = None) -> RunData:
        run = store.get_run(run_id)
        # the caller's copy of store.consensus(run_id), if it has one; columns are added below
        frame = store.consensus(run_id) if consensus is None else consensus.copy()
        if frame.empty:
            raise PicksError(
                f"run {run_id} has no consensus picks", hint="'picks runs' lists the runs."
            )
        try:
            params = json.loads(run.get("params") or "{}")
        except ValueError:
            params = {}
        frame["cls"] = per_value(frame["particle"], lambda p: NO_CLASS if p is None else str(p))
        # (the distinct texts first: the same set, without a Python object per candidate)
        distinct = pd.Series(pd.unique(frame["particle"].to_numpy(dtype=object)), dtype=object)
        radii = class_radii(params, sorted(set(distinct.astype(str).unique())))
        frame["radius"] = per_value(
            frame["particle"], lambda p: radii["None" if p is None else str(p)]
        )
        reference = frame["forced"].to_numpy(dtype=bool) | (
            frame["decided_by"].astype(str) == "reference"
        ).to_numpy(dtype=bool)
        accepted = frame["accepted"].fillna(0).astype(int).to_numpy(dtype=bool)
        # a take of the three names (the column their array of texts gives, built faster)
        decision = np.where(reference, 2, np.where(accepted, 1, 0))
        frame["decision"] = pd.Series(["rejected", "accepted", "reference"]).take(decision).array
        frame["accepted"] = accepted
        # over the distinct lists only (a few combinations, not one per candidate)
        combos = pd.unique(frame["pickers"].astype(str).to_numpy(dtype=object))
        pickers = sorted({p for text in combos for p in text.split(",") if p})
        estimates, classes = store.estimates(run_id)
        return cls(
            run_id=run_id,
            run=run,
            params=params,
            method=str(run.get("method") or params.get("method") or ""),
            frame=frame,
            radii=radii,
            pickers=pickers,
            estimates=estimates,
            classes=classes,
            tomograms={t.name: t for t in store.tomograms()},
            models=store.run_models(run_id),
        )


def per_value(column: pd.Series, fn) -> list | pd.api.extensions.ExtensionArray:
    """``[fn(v) for v in column]`` as a column (the dtype pandas gives that list), with ``fn``
    called once per distinct text (a class name per candidate: a handful of calls and a
    take, not a million Python objects). Anything but text and missing values (the missing
    ones one by one: None and NaN are not one value to ``fn``) is left to the plain loop."""
    values = column.to_numpy(dtype=object)
    codes, uniques = pd.factorize(values)  # missing values (None, NaN): code -1
    if not len(values) or any(type(u) is not str for u in uniques.tolist()):
        return [fn(v) for v in values.tolist()]
    results = [fn(u) for u in uniques.tolist()]
    missing = np.flatnonzero(codes < 0)
    if len(missing):
        codes = codes.copy()
        none = None  # the place of fn(None) (the usual missing value: one call)
        for i, v in zip(missing.tolist(), values[missing].tolist(), strict=True):
            if v is None and none is not None:
                codes[i] = none
                continue
            results.append(fn(v))
            codes[i] = len(results) - 1
            if v is None:
                none = codes[i]
    # the distinct results infer the dtype the whole list would (the same kinds of value)
    return pd.Series(results).take(codes).array


def run_objective(params: dict) -> str:
    """The run's decision objective (runs before ``--objective`` stored only their beta)."""
    if params.get("objective"):
        return str(params["objective"])
    beta = params.get("beta")
    return f"f{float(beta):g} (the maximum expected F-β)" if beta is not None else "f4"


def class_radii(params: dict, classes: list[str]) -> dict[str, float]:
    """Radius (Å) per class as the run resolved it (its stored parameters), else the catalog
    with the run's ``--radius`` values; a class with neither is an error, not a guess."""
    from picks.core.particles import Catalog

    resolved = dict((params.get("resolved") or {}).get("radii") or {})
    catalog = Catalog().with_radii(dict(params.get("radii") or {}))
    out: dict[str, float] = {}
    for name in classes:
        if name in resolved:
            out[name] = float(resolved[name])
        elif name != "None" and name in catalog:
            out[name] = catalog.radius(name)
        elif params.get("box_size"):
            out[name] = float(params["box_size"]) / 2
        else:
            raise PicksError(
                f"no radius known for class {name!r} of this run (the run's parameters do not "
                "record one)"
            )
    return out


# File names are "<kind>-<slug>[-n][-thumb].png": a long class name is cut and ends with a
# digest of the whole name, so every name stays under the file system's limit and apart.
MAX_SLUG = 80


def _slug(text: str) -> str:
    keep = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in str(text))
    keep = keep.strip("-") or "x"
    if len(keep) > MAX_SLUG:
        digest = hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:12]
        keep = f"{keep[: MAX_SLUG - 13]}-{digest}"
    return keep


def slugs(names: list[str]) -> dict[str, str]:
    """A file-name and anchor-safe name per name, unique: names that reduce to the same slug
    (``TS 01`` and ``TS-01``) get ``-2``, ``-3``… in sorted order, so no image overwrites
    another."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(set(names)):
        base = _slug(name)
        slug, n = base, 1
        while slug.casefold() in used:  # case-insensitive file systems
            n += 1
            slug = f"{base}-{n}"
        used.add(slug.casefold())
        out[name] = slug
    return out


def picker_letters(pickers: list[str]) -> dict[str, str]:
    """A short code per picker for the slab labels: A, B, … (then A1, B1, …)."""
    out = {}
    for i, picker in enumerate(pickers):
        letter = chr(ord("A") + i % 26)
        out[picker] = letter if i < 26 else f"{letter}{i // 26}"
    return out
