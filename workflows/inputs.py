"""Inputs of an aggregate run: ``[LABEL=]PATH`` specs with their options, and importing them.

An :class:`InputSpec` is one input with its per-input options (``adapter``, ``binning``,
``voxel_size``, ``particle``, ``tomogram``, ``role`` and adapter options). :func:`_import_inputs`
imports every input into the store (once per file content) and labels its sources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from picks.core.errors import PicksError
from picks.core.particles import canonical_name
from picks.core.progress import Progress
from picks.core.store import Store
from picks.workflows.kept import KeptPicks

INPUT_KEYS = ("adapter", "binning", "voxel_size", "particle", "tomogram", "role")


@dataclass
class InputSpec:
    """One ``[LABEL=]PATH`` input with its per-input options (strings)."""

    path: Path
    label: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    given: str = ""

    @property
    def role(self) -> str:
        return self.options.get("role", "picker")


def parse_input(value: str | Path | tuple[str, str | Path] | InputSpec) -> InputSpec:
    """``path``, ``LABEL=path`` or ``(label, path)``. A path that exists wins over a split."""
    if isinstance(value, InputSpec):
        return value
    if isinstance(value, tuple):
        label, path = value
        return InputSpec(Path(path), str(label), given=str(label))
    text = str(value)
    if not isinstance(value, Path) and not Path(text).exists() and "=" in text:
        label, _, path = text.partition("=")
        if label.strip() and "/" not in label:
            return InputSpec(Path(path), label.strip(), given=text)
    return InputSpec(Path(text), None, given=text)


def parse_input_options(values: Iterable[str]) -> dict[str, dict[str, str]]:
    """``LABEL:key=value`` strings into ``{LABEL: {key: value}}``."""
    result: dict[str, dict[str, str]] = {}
    for value in values:
        target, sep, rest = str(value).partition(":")
        key, eq, val = rest.partition("=")
        if not sep or not eq or not target.strip() or not key.strip():
            raise PicksError(
                f"`input_options` {value!r}: expected LABEL:KEY=VALUE, e.g. cryolo:binning=4"
            )
        result.setdefault(target.strip(), {})[key.strip()] = val.strip()
    return result


def parse_weights(values: Iterable[str] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(values, Mapping):
        return {str(k): float(v) for k, v in values.items()}
    weights: dict[str, float] = {}
    for value in values:
        label, sep, number = str(value).partition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = -1.0
        if not sep or not label.strip() or weight < 0:
            raise PicksError(f"`weights` {value!r}: expected LABEL=WEIGHT with WEIGHT ≥ 0")
        weights[label.strip()] = weight
    return weights


def _float_option(spec: InputSpec, key: str) -> float | None:
    raw = spec.options.get(key)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise PicksError(
            f"input {spec.given or spec.path}: option {key}={raw!r} is not a number"
        ) from None


@dataclass
class _Imported:
    """What the inputs resolved to: per source id its label, role and class fill value."""

    label_of: dict[int, str] = field(default_factory=dict)
    role_of: dict[int, str] = field(default_factory=dict)
    fill_of: dict[int, str | None] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)


# Files read ahead, each in a child process, while one is stored (importing.prefetch_file):
# two keep both cores busy (measured: 1 M picks in 4 files, import 11.3 s wall with one
# ahead, 9.4 s with two); each costs its file's tables in memory until it is stored.
READ_AHEAD = 2


def _import_inputs(
    store: Store,
    registry,
    specs: list[InputSpec],
    *,
    run_id: int,
    particle: str | None,
    voxel_size: float | None,
    from_store: bool,
    progress: Progress,
    warnings: list[str],
    kept: KeptPicks | None = None,
) -> _Imported:
    """Import every input (a no-op for files already stored) and resolve the labels.

    Without picker inputs (``from_store``) every picker source in the store is used, with
    its stored label. ``kept`` receives the picks of the picker files stored now.
    """
    from picks.workflows.importing import expand_inputs, import_file, prefetch_file

    done = _Imported()
    label_of, role_of, fill_of = done.label_of, done.role_of, done.fill_of
    planned = [
        (spec, expand_inputs([spec.path], registry, spec.options.get("adapter", "auto")))
        for spec in specs
    ]
    default_owner: dict[str, str] = {}

    def file_args(spec: InputSpec) -> dict:
        return {
            "adapter": spec.options.get("adapter", "auto"),
            "picker": spec.label,
            "role": spec.role,
            "voxel_size": _float_option(spec, "voxel_size") or voxel_size,
            "binning": _float_option(spec, "binning") or 1.0,
            "particle": spec.options.get("particle") or particle,
            "tomogram": spec.options.get("tomogram"),
            "options": {k: v for k, v in spec.options.items() if k not in INPUT_KEYS},
            "run_id": run_id,
        }

    # While one file is stored, the next is read in a child process (the other core):
    # importing.prefetch_file; the files are stored in the same order, with the same results.
    queue = [(spec, path) for spec, files in planned for path in files]
    ahead: dict[int, object] = {}

    def read_ahead(k: int) -> None:
        if k < len(queue) and k not in ahead:
            spec, path = queue[k]
            ahead[k] = prefetch_file(store, path, registry, **file_args(spec))

    position = 0
    with progress("import", total=len(queue)) as advance:
        for spec, files in planned:
            fill = spec.options.get("particle") or particle
            source_ids = []
            n_in = 0
            file_warnings: dict[str, list[Path]] = {}
            for path in files:
                for k in range(position + 1, position + 1 + READ_AHEAD):
                    read_ahead(k)
                chunks = kept.collector() if kept is not None and spec.role == "picker" else None
                result = import_file(
                    store,
                    path,
                    registry,
                    **file_args(spec),
                    keep=chunks,
                    prefetched=ahead.pop(position, None),
                )
                position += 1
                advance(1)
                source = store.get_source(result.source_id)
                if chunks and not result.skipped and kept is not None:
                    kept.add(result.source_id, source["picker"], source["role"], chunks)
                del chunks
                if source["role"] != spec.role:
                    raise PicksError(
                        f"{path} is already in the store as a {source['role']} source "
                        f"(#{source['id']}); it cannot be used as {spec.role} here",
                    )
                label = spec.label or result.picker
                if spec.label is None:
                    owner = default_owner.setdefault(label, spec.given)
                    if owner != spec.given:
                        raise PicksError(
                            f"inputs {owner!r} and {spec.given!r} would both be labelled {label!r}",
                            hint="Label them: LABEL=PATH (one label per picker).",
                        )
                if result.source_id in label_of and label_of[result.source_id] != label:
                    raise PicksError(
                        f"{path} is given twice, as {label_of[result.source_id]!r} and {label!r}"
                    )
                label_of[result.source_id] = label
                role_of[result.source_id] = spec.role
                fill_of[result.source_id] = canonical_name(fill) if fill else None
                source_ids.append(result.source_id)
                n_in += result.n_picks
                for w in result.warnings:
                    file_warnings.setdefault(w, []).append(path)
            # the same warning for many files of a folder is said once
            for w, paths in file_warnings.items():
                where = paths[0] if len(paths) == 1 else f"{len(paths)} files of {spec.given}"
                warnings.append(f"{where}: {w}")
            done.rows.append(
                {
                    "label": spec.label or (label_of[source_ids[0]] if source_ids else None),
                    "given": spec.given,
                    "role": spec.role,
                    "files": len(files),
                    "source_ids": source_ids,
                    "n_picks": n_in,
                }
            )
    if from_store:
        fill = canonical_name(particle) if particle else None
        # A file imported again with other reading options is a new source (m005): for one
        # picker the latest import of a file stands, the earlier ones are not counted twice.
        latest: dict[tuple[str, str, str], dict] = {}
        for src in sorted(store.sources(), key=lambda r: r["id"]):
            if src["role"] == "picker":
                key = (src["picker"], src["sha256"], src["identity"].split("|", 1)[0])
                if key in latest:
                    warnings.append(
                        f"source #{latest[key]['id']} ({Path(src['path']).name}) is superseded "
                        f"by source #{src['id']}, the same file imported again for "
                        f"{src['picker']} with other options"
                    )
                latest[key] = src
        for src in latest.values():
            label_of[src["id"]], role_of[src["id"]] = src["picker"], "picker"
            fill_of[src["id"]] = fill
        done.rows.extend(_stored_picker_rows(store, label_of, role_of))
    return done


def _references(store: Store, tomograms: list[str], label_of: Mapping[int, str]) -> pd.DataFrame:
    """Trusted reference picks (roles positive/negative) in the run's tomograms."""
    refs = store.picks(
        roles=("positive", "negative"), columns=["tomogram", "particle", "x", "y", "z"]
    )
    refs = refs[refs["tomogram"].isin(tomograms)].reset_index(drop=True)
    if len(refs):
        refs["picker"] = [
            label_of.get(int(s), p) for s, p in zip(refs["source_id"], refs["picker"], strict=True)
        ]
        refs["particle"] = refs["particle"].astype(object).where(refs["particle"].notna(), None)
    return refs


def _stored_picker_rows(
    store: Store, label_of: Mapping[int, str], role_of: Mapping[int, str]
) -> list[dict]:
    by_label: dict[str, list[dict]] = {}
    for src in store.sources():
        if role_of.get(src["id"]) == "picker":
            by_label.setdefault(label_of[src["id"]], []).append(src)
    return [
        {
            "label": label,
            "given": "store",
            "role": "picker",
            "files": len(srcs),
            "source_ids": [s["id"] for s in srcs],
            "n_picks": sum(s["n_picks"] or 0 for s in srcs),
        }
        for label, srcs in sorted(by_label.items())
    ]


def _stored_reference_rows(references: pd.DataFrame, given: set[int]) -> list[dict]:
    if references.empty:
        return []
    rows = []
    for (source_id, label, role), group in references.groupby(
        ["source_id", "picker", "role"], sort=True
    ):
        if int(source_id) not in given:
            rows.append(
                {
                    "label": label,
                    "given": f"store source #{source_id}",
                    "role": role,
                    "files": 1,
                    "source_ids": [int(source_id)],
                    "n_picks": len(group),
                }
            )
    return rows
