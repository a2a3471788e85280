"""The baselines every evaluation reports beside the network: global mean, popularity, biased MF, EASE."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from pipeline.features.interactions import Interactions, sorted_positions
from pipeline.models.base import HYPERPARAMETERS, NotFitted, as_pairs, check_fitted

# --- GlobalMean ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, config=HYPERPARAMETERS)
class GlobalMeanConfig:
    """No hyperparameters: every rating is predicted as the train mean."""


class GlobalMean:
    """Predicts the mean train rating for everything; ranks all items equally (zeros)."""

    name = "GlobalMean"

    def __init__(self, config: GlobalMeanConfig | None = None) -> None:
        self.config = config or GlobalMeanConfig()
        self.mean_: float | None = None
        self.n_items_ = 0

    def fit(self, train: Interactions) -> GlobalMean:
        self.mean_ = float(np.mean(train.ratings, dtype=np.float64)) if len(train) else 0.0
        self.n_items_ = train.n_items
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        check_fitted(self.mean_, self.name)
        users, _ = as_pairs(users, items)
        return np.full(users.shape, self.mean_, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        check_fitted(self.mean_, self.name)
        return np.zeros((len(np.asarray(users)), self.n_items_), np.float32)


# --- Popularity ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, config=HYPERPARAMETERS)
class PopularityConfig:
    # Bayesian damping of the item mean towards the global mean, in pseudo-ratings:
    # (sum of item ratings + damping * global mean) / (item count + damping).
    damping: NonNegativeFloat = 5.0


class Popularity:
    """Ranks items by their number of train ratings; predicts the damped item mean rating."""

    name = "Popularity"

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.counts_: np.ndarray | None = None
        self.item_means_: np.ndarray | None = None

    def fit(self, train: Interactions) -> Popularity:
        counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        sums = np.bincount(train.items, weights=train.ratings.astype(np.float64), minlength=train.n_items)
        mu = float(np.mean(train.ratings, dtype=np.float64)) if len(train) else 0.0
        d = self.config.damping
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts + d > 0, (sums + d * mu) / (counts + d), mu)
        self.counts_ = counts.astype(np.float32)
        self.item_means_ = means.astype(np.float32)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        item_means = check_fitted(self.item_means_, self.name)
        _, items = as_pairs(users, items)
        return item_means[items]

    def score_users(self, users: np.ndarray) -> np.ndarray:
        counts = check_fitted(self.counts_, self.name)
        return np.broadcast_to(counts, (len(np.asarray(users)), len(counts))).copy()


# --- BiasedMF -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, config=HYPERPARAMETERS)
class BiasedMFConfig:
    """Biased MF trained by alternating least squares.

    The factor penalty is weighted by each user's/item's rating count (ALS-WR, Zhou et al. 2008), which
    regularises heavy raters and popular items as much per rating as light ones.
    """

    factors: PositiveInt = 50
    epochs: PositiveInt = 10  # ALS sweeps (user step + item step); ML-100K test RMSE is flat after ~10
    reg_factors: NonNegativeFloat = 0.1  # lambda for factors, multiplied by the row's rating count
    reg_bias: NonNegativeFloat = 1.0  # lambda for user/item biases (not count-weighted: damps rare rows)
    init_scale: NonNegativeFloat = 0.1  # std of the initial factors
    seed: NonNegativeInt = 42  # numpy's generators take no negative seed
    clip: bool = True  # clip predict() to the train rating range (score_users is never clipped)
    block_rows: PositiveInt = 2048  # rows solved at once at most: bounds the stack of dense Gram matrices


# Rated rows (of the other side's factors) gathered at once, padding included, in a biased MF half-step:
# 2^18 x 51 float64 is 107 MB; 2^20 was no faster at ML-25M shape.
_GATHER_ROWS = 1 << 18


class BiasedMF:
    """``r(u, i) = mu + b_u + b_i + p_u . q_i``, fitted by alternating regularised least squares.

    Each half-step solves, for every user (or item), the ridge problem for ``[p_u, b_u]`` given the other
    side: the Gram matrix ``sum_i [q_i, 1][q_i, 1]^T`` over the movies the user rated, built by batched dense
    products over groups of rows (``_half_step``), then a batched ``linalg.solve``.
    Rows without train ratings end with zero factors and bias. Memory: one group's gathered rows, at most
    ``_GATHER_ROWS`` x ``(f+1)`` float64 (about 107 MB at f=50), or a single row's when it has more.
    """

    name = "BiasedMF"

    def __init__(self, config: BiasedMFConfig | None = None) -> None:
        self.config = config or BiasedMFConfig()
        self.mu_: float | None = None
        self.user_factors_: np.ndarray | None = None
        self.item_factors_: np.ndarray | None = None
        self.user_bias_: np.ndarray | None = None
        self.item_bias_: np.ndarray | None = None
        self.rating_range_: tuple[float, float] = (-np.inf, np.inf)

    def _half_step(
        self, ptr: np.ndarray, others: np.ndarray, values: np.ndarray, other: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``[factors, bias]`` of every row given the other side's factors ``other``.

        Row ``k`` rated ``others[ptr[k]:ptr[k + 1]]``, which must explain ``values`` there (CSR without
        the matrix). Its Gram matrix is ``X_k^T X_k`` over the rows of ``[other, 1]`` it rated: rows of
        similar counts are gathered together (sorted by count, padded with a zero row) and multiplied in one
        batched product, dense BLAS on every thread where a sparse product with a table of outer products was
        bound by memory (the fit at ML-25M shape 859 -> 306 s, at ML-1M's 24.4 -> 8.5 s, the same float32
        factors).
        """
        c = self.config
        f = c.factors
        d = f + 1
        pad = len(other)  # the index of the zero row
        x = torch.from_numpy(np.vstack([np.hstack([other, np.ones((pad, 1))]), np.zeros((1, d))]))
        sizes = np.diff(ptr)
        order = np.argsort(sizes, kind="stable")
        reg = np.empty((len(sizes), d))
        reg[:, :f] = c.reg_factors * np.maximum(sizes, 1)[:, None]
        reg[:, f] = c.reg_bias
        diag = np.arange(d)
        solution = np.empty((len(sizes), d))
        for lo, hi in _groups(sizes[order], _GATHER_ROWS, c.block_rows):
            rows = order[lo:hi]
            width = int(sizes[rows[-1]])
            live = np.arange(width)[None, :] < sizes[rows][:, None]
            at = (ptr[rows][:, None] + np.arange(width)[None, :])[live]
            index = np.full((len(rows), width), pad)
            index[live] = others[at]
            explained = np.zeros((len(rows), width, 1))
            explained[live, 0] = values[at]
            gathered = x[torch.from_numpy(index)]  # (rows, width, d)
            transposed = gathered.transpose(1, 2)
            gram = torch.bmm(transposed, gathered).numpy()
            rhs = torch.bmm(transposed, torch.from_numpy(explained)).numpy()
            gram[:, diag, diag] += reg[rows]
            solution[rows] = np.linalg.solve(gram, rhs)[:, :, 0]
        return solution[:, :f], solution[:, f]

    def fit(self, train: Interactions) -> BiasedMF:
        """Rows without train ratings end with zero factors and bias; only the others are solved (an
        evaluation on a sample of the users leaves most user rows empty)."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        u, i = train.users, train.items
        r = train.ratings.astype(np.float64)
        self.mu_ = mu = float(r.mean()) if len(r) else 0.0
        self.rating_range_ = (float(r.min()), float(r.max())) if len(r) else (-np.inf, np.inf)

        # The rated users and movies, renumbered in order: an empty row's solution is exactly zero (no
        # ratings, no right-hand side), so solving only the others changes no float.
        users_on, u = np.unique(u, return_inverse=True)
        items_on, i = np.unique(i, return_inverse=True)
        n_u, n_i = len(users_on), len(items_on)
        by_user, user_ptr = _by_row(u, n_u)
        by_item, item_ptr = _by_row(i, n_i)
        items_of_users, users_of_items = i[by_user], u[by_item]
        r_by_user, r_by_item = r[by_user], r[by_item]

        # drawn for every row, as before, so the rated rows start from the same values
        p = rng.normal(0.0, c.init_scale, (train.n_users, c.factors))[users_on]
        q = rng.normal(0.0, c.init_scale, (train.n_items, c.factors))[items_on]
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        for _ in range(c.epochs):
            # What the user side must explain once the item side is fixed, and vice versa.
            resid_u = r_by_user - mu - bi[items_of_users]
            p, bu = self._half_step(user_ptr, items_of_users, resid_u, q)
            resid_i = r_by_item - mu - bu[users_of_items]
            q, bi = self._half_step(item_ptr, users_of_items, resid_i, p)

        self.user_factors_, self.user_bias_ = _scatter(p, bu, users_on, train.n_users)
        self.item_factors_, self.item_bias_ = _scatter(q, bi, items_on, train.n_items)
        return self

    def parameters(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The fitted ``(mu, user_factors, item_factors, user_bias, item_bias)``; ``NotFitted`` before
        ``fit``."""
        p = check_fitted(self.user_factors_, self.name)
        mu, q, bu, bi = self.mu_, self.item_factors_, self.user_bias_, self.item_bias_
        if mu is None or q is None or bu is None or bi is None:  # set together with user_factors_
            raise NotFitted(f"{self.name} is only partly fitted")
        return mu, p, q, bu, bi

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        mu, p, q, bu, bi = self.parameters()
        users, items = as_pairs(users, items)
        pred = mu + bu[users] + bi[items] + np.einsum("nf,nf->n", p[users], q[items])
        if self.config.clip:
            pred = np.clip(pred, *self.rating_range_)
        return pred.astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        mu, p, q, bu, bi = self.parameters()
        users = np.asarray(users, np.int64)
        scores = p[users] @ q.T
        scores += bi[None, :] + (mu + bu[users])[:, None]
        return scores.astype(np.float32, copy=False)


def _by_row(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The order that groups the ratings by ``rows`` (stable) and each row's start in it: CSR's ``indptr``."""
    return np.argsort(rows, kind="stable"), np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])


def _groups(
    sizes: np.ndarray, entries: int, max_rows: int, spread: float = 1.25
) -> Iterator[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` runs of the ascending ``sizes``, each padded to its last size: at most
    ``entries`` in all (or one row, however large), at most ``max_rows`` rows, and a last size at most
    ``spread`` times the first (plus 8), so that padding stays a small share of the work."""
    lo, n = 0, len(sizes)
    while lo < n:
        widest = int(np.searchsorted(sizes, spread * sizes[lo] + 8, side="right"))
        top = min(n, lo + max_rows, widest)
        # (hi - lo) * sizes[hi - 1] grows with hi: the last hi within the budget
        hi = lo + bisect.bisect_right(range(lo + 1, top + 1), entries, key=lambda h: (h - lo) * sizes[h - 1])
        hi = max(hi, lo + 1)
        yield lo, hi
        lo = hi


def _scatter(
    factors: np.ndarray, bias: np.ndarray, rows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """float32 factors and biases of all ``n`` rows: those solved at ``rows``, zero elsewhere."""
    full, full_bias = np.zeros((n, factors.shape[1]), np.float32), np.zeros(n, np.float32)
    full[rows], full_bias[rows] = factors, bias
    return full, full_bias


# --- EASE ---------------------------------------------------------------------------------------------------

# Weights for at most this many movies. Fitting holds a float64 Gram matrix / inverse and the float32 weights
# (12 bytes per movie pair: 4.8 GB at 20k), the fitted model the float32 weights alone (1.6 GB); why 20k for
# issue 13's 12 GB ML-25M target: docs/model.md and bench/ease.py.
EASE_MAX_ITEMS = 20_000
_GRAM_BLOCK_ENTRIES = 8_000_000  # entries of one column block of the Gram matrix built at once
# Above this many movies the Cholesky factorisation runs on one BLAS thread: scipy's OpenBLAS (0.3.30) crashed
# (SIGSEGV in its threaded dpotrf) at 16,000 movies on 2 cores, not at 15,500, so the default cap's fit
# crashed at ML-25M size. One thread costs about 5 s more at 12,000 (11.6 s against 6.4) and takes 51 s at
# 20,000; the inverse (dpotri) stays threaded, and ran at 20,000.
_THREADED_CHOLESKY_MAX_ITEMS = 8_192


@dataclass(frozen=True, config=HYPERPARAMETERS)
class EASEConfig:
    # L2 penalty lambda of Steck (2019); above 0, or X^T X + lam I is singular as soon as a movie is unrated
    lam: PositiveFloat = 500.0
    # the most-rated movies that get weights (see EASE); memory grows as its square
    max_items: PositiveInt = EASE_MAX_ITEMS


def _gram_upper(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """The upper triangle of ``X^T X + lam I`` (float64, Fortran order for LAPACK; the strict lower triangle
    is zero), built one column block at a time from sparse products: time O(the product's work), memory the
    dense result plus one block, never the sparse product of the whole matrix (a dense one's worth of
    indices at large catalogues)."""
    n = x.shape[1]
    by_column = x.tocsc()
    by_row_t = by_column.T.tocsr()  # movies x users
    gram = np.zeros((n, n), np.float64, order="F")
    block = max(1, _GRAM_BLOCK_ENTRIES // max(n, 1))
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        gram[:hi, lo:hi] = (by_row_t[:hi] @ by_column[:, lo:hi]).toarray()
    gram[np.diag_indices(n)] += lam
    return gram


def _ease_weights(gram: np.ndarray) -> np.ndarray:
    """``B = -P / diag(P)`` (zero diagonal) with ``P = gram^-1``, from ``gram``'s upper triangle (which it
    overwrites): a Cholesky inverse in place, so memory is ``gram`` plus the float32 result."""
    n = gram.shape[0]
    if n == 0:
        return np.zeros((0, 0), np.float32)
    with threadpool_limits(limits=1 if n > _THREADED_CHOLESKY_MAX_ITEMS else None, user_api="blas"):
        factor, info = lapack.dpotrf(gram, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the Gram matrix is not positive definite (dpotrf info {info})")
    p, info = lapack.dpotri(factor, lower=0, overwrite_c=1)  # the inverse's upper triangle
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the Gram matrix is singular (dpotri info {info})")
    scale = -1.0 / np.diag(p)
    weights = np.empty((n, n), np.float32)
    block = max(1, _GRAM_BLOCK_ENTRIES // n)
    column = np.empty((n, block))
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        col = column[:, : hi - lo]
        col[:lo] = p[:lo, lo:hi]
        square = p[lo:hi, lo:hi]
        col[lo:hi] = np.triu(square) + np.triu(square, 1).T
        col[hi:] = p[lo:hi, hi:].T
        weights[:, lo:hi] = col * scale[lo:hi]
    np.fill_diagonal(weights, 0.0)
    return weights


def most_rated(x: sp.csr_matrix, k: int) -> np.ndarray:
    """The ``k`` movies with the most raters in the binary user x movie matrix ``x``, ties to the lower
    index, in ascending index order."""
    counts = np.bincount(x.indices, minlength=x.shape[1])
    return np.sort(np.argsort(-counts, kind="stable")[:k])


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck 2019) on the binary user x item train matrix.

    ``B = I - P / diag(P)`` with ``P = (X^T X + lam I)^-1`` and a zero diagonal; scores are ``x_u B``.
    Ranking only: ``predict`` returns NaN.

    Large catalogues: above ``max_items`` movies only the ``max_items`` most-rated ones (by train raters, ties
    to the lower index; ``kept_``, ascending catalogue indices) get weights, fitted on X restricted to their
    columns, so memory grows as ``max_items^2`` and time as ``max_items^3`` whatever the catalogue. Every
    other movie scores 0 for every user: ``B`` is zero outside the kept block, so such a movie contributes to
    no score and receives none — the score full EASE gives a movie no history reaches, and close to what it
    gives rarely rated ones, whose column is mostly lambda. A constant per user keeps the blend's per-user
    standardisation well defined and leaves their order to the network. ``weights_`` is the kept x kept
    block (``kept_`` None: every movie is kept and ``weights_`` is the whole ``B``, exactly as without a
    cap); ``item_weights`` and ``score_items`` read ``B`` by catalogue index either way.
    """

    name = "EASE"

    def __init__(self, config: EASEConfig | None = None) -> None:
        self.config = config or EASEConfig()
        self.weights_: np.ndarray | None = None
        self.kept_: np.ndarray | None = None
        self.n_items_ = 0
        self.rated_: sp.csr_matrix | None = None

    def fit(self, train: Interactions) -> EASE:
        x = train.binary_matrix()
        kept = most_rated(x, self.config.max_items) if train.n_items > self.config.max_items else None
        gram = _gram_upper(x if kept is None else x[:, kept], self.config.lam)
        self.weights_ = _ease_weights(gram)
        self.kept_, self.n_items_, self.rated_ = kept, train.n_items, x
        return self

    @classmethod
    def restore(
        cls, config: EASEConfig, weights: np.ndarray, rated: sp.csr_matrix, kept: np.ndarray | None = None
    ) -> EASE:
        """A fitted EASE from saved ``weights`` (and ``kept`` when capped) scoring from ``rated``."""
        size = rated.shape[1] if kept is None else len(kept)
        if weights.shape != (size, size):
            raise ValueError(f"EASE weights of shape {weights.shape} for {size} kept movies")
        model = cls(config)
        model.weights_, model.rated_, model.n_items_ = weights, rated, rated.shape[1]
        model.kept_ = None if kept is None else np.asarray(kept, np.int64)
        return model

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        check_fitted(self.weights_, self.name)
        users, _ = as_pairs(users, items)
        return np.full(users.shape, np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        weights = check_fitted(self.weights_, self.name)
        rows = check_fitted(self.rated_, self.name)[np.asarray(users, np.int64)]
        if self.kept_ is None:
            return np.asarray(rows @ weights, np.float32)
        scores = np.zeros((rows.shape[0], self.n_items_), np.float32)
        scores[:, self.kept_] = rows[:, self.kept_] @ weights
        return scores

    def item_weights(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``B[rows, cols]`` by catalogue index: how much having rated movie ``rows[a]`` adds to the score of
        ``cols[b]`` (0 where either is outside the kept movies)."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        return self.pair_weights(rows[:, None], cols[None, :])

    def pair_weights(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``B[rows, cols]`` for catalogue-index arrays that broadcast together (numpy's fancy indexing), 0
        where either is outside the kept movies: many users' (rated x listed) blocks in one gather."""
        weights = check_fitted(self.weights_, self.name)
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        flat = weights.ravel()  # one take on flat offsets: about twice as fast as 2-D fancy indexing
        if self.kept_ is None:
            return flat.take(rows * weights.shape[1] + cols)
        r, c = (
            self._positions(rows.ravel()).reshape(rows.shape),
            self._positions(cols.ravel()).reshape(cols.shape),
        )
        gathered = flat.take(np.maximum(r, 0) * weights.shape[1] + np.maximum(c, 0))
        return np.where((r >= 0) & (c >= 0), gathered, np.float32(0))

    def score_items(self, items: np.ndarray) -> np.ndarray:
        """The scores (``n_items_``) of a user who rated ``items`` (catalogue indices): ``x B``."""
        weights = check_fitted(self.weights_, self.name)
        items = np.unique(np.asarray(items, np.int64))
        if self.kept_ is None:
            return weights[items].sum(axis=0, dtype=np.float64).astype(np.float32)
        pos = self._positions(items)
        scores = np.zeros(self.n_items_, np.float32)
        scores[self.kept_] = weights[pos[pos >= 0]].sum(axis=0, dtype=np.float64)
        return scores

    def _positions(self, items: np.ndarray) -> np.ndarray:
        """Each catalogue index's row in ``weights_`` (-1: not kept)."""
        return sorted_positions(check_fitted(self.kept_, self.name), items)
