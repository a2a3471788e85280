"""The contract every recommender keeps, run against each model on a slice of real ML-100K.

A new model joins by adding a factory to ``MODELS`` (or by importing ``check_recommender_contract`` into
its own test). Per-model behaviour (what the baselines are supposed to compute) is tested below it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.evaluation.protocol import top_k_for_users
from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.base import Recommender
from pipeline.models.baselines import (
    EASE,
    BiasedMF,
    BiasedMFConfig,
    EASEConfig,
    GlobalMean,
    Popularity,
    PopularityConfig,
)
from tests.ml100k_slice import load_ml100k_slice

MODELS: dict[str, Callable[[], Recommender]] = {
    "GlobalMean": GlobalMean,
    "Popularity": Popularity,
    "BiasedMF": lambda: BiasedMF(BiasedMFConfig(factors=16, epochs=5)),
    "EASE": lambda: EASE(EASEConfig(lam=100.0)),
}


@pytest.fixture(scope="module")
def split(ml100k_dir) -> tuple[Interactions, Interactions]:
    return random_split(load_ml100k_slice(ml100k_dir))


def check_recommender_contract(
    make: Callable[[], Recommender], train: Interactions, test: Interactions
) -> None:
    """Assert the ``Recommender`` contract for a model built by ``make`` (a fresh, unfitted instance each call)."""
    model = make()
    assert isinstance(model, Recommender) and isinstance(model.name, str) and model.name
    assert model.fit(train) is model

    users, items = test.users[:500], test.items[:500]
    pred = model.predict(users, items)
    assert pred.shape == (len(users),) and pred.dtype == np.float32
    assert np.isfinite(pred).all() or np.isnan(pred).all()  # a rating predictor, or ranking-only

    batch = np.array([0, 5, 3, train.n_users - 1], np.int64)
    scores = model.score_users(batch)
    assert scores.shape == (len(batch), train.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # Scores of a user do not depend on which other users share the batch.
    np.testing.assert_allclose(model.score_users(batch[[2]])[0], scores[2], rtol=1e-5, atol=1e-6)

    # Fitting again on the same data, the same instance or a fresh one, gives the same model.
    for again in (model.fit(train), make().fit(train)):
        np.testing.assert_array_equal(again.predict(users, items), pred)
        np.testing.assert_array_equal(again.score_users(batch), scores)

    # Masking: recommendations never include an item the user rated in train, and hold k distinct items.
    k = 10
    all_users = np.arange(train.n_users)
    top = top_k_for_users(model, train, all_users, k=k, batch_size=64)
    assert top.shape == (train.n_users, k)
    rated = train.binary_matrix().toarray() > 0
    assert not rated[all_users[:, None], top].any()
    assert all(len(set(row)) == k for row in top.tolist())
    assert (top >= 0).all()  # every slice user has far more than k unrated movies


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recommender_contract(name: str, split) -> None:
    check_recommender_contract(MODELS[name], *split)


def test_unfitted_model_refuses_to_predict() -> None:
    for make in MODELS.values():
        with pytest.raises(RuntimeError, match="not fitted"):
            make().score_users(np.array([0]))


# --- what each baseline computes -----------------------------------------------------------------------------


def _tiny() -> Interactions:
    # 3 users x 4 items; item 3 is never rated.
    users = np.array([0, 0, 1, 1, 2, 2, 2])
    items = np.array([0, 1, 0, 2, 0, 1, 2])
    ratings = np.array([5, 3, 4, 2, 3, 4, 1], np.float32)
    return Interactions(users, items, ratings, np.arange(7), n_users=3, n_items=4)


def test_global_mean_and_popularity_by_hand() -> None:
    data = _tiny()
    mu = 22 / 7
    assert GlobalMean().fit(data).predict(np.array([1]), np.array([3]))[0] == pytest.approx(mu)
    pop = Popularity(PopularityConfig(damping=2.0)).fit(data)
    # item 0: (5 + 4 + 3 + 2 mu) / (3 + 2); item 3, unrated: (0 + 2 mu) / (0 + 2) = mu
    np.testing.assert_allclose(
        pop.predict(np.zeros(2, np.int64), np.array([0, 3])), [(12 + 2 * mu) / 5, mu], rtol=1e-6
    )
    np.testing.assert_array_equal(pop.score_users(np.array([1, 2])), [[3, 2, 2, 0], [3, 2, 2, 0]])


def test_ease_matches_closed_form_and_cannot_predict_ratings() -> None:
    data = _tiny()
    model = EASE(EASEConfig(lam=1.0)).fit(data)
    x = data.binary_matrix().toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + np.eye(4))
    b = np.eye(4) - p / np.diag(p)  # Steck (2019), eq. 8
    np.testing.assert_allclose(model.score_users(np.arange(3)), x @ b, rtol=1e-5, atol=1e-6)
    assert np.isnan(model.predict(np.array([0]), np.array([1]))).all()


def test_biased_mf_fits_training_ratings_and_zeroes_unseen_items(split) -> None:
    train, _ = split
    model = BiasedMF(BiasedMFConfig(factors=16, epochs=5, reg_factors=0.01, clip=False)).fit(train)
    fitted = model.predict(train.users, train.items)
    # weakly regularised, 16 factors x ~130 users: the train ratings are fitted far better than the mean does
    assert np.sqrt(np.mean((fitted - train.ratings) ** 2)) < 0.6 * train.ratings.std()
    unseen = np.setdiff1d(np.arange(train.n_items), train.items)
    assert len(unseen) > 0
    assert np.abs(model.item_factors_[unseen]).max() == 0 and np.abs(model.item_bias_[unseen]).max() == 0
    clipped = BiasedMF(BiasedMFConfig(factors=16, epochs=5, reg_factors=0.01)).fit(train)
    pred = clipped.predict(train.users, train.items)
    assert pred.min() >= 1.0 and pred.max() <= 5.0
