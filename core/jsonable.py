"""JSON for records (model cards, run summaries): one rule for values JSON does not know."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)``: a NumPy scalar as its Python value, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def is_jsonable(value: Any) -> bool:
    """Whether ``value`` serialises as plain JSON, as it is."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def json_records(frame) -> list[dict]:
    """A DataFrame's rows as plain JSON values: NumPy scalars as Python ones, NaN (unknown)
    and ±inf (e.g. the threshold of a class with nothing accepted) as None."""
    rows = []
    for row in frame.to_dict("records") if len(frame) else []:
        clean = {}
        for key, value in row.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not np.isfinite(value):
                value = None
            clean[key] = value
        rows.append(clean)
    return rows
