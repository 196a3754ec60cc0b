"""``picks aggregate`` as a library function: import → cluster → vote → noise → (CNN) → write.

:func:`aggregate` runs everything inside one recorded run (command, every parameter, the
package version and the seed). Every input pick becomes a member of exactly one consensus
pick; every decision (status, acceptance and its reason) and every written file (with the
consensus ids it holds) is stored, so ``picks audit`` can answer for any output row.

Determinism: picker labels come from the user, and consensus ids are assigned in the
canonical order (tomogram, class, x, y, z) of the consensus picks, so the same inputs and
seed give identical ids, positions and output files whatever the order of inputs or rows.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from picks.consensus import noise as noise_mod
from picks.consensus.cluster import (
    DEFAULT_MATCH_FRACTION,
    ClusterOptions,
    Clusters,
    cluster,
    resolve_radii,
)
from picks.consensus.vote import (
    apply_references,
    match_references,
    parse_min_support,
    partition,
    support_rules,
)
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.core.files import sha256_file
from picks.core.particles import Catalog, canonical_name
from picks.core.progress import now
from picks.core.store import Store
from picks.workflows import noise as noise_workflow

DEFAULT_FORMATS = ("relion5", "box")
METHODS = ("auto", "vote", "latent", "cnn")
# Output format aliases -> adapter names (the first one registered wins). "box" is crYOLO's
# 3D CBOX: the box format tomography pickers read; EMAN .box is the fallback.
FORMAT_ALIASES: dict[str, tuple[str, ...]] = {
    "box": ("cryolo-cbox", "eman-box"),
    "cbox": ("cryolo-cbox",),
    "csv": ("czii-csv",),
    "czii": ("czii-csv",),
    "star": ("relion5",),
}
INPUT_KEYS = ("adapter", "binning", "voxel_size", "particle", "tomogram", "role")
SUMMARY_FILE = "summary.json"
CANDIDATES_FILE = "candidates.csv"

Progress = Callable[..., contextlib.AbstractContextManager[Callable[..., None]]]


@contextlib.contextmanager
def null_progress(description: str = "", total: int | None = None) -> Iterator[Callable[..., None]]:
    """The progress protocol without output: ``with progress(desc, total) as advance``."""
    yield lambda n=1, **kw: None


# -- inputs ------------------------------------------------------------------------------
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
                f"--input-option {value!r}: expected LABEL:KEY=VALUE, e.g. cryolo:binning=4"
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
            raise PicksError(f"--weights {value!r}: expected LABEL=WEIGHT with WEIGHT ≥ 0")
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


def resolve_formats(formats: Iterable[str], registry) -> list[tuple[str, Any]]:
    """(format name, writer adapter) for each requested format (comma lists allowed)."""
    names: list[str] = []
    for item in formats:
        names.extend(part.strip() for part in str(item).split(",") if part.strip())
    known = set(registry.names())
    chosen: list[tuple[str, Any]] = []
    for name in dict.fromkeys(names):
        targets = FORMAT_ALIASES.get(name, ()) if name not in known else (name,)
        target = next((t for t in targets if t in known), None)
        if target is None:
            writers = ", ".join(sorted(registry.writers()))
            raise PicksError(
                f"--format {name!r}: no such writer (known: {writers}; aliases: {', '.join(FORMAT_ALIASES)})"
            )
        adapter = registry.get(target)
        if not adapter.can_write:
            raise PicksError(f"--format {name!r}: adapter {target} cannot write")
        if all(adapter.name != a.name for _, a in chosen):
            chosen.append((target, adapter))
    if not chosen:
        raise PicksError("no output format given")
    return chosen


# -- result ------------------------------------------------------------------------------
@dataclass
class AggregateResult:
    run_id: int
    method: str
    out: Path
    pickers: list[str]
    n_picks: int
    n_consensus: int
    n_accepted: int
    status_counts: dict[str, int]
    consensus_ids: tuple[int, int] | None
    summary: list[dict]
    inputs: list[dict]
    references: list[dict]
    outputs: list[dict]
    noise: list[dict]
    warnings: list[str]
    params: dict
    stats: dict
    cnn: Any = None
    latent: dict | None = None

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "method": self.method,
            "out": str(self.out),
            "pickers": self.pickers,
            "n_picks": self.n_picks,
            "n_consensus": self.n_consensus,
            "n_accepted": self.n_accepted,
            "status_counts": self.status_counts,
            "consensus_ids": list(self.consensus_ids) if self.consensus_ids else None,
            "summary": self.summary,
            "inputs": self.inputs,
            "references": self.references,
            "outputs": self.outputs,
            "noise": self.noise,
            "warnings": self.warnings,
            "params": self.params,
            "stats": self.stats,
            "cnn": self.cnn,
            **({"latent": self.latent} if self.latent is not None else {}),
        }


def compact_ranges(ids: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3,7,9-10"`` (read back by ``core.audit._in_ranges``)."""
    values = np.unique(np.asarray(list(ids), dtype=np.int64))
    if len(values) == 0:
        return ""
    breaks = np.flatnonzero(np.diff(values) != 1)
    starts = np.r_[values[0], values[breaks + 1]]
    ends = np.r_[values[breaks], values[-1]]
    return ",".join(
        f"{a}" if a == b else f"{a}-{b}"
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    )


# -- the pipeline ------------------------------------------------------------------------
def aggregate(
    store: Store,
    inputs: Sequence[str | Path | tuple[str, str | Path] | InputSpec],
    *,
    out: str | Path,
    tomograms: Sequence[str | Path] = (),
    formats: Sequence[str] = DEFAULT_FORMATS,
    method: str = "auto",
    min_support: float | str | None = None,
    doubtful_support: int = 2,
    match_fraction: float = DEFAULT_MATCH_FRACTION,
    match_distance: float | None = None,
    representative: str = "centroid",
    class_agnostic: bool = False,
    particle: str | None = None,
    radii: Mapping[str, float] | None = None,
    box_size: float | None = None,
    weights: Mapping[str, float] | Iterable[str] | None = None,
    positives: Sequence[str | Path] = (),
    negatives: Sequence[str | Path] = (),
    input_options: Mapping[str, Mapping[str, str]] | Iterable[str] | None = None,
    noise_ratio: float = noise_mod.DEFAULT_NOISE_RATIO,
    noise_evasion: float | None = None,
    noise_half_box: float | None = None,
    voxel_size: float | None = None,
    seed: int = 0,
    cnn_options: Mapping[str, Any] | None = None,
    beta: float = 4.0,
    picker_scores: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    registry=None,
) -> AggregateResult:
    """Aggregate picker outputs into one consensus set (see the module docstring).

    ``inputs`` are ``[LABEL=]PATH`` (file or folder); ``input_options`` maps a label (or the
    input as given) to options ``adapter, binning, voxel_size, particle, tomogram, role`` and
    adapter options. ``positives``/``negatives`` are trusted reference files. ``tomograms``
    are volumes to register. With volumes (given now, or registered before with files that
    exist), noise is sampled and ``method="auto"`` means the CNN.
    """
    from picks.core.tomograms import find_volumes, read_tomogram
    from picks.plugins.manager import get_registry

    progress = progress or null_progress
    registry = registry or get_registry()
    out = Path(out)
    warnings: list[str] = []
    if method not in METHODS:
        raise PicksError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    if not (isinstance(beta, int | float) and np.isfinite(beta) and beta > 0):
        raise PicksError(f"beta {beta!r}: expected a number > 0 (4 for the CZII metric)")
    min_rule = parse_min_support(min_support)
    weights_map = parse_weights(weights or {})
    options_map = (
        {k: dict(v) for k, v in input_options.items()}
        if isinstance(input_options, Mapping)
        else parse_input_options(input_options or [])
    )
    ClusterOptions(
        match_fraction=match_fraction,
        match_distance=match_distance,
        representative=representative,
        class_agnostic=class_agnostic,
        weights=weights_map,
    ).check()
    writers = resolve_formats(formats, registry)
    from picks.workflows.outputs import remove_unfinished_outputs

    cleaned = remove_unfinished_outputs(store, out)
    if cleaned:
        warnings.append(
            f"removed {len(cleaned)} file(s) under {out} left by an unfinished run "
            f"(e.g. {cleaned[0]})"
        )
    _check_outputs(out, writers, force)

    specs = [parse_input(v) for v in inputs]
    for role, files in (("positive", positives), ("negative", negatives)):
        for value in files:
            spec = parse_input(value)
            spec.options.setdefault("role", role)
            # an unlabelled reference file is named after itself ("beads.csv" -> "beads")
            spec.label = spec.label or spec.path.stem
            specs.append(spec)
    from_store = not any(s.role == "picker" for s in specs)
    if from_store and not any(src["role"] == "picker" for src in store.sources()):
        raise PicksError(
            "no picker inputs given and none imported",
            hint="picks aggregate LABEL=PATH ... --out DIR",
        )
    used_options: set[str] = set()
    for spec in specs:
        for key in (spec.label, spec.given, str(spec.path)):
            if key and key in options_map:
                spec.options = {**spec.options, **options_map[key]}
                used_options.add(key)
                break
        if spec.role not in ("picker", "positive", "negative"):
            raise PicksError(
                f"input {spec.given}: role {spec.role!r}: expected picker, positive or negative"
            )
    unused = sorted(set(options_map) - used_options)
    if unused:
        raise PicksError(
            f"--input-option for {', '.join(map(repr, unused))}, which names no input",
            hint="Use the input's LABEL (LABEL=PATH) or the path as given.",
        )

    # Tomograms first: adapters resolve names and voxel sizes against them.
    volumes = find_volumes(tomograms) if tomograms else []
    if volumes:
        store.add_tomograms([read_tomogram(p, voxel_size=voxel_size) for p in volumes])
    have_volumes = bool(volumes) or any(
        t.path and t.shape and Path(t.path).exists() for t in store.tomograms()
    )
    resolved_method = _resolve_method(method, have_volumes, warnings)
    if resolved_method == "vote" and cnn_options:
        warnings.append(
            f"CNN options ({', '.join(sorted(cnn_options))}) ignored: this run decides by voting"
            + ("" if have_volumes else " (no --tomograms)")
        )

    params = {
        "inputs": [s.given or str(s.path) for s in specs if s.role == "picker"],
        "inputs_from_store": from_store,
        "positives": [s.given or str(s.path) for s in specs if s.role == "positive"],
        "negatives": [s.given or str(s.path) for s in specs if s.role == "negative"],
        "input_options": options_map,
        "tomograms": [str(p) for p in volumes],
        "out": str(out),
        "formats": [name for name, _ in writers],
        "method": method,
        "min_support": min_support,
        "doubtful_support": doubtful_support,
        "match_fraction": match_fraction,
        "match_distance": match_distance,
        "representative": representative,
        "class_agnostic": class_agnostic,
        "particle": particle,
        "radii": dict(radii or {}),
        "box_size": box_size,
        "weights": weights_map,
        "noise_ratio": noise_ratio,
        "noise_evasion": noise_evasion,
        "noise_half_box": noise_half_box,
        "voxel_size": voxel_size,
        "seed": seed,
        "cnn_options": dict(cnn_options or {}),
        "force": force,
    }
    if resolved_method == "latent":
        params["beta"] = float(beta)
        params["picker_scores"] = bool(picker_scores)
    with store.run("aggregate", params, method=resolved_method, seed=seed) as run_id:
        # -- import -------------------------------------------------------------------
        imported = _import_inputs(
            store,
            registry,
            specs,
            run_id=run_id,
            particle=particle,
            voxel_size=voxel_size,
            from_store=from_store,
            progress=progress,
            warnings=warnings,
        )
        label_of, role_of, fill_of = imported.label_of, imported.role_of, imported.fill_of
        input_rows = imported.rows
        picker_sources = sorted(s for s, r in role_of.items() if r == "picker")
        picks = store.picks(
            source_ids=picker_sources,
            roles=("picker",),
            columns=["tomogram", "particle", "x", "y", "z", "score", "rot", "tilt", "psi"],
        )
        if picks.empty:
            raise PicksError("the inputs hold no picks")
        picks["picker"] = picks["source_id"].map(label_of)
        fill_values = picks["source_id"].map(fill_of)
        missing = picks["particle"].isna() & fill_values.notna()
        if missing.any():
            picks.loc[missing, "particle"] = fill_values[missing]
        picks["particle"] = picks["particle"].astype(object).where(picks["particle"].notna(), None)
        pickers = sorted(set(picks["picker"]))
        if formats is DEFAULT_FORMATS:
            writers = _default_writers(
                writers, store, sorted(set(picks["tomogram"])), registry, warnings
            )
            params["formats"] = [name for name, _ in writers]
        unknown_weights = sorted(set(weights_map) - set(pickers))
        if unknown_weights:
            raise PicksError(
                f"--weights for {', '.join(unknown_weights)}: no such picker (pickers: {', '.join(pickers)})"
            )

        catalog = Catalog().with_radii(dict(radii or {}))
        radius_map = resolve_radii(list(picks["particle"]), catalog, box_size=box_size)
        options = ClusterOptions(
            match_fraction=match_fraction,
            match_distance=match_distance,
            representative=representative,
            class_agnostic=class_agnostic,
            weights=weights_map,
        )

        # -- cluster and vote ---------------------------------------------------------
        with progress("cluster", total=1) as advance:
            clusters = cluster(picks, radius_map, options)
            advance(1)
        rules = support_rules(
            picks, weights=weights_map, min_support=min_rule, class_agnostic=class_agnostic
        )
        votes = partition(
            clusters.consensus,
            rules,
            doubtful_support=doubtful_support,
            class_agnostic=class_agnostic,
        )
        tomo_names = sorted(set(picks["tomogram"]))
        references = _references(store, tomo_names, label_of)
        matches, unmatched = match_references(
            clusters.consensus, references, class_agnostic=class_agnostic
        )
        votes = apply_references(votes, matches)
        latent = None
        if resolved_method == "latent":
            from picks.consensus.latent import decide_latent

            with progress("decide", total=1) as advance:
                latent = decide_latent(
                    clusters,
                    picks,
                    votes,
                    beta=beta,
                    class_agnostic=class_agnostic,
                    picker_scores=picker_scores,
                    seed=seed,
                )
                advance(1)
            votes = latent.votes
            warnings.extend(f"latent-class model: {w}" for w in latent.warnings)
        table, members = _final_tables(
            clusters, votes, references, unmatched, radius_map, match_fraction, match_distance
        )
        first_id = store.add_consensus(run_id, table, members)
        if latent is not None:
            store.set_estimates(run_id, latent.pickers, latent.classes)
        table["id"] = np.arange(first_id, first_id + len(table))

        # -- noise ----------------------------------------------------------------------
        noise_rows: list[dict] = []
        if have_volumes and noise_ratio > 0:
            sampled = noise_workflow.noise_for_run(
                store,
                run_id,
                radius_map,
                ratio=noise_ratio,
                evasion=noise_evasion,
                half_box=noise_half_box,
                seed=seed,
                replace=True,
            )
            noise_rows = sampled.as_rows()
            warnings.extend(sampled.warnings)

        # -- CNN rescoring ----------------------------------------------------------------
        cnn_result = None
        if resolved_method == "cnn":
            from picks.workflows.rescore import rescore_run

            cnn_catalog = catalog.with_radii({k: v for k, v in radius_map.items() if k is not None})
            try:
                cnn_result = rescore_run(
                    store,
                    run_id,
                    tomograms=store.tomograms(),
                    catalog=cnn_catalog,
                    seed=seed,
                    models_dir=out / "models",
                    progress=progress,
                    **dict(cnn_options or {}),
                )
            except PicksError as exc:
                if method != "auto" or cnn_options:
                    raise  # a CNN asked for (--method cnn, --model, --device ...) must not fall back
                # "auto" means the best method that works here: keep the vote, say why.
                warnings.append(f"CNN rescoring failed ({exc}); the voting decisions stand")
                resolved_method = "vote"
                store.update_run(run_id, method="vote")
            else:
                warnings.extend(f"CNN: {w}" for w in cnn_result.get("warnings", []))

        # -- outputs ----------------------------------------------------------------------
        final = store.consensus(run_id)
        outputs = _write_outputs(
            store,
            run_id,
            final,
            writers,
            out,
            force=force,
            progress=progress,
            voxel_size=voxel_size,
        )
        outputs.append(_write_candidates(store, run_id, final, out))
        if force:
            stale = _remove_stale_outputs(store, run_id, writers, out, outputs)
            if stale:
                warnings.append(
                    f"--force: removed {len(stale)} file(s) an earlier run had written under "
                    f"{out} that this run no longer writes (e.g. {stale[0]})"
                )
        summary = _summary(picks, final, pickers, class_agnostic)
        accepted = final["accepted"].astype(bool)
        result = AggregateResult(
            run_id=run_id,
            method=resolved_method,
            out=out,
            pickers=pickers,
            n_picks=len(picks),
            n_consensus=len(final),
            n_accepted=int(accepted.sum()),
            status_counts={
                str(k): int(v) for k, v in final["status"].value_counts().sort_index().items()
            },
            consensus_ids=(int(final["id"].min()), int(final["id"].max())) if len(final) else None,
            summary=summary,
            inputs=[r for r in input_rows if r["role"] == "picker"],
            references=[r for r in input_rows if r["role"] != "picker"]
            + _stored_reference_rows(references, set(label_of)),
            outputs=outputs,
            noise=noise_rows,
            warnings=warnings,
            params=params,
            stats={
                **clusters.stats,
                "support_rules": {str(k): r.as_dict() for k, r in rules.items()},
            },
            cnn=cnn_result if _jsonable(cnn_result) else repr(cnn_result),
            latent=latent.summary() if latent is not None else None,
        )
        # Complete the run's parameters with what was resolved (sources, labels, rules).
        resolved = {
            **params,
            "resolved": {
                "sources": {
                    str(s): {"label": label_of[s], "role": role_of[s]} for s in sorted(label_of)
                },
                "reference_sources": sorted({int(s) for s in references["source_id"]})
                if len(references)
                else [],
                "radii": {str(k): v for k, v in radius_map.items()},
                "support_rules": result.stats["support_rules"],
                "method": resolved_method,
            },
        }
        store.update_run(run_id, params=json.dumps(resolved, sort_keys=True, default=str))
        _write_summary(out, result, force)
    return result


@dataclass
class _Imported:
    """What the inputs resolved to: per source id its label, role and class fill value."""

    label_of: dict[int, str] = field(default_factory=dict)
    role_of: dict[int, str] = field(default_factory=dict)
    fill_of: dict[int, str | None] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)


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
) -> _Imported:
    """Import every input (a no-op for files already stored) and resolve the labels.

    Without picker inputs (``from_store``) every picker source in the store is used, with
    its stored label.
    """
    from picks.workflows.importing import expand_inputs, import_file

    done = _Imported()
    label_of, role_of, fill_of = done.label_of, done.role_of, done.fill_of
    planned = [
        (spec, expand_inputs([spec.path], registry, spec.options.get("adapter", "auto")))
        for spec in specs
    ]
    default_owner: dict[str, str] = {}
    with progress("import", total=sum(len(files) for _, files in planned)) as advance:
        for spec, files in planned:
            adapter_opts = {k: v for k, v in spec.options.items() if k not in INPUT_KEYS}
            fill = spec.options.get("particle") or particle
            source_ids = []
            n_in = 0
            file_warnings: dict[str, list[Path]] = {}
            for path in files:
                result = import_file(
                    store,
                    path,
                    registry,
                    adapter=spec.options.get("adapter", "auto"),
                    picker=spec.label,
                    role=spec.role,
                    voxel_size=_float_option(spec, "voxel_size") or voxel_size,
                    binning=_float_option(spec, "binning") or 1.0,
                    particle=fill,
                    tomogram=spec.options.get("tomogram"),
                    options=adapter_opts,
                    run_id=run_id,
                )
                advance(1)
                source = store.get_source(result.source_id)
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


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _resolve_method(method: str, have_tomograms: bool, warnings: list[str]) -> str:
    if method == "latent":
        return "latent"
    if method == "vote" or (method == "auto" and not have_tomograms):
        return "vote"
    try:
        from picks.workflows.rescore import rescore_run  # noqa: F401
    except ImportError as exc:
        if method == "cnn":
            raise PicksError(
                f"the CNN method is not available ({exc})", hint="Use --method vote."
            ) from None
        warnings.append(f"CNN rescoring is not available ({exc}); voting instead")
        return "vote"
    if method == "cnn" and not have_tomograms:
        raise PicksError("--method cnn needs the tomograms", hint="Give --tomograms PATH.")
    return "cnn"


def _default_writers(
    writers: list[tuple[str, Any]],
    store: Store,
    tomograms: list[str],
    registry,
    warnings: list[str],
) -> list[tuple[str, Any]]:
    """The default formats (RELION 5, box) need each tomogram's voxel size and size; without
    them, write the CZII CSV (Å) instead of failing after all the work."""
    known = store.tomograms()
    missing = [
        t for t in tomograms if (k := known.get(t)) is None or not k.voxel_size or k.shape is None
    ]
    if not missing:
        return writers
    warnings.append(
        f"tomogram(s) {', '.join(missing[:5])} not registered (no voxel size/size): writing "
        "czii-csv (Å) instead of the default relion5 and box; give --tomograms (or --format)"
    )
    return resolve_formats(["csv"], registry)


def _check_outputs(out: Path, writers: list[tuple[str, Any]], force: bool) -> None:
    if force or not out.exists():
        return
    clashes = [
        out / name for name, _ in writers if (out / name).exists() and any((out / name).iterdir())
    ]
    clashes += [out / f for f in (SUMMARY_FILE, CANDIDATES_FILE) if (out / f).exists()]
    if clashes:
        raise PicksError(
            f"{', '.join(map(str, clashes))} exist(s)",
            hint="Use --force to replace, or another --out.",
        )


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


def _final_tables(
    clusters: Clusters,
    votes: pd.DataFrame,
    references: pd.DataFrame,
    unmatched: np.ndarray,
    radius_map: Mapping[object, float],
    match_fraction: float,
    match_distance: float | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Consensus rows (with decisions) and member rows, reference-only picks included,
    in the canonical order that ids follow."""
    table = clusters.consensus.copy()
    for column in ("status", "vote_score", "accepted", "reason", "forced"):
        table[column] = votes[column].to_numpy() if len(votes) else pd.Series(dtype=object)
    # What a later decision stage (the latent-class model) added to the vote.
    for column in ("posterior", "score", "decided_by", "vote_reason"):
        if column in votes:
            table[column] = votes[column].to_numpy()
    table["kind"] = 0
    members = clusters.members.copy()
    members["row"] = members["consensus"]
    if len(unmatched):
        refs = references.set_index("id").loc[unmatched].reset_index()
        largest = max(radius_map.values()) if radius_map else 0.0
        radius = [radius_map.get(p, largest) for p in refs["particle"]]
        extra = pd.DataFrame(
            {
                "tomogram": refs["tomogram"].astype(str),
                "particle": refs["particle"],
                "x": refs["x"],
                "y": refs["y"],
                "z": refs["z"],
                "support": 0.0,
                "n_pickers": 0,
                "n_members": 1,
                "pickers": "",
                "member_score": np.nan,
                "match_distance": [
                    match_distance if match_distance is not None else match_fraction * r
                    for r in radius
                ],
                "rot": np.nan,
                "tilt": np.nan,
                "psi": np.nan,
                "status": "reference",
                "vote_score": 0.0,
                "accepted": True,
                "reason": [
                    f"positive reference pick #{i} ({label}); no picker found it"
                    for i, label in zip(refs["id"], refs["picker"], strict=True)
                ],
                "forced": True,
                "kind": 1,
            }
        )
        start = len(table)
        table = pd.concat([table, extra], ignore_index=True)
        members = pd.concat(
            [
                members,
                pd.DataFrame(
                    {
                        "row": np.arange(start, start + len(extra)),
                        "pick_id": refs["id"].to_numpy(),
                        "picker": refs["picker"].to_numpy(),
                        "distance": 0.0,
                        "duplicate_of": pd.array([None] * len(extra), dtype="Int64"),
                        "primary": True,
                    }
                ),
            ],
            ignore_index=True,
        )
    # Reference-only rows were decided by their reference, before any later stage.
    if "decided_by" in table:
        table["decided_by"] = table["decided_by"].fillna("reference")
    if "vote_reason" in table:
        table["vote_reason"] = table["vote_reason"].fillna(table["reason"])
    if "score" in table:
        table["score"] = table["score"].astype(float).fillna(table["vote_score"].astype(float))
    pkey = table["particle"].map(
        lambda p: "" if p is None or (isinstance(p, float) and np.isnan(p)) else str(p)
    )
    order = np.lexsort(
        (
            table["kind"].to_numpy(),
            table["z"].to_numpy(float),
            table["y"].to_numpy(float),
            table["x"].to_numpy(float),
            pd.factorize(pkey, sort=True)[0],
            pd.factorize(table["tomogram"].astype(str), sort=True)[0],
        )
    )
    position = np.empty(len(table), dtype=np.int64)
    position[order] = np.arange(len(table))
    table = table.iloc[order].reset_index(drop=True)
    members["row"] = position[members["row"].to_numpy(dtype=np.int64)]
    members = members.sort_values(["row", "pick_id"], kind="stable").reset_index(drop=True)
    return table, members


def output_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Canonical picks for writers, plus ``consensus_id``, ``support``, ``status``."""
    angles = rows[["rot", "tilt", "psi"]].to_numpy(dtype=float)
    has_angles = np.isfinite(angles).all(axis=1)
    frame = canonical.make(
        {
            "tomogram": rows["tomogram"].astype(str).to_numpy(),
            "particle": rows["particle"].to_numpy(dtype=object),
            "x": rows["x"].to_numpy(dtype=float),
            "y": rows["y"].to_numpy(dtype=float),
            "z": rows["z"].to_numpy(dtype=float),
            "score": rows["score"].to_numpy(dtype=float),
            "rot": angles[:, 0],
            "tilt": angles[:, 1],
            "psi": angles[:, 2],
            "angle_convention": np.where(has_angles, "relion-zyz", None),
            "record": rows["id"].to_numpy(dtype=np.int64),
            "original": "",
        },
        score_field="consensus_score",
    )
    frame["consensus_id"] = rows["id"].to_numpy(dtype=np.int64)
    frame["support"] = rows["support"].to_numpy(dtype=float)
    frame["status"] = rows["status"].astype(str).to_numpy()
    return frame


def _write_outputs(
    store: Store,
    run_id: int,
    final: pd.DataFrame,
    writers: list[tuple[str, Any]],
    out: Path,
    *,
    force: bool,
    progress: Progress,
    voxel_size: float | None = None,
) -> list[dict]:
    """Accepted picks, one set per class and format; every file recorded in ``exports``.

    Voxel formats take each tomogram's registered voxel size; with no tomogram registered,
    ``voxel_size`` (the run's ``--voxel-size``)."""
    from picks.plugins.adapter import WriteContext
    from picks.workflows.outputs import (
        PlannedFile,
        check_plan,
        plan_files,
        planned_files,
        safe_name,
        write_picks,
    )

    accepted = final[final["accepted"].astype(bool)].sort_values("id", kind="stable")
    frame = output_frame(accepted)
    keyed = frame["particle"].map(lambda p: "unclassified" if p is None else str(p))
    tomos = store.tomograms()
    jobs: list[tuple[str, Any, Path, pd.DataFrame, str]] = []
    for name, adapter in writers:
        if adapter.layout == "directory":
            jobs.append((name, adapter, out / name, frame, "*"))
            continue
        for cls in sorted(set(keyed)):
            subset = frame[keyed == cls].reset_index(drop=True)
            base = out / name / safe_name(cls)
            target = (
                base.with_name(base.name + adapter.extension) if adapter.layout == "file" else base
            )
            jobs.append((name, adapter, target, subset, cls))
    # Every file (companions included) is planned before the first is written: two classes
    # whose file-safe names agree are an error now, not a half-written or overwritten set.
    plan = [PlannedFile(out / f, "aggregate", (f,)) for f in (SUMMARY_FILE, CANDIDATES_FILE)]
    for name, adapter, target, subset, cls in jobs:
        if not subset.empty:
            plan += plan_files(subset, adapter, target, name, (cls,), {})[1]
    check_plan(plan)
    rows: list[dict] = []
    with progress("write", total=len(jobs)) as advance:
        for name, adapter, target, subset, cls in jobs:
            if subset.empty:
                advance(1)
                continue
            ctx = WriteContext(tomograms=tomos, voxel_size=None if len(tomos) else voxel_size)
            groups = planned_files(subset, adapter, target) if adapter.layout != "directory" else {}
            written = write_picks(subset, adapter, target, ctx, force=force)
            for path in written:
                path = Path(path)
                if not path.is_file():
                    continue
                held = groups[path] if path in groups else _directory_rows(subset, path)
                # recorded as soon as written: a killed run's files are known (and removed later)
                _record_exports(store, [_export_row(run_id, path, name, held["consensus_id"])])
                rows.append(
                    {
                        "format": name,
                        "particle": None if cls == "*" else cls,
                        "path": str(path),
                        "n_rows": len(held),
                    }
                )
            advance(1)
    return rows


def _export_row(run_id: int, path: Path, fmt: str, consensus_ids: pd.Series) -> tuple:
    """One ``exports`` row: the file, its hash, and the consensus picks it holds."""
    ids = consensus_ids.to_numpy(dtype=np.int64)
    return (
        run_id,
        str(path.resolve()),
        fmt,
        sha256_file(path),
        len(ids),
        compact_ranges(ids),
        now(),
    )


def _record_exports(store: Store, rows: list[tuple]) -> None:
    store.add_exports(rows)


def _remove_stale_outputs(
    store: Store, run_id: int, writers: list[tuple[str, Any]], out: Path, outputs: list[dict]
) -> list[str]:
    """With ``--force``, files that earlier runs exported into this run's format folders and
    that this run did not write again (a class with no accepted pick now): removed, so a
    folder never mixes two runs. Only files the store recorded, and only while unchanged
    since (same sha256); anything else in the folders is left alone."""
    roots = [str((out / name).resolve()) + os.sep for name, _ in writers]
    written = {str(Path(row["path"]).resolve()) for row in outputs}
    previous = store.exports_of_other_runs(run_id)
    removed = []
    for path, sha256 in previous:
        if path in written or not any(path.startswith(root) for root in roots):
            continue
        file = Path(path)
        if file.is_file() and sha256_file(file) == sha256:
            file.unlink()
            removed.append(path)
    return sorted(removed)


def _directory_rows(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows a file of a directory-layout writer (copick) holds, judged by the tomogram (a
    folder or the file name) and the class (the end of the file name) in its path; all rows
    when its path names neither."""
    from picks.core.files import safe_name

    parts = set(path.parts[:-1]) | {path.stem}
    stem = path.stem

    def suffix(p: object) -> int:  # length of the class name the file name ends with, or 0
        names = {str(p), safe_name(str(p))}
        hits = [len(n) for n in names if stem == n or stem.endswith(("_" + n, "-" + n))]
        return max(hits, default=0)

    tomo_hit = frame["tomogram"].map(lambda t: str(t) in parts or safe_name(str(t)) in parts)
    # the longest class name that ends the file name: "…_apo-ferritin" is not "ferritin"
    length = frame["particle"].map(lambda p: 0 if p is None else suffix(p))
    cls_hit = (length > 0) & (length == length.max())
    if tomo_hit.any() and cls_hit.any():
        return frame[tomo_hit & cls_hit]
    if tomo_hit.any():
        return frame[tomo_hit]
    if cls_hit.any():
        return frame[cls_hit]
    return frame


def _summary(
    picks: pd.DataFrame, final: pd.DataFrame, pickers: list[str], class_agnostic: bool
) -> list[dict]:
    """Per tomogram and class: picks in per picker, consensus picks by status, accepted."""
    key = lambda frame: frame["particle"].map(lambda p: "" if p is None else str(p))  # noqa: E731
    raw = (
        picks.assign(_p=key(picks), _k="in:" + picks["picker"].astype(str))
        .groupby(["tomogram", "_p", "_k"])
        .size()
        .unstack("_k", fill_value=0)
    )
    cons = final.assign(_p=key(final), _acc=final["accepted"].astype(int))
    status = cons.groupby(["tomogram", "_p", "status"]).size().unstack("status", fill_value=0)
    totals = cons.groupby(["tomogram", "_p"]).agg(
        consensus=("id", "size"), accepted=("_acc", "sum")
    )
    table = raw.join(totals, how="outer").join(status, how="outer").fillna(0)
    rows = []
    for (tomo, cls), values in table.sort_index().iterrows():
        row: dict[str, Any] = {"tomogram": tomo, "particle": cls or None}
        for label in pickers:
            row[f"in:{label}"] = int(values.get(f"in:{label}", 0))
        row["consensus"] = int(values.get("consensus", 0))
        for st in ("positive", "doubtful", "negative", "reference"):
            if st in values.index:
                row[st] = int(values[st])
        row["accepted"] = int(values.get("accepted", 0))
        rows.append(row)
    return rows


def candidates_table(store: Store, run_id: int, final: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every consensus pick of a run with its decision: status, support, pickers, vote, CNN
    score, accepted, reason and, when the CNN scored it, the per-class probabilities
    (``p_<class>``, ``p_noise``) and typicality, averaged over the models of the decision."""
    from picks.workflows.rescore import TYPICALITY, scores_table

    final = store.consensus(run_id) if final is None else final
    columns = ["id", "tomogram", "particle", "x", "y", "z", "support", "n_members", "pickers"]
    columns += ["status", "vote_score", "cnn_score", "score", "accepted", "reason"]
    if "posterior" in final and final["posterior"].notna().any():
        # a latent-class run: its posterior and who decided each pick (reference or model)
        columns[columns.index("score") + 1 : columns.index("score") + 1] = ["posterior"]
        columns.insert(columns.index("reason"), "decided_by")
    table = final[columns].rename(columns={"id": "consensus_id"}).copy()
    table["accepted"] = table["accepted"].fillna(0).astype(int)
    scores = scores_table(store, run_id)
    if len(scores):
        per_pick = scores.drop(columns="model_id").groupby("consensus_id").mean()
        models = scores.groupby("consensus_id")["model_id"].apply(
            lambda ids: ",".join(str(int(i)) for i in sorted(set(ids)))
        )
        per_pick = per_pick.rename(
            columns=lambda c: "typicality" if c == TYPICALITY else f"p_{c}"
        ).assign(model_ids=models)
        classes = sorted(c for c in per_pick.columns if c.startswith("p_") and c != "p_noise")
        order = [*classes, "p_noise", "typicality", "model_ids"]
        per_pick = per_pick[[c for c in order if c in per_pick.columns]]
        table = table.merge(per_pick, left_on="consensus_id", right_index=True, how="left")
    return table


def _write_candidates(store: Store, run_id: int, final: pd.DataFrame, out: Path) -> dict:
    """``candidates.csv``: the decision on every candidate, accepted or not (docs/consensus.md)."""
    from picks.core.files import atomic_path

    table = candidates_table(store, run_id, final)
    path = out / CANDIDATES_FILE
    # _check_outputs refused an existing file before the run unless --force.
    with atomic_path(path, force=True) as tmp:  # (creates the folder)
        table.to_csv(tmp, index=False, float_format="%.6g")
    _record_exports(store, [_export_row(run_id, path, "candidates", table["consensus_id"])])
    return {"format": "candidates", "particle": None, "path": str(path), "n_rows": len(table)}


def _write_summary(out: Path, result: AggregateResult, force: bool) -> None:
    from picks.core.files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    # _check_outputs refused an existing summary before the run unless --force.
    with atomic_path(out / SUMMARY_FILE, force=True) as tmp:
        tmp.write_text(json.dumps(result.as_dict(), indent=2, default=str))
