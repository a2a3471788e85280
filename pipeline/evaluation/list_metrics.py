"""What a set of recommendation lists looks like as a whole: pure functions over numpy arrays.

A list set is a ``(n_users, N)`` integer array of movie indices, best first, ``-1`` for padding (a short
list); "listed rows" are its non-negative entries. Popularity is each movie's count of train ratings, by
movie index (``popularity_counts``). Definitions:

* Coverage: distinct listed movies / movies in the catalogue (``metrics.catalog_coverage``).
* Intra-list diversity (ILD): per list, the mean over its pairs of distinct entries of ``1 - cosine`` of the
  two movies' content vectors, averaged over lists with at least two entries. A zero vector (no content)
  counts as dissimilar to everything (cosine 0).
* Novelty: the mean over listed rows of the self-information ``-log2(share)``, ``share = (ratings + 1) /
  (all ratings + movies)`` — add-one smoothed over the catalogue, so a movie nobody rated counts as rated
  once, as the SQL function ``compare_batches`` (migration 0006) computes it.
* Long-tail share: the share of listed rows whose movie is outside the head, the head being the most-rated
  movies that together hold ``head_share`` (default ``LONG_TAIL_HEAD_SHARE`` = 80%) of the train ratings —
  the fewest such movies, in order of ratings (ties to the lower index), the one crossing the line included.
* Gini of exposure: the Gini coefficient of the listed rows per movie over the whole catalogue, movies
  never listed included (0: every movie listed equally often; towards 1: a few movies take every slot).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.core.defaults import LONG_TAIL_HEAD_SHARE
from pipeline.evaluation.metrics import catalog_coverage

__all__ = [
    "LIST_METRIC_NAMES",
    "exposure_gini",
    "head_items",
    "intra_list_diversity",
    "list_set_metrics",
    "long_tail_share",
    "novelty",
    "popularity_counts",
]

# The keys of ``list_set_metrics``'s answer besides the counts ``users`` and ``rows``.
LIST_METRIC_NAMES = ("coverage", "intra_list_diversity", "novelty", "long_tail_share", "gini")

_CHUNK_USERS = 8192  # lists per step of the ILD (bounds its (lists, dim) sums)


def _lists(lists: np.ndarray, n_items: int) -> np.ndarray:
    lists = np.asarray(lists)
    if lists.ndim != 2:
        raise ValueError(f"a list set is 2-D (users x N), got shape {lists.shape}")
    if lists.size and not np.issubdtype(lists.dtype, np.integer):
        raise ValueError(f"a list set holds integer movie indices, got {lists.dtype}")
    lists = lists.astype(np.int64, copy=False)
    if lists.size and int(lists.max()) >= n_items:
        raise ValueError(f"movie index {int(lists.max())} is outside the catalogue of {n_items}")
    return lists


def _counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("popularity is one count per movie of the catalogue")
    if (counts < 0).any():
        raise ValueError("popularity counts cannot be negative")
    return counts


def popularity_counts(item_idx: np.ndarray, n_items: int) -> np.ndarray:
    """Train ratings per movie index (``int64``, length ``n_items``) from the movie index of each rating."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    item_idx = np.asarray(item_idx, np.int64).ravel()
    if item_idx.size and (item_idx.min() < 0 or item_idx.max() >= n_items):
        raise ValueError("a rating's movie index is outside the catalogue")
    return np.bincount(item_idx, minlength=n_items)


def intra_list_diversity(lists: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean over lists (two entries or more) of the mean pairwise ``1 - cosine``; NaN when no list has two."""
    vectors = np.asarray(item_vectors, np.float64)
    if vectors.ndim != 2:
        raise ValueError("item_vectors is 2-D (movies x dimensions)")
    lists = _lists(lists, len(vectors))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    self_sim = (norms[:, 0] > 0).astype(np.float64)  # |v|^2 of a unit vector; 0 for a movie without one
    total, n_lists = 0.0, 0
    for start in range(0, len(lists), _CHUNK_USERS):
        chunk = lists[start : start + _CHUNK_USERS]
        valid = chunk >= 0
        # Each list's sum of unit vectors as a sparse (lists x movies) product: no (lists, N, dim) gather.
        rows = np.broadcast_to(np.arange(len(chunk))[:, None], chunk.shape)[valid]
        listed = sp.csr_matrix((np.ones(len(rows)), (rows, chunk[valid])), shape=(len(chunk), len(vectors)))
        sums = listed @ unit
        # sum over ordered pairs i != j of v_i . v_j = |sum v|^2 - sum |v|^2
        pair_sim = np.einsum("ud,ud->u", sums, sums) - listed @ self_sim
        n = valid.sum(axis=1).astype(np.float64)
        keep = n >= 2
        total += float(np.sum(1.0 - pair_sim[keep] / (n[keep] * (n[keep] - 1.0))))
        n_lists += int(keep.sum())
    return total / n_lists if n_lists else float("nan")


def novelty(lists: np.ndarray, counts: np.ndarray) -> float:
    """Mean self-information ``-log2((ratings + 1) / (all ratings + movies))`` of listed rows (NaN: none)."""
    counts = _counts(counts)
    lists = _lists(lists, len(counts))
    listed = lists[lists >= 0]
    if listed.size == 0:
        return float("nan")
    share = (counts[listed] + 1.0) / (counts.sum() + len(counts))
    return float(np.mean(-np.log2(share)))


def head_items(counts: np.ndarray, head_share: float = LONG_TAIL_HEAD_SHARE) -> np.ndarray:
    """Boolean mask of the head: the fewest most-rated movies holding ``head_share`` of all ratings."""
    counts = _counts(counts)
    if not 0.0 < head_share <= 1.0:
        raise ValueError("head_share must be in (0, 1]")
    head = np.zeros(len(counts), bool)
    total = counts.sum()
    if total == 0:
        return head  # nothing rated: no head, every movie is in the tail
    order = np.argsort(-counts, kind="stable")  # most rated first, ties to the lower index
    cumulative = np.cumsum(counts[order])
    n_head = int(np.searchsorted(cumulative, head_share * total - 1e-9 * total)) + 1
    head[order[:n_head]] = True
    return head


def long_tail_share(lists: np.ndarray, counts: np.ndarray, head_share: float = LONG_TAIL_HEAD_SHARE) -> float:
    """Share of listed rows whose movie is outside the head (``head_items``); NaN when nothing is listed."""
    head = head_items(counts, head_share)
    lists = _lists(lists, len(head))
    listed = lists[lists >= 0]
    return float(np.mean(~head[listed])) if listed.size else float("nan")


def exposure_gini(lists: np.ndarray, n_items: int) -> float:
    """Gini coefficient of listed rows per movie over all ``n_items`` movies (0 when nothing is listed)."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    lists = _lists(lists, n_items)
    exposure = np.sort(np.bincount(lists[lists >= 0], minlength=n_items)).astype(np.float64)
    total = exposure.sum()
    if total == 0:
        return 0.0
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    return float(2.0 * np.sum(ranks * exposure) / (n_items * total) - (n_items + 1.0) / n_items)


def list_set_metrics(
    lists: np.ndarray,
    counts: np.ndarray,
    item_vectors: np.ndarray | None = None,
    *,
    k: int | None = None,
    head_share: float = LONG_TAIL_HEAD_SHARE,
) -> dict[str, float]:
    """Every figure of a list set: ``LIST_METRIC_NAMES`` plus ``users`` (lists) and ``rows`` (listed rows).

    ``lists``: ``(n_users, N)`` movie indices, ``-1`` padding; cut to the first ``k`` columns when ``k`` is
    given. ``counts``: train ratings per movie index (its length is the catalogue size). ``item_vectors``:
    content vectors by movie index; without them ``intra_list_diversity`` is NaN.
    """
    counts = _counts(counts)
    lists = _lists(lists, len(counts))
    if k is not None:
        if k < 1:
            raise ValueError("k must be >= 1")
        lists = lists[:, :k]
    if item_vectors is not None and len(item_vectors) != len(counts):
        raise ValueError(f"{len(item_vectors)} content vectors for a catalogue of {len(counts)} movies")
    return {
        "users": float(len(lists)),
        "rows": float(np.count_nonzero(lists >= 0)),
        "coverage": catalog_coverage(lists, len(counts)),
        "intra_list_diversity": (
            intra_list_diversity(lists, item_vectors) if item_vectors is not None else float("nan")
        ),
        "novelty": novelty(lists, counts),
        "long_tail_share": long_tail_share(lists, counts, head_share),
        "gini": exposure_gini(lists, len(counts)),
    }
