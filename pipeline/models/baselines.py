"""The baselines every evaluation reports beside the network: global mean, popularity, biased MF, EASE."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from pipeline.features.interactions import Interactions
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
    block_rows: PositiveInt = 2048  # rows solved at once: bounds the stack of dense Gram matrices


class BiasedMF:
    """``r(u, i) = mu + b_u + b_i + p_u . q_i``, fitted by alternating regularised least squares.

    Each half-step solves, for every user (or item) at once, the ridge problem for ``[p_u, b_u]`` given the
    other side: the per-row Gram matrices ``sum_i [q_i, 1][q_i, 1]^T`` are one sparse-dense product
    ``R (n_users x n_items) @ upper_triangle(outer(x_i, x_i)) (n_items x (f+1)(f+2)/2)``, then a batched
    ``linalg.solve``.
    Rows without train ratings end with zero factors and bias. Memory: the outer-product table holds
    ``n_users`` (or ``n_items``) x ``(f+1)(f+2)/2`` float64, about 1.7 GB for ML-25M's users at f=50.
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
        self, rated: sp.csr_matrix, target: sp.csr_matrix, other: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``[factors, bias]`` of every row of ``rated`` given the other side's factors ``other``.

        ``rated``: binary rows x others; ``target``: same pattern, values are what the row must explain.
        """
        c = self.config
        f = c.factors
        d = f + 1
        x = np.hstack([other, np.ones((len(other), 1))])  # (n_other, d)
        # Gram matrices are symmetric: build only the upper triangle, half the work of the sparse product.
        tri_r, tri_c = np.triu_indices(d)
        outer = x[:, tri_r] * x[:, tri_c]  # (n_other, d(d+1)/2)
        rhs_all = target @ x  # (n_rows, d)
        reg = np.empty((len(counts), d))
        reg[:, :f] = c.reg_factors * np.maximum(counts, 1.0)[:, None]
        reg[:, f] = c.reg_bias
        diag = np.arange(d)
        solution = np.empty((rated.shape[0], d))
        for lo in range(0, rated.shape[0], c.block_rows):
            hi = min(lo + c.block_rows, rated.shape[0])
            upper = np.asarray(rated[lo:hi] @ outer)
            gram = np.empty((hi - lo, d, d))
            gram[:, tri_r, tri_c] = upper
            gram[:, tri_c, tri_r] = upper
            gram[:, diag, diag] += reg[lo:hi]
            solution[lo:hi] = np.linalg.solve(gram, rhs_all[lo:hi, :, None])[:, :, 0]
        return solution[:, :f], solution[:, f]

    def fit(self, train: Interactions) -> BiasedMF:
        c = self.config
        rng = np.random.default_rng(c.seed)
        n_u, n_i = train.n_users, train.n_items
        u, i = train.users, train.items
        r = train.ratings.astype(np.float64)
        self.mu_ = mu = float(r.mean()) if len(r) else 0.0
        self.rating_range_ = (float(r.min()), float(r.max())) if len(r) else (-np.inf, np.inf)

        ones = np.ones(len(r))
        rated_ui = sp.csr_matrix((ones, (u, i)), shape=(n_u, n_i))
        rated_iu = rated_ui.T.tocsr()
        n_per_user = np.asarray(rated_ui.sum(axis=1)).ravel()
        n_per_item = np.asarray(rated_iu.sum(axis=1)).ravel()

        p = rng.normal(0.0, c.init_scale, (n_u, c.factors))
        q = rng.normal(0.0, c.init_scale, (n_i, c.factors))
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        for _ in range(c.epochs):
            # What the user side must explain once the item side is fixed, and vice versa.
            resid_u = r - mu - bi[i]
            p, bu = self._half_step(
                rated_ui, sp.csr_matrix((resid_u, (u, i)), shape=(n_u, n_i)), q, n_per_user
            )
            resid_i = r - mu - bu[u]
            q, bi = self._half_step(
                rated_iu, sp.csr_matrix((resid_i, (i, u)), shape=(n_i, n_u)), p, n_per_item
            )

        self.user_factors_, self.item_factors_ = p.astype(np.float32), q.astype(np.float32)
        self.user_bias_, self.item_bias_ = bu.astype(np.float32), bi.astype(np.float32)
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


# --- EASE ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, config=HYPERPARAMETERS)
class EASEConfig:
    # L2 penalty lambda of Steck (2019); above 0, or X^T X + lam I is singular as soon as a movie is unrated
    lam: PositiveFloat = 500.0


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck 2019) on the binary user x item train matrix.

    ``B = I - P / diag(P)`` with ``P = (X^T X + lam I)^-1`` and a zero diagonal; scores are ``x_u B``.
    Ranking only: ``predict`` returns NaN. Memory and time grow with ``n_items^2`` / ``n_items^3``.
    """

    name = "EASE"

    def __init__(self, config: EASEConfig | None = None) -> None:
        self.config = config or EASEConfig()
        self.weights_: np.ndarray | None = None
        self.rated_: sp.csr_matrix | None = None

    def fit(self, train: Interactions) -> EASE:
        x = train.binary_matrix()
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.config.lam
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))[None, :]  # B_ij = -P_ij / P_jj
        np.fill_diagonal(b, 0.0)
        self.weights_ = b.astype(np.float32)
        self.rated_ = x
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        check_fitted(self.weights_, self.name)
        users, _ = as_pairs(users, items)
        return np.full(users.shape, np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        weights = check_fitted(self.weights_, self.name)
        rows = check_fitted(self.rated_, self.name)[np.asarray(users, np.int64)]
        return np.asarray(rows @ weights, np.float32)
