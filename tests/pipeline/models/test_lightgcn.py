"""LightGCN (``pipeline.models.lightgcn``): the recommender contract on the real ML-100K slice with save/load,
then its graph, its propagation's gradient, its seeded determinism and that training learns something."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.implicit_mf import ALS, ALSConfig
from pipeline.models.lightgcn import (
    LightGCN,
    LightGCNConfig,
    normalised_adjacency,
    propagate,
    sample_negatives,
)
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice

# Narrower and far fewer epochs than the defaults: the contract fits the model three times.
SMALL = LightGCNConfig(factors=16, layers=2, epochs=10, batch_size=1024)


class TestLightGCNContract(RecommenderContract, NotFittedContract, PersistenceContract):
    rates = False

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: LightGCN(SMALL)

    def reload(self, model, directory):
        return LightGCN.load(model.save(directory / "model.npz"))


@pytest.fixture(scope="module")
def split(ml100k_dir) -> tuple[Interactions, Interactions]:
    return random_split(load_ml100k_slice(ml100k_dir))


def test_the_adjacency_is_the_symmetrically_normalised_bipartite_graph() -> None:
    # user 0 likes movies 0 and 1, user 1 likes movie 0; movie 2 and user 2 have no edge
    adjacency = normalised_adjacency(np.array([0, 0, 1]), np.array([0, 1, 0]), n_users=3, n_items=3)
    a = adjacency.to_dense().numpy()
    expected = np.zeros((6, 6), np.float32)
    degree_u, degree_i = [2, 1, 0], [2, 1, 0]
    for u, i in [(0, 0), (0, 1), (1, 0)]:
        expected[u, 3 + i] = expected[3 + i, u] = 1 / np.sqrt(degree_u[u] * degree_i[i])
    np.testing.assert_allclose(a, expected, rtol=1e-6)


def test_propagation_is_the_layer_mean_and_its_gradient_is_the_dense_one() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 7, 30), rng.integers(0, 9, 30)
    keys = np.unique(users * 9 + items)
    adjacency = normalised_adjacency(keys // 9, keys % 9, n_users=7, n_items=9)
    dense = adjacency.to_dense()
    start = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    weight = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))
    x, y = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    out = propagate(adjacency, x, layers=2)
    expected = (y + dense @ y + dense @ (dense @ y)) / 3
    torch.testing.assert_close(out, expected)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
    torch.testing.assert_close(propagate(adjacency, start, layers=0), start)


def test_negatives_are_not_the_users_positives() -> None:
    n_items = 5
    users = np.repeat(np.arange(3), 200)
    keys = np.sort(np.array([0 * n_items + 0, 0 * n_items + 1, 1 * n_items + 4, 2 * n_items + 2]))
    negatives = sample_negatives(users, keys, n_items, np.random.default_rng(0))
    assert not np.isin(users * n_items + negatives, keys).any()
    assert set(negatives[users == 0]) == {2, 3, 4}  # every other movie is drawn


def test_fitting_is_deterministic_whatever_torchs_thread_count(split) -> None:
    train = split[0]
    users = np.arange(train.n_users)
    threads = torch.get_num_threads()
    one = LightGCN(SMALL).fit(train)
    try:
        torch.set_num_threads(2)
        two = LightGCN(SMALL).fit(train)
        assert torch.get_num_threads() == 2  # fit restores the caller's count
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one.score_users(users), two.score_users(users))
    assert one.losses_ == two.losses_


def test_the_seed_changes_the_model(split) -> None:
    a = LightGCN(SMALL).fit(split[0]).score_users(np.arange(5))
    b = LightGCN(LightGCNConfig(factors=16, layers=2, epochs=10, batch_size=1024, seed=7)).fit(split[0])
    assert not np.array_equal(a, b.score_users(np.arange(5)))


def test_training_lowers_the_loss_and_ranks_held_out_positives_above_random_movies(split) -> None:
    train, test = split
    model = LightGCN(LightGCNConfig(factors=32, layers=2, epochs=30, batch_size=1024)).fit(train)
    assert len(model.losses_) == 30
    assert model.losses_[-1] < 0.5 * model.losses_[0]  # from about log 2
    liked = test.subset(test.ratings >= 4)
    scores = model.score_users(np.arange(train.n_users))
    random_movies = np.random.default_rng(0).integers(0, train.n_items, len(liked))
    # AUC of held-out liked movies against random ones, pair by pair (0.5: no better than chance)
    auc = np.mean(scores[liked.users, liked.items] > scores[liked.users, random_movies])
    assert auc > 0.8


def test_the_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="factors"):
        LightGCNConfig(factors=0)
    with pytest.raises(ValidationError, match="learning_rate"):
        LightGCNConfig(learning_rate=0.0)
    with pytest.raises(ValidationError, match="regularization"):
        LightGCNConfig(regularization=float("nan"))
    with pytest.raises(ValidationError, match="layers"):
        LightGCNConfig(layers=-1)
    with pytest.raises((TypeError, ValidationError)):
        LightGCNConfig(layer=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="LightGCNConfig"):
        LightGCN(ALSConfig())  # type: ignore[arg-type]


def test_a_saved_model_loads_only_as_itself(split, tmp_path) -> None:
    path = LightGCN(SMALL).fit(split[0]).save(tmp_path / "lightgcn.npz")
    assert path == tmp_path / "lightgcn.npz" and path.exists()
    assert LightGCN.load(path).config == SMALL
    with pytest.raises(ValueError, match="holds a 'LightGCN' model, not 'ALS'"):
        ALS.load(path)
