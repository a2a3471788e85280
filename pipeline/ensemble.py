"""A rank blend: the published list can mix the network with the strongest baseline.

Scores of each member are standardised per user (their scales differ: a dot product, EASE's regression
weights) and mixed with a weight chosen on validation data carved out of the train split — never on
the test split it is reported on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.baselines import Recommender
from pipeline.evaluate import evaluate_model
from pipeline.interactions import Interactions
from pipeline.metrics import rmse
from pipeline.splits import random_split, temporal_split


def _standardise(scores: np.ndarray) -> np.ndarray:
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


class RankBlend:
    """Ranking: ``weight`` x network + (1 - ``weight``) x partner, per-user standardised.
    Ratings: ``rating_weight`` x network + (1 - ``rating_weight``) x ``rating_partner`` (network alone without one).
    """

    name = "blend"

    def __init__(self, network: Recommender, partner: Recommender, weight: float,
                 rating_partner: Recommender | None = None, rating_weight: float = 1.0) -> None:
        for w in (weight, rating_weight):
            if not 0.0 <= w <= 1.0:
                raise ValueError(f"blend weights must be within [0, 1], got {w}")
        self.network, self.partner, self.weight = network, partner, weight
        self.rating_partner, self.rating_weight = rating_partner, rating_weight

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

    def score_users(self, users: np.ndarray) -> np.ndarray:
        mixed = np.zeros((len(users), 0))
        if self.weight > 0:
            mixed = self.weight * _standardise(np.asarray(self.network.score_users(users), np.float64))
        if self.weight < 1:
            part = (1 - self.weight) * _standardise(np.asarray(self.partner.score_users(users), np.float64))
            mixed = part if mixed.size == 0 else mixed + part
        return mixed.astype(np.float32)


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


def choose_weights(make_network: Callable[[], Recommender], make_partner: Callable[[], Recommender],
                   make_rating_partner: Callable[[], Recommender], train: Interactions,
                   grid: Sequence[float] = _GRID, k: int = 10,
                   ) -> tuple[float, float, dict[str, dict[float, float]]]:
    """Both blend weights from one temporal validation split of ``train`` and one network fitted on it.

    The ranking weight maximises NDCG@k of the held-out movies; the rating weight minimises the RMSE of
    the same held-out ratings. One network instead of two halves the cost of a weekly training.
    Returns (ranking weight, rating weight, {"ndcg@k": figures per weight, "rmse": figures per weight}).
    """
    inner_train, inner_test = temporal_split(train)
    network = make_network().fit(inner_train)
    weight, ndcg = _ranking_figures(network, make_partner().fit(inner_train), inner_train, inner_test, grid, k)
    rating_weight, errors = _rating_figures(network, make_rating_partner().fit(inner_train), inner_test, grid)
    return weight, rating_weight, {f"ndcg@{k}": ndcg, "rmse": errors}
