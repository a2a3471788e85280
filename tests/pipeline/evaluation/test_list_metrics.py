import math

import numpy as np
import pytest

from pipeline.evaluation.list_metrics import (
    LIST_METRIC_NAMES,
    exposure_gini,
    head_items,
    intra_list_diversity,
    list_set_metrics,
    long_tail_share,
    novelty,
    popularity_counts,
)

# Four movies: 0 and 1 point the same way, 2 is orthogonal to both, 3 has no content (zero vector).
VECTORS = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.0]])


def test_popularity_counts_by_movie_index():
    assert popularity_counts(np.array([0, 2, 2, 2, 1]), 4).tolist() == [1, 1, 3, 0]
    with pytest.raises(ValueError):
        popularity_counts(np.array([4]), 4)


def test_ild_by_hand():
    # list [0, 1]: one pair, cosine 1 -> 0; list [0, 2, -1]: cosine 0 -> 1; list [1, 0, 2]: pairs 0, 1, 1
    lists = np.array([[0, 1, -1], [0, 2, -1], [1, 0, 2]])
    expected = (0.0 + 1.0 + 2.0 / 3.0) / 3
    assert intra_list_diversity(lists, VECTORS) == pytest.approx(expected)


def test_ild_skips_short_lists_and_treats_no_content_as_dissimilar():
    assert intra_list_diversity(np.array([[0, -1], [1, 3]]), VECTORS) == pytest.approx(1.0)
    assert math.isnan(intra_list_diversity(np.array([[2, -1], [-1, -1]]), VECTORS))


def test_ild_in_chunks_equals_one_pass():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8))
    lists = np.stack([rng.choice(50, size=10, replace=False) for _ in range(9000)])  # two chunks of lists
    per_list = []
    for row in lists:
        unit = vectors[row] / np.linalg.norm(vectors[row], axis=1, keepdims=True)
        sim = unit @ unit.T
        per_list.append(np.mean(1.0 - sim[~np.eye(10, dtype=bool)]))
    assert intra_list_diversity(lists, vectors) == pytest.approx(np.mean(per_list))


def test_novelty_is_smoothed_self_information():
    counts = np.array([6, 2, 0, 0])  # 8 ratings + 4 movies = 12; shares 7/12, 3/12, 1/12
    lists = np.array([[0, 2], [1, -1]])
    expected = (-math.log2(7 / 12) - math.log2(1 / 12) - math.log2(3 / 12)) / 3
    assert novelty(lists, counts) == pytest.approx(expected)
    assert math.isnan(novelty(np.full((2, 2), -1), counts))


def test_head_holds_the_share_of_ratings():
    counts = np.array([10, 50, 30, 5, 5])  # 100 ratings: 50 + 30 = 80 -> movies 1 and 2 are the head
    assert head_items(counts, 0.8).tolist() == [False, True, True, False, False]
    # 81%: the movie that crosses the line (10) joins the head
    assert head_items(counts, 0.81).tolist() == [True, True, True, False, False]
    assert head_items(counts, 1.0).sum() == 5
    assert not head_items(np.zeros(3)).any()
    with pytest.raises(ValueError):
        head_items(counts, 0.0)


def test_long_tail_share_counts_listed_rows():
    counts = np.array([10, 50, 30, 5, 5])
    lists = np.array([[1, 0, 3], [2, 4, -1]])  # tail rows: 0, 3, 4 of 5 listed
    assert long_tail_share(lists, counts) == pytest.approx(3 / 5)


def test_gini_of_exposure():
    assert exposure_gini(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    # one movie of four takes every slot: (2 * 4 * 3) / (4 * 3) - 5 / 4 = 0.75 = (n - 1) / n
    assert exposure_gini(np.array([[0], [0], [0]]), 4) == pytest.approx(0.75)
    # exposures 0, 1, 3 over 3 movies: mean absolute difference over ordered pairs 12 / 9, over twice the
    # mean 2 * 4 / 3 -> 0.5
    assert exposure_gini(np.array([[1, 2], [2, -1], [2, -1]]), 3) == pytest.approx(0.5)
    assert exposure_gini(np.full((2, 2), -1), 3) == 0.0


def test_list_set_metrics_names_and_cut():
    counts = np.array([6, 2, 0, 0])
    lists = np.array([[0, 2, 1], [1, 3, -1]])
    figures = list_set_metrics(lists, counts, VECTORS)
    assert set(figures) == {"users", "rows", *LIST_METRIC_NAMES}
    assert figures["users"] == 2.0 and figures["rows"] == 5.0
    assert figures["coverage"] == pytest.approx(1.0)
    assert figures["novelty"] == pytest.approx(novelty(lists, counts))
    top1 = list_set_metrics(lists, counts, VECTORS, k=1)
    assert top1["coverage"] == pytest.approx(0.5) and top1["rows"] == 2.0
    assert math.isnan(top1["intra_list_diversity"])
    assert math.isnan(list_set_metrics(lists, counts)["intra_list_diversity"])


def test_list_set_metrics_rejects_bad_input():
    counts = np.array([1, 1, 1])
    with pytest.raises(ValueError, match="outside the catalogue"):
        list_set_metrics(np.array([[0, 3]]), counts)
    with pytest.raises(ValueError, match="2-D"):
        list_set_metrics(np.array([0, 1]), counts)
    with pytest.raises(ValueError, match="content vectors"):
        list_set_metrics(np.array([[0, 1]]), counts, np.ones((2, 2)))
    with pytest.raises(ValueError, match="integer"):
        list_set_metrics(np.array([[0.0, 1.0]]), counts)
