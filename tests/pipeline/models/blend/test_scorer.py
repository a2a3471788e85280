"""The blend scorer (``pipeline.models.blend.scorer.BlendRecommender``) on real ML-100K: the recommender
contract with baseline members and with the hybrid network and its rating head, and what the blend computes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.splits import random_split, temporal_split
from pipeline.models.baselines import EASE, BiasedMF, GlobalMean, Popularity
from pipeline.models.blend.scorer import BlendRecommender, rating_scale, standardise
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.recommender import HybridRecommender
from pipeline.models.implicit_mf import ALS, BPR, ALSConfig, BPRConfig
from tests.support.configs import SMALL_EASE, SMALL_MF, TINY_CONTRACT
from tests.support.contract import NotFittedContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice, slice_of


class TestBaselineBlendContract(RecommenderContract, NotFittedContract):
    """Ranking: biased MF's scores with EASE's; ratings: biased MF with the global mean."""

    @pytest.fixture(scope="class")
    def make(self):
        return lambda: BlendRecommender(
            BiasedMF(SMALL_MF), EASE(SMALL_EASE), BlendWeights(0.3, 0.5), rating_partner=GlobalMean()
        )


class TestHybridBlendContract(RecommenderContract, NotFittedContract):
    """The published blend's shape: the network and EASE ranking, plus the network's rating head (every term
    for every movie), ratings from the network and biased MF."""

    @pytest.fixture(scope="class")
    def split(self, ml100k_data):
        return random_split(slice_of(ml100k_data))

    @pytest.fixture(scope="class")
    def make(self, ml100k_data, split):
        return lambda: BlendRecommender(
            HybridRecommender(ml100k_data, TINY_CONTRACT, device="cpu"),
            EASE(SMALL_EASE),
            BlendWeights(0.6, 0.5, 1.0),
            rating_partner=BiasedMF(SMALL_MF),
            rating_scale=rating_scale(split[0]),
        )


def test_standardise_per_user():
    z = standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert (z[1] == 0).all()  # a constant row stays finite


def numpys_z(scores: np.ndarray) -> np.ndarray:
    """The z-scores as one whole-matrix numpy expression: what the blocked ``standardise`` must equal."""
    s = np.asarray(scores, np.float64)
    std = s.std(axis=1, keepdims=True)
    return (s - s.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def test_standardise_in_blocks_gives_the_whole_matrix_floats_exactly():
    rng = np.random.default_rng(3)
    scores = (rng.standard_normal((301, 9_000)) * rng.uniform(0.1, 50, (301, 1))).astype(np.float32)
    scores[5] = 2.5  # a constant row
    scores[7, ::3] = -1e30  # a row whose scale dwarfs the rest
    z = standardise(scores)
    assert z.dtype == np.float64 and z.shape == scores.shape
    assert np.array_equal(z, numpys_z(scores))  # bit for bit, over several blocks of rows
    assert (z[5] == 0).all()


class _Fixed:
    """A ranking term with fixed scores, ``users`` its rows."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users]


def test_the_cheap_terms_mix_to_the_whole_matrix_floats_exactly():
    rng = np.random.default_rng(5)
    n_users, n_items = 257, 6_000  # rows in several blocks
    network, als, ease = (rng.standard_normal((n_users, n_items)).astype(np.float32) for _ in range(3))
    weights = BlendWeights(0.35, als_weight=0.2)
    blend = BlendRecommender(_Fixed(network), _Fixed(ease), weights, als=_Fixed(als))
    users = rng.permutation(n_users)[:200]
    expected = (
        0.35 * numpys_z(network[users])
        + 0.2 * numpys_z(als[users])
        + weights.ease_weight * numpys_z(ease[users])
    ).astype(np.float32)
    assert np.array_equal(blend.retrieval_scores(users), expected)


def test_blend_weights_one_and_zero_are_the_members(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    ease, pop = EASE().fit(train), Popularity().fit(train)
    users = np.arange(5)
    only_pop = BlendRecommender(pop, ease, BlendWeights(1.0)).score_users(users)
    np.testing.assert_allclose(only_pop, standardise(pop.score_users(users).astype(np.float64)), rtol=1e-5)
    only_ease = BlendRecommender(pop, ease, BlendWeights(0.0)).score_users(users)
    assert np.argmax(only_ease[0]) == np.argmax(ease.score_users(users)[0])
    half = BlendRecommender(pop, ease, BlendWeights(0.5)).score_users(users)
    expected = 0.5 * standardise(pop.score_users(users).astype(np.float64)) + 0.5 * standardise(
        ease.score_users(users).astype(np.float64)
    )
    np.testing.assert_allclose(half, expected, rtol=1e-5, atol=1e-6)


USERS = np.arange(7)


def z(model) -> np.ndarray:
    """``model``'s scores of ``USERS``, standardised per user as the blend standardises its terms."""
    return standardise(model.score_users(USERS).astype(np.float64))


@pytest.fixture(scope="module")
def slice_baselines(ml100k_dir):
    """The slice's temporal train part with EASE and popularity fitted on it."""
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    return train, EASE().fit(train), Popularity().fit(train)


def test_an_als_share_adds_its_standardised_scores(slice_baselines):
    train, ease, pop = slice_baselines
    als = ALS(ALSConfig(factors=16, iterations=5)).fit(train)
    users = USERS

    weights = BlendWeights(0.2, als_weight=0.5)
    blend = BlendRecommender(pop, ease, weights, als=als)
    expected = 0.2 * z(pop) + 0.5 * z(als) + 0.3 * z(ease)
    np.testing.assert_allclose(blend.retrieval_scores(users), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blend.score_users(users), expected, rtol=1e-5, atol=1e-5)
    assert blend.als_weight == 0.5
    # the network and ALS with the whole of it: no EASE needed, and none scored
    no_ease = BlendRecommender(pop, None, BlendWeights(0.4, als_weight=0.6), als=als).score_users(users)
    np.testing.assert_allclose(no_ease, 0.4 * z(pop) + 0.6 * z(als), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs the ALS member"):
        BlendRecommender(pop, ease, weights)
    # an ALS member with share 0 is not scored: the blend is the network with EASE
    np.testing.assert_array_equal(
        BlendRecommender(pop, ease, BlendWeights(0.5), als=als).score_users(users),
        BlendRecommender(pop, ease, BlendWeights(0.5)).score_users(users),
    )


def test_a_member_adds_its_standardised_scores(slice_baselines):
    train, ease, pop = slice_baselines
    bpr = BPR(BPRConfig(factors=8, iterations=5)).fit(train)
    users = USERS

    weights = BlendWeights(0.2, members={"bpr": 0.5})
    blend = BlendRecommender(pop, ease, weights, members={"bpr": bpr})
    np.testing.assert_allclose(
        blend.score_users(users), 0.2 * z(pop) + 0.5 * z(bpr) + 0.3 * z(ease), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"gives \['bpr'\] a share"):
        BlendRecommender(pop, ease, weights)
    # a member with share 0 is not needed and not scored
    np.testing.assert_array_equal(
        BlendRecommender(pop, ease, BlendWeights(0.5, members={"bpr": 0.0})).score_users(users),
        BlendRecommender(pop, ease, BlendWeights(0.5)).score_users(users),
    )


def test_rating_blend_mixes_predictions(ml100k_dir):
    train, test = random_split(load_ml100k_slice(ml100k_dir))
    mf, mean = BiasedMF().fit(train), GlobalMean().fit(train)
    users, items = test.users[:50], test.items[:50]
    half = BlendRecommender(mf, EASE(), BlendWeights(1.0, 0.5), rating_partner=mean).predict(users, items)
    np.testing.assert_allclose(
        half, 0.5 * mf.predict(users, items) + 0.5 * mean.predict(users, items), rtol=1e-6
    )
    alone = BlendRecommender(mf, None, BlendWeights(1.0, 1.0), rating_partner=mean).predict(users, items)
    np.testing.assert_array_equal(alone, mf.predict(users, items))


def test_a_weight_below_one_needs_its_partner_and_a_rating_head_term_needs_a_rating_head(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    pop = Popularity().fit(train)
    with pytest.raises(ValueError, match="needs a partner"):
        BlendRecommender(pop, None, BlendWeights(0.5))
    with pytest.raises(ValueError, match="needs a rating partner"):
        BlendRecommender(pop, None, BlendWeights(1.0, 0.5))
    with pytest.raises(ValueError, match="rating scale"):
        BlendRecommender(pop, None, BlendWeights(), rating_scale=0.0)
    with pytest.raises(TypeError, match="no rating_matrix"):  # Popularity has no rating head to re-rank with
        BlendRecommender(pop, None, BlendWeights(rerank_weight=1.0)).score_users(np.arange(2))


def test_rating_scale_is_the_train_ratings_standard_deviation(ml100k_dir):
    train = load_ml100k_slice(ml100k_dir)
    assert rating_scale(train) == pytest.approx(float(np.std(train.ratings)))
    assert rating_scale(train.subset(np.flatnonzero(train.ratings == 4))) == 1.0  # constant: the unit
