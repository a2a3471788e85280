"""Top-N selection and retrieve-then-re-rank: one implementation, with one tie rule, for the evaluation
(``pipeline.evaluation``) and the weekly batch (``pipeline.batch``), so the lists the evaluation measures are
made exactly the way the published ones are."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def mask_rows(scores: np.ndarray, marked: sp.csr_matrix) -> np.ndarray:
    """``scores`` (changed in place and returned) with ``-inf`` wherever the row-aligned ``marked`` has an
    entry: the movies a user rated, so that they are never listed."""
    scores[np.repeat(np.arange(marked.shape[0]), np.diff(marked.indptr)), marked.indices] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's ``k`` highest scores, best first; ties go to the lower column
    index, so equal scores still give one deterministic list.

    Both arrays are ``(n_rows, k)``. ``-inf`` entries (masked) are never returned: a row with fewer than ``k``
    finite scores ends in padding, index -1 and value ``-inf``. NaN scores are rejected: they would sort
    arbitrarily.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError("scores must be 2-D (users x items)")
    if k < 1:
        raise ValueError("k must be >= 1")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_rows, n_items = scores.shape
    k_eff = min(k, n_items)
    idx = np.full((n_rows, k), -1, np.int64)
    values = np.full((n_rows, k), -np.inf, scores.dtype if scores.dtype.kind == "f" else np.float64)
    if n_rows == 0 or n_items == 0:
        return idx, values
    # torch.topk (multi-threaded, ~5x numpy's partition on wide rows) finds each row's k best; it promises
    # no order among equal scores, so ties are put in index order inside the list, and a row where a score
    # equal to its k-th also stands outside the list (a tie across the cut) is selected exactly.
    import torch

    top_values, top_idx = torch.topk(
        torch.from_numpy(np.ascontiguousarray(scores)), k_eff, dim=1, sorted=True
    )
    found, best = top_idx.numpy(), top_values.numpy()
    order = np.lexsort((found, -best))  # per row: score desc, then index asc
    found, best = np.take_along_axis(found, order, 1), np.take_along_axis(best, order, 1)
    kth = best[:, -1:]
    ties = scores == kth
    cut = np.flatnonzero(np.isfinite(kth[:, 0]) & (ties.sum(axis=1) > (best == kth).sum(axis=1)))
    if len(cut):
        found[cut], best[cut] = _exact_top(ties[cut], kth[cut, 0], found[cut], best[cut])
    idx[:, :k_eff], values[:, :k_eff] = found, best
    idx[np.isneginf(values)] = -1
    return idx, values


def _exact_top(
    ties: np.ndarray, kth: np.ndarray, found: np.ndarray, best: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``found``/``best`` (score desc, index asc; filled in and returned) of rows whose ``kth`` best score is
    tied across the cut, ``ties`` marking the columns scoring exactly ``kth``: every score above it is in the
    list already, in its place; the rest of the list is the lowest-index tied columns. In proportion to the
    tied entries, not a sort of them (a constant model ties every movie: sorting took minutes at ML-25M)."""
    n_above = (best > kth[:, None]).sum(axis=1)
    rows, cols = np.nonzero(ties)  # row by row, each row's tied columns ascending
    rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(len(ties)))[rows]
    keep = rank < (found.shape[1] - n_above)[rows]
    rows, cols, at = rows[keep], cols[keep], n_above[rows[keep]] + rank[keep]
    found[rows, at], best[rows, at] = cols, kth[rows]
    return found, best


def retrieve_and_rerank(
    cheap: np.ndarray, k: int, rerank: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top ``k`` columns by ``cheap`` (``-inf``: never a candidate), and their full scores:
    ``cheap`` plus ``rerank(candidates)`` (the costly term for a row of column indices per row, -1 padded).
    Returns (candidates, full scores), best retrieved first; -1 / ``-inf`` where a row had fewer than k."""
    found, values = top_k(cheap, min(k, cheap.shape[1]))
    full = values + rerank(found)
    full[found < 0] = -np.inf
    return found, full


def scatter_rows(found: np.ndarray, values: np.ndarray, n_columns: int) -> np.ndarray:
    """A ``len(found) x n_columns`` matrix holding ``values`` at each row's ``found`` columns (-1: none) and
    ``-inf`` everywhere else: candidates' scores in the shape of a whole-catalogue score matrix."""
    out = np.full((len(found), n_columns), -np.inf, np.float32)
    rows, at = np.nonzero(found >= 0)
    out[rows, found[rows, at]] = values[rows, at]
    return out


def top_k_among(found: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of each row's candidates: ``found`` column indices (-1: none) with their ``values``; the
    lists ``top_k(scatter_rows(found, values, n_columns), k)`` gives, without the whole rows, when each
    row's ``found`` ascends (-1 padding last), so that a tie goes to the lower column as it does there."""
    values = np.where(found >= 0, values, -np.inf).astype(values.dtype, copy=False)
    at, best = top_k(values, k)
    return np.where(at >= 0, np.take_along_axis(found, np.maximum(at, 0), 1), -1), best
