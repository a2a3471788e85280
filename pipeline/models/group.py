"""Recommendations for a group watching together, from each member's ranking scores.

Every member scores every movie with the published ranking (``PublishedBlend.score_users``); those scores
are standardised per member over the group's candidates (the movies no member has rated), so one member's
wider scale does not outweigh the others, then aggregated per movie:

* ``average``: the mean of the members' standardised scores (the group as a whole likes it most);
* ``least_misery``: their minimum (the movie its least keen member likes most).

Pure numpy on score matrices: the API server and the pipeline share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from pipeline.models.topn import top_k

Strategy = Literal["average", "least_misery"]
STRATEGIES: tuple[Strategy, ...] = ("average", "least_misery")


@dataclass(frozen=True)
class GroupList:
    """The group's list, best first, and why: each member's standardised score and rank of each movie."""

    items: np.ndarray  # (n,) movie indices
    scores: np.ndarray  # (n,) group scores
    member_scores: np.ndarray  # (members, n) standardised scores of the listed movies
    member_ranks: np.ndarray  # (members, n) 1 = that member's favourite among the group's candidates


def candidates(rated: sp.csr_matrix, catalogue: np.ndarray | None = None) -> np.ndarray:
    """The movies the group may be offered: rated by no member (``rated``: members x movies) and, with a
    ``catalogue`` mask, still in the catalogue."""
    keep = np.asarray(rated.sum(axis=0)).ravel() == 0
    return keep if catalogue is None else keep & catalogue


def standardise_over(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each row's scores as z-scores over the ``mask`` columns (a constant row: zeros there); ``-inf`` at
    every other column."""
    scores = np.asarray(scores, np.float64)
    out = np.full(scores.shape, -np.inf)
    if not mask.any():
        return out
    kept = scores[:, mask]
    std = kept.std(axis=1, keepdims=True)
    out[:, mask] = (kept - kept.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    return out


def aggregate(z: np.ndarray, strategy: Strategy) -> np.ndarray:
    """One group score per movie from the members' standardised scores (members x movies)."""
    if strategy == "average":
        return z.mean(axis=0)
    if strategy == "least_misery":
        return z.min(axis=0)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def ranks(z: np.ndarray) -> np.ndarray:
    """Each member's rank of every movie (1: best) by standardised score, ties to the lower index as in
    ``top_k``; masked (``-inf``) movies rank after every candidate."""
    order = np.lexsort((np.broadcast_to(np.arange(z.shape[1]), z.shape), -z), axis=1)
    out = np.empty(z.shape, np.int64)
    np.put_along_axis(out, order, np.arange(1, z.shape[1] + 1)[None, :].repeat(len(z), 0), axis=1)
    return out


def recommend_group(
    scores: np.ndarray,
    rated: sp.csr_matrix,
    n: int,
    strategy: Strategy,
    catalogue: np.ndarray | None = None,
) -> GroupList:
    """The top ``n`` movies for the members whose ranking scores are the rows of ``scores`` (members x
    movies), never one any member has rated (``rated``, row-aligned); fewer when fewer are left."""
    if len(scores) == 0:
        raise ValueError("a group needs at least one member")
    mask = candidates(rated, catalogue)
    z = standardise_over(scores, mask)
    group = aggregate(z, strategy)
    group[~mask] = -np.inf  # z is -inf there already: explicit, as the contract is
    idx, values = top_k(group[None, :], n)
    keep = idx[0] >= 0
    items = idx[0][keep]
    return GroupList(items, values[0][keep], z[:, items], ranks(z)[:, items])
