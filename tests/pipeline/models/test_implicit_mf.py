"""The implicit-feedback factorisations (``pipeline.models.implicit_mf``): the recommender contract on the real
ML-100K slice with save/load, then what they hand the ``implicit`` library and how they run it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.implicit_mf import ALS, BPR, LMF, ALSConfig, BPRConfig, LMFConfig, user_items
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice

# Fewer epochs than the defaults: the contract fits each model three times.
SMALL_ALS = ALSConfig(factors=16, iterations=5)
SMALL_BPR = BPRConfig(factors=16, iterations=20)
SMALL_LMF = LMFConfig(factors=8, iterations=10)


class _Reload(PersistenceContract):
    def reload(self, model, directory):
        return type(model).load(model.save(directory / "model.npz"))


class TestALSContract(RecommenderContract, NotFittedContract, _Reload):
    rates = False

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: ALS(SMALL_ALS)


class TestBPRContract(RecommenderContract, NotFittedContract, _Reload):
    rates = False

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: BPR(SMALL_BPR)


class TestLMFContract(RecommenderContract, NotFittedContract, _Reload):
    rates = False

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: LMF(SMALL_LMF)


@pytest.fixture(scope="module")
def train(ml100k_dir) -> Interactions:
    return random_split(load_ml100k_slice(ml100k_dir))[0]


def _tiny() -> Interactions:
    # user 0 rated item 1 twice (3 then 5 stars); user 1 gave item 2 a single star.
    users = np.array([0, 0, 0, 1, 1])
    items = np.array([0, 1, 1, 0, 2])
    ratings = np.array([4, 3, 5, 5, 1], np.float32)
    return Interactions(users, items, ratings, np.arange(5), n_users=2, n_items=3)


def test_confidences_are_one_plus_alpha_times_the_rating_of_each_positive_once() -> None:
    x = user_items(_tiny(), min_rating=1.0, alpha=0.5).toarray()
    np.testing.assert_allclose(x, [[3.0, 3.5, 0.0], [3.5, 0.0, 1.5]])  # the pair rated twice: its highest
    x = user_items(_tiny(), min_rating=4.0, alpha=None).toarray()  # BPR's binary positives, 4 stars and up
    np.testing.assert_array_equal(x, [[1, 1, 0], [1, 0, 0]])


def test_als_factors_do_not_depend_on_the_thread_count(train) -> None:
    one = ALS(ALSConfig(factors=16, iterations=5, threads=1)).fit(train)
    for threads in (2, 0):  # 0, the default: every core
        other = ALS(ALSConfig(factors=16, iterations=5, threads=threads)).fit(train)
        np.testing.assert_array_equal(one.score_users(np.arange(20)), other.score_users(np.arange(20)))


def test_the_seed_changes_the_model(train) -> None:
    a = BPR(SMALL_BPR).fit(train).score_users(np.arange(5))
    b = BPR(BPRConfig(factors=16, iterations=20, seed=7)).fit(train).score_users(np.arange(5))
    assert not np.array_equal(a, b)


def test_bpr_popularity_correction_adds_beta_log_of_each_movies_positives_to_its_bias(train) -> None:
    plain = BPR(BPRConfig(factors=16, iterations=20, popularity_correction=0.0)).fit(train)
    corrected = BPR(BPRConfig(factors=16, iterations=20, popularity_correction=1.5)).fit(train)
    positives = np.bincount(user_items(train, 1.0, None).indices, minlength=train.n_items)
    p_users, p_items = plain.factors()
    c_users, c_items = corrected.factors()
    np.testing.assert_array_equal(c_users, p_users)  # the same fit (same seed): only the bias column moves
    np.testing.assert_array_equal(c_items[:, :-1], p_items[:, :-1])
    np.testing.assert_allclose(
        c_items[:, -1] - p_items[:, -1], 1.5 * np.log1p(positives), rtol=1e-5, atol=1e-5
    )


def test_fitting_is_silent_blas_held_to_one_thread(train, capfd) -> None:
    import implicit.utils

    implicit.utils._checked_blas_config = False  # the library warns once per process: check again here
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library's BLAS-threads warning would fail the fit
        for model in (ALS(SMALL_ALS), BPR(SMALL_BPR), LMF(SMALL_LMF)):
            model.fit(train)
    assert capfd.readouterr().err == ""  # no progress bars


def test_als_ranks_a_users_held_in_items_above_unrated_ones(train) -> None:
    model = ALS(ALSConfig(factors=32, iterations=10, regularization=0.01)).fit(train)
    scores = model.score_users(np.arange(train.n_users))
    rated = train.binary_matrix().toarray() > 0
    # fitted to the positives: a user's rated movies score far above the rest on average
    assert scores[rated].mean() > scores[~rated].mean() + 0.2


def test_configs_are_validated() -> None:
    with pytest.raises(ValidationError, match="factors"):
        ALSConfig(factors=0)
    with pytest.raises(ValidationError, match="learning_rate"):
        BPRConfig(learning_rate=0.0)
    with pytest.raises(ValidationError, match="alpha"):
        LMFConfig(alpha=float("nan"))
    with pytest.raises((TypeError, ValidationError)):
        ALSConfig(factor=8)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="ALSConfig"):
        ALS(BPRConfig())  # type: ignore[arg-type]


def test_a_saved_model_loads_only_as_itself(train, tmp_path) -> None:
    path = ALS(SMALL_ALS).fit(train).save(tmp_path / "als.npz")
    assert path == tmp_path / "als.npz" and path.exists()
    loaded = ALS.load(path)
    assert loaded.config == SMALL_ALS
    with pytest.raises(ValueError, match="holds a 'ALS' model, not 'BPR'"):
        BPR.load(path)
