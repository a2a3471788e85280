"""Plain JSON values for jsonb columns, XComs and reports (``pipeline.core.jsonsafe``)."""

import json
import math

import numpy as np

from pipeline.core.jsonsafe import json_safe, json_text


def test_nan_and_infinity_become_none_and_numpy_scalars_python_numbers():
    value = {
        "ndcg@10": np.float32(0.25),
        "users": np.int64(943),
        "rmse": float("nan"),
        1: [math.inf, (np.float64(-math.inf), 2)],
    }
    safe = json_safe(value)
    assert safe == {"ndcg@10": 0.25, "users": 943, "rmse": None, "1": [None, [None, 2]]}
    assert type(safe["users"]) is int and type(safe["ndcg@10"]) is float
    assert json.loads(json_text(value)) == safe
    json.dumps(safe, allow_nan=False)  # strictly JSON
