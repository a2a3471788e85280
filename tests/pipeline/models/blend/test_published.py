"""The published model (``pipeline.models.blend.published.PublishedBlend``): the recommender contract through
an adapter that trains it on a split, its ranking as the blend's terms, persistence, and EASE above its cap
(weights for the most-rated movies only)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.batch.explain import contributions
from pipeline.evaluation.splits import random_split
from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.base import check_fitted
from pipeline.models.baselines import EASEConfig
from pipeline.models.blend.published import PublishedBlend, fit_partners
from pipeline.models.blend.scorer import standardise
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.train import train_hybrid
from pipeline.models.implicit_mf import BPR, LMF, BPRConfig
from tests.support.configs import TINY_CONTRACT
from tests.support.contract import PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import slice_of


class PublishedBlendRecommender:
    """``PublishedBlend`` behind the ``Recommender`` protocol: ``fit`` trains the network on the split and
    builds the blend from it with ``PublishedBlend.from_training``, as ``train_published`` does on every
    rating; scoring is the published blend's, by dense index."""

    name = "published_blend"

    def __init__(self, data: TrainingData, config: HybridConfig, weights: BlendWeights) -> None:
        self.data, self.config, self.weights = data, config, weights
        self.published: PublishedBlend | None = None

    @classmethod
    def of(cls, published: PublishedBlend) -> PublishedBlendRecommender:
        adapter = cls(None, published.network.config, published.weights)  # type: ignore[arg-type]
        adapter.published = published
        return adapter

    def fit(self, train: Interactions) -> PublishedBlendRecommender:
        network = train_hybrid(self.data, train, self.config, device="cpu", progress=False).model
        self.published = PublishedBlend.from_training(network, train, self.weights)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        check_fitted(self.published, self.name)
        return self.published.predict_index(users, items)  # type: ignore[union-attr]

    def score_users(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self.published, self.name)
        return self.published.score_users(users)  # type: ignore[union-attr]


class TestPublishedBlendContract(RecommenderContract, PersistenceContract):
    """Both partners in (EASE for ranking, biased MF for ratings) and the rating-head term."""

    @pytest.fixture(scope="class")
    def split(self, ml100k_data):
        return random_split(slice_of(ml100k_data))

    @pytest.fixture(scope="class")
    def make(self, ml100k_data):
        return lambda: PublishedBlendRecommender(ml100k_data, TINY_CONTRACT, BlendWeights(0.6, 0.5, 1.0))

    def reload(self, model, directory):
        return PublishedBlendRecommender.of(PublishedBlend.load(model.published.save(directory)))


def test_ranking_is_the_cheap_terms_plus_the_rating_head(tiny_blend, first_300_users):
    assert tiny_blend.rating_scale == pytest.approx(float(np.std(first_300_users.ratings)))
    users = np.arange(8)
    ease = tiny_blend.ease.score_users(users).astype(np.float64)
    network = tiny_blend.network.rank_index(users).astype(np.float64)
    cheap = 0.6 * standardise(network) + 0.4 * standardise(ease)
    np.testing.assert_allclose(tiny_blend.retrieval_scores(users), cheap, rtol=1e-4, atol=1e-5)
    term = tiny_blend.network.rating_matrix(users) / tiny_blend.rating_scale
    np.testing.assert_allclose(tiny_blend.score_users(users), cheap + term, rtol=1e-4, atol=1e-4)
    items = np.array([[0, 4, -1]] * len(users))
    np.testing.assert_allclose(
        tiny_blend.rerank_scores(users, items)[:, :2], term[:, [0, 4]], rtol=1e-5, atol=1e-6
    )
    # ratings: the network alone (rating weight 1): no biased MF partner was fitted
    assert tiny_blend.mf is None
    pairs = first_300_users.subset(np.arange(20))
    np.testing.assert_allclose(
        tiny_blend.predict_index(pairs.users, pairs.items),
        tiny_blend.network.predict_index(pairs.users, pairs.items),
        rtol=1e-6,
    )


def test_saved_and_loaded_model_keeps_the_rating_head_term(tiny_blend, tmp_path):
    loaded = PublishedBlend.load(tiny_blend.save(tmp_path / "p"))
    assert loaded.weights == tiny_blend.weights and loaded.rerank_weight == 1.0
    assert loaded.rating_scale == pytest.approx(tiny_blend.rating_scale)
    assert (loaded.ease is not None, loaded.mf is None) == (True, True)
    assert (loaded.rated != tiny_blend.rated).nnz == 0
    np.testing.assert_allclose(
        loaded.score_users(np.arange(5)), tiny_blend.score_users(np.arange(5)), rtol=1e-4, atol=1e-4
    )


def test_a_partner_the_weights_call_for_must_be_there(tiny_blend):
    with pytest.raises(ValueError, match="needs the EASE partner"):
        PublishedBlend(tiny_blend.network, tiny_blend.rated, BlendWeights(0.5))
    with pytest.raises(ValueError, match="needs the biased MF partner"):
        PublishedBlend(tiny_blend.network, tiny_blend.rated, BlendWeights(1.0, 0.5))


def test_above_the_ease_cap_the_blend_keeps_ease_for_the_most_rated(tiny_blend, first_300_users, tmp_path):
    cap = 300  # of the ~1,500 movies these users rated
    weights = BlendWeights(0.6, 1.0, 1.0)
    blend = PublishedBlend.from_training(
        tiny_blend.network, first_300_users, weights, ease_config=EASEConfig(max_items=cap)
    )
    assert blend.weights == weights and blend.meta["ease_max_items"] == cap
    assert blend.ease is not None and blend.ease.kept_ is not None and blend.ease.weights_.shape == (cap, cap)
    users = np.arange(8)
    dropped = np.setdiff1d(np.arange(blend.n_items), blend.ease.kept_)
    # EASE scores the movies outside its kept ones alike, so among them the network's order is the blend's
    cheap = blend.retrieval_scores(users).astype(np.float64)
    network = 0.6 * standardise(blend.network.rank_index(users).astype(np.float64))
    assert np.allclose((cheap - network)[:, dropped].std(axis=1), 0.0, atol=1e-5)
    assert np.all((cheap - network)[:, blend.ease.kept_].std(axis=1) > 1e-3)  # EASE moves the kept ones
    # explanations read EASE's weights by catalogue index: none from or to a movie outside the kept ones
    kept = blend.ease.kept_
    rated, listed = np.array([kept[0], dropped[0], kept[7]]), np.array([kept[1], dropped[1], kept[2]])
    c = contributions(blend, rated, listed)
    assert c.shape == (3, 3) and np.all(c[1] == 0) and np.all(c[:, 1] == 0)
    np.testing.assert_array_equal(c[np.ix_([0, 2], [0, 2])], blend.ease.weights_[np.ix_([0, 7], [1, 2])])
    loaded = PublishedBlend.load(blend.save(tmp_path / "capped"))
    assert loaded.ease is not None and loaded.ease.config.max_items == cap
    np.testing.assert_array_equal(loaded.ease.kept_, blend.ease.kept_)
    np.testing.assert_array_equal(loaded.ease.weights_, blend.ease.weights_)
    np.testing.assert_allclose(loaded.score_users(users), blend.score_users(users), rtol=1e-4, atol=1e-4)


def test_an_als_share_is_fitted_saved_and_loaded(tiny_blend, first_300_users, tmp_path):
    weights = BlendWeights(0.3, 1.0, 1.0, als_weight=0.4)
    blend = PublishedBlend.from_training(tiny_blend.network, first_300_users, weights)
    assert blend.als is not None and blend.ease is not None and blend.mf is None
    users = np.arange(8)

    def z(scores):
        return standardise(np.asarray(scores, np.float64))

    cheap = (
        0.3 * z(blend.network.rank_index(users))
        + 0.4 * z(blend.als.score_users(users))
        + 0.3 * z(blend.ease.score_users(users))
    )
    np.testing.assert_allclose(blend.retrieval_scores(users), cheap, rtol=1e-4, atol=1e-5)
    saved = blend.save(tmp_path / "with-als")
    assert (saved / "als.npz").exists()
    loaded = PublishedBlend.load(saved)
    assert loaded.weights == weights and loaded.als is not None
    assert loaded.als.config == blend.als.config
    np.testing.assert_array_equal(loaded.als.factors()[1], blend.als.factors()[1])
    np.testing.assert_allclose(loaded.score_users(users), blend.score_users(users), rtol=1e-5, atol=1e-5)
    # no ALS share: nothing fitted, nothing saved (what every artefact of earlier versions looks like)
    assert tiny_blend.als is None and not (tiny_blend.save(tmp_path / "no-als") / "als.npz").exists()
    with pytest.raises(ValueError, match="needs the ALS partner"):
        PublishedBlend(tiny_blend.network, tiny_blend.rated, weights, tiny_blend.ease)


def test_a_member_with_a_share_is_fitted_saved_and_loaded(tiny_blend, first_300_users, tmp_path):
    weights = BlendWeights(0.3, 1.0, 1.0, members={"bpr": 0.5, "lmf": 0.0})
    small = {"bpr": lambda: BPR(BPRConfig(factors=8, iterations=5)), "lmf": LMF}
    blend = PublishedBlend.from_training(tiny_blend.network, first_300_users, weights, members=small)
    assert set(blend.members) == {"bpr"}  # a member at share 0 is not fitted
    users = np.arange(8)

    def z(scores):
        return standardise(np.asarray(scores, np.float64))

    cheap = (
        0.3 * z(blend.network.rank_index(users))
        + 0.5 * z(blend.members["bpr"].score_users(users))
        + 0.2 * z(blend.ease.score_users(users))  # type: ignore[union-attr]
    )
    np.testing.assert_allclose(blend.retrieval_scores(users), cheap, rtol=1e-4, atol=1e-5)
    saved = blend.save(tmp_path / "with-bpr")
    assert (saved / "member-bpr.npz").exists() and not (saved / "member-lmf.npz").exists()
    loaded = PublishedBlend.load(saved)
    assert loaded.weights == weights and isinstance(loaded.members["bpr"], BPR)
    np.testing.assert_allclose(loaded.score_users(users), blend.score_users(users), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no factory builds them"):
        PublishedBlend.from_training(tiny_blend.network, first_300_users, weights)
    with pytest.raises(ValueError, match="no such member"):
        PublishedBlend(tiny_blend.network, tiny_blend.rated, weights, tiny_blend.ease)


def test_an_autorec_share_is_fitted_saved_and_loaded(tiny_blend, first_300_users, tmp_path):
    weights = BlendWeights(0.6, 0.3, 1.0, autorec_weight=0.5)
    blend = PublishedBlend.from_training(tiny_blend.network, first_300_users, weights)
    assert blend.autorec is not None and blend.mf is not None
    users, items = np.repeat(np.arange(6), 5), np.tile(np.arange(5), 6)
    network = blend.network.predict_index(users, items).astype(np.float64)
    expected = (
        0.3 * network + 0.5 * blend.autorec.predict(users, items) + 0.2 * blend.mf.predict(users, items)
    )
    np.testing.assert_allclose(blend.predict_index(users, items), expected, rtol=1e-5)
    saved = blend.save(tmp_path / "with-autorec")
    assert (saved / "autorec.npz").exists()
    loaded = PublishedBlend.load(saved)
    assert loaded.weights == weights and loaded.autorec is not None
    np.testing.assert_array_equal(loaded.predict_index(users, items), blend.predict_index(users, items))
    # the network and AutoRec with every rating share: no biased MF fitted
    assert (
        PublishedBlend.from_training(
            tiny_blend.network, first_300_users, BlendWeights(0.6, 0.3, 1.0, autorec_weight=0.7)
        ).mf
        is None
    )
    # no AutoRec share: nothing fitted, nothing saved (what every artefact of earlier versions looks like)
    assert tiny_blend.autorec is None and not (tiny_blend.save(tmp_path / "no-ar") / "autorec.npz").exists()
    with pytest.raises(ValueError, match="needs the AutoRec partner"):
        PublishedBlend(tiny_blend.network, tiny_blend.rated, weights, tiny_blend.ease, blend.mf)


def test_fit_partners_fits_and_logs_only_the_partners_with_a_share(first_300_users, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.models.blend.published")
    partners = fit_partners(first_300_users, BlendWeights(0.5, 0.5, 1.0, als_weight=0.2))
    assert partners.ease is not None and partners.als is not None and partners.mf is not None
    assert partners.autorec is None and partners.members == {}
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" fitted on ")[0] for line in lines] == [
        "blend partner EASE",
        "blend partner ALS",
        "blend partner biased MF",
    ]
    assert all(f" fitted on {len(first_300_users)} ratings in " in line for line in lines)
    caplog.clear()
    with pytest.raises(ValueError, match="no factory builds them"):
        fit_partners(first_300_users, BlendWeights(0.5, members={"bpr": 0.5}))
    assert not caplog.records  # refused before fitting anything
