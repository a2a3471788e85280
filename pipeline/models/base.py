"""The contract every recommender follows, so one evaluation harness, one blend and one batch can take any
of them.

``fit`` learns from a train split over dense indices; ``predict`` returns float32 ratings for (user, item)
pairs (NaN throughout for ranking-only models); ``score_users`` returns a ``(len(users), n_items)`` float32
matrix of ranking scores, higher is better, for every item including the ones the user already rated (masking
them is the evaluator's job). Fitting is deterministic: the same train split and config give the same
predictions."""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import ConfigDict

from pipeline.features.interactions import Interactions


@runtime_checkable
class Scorer(Protocol):
    """A fitted model: ratings for (user, item) pairs and ranking scores for whole rows of users."""

    @property
    def name(self) -> str: ...  # read-only: a class attribute or an instance attribute

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...

    def score_users(self, users: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Recommender(Scorer, Protocol):
    """A model the evaluation fits on each split: ``fit(train)`` returns the fitted model (usually itself)."""

    def fit(self, train: Interactions) -> Recommender: ...


@runtime_checkable
class RatingMatrix(Protocol):
    """A capability: predicted ratings for a row of item indices per user (-1 entries give NaN), or for every
    item when ``items`` is None. The blend's rating-head term needs it."""

    def rating_matrix(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray: ...


@runtime_checkable
class TopKLister(Protocol):
    """A capability: each user's top k movies among those not rated in the train split it was built on
    (``(len(users), k)``, best first, -1 padded), listed by the model itself: the evaluation asks for these
    instead of scoring the whole catalogue (a weight search's pool of candidates knows its lists without)."""

    def top_k_lists(self, users: np.ndarray, k: int) -> np.ndarray: ...


# The hyperparameter dataclasses (``HybridConfig``, the baselines' configs) are pydantic dataclasses under
# these rules: values checked on construction (``dataclasses.replace`` included) and on assignment, numbers
# finite, and an unknown keyword refused as a plain dataclass refuses it. A bad value raises
# ``pydantic.ValidationError``, a ``ValueError`` naming the field and the bound it breaks.
HYPERPARAMETERS = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class NotFitted(RuntimeError):
    """``predict`` or ``score_users`` before ``fit``."""


_T = TypeVar("_T")


def check_fitted(value: _T | None, name: str) -> _T:
    """``value``, a fitted attribute; ``NotFitted`` when it is still None."""
    if value is None:
        raise NotFitted(f"{name} is not fitted; call fit(train) first")
    return value


def as_pairs(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    if users.shape != items.shape:
        raise ValueError(f"users {users.shape} and items {items.shape} must have the same shape")
    return users, items


def fitted_pair(first: _T | None, second: _T | None, name: str) -> tuple[_T, _T]:
    """Two attributes ``fit`` sets together (factors, embeddings); ``NotFitted`` before ``fit``."""
    a = check_fitted(first, name)
    if second is None:  # set together with the first
        raise NotFitted(f"{name} is only partly fitted")
    return a, second


def no_ratings(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A ranking-only model's ``predict``: NaN for every (user, item) pair."""
    users, _ = as_pairs(users, items)
    return np.full(users.shape, np.nan, np.float32)


def dot_scores(user_vectors: np.ndarray, item_vectors: np.ndarray, users: np.ndarray) -> np.ndarray:
    """``score_users`` of a factor model: each user's vector dotted with every item's, float32.

    In float64, then float32: a user's scores must not depend on which other users share the block (the
    sharded batch scores other blocks than one process), and a float32 product's rounding did by the block's
    shape (BLAS picks its kernel by it); the float64 product's differences are far below float32's rounding.
    """
    rows = user_vectors[np.asarray(users, np.int64)].astype(np.float64)
    return np.asarray(rows @ item_vectors.T.astype(np.float64), np.float32)
