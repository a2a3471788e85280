"""The diversity re-rank (``pipeline.models.rerank``) in the batch's scoring, on the session's tiny published
blend (trained on the first 300 real ML-100K users): strength 0 is today's lists exactly, a stronger setting
diversifies monotonically, the popularity penalty moves lists to the tail."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.batch.scoring import score_chunk
from pipeline.core.errors import InputError
from pipeline.evaluation.list_metrics import list_set_metrics
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.rerank import Diversifier, Rerank, content_vectors, popularity_z

N = 10
USERS = np.arange(300)


def _lists(model, rerank: Rerank | None, candidates: int = 200) -> tuple[np.ndarray, np.ndarray]:
    diversifier = Diversifier.build(rerank, model.network.movies, model.rated) if rerank else None
    return score_chunk(model, USERS, model.rated[USERS], N, candidates=candidates, diversifier=diversifier)


def _figures(model, lists: np.ndarray) -> dict[str, float]:
    counts = np.asarray(model.rated.sum(axis=0)).ravel()
    return list_set_metrics(lists, counts, content_vectors(model.network.movies))


@pytest.mark.parametrize("candidates", [0, 200])
def test_zero_settings_give_todays_lists_exactly(tiny_blend, candidates):
    today, today_scores = _lists(tiny_blend, None, candidates)
    same, same_scores = _lists(tiny_blend, Rerank(0.0, 0.0), candidates)
    np.testing.assert_array_equal(same, today)
    np.testing.assert_array_equal(same_scores, today_scores)


def test_stronger_diversity_raises_ild_and_coverage_monotonically(tiny_blend):
    figures = [_figures(tiny_blend, _lists(tiny_blend, Rerank(s))[0]) for s in (0.0, 0.25, 0.5, 0.75)]
    ild = [f["intra_list_diversity"] for f in figures]
    coverage = [f["coverage"] for f in figures]
    assert all(b > a for a, b in zip(ild, ild[1:], strict=False)), ild
    assert all(b > a for a, b in zip(coverage, coverage[1:], strict=False)), coverage


def test_re_ranked_lists_keep_their_ranking_scores_and_exclusions(tiny_blend):
    idx, values = _lists(tiny_blend, Rerank(0.5, 0.5))
    full = tiny_blend.score_users(USERS)
    np.testing.assert_allclose(values, np.take_along_axis(full, idx, axis=1), rtol=1e-4, atol=1e-4)
    assert (idx >= 0).all() and all(len(set(row)) == N for row in idx.tolist())
    assert not tiny_blend.rated[USERS].toarray()[np.arange(len(USERS))[:, None], idx].any()


def test_popularity_penalty_moves_lists_to_the_tail(tiny_blend):
    counts = np.asarray(tiny_blend.rated.sum(axis=0)).ravel()
    plain, penalised = _lists(tiny_blend, None)[0], _lists(tiny_blend, Rerank(0.0, 1.0))[0]
    assert counts[penalised].mean() < counts[plain].mean()
    before, after = _figures(tiny_blend, plain), _figures(tiny_blend, penalised)
    assert after["long_tail_share"] > before["long_tail_share"]
    assert after["novelty"] > before["novelty"]


def test_without_a_rating_head_the_pool_comes_from_the_whole_ranking(tiny_blend):
    plain = dataclasses.replace(tiny_blend, weights=BlendWeights(0.6, 1.0, 0.0))
    a = _figures(plain, _lists(plain, None)[0])
    b = _figures(plain, _lists(plain, Rerank(0.5))[0])
    assert b["intra_list_diversity"] > a["intra_list_diversity"]


def test_the_movie_pairs_cosines_give_the_lists_the_content_vectors_give(tiny_blend, monkeypatch):
    """Up to ``SIMILARITY_MAX_ITEMS`` movies the re-rank reads each pair's cosine from one product of every
    movie's vector; above it, it takes each candidate's vector against the movie just listed. Summed in
    another order, a cosine may differ in its last bit, which can flip a near-tie: nearly every list is the
    same."""
    lists = _lists(tiny_blend, Rerank(0.75))[0]
    diversifier = Diversifier.build(Rerank(0.75), tiny_blend.network.movies, tiny_blend.rated)
    cosines = diversifier.similarity()
    assert cosines is not None and cosines.shape == (tiny_blend.n_items, tiny_blend.n_items)
    np.testing.assert_allclose(
        cosines[:50, :50].numpy(), diversifier.vectors[:50] @ diversifier.vectors[:50].T, atol=1e-6
    )

    monkeypatch.setattr("pipeline.models.rerank.SIMILARITY_MAX_ITEMS", tiny_blend.n_items - 1)
    assert Diversifier.build(Rerank(0.75), tiny_blend.network.movies, tiny_blend.rated).similarity() is None
    from_vectors = _lists(tiny_blend, Rerank(0.75))[0]
    assert (lists == from_vectors).all(axis=1).mean() >= 0.99
    assert not np.array_equal(lists, _lists(tiny_blend, None)[0])  # the re-rank did change the lists


@pytest.mark.parametrize(
    ("strength", "penalty", "message"),
    [
        (-0.1, 0.0, "diversity strength must be between 0 and 1, got -0.1"),
        (1.5, 0.0, "diversity strength must be between 0 and 1, got 1.5"),
        (float("nan"), 0.0, "diversity strength must be between 0 and 1, got nan"),
        (0.0, -1.0, "popularity penalty must be between 0 and 5, got -1.0"),
        (0.0, 9.0, "popularity penalty must be between 0 and 5, got 9.0"),
    ],
)
def test_settings_out_of_bounds_are_refused(strength, penalty, message):
    with pytest.raises(InputError) as err:
        Rerank(strength, penalty)
    assert str(err.value) == message


def test_content_vectors_and_popularity_by_hand():
    from pipeline.features.vocab import MovieContent

    movies = MovieContent(
        genres=np.array([[1, 0], [1, 0], [0, 0]], np.float32),
        text=np.array([[1, 0], [0, 1], [0, 0]], np.float32),
        people={},
        numeric=np.zeros((3, 4), np.float32),
    )
    vectors = content_vectors(movies)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1, 1, 0], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.5)  # same genres, orthogonal text
    z = popularity_z(np.array([0, 10, 100]))
    assert z.mean() == pytest.approx(0.0, abs=1e-6) and list(np.argsort(z)) == [0, 1, 2]
    assert not popularity_z(np.array([3, 3])).any()
