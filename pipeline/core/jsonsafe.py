"""Plain JSON values for jsonb columns, XComs and reports (no NaN, no numpy scalars)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN/Infinity become None (PostgreSQL's jsonb and some XCom backends reject them),
    numpy scalars Python numbers, mapping keys strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    if isinstance(value, (np.floating, np.integer)):
        return json_safe(value.item())
    return value


def json_text(value: Any) -> str:
    """JSON for a jsonb column."""
    return json.dumps(json_safe(value), default=str)
