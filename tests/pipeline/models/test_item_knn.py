"""Item-kNN (``pipeline.models.item_knn``): the recommender contract on the real ML-100K slice with save/load,
then its similarities and scores by hand on toy data."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.features.interactions import Interactions
from pipeline.models.item_knn import ItemKNN, ItemKNNConfig
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice


class TestItemKNNContract(RecommenderContract, NotFittedContract, PersistenceContract):
    rates = False

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: ItemKNN(ItemKNNConfig(block_items=300))  # several blocks over the slice's movies

    def reload(self, model, directory):
        return ItemKNN.load(model.save(directory / "knn.npz"))


def _toy() -> Interactions:
    # 4 users x 4 items; item 3 is never rated.
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (3, 0)]
    users, items = (np.array(c) for c in zip(*pairs))
    return Interactions(users, items, np.full(len(users), 4, np.float32), np.arange(len(users)), 4, 4)


def _cosine(shrinkage: float) -> np.ndarray:
    x = _toy().binary_matrix().toarray().astype(np.float64)
    counts = x.sum(axis=0)
    denominator = np.sqrt(np.outer(counts, counts)) + shrinkage
    sim = np.divide(x.T @ x, denominator, out=np.zeros((4, 4)), where=denominator > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


def test_scores_sum_the_shrunk_cosine_over_the_users_rated_movies() -> None:
    model = ItemKNN(ItemKNNConfig(neighbours=10, shrinkage=2.0)).fit(_toy())
    x = _toy().binary_matrix().toarray()
    np.testing.assert_allclose(model.score_users(np.arange(4)), x @ _cosine(2.0).T, rtol=1e-6)
    assert np.isnan(model.predict(np.array([0]), np.array([2]))).all()


def test_each_movie_keeps_only_its_k_most_similar_neighbours() -> None:
    sim = _cosine(0.0)  # item 0: 1 (2/sqrt(9)=0.667) then 2 (1/sqrt(6)=0.408); item 3: none
    model = ItemKNN(ItemKNNConfig(neighbours=1, shrinkage=0.0, block_items=3)).fit(_toy())
    for item in range(3):
        found, values = model.neighbours(item)
        assert found.tolist() == [int(np.argmax(sim[item]))]
        np.testing.assert_allclose(values, [sim[item].max()], rtol=1e-6)
    assert model.neighbours(3)[0].tolist() == []
    # user 2 rated items 1 and 2: item 0's score counts its one neighbour (1), not item 2 (0.408 more)
    scores = model.score_users(np.array([2]))[0]
    assert scores[0] == pytest.approx(sim[0, 1]) and scores[3] == 0.0


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="neighbours"):
        ItemKNNConfig(neighbours=0)
    with pytest.raises(ValidationError, match="shrinkage"):
        ItemKNNConfig(shrinkage=-1.0)


def test_knn_ranks_above_popularity_on_the_slice(ml100k_dir) -> None:
    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.evaluation.splits import temporal_split
    from pipeline.models.baselines import Popularity

    train, test = temporal_split(load_ml100k_slice(ml100k_dir))
    knn = evaluate_model(ItemKNN().fit(train), train, test, "temporal")["ndcg@10"]
    popular = evaluate_model(Popularity().fit(train), train, test, "temporal")["ndcg@10"]
    assert knn > popular  # personalised neighbours beat the most-rated list
