"""Training the hybrid network (``pipeline.models.hybrid.fit``) on real ML-100K: it learns, and the same seed
gives the same model, on any number of threads, including when it gives up a core to a side fit mid-way."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

from pipeline.core.device import side_thread
from pipeline.models.hybrid.fit import Batches, batch_loss, training_settings
from pipeline.models.hybrid.network import build_network
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


def test_a_steps_gradients_are_the_same_on_one_thread_and_on_two(ml100k_data, split):
    """Every parameter's gradient after one training step, to 1e-30: below float32's smallest normal number
    (1.2e-38) the step's own thread flushes to zero (``training_settings``) and torch's worker threads do not,
    which moved a sum by 3e-38; a product or a gather summed in another order moves them by 1e-9."""
    train = split[0]
    batches = Batches(ml100k_data, train, TINY, "cpu")
    start = build_network(
        train.n_users, ml100k_data.movies, ml100k_data.users.shape[1], ml100k_data.vocab, TINY, 3.5
    )
    grads: list[dict[str, torch.Tensor]] = []
    before = torch.get_num_threads()
    try:
        with training_settings():
            for threads in (1, 2):
                torch.set_num_threads(threads)
                torch.manual_seed(TINY.seed)  # the dropout masks
                net = copy.deepcopy(start)
                loss, _, _ = batch_loss(
                    net, batches, torch.arange(TINY.batch_size), TINY, torch.Generator().manual_seed(1)
                )
                loss.backward()
                grads.append({k: p.grad.to_dense() for k, p in net.named_parameters() if p.grad is not None})
    finally:
        torch.set_num_threads(before)
    assert grads[0].keys() == grads[1].keys() and "item_emb.weight" in grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=0, atol=1e-30, msg=name)


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
