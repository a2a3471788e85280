"""EASE above its ``max_items`` cap (the large-catalogue partner of the blend) on the real ML-100K slice: weights
for the most-rated movies only, a score of 0 for every other movie, and exactly the plain EASE at or below
the cap."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features.interactions import Interactions
from pipeline.models.baselines import EASE, EASEConfig
from tests.support.ml100k_slice import load_ml100k_slice

CAP = 200  # of the slice's ~1,400 rated movies


@pytest.fixture(scope="module")
def train(ml100k_dir) -> Interactions:
    return load_ml100k_slice(ml100k_dir)


@pytest.fixture(scope="module")
def capped(train: Interactions) -> EASE:
    return EASE(EASEConfig(lam=100.0, max_items=CAP)).fit(train)


def _closed_form(x: np.ndarray, lam: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)  # Steck (2019), eq. 8
    return b


def test_the_cap_keeps_the_most_rated_movies_ties_to_the_lower_index(
    train: Interactions, capped: EASE
) -> None:
    raters = np.asarray((train.binary_matrix() > 0).sum(axis=0)).ravel()
    assert train.n_items > CAP and capped.weights_ is not None and capped.kept_ is not None
    assert capped.weights_.shape == (CAP, CAP) and capped.weights_.dtype == np.float32
    kept = capped.kept_
    assert len(kept) == CAP and np.all(np.diff(kept) > 0)
    dropped = np.setdiff1d(np.arange(train.n_items), kept)
    # every kept movie has at least as many raters as every dropped one; at equal counts the lower index stays
    assert raters[kept].min() >= raters[dropped].max()
    edge = raters[kept].min()
    if (raters[dropped] == edge).any():
        assert kept[raters[kept] == edge].max() < dropped[raters[dropped] == edge].min()


def test_capped_weights_are_ease_on_the_kept_movies(train: Interactions, capped: EASE) -> None:
    x = train.binary_matrix().toarray().astype(np.float64)[:, capped.kept_]
    np.testing.assert_allclose(capped.weights_, _closed_form(x, 100.0), rtol=1e-4, atol=1e-6)


def test_only_kept_movies_get_scores_the_others_score_zero(train: Interactions, capped: EASE) -> None:
    users = np.arange(train.n_users)
    scores = capped.score_users(users)
    assert scores.shape == (train.n_users, train.n_items) and scores.dtype == np.float32
    dropped = np.setdiff1d(np.arange(train.n_items), capped.kept_)
    assert np.all(scores[:, dropped] == 0)
    assert np.all(scores[:, capped.kept_].std(axis=1) > 0)  # every slice user rated some kept movie
    x = train.binary_matrix().toarray().astype(np.float64)[:, capped.kept_]
    np.testing.assert_allclose(scores[:, capped.kept_], x @ capped.weights_, rtol=1e-4, atol=1e-5)


def test_the_capped_fit_is_deterministic(train: Interactions, capped: EASE) -> None:
    again = EASE(EASEConfig(lam=100.0, max_items=CAP)).fit(train)
    np.testing.assert_array_equal(again.kept_, capped.kept_)
    np.testing.assert_array_equal(again.weights_, capped.weights_)


def test_weights_and_one_user_by_catalogue_index(train: Interactions, capped: EASE) -> None:
    kept = capped.kept_
    rows, cols = np.array([kept[0], 1, kept[5], kept[-1]]), np.array([kept[3], kept[0], 0, kept[-2]])
    rows[1] = np.setdiff1d(np.arange(train.n_items), kept)[0]  # a dropped movie: no weight either way
    position = {int(m): k for k, m in enumerate(kept)}
    expected = np.zeros((len(rows), len(cols)), np.float32)
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            if int(r) in position and int(c) in position:
                expected[a, b] = capped.weights_[position[int(r)], position[int(c)]]
    np.testing.assert_array_equal(capped.item_weights(rows, cols), expected)
    assert np.abs(expected).sum() > 0
    rated = train.binary_matrix()[7].indices
    np.testing.assert_allclose(
        capped.score_items(rated), capped.score_users(np.array([7]))[0], rtol=1e-5, atol=1e-6
    )


def test_at_or_below_the_cap_it_is_exactly_the_plain_ease(train: Interactions) -> None:
    plain = EASE(EASEConfig(lam=100.0)).fit(train)  # the default cap is far above the slice's catalogue
    exact = EASE(EASEConfig(lam=100.0, max_items=train.n_items)).fit(train)
    assert plain.kept_ is None and exact.kept_ is None
    assert plain.weights_ is not None and plain.weights_.shape == (train.n_items, train.n_items)
    np.testing.assert_array_equal(exact.weights_, plain.weights_)
    users = np.arange(20)
    np.testing.assert_array_equal(exact.score_users(users), plain.score_users(users))
    # and today's formula (a dense inverse) to float32 precision
    x = train.binary_matrix().toarray().astype(np.float64)
    np.testing.assert_allclose(plain.weights_, _closed_form(x, 100.0), rtol=1e-4, atol=1e-6)
    rows = np.array([0, 3, 9])
    np.testing.assert_array_equal(
        plain.item_weights(rows, rows[::-1]), plain.weights_[np.ix_(rows, rows[::-1])]
    )


def test_restore_checks_the_weights_against_the_kept_movies(train: Interactions, capped: EASE) -> None:
    assert capped.weights_ is not None and capped.rated_ is not None
    back = EASE.restore(capped.config, capped.weights_, capped.rated_, capped.kept_)
    np.testing.assert_array_equal(back.score_users(np.arange(5)), capped.score_users(np.arange(5)))
    with pytest.raises(ValueError, match="kept movies"):
        EASE.restore(capped.config, capped.weights_, capped.rated_)


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_items"):
        EASEConfig(max_items=0)


def test_above_the_threaded_cholesky_size_the_fit_is_the_same_ease_on_one_blas_thread(
    train: Interactions, capped: EASE, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large catalogues factorise on one BLAS thread (OpenBLAS's threaded dpotrf crashed at 16,000 movies):
    # the same weights, here with the size bound lowered to the slice's.
    from threadpoolctl import threadpool_info

    import pipeline.models.baselines as baselines

    assert any(p["user_api"] == "blas" for p in threadpool_info())  # there is a BLAS pool to hold
    monkeypatch.setattr(baselines, "_THREADED_CHOLESKY_MAX_ITEMS", CAP - 1)
    one_thread = EASE(EASEConfig(lam=100.0, max_items=CAP)).fit(train)
    assert one_thread.weights_ is not None and capped.weights_ is not None
    np.testing.assert_allclose(one_thread.weights_, capped.weights_, rtol=1e-5, atol=1e-7)
