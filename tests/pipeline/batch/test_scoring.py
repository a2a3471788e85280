"""Scoring a chunk of users for the weekly lists (``pipeline.batch.scoring``): retrieve, then re-rank with the
rating head, on the session's tiny published blend (trained on the first 300 real ML-100K users); and the
evaluation's blend, which scores the lists exactly as the batch makes them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.batch.scoring import chunk_size, score_chunk, two_stage
from pipeline.evaluation.metrics import list_recall
from pipeline.models.blend.scorer import BlendRecommender
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.recommender import HybridRecommender

N = 20


def test_re_ranked_candidates_carry_their_exact_ranking_scores(tiny_blend):
    users = np.arange(40)
    idx, values = score_chunk(tiny_blend, users, tiny_blend.rated[users], N, candidates=30)
    full = tiny_blend.score_users(users)
    np.testing.assert_allclose(values, np.take_along_axis(full, idx, axis=1), rtol=1e-4, atol=1e-4)
    # every listed movie was retrieved: among the user's top 30 unrated movies by the cheap terms
    cheap = tiny_blend.retrieval_scores(users)
    cheap[tiny_blend.rated[users].nonzero()] = -np.inf
    top30 = np.argsort(-cheap, axis=1)[:, :30]
    assert all(set(row) <= set(t) for row, t in zip(idx.tolist(), top30.tolist(), strict=True))
    assert (
        not tiny_blend.rated[users]
        .multiply(
            sp.csr_matrix(
                (np.ones(idx.size), (np.repeat(users, N), idx.ravel())), shape=tiny_blend.rated.shape
            )[users]
        )
        .nnz
    )


def test_enough_candidates_give_the_exhaustive_lists(tiny_blend):
    users = np.arange(60)
    exhaustive, ex_values = score_chunk(tiny_blend, users, tiny_blend.rated[users], N, candidates=0)
    # every user rated something, so n_items - 1 candidates hold every movie the user may be shown
    two_stage, values = score_chunk(
        tiny_blend, users, tiny_blend.rated[users], N, candidates=tiny_blend.n_items - 1
    )
    assert list_recall(exhaustive, two_stage) == 1.0
    np.testing.assert_allclose(values, ex_values, rtol=1e-4, atol=1e-4)
    few, _ = score_chunk(tiny_blend, users, tiny_blend.rated[users], N, candidates=N)
    assert list_recall(exhaustive, few) < 1.0  # the rating head reorders: retrieval alone misses some


def test_without_a_rating_head_term_candidates_change_nothing(tiny_blend):
    plain = dataclasses.replace(tiny_blend, weights=BlendWeights(0.6, 1.0, 0.0))
    users = np.arange(30)
    a, _ = score_chunk(plain, users, plain.rated[users], N, candidates=25)
    b, _ = score_chunk(plain, users, plain.rated[users], N, candidates=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, score_chunk(tiny_blend, users, tiny_blend.rated[users], N, candidates=0)[0])


def test_evaluation_scores_the_blend_as_the_batch_lists_it(tiny_blend):
    blend = BlendRecommender(
        HybridRecommender.from_artifact(tiny_blend.network),
        tiny_blend.ease,
        tiny_blend.weights,
        rating_scale=tiny_blend.rating_scale,
        candidates=30,
        rated=tiny_blend.rated,
    )
    users = np.arange(40)
    scores = blend.score_users(users)
    assert (np.isfinite(scores).sum(axis=1) == 30).all()  # the candidates, nothing else
    batch_idx, batch_values = score_chunk(tiny_blend, users, tiny_blend.rated[users], N, candidates=30)
    np.testing.assert_allclose(
        np.take_along_axis(scores, batch_idx, axis=1), batch_values, rtol=1e-4, atol=1e-4
    )
    best = np.argsort(-scores, axis=1, kind="stable")[:, :N]
    assert list_recall(batch_idx, best) == 1.0
    with pytest.raises(ValueError):
        BlendRecommender(
            HybridRecommender.from_artifact(tiny_blend.network),
            tiny_blend.ease,
            BlendWeights(0.6, rerank_weight=1.0),
            candidates=30,
        )


def test_two_stage_only_with_a_rating_head_term_and_fewer_candidates_than_movies(tiny_blend):
    n_items = tiny_blend.n_items
    assert two_stage(tiny_blend, 30, N) and two_stage(tiny_blend, 5, N)  # at least N are re-ranked
    assert not two_stage(tiny_blend, 0, N) and not two_stage(tiny_blend, None, N)
    assert not two_stage(tiny_blend, n_items, N)  # every movie is a candidate: score them all at once
    plain = dataclasses.replace(tiny_blend, weights=BlendWeights(0.6, 1.0, 0.0))
    assert not two_stage(plain, 30, N)


def test_chunks_keep_the_score_matrix_within_its_budget():
    assert chunk_size(1_000, budget=64_000) == 64
    assert chunk_size(10_000_000, budget=64_000) == 16  # never fewer users than that
    assert chunk_size(1, budget=1 << 30) == 4096  # nor more
