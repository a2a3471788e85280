"""Choosing the blend's weights on a temporal validation split carved out of the train data, never on the
test split the blend is reported on.

One network fitted on the validation split's train part serves every weight tried: the ranking weight
maximises NDCG@k of the held-out movies, then the rating-head weight does the same (scored as the batch
scores it: the rating head re-ranks each user's retrieved candidates), and the rating weight minimises the
RMSE of the same held-out ratings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.core.defaults import DEFAULT_CANDIDATES
from pipeline.evaluation.metrics import rmse
from pipeline.evaluation.protocol import evaluate_model
from pipeline.evaluation.splits import temporal_split
from pipeline.features.interactions import Interactions
from pipeline.models.base import Recommender
from pipeline.models.blend.scorer import BlendRecommender, rating_scale
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.topn import scatter_rows

_GRID = tuple(np.linspace(0, 1, 11))


def _ranking_figures(
    network: Recommender,
    partner: Recommender,
    inner_train: Interactions,
    inner_test: Interactions,
    grid: Sequence[float],
    k: int,
) -> tuple[float, dict[float, float]]:
    """NDCG@k of the rank blend at every weight, and the best weight (ties favour the network)."""
    figures = {
        round(float(w), 3): evaluate_model(
            BlendRecommender(network, partner, BlendWeights(float(w))), inner_train, inner_test, "temporal", k
        )[f"ndcg@{k}"]
        for w in grid
    }
    return max(figures, key=lambda w: (figures[w], w)), figures


def _rating_figures(
    network: Recommender, partner: Recommender, inner_test: Interactions, grid: Sequence[float]
) -> tuple[float, dict[float, float]]:
    """RMSE of the rating blend at every weight on ``inner_test``, and the best weight (ties favour the
    network)."""
    net = network.predict(inner_test.users, inner_test.items).astype(np.float64)
    other = partner.predict(inner_test.users, inner_test.items).astype(np.float64)
    figures = {round(float(w), 3): rmse(w * net + (1 - w) * other, inner_test.ratings) for w in grid}
    return min(figures, key=lambda w: (figures[w], -w)), figures


# The rating-head term is in units of the ratings' standard deviation; the cheap terms are standardised.
RERANK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
# The search keeps each validation user's candidates and both their terms in memory: above this many
# (user, candidate) pairs (400 MB of float32 per term) it runs on a random sample of the validation users.
RERANK_SEARCH_PAIRS = 100_000_000


class _Candidates:
    """Retrieved candidates and their two terms behind the ``Recommender`` protocol, mixed at one
    rating-head weight: a weight search retrieves and runs the rating head once, mixes many times."""

    name = "candidates"

    def __init__(
        self,
        rows: np.ndarray,
        found: np.ndarray,
        cheap: np.ndarray,
        ratings: np.ndarray,
        weight: float,
        n_items: int,
    ) -> None:
        self.rows, self.found, self.cheap, self.ratings = rows, found, cheap, ratings  # rows[user] -> row
        self.weight, self.n_items = np.float32(weight), n_items

    def fit(self, train: Interactions) -> _Candidates:
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        r = self.rows[users]
        return scatter_rows(self.found[r], self.cheap[r] + self.weight * self.ratings[r], self.n_items)


def _rerank_figures(
    blend: BlendRecommender,
    inner_train: Interactions,
    inner_test: Interactions,
    grid: Sequence[float],
    k: int,
) -> tuple[float, dict[float, float]]:
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
    unit = BlendRecommender(
        blend.network,
        blend.partner,
        BlendWeights(blend.weight, rerank_weight=1.0),
        rating_scale=blend.rating_scale,
        candidates=depth,
        rated=inner_train.binary_matrix(),
    )
    found = np.empty((len(users), depth), np.int64)
    cheap, ratings = np.empty((len(users), depth), np.float32), np.empty((len(users), depth), np.float32)
    for lo in range(0, len(users), 1024):
        block = users[lo : lo + 1024]
        f, c = unit.retrieve(block)
        found[lo : lo + len(block)], cheap[lo : lo + len(block)] = f, c
        ratings[lo : lo + len(block)] = unit.rerank_scores(block, f)
    figures = {
        round(float(m), 3): evaluate_model(
            _Candidates(rows, found, cheap, ratings, m, inner_train.n_items),
            inner_train,
            inner_test,
            "temporal",
            k,
        )[f"ndcg@{k}"]
        for m in grid
    }
    return max(figures, key=lambda m: (figures[m], -m)), figures


def choose_weights(
    make_network: Callable[[], Recommender],
    make_partner: Callable[[], Recommender],
    make_rating_partner: Callable[[], Recommender],
    train: Interactions,
    grid: Sequence[float] = _GRID,
    k: int = 10,
    rerank_grid: Sequence[float] = RERANK_GRID,
) -> BlendWeights:
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
    rerank_weight = 0.0
    rerank: dict[float, float] = {}
    if any(m > 0 for m in rerank_grid):
        blend = BlendRecommender(
            network, partner, BlendWeights(weight), rating_scale=rating_scale(inner_train)
        )
        rerank_weight, rerank = _rerank_figures(blend, inner_train, inner_test, rerank_grid, k)
    rating_weight, errors = _rating_figures(network, make_rating_partner().fit(inner_train), inner_test, grid)
    return BlendWeights(
        weight, rating_weight, rerank_weight, {f"ndcg@{k}": ndcg, f"rerank_ndcg@{k}": rerank, "rmse": errors}
    )
