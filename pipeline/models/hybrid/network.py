"""The hybrid content + collaborative network.

A movie is its learned id embedding plus a vector encoded from its content (genres, title text, people,
year, runtime). Because the content vector alone can stand in for the id embedding — training drops
the id part at random so it has to — the same network scores a movie nobody has rated yet.

Two heads share those representations:
* a rating head: global mean + user and movie biases + their dot product + an MLP over
  (user, movie, user*movie);
* a ranking head: the dot product of user and movie vectors plus a movie bias, trained with a
  softmax over sampled unrated movies. A dot product also makes retrieval over a large catalogue a
  matrix product."""

from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from pipeline.features.vocab import ROLES, FeatureVocab, MovieContent
from pipeline.models.hybrid.config import HybridConfig


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class ContentEncoder(nn.Module):
    """Movie content -> a vector in the same space as the movie id embeddings."""

    def __init__(self, n_genres: int, text_dim: int, n_persons: dict[str, int], cfg: HybridConfig) -> None:
        super().__init__()
        self.people = nn.ModuleDict(
            {r: nn.Embedding(n_persons[r] + 1, cfg.person_dim, padding_idx=0) for r in ROLES}
        )
        in_dim = n_genres + text_dim + len(ROLES) * cfg.person_dim + 4
        self.mlp = _mlp([in_dim, *cfg.content_mlp], cfg.dropout)
        self.out = nn.Linear(cfg.content_mlp[-1], cfg.embedding_dim)
        self.bias = nn.Linear(cfg.content_mlp[-1], 2)  # content part of the rating bias and the ranking bias

    def forward(
        self, genres: torch.Tensor, text: torch.Tensor, people: dict[str, torch.Tensor], numeric: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = []
        for role in ROLES:
            idx = people[role]
            emb = self.people[role](idx)
            mask = (idx > 0).unsqueeze(-1).to(emb.dtype)
            pooled.append((emb * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        h = self.mlp(torch.cat([genres, text, *pooled, numeric], dim=-1))
        return self.out(h), self.bias(h)


# _BagSum's sparse matrices are built from indices sorted here; torch warns once that CSR support is beta.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


class _BagSum(torch.autograd.Function):
    """Each bag's sum of ``weight`` rows, as a sparse (bags x rows) matrix of ones times ``weight``, and the
    gradient as its transpose times the output's. On the CPU ``embedding_bag``'s backward took 3 to 5x as
    long as this sort and sparse product at ML-1M shape (a batch's bags hold some 500k movies)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, bags: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``bags``: CSR offsets (n_bags + 1) into ``rows``, the weight rows each bag sums."""
        ones = torch.ones(len(rows), dtype=weight.dtype, device=weight.device)
        ctx.n_rows, ctx.bags, ctx.rows = weight.shape[0], bags, rows
        return _sparse_ones(bags, rows, ones, (len(bags) - 1, weight.shape[0])) @ weight

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        bags, rows, n_rows = ctx.bags, ctx.rows, ctx.n_rows
        bag_of = torch.repeat_interleave(torch.arange(len(bags) - 1, device=rows.device), bags.diff())
        order = torch.argsort(rows, stable=True)  # by weight row, bags ascending within one
        by_row = torch.cat([bags.new_zeros(1), torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)])
        ones = torch.ones(len(rows), dtype=grad.dtype, device=grad.device)
        return _sparse_ones(by_row, bag_of[order], ones, (n_rows, len(bags) - 1)) @ grad, None, None


def _sparse_ones(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    # Built from indices this module sorted itself: skip torch's invariant checks.
    return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class UserHistory:
    """The movies each user rated in train, as CSR tensors, pooled SVD++-style: |N(u)|^-1/2 * sum y_j."""

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor) -> None:
        self.indptr, self.indices = indptr, indices

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int, device: str) -> UserHistory:
        order = np.lexsort((items, users))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
        return cls(torch.as_tensor(indptr, device=device), torch.as_tensor(items[order], device=device))

    def pooled(self, emb: nn.Embedding, users: torch.Tensor, leave_out: torch.Tensor | None) -> torch.Tensor:
        # Each distinct user's bag is summed once: a batch draws rows, so an active user is in it many times.
        # Movies looked up per 2,048-row batch: 4.7x fewer on ML-100K, 2.4x at ML-1M shape.
        distinct, row_of = torch.unique(users, return_inverse=True)
        starts = self.indptr[distinct]
        counts = self.indptr[distinct + 1] - starts
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        flat = torch.arange(total, device=users.device) - torch.repeat_interleave(offsets - starts, counts)
        movies = self.indices[flat]
        if users.device.type == "cpu":
            bags = torch.cat([offsets, offsets.new_tensor([total])])
            # index_select: its backward sums a user's rows in order on any thread count (``fit.step_loss``)
            summed = _BagSum.apply(emb.weight, bags, movies).index_select(0, row_of)
        else:
            summed = nn.functional.embedding_bag(movies, emb.weight, offsets, mode="sum")[row_of]
        n = counts[row_of].to(summed.dtype)
        if leave_out is not None:
            summed = summed - emb(leave_out)
            n = n - 1
        return summed * n.clamp(min=1.0).rsqrt().unsqueeze(-1)


class HybridNet(nn.Module):
    global_mean: torch.Tensor  # a buffer (register_buffer below): saved with the weights, never trained

    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_dim: int,
        n_genres: int,
        text_dim: int,
        n_persons: dict[str, int],
        cfg: HybridConfig,
        global_mean: float = 3.5,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embedding_dim
        self.user_emb = nn.Embedding(n_users, d)
        self.item_emb = nn.Embedding(n_items, d)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 2)  # rating bias, ranking bias
        for emb in (self.user_emb, self.item_emb):
            nn.init.normal_(emb.weight, std=0.05)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)
        self.user_features = nn.Linear(user_dim, d, bias=False) if user_dim else None
        self.history_emb = nn.Embedding(n_items, d) if cfg.history else None
        if self.history_emb is not None:
            nn.init.normal_(self.history_emb.weight, std=0.01)
        self.content = ContentEncoder(n_genres, text_dim, n_persons, cfg)
        self.rating_mlp = _mlp([3 * d, *cfg.mlp], cfg.dropout)
        self.rating_out = nn.Linear(cfg.mlp[-1], 1)
        self.rating_scale = nn.Parameter(torch.tensor(1.0))  # the dot product (GMF) term beside the MLP
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))

    # -- representations ---------------------------------------------------------------------------
    def user_vectors(
        self,
        users: torch.Tensor,
        user_x: torch.Tensor | None,
        history: UserHistory | None = None,
        leave_out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """User vectors; ``leave_out`` (one movie per row) is taken out of that row's history bag, so a
        training pair never sees its own movie in the user's history."""
        u = self.user_emb(users)
        if self.user_features is not None and user_x is not None:
            u = u + self.user_features(user_x)
        if self.history_emb is not None and history is not None:
            u = u + history.pooled(self.history_emb, users, leave_out)
        return u

    def item_vectors(
        self,
        items: torch.Tensor | None,
        content: tuple[torch.Tensor, torch.Tensor],
        keep_id: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Movie vectors and biases (rating, ranking). ``items`` None: content only (an unseen movie)."""
        vec, bias = content
        if items is not None:
            id_vec, id_bias = self.item_emb(items), self.item_bias(items)
            if keep_id is not None:
                id_vec, id_bias = id_vec * keep_id, id_bias * keep_id
            vec, bias = vec + id_vec, bias + id_bias
        return vec, bias

    # -- heads -------------------------------------------------------------------------------------
    def rating(
        self, users: torch.Tensor, u: torch.Tensor, v: torch.Tensor, item_bias: torch.Tensor
    ) -> torch.Tensor:
        return self.rating_given_bias(self.user_bias(users).squeeze(-1), u, v, item_bias)

    def rating_given_bias(
        self, user_bias: torch.Tensor, u: torch.Tensor, v: torch.Tensor, item_bias: torch.Tensor
    ) -> torch.Tensor:
        """``rating`` with the user's bias given rather than looked up: a user the network has no row for
        (a fold-in, ``pipeline.models.foldin``)."""
        uv = u * v
        h = self.rating_mlp(torch.cat([u, v, uv], dim=-1))
        return self._rating_sum(user_bias, item_bias, uv, h)

    def _rating_sum(
        self, user_bias: torch.Tensor, item_bias: torch.Tensor, uv: torch.Tensor, h: torch.Tensor
    ) -> torch.Tensor:
        return (
            self.global_mean
            + user_bias
            + item_bias[..., 0]
            + self.rating_scale * uv.sum(-1)
            + self.rating_out(h).squeeze(-1)
        )

    def _first_rating_layer(self) -> nn.Linear:
        return cast(nn.Linear, self.rating_mlp[0])  # _mlp starts with a Linear

    def rating_part(self, x: torch.Tensor, third: int) -> torch.Tensor:
        """The rating MLP's first layer on one third of its input (0: user vectors, with the layer's bias;
        1: movie vectors). Computed once per user and once per movie, they leave one d x hidden product
        per pair (``rating_rows``)."""
        first, d = self._first_rating_layer(), x.shape[-1]
        part = x @ first.weight[:, third * d : (third + 1) * d].T
        return part + first.bias if third == 0 else part

    def rating_rows(
        self,
        users: torch.Tensor,
        u: torch.Tensor,
        user_part: torch.Tensor,
        v: torch.Tensor,
        item_bias: torch.Tensor,
        item_part: torch.Tensor,
    ) -> torch.Tensor:
        """``rating`` of each user (row of ``u``) with each of its K movies: ``v`` (B, K, d), ``item_bias``
        (B, K, 2) and ``item_part`` (B, K, hidden) gathered per row; ``user_part``/``item_part`` from
        ``rating_part``. Equal to ``rating`` pair by pair, at about 60% of its arithmetic."""
        first, d = self._first_rating_layer(), u.shape[-1]
        uv = u.unsqueeze(1) * v
        h = self.rating_mlp[1:](user_part.unsqueeze(1) + item_part + uv @ first.weight[:, 2 * d :].T)
        return self._rating_sum(self.user_bias(users), item_bias, uv, h)

    @staticmethod
    def ranking(u: torch.Tensor, v: torch.Tensor, item_bias: torch.Tensor) -> torch.Tensor:
        """Scores of every (user, movie) pair: (B, d) x (N, d) -> (B, N)."""
        return u @ v.T + item_bias[:, 1]


def build_network(
    n_users: int,
    movies: MovieContent,
    user_dim: int,
    vocab: FeatureVocab,
    cfg: HybridConfig,
    global_mean: float,
) -> HybridNet:
    return HybridNet(
        n_users,
        len(movies),
        user_dim,
        movies.genres.shape[1],
        movies.text.shape[1],
        {r: len(vocab.persons.get(r, [])) for r in ROLES},
        cfg,
        global_mean,
    )
