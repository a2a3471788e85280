"""Top-N selection and retrieve-then-re-rank: one implementation for the evaluation (``pipeline.ensemble``)
and the weekly batch (``pipeline.batch``), so the lists the evaluation measures are made the way the
published ones are."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

DEFAULT_CANDIDATES = 500  # movies per user the rating head re-ranks


def mask_rows(scores: np.ndarray, marked: sp.csr_matrix) -> np.ndarray:
    """``scores`` (changed in place and returned) with ``-inf`` wherever the row-aligned ``marked`` has an
    entry: the movies a user rated, so that they are never listed."""
    scores[np.repeat(np.arange(marked.shape[0]), np.diff(marked.indptr)), marked.indices] = -np.inf
    return scores


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's ``n`` highest scores, best first (``-inf`` entries are never
    returned: a row with fewer finite scores gets a shorter tail marked by index -1)."""
    import torch

    n = min(n, scores.shape[1])
    if n == 0:
        return np.zeros((len(scores), 0), np.int64), np.zeros((len(scores), 0), scores.dtype)
    # torch.topk: sorted, multi-threaded, about 5x numpy's argpartition + argsort on wide rows.
    values, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), n, dim=1, sorted=True)
    values, idx = values.numpy(), idx.numpy()
    idx[~np.isfinite(values)] = -1
    return idx, values


def retrieve_and_rerank(cheap: np.ndarray, k: int,
                        rerank: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top ``k`` columns by ``cheap`` (``-inf``: never a candidate), and their full scores:
    ``cheap`` plus ``rerank(candidates)`` (the costly term for a row of column indices per row, -1 padded).
    Returns (candidates, full scores), best retrieved first; -1 / ``-inf`` where a row had fewer than k."""
    found, values = top_n(cheap, k)
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
