"""The benchmarks split real ML-100K exactly as the evaluation does: ties between ratings of the same second
broken by the ratings' database ids, whether the ratings come from the database or from the offline file."""

from pathlib import Path

import numpy as np
import pytest

from bench.model_grid import _ml100k
from pipeline.evaluation.splits import make_split
from pipeline.evaluation.weight_search import validation_split
from pipeline.features.interactions import Interactions

pytestmark = pytest.mark.e2e


def _pairs(part: Interactions, ids: tuple[np.ndarray, np.ndarray]) -> set[tuple[int, int]]:
    return set(zip(ids[0][part.users].tolist(), ids[1][part.items].tolist()))


def test_the_offline_file_splits_as_the_evaluation_splits_the_database(ml100k_data, tmp_path: Path) -> None:
    data, ids = _ml100k(tmp_path)
    assert np.array_equal(ids[0], ml100k_data.ids[0]) and np.array_equal(ids[1], ml100k_data.ids[1])
    train, test = make_split(data, "temporal", ids)
    db_train, db_test = make_split(ml100k_data.interactions, "temporal", ml100k_data.ids)
    assert len(test) == len(db_test) > 0 and _pairs(test, ids) == _pairs(db_test, ml100k_data.ids)
    _, held = validation_split(train, ids)
    _, db_held = validation_split(db_train, ml100k_data.ids)
    assert _pairs(held, ids) == _pairs(db_held, ml100k_data.ids)
    # the dense indices would have broken some of those ties the other way
    _, by_index = make_split(ml100k_data.interactions, "temporal")
    assert _pairs(by_index, ml100k_data.ids) != _pairs(db_test, ml100k_data.ids)
