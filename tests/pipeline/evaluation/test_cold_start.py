"""The item cold-start protocol (``pipeline.evaluation.cold_start``) on real ML-100K."""

import numpy as np

from pipeline.evaluation.cold_start import cold_start_split, genre_popularity, rank_cold_items
from tests.support.ml100k_slice import load_ml100k_slice


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
