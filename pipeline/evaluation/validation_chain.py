"""The evaluation's validation network, warm-started from the one the champion's evaluation trained.

The weekly evaluation trains the network on the temporal validation split's train part (each user's first
64% of ratings by time) to choose the blend's weights, and the protocol network starts from it. Trained from
scratch that is an early-stopped fit every week (at ML-25M shape, on the evaluation's sample of users, 6 to
28 epochs of about 130 s on a 2-core CPU). Last week's validation network can start it instead, the way the
champion starts the train step's network (``warm_start.plan_training``: the same epochs, replay, age limit
and reasons for a full training), without leaking what the evaluation holds out: ratings are only added, so
each user's first 64% this week contains their first 64% of last week, and nothing that network trained on
falls in this week's held-out parts (the validation split's and the protocol's test part). Except a rating
changed since: the ingest keeps one rating per user and movie and moves its time to the change, so it can
now be held out. Every user with such a pair starts afresh (``warm_start.forget_users``: a zero id
embedding and bias, as a user the network never saw), which ``held_out_seen`` finds from the pairs the
network trained on (its history pairs; a network without them trains from scratch).

The network travels with the champion: the evaluate step saves it beside its report, the train step logs it
to the training run (``pipeline.registry.store.EVALUATION_NETWORK_ARTIFACT``), and next week's evaluate
step takes the champion run's (``pipeline.registry.champion.champion_evaluation_network``). A rejected
week's is not used: the next week starts from the champion's, which is older and so leaks nothing either.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.warm_start import TrainingPlan, forget_users, trained_pairs

__all__ = ["SOURCE", "held_out_seen", "start_validation"]

# How the warm-start plan's reasons name the start.
SOURCE = "the champion's evaluation network"

log = logging.getLogger(__name__)


def held_out_seen(network: HybridArtifact, data: TrainingData, inner: Interactions) -> np.ndarray:
    """Database ids of the users of whom ``network`` trained on a (user, movie) pair that ``data`` now holds
    outside ``inner`` (the validation split's train part, in ``data``'s indices): held out, or outside the
    evaluation's sample of users. Raises ``ValueError`` when ``network`` keeps no trained pairs."""
    pairs = trained_pairs(network)
    if pairs is None:
        raise ValueError("it keeps no trained pairs to check against the held-out ratings")
    n_items = np.int64(data.interactions.n_items)
    users, items = data.user_map.index(pairs[0]), data.item_map.index(pairs[1])
    known = (users >= 0) & (items >= 0)
    seen = users[known] * n_items + items[known]
    every = data.interactions.users.astype(np.int64) * n_items + data.interactions.items
    inside = inner.users.astype(np.int64) * n_items + inner.items
    leaked = seen[np.isin(seen, every) & ~np.isin(seen, inside)]
    return data.user_map.ids[np.unique(leaked // n_items)]


def start_validation(plan: TrainingPlan, data: TrainingData, inner: Interactions) -> TrainingPlan:
    """``plan`` made safe for the validation network on ``inner``: a warm start forgets the users
    ``held_out_seen`` names (its reason says how many), or trains from scratch when its start keeps no
    trained pairs. A full plan is returned as it is."""
    if plan.kind != "warm" or plan.init is None:
        return plan
    try:
        users = held_out_seen(plan.init, data, inner)
    except ValueError as exc:
        return plan.retrain(f"{SOURCE} cannot start this one: {exc}")
    if len(users) == 0:
        return plan
    forgotten = forget_users(plan.init, users)
    why = "a rating it trained on is now held out or out of the sample"
    log.info("validation network: %d users start afresh (%s)", forgotten, why)
    reason = f"{plan.reason}; {forgotten:,} users start afresh ({why})"
    return dataclasses.replace(plan, reason=reason)
