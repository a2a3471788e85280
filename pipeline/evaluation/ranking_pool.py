"""The weight search's pool of candidates: each validation user's best unrated movies by every ranking term,
with every term's standardised score at each of them, computed once; a blend at any shares then ranks the
pool, not the catalogue.

The lists are exact. A movie outside a user's pool is in no term's top ``depth``, so it scores at most the
sum over the terms of share x that term's ``depth``-th best score; a user whose pool holds k movies scoring
above that bound has their list from the pool, and any other user is scored over the whole catalogue by the
terms themselves (``RankingPool.full_lists`` counts them). Before the pool, every point of the search scored
every validation user's whole catalogue row anew once the standardised rows outgrew their cache: at ML-25M
shape with 20,000 sampled users, 20,000 x 59,047 float64 scores per term per point."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from pipeline.models.base import Scorer
from pipeline.models.blend.scorer import BlendRecommender, standardised
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.topn import mask_rows, top_k, top_k_among

__all__ = ["FIXED_TERMS", "POOL_DEPTH", "PoolBlend", "RankingPool"]

# Movies per term and user. On the tests' slice of ML-100K, every list of the search at depth 200 came from
# the pool; a shallower pool costs more users scored in full, never a different list.
POOL_DEPTH = 200
# The whole-catalogue float64 rows of every term that the pool's build holds at once (standardising and
# ranking them takes about as much again): at 1 GiB the evaluate step's peak RSS at ML-1M shape rose by
# 0.5 GB over the search it replaced.
POOL_BUILD_BYTES = 1 << 28
FIXED_TERMS = ("network", "als", "ease")  # the terms a blend names itself; any other name is a member


class _PoolTerm:
    """One term's standardised scores at each pool user's movies (``StandardisedScorer``), for a blend to mix
    exactly as it mixes the whole catalogue's."""

    def __init__(self, pool: RankingPool, name: str) -> None:
        self.pool, self.name = pool, name

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        raise TypeError("a pool term holds standardised scores at the pool's movies only")

    def standardised_scores(self, users: np.ndarray) -> np.ndarray:
        return self.pool.scores[self.name][self.pool.rows[users]]


def _blend(terms: Mapping[str, Scorer], weights: BlendWeights) -> BlendRecommender:
    members = {name: term for name, term in terms.items() if name not in FIXED_TERMS}
    return BlendRecommender(
        terms["network"], terms.get("ease"), weights, als=terms.get("als"), members=members
    )


class RankingPool:
    """``terms`` by blend name (``network``, optional ``ease`` and ``als``, members by name), each fitted;
    the pool of ``users`` (validation users) around ``rated`` (users x movies, the ratings they are
    recommended around), each term's top ``depth`` unrated movies."""

    def __init__(
        self,
        terms: Mapping[str, Scorer],
        users: np.ndarray,
        rated: sp.csr_matrix,
        depth: int = POOL_DEPTH,
        build_bytes: int = POOL_BUILD_BYTES,
    ) -> None:
        if depth < 1:
            raise ValueError(f"a pool needs a depth of 1 or more, got {depth}")
        self.terms, self.rated, self.depth = dict(terms), rated, depth
        users = np.unique(np.asarray(users, np.int64))
        n_items = rated.shape[1]
        self.rows = np.full(rated.shape[0], -1, np.int64)
        self.rows[users] = np.arange(len(users))
        block = max(1, build_bytes // (8 * n_items * len(self.terms)))
        parts = [self._build(users[lo : lo + block], n_items) for lo in range(0, len(users), block)]
        width = max((p[0].shape[1] for p in parts), default=0)

        def stack(blocks: list[np.ndarray], fill: float) -> np.ndarray:
            padded = [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=fill) for b in blocks]
            return np.concatenate(padded) if padded else np.empty((0, width))

        self.items = stack([p[0] for p in parts], -1).astype(np.int64)  # ascending, -1 padded
        self.scores = {n: stack([p[1][n] for p in parts], -np.inf) for n in self.terms}  # standardised
        # per term and user: the depth-th best score, -inf when the term's list holds every unrated movie
        self.floor = {n: np.concatenate([p[2][n] for p in parts] or [np.empty(0)]) for n in self.terms}
        self.views = {name: _PoolTerm(self, name) for name in self.terms}
        self.listed = self.full_lists = 0

    def _build(
        self, users: np.ndarray, n_items: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        rated = self.rated[users]
        rows = {name: mask_rows(standardised(term, users), rated) for name, term in self.terms.items()}
        tops = {name: top_k(z, self.depth) for name, z in rows.items()}  # -inf past a short row's end
        floor = {name: v[:, -1].astype(np.float64) for name, (_, v) in tops.items()}
        # The union of the terms' lists per user, ascending (a sentinel past the catalogue pads it), so a
        # tie in the pool goes to the lower movie index as it does over the catalogue.
        found = np.concatenate([np.where(f < 0, n_items, f) for f, _ in tops.values()], axis=1)
        found.sort(axis=1)
        found[:, 1:][found[:, 1:] == found[:, :-1]] = n_items
        found.sort(axis=1)
        width = int((found < n_items).sum(axis=1).max(initial=0))
        found = found[:, :width]
        present = found < n_items
        at = np.where(present, found, 0)
        scores = {name: np.where(present, np.take_along_axis(z, at, 1), -np.inf) for name, z in rows.items()}
        return np.where(present, found, -1), scores, floor

    def lists(self, weights: BlendWeights, users: np.ndarray, k: int) -> np.ndarray:
        """Each of ``users``' top k unrated movies under the blend of the terms at ``weights`` (``(len(users),
        k)``, best first, -1 padded): the same lists as the blend scoring the whole catalogue."""
        users = np.asarray(users, np.int64)
        r = self.rows[users]
        inside = r >= 0
        lists = np.full((len(users), k), -1, np.int64)
        if inside.any():
            pooled = r[inside]
            mixed = _blend(self.views, weights).retrieval_scores(users[inside])
            lists[inside], values = top_k_among(self.items[pooled], mixed, k)
            floors = [share * self.floor[name][pooled] for name, share in _shares(weights).items()]
            ceiling = np.sum(floors, axis=0)
            # Outside the pool a movie scores at most the ceiling (give or take the rounding of the blend's
            # own sum, far below the margin); strictly below the k-th in float32, it cannot even tie it.
            margin = 1e-9 * (1 + np.sum([np.abs(np.where(np.isfinite(f), f, 0)) for f in floors], axis=0))
            exact = np.isneginf(ceiling) | (values[:, -1] > (ceiling + margin).astype(np.float32))
            inside[np.flatnonzero(inside)[~exact]] = False
        outside = np.flatnonzero(~inside)
        if len(outside):
            full = _blend(self.terms, weights).retrieval_scores(users[outside])
            lists[outside] = top_k(mask_rows(full, self.rated[users[outside]]), k)[0]
        self.listed += len(users)
        self.full_lists += len(outside)
        return lists

    def blend(self, weights: BlendWeights) -> PoolBlend:
        """The blend of the terms at ``weights``, listing from the pool (``TopKLister``)."""
        return PoolBlend(self, weights)


def _shares(weights: BlendWeights) -> dict[str, float]:
    """The cheap terms' shares above 0, by blend name."""
    shares = {"network": weights.weight, "als": weights.als_weight, "ease": weights.ease_weight}
    shares.update(weights.active_members)
    return {name: share for name, share in shares.items() if share > 0}


class PoolBlend:
    """A blend at fixed weights whose top-k lists come from a ``RankingPool`` (``top_k_lists``); it scores
    the whole catalogue only when asked for scores."""

    name = "blend"

    def __init__(self, pool: RankingPool, weights: BlendWeights) -> None:
        self.pool, self.weights = pool, weights

    def fit(self, train: object) -> PoolBlend:
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return _blend(self.pool.terms, self.weights).retrieval_scores(users)

    def top_k_lists(self, users: np.ndarray, k: int) -> np.ndarray:
        return self.pool.lists(self.weights, users, k)
