"""The hybrid content + collaborative network.

A movie is its learned id embedding plus a vector encoded from its content (genres, title text, people,
year, runtime). Because the content vector alone can stand in for the id embedding — training drops
the id part at random so it has to — the same network scores a movie nobody has rated yet.

Two heads share those representations:
* a rating head: global mean + user and movie biases + their dot product + an MLP over
  (user, movie, user*movie);
* a ranking head: the dot product of user and movie vectors plus a movie bias, trained with a
  softmax over sampled unrated movies. A dot product also makes retrieval over a large catalogue a
  matrix product.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.features import ROLES, FeatureVocab, MovieContent
from pipeline.interactions import IdMap


@dataclass
class HybridConfig:
    """Hyperparameters, logged whole to MLflow. Defaults follow the original design."""

    embedding_dim: int = 64
    person_dim: int = 16
    mlp: tuple[int, ...] = (256, 128, 64)
    content_mlp: tuple[int, ...] = (128, 64)
    dropout: float = 0.2
    id_dropout: float = 0.25            # share of training rows whose movie id embedding is hidden
    history: bool = True                # add |N(u)|^-1/2 * sum of embeddings of the movies u rated (SVD++)
    min_person_count: int = 2
    # training
    epochs: int = 60
    batch_size: int = 2048
    learning_rate: float = 7e-4
    weight_decay: float = 1e-5
    embedding_l2: float = 0.05          # per rating, on the embeddings a batch touches (as ALS weighs it)
    ranking_weight: float = 1.0         # loss = MSE(rating) + ranking_weight * sampled softmax CE
    negatives: int = 2048               # sampled unrated movies per batch (all movies when fewer)
    temperature: float = 0.5
    recency_half_life_days: float | None = 60.0  # weight of a positive in the ranking loss halves per this age
    patience: int = 5
    validation_fraction: float = 0.05
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HybridConfig:
        data = dict(data)
        for key in ("mlp", "content_mlp"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class ContentEncoder(nn.Module):
    """Movie content -> a vector in the same space as the movie id embeddings."""

    def __init__(self, n_genres: int, text_dim: int, n_persons: dict[str, int], cfg: HybridConfig) -> None:
        super().__init__()
        self.people = nn.ModuleDict({r: nn.Embedding(n_persons[r] + 1, cfg.person_dim, padding_idx=0) for r in ROLES})
        in_dim = n_genres + text_dim + len(ROLES) * cfg.person_dim + 4
        self.mlp = _mlp([in_dim, *cfg.content_mlp], cfg.dropout)
        self.out = nn.Linear(cfg.content_mlp[-1], cfg.embedding_dim)
        self.bias = nn.Linear(cfg.content_mlp[-1], 2)  # content part of the rating bias and the ranking bias

    def forward(self, genres: torch.Tensor, text: torch.Tensor, people: dict[str, torch.Tensor],
                numeric: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = []
        for role in ROLES:
            idx = people[role]
            emb = self.people[role](idx)
            mask = (idx > 0).unsqueeze(-1).to(emb.dtype)
            pooled.append((emb * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        h = self.mlp(torch.cat([genres, text, *pooled, numeric], dim=-1))
        return self.out(h), self.bias(h)


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
        starts = self.indptr[users]
        counts = self.indptr[users + 1] - starts
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        flat = torch.arange(total, device=users.device) - torch.repeat_interleave(offsets - starts, counts)
        summed = nn.functional.embedding_bag(self.indices[flat], emb.weight, offsets, mode="sum")
        n = counts.to(summed.dtype)
        if leave_out is not None:
            summed = summed - emb(leave_out)
            n = n - 1
        return summed * n.clamp(min=1.0).rsqrt().unsqueeze(-1)


class HybridRecommender(nn.Module):
    def __init__(self, n_users: int, n_items: int, user_dim: int, n_genres: int, text_dim: int,
                 n_persons: dict[str, int], cfg: HybridConfig, global_mean: float = 3.5) -> None:
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
    def user_vectors(self, users: torch.Tensor, user_x: torch.Tensor | None,
                     history: UserHistory | None = None, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors; ``leave_out`` (one movie per row) is taken out of that row's history bag, so a
        training pair never sees its own movie in the user's history."""
        u = self.user_emb(users)
        if self.user_features is not None and user_x is not None:
            u = u + self.user_features(user_x)
        if self.history_emb is not None and history is not None:
            u = u + history.pooled(self.history_emb, users, leave_out)
        return u

    def item_vectors(self, items: torch.Tensor | None, content: tuple[torch.Tensor, torch.Tensor],
                     keep_id: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Movie vectors and biases (rating, ranking). ``items`` None: content only (an unseen movie)."""
        vec, bias = content
        if items is not None:
            id_vec, id_bias = self.item_emb(items), self.item_bias(items)
            if keep_id is not None:
                id_vec, id_bias = id_vec * keep_id, id_bias * keep_id
            vec, bias = vec + id_vec, bias + id_bias
        return vec, bias

    # -- heads -------------------------------------------------------------------------------------
    def rating(self, users: torch.Tensor, u: torch.Tensor, v: torch.Tensor, item_bias: torch.Tensor) -> torch.Tensor:
        uv = u * v
        h = self.rating_mlp(torch.cat([u, v, uv], dim=-1))
        return self._rating_sum(self.user_bias(users).squeeze(-1), item_bias, uv, h)

    def _rating_sum(self, user_bias: torch.Tensor, item_bias: torch.Tensor, uv: torch.Tensor,
                    h: torch.Tensor) -> torch.Tensor:
        return (self.global_mean + user_bias + item_bias[..., 0] + self.rating_scale * uv.sum(-1)
                + self.rating_out(h).squeeze(-1))

    def rating_part(self, x: torch.Tensor, third: int) -> torch.Tensor:
        """The rating MLP's first layer on one third of its input (0: user vectors, with the layer's bias;
        1: movie vectors). Computed once per user and once per movie, they leave one d x hidden product
        per pair (``rating_rows``)."""
        first, d = self.rating_mlp[0], x.shape[-1]
        part = x @ first.weight[:, third * d:(third + 1) * d].T
        return part + first.bias if third == 0 else part

    def rating_rows(self, users: torch.Tensor, u: torch.Tensor, user_part: torch.Tensor, v: torch.Tensor,
                    item_bias: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
        """``rating`` of each user (row of ``u``) with each of its K movies: ``v`` (B, K, d), ``item_bias``
        (B, K, 2) and ``item_part`` (B, K, hidden) gathered per row; ``user_part``/``item_part`` from
        ``rating_part``. Equal to ``rating`` pair by pair, at about 60% of its arithmetic."""
        first, d = self.rating_mlp[0], u.shape[-1]
        uv = u.unsqueeze(1) * v
        h = self.rating_mlp[1:](user_part.unsqueeze(1) + item_part + uv @ first.weight[:, 2 * d:].T)
        return self._rating_sum(self.user_bias(users), item_bias, uv, h)

    @staticmethod
    def ranking(u: torch.Tensor, v: torch.Tensor, item_bias: torch.Tensor) -> torch.Tensor:
        """Scores of every (user, movie) pair: (B, d) x (N, d) -> (B, N)."""
        return u @ v.T + item_bias[:, 1]


# --- the trained artefact: network + id maps + feature vocab + catalogue content ---------------------

@dataclass
class HybridModel:
    """Everything needed to score: the network, its id maps, vocab and the catalogue's content tensors."""

    net: HybridRecommender
    config: HybridConfig
    user_map: IdMap
    item_map: IdMap
    vocab: FeatureVocab
    movies: MovieContent
    users: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    history_pairs: tuple[np.ndarray, np.ndarray] | None = None  # (users, items) the model saw rated

    def __post_init__(self) -> None:
        self.net.to(self.device).eval()
        self._content_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._item_part: torch.Tensor | None = None  # the rating MLP's first layer on every movie vector
        self._history = (UserHistory.from_pairs(*self.history_pairs, len(self.user_map), self.device)
                         if self.history_pairs is not None else None)

    # tensors
    def _content_tensors(self, movies: MovieContent) -> tuple[torch.Tensor, ...]:
        dev = self.device
        return (torch.as_tensor(movies.genres, device=dev), torch.as_tensor(movies.text, device=dev),
                {r: torch.as_tensor(p, device=dev) for r, p in movies.people.items()},
                torch.as_tensor(movies.numeric, device=dev))

    @torch.no_grad()
    def catalogue_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Movie vectors and biases for the whole catalogue, computed once per loaded model."""
        if self._content_cache is None:
            content = self.net.content(*self._content_tensors(self.movies))
            items = torch.arange(len(self.item_map), device=self.device)
            self._content_cache = self.net.item_vectors(items, content)
        return self._content_cache

    @torch.no_grad()
    def content_vectors(self, movies: MovieContent) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors of movies from content alone (no id embedding): the cold-start path."""
        return self.net.item_vectors(None, self.net.content(*self._content_tensors(movies)))

    def _users(self, user_idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        users = torch.as_tensor(user_idx, device=self.device)
        x = torch.as_tensor(self.users[user_idx], device=self.device) if self.users.shape[1] else None
        return users, self.net.user_vectors(users, x, self._history)

    @torch.no_grad()
    def user_vectors(self, user_idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The index tensor and vectors (id embedding + features + rating history) of ``user_idx``."""
        return self._users(np.asarray(user_idx, np.int64))

    # scoring by dense index (the evaluation protocol uses these)
    @torch.no_grad()
    def predict_index(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        vec, bias = self.catalogue_vectors()
        out = []
        for s in range(0, len(user_idx), 65536):
            users, u = self._users(user_idx[s:s + 65536])
            items = torch.as_tensor(item_idx[s:s + 65536], device=self.device)
            out.append(self.net.rating(users, u, vec[items], bias[items]).float().cpu().numpy())
        return np.clip(np.concatenate(out) if out else np.zeros(0, np.float32), *self.rating_range)

    @torch.no_grad()
    def rank_index(self, user_idx: np.ndarray, vectors: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
        vec, bias = vectors or self.catalogue_vectors()
        _, u = self._users(user_idx)
        return self.net.ranking(u, vec, bias).float().cpu().numpy()

    @torch.no_grad()
    def rating_matrix(self, user_idx: np.ndarray, items: np.ndarray | None = None,
                      pairs_per_step: int = 1 << 17) -> np.ndarray:
        """Predicted ratings (the full rating head, MLP included) of each user for ``items``: a
        ``len(user_idx) x K`` array of movie indices, one row per user (-1 entries give NaN), or the whole
        catalogue when None. Runs ``pairs_per_step`` pairs at a time, so memory is bounded whatever K is."""
        vec, bias = self.catalogue_vectors()
        if self._item_part is None:
            self._item_part = self.net.rating_part(vec, 1)
        users, u = self._users(np.asarray(user_idx, np.int64))
        user_part = self.net.rating_part(u, 0)
        grid = (torch.arange(len(self.item_map), device=self.device).expand(len(users), -1) if items is None
                else torch.as_tensor(np.asarray(items, np.int64), device=self.device))
        out = torch.full(grid.shape, float("nan"), dtype=torch.float32, device=self.device)
        step = max(1, pairs_per_step // max(grid.shape[1], 1))
        for lo in range(0, len(users), step):
            cols = grid[lo:lo + step]
            at = cols.clamp(min=0)
            pred = self.net.rating_rows(users[lo:lo + step], u[lo:lo + step], user_part[lo:lo + step],
                                        vec[at], bias[at], self._item_part[at])
            out[lo:lo + step] = torch.where(cols >= 0, pred.float().clamp(*self.rating_range), out[lo:lo + step])
        return out.cpu().numpy()

    @torch.no_grad()
    def predict_content_index(self, user_idx: np.ndarray, movies: MovieContent) -> np.ndarray:
        """Predicted ratings of content-only movies (one per row of ``movies``) for ``user_idx``."""
        vec, bias = self.content_vectors(movies)
        users, u = self._users(user_idx)
        return np.clip(self.net.rating(users, u, vec, bias).float().cpu().numpy(), *self.rating_range)

    @property
    def rating_range(self) -> tuple[float, float]:
        return tuple(self.meta.get("rating_range", (0.5, 5.0)))  # type: ignore[return-value]

    # persistence
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), directory / "network.pt")
        np.savez_compressed(directory / "catalogue.npz", user_ids=self.user_map.ids, item_ids=self.item_map.ids,
                            users=self.users, genres=self.movies.genres, text=self.movies.text,
                            numeric=self.movies.numeric, **{f"people_{r}": p for r, p in self.movies.people.items()},
                            **({"history_users": self.history_pairs[0], "history_items": self.history_pairs[1]}
                               if self.history_pairs is not None else {}))
        (directory / "model.json").write_text(json.dumps({
            "config": self.config.to_dict(), "vocab": self.vocab.to_dict(), "meta": self.meta,
            "global_mean": float(self.net.global_mean)}, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> HybridModel:
        directory = Path(directory)
        spec = json.loads((directory / "model.json").read_text())
        arrays = np.load(directory / "catalogue.npz")
        cfg = HybridConfig.from_dict(spec["config"])
        vocab = FeatureVocab.from_dict(spec["vocab"])
        movies = MovieContent(arrays["genres"], arrays["text"], {r: arrays[f"people_{r}"] for r in ROLES},
                              arrays["numeric"])
        net = build_network(len(arrays["user_ids"]), movies, arrays["users"].shape[1], vocab, cfg, spec["global_mean"])
        net.load_state_dict(torch.load(directory / "network.pt", map_location=device, weights_only=True))
        history = ((arrays["history_users"], arrays["history_items"]) if "history_users" in arrays.files else None)
        return cls(net, cfg, IdMap(arrays["user_ids"]), IdMap(arrays["item_ids"]), vocab, movies, arrays["users"],
                   spec.get("meta", {}), device, history)


def build_network(n_users: int, movies: MovieContent, user_dim: int, vocab: FeatureVocab, cfg: HybridConfig,
                  global_mean: float) -> HybridRecommender:
    return HybridRecommender(n_users, len(movies), user_dim, movies.genres.shape[1], movies.text.shape[1],
                             {r: len(vocab.persons.get(r, [])) for r in ROLES}, cfg, global_mean)
