"""Training the hybrid network (``pipeline.models.hybrid.fit``) on real ML-100K: it learns, and the same seed
gives the same model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.hybrid.train import train_hybrid
from tests.support.configs import TINY


@pytest.fixture(scope="module")
def split(ml100k_data):
    """A slice of real ML-100K: the first 300 users, 80/20 at random."""
    X = ml100k_data.interactions
    rows = np.flatnonzero(X.users < 300)
    rng = np.random.default_rng(0)
    rng.shuffle(rows)
    cut = int(0.8 * len(rows))
    return X.subset(np.sort(rows[:cut])), X.subset(np.sort(rows[cut:]))


@pytest.fixture(scope="module")
def trained(ml100k_data, split):
    return train_hybrid(ml100k_data, split[0], TINY, device="cpu", progress=False)


def rmse(model, test):
    return float(np.sqrt(np.mean((model.predict_index(test.users, test.items) - test.ratings) ** 2)))


def test_short_training_lowers_loss_and_beats_global_mean(trained, split):
    train, test = split
    assert len(trained.history) == TINY.epochs and trained.best_epoch == TINY.epochs  # no early stopping
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    global_mean = float(np.sqrt(np.mean((train.ratings.mean() - test.ratings) ** 2)))
    assert rmse(trained.model, test) < global_mean
    assert trained.model.meta["n_train"] == len(train)
    assert trained.model.meta["rating_range"] == [float(train.ratings.min()), float(train.ratings.max())]


def test_same_seed_same_model(ml100k_data, split, trained):
    again = train_hybrid(ml100k_data, split[0], TINY, device="cpu", progress=False)
    test = split[1]
    np.testing.assert_array_equal(
        again.model.predict_index(test.users, test.items), trained.model.predict_index(test.users, test.items)
    )
    assert [h["loss"] for h in again.history] == [h["loss"] for h in trained.history]
