"""The weight search's pool of candidates (``pipeline.evaluation.ranking_pool``) on real ML-100K: the lists it
gives are the blend's own over the whole catalogue, at any depth, and so is every figure of the search."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import weight_search
from pipeline.evaluation.protocol import top_k_for_users
from pipeline.evaluation.ranking_pool import RankingPool
from pipeline.evaluation.splits import temporal_split
from pipeline.models.baselines import EASE, BiasedMF, Popularity
from pipeline.models.blend.scorer import BlendRecommender
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.implicit_mf import ALS, ALSConfig
from tests.support.ml100k_slice import load_ml100k_slice

GRID = tuple(np.linspace(0, 1, 11))


@pytest.fixture(scope="module")
def fitted(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    inner_train, inner_test = weight_search.validation_split(train)
    terms = {
        "network": BiasedMF().fit(inner_train),
        "ease": EASE().fit(inner_train),
        "als": ALS(ALSConfig(factors=16, iterations=5)).fit(inner_train),
        "popularity": Popularity().fit(inner_train),  # equal scores for every user: ties across the cut
    }
    return inner_train, inner_test, terms


WEIGHTS = (
    BlendWeights(0.2, als_weight=0.3),
    BlendWeights(1.0),
    BlendWeights(0.0),
    BlendWeights(0.1, als_weight=0.2, members={"popularity": 0.4}),
)


@pytest.mark.parametrize("depth", [2, 40, 200])
def test_the_pools_lists_are_the_blends_own_at_any_depth(fitted, depth):
    inner_train, inner_test, terms = fitted
    users = np.unique(inner_test.users)
    outside = users[-7:]  # users the pool was not built for are scored over the catalogue
    pool = RankingPool(terms, users[:-7], inner_train.binary_matrix(), depth=depth, build_bytes=1 << 20)
    assert pool.items.shape[1] <= 4 * depth
    members = {"popularity": terms["popularity"]}
    for weights in WEIGHTS:
        blend = BlendRecommender(terms["network"], terms["ease"], weights, als=terms["als"], members=members)
        expected = top_k_for_users(blend, inner_train, users)
        np.testing.assert_array_equal(top_k_for_users(pool.blend(weights), inner_train, users), expected)
    assert pool.listed == len(WEIGHTS) * len(users)
    if depth == 2:  # two movies a term cannot vouch for a list of 10: the bound sends users to the catalogue
        assert pool.full_lists > len(WEIGHTS) * len(outside)
    if depth == 200:  # on this slice the bound clears every pooled user at the default depth
        assert pool.full_lists == len(WEIGHTS) * len(outside)


def test_a_shallow_pool_gives_the_search_the_same_figures(fitted):
    inner_train, inner_test, terms = fitted
    users = np.unique(inner_test.users)
    rated = inner_train.binary_matrix()
    searched = {name: terms[name] for name in ("network", "ease", "als")}
    deep = weight_search._ranking_figures(
        RankingPool(searched, users, rated), inner_train, inner_test, GRID, GRID, 10
    )
    shallow_pool = RankingPool(searched, users, rated, depth=1)
    shallow = weight_search._ranking_figures(shallow_pool, inner_train, inner_test, GRID, GRID, 10)
    assert shallow == deep
    assert shallow_pool.full_lists > 0
    assert len(deep[2]["ndcg@10"]) == 11


def test_a_pool_refuses_a_depth_below_one(fitted):
    inner_train, _, terms = fitted
    with pytest.raises(ValueError, match="depth of 1 or more"):
        RankingPool(terms, np.arange(3), inner_train.binary_matrix(), depth=0)
