"""The hybrid network as a ``Recommender`` (``pipeline.models.hybrid.recommender``): the contract, fitted on the
real ML-100K slice with the database's features (a tiny network, one epoch), and ``from_artifact``."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.splits import random_split
from pipeline.models.base import RatingMatrix
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.recommender import HybridRecommender
from tests.support.configs import TINY_CONTRACT
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import slice_of


class TestHybridRecommenderContract(RecommenderContract, NotFittedContract, PersistenceContract):
    @pytest.fixture(scope="class")
    def split(self, ml100k_data):
        return random_split(slice_of(ml100k_data))

    @pytest.fixture(scope="class")
    def make(self, ml100k_data):
        return lambda: HybridRecommender(ml100k_data, TINY_CONTRACT, device="cpu")

    def reload(self, model, directory):
        return HybridRecommender.from_artifact(HybridArtifact.load(model.artifact.save(directory)))


def test_from_artifact_scores_like_the_artifact_and_cannot_be_refitted(tiny_blend, first_300_users):
    network = tiny_blend.network
    wrapped = HybridRecommender.from_artifact(network)
    assert wrapped.artifact is network and isinstance(wrapped, RatingMatrix)
    users, items = first_300_users.users[:50], first_300_users.items[:50]
    np.testing.assert_array_equal(wrapped.predict(users, items), network.predict_index(users, items))
    np.testing.assert_array_equal(wrapped.score_users(users[:3]), network.rank_index(users[:3]))
    np.testing.assert_array_equal(
        wrapped.rating_matrix(users[:3], items[:9].reshape(3, 3)),
        network.rating_matrix(users[:3], items[:9].reshape(3, 3)),
    )
    with pytest.raises(ValueError, match="no training data"):
        wrapped.fit(first_300_users)
