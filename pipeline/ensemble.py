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
from pipeline.splits import temporal_split


def _standardise(scores: np.ndarray) -> np.ndarray:
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


class RankBlend:
    """``weight`` x network + (1 - ``weight``) x partner, per-user standardised; ratings from the network."""

    name = "blend"

    def __init__(self, network: Recommender, partner: Recommender, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"blend weight must be within [0, 1], got {weight}")
        self.network, self.partner, self.weight = network, partner, weight

    def fit(self, train: Interactions) -> RankBlend:
        self.network.fit(train)
        self.partner.fit(train)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.network.predict(users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        mixed = np.zeros((len(users), 0))
        if self.weight > 0:
            mixed = self.weight * _standardise(np.asarray(self.network.score_users(users), np.float64))
        if self.weight < 1:
            part = (1 - self.weight) * _standardise(np.asarray(self.partner.score_users(users), np.float64))
            mixed = part if mixed.size == 0 else mixed + part
        return mixed.astype(np.float32)


def choose_blend_weight(make_network: Callable[[], Recommender], make_partner: Callable[[], Recommender],
                        train: Interactions, grid: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                        k: int = 10) -> tuple[float, dict[float, float]]:
    """The weight with the best NDCG@k on a temporal validation split of ``train``.

    Returns the weight and the validation NDCG of every weight tried.
    """
    inner_train, inner_test = temporal_split(train)
    network, partner = make_network().fit(inner_train), make_partner().fit(inner_train)
    figures = {}
    for w in grid:
        blend = RankBlend(network, partner, float(w))
        figures[round(float(w), 3)] = evaluate_model(blend, inner_train, inner_test, "temporal", k)[f"ndcg@{k}"]
    best = max(figures, key=lambda w: (figures[w], w))  # ties favour the network
    return best, figures
