"""The baselines (``pipeline.models.baselines``): the recommender contract on the real ML-100K slice, then what
each one is supposed to compute, by hand on toy data."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.baselines import (
    EASE,
    BiasedMF,
    BiasedMFConfig,
    EASEConfig,
    GlobalMean,
    Popularity,
    PopularityConfig,
    _groups,
)
from tests.support.configs import SMALL_EASE, SMALL_MF
from tests.support.contract import NotFittedContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice


class TestGlobalMeanContract(RecommenderContract, NotFittedContract):
    @pytest.fixture(scope="class")
    def make(self):
        return GlobalMean


class TestPopularityContract(RecommenderContract, NotFittedContract):
    @pytest.fixture(scope="class")
    def make(self):
        return Popularity


class TestBiasedMFContract(RecommenderContract, NotFittedContract):
    @pytest.fixture(scope="class")
    def make(self):
        return lambda: BiasedMF(SMALL_MF)


class TestEASEContract(RecommenderContract, NotFittedContract):
    rates = False  # ranking only

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: EASE(SMALL_EASE)


@pytest.fixture(scope="module")
def split(ml100k_dir) -> tuple[Interactions, Interactions]:
    return random_split(load_ml100k_slice(ml100k_dir))


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


def test_biased_mf_solves_only_rated_rows_and_empty_ones_change_nothing(split) -> None:
    # Movies nobody rated, appended to the catalogue: the same floats for every rated row (the initial
    # factors are drawn for every row, in the same order), zeros for the new ones.
    train, _ = split
    padded = Interactions(
        train.users, train.items, train.ratings, train.timestamps, train.n_users, train.n_items + 50
    )
    config = BiasedMFConfig(factors=8, epochs=3)
    plain, wide = BiasedMF(config).fit(train), BiasedMF(config).fit(padded)
    assert np.array_equal(wide.user_factors_, plain.user_factors_)
    assert np.array_equal(wide.user_bias_, plain.user_bias_)
    assert wide.item_factors_ is not None and plain.item_factors_ is not None
    assert np.array_equal(wide.item_factors_[: train.n_items], plain.item_factors_)
    assert not wide.item_factors_[train.n_items :].any() and wide.item_factors_.dtype == np.float32
    assert wide.item_factors_.flags["C_CONTIGUOUS"]


def test_biased_mf_half_step_solves_each_rows_ridge_problem(split) -> None:
    # Checked row by row against the ridge solution written out: [x_i, 1] of the movies a user rated, the
    # factor penalty scaled by the user's count, the bias's not. Seven rows at most per batched group.
    train, _ = split
    model = BiasedMF(BiasedMFConfig(factors=4, reg_factors=0.2, reg_bias=1.5, block_rows=7))
    rng = np.random.default_rng(0)
    other = rng.normal(size=(train.n_items, 4))
    order = np.argsort(train.users, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(train.users, minlength=train.n_users))])
    items, values = train.items[order], rng.normal(size=len(train))
    counts = np.diff(ptr).astype(np.float64)
    factors, bias = model._half_step(ptr, items, values, other)
    x = np.hstack([other, np.ones((train.n_items, 1))])
    rated_rows = np.flatnonzero(counts)
    for row in [*rng.choice(rated_rows, 20, replace=False), int(np.argmax(counts))]:
        a, b = x[items[ptr[row] : ptr[row + 1]]], values[ptr[row] : ptr[row + 1]]
        want = np.linalg.solve(a.T @ a + np.diag([0.2 * counts[row]] * 4 + [1.5]), a.T @ b)
        np.testing.assert_allclose(np.append(factors[row], bias[row]), want, rtol=1e-9, atol=1e-12)


def test_biased_mf_groups_cover_every_row_once_within_their_budget() -> None:
    sizes = np.sort(np.random.default_rng(1).integers(1, 50, 200))
    sizes[-1] = 500  # over the budget on its own
    runs = list(_groups(sizes, 100, 16))
    assert runs[0][0] == 0 and runs[-1][1] == 200
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    for lo, hi in runs:
        assert 1 <= hi - lo <= 16 and ((hi - lo) * sizes[hi - 1] <= 100 or hi - lo == 1)
        assert sizes[hi - 1] <= 1.25 * sizes[lo] + 8  # padding a small share of the group's work
    assert runs[-1] == (199, 200)


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
