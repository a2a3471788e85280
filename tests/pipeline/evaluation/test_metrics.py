import math

import numpy as np
import pytest

from pipeline.evaluation.metrics import (
    catalog_coverage,
    hit_rate_at_k,
    hits_at_k,
    mae,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics_from_hits,
    recall_at_k,
    rmse,
)


def test_rmse_and_mae_by_hand():
    # errors 1, -2, 0, 1 -> squared 1, 4, 0, 1 -> mean 1.5; absolute 1, 2, 0, 1 -> mean 1.0
    predicted, actual = np.array([4.0, 1.0, 3.0, 5.0]), np.array([3.0, 3.0, 3.0, 4.0])
    assert rmse(predicted, actual) == pytest.approx(math.sqrt(1.5))
    assert mae(predicted, actual) == pytest.approx(1.0)
    assert rmse(actual, actual) == 0.0


def test_rating_metrics_reject_mismatched_or_empty_input():
    with pytest.raises(ValueError):
        rmse(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(ValueError):
        mae(np.array([]), np.array([]))


def test_ndcg_hits_at_ranks_1_and_3_with_two_relevant():
    # hits at ranks 1 and 3: DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5; ideal: 2 hits at ranks 1, 2 = 1 + 1/log2(3)
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k([7, 5, 9, 2], {7, 9}, k=10) == pytest.approx(expected)
    assert ndcg_at_k([7, 9, 5], {7, 9}, k=10) == pytest.approx(1.0)


def test_ndcg_ideal_is_capped_at_k():
    # 5 relevant, k = 2, hit only at rank 2: DCG = 1/log2(3); ideal uses min(5, 2) = 2 ranks: 1 + 1/log2(3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k([0, 1, 2, 3, 4], {1, 2, 3, 4, 5}, k=2) == pytest.approx(expected)


def test_recall_precision_mrr_hr_by_hand():
    ranked, relevant = [10, 11, 12, 13, 14], {12, 14, 99}
    # hits at ranks 3 and 5 of the top 5
    assert recall_at_k(ranked, relevant, k=5) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, relevant, k=5) == pytest.approx(2 / 5)
    assert mrr_at_k(ranked, relevant, k=5) == pytest.approx(1 / 3)
    assert hit_rate_at_k(ranked, relevant, k=5) == 1.0
    # k = 2 cuts both hits off
    assert recall_at_k(ranked, relevant, k=2) == 0.0
    assert mrr_at_k(ranked, relevant, k=2) == 0.0
    assert hit_rate_at_k(ranked, relevant, k=2) == 0.0


def test_no_hits_is_zero_everywhere():
    for metric in (ndcg_at_k, recall_at_k, precision_at_k, mrr_at_k, hit_rate_at_k):
        assert metric([1, 2, 3], {4, 5}, 3) == 0.0


def test_precision_divides_by_k_even_for_a_short_list():
    # one hit in a list of 2 with k = 10: 1/10, not 1/2
    assert precision_at_k([3, 4], {3}, k=10) == pytest.approx(0.1)
    assert recall_at_k([3, 4], {3}, k=10) == 1.0


def test_empty_relevant_and_empty_ranking():
    assert math.isnan(ndcg_at_k([1, 2], set(), 10))
    assert math.isnan(recall_at_k([1, 2], set(), 10))
    assert precision_at_k([1, 2], set(), 10) == 0.0
    assert mrr_at_k([], {1}, 10) == 0.0
    assert ndcg_at_k([], {1}, 10) == 0.0
    with pytest.raises(ValueError):
        ndcg_at_k([1], {1}, 0)


def test_batch_form_agrees_with_per_user_form():
    rng = np.random.default_rng(0)
    n_items, k = 30, 5
    top = np.stack([rng.permutation(n_items)[:k] for _ in range(20)])
    top[3, 3:] = -1  # a padded short list
    relevant = rng.random((20, n_items)) < 0.2
    relevant[4] = False  # a user with nothing relevant
    relevant[5, top[5, 0]] = True
    hits = hits_at_k(top, relevant)
    assert not hits[3, 3:].any()  # padding never hits, even though item 0 may be relevant
    batch = ranking_metrics_from_hits(hits, relevant.sum(axis=1), k)
    per_user = {
        "ndcg": ndcg_at_k,
        "recall": recall_at_k,
        "precision": precision_at_k,
        "mrr": mrr_at_k,
        "hr": hit_rate_at_k,
    }
    for u in range(20):
        ranked = top[u][top[u] >= 0]
        rel = set(np.flatnonzero(relevant[u]).tolist())
        for name, fn in per_user.items():
            expected = fn(ranked, rel, k)
            if math.isnan(expected):
                assert math.isnan(batch[name][u]), (name, u)
            else:
                assert batch[name][u] == pytest.approx(expected), (name, u)
    assert batch["mrr"][5] == 1.0


def test_catalog_coverage():
    # items {0, 1, 2, 5} of 10 recommended; -1 padding ignored
    assert catalog_coverage(np.array([[0, 1, 2], [2, 5, -1]]), 10) == pytest.approx(0.4)
    assert catalog_coverage([[3], [3]], 4) == pytest.approx(0.25)
    assert catalog_coverage([], 4) == 0.0


def test_list_recall_by_hand():
    from pipeline.evaluation.metrics import list_recall

    reference = np.array([[1, 2, 3, 4], [7, 8, -1, -1], [-1, -1, -1, -1]])
    other = np.array([[4, 9, 1, 0], [8, 7, 5, 6], [1, 2, 3, 4]])
    # row 0: 2 of 4 found; row 1: 2 of 2 (padding ignored); row 2: empty reference, skipped
    assert list_recall(reference, other) == pytest.approx((0.5 + 1.0) / 2)
    # an item of the same id in another row does not count
    assert list_recall(np.array([[1], [2]]), np.array([[2], [1]])) == 0.0
    assert np.isnan(list_recall(np.array([[-1]]), np.array([[3]])))
    with pytest.raises(ValueError):
        list_recall(np.zeros((2, 1)), np.zeros((3, 1)))
