"""Diversity and popularity-bias control: a re-rank of each user's top movies by the ranking.

Two settings (``Rerank``), both 0 by default (today's ranking exactly):

* ``popularity_penalty`` beta: each candidate's ranking score, standardised over the user's pool, minus
  beta x the movie's standardised log-popularity (``log1p`` of its train ratings, z-scored over the
  catalogue): a beta of 1 trades one standard deviation of the user's scores for one of popularity.
* ``strength`` lambda in [0, 1]: maximal marginal relevance (MMR) over content similarity. The list is built
  greedily; each next movie maximises ``(1 - lambda) x relevance - lambda x (its highest cosine similarity
  to a movie already listed)``, relevance being the (penalised) score min-max scaled to [0, 1] over the pool.

The pool is each user's top ``pool`` movies by the ranking (``DIVERSITY_POOL``); one step per list position
over every user of a chunk at once, so the cost is ``users x N x pool x dim``, or ``users x N x pool`` reads
of every movie pair's cosine, computed once, up to ``SIMILARITY_MAX_ITEMS`` movies. Content vectors
(``content_vectors``) are a movie's genres and its text embedding, each unit length, side by side: the
cosine of two movies is the mean of their genre and text cosines. They come from the catalogue content the
model was trained with, not from the network's learned weights, so the same movies are as similar whatever
the champion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import scipy.sparse as sp

from pipeline.core.defaults import (
    DEFAULT_DIVERSITY,
    DEFAULT_POPULARITY_PENALTY,
    DIVERSITY_POOL,
    MAX_POPULARITY_PENALTY,
)
from pipeline.core.errors import InputError
from pipeline.features.vocab import MovieContent
from pipeline.models.topn import top_k

if TYPE_CHECKING:
    import torch

_ROWS_PER_STEP = 128  # users per MMR block: bounds the (users, pool, dim) gather (~100 MB at 500 x 403)
# Up to this many movies (ML-1M's 3,706, ml-latest-small's 9,742) the re-rank keeps every pair's cosine,
# 576 MB at the cap: a list position then reads one cosine per candidate, not its whole vector. On 2 cores,
# 2,048 users' top 10 at 5,000 and 12,000 movies took 0.4 and 0.6 s (the cosines 0.2 and 0.9 s more)
# against 4.3 and 4.5 s.
SIMILARITY_MAX_ITEMS = 12_000


class RerankDict(TypedDict):
    """``Rerank`` as plain JSON (a batch's ``list_metrics``, an XCom)."""

    strength: float
    popularity_penalty: float


@dataclass(frozen=True)
class Rerank:
    """The re-rank's settings, checked against their bounds (``InputError`` names the bad one)."""

    strength: float = DEFAULT_DIVERSITY
    popularity_penalty: float = DEFAULT_POPULARITY_PENALTY

    def __post_init__(self) -> None:
        check_rerank(self.strength, self.popularity_penalty)

    @property
    def active(self) -> bool:
        return self.strength > 0 or self.popularity_penalty > 0

    def to_dict(self) -> RerankDict:
        return {"strength": float(self.strength), "popularity_penalty": float(self.popularity_penalty)}


def check_rerank(strength: float | None, popularity_penalty: float | None) -> None:
    """Raise ``InputError`` for a diversity strength outside [0, 1] or a penalty outside its bounds."""
    if strength is not None and not 0.0 <= strength <= 1.0:  # NaN fails too
        raise InputError(f"diversity strength must be between 0 and 1, got {strength}")
    if popularity_penalty is not None and not 0.0 <= popularity_penalty <= MAX_POPULARITY_PENALTY:
        raise InputError(
            f"popularity penalty must be between 0 and {MAX_POPULARITY_PENALTY:g}, got {popularity_penalty}"
        )


def content_vectors(movies: MovieContent) -> np.ndarray:
    """Unit-length content vectors (``float32``, one row per movie): genres and text embedding, each scaled
    to unit length then to 1/sqrt(2); a movie with neither is a zero row."""
    parts = []
    for block in (np.asarray(movies.genres, np.float32), np.asarray(movies.text, np.float32)):
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        parts.append(np.divide(block, norms, out=np.zeros_like(block), where=norms > 0))
    joined = np.concatenate(parts, axis=1)
    norms = np.linalg.norm(joined, axis=1, keepdims=True)
    return np.divide(joined, norms, out=np.zeros_like(joined), where=norms > 0)


def popularity_z(counts: np.ndarray) -> np.ndarray:
    """Standardised ``log1p`` of each movie's ratings (``float32``; all zeros when every count is equal)."""
    log_pop = np.log1p(np.asarray(counts, np.float64))
    sd = log_pop.std()
    return ((log_pop - log_pop.mean()) / sd if sd > 0 else np.zeros_like(log_pop)).astype(np.float32)


@dataclass
class Diversifier:
    """A re-rank ready to apply: the settings, and per movie index its content vector and popularity z."""

    settings: Rerank
    vectors: np.ndarray  # (n_items, dim) unit rows
    popularity: np.ndarray  # (n_items,) standardised log-popularity
    pool: int = DIVERSITY_POOL
    _similarity: torch.Tensor | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(
        cls, settings: Rerank, movies: MovieContent, rated: sp.spmatrix, pool: int = DIVERSITY_POOL
    ) -> Diversifier:
        """From the catalogue content and the users x movies matrix of train ratings (popularity)."""
        counts = np.asarray(sp.csr_matrix(rated).sum(axis=0)).ravel()
        return cls(settings, content_vectors(movies), popularity_z(counts), pool)

    def apply(self, found: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's re-ranked top ``n`` of the candidates ``found`` (movie indices, -1 padding) with their
        ranking ``scores`` (``-inf``: not a candidate): movie indices (-1 padded) and their unchanged
        ranking scores. Rows are cut to their ``pool`` best by score first."""
        found, scores = np.asarray(found, np.int64), np.asarray(scores, np.float32)
        scores = np.where(found >= 0, scores, -np.inf).astype(np.float32)
        order, _ = top_k(scores, min(self.pool, scores.shape[1]) if scores.shape[1] else 1)
        cand = np.where(order >= 0, np.take_along_axis(found, np.maximum(order, 0), 1), -1)
        raw = np.where(order >= 0, np.take_along_axis(scores, np.maximum(order, 0), 1), -np.inf)
        adjusted = self._relevance(cand, raw)
        if self.settings.strength > 0:
            picks = self._mmr(cand, adjusted, n)
        else:
            picks, _ = top_k(np.where(cand >= 0, adjusted, -np.inf), n)
        idx = np.where(picks >= 0, np.take_along_axis(cand, np.maximum(picks, 0), 1), -1)
        values = np.where(picks >= 0, np.take_along_axis(raw, np.maximum(picks, 0), 1), -np.inf)
        return idx, values.astype(np.float32)

    def _relevance(self, cand: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Scores standardised per row over the pool, minus the popularity penalty (``-inf`` stays)."""
        valid = cand >= 0
        count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
        finite = np.where(valid, raw, 0.0).astype(np.float64)
        mean = finite.sum(axis=1, keepdims=True) / count
        sd = np.sqrt((np.where(valid, finite - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
        z = (finite - mean) / np.where(sd > 0, sd, 1.0)
        z -= self.settings.popularity_penalty * self.popularity[np.maximum(cand, 0)]
        return np.where(valid, z, -np.inf)

    def similarity(self) -> torch.Tensor | None:
        """Every pair of movies' cosine (``n_items`` x ``n_items``), computed once, for catalogues up to
        ``SIMILARITY_MAX_ITEMS`` movies; ``None`` above it."""
        if self._similarity is None and len(self.vectors) <= SIMILARITY_MAX_ITEMS:
            vectors = self._torch_vectors()
            self._similarity = vectors @ vectors.T
        return self._similarity

    def _torch_vectors(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.vectors, np.float32))

    def _cosines_to(self, movies: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """For one block's candidates ``movies`` (rows, pool): from each row's chosen position, every
        candidate's cosine to that row's chosen movie (rows, pool), read from ``similarity`` when there is
        one, else from the candidates' vectors."""
        import torch

        rows = torch.arange(len(movies))
        similarity = self.similarity()
        if similarity is not None:
            return lambda best: similarity[movies[rows, best].unsqueeze(1), movies]
        vecs = self._torch_vectors()[movies]  # (rows, pool, dim)
        return lambda best: torch.bmm(vecs, vecs[rows, best].unsqueeze(2)).squeeze(2)

    def _mmr(self, cand: np.ndarray, relevance: np.ndarray, n: int) -> np.ndarray:
        """Greedy MMR positions (into each row of ``cand``), ``n`` per row, -1 once a row's pool is spent."""
        import torch

        lam = float(self.settings.strength)
        picks = np.full((len(cand), n), -1, np.int64)
        for lo in range(0, len(cand), _ROWS_PER_STEP):
            c = cand[lo : lo + _ROWS_PER_STEP]
            valid = torch.from_numpy(c >= 0)
            rel = torch.from_numpy(relevance[lo : lo + _ROWS_PER_STEP].astype(np.float32))
            low = rel.masked_fill(~valid, np.inf).min(1, keepdim=True).values
            high = rel.max(1, keepdim=True).values
            span = torch.where(high > low, high - low, torch.ones_like(high))
            rel = torch.where(valid, (rel - low) / span, torch.full_like(rel, -np.inf))
            cosines_to = self._cosines_to(torch.from_numpy(np.maximum(c, 0)))
            max_sim = torch.zeros_like(rel)
            open_ = valid.clone()
            rows = torch.arange(len(c))
            for t in range(min(n, c.shape[1])):
                objective = (1.0 - lam) * rel - (lam * max_sim if t else 0.0)
                objective = objective.masked_fill(~open_, -np.inf)
                best = torch.argmax(objective, dim=1)  # ties: the first, i.e. the better-ranked candidate
                ok = open_[rows, best]
                picks[lo : lo + len(c), t] = np.where(ok.numpy(), best.numpy(), -1)
                open_[rows, best] = False
                sim = cosines_to(best)
                max_sim = torch.maximum(max_sim, sim) if t else sim
        return picks
