"""A trained hybrid network (``pipeline.models.hybrid.artifact.HybridArtifact``): saved and loaded, its rating
head over rows of movies, and content-only scoring of movies it never saw. The network is the session's tiny
one, trained on the first 300 real ML-100K users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.text_embeddings import encode
from pipeline.features.vocab import movie_content
from pipeline.models.hybrid.artifact import HybridArtifact
from tests.support.configs import TINY


@pytest.fixture(scope="module")
def network(tiny_blend) -> HybridArtifact:
    return tiny_blend.network


def test_save_and_load_predict_and_rank_the_same(network, first_300_users, tmp_path):
    pairs = first_300_users.subset(np.arange(0, len(first_300_users), 37))
    loaded = HybridArtifact.load(network.save(tmp_path / "m"))
    np.testing.assert_allclose(
        loaded.predict_index(pairs.users, pairs.items),
        network.predict_index(pairs.users, pairs.items),
        rtol=1e-6,
    )
    np.testing.assert_allclose(loaded.rank_index(np.arange(5)), network.rank_index(np.arange(5)), rtol=1e-5)
    assert loaded.item_map.to_list() == network.item_map.to_list()
    assert loaded.config == network.config and loaded.meta == network.meta
    np.testing.assert_array_equal(loaded.history_pairs[0], network.history_pairs[0])


def test_rating_matrix_is_the_rating_head_on_those_pairs(network):
    users = np.array([0, 5, 17])
    items = np.array([[3, 1, -1], [0, 2, 9], [100, -1, 7]])
    got = network.rating_matrix(users, items, pairs_per_step=4)  # several steps
    pairs = items >= 0
    expected = network.predict_index(np.repeat(users, 3)[pairs.ravel()], items[pairs])
    np.testing.assert_allclose(got[pairs], expected, rtol=1e-5)
    assert np.isnan(got[~pairs]).all()
    whole = network.rating_matrix(users)
    assert whole.shape == (3, len(network.item_map))
    np.testing.assert_allclose(whole[1, [0, 2, 9]], got[1], rtol=1e-5)


def test_content_only_scoring_of_an_unseen_movie(network):
    vocab = network.vocab
    new = pd.DataFrame(
        {
            "movie_id": [-1, -2],
            "genres": [["Animation", "Children"], ["Horror", "Thriller"]],
            "year": [1996, 1980],
            "runtime_minutes": [None, 95],
        }
    )
    director = vocab.persons["director"][0]
    credits = pd.DataFrame(
        {"movie_id": [-1], "external_id": [director], "role": ["director"], "ordering": [1]}
    )
    content = movie_content(vocab, new, credits, encode(["A Toy Adventure", "Night of the Slasher"]))
    assert content.people["director"][0, 0] == 1 and content.people["director"][1, 0] == 0
    users = np.array([0, 0])
    ratings = network.predict_content_index(users, content)
    assert np.isfinite(ratings).all() and ((1.0 <= ratings) & (ratings <= 5.0)).all()
    assert ratings[0] != ratings[1]
    vectors, _ = network.content_vectors(content)
    assert vectors.shape == (2, TINY.embedding_dim)
