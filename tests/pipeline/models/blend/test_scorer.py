"""The rank blend and the cold-start protocol, on real ML-100K data."""

import numpy as np

from pipeline.evaluation.cold_start import cold_start_split, genre_popularity, rank_cold_items
from pipeline.evaluation.splits import temporal_split
from pipeline.evaluation.weight_search import choose_weights
from pipeline.models.baselines import EASE, BiasedMF, GlobalMean, Popularity
from pipeline.models.blend.scorer import BlendRecommender, standardise
from pipeline.models.blend.weights import BlendWeights
from tests.ml100k_slice import load_ml100k_slice
from tests.pipeline.test_baselines import check_recommender_contract


def test_standardise_per_user():
    z = standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert (z[1] == 0).all()  # a constant row stays finite


def test_blend_weights_one_and_zero_are_the_members(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    ease, pop = EASE().fit(train), Popularity().fit(train)
    users = np.arange(5)
    only_pop = BlendRecommender(pop, ease, BlendWeights(1.0)).score_users(users)
    np.testing.assert_allclose(only_pop, standardise(pop.score_users(users).astype(np.float64)), rtol=1e-5)
    only_ease = BlendRecommender(pop, ease, BlendWeights(0.0)).score_users(users)
    assert np.argmax(only_ease[0]) == np.argmax(ease.score_users(users)[0])


def test_blend_follows_the_recommender_contract(ml100k_dir):
    train, test = temporal_split(load_ml100k_slice(ml100k_dir))
    check_recommender_contract(lambda: BlendRecommender(Popularity(), EASE(), BlendWeights(0.3)), train, test)


def test_ranking_weight_is_chosen_on_validation_and_favours_the_better_member(ml100k_dir):
    train, _ = temporal_split(load_ml100k_slice(ml100k_dir))
    chosen = choose_weights(Popularity, EASE, GlobalMean, train, rerank_grid=(0.0,))
    figures = chosen.figures["ndcg@10"]
    assert set(figures) == {round(w, 3) for w in np.linspace(0, 1, 11)}
    assert figures[chosen.weight] == max(figures.values())
    assert figures[0.0] > figures[1.0]  # EASE alone beats popularity alone on this slice
    assert chosen.weight < 1.0
    # a rating-head grid of 0 only: no rating-head term is searched or chosen
    assert chosen.rerank_weight == 0.0 and chosen.figures["rerank_ndcg@10"] == {}


def test_cold_start_split_holds_movies_out_entirely(ml100k_dir):
    data = load_ml100k_slice(ml100k_dir)
    split = cold_start_split(data)
    assert not np.isin(split.train.items, split.cold_items).any()
    assert np.isin(split.test.items, split.cold_items).all()
    assert len(split.train) + len(split.test) == len(data)
    assert abs(len(split.cold_items) - 0.1 * len(np.unique(data.items))) <= 1


def test_genre_popularity_and_cold_ranking_metrics(ml100k_dir):
    data = load_ml100k_slice(ml100k_dir)
    split = cold_start_split(data)
    genres = np.zeros((data.n_items, 2))
    genres[::2, 0] = 1  # even items: genre 0
    genres[1::2, 1] = 1
    pop = genre_popularity(split.train, genres, split.cold_items)
    counts = np.bincount(split.train.items, minlength=data.n_items)
    expected_even = counts[::2].sum()
    assert pop[split.cold_items % 2 == 0][0] == expected_even
    # an oracle that scores each user's liked held-out movies highest gets NDCG 1
    oracle = np.zeros((data.n_users, len(split.cold_items)))
    col = {i: c for c, i in enumerate(split.cold_items.tolist())}
    liked = split.test.ratings >= 4
    oracle[split.test.users[liked], [col[i] for i in split.test.items[liked].tolist()]] = 1.0
    assert rank_cold_items(oracle, split)["ndcg@10"] == 1.0
    assert rank_cold_items(-oracle, split)["ndcg@10"] < 0.5


def test_rating_blend_mixes_predictions_and_its_weight_is_chosen_on_validation(ml100k_dir):
    from pipeline.evaluation.splits import random_split

    train, test = random_split(load_ml100k_slice(ml100k_dir))
    mf, mean = BiasedMF().fit(train), GlobalMean().fit(train)
    users, items = test.users[:50], test.items[:50]
    half = BlendRecommender(mf, EASE(), BlendWeights(1.0, 0.5), rating_partner=mean).predict(users, items)
    np.testing.assert_allclose(
        half, 0.5 * mf.predict(users, items) + 0.5 * mean.predict(users, items), rtol=1e-6
    )
    chosen = choose_weights(BiasedMF, EASE, GlobalMean, train, rerank_grid=(0.0,))
    errors = chosen.figures["rmse"]
    assert set(errors) == {round(w, 3) for w in np.linspace(0, 1, 11)}
    assert errors[chosen.rating_weight] == min(errors.values())
    assert chosen.rating_weight > 0.5  # biased MF predicts ratings far better than the global mean
    assert errors[1.0] < errors[0.0]
