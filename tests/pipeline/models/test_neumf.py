"""NeuMF (``pipeline.models.neumf``): the recommender contract on the real ML-100K slice with save/load, then
its scoring against the network's own forward pass, its seeded determinism and that training learns
something."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.evaluation.protocol import top_k_for_users
from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.implicit_mf import ALS, ALSConfig
from pipeline.models.neumf import NeuMF, NeuMFConfig
from pipeline.models.saved import load_arrays, save_arrays
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice

# Narrower and far fewer epochs than the defaults: the contract fits the model three times.
SMALL = NeuMFConfig(factors=8, mlp_layers=(16, 8), epochs=3, batch_size=1024)


class TestNeuMFContract(RecommenderContract, NotFittedContract, PersistenceContract):
    rates = False

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: NeuMF(SMALL)

    def reload(self, model, directory):
        return NeuMF.load(model.save(directory / "model.npz"))


@pytest.fixture(scope="module")
def split(ml100k_dir) -> tuple[Interactions, Interactions]:
    return random_split(load_ml100k_slice(ml100k_dir))


@pytest.fixture(scope="module")
def small(split) -> NeuMF:
    return NeuMF(SMALL).fit(split[0])


def test_scores_are_the_networks_logits_whatever_the_block(split, small, monkeypatch) -> None:
    train = split[0]
    users = np.array([3, 0, train.n_users - 1, 7])
    scores = small.score_users(users)
    params = {name: torch.from_numpy(a) for name, a in small.parameters().items()}
    u = torch.from_numpy(np.repeat(users, train.n_items))
    i = torch.from_numpy(np.tile(np.arange(train.n_items), len(users)))
    with torch.no_grad():
        logits = small._logits(params, u, i).numpy().reshape(len(users), train.n_items)
    np.testing.assert_allclose(scores, logits, rtol=1e-4, atol=1e-5)  # float64 against torch's float32
    # a block of one user's movies at a time: the same floats
    monkeypatch.setattr("pipeline.models.neumf.SCORE_PAIRS", 1)
    np.testing.assert_array_equal(small.score_users(users), scores)


def test_rated_movies_are_scored_and_left_out_of_the_top_k(split, small) -> None:
    train = split[0]
    users = np.arange(train.n_users)
    rated = train.binary_matrix().toarray() > 0
    scores = small.score_users(users)
    assert np.isfinite(scores[rated]).all()  # scored like the others: masking is the evaluator's
    top = top_k_for_users(small, train, users, k=20)
    assert not rated[users[:, None], top].any()


def test_fitting_is_deterministic_whatever_torchs_thread_count(split, small) -> None:
    users = np.arange(split[0].n_users)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        again = NeuMF(SMALL).fit(split[0])
        assert torch.get_num_threads() == 2  # fit restores the caller's count
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(again.score_users(users), small.score_users(users))
    assert again.losses_ == small.losses_


def test_the_seed_changes_the_model(split, small) -> None:
    other = NeuMF(dataclasses.replace(SMALL, seed=7)).fit(split[0])
    assert not np.array_equal(other.score_users(np.arange(5)), small.score_users(np.arange(5)))
    assert other.losses_ != small.losses_


def test_training_lowers_the_loss_and_ranks_held_out_positives_above_popularity(split) -> None:
    train, test = split
    config = NeuMFConfig(factors=16, mlp_layers=(32, 16), epochs=10, batch_size=512, learning_rate=3e-3)
    model = NeuMF(config).fit(train)
    assert len(model.losses_) == 10
    assert model.losses_[-1] < 0.5 * model.losses_[0]
    liked = test.subset(test.ratings >= 4)
    rated = train.binary_matrix().toarray() > 0

    def mean_rank(scores: np.ndarray) -> float:
        """The held-out liked movies' mean rank (0: first) among each user's unrated movies."""
        order = np.argsort(-np.where(rated, -np.inf, scores), axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(train.n_items)[None, :], axis=1)
        return float(ranks[liked.users, liked.items].mean())

    learnt = mean_rank(model.score_users(np.arange(train.n_users)))
    popularity = np.bincount(train.items, minlength=train.n_items).astype(np.float32)
    # popularity alone is the usual floor to beat (chance would give about half the unrated movies)
    assert learnt < 0.9 * mean_rank(np.broadcast_to(popularity, rated.shape))


def test_the_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="factors"):
        NeuMFConfig(factors=0)
    with pytest.raises(ValidationError, match="mlp_layers"):
        NeuMFConfig(mlp_layers=())
    with pytest.raises(ValidationError, match="mlp_layers"):
        NeuMFConfig(mlp_layers=(64, 0))
    with pytest.raises(ValidationError, match="negatives"):
        NeuMFConfig(negatives=0)
    with pytest.raises(ValidationError, match="learning_rate"):
        NeuMFConfig(learning_rate=0.0)
    with pytest.raises(ValidationError, match="regularization"):
        NeuMFConfig(regularization=float("nan"))
    with pytest.raises(ValidationError, match="epochs"):
        dataclasses.replace(NeuMFConfig(), epochs=-1)
    with pytest.raises((TypeError, ValidationError)):
        NeuMFConfig(layers=(8,))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="NeuMFConfig"):
        NeuMF(ALSConfig())  # type: ignore[arg-type]


def test_a_saved_model_loads_only_as_itself(split, small, tmp_path) -> None:
    path = small.save(tmp_path / "neumf.npz")
    assert path == tmp_path / "neumf.npz" and path.exists()
    loaded = NeuMF.load(path)
    assert loaded.config == SMALL and loaded.config.mlp_layers == (16, 8)
    np.testing.assert_array_equal(loaded.score_users(np.arange(5)), small.score_users(np.arange(5)))
    with pytest.raises(ValueError, match="holds a 'NeuMF' model, not 'ALS'"):
        ALS.load(path)
    als = ALS(ALSConfig(factors=4, iterations=1)).fit(split[0]).save(tmp_path / "als.npz")
    with pytest.raises(ValueError, match="holds a 'ALS' model, not 'NeuMF'"):
        NeuMF.load(als)
    # a file whose arrays are not those of its config's tower is refused, never scored
    config, arrays = load_arrays(path, "NeuMF", NeuMFConfig)
    short = save_arrays(
        tmp_path / "short.npz", "NeuMF", dataclasses.replace(config, mlp_layers=(16,)), arrays
    )
    with pytest.raises(ValueError, match="not those of its config"):
        NeuMF.load(short)
