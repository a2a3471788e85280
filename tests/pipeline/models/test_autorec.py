"""AutoRec (``pipeline.models.autorec``): the recommender contract on the real ML-100K slice with save/load,
its predictions against the global mean, its fallbacks and its size check."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.evaluation.protocol import evaluate_model
from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.autorec import AutoRec, AutoRecConfig, autorec_fits
from pipeline.models.baselines import GlobalMean
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice

SMALL = AutoRecConfig(hidden=40, epochs=20)


class TestAutoRecContract(RecommenderContract, NotFittedContract, PersistenceContract):
    @pytest.fixture(scope="class")
    def make(self):
        return lambda: AutoRec(SMALL)

    def reload(self, model, directory):
        return AutoRec.load(model.save(directory / "autorec.npz"))


def test_autorec_predicts_ratings_better_than_the_global_mean(ml100k_dir):
    train, test = random_split(load_ml100k_slice(ml100k_dir))
    autorec = evaluate_model(AutoRec().fit(train), train, test, "random")["rmse"]
    mean = evaluate_model(GlobalMean().fit(train), train, test, "random")["rmse"]
    assert autorec < mean - 0.05


def test_a_user_or_movie_without_train_ratings_gets_the_mean_and_ratings_stay_in_range():
    # 3 users x 4 movies: user 2 and movie 3 have no rating
    users, items = np.array([0, 0, 1, 1, 0]), np.array([0, 1, 0, 2, 2])
    ratings = np.array([5, 1, 4, 2, 3], np.float32)
    train = Interactions(users, items, ratings, np.arange(5), 3, 4)
    model = AutoRec(AutoRecConfig(hidden=4, epochs=5)).fit(train)
    got = model.predict(np.array([2, 0, 2]), np.array([0, 3, 3]))
    np.testing.assert_allclose(got, [3.0, 3.0, 3.0])  # the train mean
    every = model.predict(np.repeat(np.arange(2), 3), np.tile(np.arange(3), 2))
    assert every.min() >= 1.0 and every.max() <= 5.0


def test_a_saved_model_of_another_kind_is_refused(ml100k_dir, tmp_path):
    from pipeline.models.item_knn import ItemKNN

    train, _ = random_split(load_ml100k_slice(ml100k_dir))
    path = ItemKNN().fit(train).save(tmp_path / "knn.npz")
    with pytest.raises(ValueError, match="not 'AutoRec'"):
        AutoRec.load(path)


def test_config_is_validated_and_the_size_check_counts_cells():
    with pytest.raises(ValidationError, match="hidden"):
        AutoRecConfig(hidden=0)
    with pytest.raises(ValidationError, match="reg"):
        AutoRecConfig(reg=-1.0)
    train = Interactions(np.array([0]), np.array([0]), np.array([4.0], np.float32), np.array([0]), 10, 20)
    assert autorec_fits(train, max_cells=200) and not autorec_fits(train, max_cells=199)
