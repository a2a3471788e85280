"""Training the hybrid network (``pipeline.models.hybrid.fit``) on real ML-100K: it learns, and the same seed
gives the same model, on any number of threads, including when it gives up a core to a side fit mid-way."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from pipeline.core.device import side_thread
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


def test_one_thread_gives_the_same_model(ml100k_data, split, trained):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train_hybrid(ml100k_data, split[0], TINY, device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    assert [h["loss"] for h in alone.history] == [h["loss"] for h in trained.history]
    test = split[1]
    np.testing.assert_array_equal(
        alone.model.predict_index(test.users, test.items), trained.model.predict_index(test.users, test.items)
    )


def test_the_network_steps_on_one_thread_while_a_side_fit_is_pending(ml100k_data, split, trained):
    full = torch.get_num_threads()
    release = threading.Event()
    seen: dict[int, int] = {}

    def side_fit() -> str:  # stands for a member's fit: pending until the network's first epoch ends
        assert release.wait(60)
        return "fitted"

    with side_thread("members") as side:
        pending = side.submit(side_fit)

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            seen[epoch] = torch.get_num_threads()
            if epoch == 1:
                release.set()
                assert pending.result(60) == "fitted"

        switched = train_hybrid(ml100k_data, split[0], TINY, device="cpu", progress=False, on_epoch=on_epoch)
    assert seen == {1: 1, 2: full, 3: full}  # one thread while the fit was pending, every one after
    assert torch.get_num_threads() == full
    assert [h["loss"] for h in switched.history] == [h["loss"] for h in trained.history]
