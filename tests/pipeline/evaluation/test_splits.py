from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline.evaluation.splits import (
    _tie_break,
    make_split,
    random_split,
    temporal_split,
    temporal_test_counts,
)
from pipeline.evaluation.weight_search import validation_split
from pipeline.features.interactions import Interactions
from tests.support.ml100k_slice import load_ml100k_slice


def _toy() -> Interactions:
    # user 0: 10 ratings, timestamps 100..109 (items 0..9); user 1: 2 ratings at the same second;
    # user 2: a single rating; user 3: 5 ratings in reverse item order of time.
    users = np.array([0] * 10 + [1, 1] + [2] + [3] * 5)
    items = np.array(list(range(10)) + [7, 3] + [4] + [9, 8, 7, 6, 5])
    ts = np.array(list(range(100, 110)) + [50, 50] + [70] + [10, 20, 30, 40, 50])
    return Interactions(
        users.astype(np.int64),
        items.astype(np.int64),
        np.full(len(users), 4.0, np.float32),
        ts.astype(np.int64),
        n_users=5,
        n_items=12,
    )


def _pairs(data: Interactions) -> set[tuple[int, int, int]]:
    return set(zip(data.users.tolist(), data.items.tolist(), data.timestamps.tolist()))


@pytest.fixture(scope="module")
def ml_slice(ml100k_dir):
    return load_ml100k_slice(ml100k_dir)


def test_random_split_sizes_disjoint_deterministic(ml_slice):
    train, test = random_split(ml_slice)
    assert len(test) == round(0.2 * len(ml_slice)) and len(train) + len(test) == len(ml_slice)
    assert (
        (train.n_users, train.n_items) == (test.n_users, test.n_items) == (ml_slice.n_users, ml_slice.n_items)
    )
    assert not _pairs(train) & _pairs(test)
    assert _pairs(train) | _pairs(test) == _pairs(ml_slice)
    _, test2 = random_split(ml_slice)
    assert np.array_equal(test.users, test2.users) and np.array_equal(test.items, test2.items)
    _, other = random_split(ml_slice, seed=7)
    assert _pairs(other) != _pairs(test)


def test_random_split_is_the_documented_permutation():
    data = _toy()
    perm = np.random.default_rng(42).permutation(len(data))
    _, test = random_split(data, 0.2, seed=42)
    expected = np.sort(perm[: round(0.2 * len(data))])
    assert np.array_equal(test.items, data.items[expected]) and np.array_equal(
        test.users, data.users[expected]
    )


def test_temporal_test_counts_rule():
    # round(0.2 n), at least 1 (n >= 2), at most n - 1, none for n <= 1
    assert temporal_test_counts(np.array([0, 1, 2, 3, 7, 8, 10, 22, 23])).tolist() == [
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        4,
        5,
    ]
    assert temporal_test_counts(np.array([2, 3]), test_fraction=0.9).tolist() == [1, 2]
    with pytest.raises(ValueError):
        temporal_test_counts(np.array([5]), test_fraction=1.0)


def test_temporal_split_on_toy_data():
    train, test = temporal_split(_toy())
    by_user = {u: sorted(test.items[test.users == u].tolist()) for u in range(5)}
    assert by_user[0] == [8, 9]  # 10 ratings -> last 2 by time
    # tie at t=50: the fixed hash of (user, item) decides which is "later"
    key = _tie_break(np.array([1, 1]), np.array([3, 7]), 42)
    assert by_user[1] == [[3, 7][int(np.argmax(key))]]
    assert by_user[2] == []  # a single rating stays in train
    assert by_user[3] == [5]  # 5 ratings -> 1, the latest (t=50, item 5)
    assert len(train) + len(test) == len(_toy())


def test_temporal_split_holds_out_each_users_latest(ml_slice):
    train, test = temporal_split(ml_slice)
    assert not _pairs(train) & _pairs(test)
    assert len(train) + len(test) == len(ml_slice)
    counts = np.bincount(ml_slice.users, minlength=ml_slice.n_users)
    assert np.array_equal(np.bincount(test.users, minlength=ml_slice.n_users), temporal_test_counts(counts))
    for u in np.unique(ml_slice.users):
        tr, te = train.users == u, test.users == u
        assert tr.any() and te.any()
        last_train = max(
            zip(train.timestamps[tr].tolist(), _tie_break(train.users[tr], train.items[tr], 42).tolist())
        )
        first_test = min(
            zip(test.timestamps[te].tolist(), _tie_break(test.users[te], test.items[te], 42).tolist())
        )
        assert first_test > last_train  # every held-out rating comes after the user's train ratings
    again = temporal_split(ml_slice)[1]
    assert np.array_equal(again.users, test.users) and np.array_equal(again.items, test.items)


def test_keyed_by_database_ids_a_weeks_split_keeps_last_weeks_older_ratings_where_they_were(ml100k_data):
    """On real ML-100K weeks (most of a user's ratings share their second with another): each user's older
    ratings split this week as last week, and no rating of last week's validation train part is held out
    now, when ties are broken by database ids. By dense indices, which shift as users arrive, some are."""
    ids = ml100k_data.ids
    X = ml100k_data.interactions

    def week(cutoff: datetime, keyed: bool) -> tuple[set, set]:
        """(the validation split's train part, every held-out rating) of the data up to ``cutoff``, with the
        user indices that data alone would give (users without a rating yet have none)."""
        rated = np.unique(X.users[X.timestamps <= cutoff.timestamp()])
        index = np.full(X.n_users, -1)
        index[rated] = np.arange(len(rated))
        keep = X.timestamps <= cutoff.timestamp()
        data = Interactions(
            index[X.users[keep]], X.items[keep], X.ratings[keep], X.timestamps[keep], len(rated), X.n_items
        )
        week_ids = (ids[0][rated], ids[1]) if keyed else None
        train, _ = make_split(data, "temporal", week_ids)
        inner, _ = validation_split(train, week_ids)
        everything = set(zip(ids[0][rated][data.users].tolist(), ids[1][data.items].tolist()))
        inside = set(zip(ids[0][rated][inner.users].tolist(), ids[1][inner.items].tolist()))
        return inside, everything - inside

    moved = {}
    for keyed in (True, False):
        moved[keyed] = 0
        for w in range(4):
            cutoff = datetime(1998, 2, 22, 23, 59, 59, tzinfo=UTC) + timedelta(weeks=w)
            last_inner, _ = week(cutoff, keyed)
            _, held_out = week(cutoff + timedelta(weeks=1), keyed)
            moved[keyed] += len(last_inner & held_out)
    assert moved[True] == 0
    assert moved[False] > 100  # what keying by id fixes: ~270 a week
