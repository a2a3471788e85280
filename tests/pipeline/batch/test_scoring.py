"""Retrieve, then re-rank: the rating-head term of the ranking, computed exhaustively or on candidates,
on a network trained on real ML-100K."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.batch.scoring import score_chunk
from pipeline.evaluation.metrics import list_recall
from pipeline.evaluation.weight_search import RERANK_GRID, choose_weights
from pipeline.models.baselines import EASE, BiasedMF
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.scorer import BlendRecommender, standardise
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.fit import train_hybrid
from pipeline.models.hybrid.recommender import HybridRecommender
from tests.pipeline.test_model import TINY

N = 20


@pytest.fixture(scope="module")
def train(ml100k_data):
    """Every rating of the first 300 real ML-100K users."""
    X = ml100k_data.interactions
    return X.subset(np.flatnonzero(X.users < 300))


@pytest.fixture(scope="module")
def published(ml100k_data, train) -> PublishedBlend:
    network = train_hybrid(ml100k_data, train, TINY, device="cpu", progress=False).model
    return PublishedBlend.from_training(network, train, BlendWeights(0.6, 1.0, 1.0))


def test_rating_matrix_is_the_rating_head_on_those_pairs(published, train):
    net = published.network
    users = np.array([0, 5, 17])
    items = np.array([[3, 1, -1], [0, 2, 9], [100, -1, 7]])
    got = net.rating_matrix(users, items, pairs_per_step=4)  # several steps
    pairs = items >= 0
    expected = net.predict_index(np.repeat(users, 3)[pairs.ravel()], items[pairs])
    np.testing.assert_allclose(got[pairs], expected, rtol=1e-5)
    assert np.isnan(got[~pairs]).all()
    whole = net.rating_matrix(users)
    assert whole.shape == (3, published.n_items)
    np.testing.assert_allclose(whole[1, [0, 2, 9]], got[1], rtol=1e-5)


def test_ranking_is_the_cheap_terms_plus_the_rating_head(published, train):
    assert published.rating_scale == pytest.approx(float(np.std(train.ratings)))
    users = np.arange(8)
    ease = published.ease.score_users(users).astype(np.float64)
    cheap = 0.6 * standardise(published.network.rank_index(users).astype(np.float64)) + 0.4 * standardise(
        ease
    )
    np.testing.assert_allclose(published.retrieval_scores(users), cheap, rtol=1e-4, atol=1e-5)
    term = published.network.rating_matrix(users) / published.rating_scale
    np.testing.assert_allclose(published.score_users(users), cheap + term, rtol=1e-4, atol=1e-4)


def test_re_ranked_candidates_carry_their_exact_ranking_scores(published):
    users = np.arange(40)
    idx, values = score_chunk(published, users, published.rated[users], N, candidates=30)
    full = published.score_users(users)
    np.testing.assert_allclose(values, np.take_along_axis(full, idx, axis=1), rtol=1e-4, atol=1e-4)
    # every listed movie was retrieved: among the user's top 30 unrated movies by the cheap terms
    cheap = published.retrieval_scores(users)
    cheap[published.rated[users].nonzero()] = -np.inf
    top30 = np.argsort(-cheap, axis=1)[:, :30]
    assert all(set(row) <= set(t) for row, t in zip(idx.tolist(), top30.tolist(), strict=True))
    assert (
        not published.rated[users]
        .multiply(
            sp.csr_matrix(
                (np.ones(idx.size), (np.repeat(users, N), idx.ravel())), shape=published.rated.shape
            )[users]
        )
        .nnz
    )


def test_enough_candidates_give_the_exhaustive_lists(published):
    users = np.arange(60)
    exhaustive, ex_values = score_chunk(published, users, published.rated[users], N, candidates=0)
    # every user rated something, so n_items - 1 candidates hold every movie the user may be shown
    two_stage, values = score_chunk(
        published, users, published.rated[users], N, candidates=published.n_items - 1
    )
    assert list_recall(exhaustive, two_stage) == 1.0
    np.testing.assert_allclose(values, ex_values, rtol=1e-4, atol=1e-4)
    few, _ = score_chunk(published, users, published.rated[users], N, candidates=N)
    assert list_recall(exhaustive, few) < 1.0  # the rating head reorders: retrieval alone misses some


def test_without_a_rating_head_term_candidates_change_nothing(published):
    plain = dataclasses.replace(published, weights=BlendWeights(0.6, 1.0, 0.0))
    users = np.arange(30)
    a, _ = score_chunk(plain, users, plain.rated[users], N, candidates=25)
    b, _ = score_chunk(plain, users, plain.rated[users], N, candidates=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, score_chunk(published, users, published.rated[users], N, candidates=0)[0])


def test_saved_and_loaded_model_keeps_the_rating_head_term(published, tmp_path):
    loaded = PublishedBlend.load(published.save(tmp_path / "p"))
    assert (loaded.rerank_weight, loaded.rating_scale) == (1.0, pytest.approx(published.rating_scale))
    np.testing.assert_allclose(
        loaded.score_users(np.arange(5)), published.score_users(np.arange(5)), rtol=1e-4, atol=1e-4
    )


def test_rating_head_weight_is_chosen_on_validation(ml100k_data, train):
    chosen = choose_weights(lambda: HybridRecommender(ml100k_data, TINY, "cpu"), EASE, BiasedMF, train)
    figures = chosen.figures["rerank_ndcg@10"]
    assert set(figures) == {round(m, 3) for m in RERANK_GRID}
    assert figures[chosen.rerank_weight] == max(figures.values())
    assert chosen.figures["ndcg@10"][chosen.weight] == max(chosen.figures["ndcg@10"].values())
    # weight 0 is the blend without the term: its figure is the ranking search's best
    assert figures[0.0] == pytest.approx(chosen.figures["ndcg@10"][chosen.weight])


def test_rating_head_search_samples_users_when_the_pairs_exceed_its_budget(published, train, monkeypatch):
    from pipeline.core.defaults import DEFAULT_CANDIDATES
    from pipeline.evaluation import weight_search
    from pipeline.evaluation.splits import temporal_split

    inner_train, inner_test = temporal_split(train)
    blend = BlendRecommender(
        HybridRecommender.from_artifact(published.network),
        published.ease,
        BlendWeights(0.6),
        rating_scale=published.rating_scale,
    )
    _, every_user = weight_search._rerank_figures(blend, inner_train, inner_test, (0.0, 1.0), 10)
    depth = min(DEFAULT_CANDIDATES, inner_train.n_items)
    monkeypatch.setattr(weight_search, "RERANK_SEARCH_PAIRS", 40 * depth)  # room for 40 users' candidates
    best, sampled = weight_search._rerank_figures(blend, inner_train, inner_test, (0.0, 1.0), 10)
    assert sampled != every_user
    assert sampled[best] == max(sampled.values())
    assert all(0.0 <= v <= 1.0 for v in sampled.values())


def test_evaluation_scores_the_blend_as_the_batch_lists_it(published):
    blend = BlendRecommender(
        HybridRecommender.from_artifact(published.network),
        published.ease,
        published.weights,
        rating_scale=published.rating_scale,
        candidates=30,
        rated=published.rated,
    )
    users = np.arange(40)
    scores = blend.score_users(users)
    assert (np.isfinite(scores).sum(axis=1) == 30).all()  # the candidates, nothing else
    batch_idx, batch_values = score_chunk(published, users, published.rated[users], N, candidates=30)
    np.testing.assert_allclose(
        np.take_along_axis(scores, batch_idx, axis=1), batch_values, rtol=1e-4, atol=1e-4
    )
    best = np.argsort(-scores, axis=1, kind="stable")[:, :N]
    assert list_recall(batch_idx, best) == 1.0
    with pytest.raises(ValueError):
        BlendRecommender(
            HybridRecommender.from_artifact(published.network),
            published.ease,
            BlendWeights(0.6, rerank_weight=1.0),
            candidates=30,
        )
