"""LightGCN (He et al. 2020, "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation") in PyTorch on the CPU: an evaluation-only, ranking-only model beside the implicit-feedback
factorisations (``implicit_mf``) and item-kNN.

The graph is the user–movie bipartite graph of the train split's positives: the ratings ``>= min_rating``,
a pair rated twice once (``implicit_mf.positives``). Its adjacency ``A = [[0, R], [Rᵀ, 0]]`` is normalised
symmetrically, ``Â = D^-1/2 A D^-1/2`` (``D`` the node degrees; a user or movie without a positive is an
isolated node), once per fit, as a ``torch.sparse`` matrix. Every user and movie has a free embedding
``E⁰`` (``factors`` wide, initialised N(0, 0.1²) as in the paper's code); a layer is one propagation with no
weights and no nonlinearity, ``Eᵏ⁺¹ = Â Eᵏ``, and the final embedding is the mean of the ``layers + 1``
layer embeddings, layer 0 included. A score is the dot product of the user's and the movie's final
embeddings; ``predict`` is NaN throughout (ranking only).

Training is BPR (Rendle et al. 2009) with Adam: each epoch pairs every positive with one negative drawn
uniformly from the movies that are not the user's positives (a movie rated below ``min_rating`` can be
drawn: it is not a positive), shuffles the triples and takes them ``batch_size`` at a time; the graph is
propagated afresh for every batch. The loss of a batch is the mean of ``-log σ(s(u, i) - s(u, j))`` plus
``regularization`` times half the squared norm of the batch's layer-0 embeddings (user, positive and
negative), divided by the batch size (the paper's L2 term). After the last epoch the final embeddings are
propagated once and kept; scoring is a matrix product, no graph.

Determinism: the embeddings are initialised from a ``torch.Generator`` and the negatives and batch order
drawn from a ``numpy`` generator, both seeded by ``seed``; nothing reads or changes torch's global random
state. ``fit`` holds torch to one thread (and restores the count after): on two threads a re-run with the
same seed gave other floats (the first epoch's loss differed in its ninth significant digit), on one it gives
the same (checked in ``tests/pipeline/models/test_lightgcn.py``).

Speed: on ML-100K's temporal validation split (64k ratings, 37.5k positives at >= 4 stars) an epoch took
0.2 to 0.3 s at 64 factors and about 0.5 s at the defaults' 128 factors and 2 layers, on one thread of a
busy 2-core machine: the defaults' 80 epochs fit in about 40 s there.

Defaults were chosen on ML-100K on the temporal validation split carved from the temporal protocol's train
part, by NDCG@10 (``python -m bench.model_grid --models lightgcn``; never the test split). Grid, each value
crossed with the others, the chosen one first, and its validation NDCG@10:

* 0.1530: factors 128 | 64, layers 2 | 3, regularization 0.001 | 0.003, learning_rate 0.01, epochs
  80 | 160; batch_size 2048, min_rating 4. The best point was the same with 160 epochs, 0.1536: the default
  takes 80, within 0.4% of it at half the fit time (``movierec evaluate`` fits it once per protocol);
  3 layers at most 0.1514; regularization 0.003 was lower throughout.
* A first pass, 80 epochs: factors 32 | 64, layers 1 | 2 | 3, regularization 0.0001 | 0.001, learning_rate
  0.005 | 0.01, best 0.1488 at 64 factors, 2 layers, 0.001, 0.01 (the 32-factor points 0.130 to 0.144).
  Single points before it, 64 factors and 3 layers: learning rate 0.001 (0.107 at 80 epochs), regularization
  0.01 and 0.05 (0.116, 0.086) and min_rating 1 (0.132) were lower.

On ML-100K LightGCN ranks below ALS (0.162) and item-kNN (0.1605) on the same validation split. The figures of
every point were written with ``--output`` to a scratch file, not to ``bench/results/model_grid.json``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from pipeline.core.device import one_torch_thread
from pipeline.core.sparse import torch_csr
from pipeline.features.interactions import Interactions, sorted_positions
from pipeline.models.base import HYPERPARAMETERS
from pipeline.models.implicit_mf import positives
from pipeline.models.vectors import VectorModel

INIT_STD = 0.1  # the layer-0 embeddings' initial standard deviation (the paper's code)
NEGATIVE_DRAWS = 20  # redraws of a negative that hit a positive; after them it is kept (a user who liked all)


@dataclass(frozen=True, config=HYPERPARAMETERS)
class LightGCNConfig:
    factors: PositiveInt = 128  # width of every embedding
    layers: NonNegativeInt = 2  # propagation steps (0: plain BPR matrix factorisation)
    regularization: NonNegativeFloat = 1e-3  # L2 on the batch's layer-0 embeddings
    learning_rate: PositiveFloat = 1e-2  # Adam's
    epochs: PositiveInt = 80  # each pairs every positive with one sampled negative
    batch_size: PositiveInt = 2048  # (user, positive, negative) triples per step
    min_rating: NonNegativeFloat = 4.0  # ratings below this are not positives (not edges of the graph)
    seed: NonNegativeInt = 42


def normalised_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph with an edge per ``(users[k], items[k])`` pair (distinct
    pairs): a float32 sparse CSR tensor over ``n_users + n_items`` nodes, users first. Symmetric."""
    n = n_users + n_items
    rows = np.concatenate([users, items + n_users])
    cols = np.concatenate([items + n_users, users])
    a = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
    degree = np.asarray(a.sum(axis=1), np.float64).ravel()
    scale = np.zeros(n, np.float64)
    np.divide(1.0, np.sqrt(degree), out=scale, where=degree > 0)
    norm = sp.csr_matrix(sp.diags(scale) @ a @ sp.diags(scale), dtype=np.float32)
    return torch_csr(norm)


class _SymmetricProduct(torch.autograd.Function):
    """``Â @ X`` for a constant symmetric sparse ``Â``: the gradient of ``X`` is ``Â @ G`` (``Âᵀ = Â``), so
    the backward pass is one more sparse product, not a transpose of ``Â`` per call as ``torch.sparse.mm``'s
    backward does (several times slower on the CPU)."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad


def propagate(adjacency: torch.Tensor, embeddings: torch.Tensor, layers: int) -> torch.Tensor:
    """The mean of ``embeddings`` and its ``layers`` propagations ``Âᵏ E`` (LightGCN's layer combination);
    ``adjacency`` symmetric (``normalised_adjacency``)."""
    total, current = embeddings, embeddings
    for _ in range(layers):
        current = _SymmetricProduct.apply(adjacency, current)
        total = total + current
    return total / (layers + 1)


def sample_negatives(
    users: np.ndarray, keys: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """A movie per entry of ``users``, uniform over those whose ``user * n_items + movie`` is not in
    ``keys`` (sorted): redrawn up to ``NEGATIVE_DRAWS`` times, then kept whatever it is."""
    negatives = rng.integers(0, n_items, size=len(users))
    for _ in range(NEGATIVE_DRAWS):
        # np.isin here sorted the keys again on every call: most of a SASRec epoch's time on ML-100K.
        hit = np.flatnonzero(sorted_positions(keys, users * n_items + negatives) >= 0)
        if len(hit) == 0:
            break
        negatives[hit] = rng.integers(0, n_items, size=len(hit))
    return negatives


class LightGCN(VectorModel):
    """LightGCN trained by BPR on the train positives (see the module doc)."""

    name = "LightGCN"
    config_type = LightGCNConfig
    vectors = ("user_embeddings", "item_embeddings")

    def __init__(self, config: LightGCNConfig | None = None) -> None:
        self.config = config if config is not None else LightGCNConfig()
        if not isinstance(self.config, LightGCNConfig):
            raise TypeError(f"{self.name} takes a LightGCNConfig, not {type(config).__name__}")
        self.user_embeddings_: np.ndarray | None = None  # the final (propagated, layer-averaged) embeddings
        self.item_embeddings_: np.ndarray | None = None
        self.losses_: list[float] = []  # the mean BPR loss (without the L2 term) of each epoch

    def fit(self, train: Interactions) -> Self:
        with one_torch_thread():  # deterministic only on one thread (see the module doc)
            return self._fit(train)

    def _fit(self, train: Interactions) -> Self:
        c = self.config
        users, items, _ = positives(train, c.min_rating)
        n_users, n_items = train.n_users, train.n_items
        adjacency = normalised_adjacency(users, items, n_users, n_items)
        keys = np.sort(users * n_items + items)
        rng = np.random.default_rng(c.seed)
        generator = torch.Generator().manual_seed(c.seed)
        weights = torch.randn(n_users + n_items, c.factors, generator=generator) * INIT_STD
        weights.requires_grad_(True)
        optimiser = torch.optim.Adam([weights], lr=c.learning_rate)
        self.losses_ = []
        user_index = torch.from_numpy(users)
        item_index = torch.from_numpy(items + n_users)
        for _ in range(c.epochs if len(users) else 0):
            negatives = torch.from_numpy(sample_negatives(users, keys, n_items, rng) + n_users)
            order = torch.from_numpy(rng.permutation(len(users)))
            total = 0.0
            for start in range(0, len(order), c.batch_size):
                batch = order[start : start + c.batch_size]
                u, i, j = user_index[batch], item_index[batch], negatives[batch]
                final = propagate(adjacency, weights, c.layers)
                eu, ei, ej = final[u], final[i], final[j]
                ranking = -torch.nn.functional.logsigmoid((eu * ei).sum(1) - (eu * ej).sum(1)).mean()
                # row norms first: each sum stays small enough to be one thread's, whatever the thread count
                l2 = (
                    weights[u].square().sum(1) + weights[i].square().sum(1) + weights[j].square().sum(1)
                ).sum() / 2
                loss = ranking + c.regularization * l2 / len(batch)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(ranking.detach()) * len(batch)
            self.losses_.append(total / len(users))
        with torch.no_grad():
            fitted = propagate(adjacency, weights, c.layers).numpy()
        self.user_embeddings_ = np.ascontiguousarray(fitted[:n_users], np.float32)
        self.item_embeddings_ = np.ascontiguousarray(fitted[n_users:], np.float32)
        return self
