"""The in-memory form of ratings that models, splits, metrics and baselines share.

Users and movies are dense indices (0..n-1); ``IdMap`` translates to and from database ids and is saved
with every model, so a model trained last week still knows which movie its row 17 is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def sorted_positions(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each of ``values``' position in ``sorted_values`` (ascending), -1 where it is absent: a binary search,
    so ``sorted_values`` is not sorted again per call as ``np.isin`` would."""
    if len(sorted_values) == 0:
        return np.full(np.shape(values), -1, np.int64)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return np.where(sorted_values[at] == values, at, -1)


@dataclass(frozen=True)
class IdMap:
    """Database ids (sorted) and their dense indices."""

    ids: np.ndarray  # int64, sorted ascending

    @classmethod
    def from_ids(cls, ids: np.ndarray) -> IdMap:
        return cls(np.unique(np.asarray(ids, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, ids: np.ndarray) -> np.ndarray:
        """Dense indices of ``ids``; -1 where an id is unknown."""
        return sorted_positions(self.ids, np.asarray(ids, dtype=np.int64))

    def to_list(self) -> list[int]:
        return self.ids.tolist()


@dataclass(frozen=True)
class Interactions:
    """Ratings as parallel arrays over dense user/item indices."""

    users: np.ndarray  # int64
    items: np.ndarray  # int64
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64, Unix seconds
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        n = len(self.users)
        if not (len(self.items) == len(self.ratings) == len(self.timestamps) == n):
            raise ValueError("users, items, ratings and timestamps must have the same length")

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask_or_index: np.ndarray) -> Interactions:
        """The same universe of users and items, fewer ratings."""
        return Interactions(
            self.users[mask_or_index],
            self.items[mask_or_index],
            self.ratings[mask_or_index],
            self.timestamps[mask_or_index],
            self.n_users,
            self.n_items,
        )

    def matrix(self) -> sp.csr_matrix:
        """User x item CSR matrix of ratings (a pair rated twice sums: use ``binary_matrix`` for "rated")."""
        return sp.csr_matrix(
            (self.ratings.astype(np.float32), (self.users, self.items)), shape=(self.n_users, self.n_items)
        )

    def binary_matrix(self) -> sp.csr_matrix:
        """User x item float32 CSR matrix, 1.0 where rated: a pair rated twice is still one interaction."""
        x = sp.csr_matrix(
            (np.ones(len(self), np.float32), (self.users, self.items)), shape=(self.n_users, self.n_items)
        )
        x.sum_duplicates()
        x.data[:] = 1.0
        return x


def build_interactions(
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
) -> tuple[Interactions, IdMap, IdMap]:
    """Interactions over database ids; maps are built from the ids unless given (then unknown ids are
    dropped)."""
    user_map = user_map or IdMap.from_ids(user_ids)
    item_map = item_map or IdMap.from_ids(movie_ids)
    u, i = user_map.index(user_ids), item_map.index(movie_ids)
    keep = (u >= 0) & (i >= 0)
    # Canonical order (user, item): a seeded split must not depend on how the database stored the rows.
    order = np.lexsort((i, u))
    u, i, keep = u[order], i[order], keep[order]
    ratings, timestamps = np.asarray(ratings)[order], np.asarray(timestamps)[order]
    data = Interactions(
        u[keep].astype(np.int64),
        i[keep].astype(np.int64),
        np.asarray(ratings, np.float32)[keep],
        np.asarray(timestamps, np.int64)[keep],
        len(user_map),
        len(item_map),
    )
    return data, user_map, item_map
