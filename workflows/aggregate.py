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

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from picks.consensus import noise as noise_mod
from picks.consensus.cluster import (
    DEFAULT_MATCH_FRACTION,
    ClusterOptions,
    resolve_radii,
)
from picks.consensus.cnn.options import CnnOptions, as_options
from picks.consensus.vote import (
    apply_references,
    match_references,
    parse_min_support,
    partition,
    support_rules,
)
from picks.core.errors import PicksError
from picks.core.jsonable import is_jsonable
from picks.core.names import mismatch_warning, name_mismatches
from picks.core.particles import Catalog
from picks.core.progress import Progress, null_progress
from picks.core.store import Store
from picks.workflows import noise as noise_workflow

if TYPE_CHECKING:
    from picks.consensus.decide import Objective
from picks.workflows.cnn_latent import LatentRefit
from picks.workflows.export import write_run_outputs
from picks.workflows.forked_report import finish_report, start_report
from picks.workflows.importing import check_stored_extent
from picks.workflows.inputs import (
    InputSpec,
    _import_inputs,
    _references,
    _stored_reference_rows,
    parse_input,
    parse_input_options,
    parse_weights,
)
from picks.workflows.kept import KeptPicks
from picks.workflows.outputs import (
    DEFAULT_FORMATS,
    _check_outputs,
    _default_writers,
    _write_summary,
    resolve_formats,
)
from picks.workflows.parallel import Executor, clear_cache
from picks.workflows.per_tomogram import (
    cluster_on_two_cores,
    cluster_per_tomogram,
    image_statistics,
    read_headers,
)
from picks.workflows.summary import final_tables, summary_rows

METHODS = ("auto", "vote", "latent", "cnn")
# the pick columns the stages read
PICK_COLUMNS = ["tomogram", "particle", "x", "y", "z", "score", "rot", "tilt", "psi", "record"]


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
    cnn: CnnOptions | Mapping[str, Any] | None = None,
    beta: float = 4.0,
    objective: Objective | None = None,
    picker_scores: bool = False,
    temperature: float | None = None,
    image_evidence: bool = False,
    report: bool = True,
    force: bool = False,
    progress: Progress | None = None,
    registry=None,
    executor: Executor | None = None,
) -> AggregateResult:
    """Aggregate picker outputs into one consensus set (see the module docstring).

    ``inputs`` are ``[LABEL=]PATH`` (file or folder); ``input_options`` maps a label (or the
    input as given) to options ``adapter, binning, voxel_size, particle, tomogram, role`` and
    adapter options. ``positives``/``negatives`` are trusted reference files. ``tomograms``
    are volumes to register. With volumes (given now, or registered before with files that
    exist), noise is sampled and the images are evidence of the decision. ``executor``
    (:func:`picks.workflows.parallel.open_executor`) runs the per-tomogram stages (headers,
    clustering, noise, CNN scoring) on Dask workers, with the same results; None: this process.
    ``cnn``: the CNN's options (:class:`~picks.consensus.cnn.options.CnnOptions`; a mapping
    of option names is converted, an unknown name is an error); given, they ask for the CNN
    (``method="auto"`` with volumes becomes ``cnn``). ``objective`` (latent, cnn): what the
    per-class decision optimises
    (:class:`~picks.consensus.decide.Objective`, e.g. ``precision@recall=0.8``); None: the
    expected F-``beta``. Given, it must agree with ``beta`` unless ``beta`` is the default 4.
    ``image_evidence`` (latent, cnn; with volumes): experimental, off by default — the
    candidates' box statistics also become evidence in the latent fit, not only the density
    veto (:func:`picks.consensus.latent.decide_latent`; docs/latent.md "Images as evidence").
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
    objective_given = objective is not None
    if objective is None:
        from picks.consensus.decide import Objective

        objective = Objective.fbeta(beta)
    elif beta != 4.0 and not (objective.kind == "fbeta" and objective.beta == beta):
        raise PicksError(f"beta {beta:g} and objective {objective} disagree: give one of them")
    cnn = as_options(cnn)
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
            f"`input_options` for {', '.join(map(repr, unused))}, which names no input",
            hint="Use the input's LABEL (LABEL=PATH) or the path as given.",
        )

    # Tomograms first: adapters resolve names and voxel sizes against them.
    volumes = find_volumes(tomograms) if tomograms else []
    if volumes:
        store.add_tomograms(
            read_headers(executor, volumes, voxel_size=voxel_size)
            if executor is not None
            else [read_tomogram(p, voxel_size=voxel_size) for p in volumes]
        )
    have_volumes = bool(volumes) or any(
        t.path and t.shape and Path(t.path).exists() for t in store.tomograms()
    )
    resolved_method = _resolve_method(method, have_volumes, warnings, cnn_asked=cnn is not None)
    if resolved_method == "vote" and objective_given:
        warnings.append(f"objective {objective} ignored: this run decides by voting")
    if resolved_method != "cnn" and cnn is not None:
        how = "voting" if resolved_method == "vote" else "the latent-class model"
        asked = ", ".join(cnn.changed())
        warnings.append(
            f"CNN options{f' ({asked})' if asked else ''} ignored: this run decides by {how}"
            + ("" if have_volumes else " (no --tomograms)")
        )
    if resolved_method == "cnn":
        # after the latent-class decision, its posterior chooses the training positives
        cnn = (cnn or CnnOptions()).with_positives("posterior")

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
        "cnn_options": cnn.as_dict() if cnn is not None else {},
        "force": force,
    }
    if resolved_method in ("latent", "cnn"):
        params["beta"] = float(objective.beta)
        params["objective"] = str(objective)
        params["picker_scores"] = bool(picker_scores)
        params["temperature"] = temperature
        if image_evidence:  # experimental (docs/latent.md); absent: earlier runs' params
            params["image_evidence"] = True
    with store.run("aggregate", params, method=resolved_method, seed=seed) as run_id:
        # -- import -------------------------------------------------------------------
        # the picks this run stores are kept as they stream in, not read back (1 M rows)
        kept = KeptPicks(PICK_COLUMNS)
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
            kept=kept,
        )
        label_of, role_of, fill_of = imported.label_of, imported.role_of, imported.fill_of
        input_rows = imported.rows
        picker_sources = sorted(s for s, r in role_of.items() if r == "picker")
        picks = kept.frame(store, picker_sources)
        del kept
        if picks is None:  # some picks were stored before this run
            picks = store.picks(source_ids=picker_sources, roles=("picker",), columns=PICK_COLUMNS)
        if picks.empty:
            raise PicksError("the inputs hold no picks")
        picks["picker"] = picks["source_id"].map(label_of)
        # Picks imported before their tomograms were known were never checked against them.
        check_stored_extent(store, picks)
        fill_values = picks["source_id"].map(fill_of)
        missing = picks["particle"].isna() & fill_values.notna()
        if missing.any():
            picks.loc[missing, "particle"] = fill_values[missing]
        picks["particle"] = picks["particle"].astype(object).where(picks["particle"].notna(), None)
        # distinct values first: no Python iteration over a million picks
        pickers = sorted(picks["picker"].unique())
        tomo_names = sorted(picks["tomogram"].unique())
        names_by_picker = (
            picks[["picker", "tomogram"]]
            .drop_duplicates()
            .groupby("picker")["tomogram"]
            .agg(lambda t: set(t.astype(str)))
        )
        misnamed = mismatch_warning(name_mismatches(names_by_picker.to_dict()))
        if misnamed:
            warnings.append(misnamed)
        if formats is DEFAULT_FORMATS:
            writers = _default_writers(writers, store, tomo_names, registry, warnings)
            params["formats"] = [name for name, _ in writers]
        unknown_weights = sorted(set(weights_map) - set(pickers))
        if unknown_weights:
            raise PicksError(
                f"`weights` for {', '.join(unknown_weights)}: no such picker (pickers: {', '.join(pickers)})"
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
        if executor is not None:
            clusters = cluster_per_tomogram(executor, picks, radius_map, options)
        else:
            with progress("cluster", total=1) as advance:
                # both cores when one is free (half the tomograms in a forked child)
                clusters = cluster_on_two_cores(picks, radius_map, options)
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
        references = _references(store, tomo_names, label_of)
        matches, unmatched = match_references(
            clusters.consensus, references, class_agnostic=class_agnostic
        )
        votes = apply_references(votes, matches)
        latent = refit = None
        if resolved_method in ("latent", "cnn"):  # cnn: the CNN's score refits this model
            from picks.consensus.latent import decide_latent

            images = background = None
            if have_volumes and not class_agnostic:
                # Truth-free image statistics of every candidate against its class's
                # typical particle: what rejects the beads several pickers agree on (half
                # the tomograms' candidates in a forked child when a core is free); and
                # of empty boxes, what rejects the noise peaks pickers report.
                with progress("images", total=1) as advance:
                    images, background = image_statistics(
                        clusters.consensus, store.tomograms(), radius_map, seed=seed
                    )
                    advance(1)
            decide = partial(
                decide_latent,
                clusters,
                picks,
                votes,
                beta=objective,
                class_agnostic=class_agnostic,
                picker_scores=picker_scores,
                images=images,
                image_evidence=image_evidence,
                radii=radius_map,
                background=background,
                seed=seed,
                **({} if temperature is None else {"temperature": temperature}),
            )
            with progress("decide", total=1) as advance:
                latent = decide()
                advance(1)
            if resolved_method == "cnn" and not cnn.combine:
                refit = partial(LatentRefit, lambda extra: decide(extra_features=extra))
            votes = latent.votes
            warnings.extend(f"latent-class model: {w}" for w in latent.warnings)
        table, members, source_rows = final_tables(
            clusters, votes, references, unmatched, radius_map, match_fraction, match_distance
        )
        # What the rest of the run reads: the clusters' statistics, the picks' names (for
        # the summary); the 1 M-row cluster tables and pick coordinates are let go before
        # the insert, the peak of a 2 M-pick run (the CNN's refit still holds them).
        cluster_stats = clusters.stats
        candidates = clusters.consensus.index
        del clusters, votes, matches
        picks = picks[["tomogram", "particle", "picker"]]
        # What the store now holds for the run, from the inserted values (not read back)
        stored = store.add_consensus_frame(run_id, table, members)
        del table, members
        if refit is not None:
            refit = refit(candidates, source_rows)
        del source_rows, candidates

        # -- noise ----------------------------------------------------------------------
        noise_rows: list[dict] = []
        noise = avoid = None  # as stored (noise with its ids), for the CNN's training
        if resolved_method == "cnn" and cnn.reads_run_data:
            avoid = store.avoid_points(run_id)  # read once, for the noise and the CNN
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
                executor=executor,
                avoid=avoid,
            )
            noise = sampled.samples
            noise_rows = sampled.as_rows()
            warnings.extend(sampled.warnings)

        # -- CNN rescoring ----------------------------------------------------------------
        # Only the CNN changes the decisions after the insert; it decides on the table in
        # memory and its decision is stored once, so nothing is read back.
        final = stored
        del stored
        cnn_result = None
        if resolved_method == "cnn":
            from picks.workflows.rescore import rescore_consensus

            # A CNN run is always asked for (`method` cnn, or auto with CNN options): it
            # never falls back to another method silently; its errors stop the run.
            final, cnn_result = rescore_consensus(
                store,
                run_id,
                final,
                cnn,
                noise=noise,
                avoid=avoid,
                tomograms=store.tomograms(),
                catalog=catalog.with_radii({k: v for k, v in radius_map.items() if k is not None}),
                seed=seed,
                models_dir=out / "models",
                progress=progress,
                executor=executor,
                refit=refit,
            )
            warnings.extend(f"CNN: {w}" for w in cnn_result.get("warnings", []))
            if refit is not None and refit.decision is not None:
                latent = refit.decision  # the estimates and summary of the fit that decided
        if latent is not None:  # stored once: after the CNN's refit, if there is one
            store.set_estimates(run_id, latent.pickers, latent.classes)

        # Complete the run's parameters with what was resolved (sources, labels, rules).
        rules_resolved = {str(k): r.as_dict() for k, r in rules.items()}
        resolved = {
            **params,
            "resolved": {
                "sources": {
                    str(s): {"label": label_of[s], "role": role_of[s]} for s in sorted(label_of)
                },
                "reference_sources": sorted({int(s) for s in references["source_id"]}),
                "radii": {str(k): v for k, v in radius_map.items()},
                "support_rules": rules_resolved,
                "method": resolved_method,
            },
        }
        store.update_run(run_id, params=json.dumps(resolved, sort_keys=True, default=str))
        # The store now holds all the report reads: its figures are drawn on the other core
        # while the files are written (published once the run is recorded as finished).
        report_job = (
            start_report(store, run_id, out, final) if report and executor is None else None
        )

        # -- outputs ----------------------------------------------------------------------
        outputs, written_warnings = write_run_outputs(
            store,
            run_id,
            final,
            writers,
            out,
            force=force,
            progress=progress,
            voxel_size=voxel_size,
            radii=radius_map,
        )
        warnings.extend(written_warnings)
        summary = summary_rows(picks, final, pickers, class_agnostic)
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
                **cluster_stats,
                "support_rules": rules_resolved,
            },
            cnn=cnn_result if is_jsonable(cnn_result) else repr(cnn_result),
            latent=latent.summary() if latent is not None else None,
        )
        _write_summary(out, result, force)
    if getattr(executor, "cache_dir", None) is not None:
        clear_cache(executor.cache_dir)  # the run is recorded: its partial results are done with
    if report:
        # After the run is recorded as finished (the report reads it from the store). The
        # sets are written: a problem with the pictures must not fail the run.
        try:
            # ``final`` is what the store holds for the run: not read a third time
            path = finish_report(report_job, store, result.run_id, out, final)
        except PicksError as exc:
            result.warnings.append(f"report not written: {exc}")
        else:
            result.outputs.append(
                {"format": "report", "path": str(path), "n_rows": result.n_consensus}
            )
    return result


def _resolve_method(
    method: str, have_tomograms: bool, warnings: list[str], cnn_asked: bool = False
) -> str:
    """``auto`` is the latent-class decision, with or without tomograms (docs/accuracy.md:
    it beat accepting every candidate on every measured world; the CNN did not). Options
    that only the CNN reads (a model, epochs, a device, ...) ask for the CNN."""
    if method == "auto":
        if not (cnn_asked and have_tomograms):
            return "latent"
        method = "cnn"
    if method in ("latent", "vote"):
        return method
    try:
        from picks.workflows.cnn_decision import decide_cnn  # noqa: F401
    except ImportError as exc:
        raise PicksError(
            f"the CNN method is not available ({exc})", hint="Use `method` latent."
        ) from None
    if not have_tomograms:
        raise PicksError("`method` cnn needs the tomograms", hint="Give `tomograms` PATH.")
    return "cnn"
