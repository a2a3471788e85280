"""Top-N selection and retrieve-then-re-rank (``pipeline.models.topn``): one tie rule for the evaluation and
the batch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.models.topn import mask_rows, retrieve_and_rerank, scatter_rows, top_k, top_k_among


def test_top_k_orders_best_first_and_never_returns_masked_entries():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, 0.2, -np.inf]], np.float32)
    idx, values = top_k(scores, 3)
    assert idx.tolist() == [[1, 3, 0], [2, -1, -1]]
    assert values[0].tolist() == pytest.approx([0.9, 0.5, 0.1])
    assert values[1, 1:].tolist() == [-np.inf, -np.inf] and values.dtype == np.float32


def test_top_k_breaks_ties_by_lower_index_and_pads_masked_items():
    scores = np.array(
        [[0.0, 2.0, 2.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0], [-np.inf, 3.0, -np.inf, -np.inf, -np.inf]]
    )
    assert top_k(scores, 3)[0].tolist() == [[1, 2, 4], [0, 1, 2], [1, -1, -1]]
    assert top_k(scores[:1], 7)[0].tolist() == [[1, 2, 4, 3, 0, -1, -1]]  # k > n_items pads too
    # scores above a tie keep their places, the tie fills the rest by index, masked movies never
    mixed = np.array([[-np.inf, 1.0, 1.0, -np.inf, 1.0, 1.0], [2.0, 1.0, 1.0, 1.0, 3.0, 1.0]], np.float32)
    idx, values = top_k(mixed, 3)
    assert idx.tolist() == [[1, 2, 4], [4, 0, 1]] and values.tolist() == [[1, 1, 1], [3, 2, 1]]
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="k must be"):
        top_k(scores, 0)


def test_top_k_agrees_with_a_stable_sort_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, (50, 300)).astype(np.float32)  # many ties
    idx, values = top_k(scores, 25)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_mask_rows_hides_each_rows_marked_columns():
    scores = np.zeros((2, 4), np.float32)
    marked = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 0, 0]]))
    assert mask_rows(scores, marked) is scores
    assert np.isneginf(scores).tolist() == [[True, False, False, True], [False, True, False, False]]


def test_retrieve_and_rerank_adds_the_costly_term_to_the_retrieved_only():
    cheap = np.array([[3.0, 1.0, 2.0, -np.inf], [0.0, 5.0, -np.inf, -np.inf]], np.float32)
    seen = []

    def rerank(found):
        seen.append(found.copy())
        return np.where(found >= 0, 10.0 * found, np.nan).astype(np.float32)

    found, full = retrieve_and_rerank(cheap, 3, rerank)
    assert found.tolist() == [[0, 2, 1], [1, 0, -1]]
    np.testing.assert_array_equal(seen[0], found)  # asked once, for the retrieved columns
    assert full.tolist() == [[3.0, 22.0, 11.0], [15.0, 0.0, -np.inf]]
    matrix = scatter_rows(found, full, 4)
    assert matrix.tolist() == [[3.0, 11.0, 22.0, -np.inf], [0.0, 15.0, -np.inf, -np.inf]]


def test_top_k_among_candidates_lists_what_their_scattered_rows_list():
    rng = np.random.default_rng(1)
    found = np.sort(rng.choice(400, (30, 40)), axis=1)  # ascending, duplicates dropped below
    found[:, 1:][found[:, 1:] == found[:, :-1]] = -1
    found = np.sort(np.where(found < 0, 10**6, found), axis=1)
    found[found == 10**6] = -1  # padding last
    found[3, 2:] = -1  # a row with two candidates: padded lists
    values = rng.integers(0, 6, found.shape).astype(np.float32)  # many ties
    values[found < 0] = np.nan  # whatever stands at padding is never read
    idx, best = top_k_among(found, values, 10)
    expected, expected_values = top_k(scatter_rows(found, values, 400), 10)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(best, expected_values)
    assert (idx[3, 2:] == -1).all() and (idx[3, :2] >= 0).all()
