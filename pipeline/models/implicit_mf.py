"""Implicit-feedback matrix factorisation through the ``implicit`` library (CPU build): alternating least
squares (Hu, Koren & Volinsky 2008), Bayesian personalised ranking (Rendle et al. 2009) and logistic MF
(Johnson 2014). The library fits; these classes hand it the train ratings as implicit feedback and keep its
factors behind the ``Recommender`` contract.

What each model is given, from the train split's ratings (dense indices of ``Interactions``):

* positives are the ratings ``>= min_rating`` (a pair rated twice counts once, at its highest rating);
* ALS and LMF weight each positive by its confidence ``c = 1 + alpha * rating`` (Hu et al.'s linear
  scheme, with the star rating as the strength of the signal); unrated pairs are negatives of confidence 1
  (ALS) or sampled negatives (LMF);
* BPR takes the positives as they are: the library ignores weights and samples a negative per positive, an
  entry of the matrix's nonzeros (so a movie in proportion to its ratings; the item-bias column makes up for
  it, see bench/README.md's peers section).

Scores are ``user_factors @ item_factors.T`` (BPR's and LMF's factors carry their bias columns, so the
product includes the biases); ``predict`` is NaN throughout (ranking only). A user or movie without a train
positive keeps zero factors, but for BPR's and LMF's constant columns: such a user is ranked by the movies'
biases (BPR, LMF) or not at all (ALS: every score 0).

Determinism: the library is seeded (``random_state = seed``). ALS solves every user (then every movie)
independently by conjugate gradient, so its factors do not depend on the thread count and ``threads`` only
sets speed (every core by default; at ML-25M shape one thread took 138.5 s of the train step's fit). BPR and
LMF are Hogwild SGD with one random generator per thread, so their factors do: they always run on one
thread. While the library fits, BLAS is held to one thread (its own threads are what parallelise;
it warns otherwise). Progress bars are off unless ``progress`` is set.

Defaults were chosen on ML-100K on the temporal validation split carved from the temporal protocol's train
part, by NDCG@10 (``python -m bench.model_grid``; never the test split). Grids, each value crossed with the
others of its model, the chosen one first, and its validation NDCG@10:

* ALS (0.162): factors 128 | 32 | 64 | 256, regularization 30 | 1 | 3 | 10 | 100, alpha 1 | 0 | 0.1 | 0.25,
  min_rating 4 | 1; 15 iterations. A first pass (regularization 0.01 to 1, alpha up to 4) was lower
  throughout: on ML-100K heavy regularisation and the 4- and 5-star ratings alone rank best.
* BPR (0.146): learning_rate 0.005 | 0.0025, regularization 0.01 | 0.001, iterations 300 | 100 | 200 | 500,
  popularity_correction 1 | 0 | 0.5 | 1.5 | 2; 64 factors, min_rating 1. Without the correction the best was
  0.128 (learning rate 0.005, regularization 0.001, 100 iterations, the earlier default): the library's SGD
  "overfits" with more iterations (0.097 at 300, 0.060 at 1,000) because its popularity-proportional negatives
  keep pushing popular movies down; with it, longer training pays (0.141 to 0.146 at 200 to 500 iterations
  and a correction of 1 to 1.5). Earlier passes without the correction: factors 16 | 32 | 64, learning rate
  0.001 to 0.05, regularization 0 to 0.1, 30 to 1,000 iterations, min_rating 1 | 4, none above 0.1283.
* LMF (0.132): factors 30 | 64, learning_rate 0.5 | 0.25, regularization 5 | 2 | 10, iterations 100 | 200,
  min_rating 4 | 1 (a first pass from the library's defaults, 30 iterations and regularization 0.6, was
  lower); 30 sampled negatives per positive.

The figures of every grid point are in ``bench/results/model_grid.json``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares, user_factor
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.cpu.lmf import LogisticMatrixFactorization
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass
from threadpoolctl import threadpool_limits

from pipeline.features.interactions import Interactions
from pipeline.models.base import HYPERPARAMETERS
from pipeline.models.vectors import VectorModel

# --- configs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, config=HYPERPARAMETERS)
class ALSConfig:
    factors: PositiveInt = 128
    regularization: NonNegativeFloat = 30.0  # L2 penalty on both sides' factors
    alpha: NonNegativeFloat = 1.0  # confidence of a positive: 1 + alpha * rating
    min_rating: NonNegativeFloat = 4.0  # ratings below this are not positives
    iterations: PositiveInt = 15  # ALS sweeps (users, then movies)
    seed: NonNegativeInt = 42
    threads: NonNegativeInt = 0  # the library's threads, 0 every core; the factors do not depend on it
    progress: bool = False  # the library's progress bar


@dataclass(frozen=True, config=HYPERPARAMETERS)
class BPRConfig:
    factors: PositiveInt = 64  # plus the library's item-bias column
    learning_rate: PositiveFloat = 0.005
    regularization: NonNegativeFloat = 0.01
    iterations: PositiveInt = 300  # epochs of one sampled (positive, negative) pair per positive
    min_rating: NonNegativeFloat = 1.0  # ratings below this are not positives
    # beta: each movie's score gains beta * log(1 + its train positives), undoing part of what the library's
    # negatives, drawn in proportion to those counts, take from popular movies (0: the library's scores)
    popularity_correction: NonNegativeFloat = 1.0
    seed: NonNegativeInt = 42
    progress: bool = False


@dataclass(frozen=True, config=HYPERPARAMETERS)
class LMFConfig:
    factors: PositiveInt = 30  # plus the library's two bias columns
    learning_rate: PositiveFloat = 0.5  # Adagrad's step
    regularization: NonNegativeFloat = 5.0
    iterations: PositiveInt = 100
    neg_prop: PositiveInt = 30  # sampled negatives per positive
    alpha: NonNegativeFloat = 1.0  # confidence of a positive: 1 + alpha * rating
    min_rating: NonNegativeFloat = 4.0
    seed: NonNegativeInt = 42
    progress: bool = False


# --- the wrapper --------------------------------------------------------------------------------------------


def positives(train: Interactions, min_rating: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, items, ratings)`` of the ratings ``>= min_rating``, one per pair (its highest rating)."""
    keep = np.flatnonzero(train.ratings >= min_rating)
    u, i, r = train.users[keep], train.items[keep], train.ratings[keep]
    order = np.lexsort((-r, i, u))  # per pair, the highest rating first
    u, i, r = u[order], i[order], r[order]
    first = np.ones(len(u), bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return u[first], i[first], r[first]


def user_items(train: Interactions, min_rating: float, alpha: float | None) -> sp.csr_matrix:
    """The user x item float32 CSR matrix the library fits: ``1 + alpha * rating`` at each positive (1.0 when
    ``alpha`` is None: a binary signal)."""
    u, i, r = positives(train, min_rating)
    values = np.ones(len(u), np.float32) if alpha is None else (1.0 + alpha * r).astype(np.float32)
    x = sp.csr_matrix((values, (u, i)), shape=(train.n_users, train.n_items), dtype=np.float32)
    x.sort_indices()
    return x


class ImplicitFactorisation(VectorModel, ABC):
    """A model of the ``implicit`` library behind the ``Recommender`` contract (see the module doc)."""

    vectors = ("user_factors", "item_factors")

    def __init__(self, config: Any | None = None) -> None:
        self.config: Any = config if config is not None else self.config_type()
        if not isinstance(self.config, self.config_type):
            raise TypeError(f"{self.name} takes a {self.config_type.__name__}, not {type(config).__name__}")
        self.user_factors_: np.ndarray | None = None
        self.item_factors_: np.ndarray | None = None

    @abstractmethod
    def _library_model(self) -> Any:
        """A fresh, unfitted model of the library (a refit never starts from the previous factors)."""

    @abstractmethod
    def _user_items(self, train: Interactions) -> sp.csr_matrix: ...

    def fit(self, train: Interactions) -> Self:
        x = self._user_items(train)
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._library_model()
            model.fit(x, show_progress=self.config.progress)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, np.float32)
        self.item_factors_ = self._item_factors(np.ascontiguousarray(model.item_factors, np.float32), x)
        return self

    def _item_factors(self, fitted: np.ndarray, x: sp.csr_matrix) -> np.ndarray:
        """The item factors kept from the library's, ``fitted`` on ``x`` (as they are but for BPR)."""
        return fitted

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted ``(user_factors, item_factors)``; ``NotFitted`` before ``fit``."""
        return self.fitted_vectors()


class ALS(ImplicitFactorisation):
    """Implicit ALS with confidence weighting (``implicit.cpu.als``, conjugate-gradient solver)."""

    name = "ALS"
    config_type = ALSConfig
    config: ALSConfig
    _gram: tuple[np.ndarray, np.ndarray] | None = None  # (the item factors, their Gram matrix YᵀY)

    def user_vector(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The factors of a user the model was not fitted on, from their ``(movie index, rating)`` pairs, the
        item factors ``Y`` fixed: ALS's own user step solved exactly, ``x = (YᵀCY + λI)⁻¹ YᵀCp`` with the
        user's positives as ``fit`` sees them (ratings >= ``min_rating``, a movie once at its highest
        rating, confidence ``1 + alpha * rating``; ``p`` 1 there, 0 elsewhere) by the library's
        ``user_factor``. A user without a positive gets zeros, as a train user without one keeps. The fit's
        own user factors come from a few conjugate-gradient steps of the same equation, so they are close to
        this, not equal."""
        _, q = self.factors()
        items = np.asarray(items, np.int64).ravel()
        zeros = np.zeros(len(items), np.int64)
        one = Interactions(zeros, items, np.asarray(ratings, np.float32).ravel(), zeros, 1, len(q))
        confidence = self._user_items(one)
        if confidence.nnz == 0:
            return np.zeros(q.shape[1], np.float32)
        if self._gram is None or self._gram[0] is not q:
            self._gram = (q, q.T.astype(np.float64) @ q.astype(np.float64))
        x = user_factor(q, self._gram[1], confidence, 0, self.config.regularization, q.shape[1])
        return np.asarray(x, np.float32)

    def _user_items(self, train: Interactions) -> sp.csr_matrix:
        return user_items(train, self.config.min_rating, self.config.alpha)

    def _library_model(self) -> Any:
        c = self.config
        return AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=1.0,  # the confidences are in the matrix already
            iterations=c.iterations,
            num_threads=c.threads,
            random_state=c.seed,
        )


class BPR(ImplicitFactorisation):
    """Bayesian personalised ranking on binary positives (``implicit.cpu.bpr``)."""

    name = "BPR"
    config_type = BPRConfig
    config: BPRConfig

    def _user_items(self, train: Interactions) -> sp.csr_matrix:
        return user_items(train, self.config.min_rating, None)

    def _item_factors(self, fitted: np.ndarray, x: sp.csr_matrix) -> np.ndarray:
        """The popularity correction, in the item-bias column (every user's factor there is 1). The library
        draws each negative as an entry of ``x``'s nonzeros, so a movie in proportion to its positives, and
        its scores rank popular movies lower than uniform negatives would (Yi et al. 2019 subtract log Q
        from the logits for the same reason; here it is added back once, after the fit)."""
        beta = self.config.popularity_correction
        if beta:
            counts = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)
            fitted[:, -1] += np.float32(beta) * np.log1p(counts)
        return fitted

    def _library_model(self) -> Any:
        c = self.config
        return BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            num_threads=1,  # Hogwild SGD: more threads, other factors
            verify_negative_samples=True,
            random_state=c.seed,
        )


class LMF(ImplicitFactorisation):
    """Logistic matrix factorisation with confidence weighting (``implicit.cpu.lmf``)."""

    name = "LMF"
    config_type = LMFConfig
    config: LMFConfig

    def _user_items(self, train: Interactions) -> sp.csr_matrix:
        return user_items(train, self.config.min_rating, self.config.alpha)

    def _library_model(self) -> Any:
        c = self.config
        return LogisticMatrixFactorization(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            neg_prop=c.neg_prop,
            num_threads=1,  # Hogwild SGD: more threads, other factors
            random_state=c.seed,
        )
