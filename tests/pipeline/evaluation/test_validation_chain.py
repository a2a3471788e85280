"""The evaluation's validation network starts from last week's without having seen what this week holds out
(``pipeline.evaluation.validation_chain``), on real ML-100K weeks."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline.evaluation.splits import make_split
from pipeline.evaluation.validation_chain import held_out_seen, start_validation
from pipeline.evaluation.weight_search import validation_split
from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.train import train_hybrid
from pipeline.models.hybrid.warm_start import TrainingPlan, trained_pairs
from tests.support.configs import TINY

CUTOFF = datetime(1998, 2, 1, tzinfo=UTC)  # ML-100K's ratings run from 1997-09 to 1998-04


def up_to(data: TrainingData, cutoff: datetime) -> TrainingData:
    """``data`` with the ratings up to ``cutoff`` only (the same users, movies and indices)."""
    X = data.interactions
    return dataclasses.replace(data, interactions=X.subset(X.timestamps <= cutoff.timestamp()))


def inner(data: TrainingData) -> Interactions:
    """The validation split's train part of the temporal protocol's, as the evaluation carves it."""
    ids = data.ids
    train, _ = make_split(data.interactions, "temporal", ids)
    return validation_split(train, ids)[0]


@pytest.fixture(scope="module")
def last_week(ml100k_data: TrainingData) -> HybridArtifact:
    """Last week's validation network, trained on last week's validation split."""
    old = up_to(ml100k_data, CUTOFF)
    return train_hybrid(old, inner(old), TINY, device="cpu", progress=False).model


def warm_plan(network: HybridArtifact) -> TrainingPlan:
    cutoff = (CUTOFF + timedelta(weeks=1)).isoformat()
    return TrainingPlan("warm", "warm start (test)", cutoff, cutoff, copy.deepcopy(network))


def test_a_week_of_new_ratings_holds_out_nothing_last_weeks_network_trained_on(ml100k_data, last_week):
    """Ratings are only added: each user's first 64% this week contains last week's, so no user starts
    afresh and the plan is the warm start as it was."""
    this_week = up_to(ml100k_data, CUTOFF + timedelta(weeks=1))
    pairs = trained_pairs(last_week)
    assert pairs is not None and len(pairs[0]) > 20_000
    assert len(this_week.interactions) > len(up_to(ml100k_data, CUTOFF).interactions)  # a week was added
    assert len(held_out_seen(last_week, this_week, inner(this_week))) == 0
    plan = warm_plan(last_week)
    assert start_validation(plan, this_week, inner(this_week)) == plan


def test_a_rating_changed_since_is_held_out_and_its_user_starts_afresh(ml100k_data, last_week):
    """A rating last week's network trained on, changed this week (the ingest moves its time to the change),
    is now its user's latest, held out: that user's id embedding and bias are zeroed before the warm start,
    every other user's rows kept."""
    this_week = up_to(ml100k_data, CUTOFF + timedelta(weeks=1))
    users, movies = trained_pairs(last_week)  # type: ignore[misc]
    user_id, movie_id = int(users[0]), int(movies[0])
    X = this_week.interactions
    changed = (this_week.user_map.ids[X.users] == user_id) & (this_week.item_map.ids[X.items] == movie_id)
    assert changed.sum() == 1
    timestamps = np.where(changed, int(X.timestamps.max()) + 1, X.timestamps)
    edited = dataclasses.replace(
        this_week, interactions=Interactions(X.users, X.items, X.ratings, timestamps, X.n_users, X.n_items)
    )
    assert held_out_seen(last_week, edited, inner(edited)).tolist() == [user_id]

    plan = start_validation(warm_plan(last_week), edited, inner(edited))
    assert plan.kind == "warm" and plan.reason.startswith("warm start (test); 1 users start afresh")
    row = int(last_week.user_map.index(np.array([user_id]))[0])
    before, after = last_week.net.user_emb.weight, plan.init.net.user_emb.weight  # type: ignore[union-attr]
    assert after[row].abs().sum() == 0 and plan.init.net.user_bias.weight[row].item() == 0  # type: ignore[union-attr]
    others = np.setdiff1d(np.arange(len(before)), [row])
    assert (after[others] == before[others]).all() and before[row].abs().sum() > 0


def test_a_network_without_trained_pairs_does_not_start_the_validation_network(ml100k_data, last_week):
    """Without its history pairs nothing says what it saw: the validation network trains from scratch."""
    this_week = up_to(ml100k_data, CUTOFF + timedelta(weeks=1))
    blind = dataclasses.replace(last_week, history_pairs=None)
    plan = start_validation(warm_plan(blind), this_week, inner(this_week))
    assert plan.kind == "full" and plan.init is None
    assert plan.reason == (
        "the champion's evaluation network cannot start this one: it keeps no trained pairs to check against "
        "the held-out ratings"
    )
