"""Item-based k-nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004): the explanation-friendly
baseline — a movie is recommended because of the movies the user rated that are most like it.

Similarity is the cosine of two movies' co-ratings (who rated both, on the binary train matrix), shrunk
towards zero when few users support it (Koren 2008)::

    sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrinkage),    sim(i, i) = 0

Each movie keeps only its ``neighbours`` most similar movies (ties to the lower index, as ``top_k`` breaks
them; only positive similarities). A user's score of movie ``i`` is the sum of ``sim(i, j)`` over the movies
``j`` they rated that are among ``i``'s neighbours. Ranking only: ``predict`` is NaN.

Memory: the neighbour matrix is sparse, ``n_items x neighbours``; fitting computes the co-rating counts
``block_items`` movies at a time (a dense ``block_items x n_items`` float32 block), never the whole
``n_items x n_items`` matrix.

Defaults chosen on ML-100K on the temporal validation split carved from the temporal protocol's train part,
by NDCG@10 (``python -m bench.model_grid``; never the test split), the chosen value first: neighbours
400 | 50 | 100 | 200 | 800, shrinkage 0 | 10 | 50 (validation NDCG@10 0.1605; 0.1515 at 100 neighbours, 0.1604
at 800; a first pass also tried 20 neighbours and shrinkage 5 and 100, all lower). No shrinkage
wins here: with ML-100K's dense co-ratings few pairs are thinly supported. Figures in
``bench/results/model_grid.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, PositiveInt
from pydantic.dataclasses import dataclass

from pipeline.features.interactions import Interactions
from pipeline.models.base import HYPERPARAMETERS, as_pairs, check_fitted
from pipeline.models.saved import csr_arrays, csr_from, load_arrays, save_arrays
from pipeline.models.topn import top_k


@dataclass(frozen=True, config=HYPERPARAMETERS)
class ItemKNNConfig:
    neighbours: PositiveInt = 400  # most similar movies kept per movie
    shrinkage: NonNegativeFloat = 0.0  # added to the cosine's denominator: damps thinly supported pairs
    block_items: PositiveInt = 1024  # movies whose co-rating counts are computed at once


class ItemKNN:
    """Item-kNN on shrunk co-rating cosine (see the module doc)."""

    name = "ItemKNN"

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        self.config = config or ItemKNNConfig()
        # weights_[j, i] = sim(i, j) for j among i's neighbours, so a user's scores are ``x_u @ weights_``.
        self.weights_: sp.csr_matrix | None = None
        self.rated_: sp.csr_matrix | None = None

    def fit(self, train: Interactions) -> ItemKNN:
        c = self.config
        x = train.binary_matrix()  # users x items
        xt = x.T.tocsr()  # items x users
        n = train.n_items
        norms = np.sqrt(np.diff(xt.indptr)).astype(np.float32)  # sqrt(|U_i|)
        k = min(c.neighbours, max(n - 1, 1))
        rows, cols, values = [], [], []
        for lo in range(0, n, c.block_items):
            hi = min(lo + c.block_items, n)
            co = np.asarray((xt[lo:hi] @ x).toarray(), np.float32)  # |U_i ∩ U_j| for i in the block
            denominator = norms[lo:hi, None] * norms[None, :] + np.float32(c.shrinkage)
            sim = np.divide(co, denominator, out=np.zeros_like(co), where=denominator > 0)
            sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
            found, best = top_k(sim, k)
            keep = best > 0
            rows.append(np.nonzero(keep)[0] + lo)
            cols.append(found[keep])
            values.append(best[keep])
        i, j, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(values).astype(np.float32)
        self.weights_ = sp.csr_matrix((s, (j, i)), shape=(n, n), dtype=np.float32)
        self.rated_ = x
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        check_fitted(self.weights_, self.name)
        users, _ = as_pairs(users, items)
        return np.full(users.shape, np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        weights = check_fitted(self.weights_, self.name)
        rows = check_fitted(self.rated_, self.name)[np.asarray(users, np.int64)]
        return np.asarray((rows @ weights).toarray(), np.float32)

    def neighbours(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """``item``'s kept neighbours and their similarities, most similar first: the explanation of a
        recommendation."""
        column = check_fitted(self.weights_, self.name)[:, item].tocoo()
        order = np.lexsort((column.row, -column.data))
        return column.row[order].astype(np.int64), column.data[order]

    def save(self, path: Path) -> Path:
        """The neighbour matrix, the rated pairs and the config in one ``.npz`` file at ``path``."""
        weights = check_fitted(self.weights_, self.name)
        rated = check_fitted(self.rated_, self.name)
        return save_arrays(
            path, self.name, self.config, {**csr_arrays("weights", weights), **csr_arrays("rated", rated)}
        )

    @classmethod
    def load(cls, path: Path) -> ItemKNN:
        config, arrays = load_arrays(path, cls.name, ItemKNNConfig)
        model = cls(config)
        model.weights_, model.rated_ = csr_from("weights", arrays), csr_from("rated", arrays)
        return model
