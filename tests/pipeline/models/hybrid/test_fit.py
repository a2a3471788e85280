"""The hybrid network on real ML-100K: learning, repeatability, persistence, content-only scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.text_embeddings import encode
from pipeline.features.vocab import movie_content
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.fit import train_hybrid

TINY = HybridConfig(
    epochs=3,
    patience=0,
    embedding_dim=16,
    person_dim=8,
    mlp=(32, 16),
    content_mlp=(32, 16),
    batch_size=2048,
    negatives=512,
)


@pytest.fixture(scope="module")
def split(ml100k_data):
    """A slice of real ML-100K: the first 300 users, 80/20 at random."""
    X = ml100k_data.interactions
    rows = np.flatnonzero(X.users < 300)
    rng = np.random.default_rng(0)
    rng.shuffle(rows)
    cut = int(0.8 * len(rows))
    return X.subset(np.sort(rows[:cut])), X.subset(np.sort(rows[cut:]))


@pytest.fixture(scope="module")
def trained(ml100k_data, split):
    return train_hybrid(ml100k_data, split[0], TINY, device="cpu", progress=False)


def rmse(model, test):
    return float(np.sqrt(np.mean((model.predict_index(test.users, test.items) - test.ratings) ** 2)))


def test_short_training_lowers_loss_and_beats_global_mean(trained, split):
    train, test = split
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    global_mean = float(np.sqrt(np.mean((train.ratings.mean() - test.ratings) ** 2)))
    assert rmse(trained.model, test) < global_mean


def test_same_seed_same_model(ml100k_data, split, trained):
    again = train_hybrid(ml100k_data, split[0], TINY, device="cpu", progress=False)
    test = split[1]
    np.testing.assert_array_equal(
        again.model.predict_index(test.users, test.items), trained.model.predict_index(test.users, test.items)
    )
    assert [h["loss"] for h in again.history] == [h["loss"] for h in trained.history]


def test_save_and_load_predict_the_same(trained, split, tmp_path):
    test = split[1]
    loaded = HybridArtifact.load(trained.model.save(tmp_path / "m"))
    np.testing.assert_allclose(
        loaded.predict_index(test.users, test.items),
        trained.model.predict_index(test.users, test.items),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        loaded.rank_index(np.arange(5)), trained.model.rank_index(np.arange(5)), rtol=1e-5
    )
    assert loaded.item_map.to_list() == trained.model.item_map.to_list()


def test_content_only_scoring_of_an_unseen_movie(trained):
    model = trained.model
    vocab = model.vocab
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
    ratings = model.predict_content_index(users, content)
    assert np.isfinite(ratings).all() and ((1.0 <= ratings) & (ratings <= 5.0)).all()
    assert ratings[0] != ratings[1]
    vectors, _ = model.content_vectors(content)
    assert vectors.shape == (2, TINY.embedding_dim)
