"""Group recommendations from member scores: standardisation, aggregation, masking of what any member rated."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.models.group import aggregate, candidates, ranks, recommend_group, standardise_over


def _rated(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    users = [u for u, row in enumerate(rows) for _ in row]
    items = [i for row in rows for i in row]
    return sp.csr_matrix((np.ones(len(items)), (users, items)), shape=(len(rows), n_items))


def test_standardise_over_the_candidates_only():
    scores = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]])
    mask = np.array([True, True, True, False])
    z = standardise_over(scores, mask)
    assert np.isneginf(z[:, 3]).all()
    assert z[0, :3] == pytest.approx([-np.sqrt(1.5), 0.0, np.sqrt(1.5)])  # mean 0, std 1 over the three
    assert z[1, :3].tolist() == [0.0, 0.0, 0.0]  # a constant member: no preference, no division by zero
    assert np.isneginf(standardise_over(scores, np.zeros(4, bool))).all()


def test_one_members_scale_does_not_dominate():
    # member 0 prefers movie 0 by a huge margin on its scale, member 1 prefers movie 1 by a small one on its
    scores = np.array([[1000.0, 0.0, 500.0], [0.0, 1.0, 0.5]])
    z = standardise_over(scores, np.ones(3, bool))
    assert z[0] == pytest.approx(z[1][[1, 0, 2]])  # the same preference, mirrored, whatever the scale
    assert aggregate(z, "average")[0] == pytest.approx(aggregate(z, "average")[1])


def test_aggregate_average_and_least_misery():
    z = np.array([[2.0, 0.5, -1.0], [-1.0, 0.4, 2.0]])
    assert aggregate(z, "average").tolist() == pytest.approx([0.5, 0.45, 0.5])
    assert aggregate(z, "least_misery").tolist() == [-1.0, 0.4, -1.0]
    with pytest.raises(ValueError, match="unknown strategy 'median'"):
        aggregate(z, "median")  # type: ignore[arg-type]


def test_candidates_mask_anything_any_member_rated_and_outside_the_catalogue():
    rated = _rated([[0, 2], [2, 4]], 6)
    assert candidates(rated).tolist() == [False, True, False, True, False, True]
    catalogue = np.array([True, True, True, True, True, False])
    assert candidates(rated, catalogue).tolist() == [False, True, False, True, False, False]


def test_ranks_best_first_ties_to_the_lower_index_masked_last():
    z = np.array([[0.5, 2.0, -np.inf, 0.5]])
    assert ranks(z).tolist() == [[2, 1, 4, 3]]


def test_recommend_group_lists_no_rated_movie_best_group_score_first():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 40)) * np.array([[1.0], [50.0], [0.01]])
    rated = _rated([[0, 1, 2], [5], [7, 1]], 40)
    for strategy in ("average", "least_misery"):
        out = recommend_group(scores, rated, 10, strategy)
        assert len(out.items) == 10 and not set(out.items.tolist()) & {0, 1, 2, 5, 7}
        assert np.all(np.diff(out.scores) <= 0)
        z = standardise_over(scores, candidates(rated))
        expected = aggregate(z, strategy)
        assert out.scores == pytest.approx(expected[out.items])
        best = max((m for m in range(40) if m not in {0, 1, 2, 5, 7}), key=lambda m: expected[m])
        assert out.items[0] == best
        assert out.member_scores == pytest.approx(z[:, out.items])
        assert out.member_ranks.min() >= 1 and out.member_ranks.max() <= 35  # ranks among the candidates


def test_least_misery_top_is_never_more_miserable_than_average_top():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(2, 200))
    rated = _rated([[3], [4]], 200)
    avg = recommend_group(scores, rated, 1, "average")
    lm = recommend_group(scores, rated, 1, "least_misery")
    assert lm.member_scores[:, 0].min() >= avg.member_scores[:, 0].min()


def test_a_group_that_rated_everything_gets_an_empty_list():
    out = recommend_group(np.ones((2, 3)), _rated([[0, 1], [2]], 3), 5, "average")
    assert len(out.items) == 0 and out.member_ranks.shape == (2, 0)
