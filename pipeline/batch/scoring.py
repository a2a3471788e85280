"""Scoring one chunk of users: each user's top-N movies by the published blend, retrieve-then-re-rank.

Retrieve, then re-rank: the ranking's cheap terms (the network's dot product, EASE) are computed for every
movie, its costly one (the network's rating head, an MLP per pair) only for each user's top ``candidates`` by
the cheap terms. The re-ranked scores are the exact ranking scores of those movies, so the lists equal
exhaustive scoring's wherever a movie of the exhaustive top N is among the candidates (``bench/batch``
measures how often). ``candidates=0``: every term for every movie.

A ``Diversifier`` (``pipeline.models.rerank``) with non-zero settings then re-ranks each user's top movies by
the ranking (its pool) for diversity and against popularity; without one, or with zero settings, the lists
are the ranking's top N exactly."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.models.blend.published import PublishedBlend
from pipeline.models.rerank import Diversifier
from pipeline.models.topn import mask_rows, retrieve_and_rerank, top_k

SCORE_BUDGET = 16 << 20  # floats in one chunk's user x movie score matrix (64 MB)


def score_chunk(
    model: PublishedBlend,
    users: np.ndarray,
    exclude: sp.csr_matrix,
    n: int,
    catalogue: np.ndarray | None = None,
    candidates: int | None = None,
    diversifier: Diversifier | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` movie indices and scores for model user indices ``users``; ``exclude`` rows (aligned with
    ``users``) mark movies to leave out; ``catalogue``: a boolean mask of the movies that may be listed.

    ``candidates`` K: when the ranking has a rating-head term and K is below the catalogue size, the
    rating head scores only each user's top K by the cheap terms (see the module doc); None or 0: all.
    ``diversifier``: the re-rank after scoring (None or inactive: none); the scores returned stay the
    ranking's, so a re-ranked list's scores need not fall with rank.
    """
    rerank = diversifier if diversifier is not None and diversifier.settings.active else None
    reranked = two_stage(model, candidates, n)
    scores = (model.retrieval_scores if reranked else model.score_users)(users).astype(np.float32, copy=False)
    mask_rows(scores, exclude)
    if catalogue is not None:
        scores[:, ~catalogue] = -np.inf
    if not reranked:
        if rerank is not None:
            found, values = top_k(scores, min(rerank.pool, scores.shape[1]))
            return rerank.apply(found, values, n)
        return top_k(scores, n)
    found, full = retrieve_and_rerank(
        scores,
        max(int(candidates), n),  # type: ignore[arg-type]
        lambda cols: model.rerank_scores(users, cols),
    )
    if rerank is not None:
        return rerank.apply(found, full, n)
    order, values = top_k(full, n)
    idx = np.take_along_axis(found, np.maximum(order, 0), axis=1)
    idx[order < 0] = -1
    return idx, values


def two_stage(model: PublishedBlend, candidates: int | None, n: int) -> bool:
    return bool(model.rerank_weight > 0 and candidates and max(candidates, n) < model.n_items)


def chunk_size(n_items: int, budget: int = SCORE_BUDGET) -> int:
    return int(max(16, min(4096, budget // max(n_items, 1))))
