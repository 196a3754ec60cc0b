"""``picks pickers RUN``: how reliable each picker looks, estimated without ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from picks.cli.common import DbOption, JsonOption, echo_json, echo_table, open_store
from picks.core.defaults import DEFAULT_DB

DB_DEFAULT = Path(DEFAULT_DB)


def register(app: typer.Typer) -> None:
    app.command("pickers")(pickers_cmd)


def pickers_cmd(
    run: Annotated[
        int | None,
        typer.Argument(metavar="RUN", help="Aggregate run id (default: the latest that has them)."),
    ] = None,
    db: DbOption = DB_DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Per picker and class: estimated precision and recall (latent-class model, no truth
    needed), and per class the acceptance threshold with its expected precision, recall
    and F-beta."""
    from picks.core.errors import NotFound

    with open_store(db, must_exist=True) as store:
        if run is None:
            run = store.latest_run_with_estimates()
            if run is None:
                raise NotFound(
                    "no run has picker estimates",
                    hint="Run picks aggregate (the default method estimates them).",
                )
        objective = _objective(store.get_run(run))
        pickers, classes = store.estimates(run)
    if pickers.empty and classes.empty:
        raise NotFound(
            f"run {run} has no picker estimates (it did not use the latent-class model)",
            hint="'picks runs' lists runs; aggregate with --method latent (the default).",
        )
    if json_out:
        echo_json(
            {
                "run_id": run,
                "objective": objective,
                "pickers": _records(pickers),
                "classes": _records(classes),
            }
        )
        return
    echo_table(
        _records(pickers),
        ["picker", "particle", "n_reported", "precision", "recall", "false_rate"],
        title=f"run {run}: picker reliability estimated from agreement (no ground truth)",
    )
    if not classes.empty:
        typer.echo("")
        echo_table(
            _records(classes),
            [
                "particle",
                "beta",
                "threshold",
                "n_candidates",
                "n_accepted",
                "expected_particles",
                "expected_precision",
                "expected_recall",
                "expected_fbeta",
            ],
            title=f"decision per class (objective: {objective}): the posterior threshold and "
            "what it is expected to give",
        )


def _objective(run: dict) -> str | None:
    """The run's decision objective (runs before ``--objective`` stored only their beta)."""
    import json

    params = json.loads(run.get("params") or "{}")
    if params.get("objective"):
        return str(params["objective"])
    return f"f{float(params['beta']):g}" if params.get("beta") is not None else None


def _records(frame) -> list[dict]:
    from picks.core.jsonable import json_records

    return json_records(frame)
