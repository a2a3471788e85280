"""The contract every recommender keeps (``pipeline.models.base``), as test classes a model's tests apply.

A model joins by subclassing ``RecommenderContract`` in its own test module and saying how to build it::

    class TestEASEContract(RecommenderContract, NotFittedContract):
        @pytest.fixture(scope="class")
        def make(self):
            return lambda: EASE(SMALL_EASE)

``make`` returns a factory of fresh, unfitted instances. By default the model is fitted on a random split
of the real ML-100K slice (``tests.support.ml100k_slice``); a model that needs the features of the database
(the hybrid network) overrides ``split`` with the same users out of ``ml100k_data``. ``rates = False``
declares a ranking-only model (``predict`` is NaN throughout).

Two parts apply only where the model has the ability, by mixing in:

* ``NotFittedContract``: ``predict`` and ``score_users`` before ``fit`` raise ``NotFitted``;
* ``PersistenceContract``: the subclass's ``reload(model, directory)`` saves and loads the model, and the
  loaded one scores exactly like the original.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.protocol import top_k_for_users
from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.models.base import NotFitted, Recommender
from tests.support.ml100k_slice import load_ml100k_slice

Split = tuple[Interactions, Interactions]
Factory = Callable[[], Recommender]

PAIRS = 500  # test pairs predicted
K = 10  # list length of the masking check


def _batch(train: Interactions) -> np.ndarray:
    """A few users in no particular order, the last one included."""
    return np.array([0, 5, 3, train.n_users - 1], np.int64)


class RecommenderContract:
    """Fit on a real train split; ``predict``'s shape, dtype and NaN rule; ``score_users``' shape, dtype and
    independence from the rest of the batch; deterministic fitting; top-k lists without rated movies."""

    rates = True  # predict returns ratings (finite); False: a ranking-only model (NaN throughout)

    @pytest.fixture(scope="class")
    def make(self) -> Factory:
        raise NotImplementedError("a contract subclass defines the `make` fixture: a factory of fresh models")

    @pytest.fixture(scope="class")
    def split(self, ml100k_dir: Path) -> Split:
        return random_split(load_ml100k_slice(ml100k_dir))

    @pytest.fixture(scope="class")
    def fitted(self, make: Factory, split: Split) -> tuple[Recommender, object]:
        """A model and what its ``fit`` returned."""
        model = make()
        return model, model.fit(split[0])

    @pytest.fixture(scope="class")
    def outputs(self, fitted: tuple[Recommender, object], split: Split) -> tuple[np.ndarray, np.ndarray]:
        """The fitted model's predictions of the first test pairs and scores of a batch of users."""
        model, _ = fitted
        train, test = split
        return model.predict(test.users[:PAIRS], test.items[:PAIRS]), model.score_users(_batch(train))

    def test_is_a_named_recommender(self, make: Factory) -> None:
        model = make()
        assert isinstance(model, Recommender)
        assert isinstance(model.name, str) and model.name

    def test_fit_returns_the_fitted_model(self, fitted: tuple[Recommender, object]) -> None:
        model, returned = fitted
        assert returned is model

    def test_predict_gives_one_float32_per_pair_all_ratings_or_all_nan(
        self, fitted: tuple[Recommender, object], outputs: tuple[np.ndarray, np.ndarray], split: Split
    ) -> None:
        pred, _ = outputs
        assert pred.shape == (min(PAIRS, len(split[1])),) and pred.dtype == np.float32
        if self.rates:
            assert np.isfinite(pred).all()
            train = split[0]  # ratings on the train scale, give or take a star
            assert train.ratings.min() - 1 <= pred.min() and pred.max() <= train.ratings.max() + 1
        else:
            assert np.isnan(pred).all()

    def test_score_users_gives_a_finite_float32_row_per_user_over_every_item(
        self, fitted: tuple[Recommender, object], outputs: tuple[np.ndarray, np.ndarray], split: Split
    ) -> None:
        model, _ = fitted
        _, scores = outputs
        batch = _batch(split[0])
        assert scores.shape == (len(batch), split[0].n_items) and scores.dtype == np.float32
        assert np.isfinite(scores).all()
        # A user's scores do not depend on which other users share the batch.
        np.testing.assert_allclose(model.score_users(batch[[2]])[0], scores[2], rtol=1e-5, atol=1e-6)

    def test_fitting_is_deterministic(
        self, make: Factory, outputs: tuple[np.ndarray, np.ndarray], split: Split
    ) -> None:
        """The same train split gives the same model: from a fresh instance, and from the same instance fitted
        a second time."""
        train, test = split
        pred, scores = outputs
        model = make()
        for _ in range(2):
            model.fit(train)
            np.testing.assert_array_equal(model.predict(test.users[:PAIRS], test.items[:PAIRS]), pred)
            np.testing.assert_array_equal(model.score_users(_batch(train)), scores)

    def test_top_k_lists_hold_k_distinct_unrated_items(
        self, fitted: tuple[Recommender, object], split: Split
    ) -> None:
        model, _ = fitted
        train = split[0]
        users = np.arange(train.n_users)
        top = top_k_for_users(model, train, users, k=K, batch_size=64)
        assert top.shape == (train.n_users, K)
        assert (top >= 0).all()  # every user has far more than k unrated movies
        rated = train.binary_matrix().toarray() > 0
        assert not rated[users[:, None], top].any()
        assert all(len(set(row)) == K for row in top.tolist())


class NotFittedContract:
    """A model built unfitted refuses to score until ``fit``."""

    def test_scoring_before_fit_raises_not_fitted(self, make: Factory) -> None:
        model = make()
        with pytest.raises(NotFitted, match="not fitted"):
            model.score_users(np.array([0]))
        with pytest.raises(NotFitted, match="not fitted"):
            model.predict(np.array([0]), np.array([0]))


class PersistenceContract:
    """A saved and loaded model predicts and ranks as the original does."""

    def reload(self, model: Recommender, directory: Path) -> Recommender:
        raise NotImplementedError("a persistence contract subclass saves `model` to `directory` and loads it")

    def test_saved_and_loaded_model_scores_the_same(
        self,
        fitted: tuple[Recommender, object],
        outputs: tuple[np.ndarray, np.ndarray],
        split: Split,
        tmp_path: Path,
    ) -> None:
        model, _ = fitted
        train, test = split
        pred, scores = outputs
        loaded = self.reload(model, tmp_path / "saved")
        assert loaded is not model
        np.testing.assert_allclose(
            loaded.predict(test.users[:PAIRS], test.items[:PAIRS]), pred, rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(loaded.score_users(_batch(train)), scores, rtol=1e-5, atol=1e-5)
