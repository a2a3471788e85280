"""A rank blend: the published list can mix the network with the strongest baseline.

The ranking score of a (user, movie) pair is

    weight x z(network dot product) + (1 - weight) x z(EASE) + rerank_weight x rating / rating_scale

where z standardises a member's scores per user over the whole catalogue (their scales differ: a dot
product, EASE's regression weights) and ``rating`` is the network's full rating head (its MLP included)
in units of the train ratings' standard deviation. The first two terms are cheap for every movie (a
matrix product, a sparse one); the rating head costs an MLP per pair, which is why batch scoring at large
catalogues retrieves the top candidates by the first two terms and runs the rating head on those only
(``pipeline.batch``). Every weight is chosen on validation data carved out of the train split — never on
the test split it is reported on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from pipeline.baselines import Recommender
from pipeline.evaluate import evaluate_model
from pipeline.interactions import Interactions
from pipeline.metrics import rmse
from pipeline.ranking import DEFAULT_CANDIDATES, mask_rows, retrieve_and_rerank, scatter_rows, top_n
from pipeline.splits import random_split, temporal_split


def _standardise(scores: np.ndarray) -> np.ndarray:
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


class RankBlend:
    """Ranking: see the module doc (``rerank_weight`` 0: no rating-head term).
    Ratings: ``rating_weight`` x network + (1 - ``rating_weight``) x ``rating_partner`` (network alone without one).

    With ``rerank_weight`` > 0 the network must also offer ``rating_matrix(users, items=None)`` (the
    predicted ratings of each user for a row of movie indices, or for every movie).

    ``candidates`` K > 0 with ``rated`` (users x movies, the train ratings): ``score_users`` retrieves each
    user's top K unrated movies by the cheap terms and adds the rating-head term on those only, as the
    weekly batch does; every other movie scores ``-inf``. 0: every term for every movie.
    """

    name = "blend"

    def __init__(self, network: Recommender, partner: Recommender | None, weight: float,
                 rating_partner: Recommender | None = None, rating_weight: float = 1.0,
                 rerank_weight: float = 0.0, rating_scale: float = 1.0, candidates: int = 0,
                 rated: sp.csr_matrix | None = None) -> None:
        for w in (weight, rating_weight):
            if not 0.0 <= w <= 1.0:
                raise ValueError(f"blend weights must be within [0, 1], got {w}")
        if rerank_weight < 0 or rating_scale <= 0:
            raise ValueError(f"rerank weight must be >= 0 and rating scale > 0, got {rerank_weight}, {rating_scale}")
        self.network, self.partner, self.weight = network, partner, weight
        self.rating_partner, self.rating_weight = rating_partner, rating_weight
        self.rerank_weight, self.rating_scale = rerank_weight, rating_scale
        if candidates and rated is None:
            raise ValueError("re-ranking candidates needs the rated movies to retrieve around")
        self.candidates, self.rated = candidates, rated

    def fit(self, train: Interactions) -> RankBlend:
        for member in (self.network, self.partner, self.rating_partner):
            if member is not None:
                member.fit(train)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        ratings = np.asarray(self.network.predict(users, items), np.float64)
        if self.rating_partner is not None and self.rating_weight < 1:
            other = np.asarray(self.rating_partner.predict(users, items), np.float64)
            ratings = self.rating_weight * ratings + (1 - self.rating_weight) * other
        return ratings.astype(np.float32)

    def retrieval_scores(self, users: np.ndarray) -> np.ndarray:
        """The cheap terms (network dot product and EASE) for every movie: len(users) x n_items."""
        mixed = np.zeros((len(users), 0))
        if self.weight > 0:
            mixed = self.weight * _standardise(np.asarray(self.network.score_users(users), np.float64))
        if self.weight < 1:
            if self.partner is None:
                raise ValueError("a ranking weight below 1 needs a partner")
            part = (1 - self.weight) * _standardise(np.asarray(self.partner.score_users(users), np.float64))
            mixed = part if mixed.size == 0 else mixed + part
        return mixed.astype(np.float32)

    def rerank_scores(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """The rating-head term for a row of movie indices per user (-1: NaN), or every movie when None."""
        if self.rerank_weight == 0:
            raise ValueError("this blend has no rating-head term")
        ratings = self.network.rating_matrix(np.asarray(users, np.int64), items)  # type: ignore[attr-defined]
        return (self.rerank_weight / self.rating_scale * ratings).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Every term for every movie, or for the retrieved candidates only (see ``candidates``)."""
        if self.rerank_weight == 0 or not self.candidates:
            scores = self.retrieval_scores(users)
            return scores + self.rerank_scores(users) if self.rerank_weight > 0 else scores
        found, full = retrieve_and_rerank(self._unrated_cheap(users), self.candidates,
                                          lambda cols: self.rerank_scores(users, cols))
        return scatter_rows(found, full, self.rated.shape[1])  # type: ignore[union-attr]

    def retrieve(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each user's top ``candidates`` unrated movies by the cheap terms: (indices, cheap scores)."""
        return top_n(self._unrated_cheap(users), self.candidates)

    def _unrated_cheap(self, users: np.ndarray) -> np.ndarray:
        return mask_rows(self.retrieval_scores(users), self.rated[users])  # type: ignore[index]


def rating_scale(train: Interactions) -> float:
    """The unit of the rating-head term: the standard deviation of the train ratings (1 when constant)."""
    std = float(np.std(train.ratings)) if len(train) else 0.0
    return std if std > 0 else 1.0


_GRID = tuple(np.linspace(0, 1, 11))


def _ranking_figures(network: Recommender, partner: Recommender, inner_train: Interactions,
                     inner_test: Interactions, grid: Sequence[float], k: int) -> tuple[float, dict[float, float]]:
    """NDCG@k of the rank blend at every weight, and the best weight (ties favour the network)."""
    figures = {round(float(w), 3): evaluate_model(RankBlend(network, partner, float(w)), inner_train, inner_test,
                                                  "temporal", k)[f"ndcg@{k}"] for w in grid}
    return max(figures, key=lambda w: (figures[w], w)), figures


def _rating_figures(network: Recommender, partner: Recommender, inner_test: Interactions,
                    grid: Sequence[float]) -> tuple[float, dict[float, float]]:
    """RMSE of the rating blend at every weight on ``inner_test``, and the best weight (ties favour the network)."""
    net = network.predict(inner_test.users, inner_test.items).astype(np.float64)
    other = partner.predict(inner_test.users, inner_test.items).astype(np.float64)
    figures = {round(float(w), 3): rmse(w * net + (1 - w) * other, inner_test.ratings) for w in grid}
    return min(figures, key=lambda w: (figures[w], -w)), figures


def choose_blend_weight(make_network: Callable[[], Recommender], make_partner: Callable[[], Recommender],
                        train: Interactions, grid: Sequence[float] = _GRID,
                        k: int = 10) -> tuple[float, dict[float, float]]:
    """The weight with the best NDCG@k on a temporal validation split of ``train``.

    Returns the weight and the validation NDCG of every weight tried.
    """
    inner_train, inner_test = temporal_split(train)
    network, partner = make_network().fit(inner_train), make_partner().fit(inner_train)
    return _ranking_figures(network, partner, inner_train, inner_test, grid, k)


def choose_rating_weight(make_network: Callable[[], Recommender], make_partner: Callable[[], Recommender],
                         train: Interactions, grid: Sequence[float] = _GRID,
                         validation_fraction: float = 0.1, seed: int = 7) -> tuple[float, dict[float, float]]:
    """The network's weight in the rating blend with the best RMSE on a random validation split of ``train``."""
    inner_train, inner_test = random_split(train, validation_fraction, seed=seed)
    return _rating_figures(make_network().fit(inner_train), make_partner().fit(inner_train), inner_test, grid)


# The rating-head term is in units of the ratings' standard deviation; the cheap terms are standardised.
RERANK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
# The search keeps each validation user's candidates and both their terms in memory: above this many
# (user, candidate) pairs (400 MB of float32 per term) it runs on a random sample of the validation users.
RERANK_SEARCH_PAIRS = 100_000_000


class _Candidates:
    """Retrieved candidates and their two terms behind the ``Recommender`` protocol, mixed at one
    rating-head weight: a weight search retrieves and runs the rating head once, mixes many times."""

    name = "candidates"

    def __init__(self, rows: np.ndarray, found: np.ndarray, cheap: np.ndarray, ratings: np.ndarray,
                 weight: float, n_items: int) -> None:
        self.rows, self.found, self.cheap, self.ratings = rows, found, cheap, ratings  # rows[user] -> row
        self.weight, self.n_items = np.float32(weight), n_items

    def fit(self, train: Interactions) -> _Candidates:
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        r = self.rows[users]
        return scatter_rows(self.found[r], self.cheap[r] + self.weight * self.ratings[r], self.n_items)


def _rerank_figures(blend: RankBlend, inner_train: Interactions, inner_test: Interactions,
                    grid: Sequence[float], k: int) -> tuple[float, dict[float, float]]:
    """NDCG@k of ``blend`` at every rating-head weight, scored as the batch scores it (the rating head on
    each user's retrieved candidates), and the best weight (ties favour the smaller one: less re-ranking).
    Candidates and both terms are computed once per validation user (a random sample of them beyond
    ``RERANK_SEARCH_PAIRS`` pairs)."""
    depth = min(DEFAULT_CANDIDATES, inner_train.n_items)
    users = np.unique(inner_test.users)
    cap = max(1, RERANK_SEARCH_PAIRS // depth)
    if len(users) > cap:
        users = np.sort(np.random.default_rng(0).choice(users, cap, replace=False))
        inner_test = inner_test.subset(np.flatnonzero(np.isin(inner_test.users, users)))
    rows = np.full(inner_train.n_users, -1, np.int64)
    rows[users] = np.arange(len(users))
    unit = RankBlend(blend.network, blend.partner, blend.weight, rerank_weight=1.0, rating_scale=blend.rating_scale,
                     candidates=depth, rated=inner_train.matrix(binary=True))
    found = np.empty((len(users), depth), np.int64)
    cheap, ratings = np.empty((len(users), depth), np.float32), np.empty((len(users), depth), np.float32)
    for lo in range(0, len(users), 1024):
        block = users[lo:lo + 1024]
        f, c = unit.retrieve(block)
        found[lo:lo + len(block)], cheap[lo:lo + len(block)] = f, c
        ratings[lo:lo + len(block)] = unit.rerank_scores(block, f)
    figures = {round(float(m), 3): evaluate_model(_Candidates(rows, found, cheap, ratings, m, inner_train.n_items),
                                                  inner_train, inner_test, "temporal", k)[f"ndcg@{k}"] for m in grid}
    return max(figures, key=lambda m: (figures[m], -m)), figures


@dataclass(frozen=True)
class BlendWeights:
    """The weights of the published blend (see ``RankBlend``) and the validation figure of every one tried."""

    weight: float
    rating_weight: float
    rerank_weight: float = 0.0
    figures: dict[str, dict[float, float]] = field(default_factory=dict)


def choose_weights(make_network: Callable[[], Recommender], make_partner: Callable[[], Recommender],
                   make_rating_partner: Callable[[], Recommender], train: Interactions,
                   grid: Sequence[float] = _GRID, k: int = 10,
                   rerank_grid: Sequence[float] = RERANK_GRID) -> BlendWeights:
    """Every blend weight from one temporal validation split of ``train`` and one network fitted on it.

    The ranking weight maximises NDCG@k of the held-out movies; then, with it fixed, the rating-head weight
    does the same; the rating weight minimises the RMSE of the same held-out ratings. One network instead
    of one per weight keeps a weekly training at three network fits. ``rerank_grid`` (0,): no rating-head
    term. Figures: {"ndcg@k": per ranking weight, "rerank_ndcg@k": per rating-head weight, "rmse": per
    rating weight}.
    """
    inner_train, inner_test = temporal_split(train)
    network = make_network().fit(inner_train)
    partner = make_partner().fit(inner_train)
    weight, ndcg = _ranking_figures(network, partner, inner_train, inner_test, grid, k)
    rerank_weight, rerank = 0.0, {}
    if any(m > 0 for m in rerank_grid):
        blend = RankBlend(network, partner, weight, rating_scale=rating_scale(inner_train))
        rerank_weight, rerank = _rerank_figures(blend, inner_train, inner_test, rerank_grid, k)
    rating_weight, errors = _rating_figures(network, make_rating_partner().fit(inner_train), inner_test, grid)
    return BlendWeights(weight, rating_weight, rerank_weight,
                        {f"ndcg@{k}": ndcg, f"rerank_ndcg@{k}": rerank, "rmse": errors})
