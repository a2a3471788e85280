"""Warm-starting the week's network from the champion's instead of training it from scratch.

The new network is built for this week's data (its users, catalogue and people), then takes every weight
of the champion's network: the shared layers as they are, and the rows of the per-id tables (user and movie
embeddings and biases, the history embeddings, the people's embeddings) by database id, so a known user,
movie or person keeps what was learned for them whatever their new dense index. A user or movie the champion
never saw starts with a zero id embedding and bias: a new movie is its content vector, a new user their
features and rating-history pooling, exactly as the cold-start paths score them. New people keep the fresh
network's initialisation, as every person has in a training from scratch. Training then runs at most
``WarmStart.epochs`` epochs on the data up to the new cut-off, with no early stopping. Each of those epochs
trains on every rating after the champion's cut-off (what it never saw) and, when the data holds more than
``WarmStart.epoch_ratings``, a fresh uniform sample of the older ones that fills that many (``Replay``): the
old ratings keep what the champion learnt from drifting, and the week's training costs the same however long
the history grows (at ML-25M shape five epochs of every rating take over two hours on a 2-core CPU).

``plan_training`` decides between the two: a full retrain when there is no champion network, when asked,
when the hyperparameters or the dataset differ from the champion's, or when the chain of warm starts has
gone on for ``WarmStart.max_age_weeks`` since its last full training. Where there is no champion but this
run's evaluation network has the same config (the weekly evaluate step trains it from scratch on a subset
of the same ratings), the week's network starts from that instead and its chain counts from this week: on
ML-100K's temporal protocol one such link ranked at 0.990x a training from scratch in 0.17x the time
(``bench/protocol_fit``). A champion whose shared layers have other shapes (another genre list, other user
features) cannot be warm-started either: ``transfer_weights``
raises ``WarmStartError`` and the caller trains from scratch, recording why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import torch
from pydantic import PositiveInt
from pydantic.dataclasses import dataclass as validated

from pipeline.core.dates import parse_as_of
from pipeline.core.defaults import WARM_START_EPOCH_RATINGS, WARM_START_EPOCHS, WARM_START_MAX_AGE_WEEKS
from pipeline.features.interactions import IdMap
from pipeline.features.vocab import ROLES, FeatureVocab
from pipeline.models.base import HYPERPARAMETERS
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.network import HybridNet

# Config fields that say how long to train, not what is trained: a warm start may differ in them.
SCHEDULE_FIELDS = frozenset({"epochs"})


class WarmStartError(ValueError):
    """The champion's network cannot seed this week's (its shared layers have other shapes)."""


@validated(config=HYPERPARAMETERS)
class WarmStart:
    """How the weekly training warm-starts (``MOVIEREC_WARM_START_EPOCHS``, ``MOVIEREC_FULL_RETRAIN_WEEKS``,
    ``MOVIEREC_WARM_START_EPOCH_RATINGS``)."""

    epochs: PositiveInt = WARM_START_EPOCHS  # at most this many epochs from the champion's weights
    max_age_weeks: PositiveInt = WARM_START_MAX_AGE_WEEKS  # a full retrain once the chain is this old
    epoch_ratings: PositiveInt = WARM_START_EPOCH_RATINGS  # at most this many ratings an epoch (Replay)


@dataclass(frozen=True)
class Replay:
    """A warm start's epochs: every rating after ``since`` (Unix seconds, the champion's data cut-off) and,
    drawn afresh each epoch, as many of those at or before it as fill ``epoch_ratings`` (all of them when
    they fit)."""

    since: int
    epoch_ratings: int

    def __post_init__(self) -> None:
        if self.epoch_ratings < 1:
            raise ValueError(f"a warm-start epoch must train on at least 1 rating, not {self.epoch_ratings}")

    def split(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows after ``since``, rows at or before it), as positions in ``timestamps``."""
        new = timestamps > self.since
        return np.flatnonzero(new), np.flatnonzero(~new)

    def old_per_epoch(self, n_new: int, n_old: int) -> int:
        """How many of the ``n_old`` older ratings each epoch samples beside the ``n_new`` new ones."""
        return min(n_old, max(self.epoch_ratings - n_new, 0))

    def describe(self, n_new: int, n_old: int) -> str:
        since, take = datetime.fromtimestamp(self.since, UTC), self.old_per_epoch(n_new, n_old)
        return (
            f"each epoch the {n_new:,} ratings after {since:%Y-%m-%d %H:%M} and {take:,} of the {n_old:,} "
            f"before ({take / max(n_old, 1):.0%}), drawn afresh"
        )


@dataclass(frozen=True)
class TrainingPlan:
    """How this week's network is trained: ``kind`` "warm" (from ``init``) or "full" (from scratch), why,
    and the cut-off of the last full training in the chain (the age ``max_age_weeks`` is counted from)."""

    kind: Literal["warm", "full"]
    reason: str
    cutoff: str  # this training's data cut-off, ISO
    full_cutoff: str  # the cut-off of the chain's last full training (``cutoff`` when this one is full)
    init: HybridArtifact | None = field(default=None, repr=False)
    source_version: int | None = None  # the registered version warm-started from
    replay: Replay | None = None  # what each warm epoch trains on (None: every rating)

    def retrain(self, reason: str) -> TrainingPlan:
        """The same cut-off, trained from scratch."""
        return TrainingPlan("full", reason, self.cutoff, self.cutoff)

    def record(self) -> dict[str, str]:
        """What the trained network's meta keeps of the plan (next week's plan reads ``full_cutoff`` and
        ``cutoff``)."""
        return {
            "training": self.kind,
            "training_reason": self.reason,
            "cutoff": self.cutoff,
            "full_cutoff": self.full_cutoff,
        }


@dataclass(frozen=True)
class Transfer:
    """What a warm start kept of the champion: known and new users, movies and people."""

    users_kept: int
    users_new: int
    movies_kept: int
    movies_new: int
    people_kept: int
    people_new: int

    def describe(self) -> str:
        return (
            f"{self.users_kept:,} users kept, {self.users_new:,} new; {self.movies_kept:,} movies kept, "
            f"{self.movies_new:,} new; {self.people_kept:,} people kept, {self.people_new:,} new"
        )


def config_changes(old: HybridConfig, new: HybridConfig) -> list[str]:
    """``field: old -> new`` for every hyperparameter that differs, schedule fields aside."""
    before, after = old.to_dict(), new.to_dict()
    return [
        f"{name}: {before.get(name)!r} -> {value!r}"
        for name, value in after.items()
        if name not in SCHEDULE_FIELDS and before.get(name) != value
    ]


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def plan_training(
    champion: HybridArtifact | None,
    cfg: HybridConfig,
    dataset: str,
    cutoff: datetime,
    *,
    full: bool = False,
    policy: WarmStart | None = None,
    source_version: int | None = None,
    seed: HybridArtifact | None = None,
    source: str = "the champion",
) -> TrainingPlan:
    """Warm start from ``champion`` (the network of the registered ``source_version``) or retrain fully on
    data up to ``cutoff``; see the module doc for when. ``seed``: this run's evaluation network (trained
    from scratch this week on a subset of these ratings), the start when there is no champion. ``source``:
    what ``champion`` is, as the reasons name it (the evaluation's own chain passes its network's name)."""
    policy = policy or WarmStart()
    here = _iso(cutoff)
    none = f"no {source.removeprefix('the ')} to start from"

    def retrain(reason: str) -> TrainingPlan:
        return TrainingPlan("full", reason, here, here)

    if full:
        return retrain("full retrain requested")
    if champion is None:
        if seed is not None and not config_changes(seed.config, cfg):
            # The chain starts this week: the seed's own chain began from scratch on this week's data.
            reason = f"{none}: warm start from this run's evaluation network"
            return TrainingPlan("warm", reason, here, here, seed)
        return retrain(none)
    meta = champion.meta
    if meta.get("dataset") not in (None, dataset):
        return retrain(f"{source} was trained on {meta.get('dataset')}, this run is {dataset}")
    changes = config_changes(champion.config, cfg)
    if changes:
        return retrain(f"hyperparameters changed since {source} (" + "; ".join(changes) + ")")
    chain_start = meta.get("full_cutoff")
    if not chain_start:
        return retrain(f"{source} records no full training to count its age from")
    age = cutoff.replace(tzinfo=cutoff.tzinfo or UTC) - datetime.fromisoformat(chain_start)
    weeks = age.total_seconds() / (7 * 86400)
    if weeks >= policy.max_age_weeks:
        return retrain(
            f"the last full training (data up to {chain_start}) is {weeks:.1f} weeks old "
            f"(a full retrain every {policy.max_age_weeks})"
        )
    version = f" v{source_version}" if source_version is not None else ""
    return TrainingPlan(
        "warm",
        f"warm start from {source}{version} ({weeks:.1f} weeks since its chain's full training)",
        here,
        chain_start,
        champion,
        source_version,
        _replay(champion, policy.epoch_ratings),
    )


def _replay(champion: HybridArtifact, epoch_ratings: int) -> Replay | None:
    """The warm epochs' ``Replay`` after the champion's data cut-off: its plan's ``cutoff``, else its data's
    ``as_of``; None (every rating every epoch) when it records neither."""
    since = parse_as_of(champion.meta.get("cutoff") or champion.meta.get("as_of"))
    return Replay(int(since.timestamp()), epoch_ratings) if since else None


def _rows(new_ids: np.ndarray, old_map: dict[str, int] | IdMap) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``new_ids`` that the old model knew, their old rows)."""
    if isinstance(old_map, IdMap):
        old = old_map.index(new_ids)
    else:
        old = np.array([old_map.get(str(i), -1) for i in new_ids], np.int64)
    known = np.flatnonzero(old >= 0)
    return known, old[known]


def transfer_weights(
    net: HybridNet, old: HybridArtifact, user_map: IdMap, item_map: IdMap, vocab: FeatureVocab
) -> Transfer:
    """Copy ``old``'s weights into ``net`` (built for ``user_map``, ``item_map`` and ``vocab``) in place:
    see the module doc. Raises ``WarmStartError`` when a shared layer's shape differs."""
    old_state, new_state = old.net.state_dict(), net.state_dict()
    users, old_users = _rows(user_map.ids, old.user_map)
    movies, old_movies = _rows(item_map.ids, old.item_map)
    by_id = {
        "user_emb.weight": (users, old_users),
        "user_bias.weight": (users, old_users),
        "item_emb.weight": (movies, old_movies),
        "item_bias.weight": (movies, old_movies),
        "history_emb.weight": (movies, old_movies),
    }
    people_kept = people_new = 0
    for role in ROLES:
        new_people = np.asarray(vocab.persons.get(role, []), dtype=object)
        old_index = old.vocab.person_index(role)
        kept, old_rows = _rows(new_people, old_index)
        # row 0 pads; person k (0-based in the vocab) is row k + 1 in both tables
        by_id[f"content.people.{role}.weight"] = (kept + 1, old_rows)
        people_kept += len(kept)
        people_new += len(new_people) - len(kept)
    missing = sorted(set(new_state) ^ set(old_state))
    if missing:
        raise WarmStartError(f"the champion's network has other layers: {', '.join(missing)}")
    with torch.no_grad():
        for name, target in new_state.items():
            source = old_state[name].to(target.device)
            if name in by_id:
                rows, old_rows = by_id[name]
                if source.shape[1:] != target.shape[1:]:
                    raise WarmStartError(
                        f"{name}: the champion's rows have shape {tuple(source.shape[1:])}, "
                        f"this network's {tuple(target.shape[1:])}"
                    )
                if not name.startswith("content.people."):
                    target.zero_()  # a new user or movie: no id part, its content / history alone
                index = torch.as_tensor(rows, device=target.device)
                target[index] = source[torch.as_tensor(old_rows, device=source.device)].to(target.dtype)
            elif source.shape != target.shape:
                raise WarmStartError(
                    f"{name}: the champion's has shape {tuple(source.shape)}, this network's "
                    f"{tuple(target.shape)} (the genres or user features changed)"
                )
            else:
                target.copy_(source)
    return Transfer(
        len(users),
        len(user_map) - len(users),
        len(movies),
        len(item_map) - len(movies),
        people_kept,
        people_new,
    )


def trained_pairs(network: HybridArtifact) -> tuple[np.ndarray, np.ndarray] | None:
    """The (user, movie) database ids ``network`` was trained on (its history pairs); None when it keeps
    none (a config without the history term)."""
    if network.history_pairs is None:
        return None
    users, items = network.history_pairs
    return network.user_map.ids[users], network.item_map.ids[items]


def forget_users(network: HybridArtifact, user_ids: np.ndarray) -> int:
    """Zero the id embedding and bias of ``network``'s rows for ``user_ids`` (database ids), in place: a
    warm start from it then starts them as it starts a user it never saw. How many it knew."""
    known = network.user_map.index(np.asarray(user_ids, np.int64))
    rows = torch.as_tensor(known[known >= 0])
    with torch.no_grad():
        for table in (network.net.user_emb, network.net.user_bias):
            table.weight[rows.to(table.weight.device)] = 0
    return len(rows)
