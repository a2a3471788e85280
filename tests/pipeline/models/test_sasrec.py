"""SASRec (``pipeline.models.sasrec``): the recommender contract on the real ML-100K slice with content vectors
and save/load, then its sequences and windows, causal attention, the content path, seeded determinism, that
training learns something, and the content built from the real database's ``TrainingData``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.evaluation.splits import random_split, temporal_split
from pipeline.features.interactions import Interactions
from pipeline.models.base import NotFitted
from pipeline.models.blend.members import member_factories, save_starts, warm_or_new
from pipeline.models.implicit_mf import ALS, ALSConfig
from pipeline.models.sasrec import (
    PAD,
    SASRec,
    SASRecConfig,
    SASRecNetwork,
    attention_mask,
    last_windows,
    movie_content,
    training_windows,
    user_sequences,
)
from tests.support.contract import NotFittedContract, PersistenceContract, RecommenderContract
from tests.support.ml100k_slice import load_ml100k_slice, slice_of

# Far narrower, shorter and fewer epochs than the defaults: the contract fits the model three times.
SMALL = SASRecConfig(factors=16, blocks=2, heads=2, max_length=20, epochs=3, batch_size=64)
CONTENT_WIDTH = 8


def random_content(n_items: int, seed: int = 0) -> np.ndarray:
    """Unit-length random rows, the scale of ``movie_content``'s text embeddings."""
    rows = np.random.default_rng(seed).normal(size=(n_items, CONTENT_WIDTH))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class TestSASRecContract(RecommenderContract, NotFittedContract, PersistenceContract):
    rates = False

    @pytest.fixture(scope="class")
    def make(self, split):
        content = random_content(split[0].n_items)
        return lambda: SASRec(SMALL, content)

    def reload(self, model, directory):
        return SASRec.load(model.save(directory / "model.npz"))


@pytest.fixture(scope="module")
def split(ml100k_dir) -> tuple[Interactions, Interactions]:
    return random_split(load_ml100k_slice(ml100k_dir))


def test_sequences_are_by_time_then_movie_and_windows_target_every_later_movie_once() -> None:
    train = Interactions(
        users=np.array([0, 0, 0, 0, 2, 0]),
        items=np.array([5, 3, 4, 1, 2, 0]),
        ratings=np.array([5, 4, 3, 5, 4, 1], np.float32),
        timestamps=np.array([30, 10, 20, 20, 5, 40]),
        n_users=3,
        n_items=6,
    )
    sequences = user_sequences(train, min_rating=0)
    assert [s.tolist() for s in sequences] == [[3, 1, 4, 5, 0], [], [2]]  # the tie at 20 by movie index
    assert user_sequences(train, min_rating=4)[0].tolist() == [3, 1, 5]
    inputs, targets, users = training_windows(sequences, max_length=3)
    # user 0: targets [4, 5, 0] after inputs [1, 4, 5], then target [1] after [3]; users 1 and 2: none
    np.testing.assert_array_equal(inputs, [[2, 5, 6], [PAD, PAD, 4]])
    np.testing.assert_array_equal(targets, [[5, 6, 1], [PAD, PAD, 2]])
    np.testing.assert_array_equal(users, [0, 0])
    np.testing.assert_array_equal(last_windows(sequences, 3), [[5, 6, 1], [PAD, PAD, PAD], [PAD, PAD, 3]])


def test_attention_sees_itself_and_earlier_real_slots_only() -> None:
    mask = attention_mask(torch.tensor([[PAD, 4, 7], [3, 4, 7]]))
    assert mask.shape == (2, 1, 3, 3)  # one mask for every head
    expected = torch.tensor([[True, False, False], [False, True, False], [False, True, True]])
    torch.testing.assert_close(mask[0, 0], expected)
    torch.testing.assert_close(mask[1, 0], torch.ones(3, 3, dtype=torch.bool).tril())


def test_a_later_movie_does_not_change_the_earlier_hidden_states() -> None:
    config = SASRecConfig(factors=16, blocks=2, heads=2, max_length=6, dropout=0.0)
    network = SASRecNetwork(20, torch.from_numpy(random_content(20)), config)
    network.initialise(torch.Generator().manual_seed(0))
    network.eval()
    with torch.no_grad():
        items = network.item_vectors()
        states = network.hidden(torch.tensor([[PAD, 3, 9, 4, 1, 12], [PAD, 3, 9, 4, 1, 17]]), items)
    torch.testing.assert_close(states[0, :5], states[1, :5], rtol=0, atol=0)
    assert not torch.allclose(states[0, 5], states[1, 5])


def test_movie_vectors_are_the_id_embedding_plus_the_projected_content() -> None:
    content = random_content(4)
    content[1] = content[0]  # movies 0 and 1: the same content; movie 2: other content
    network = SASRecNetwork(4, torch.from_numpy(content), SASRecConfig(factors=8))
    network.initialise(torch.Generator().manual_seed(0))
    with torch.no_grad():
        network.ids[1] = network.ids[0]
        network.ids[2] = network.ids[0]
        vectors = network.item_vectors()
    torch.testing.assert_close(vectors[1], vectors[0])
    assert not torch.allclose(vectors[2], vectors[0])  # the same ids, different content
    plain = SASRecNetwork(4, None, SASRecConfig(factors=8))
    plain.initialise(torch.Generator().manual_seed(0))
    assert plain.projection is None and plain.item_vectors() is plain.ids


def test_the_content_changes_the_fitted_model(split) -> None:
    train = split[0]
    users = np.arange(5)
    content = random_content(train.n_items)
    with_content = SASRec(SMALL, content).fit(train).score_users(users)
    shuffled = SASRec(SMALL, content[np.random.default_rng(1).permutation(train.n_items)]).fit(train)
    without = SASRec(SMALL).fit(train)
    assert not np.allclose(with_content, shuffled.score_users(users))
    assert not np.allclose(with_content, without.score_users(users))
    assert np.isfinite(without.score_users(users)).all()
    with pytest.raises(ValueError, match="content has 3 rows"):
        SASRec(SMALL, content[:3]).fit(train)


def test_fitting_is_deterministic_whatever_torchs_thread_count_and_leaves_the_global_rng(split) -> None:
    train = split[0]
    users = np.arange(train.n_users)
    content = random_content(train.n_items)
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    one = SASRec(SMALL, content).fit(train)
    # the weights and dropout draw from the model's own generator, never torch's global one
    assert torch.equal(torch.get_rng_state(), state)
    try:
        torch.set_num_threads(2)
        two = SASRec(SMALL, content).fit(train)
        assert torch.get_num_threads() == 2  # fit restores the caller's count
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one.score_users(users), two.score_users(users))
    assert one.losses_ == two.losses_
    other_seed = SASRec(dataclasses.replace(SMALL, seed=7), content).fit(train)
    assert not np.array_equal(one.score_users(users[:5]), other_seed.score_users(users[:5]))


@pytest.mark.parametrize(
    ("loss", "negatives", "per_target"),
    [("bce", 0, 1), ("bce", 0, 4), ("softmax", 0, 4), ("softmax", 64, 4)],
)
def test_training_lowers_the_loss_and_ranks_the_next_movies_above_random_ones(
    ml100k_dir, loss, negatives, per_target
) -> None:
    train, test = temporal_split(load_ml100k_slice(ml100k_dir))
    config = SASRecConfig(factors=32, blocks=1, max_length=30, epochs=8, batch_size=16, learning_rate=3e-3)
    config = dataclasses.replace(config, loss=loss, negatives=negatives, negatives_per_target=per_target)
    model = SASRec(config, random_content(train.n_items)).fit(train)
    assert len(model.losses_) == 8 and model.losses_[-1] < 0.8 * model.losses_[0]
    scores = model.score_users(np.arange(train.n_users))
    random_movies = np.random.default_rng(0).integers(0, train.n_items, len(test))
    # AUC of each user's next movies against random ones, pair by pair (0.5: no better than chance; the
    # untrained network about 0.5, the trained one about 0.67, popularity 0.685 on this 150-user slice)
    auc = np.mean(scores[test.users, test.items] > scores[test.users, random_movies])
    assert auc > 0.6


def test_the_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="factors"):
        SASRecConfig(factors=0)
    with pytest.raises(ValidationError, match="multiple of heads"):
        SASRecConfig(factors=10, heads=3)
    with pytest.raises(ValidationError, match="dropout"):
        SASRecConfig(dropout=1.0)
    with pytest.raises(ValidationError, match="learning_rate"):
        SASRecConfig(learning_rate=float("nan"))
    with pytest.raises(ValidationError, match="loss"):
        SASRecConfig(loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="negatives_per_target"):
        SASRecConfig(negatives_per_target=0)
    with pytest.raises((TypeError, ValidationError)):
        SASRecConfig(block=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="SASRecConfig"):
        SASRec(ALSConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        SASRec(SMALL, np.full((3, 2), np.nan, np.float32))


def test_a_saved_model_loads_only_as_itself(split, tmp_path) -> None:
    path = SASRec(SMALL).fit(split[0]).save(tmp_path / "sasrec.npz")
    assert path == tmp_path / "sasrec.npz" and path.exists()
    assert SASRec.load(path).config == SMALL
    with pytest.raises(ValueError, match="holds a 'SASRec' model, not 'ALS'"):
        ALS.load(path)


def test_movie_content_of_the_real_database_feeds_the_model(ml100k_data) -> None:
    content = movie_content(ml100k_data)
    movies = ml100k_data.movies
    n_genres = movies.genres.shape[1]
    assert content.shape == (ml100k_data.interactions.n_items, movies.text.shape[1] + n_genres + 4)
    assert content.dtype == np.float32 and np.isfinite(content).all()
    np.testing.assert_allclose(np.linalg.norm(content[:, : movies.text.shape[1]], axis=1), 1.0, rtol=1e-5)
    genres = content[:, movies.text.shape[1] : -4]
    np.testing.assert_array_equal(genres > 0, movies.genres > 0)
    np.testing.assert_array_equal(content[:, -4:], movies.numeric.astype(np.float32))
    train = slice_of(ml100k_data)
    model = SASRec.for_data(ml100k_data, SMALL).fit(train)
    assert model.content is not None and model.content.shape == content.shape
    scores = model.score_users(np.unique(train.users)[:3])
    assert scores.shape == (3, ml100k_data.interactions.n_items) and np.isfinite(scores).all()


def test_a_warm_started_model_continues_from_the_fitted_network(split) -> None:
    train, _ = split
    content = random_content(train.n_items)
    inner, _ = temporal_split(train)
    fitted = SASRec(SMALL, content).fit(inner)
    warm = fitted.warm_started(1)
    assert warm.config == dataclasses.replace(SMALL, epochs=1) and warm.content is fitted.content
    warm.fit(train)
    cold = SASRec(dataclasses.replace(SMALL, epochs=1), content).fit(train)
    # the same data and one epoch: from the trained network the loss starts where that training ended
    assert warm.losses_[0] < cold.losses_[0]
    assert not np.array_equal(warm.item_vectors_, fitted.item_vectors_)  # it trained on
    # members that cannot warm start are built anew
    assert warm_or_new(fitted, lambda: SASRec(SMALL), 9).config.epochs == SMALL.epochs  # capped at its own
    als = ALS(ALSConfig(factors=4, iterations=1)).fit(inner)
    assert warm_or_new(als, lambda: ALS(ALSConfig(factors=8)), 5).config.factors == 8  # type: ignore[arg-type]
    with pytest.raises(NotFitted):
        SASRec(SMALL).warm_started(2)


def test_a_saved_network_starts_a_fit_as_the_fitted_one_does(split, tmp_path) -> None:
    train, _ = split
    content = random_content(train.n_items)
    inner, _ = temporal_split(train)
    fitted = SASRec(SMALL, content).fit(inner)
    path = fitted.save_network(tmp_path / "network.npz")
    from_file = SASRec(SMALL, content).start_from(path, 1)
    assert from_file.config == dataclasses.replace(SMALL, epochs=1) and from_file.started
    in_memory = fitted.warm_started(1).fit(train)
    from_file.fit(train)
    np.testing.assert_array_equal(from_file.item_vectors_, in_memory.item_vectors_)
    np.testing.assert_array_equal(from_file.user_vectors_, in_memory.user_vectors_)
    assert not SASRec(SMALL, content).started
    # a start for another model is refused with the reason, never trained on
    with pytest.raises(ValueError, match="another config"):
        SASRec(dataclasses.replace(SMALL, factors=8), content).start_from(path, 1)
    with pytest.raises(ValueError, match=f"movies, not {train.n_items + 1}"):
        SASRec(SMALL, random_content(train.n_items + 1)).start_from(path, 1)
    with pytest.raises(ValueError, match="does not fit this SASRec"):
        SASRec(SMALL).start_from(path, 1)  # no content: the file's projection has no place
    with pytest.raises(ValueError, match="holds a 'SASRec' model"):
        SASRec(SMALL, content).start_from(fitted.save(tmp_path / "vectors.npz"), 1)
    with pytest.raises(ValueError, match="the start network has"):
        SASRec(SMALL).fit(inner).warm_started(1).fit(slice_with_more_movies(train))


def slice_with_more_movies(train: Interactions) -> Interactions:
    """``train`` over a catalogue one movie larger."""
    return dataclasses.replace(train, n_items=train.n_items + 1)


def test_members_start_from_the_saved_fits_and_train_from_scratch_without_a_usable_one(
    ml100k_data, tmp_path, caplog
) -> None:
    train = slice_of(ml100k_data)
    one_epoch = SASRec.for_data(ml100k_data, dataclasses.replace(SASRecConfig(), epochs=1)).fit(train)
    als = ALS(ALSConfig(factors=4, iterations=1)).fit(train)
    starts = save_starts({"sasrec": one_epoch, "als": als}, tmp_path)
    assert starts == {"sasrec": str(tmp_path / "sasrec-network.npz")}  # only what a fit can start from
    started = member_factories(["sasrec"], ml100k_data, starts, epochs=2)["sasrec"]()
    assert started.started and started.config.epochs == 2  # the members' config, the given epochs
    assert not member_factories(["sasrec"], ml100k_data)["sasrec"]().started
    small = {"sasrec": str(SASRec.for_data(ml100k_data, SMALL).fit(train).save_network(tmp_path / "s.npz"))}
    for unusable in (small, {"sasrec": str(tmp_path / "gone.npz")}):
        caplog.clear()
        assert not member_factories(["sasrec"], ml100k_data, unusable)["sasrec"]().started
        assert (
            f"blend member sasrec trains from scratch: it cannot start from {unusable['sasrec']}"
            in caplog.text
        )
