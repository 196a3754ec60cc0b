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
