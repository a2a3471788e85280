"""Train/test splits of the evaluation protocol.

Both return ``(train, test)`` over the same universe (``n_users``, ``n_items`` unchanged), disjoint, and
together every rating of ``data``. Each keeps the ratings in their original order within train and test.

* ``random_split``: ``perm = numpy.random.default_rng(seed).permutation(len(data))``; the first
  ``n_test = round(test_fraction * len(data))`` positions of ``perm`` are the test set (Python ``round``).
  With the protocol's seed 42 and fraction 0.2, ML-100K gives 80,000 train / 20,000 test ratings.
* ``temporal_split``: each user's ratings are sorted by timestamp; ties (most ML-100K ratings share their
  second with another rating of the same user) are broken by a fixed hash of (user, item, seed), so which
  of them is "later" is neither the storage order nor correlated with the item index; user and item are
  their database ids when given (``ids``, as the evaluation passes them), so a pair keeps its place among
  its user's ties whatever dense indices a week's data gives it (a new user shifts the indices of those
  after it): next week's split of a user's older ratings is this week's. The last
  ``n_test = round(test_fraction * n)`` of them are held out, where n is that user's number of ratings,
  with ``n_test`` at least 1 and at most ``n - 1`` for users with n >= 2 (so every such user has both train
  and test ratings) and 0 for users with a single rating.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.core.defaults import RELEVANCE_THRESHOLD
from pipeline.features.interactions import Interactions

__all__ = [
    "PROTOCOLS",
    "Ids",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "make_split",
    "random_split",
    "temporal_split",
    "temporal_test_counts",
]


Ids = tuple[np.ndarray, np.ndarray]
"""The database ids of the users and of the movies, by dense index (``IdMap.ids``)."""


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def random_split(
    data: Interactions, test_fraction: float = 0.2, seed: int = 42
) -> tuple[Interactions, Interactions]:
    """A uniformly random ``1 - test_fraction`` / ``test_fraction`` split of the ratings (see module doc)."""
    _check_fraction(test_fraction)
    perm = np.random.default_rng(seed).permutation(len(data))
    test = np.zeros(len(data), bool)
    test[perm[: round(test_fraction * len(data))]] = True
    return data.subset(~test), data.subset(test)


def temporal_test_counts(n_ratings: np.ndarray, test_fraction: float = 0.2) -> np.ndarray:
    """Ratings held out per user given each user's rating count (the rule in the module doc)."""
    _check_fraction(test_fraction)
    n = np.asarray(n_ratings, np.int64)
    # np.round is half-to-even like Python's round; with test_fraction 0.2 no count lands on a half anyway.
    n_test = np.round(test_fraction * n).astype(np.int64)
    return np.where(n >= 2, np.clip(n_test, 1, np.maximum(n - 1, 1)), 0)


def _tie_break(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random but fixed key per (user, item): splitmix64 of the pair."""
    with np.errstate(over="ignore"):
        x = (
            users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            + items.astype(np.uint64)
            + np.uint64(seed)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def temporal_split(
    data: Interactions, test_fraction: float = 0.2, seed: int = 42, *, ids: Ids | None = None
) -> tuple[Interactions, Interactions]:
    """Hold out each user's latest ratings, ordered by timestamp, ties by a fixed hash of the pair's database
    ``ids`` (default: its dense indices; see module doc)."""
    n_test = temporal_test_counts(np.bincount(data.users, minlength=data.n_users), test_fraction)
    users, items = (ids[0][data.users], ids[1][data.items]) if ids is not None else (data.users, data.items)
    # lexsort keys go least significant first: user, then timestamp, then the hash breaks timestamp ties.
    order = np.lexsort((_tie_break(users, items, seed), data.timestamps, data.users))
    users_sorted = data.users[order]
    counts = np.bincount(users_sorted, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(order)) - starts[users_sorted]  # 0-based rank of each rating within its user
    held_out_sorted = position >= counts[users_sorted] - n_test[users_sorted]
    test = np.zeros(len(data), bool)
    test[order] = held_out_sorted
    return data.subset(~test), data.subset(test)


# --- the evaluation protocols -------------------------------------------------------------------------------

SPLIT_SEED = 42
TEST_FRACTION = 0.2

PROTOCOLS: Mapping[str, str] = {
    "random": (
        f"Random {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split of ratings: "
        f"perm = numpy.random.default_rng({SPLIT_SEED}).permutation(n_ratings), the first "
        f"round({TEST_FRACTION} * n_ratings) positions are test. Rating prediction: RMSE and MAE over "
        "all test ratings; models that cannot predict ratings are skipped."
    ),
    "temporal": (
        f"Per user, ratings sorted by timestamp, ties by a fixed hash of (user id, movie id, seed 42); "
        f"the last round({TEST_FRACTION} * n) "
        "are test, at least 1 and at most n-1 for users with n >= 2 ratings, none for n = 1. "
        "Ranking: candidates are all items the user has not rated in train; relevant = test "
        f"ratings >= {RELEVANCE_THRESHOLD:g}; users without a relevant test item are skipped. "
        "NDCG@k (binary gains, log2 discount, ideal DCG over min(|relevant|, k)), Recall@k "
        "(hits/|relevant|), Precision@k (hits/k), MRR@k, HR@k, averaged over users; coverage@k = "
        "distinct items in all top-k lists / n_items. Score ties go to the lower item index."
    ),
}


def make_split(
    data: Interactions, protocol: str, ids: Ids | None = None
) -> tuple[Interactions, Interactions]:
    """The protocol's ``(train, test)`` split of ``data`` (``ids``: ``temporal_split``'s)."""
    if protocol == "random":
        return random_split(data, TEST_FRACTION, seed=SPLIT_SEED)
    if protocol == "temporal":
        return temporal_split(data, TEST_FRACTION, ids=ids)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
