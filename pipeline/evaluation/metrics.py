"""Evaluation metrics: pure functions over numpy arrays.

Rating metrics compare predicted with true ratings. Ranking metrics take a ranked list of item indices
(best first) and the set of relevant items, with these definitions at cut-off ``k`` (ranks are 1-based):

* NDCG@k: binary gains, ``DCG = sum over hits at rank r <= k of 1 / log2(r + 1)``, divided by the ideal DCG
  of ``min(|relevant|, k)`` hits at ranks 1, 2, ...
* Recall@k: hits in the top k / |relevant|.
* Precision@k: hits in the top k / k (k, not the list length, so a short list is not rewarded).
* MRR@k: 1 / rank of the first relevant item in the top k, 0 when there is none.
* HR@k (hit rate): 1 if any of the top k is relevant, else 0.
* Catalog coverage: distinct items in all users' top k / number of items.
* List recall: how much of a reference list (e.g. exhaustive scoring's top N) another list (e.g. a
  retrieve-then-re-rank top N) holds, ``|reference ∩ other| / |reference|`` per row, averaged over rows.

NDCG and Recall are undefined for an empty relevant set and return NaN; the other metrics are 0 then.
Ranked lists are assumed to hold distinct items; the batch form pads short lists with -1, which never hits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

__all__ = [
    "catalog_coverage",
    "list_recall",
    "hit_rate_at_k",
    "hits_at_k",
    "mae",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics_from_hits",
    "recall_at_k",
    "rmse",
]


def _pair(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, a = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
    if p.shape != a.shape:
        raise ValueError(f"predicted {p.shape} and actual {a.shape} differ in shape")
    if p.size == 0:
        raise ValueError("no ratings to compare")
    return p, a


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error (float64 accumulation)."""
    p, a = _pair(predicted, actual)
    return float(np.sqrt(np.mean((p - a) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error (float64 accumulation)."""
    p, a = _pair(predicted, actual)
    return float(np.mean(np.abs(p - a)))


# --- batch form: everything derives from a boolean hit matrix -----------------------------------------------


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # rank r -> 1 / log2(r + 1)


def hits_at_k(top_k: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Boolean ``(n_users, k)`` hit matrix.

    ``top_k``: ``(n_users, k)`` item indices, best first, -1 for padding. ``relevant``: ``(n_users, n_items)``
    boolean (dense) relevance of every item for the same users, row for row.
    """
    top_k = np.asarray(top_k)
    relevant = np.asarray(relevant, bool)
    if top_k.ndim != 2 or relevant.ndim != 2 or top_k.shape[0] != relevant.shape[0]:
        raise ValueError(f"top_k {top_k.shape} and relevant {relevant.shape} do not pair up row for row")
    valid = top_k >= 0
    return np.take_along_axis(relevant, np.where(valid, top_k, 0), axis=1) & valid


def ranking_metrics_from_hits(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user NDCG, Recall, Precision, MRR and HR at ``k`` from a ``(n_users, >=k)`` hit matrix.

    ``n_relevant[u]`` is the size of user u's whole relevant set (not only the hits), which NDCG's ideal DCG
    and Recall need. Returns float64 arrays keyed ``ndcg, recall, precision, mrr, hr``.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    hits = np.asarray(hits, bool)
    if hits.ndim != 2:
        raise ValueError("hits must be 2-D (users x ranks)")
    hits = hits[:, :k]
    n_relevant = np.asarray(n_relevant, np.float64)
    if n_relevant.shape != (hits.shape[0],):
        raise ValueError("n_relevant needs one entry per row of hits")
    disc = _discounts(k)
    width = hits.shape[1]
    n_hits = hits.sum(axis=1).astype(np.float64)
    dcg = hits.astype(np.float64) @ disc[:width]
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_relevant, k).astype(np.int64)]
    any_hit = hits.any(axis=1)
    # index of the first hit; meaningless without one (masked below); argmax refuses zero-width input
    first = np.argmax(hits, axis=1) if width else np.zeros(len(hits), np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndcg = np.where(n_relevant > 0, dcg / ideal, np.nan)
        recall = np.where(n_relevant > 0, n_hits / n_relevant, np.nan)
    return {
        "ndcg": ndcg,
        "recall": recall,
        "precision": n_hits / k,
        "mrr": np.where(any_hit, 1.0 / (first + 1.0), 0.0),
        "hr": any_hit.astype(np.float64),
    }


# --- per-user form ------------------------------------------------------------------------------------------


def _user_hits(
    ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int
) -> tuple[np.ndarray, int]:
    if k < 1:
        raise ValueError("k must be >= 1")
    ranked = np.asarray(ranked, np.int64).ravel()[:k]
    rel = np.unique(
        np.asarray(list(relevant) if isinstance(relevant, (set, frozenset)) else relevant, np.int64).ravel()
    )
    return np.isin(ranked, rel)[None, :], len(rel)


def _one(
    name: str, ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int
) -> float:
    hits, n_rel = _user_hits(ranked, relevant, k)
    return float(ranking_metrics_from_hits(hits, np.array([n_rel]), k)[name][0])


def ndcg_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int) -> float:
    """NDCG@k of one ranked list (binary gains, log2 discount); NaN when ``relevant`` is empty."""
    return _one("ndcg", ranked, relevant, k)


def recall_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int) -> float:
    """Hits in the top k / |relevant|; NaN when ``relevant`` is empty."""
    return _one("recall", ranked, relevant, k)


def precision_at_k(
    ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int
) -> float:
    """Hits in the top k / k."""
    return _one("precision", ranked, relevant, k)


def mrr_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int) -> float:
    """1 / rank of the first relevant item within the top k, else 0."""
    return _one("mrr", ranked, relevant, k)


def hit_rate_at_k(
    ranked: Sequence[int] | np.ndarray, relevant: Collection[int] | np.ndarray, k: int
) -> float:
    """1.0 if any of the top k is relevant, else 0.0."""
    return _one("hr", ranked, relevant, k)


def catalog_coverage(top_k_lists: np.ndarray | Iterable[Sequence[int]], n_items: int) -> float:
    """Distinct items recommended to anyone / ``n_items``; negative entries (padding) are ignored."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    if isinstance(top_k_lists, np.ndarray):
        flat = top_k_lists.ravel()
    else:
        lists = [np.asarray(lst, np.int64).ravel() for lst in top_k_lists]
        flat = np.concatenate(lists) if lists else np.empty(0, np.int64)
    flat = flat[flat >= 0]
    return len(np.unique(flat)) / n_items


def list_recall(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over rows of the share of ``reference``'s items (−1 padding ignored) that ``other``'s same row
    holds; rows with an empty reference are skipped (NaN when every row is empty)."""
    reference, other = np.asarray(reference, np.int64), np.asarray(other, np.int64)
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference rows but {len(other)} other rows")
    width = int(max(reference.max(initial=-1), other.max(initial=-1))) + 2
    rows = np.arange(len(reference))[:, None]
    ref_keys = np.where(reference >= 0, rows * width + reference, -1)
    other_keys = np.where(other >= 0, rows * width + other, -2)
    found = np.isin(ref_keys, other_keys) & (reference >= 0)
    sizes = (reference >= 0).sum(axis=1)
    keep = sizes > 0
    return float(np.mean(found.sum(axis=1)[keep] / sizes[keep])) if keep.any() else float("nan")
