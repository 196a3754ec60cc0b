"""The final tables of ``picks aggregate``: consensus rows with their decisions and members in
canonical id order (:func:`final_tables`), and the per tomogram and class summary
(:func:`summary_rows`). Split from :mod:`picks.workflows.aggregate`, which joins the stages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from picks.consensus.cluster import Clusters


def final_tables(
    clusters: Clusters,
    votes: pd.DataFrame,
    references: pd.DataFrame,
    unmatched: np.ndarray,
    radius_map: Mapping[object, float],
    match_fraction: float,
    match_distance: float | None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Consensus rows (with decisions) and member rows, reference-only picks included,
    in the canonical order that ids follow, and for each row its row in ``clusters.consensus``
    (≥ its length: a reference-only row)."""
    # Shallow copies (copy-on-write): a column set here never writes into the clusters'.
    table = clusters.consensus.copy(deep=False)
    for column in ("status", "vote_score", "accepted", "reason", "forced"):
        table[column] = _positional(votes[column]) if len(votes) else pd.Series(dtype=object)
    # What a later decision stage (the latent-class model) added to the vote.
    for column in ("posterior", "score", "decided_by", "vote_reason"):
        if column in votes:
            table[column] = _positional(votes[column])
    table["kind"] = 0
    members = clusters.members.copy(deep=False)
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
    pkey = _class_key(table)
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
    rows = position[members["row"].to_numpy(dtype=np.int64)]
    members["row"] = rows
    # Members come in (consensus, pick id) order, which usually is already (row, pick id)
    # order: the sort (a copy of a million rows) only when it is not.
    pick_ids = members["pick_id"].to_numpy(dtype=np.int64)
    step = np.diff(rows)
    if not ((step > 0) | ((step == 0) & (np.diff(pick_ids) >= 0))).all():
        members = members.sort_values(["row", "pick_id"], kind="stable")
    members = members.reset_index(drop=True)
    return table, members, order


def _positional(column: pd.Series) -> object:
    """A column's values to set by position: text stays pandas text (``to_numpy`` would make
    a Python str of every value), everything else its numpy array."""
    return column.array if isinstance(column.dtype, pd.StringDtype) else column.to_numpy()


def summary_rows(
    picks: pd.DataFrame, final: pd.DataFrame, pickers: list[str], class_agnostic: bool
) -> list[dict]:
    """Per tomogram and class: picks in per picker, consensus picks by status, accepted."""
    key = _class_key
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


def _class_key(frame: pd.DataFrame) -> pd.Series:
    """The class as text ("" for none: the aggregate's particles are a name or None), one
    ``str`` per distinct class instead of one Python call per pick."""
    codes, names = pd.factorize(frame["particle"].astype(object))
    text = np.array([str(n) for n in names] + [""], dtype=object)
    return pd.Series(text[codes], index=frame.index)  # code -1 (None) -> the last: ""
