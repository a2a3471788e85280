"""Warm start (``pipeline.models.hybrid.warm_start``) on real ML-100K: last week's network seeds this week's,
known users, movies and people keeping their rows under new dense indices; the plan says when not to."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from pipeline.features.interactions import IdMap, Interactions
from pipeline.features.loading import TrainingData
from pipeline.features.vocab import ROLES, MovieContent
from pipeline.models.blend.fit import train_published
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.fit import EpochRows
from pipeline.models.hybrid.network import build_network
from pipeline.models.hybrid.train import train_hybrid
from pipeline.models.hybrid.warm_start import (
    Replay,
    TrainingPlan,
    WarmStart,
    WarmStartError,
    config_changes,
    plan_training,
    transfer_weights,
)
from tests.support.configs import TINY

CUTOFF = datetime(1998, 4, 1, tzinfo=UTC)
DROPPED_PEOPLE = 5  # the first people of each role last week's vocabulary did not have yet


def last_week(data: TrainingData, max_user_index: int, n_movies: int) -> TrainingData:
    """``data`` as it was a week earlier: fewer users (the first ``max_user_index``), a smaller catalogue (the
    first ``n_movies``) and fewer people (each role's first ``DROPPED_PEOPLE`` unknown), every index dense
    again, so the same id has another index than this week's."""
    X = data.interactions
    keep = (X.users < max_user_index) & (X.items < n_movies)
    interactions = Interactions(
        X.users[keep], X.items[keep], X.ratings[keep], X.timestamps[keep], max_user_index, n_movies
    )
    people = {}
    for role, index in data.movies.people.items():
        shifted = index[:n_movies] - DROPPED_PEOPLE
        people[role] = np.where(shifted > 0, shifted, 0)
    movies = MovieContent(
        data.movies.genres[:n_movies], data.movies.text[:n_movies], people, data.movies.numeric[:n_movies]
    )
    persons = {role: ids[DROPPED_PEOPLE:] for role, ids in data.vocab.persons.items()}
    return dataclasses.replace(
        data,
        interactions=interactions,
        user_map=IdMap(data.user_map.ids[:max_user_index]),
        item_map=IdMap(data.item_map.ids[:n_movies]),
        movies=movies,
        users=data.users[:max_user_index],
        vocab=dataclasses.replace(data.vocab, persons=persons),
        titles=data.titles[:n_movies],
    )


@pytest.fixture(scope="module")
def champion(ml100k_data):
    """Last week's network: 600 of the 943 users, 1,500 of the 1,682 movies."""
    old = last_week(ml100k_data, 600, 1500)
    return old, train_hybrid(old, None, TINY, device="cpu", progress=False).model


def fresh_network(data: TrainingData):
    torch.manual_seed(0)
    return build_network(data.interactions.n_users, data.movies, data.users.shape[1], data.vocab, TINY, 3.5)


def test_known_ids_keep_their_rows_and_new_ones_start_from_content(ml100k_data, champion):
    """Every known user's and movie's rows (id embedding, biases, history embedding) move to their new
    index; new users and movies get zero id rows (a new movie is its content vector); each known person
    keeps their embedding though their feature index moved by ``DROPPED_PEOPLE``; the shared layers are the
    champion's."""
    old_data, old = champion
    net = fresh_network(ml100k_data)
    fresh_people = {r: net.content.people[r].weight.detach().clone() for r in ROLES}
    transfer = transfer_weights(net, old, ml100k_data.user_map, ml100k_data.item_map, ml100k_data.vocab)

    n_people = sum(len(ml100k_data.vocab.persons.get(r, [])) for r in ROLES)
    assert (transfer.users_kept, transfer.users_new) == (600, 943 - 600)
    assert (transfer.movies_kept, transfer.movies_new) == (1500, 1682 - 1500)
    assert transfer.people_new == DROPPED_PEOPLE * len(ROLES)
    assert transfer.people_kept == n_people - transfer.people_new

    new_state, old_state = net.state_dict(), old.net.state_dict()
    # ML-100K's ids are 1..n, so this week's index of an id is last week's for every known one: compare by id
    users = ml100k_data.user_map.index(old_data.user_map.ids)
    movies = ml100k_data.item_map.index(old_data.item_map.ids)
    assert (users >= 0).all() and (movies >= 0).all()
    for name, rows in (
        ("user_emb.weight", users),
        ("user_bias.weight", users),
        ("item_emb.weight", movies),
        ("item_bias.weight", movies),
        ("history_emb.weight", movies),
    ):
        torch.testing.assert_close(new_state[name][rows], old_state[name], rtol=0, atol=0)
        new_rows = np.setdiff1d(np.arange(len(new_state[name])), rows)
        assert len(new_rows) and (new_state[name][new_rows] == 0).all(), name
    for role in ROLES:
        if not ml100k_data.vocab.persons.get(role):
            continue
        table, old_table = (
            new_state[f"content.people.{role}.weight"],
            old_state[f"content.people.{role}.weight"],
        )
        # this week's person k + 1 was last week's k + 1 - DROPPED_PEOPLE
        torch.testing.assert_close(table[DROPPED_PEOPLE + 1 :], old_table[1:], rtol=0, atol=0)
        # the people last week did not know keep the fresh network's initialisation
        torch.testing.assert_close(table[1 : DROPPED_PEOPLE + 1], fresh_people[role][1 : DROPPED_PEOPLE + 1])
    for name in ("content.out.weight", "rating_out.weight", "global_mean", "rating_scale"):
        torch.testing.assert_close(new_state[name], old_state[name], rtol=0, atol=0)


def test_known_pairs_score_as_before_the_first_step(ml100k_data, champion):
    """Before any training, a known user's ranking scores over known movies are the champion's wherever the
    user's rated history is unchanged; here the history changed for users who rated dropped movies, so the
    check takes the users whose every rating is of a movie last week knew."""
    old_data, old = champion
    net = fresh_network(ml100k_data)
    transfer_weights(net, old, ml100k_data.user_map, ml100k_data.item_map, ml100k_data.vocab)
    X = ml100k_data.interactions
    dropped_raters = np.unique(X.users[X.items >= 1500])
    same = np.setdiff1d(np.arange(600), dropped_raters)[:20]
    assert len(same) >= 5
    # the network as train_hybrid holds it before its first step, with the history the champion saw
    seeded = HybridArtifact(
        net,
        TINY,
        ml100k_data.user_map,
        ml100k_data.item_map,
        ml100k_data.vocab,
        ml100k_data.movies,
        ml100k_data.users,
        history_pairs=(old_data.interactions.users, old_data.interactions.items),
    )
    old_scores = old.score_users(same)
    new_scores = seeded.score_users(same)[:, :1500]
    # the content of dropped people's movies changed (their people are new), so compare the other movies
    unchanged = np.ones(1500, bool)
    for index in ml100k_data.movies.people.values():
        unchanged &= ~((index[:1500] > 0) & (index[:1500] <= DROPPED_PEOPLE)).any(axis=1)
    np.testing.assert_allclose(new_scores[:, unchanged], old_scores[:, unchanged], rtol=1e-4, atol=1e-4)


def test_warm_training_runs_and_records_itself(ml100k_data, champion):
    _, old = champion
    result = train_hybrid(ml100k_data, None, TINY, device="cpu", progress=False, init=old, epochs=1)
    assert len(result.history) == 1
    assert result.model.meta["training"] == "warm"
    assert "600 users kept, 343 new" in result.model.meta["warm_start"]


def test_replayed_epochs_train_every_new_rating_and_a_fresh_sample_of_the_old(ml100k_data):
    """Each epoch: every rating after ``since`` once and older ones up to ``epoch_ratings``, drawn afresh,
    shuffled together; a budget that holds every rating trains on every rating."""
    X = ml100k_data.interactions
    since = int(np.quantile(X.timestamps, 0.9))
    new, old = Replay(since, 1).split(X.timestamps)
    assert len(new) + len(old) == len(X) and (X.timestamps[new] > since).all()
    assert (X.timestamps[old] <= since).all()
    take = len(old) // 4
    replay = Replay(since, len(new) + take)

    rows = EpochRows(X, replay, "cpu", torch.Generator().manual_seed(0))
    first, second = rows.draw().numpy(), rows.draw().numpy()
    for drawn in (first, second):
        assert len(np.unique(drawn)) == len(drawn) == len(new) + take
        assert set(new) <= set(drawn)
        assert not (np.diff(drawn) > 0).all()  # shuffled, not new then old
    old_first, old_second = set(first) - set(new), set(second) - set(new)
    assert old_first != old_second and old_first | old_second <= set(old)
    assert Replay(since, len(new) // 2).old_per_epoch(len(new), len(old)) == 0  # the new ones all the same
    every = EpochRows(X, Replay(since, len(X)), "cpu", torch.Generator().manual_seed(0))
    assert every.replay is None and sorted(every.draw().tolist()) == list(range(len(X)))
    with pytest.raises(ValueError, match="at least 1 rating"):
        Replay(since, 0)


def test_a_replayed_warm_start_trains_its_share_and_records_it(ml100k_data, champion):
    _, old = champion
    X = ml100k_data.interactions
    since = int(np.quantile(X.timestamps, 0.9))
    n_new = int((X.timestamps > since).sum())
    budget = n_new + (len(X) - n_new) // 4
    replay = Replay(since, budget)
    result = train_hybrid(
        ml100k_data, None, TINY, device="cpu", progress=False, init=old, epochs=2, replay=replay
    )
    assert [h["epoch_ratings"] for h in result.history] == [budget, budget]
    assert result.model.meta["replay"].startswith(f"each epoch the {n_new:,} ratings after ")
    assert f"{budget - n_new:,} of the {len(X) - n_new:,} before (25%)" in result.model.meta["replay"]
    scratch = train_hybrid(ml100k_data, None, TINY, device="cpu", progress=False, replay=replay)
    assert "replay" not in scratch.model.meta  # a replay is a warm start's: from scratch, every rating
    assert scratch.history[0]["epoch_ratings"] >= 0.8 * len(X)


def test_data_parallel_training_warm_starts_too(ml100k_data, champion):
    """With 2 gloo processes every process starts from the champion's weights (saved beside the inputs)."""
    _, old = champion
    X = ml100k_data.interactions
    result = train_hybrid(
        ml100k_data,
        X.subset(np.flatnonzero(X.users < 150)),
        TINY,
        device="cpu",
        progress=False,
        processes=2,
        init=old,
        epochs=1,
        replay=Replay(int(np.quantile(X.timestamps, 0.9)), 10_000),
    )
    assert len(result.history) == 1 and result.model.meta["training"] == "warm"
    assert "600 users kept, 343 new" in result.model.meta["warm_start"]
    assert "before (" in result.model.meta["replay"]  # every process draws the same epoch's rows


def test_other_shapes_refuse_to_seed_and_the_blend_trains_from_scratch(ml100k_data, champion):
    """A champion whose shared layers have other shapes raises ``WarmStartError``; ``train_published``
    then trains from scratch and records why."""
    _, old = champion
    wider = dataclasses.replace(TINY, content_mlp=(24, 16))
    net = build_network(943, ml100k_data.movies, ml100k_data.users.shape[1], ml100k_data.vocab, wider, 3.5)
    with pytest.raises(WarmStartError, match="content.mlp.0.weight"):
        transfer_weights(net, old, ml100k_data.user_map, ml100k_data.item_map, ml100k_data.vocab)

    plan = TrainingPlan("warm", "warm start from the champion v1", "1998-04-01", "1998-03-01", old, 1)
    published, result = train_published(
        ml100k_data, wider, BlendWeights(), device="cpu", progress=False, plan=plan, warm_epochs=1
    )
    meta = published.network.meta
    assert meta["training"] == "full" and "cannot seed" in meta["training_reason"]
    assert meta["full_cutoff"] == "1998-04-01"  # this training starts the next chain
    assert len(result.history) == TINY.epochs  # the full schedule, not the warm one


def test_plan_warm_starts_only_a_compatible_recent_champion(champion):
    _, old = champion
    chain = dataclasses.replace(
        old,
        meta={
            **old.meta,
            "dataset": "ml-100k",
            "full_cutoff": "1998-03-11T00:00:00+00:00",
            "as_of": "1998-03-18T00:00:00+00:00",
        },
    )
    policy = WarmStart(epochs=5, max_age_weeks=4, epoch_ratings=5_000)

    def plan(**kw):
        args = {"champion": chain, "cfg": TINY, "dataset": "ml-100k", "cutoff": CUTOFF, "policy": policy}
        return plan_training(**{**args, **kw}, source_version=3)

    def at(day: int) -> int:
        return int(datetime(1998, 3, day, tzinfo=UTC).timestamp())

    warm = plan()
    assert warm.kind == "warm" and warm.init is chain and warm.source_version == 3
    assert warm.full_cutoff == "1998-03-11T00:00:00+00:00" and "v3" in warm.reason
    assert warm.record()["cutoff"] == CUTOFF.isoformat()  # what next week's replay counts new ratings from
    # the champion's own cut-off (its plan's, else its data's as_of) splits the new ratings from the old
    assert warm.replay == Replay(at(18), 5_000)
    week_ago = dataclasses.replace(chain, meta={**chain.meta, "cutoff": "1998-03-25T00:00:00+00:00"})
    assert plan(champion=week_ago).replay == Replay(at(25), 5_000)
    no_cutoff = dataclasses.replace(chain, meta={**chain.meta, "as_of": None})
    assert plan(champion=no_cutoff).kind == "warm" and plan(champion=no_cutoff).replay is None
    assert plan(cfg=dataclasses.replace(TINY, epochs=50)).kind == "warm"  # epochs are the schedule only

    changed = plan(cfg=dataclasses.replace(TINY, learning_rate=1e-3))
    assert changed.kind == "full" and "learning_rate" in changed.reason and changed.init is None
    assert changed.full_cutoff == CUTOFF.isoformat()
    assert "full retrain requested" in plan(full=True).reason
    assert "no champion" in plan(champion=None).reason
    assert "ml-1m" in plan(dataset="ml-1m").reason
    old_chain = plan(cutoff=datetime(1998, 3, 11, tzinfo=UTC) + timedelta(weeks=4))
    assert old_chain.kind == "full" and "4.0 weeks old" in old_chain.reason
    assert plan(cutoff=datetime(1998, 3, 11, tzinfo=UTC) + timedelta(weeks=3, days=6)).kind == "warm"
    unknown_age = dataclasses.replace(old, meta={"dataset": "ml-100k"})
    assert "no full training" in plan(champion=unknown_age).reason


def test_config_changes_name_each_field():
    changes = config_changes(TINY, dataclasses.replace(TINY, embedding_dim=32, epochs=9, dropout=0.3))
    assert changes == ["embedding_dim: 16 -> 32", "dropout: 0.2 -> 0.3"]


def test_without_a_champion_the_plan_starts_from_this_runs_evaluation_network(champion):
    _, seed = champion  # a network of this configuration, as the evaluate step trains it
    chain = dataclasses.replace(
        seed, meta={**seed.meta, "dataset": "ml-100k", "full_cutoff": "1998-03-11T00:00:00+00:00"}
    )
    policy = WarmStart(epochs=5, max_age_weeks=4)

    def plan(**kw):
        args = {"champion": None, "cfg": TINY, "dataset": "ml-100k", "cutoff": CUTOFF, "policy": policy}
        return plan_training(**{**args, **kw}, seed=seed)

    seeded = plan()
    assert seeded.kind == "warm" and seeded.init is seed and seeded.source_version is None
    assert seeded.replay is None  # trained on a split of these ratings, not up to an earlier cut-off
    assert seeded.reason == "no champion to start from: warm start from this run's evaluation network"
    assert seeded.full_cutoff == seeded.cutoff == CUTOFF.isoformat()  # the chain counts from this week
    other_config = plan(cfg=dataclasses.replace(TINY, learning_rate=1e-3))
    assert other_config.kind == "full" and other_config.init is None
    assert other_config.reason == "no champion to start from"
    assert plan(full=True).kind == "full"  # asked for: from scratch
    assert plan(champion=chain).init is chain  # a champion comes first
    aged = plan(champion=chain, cutoff=datetime(1998, 3, 11, tzinfo=UTC) + timedelta(weeks=4))
    assert aged.kind == "full" and "weeks old" in aged.reason  # by age: from scratch
    changed = plan(champion=chain, cfg=dataclasses.replace(TINY, learning_rate=1e-3))
    assert changed.kind == "full" and "learning_rate" in changed.reason
