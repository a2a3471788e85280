"""A trained hybrid network with everything it needs to score: id maps, feature vocabulary and the catalogue's
content tensors. Scores by dense index; ``save``/``load`` a directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipeline.features.interactions import IdMap
from pipeline.features.vocab import ROLES, FeatureVocab, MovieContent
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.network import HybridNet, UserHistory, build_network


@dataclass
class HybridArtifact:
    """Everything needed to score: the network, its id maps, vocab and the catalogue's content tensors."""

    net: HybridNet
    config: HybridConfig
    user_map: IdMap
    item_map: IdMap
    vocab: FeatureVocab
    movies: MovieContent
    users: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    history_pairs: tuple[np.ndarray, np.ndarray] | None = None  # (users, items) the model saw rated

    name: ClassVar[str] = "hybrid"

    def __post_init__(self) -> None:
        self.net.to(self.device).eval()
        self._content_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._item_part: torch.Tensor | None = None  # the rating MLP's first layer on every movie vector
        self._history = (
            UserHistory.from_pairs(*self.history_pairs, len(self.user_map), self.device)
            if self.history_pairs is not None
            else None
        )

    # tensors
    def _content_tensors(
        self, movies: MovieContent
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        dev = self.device
        return (
            torch.as_tensor(movies.genres, device=dev),
            torch.as_tensor(movies.text, device=dev),
            {r: torch.as_tensor(p, device=dev) for r, p in movies.people.items()},
            torch.as_tensor(movies.numeric, device=dev),
        )

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

    # the Scorer contract (pipeline.models.base), by dense index
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.predict_index(np.asarray(users, np.int64), np.asarray(items, np.int64))

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.rank_index(np.asarray(users, np.int64))

    # scoring by dense index
    @torch.no_grad()
    def predict_index(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        vec, bias = self.catalogue_vectors()
        out = []
        for s in range(0, len(user_idx), 65536):
            users, u = self._users(user_idx[s : s + 65536])
            items = torch.as_tensor(item_idx[s : s + 65536], device=self.device)
            out.append(self.net.rating(users, u, vec[items], bias[items]).float().cpu().numpy())
        return np.clip(np.concatenate(out) if out else np.zeros(0, np.float32), *self.rating_range)

    @torch.no_grad()
    def rank_index(
        self, user_idx: np.ndarray, vectors: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> np.ndarray:
        vec, bias = vectors or self.catalogue_vectors()
        _, u = self._users(user_idx)
        return self.net.ranking(u, vec, bias).float().cpu().numpy()

    @torch.no_grad()
    def rating_matrix(
        self, user_idx: np.ndarray, items: np.ndarray | None = None, pairs_per_step: int = 1 << 17
    ) -> np.ndarray:
        """Predicted ratings (the full rating head, MLP included) of each user for ``items``: a
        ``len(user_idx) x K`` array of movie indices, one row per user (-1 entries give NaN), or the whole
        catalogue when None. Runs ``pairs_per_step`` pairs at a time, so memory is bounded whatever K is."""
        vec, bias = self.catalogue_vectors()
        if self._item_part is None:
            self._item_part = self.net.rating_part(vec, 1)
        users, u = self._users(np.asarray(user_idx, np.int64))
        user_part = self.net.rating_part(u, 0)
        grid = (
            torch.arange(len(self.item_map), device=self.device).expand(len(users), -1)
            if items is None
            else torch.as_tensor(np.asarray(items, np.int64), device=self.device)
        )
        out = torch.full(grid.shape, float("nan"), dtype=torch.float32, device=self.device)
        step = max(1, pairs_per_step // max(grid.shape[1], 1))
        for lo in range(0, len(users), step):
            cols = grid[lo : lo + step]
            at = cols.clamp(min=0)
            pred = self.net.rating_rows(
                users[lo : lo + step],
                u[lo : lo + step],
                user_part[lo : lo + step],
                vec[at],
                bias[at],
                self._item_part[at],
            )
            out[lo : lo + step] = torch.where(
                cols >= 0, pred.float().clamp(*self.rating_range), out[lo : lo + step]
            )
        return out.cpu().numpy()

    @torch.no_grad()
    def predict_content_index(self, user_idx: np.ndarray, movies: MovieContent) -> np.ndarray:
        """Predicted ratings of content-only movies (one per row of ``movies``) for ``user_idx``."""
        vec, bias = self.content_vectors(movies)
        users, u = self._users(user_idx)
        return np.clip(self.net.rating(users, u, vec, bias).float().cpu().numpy(), *self.rating_range)

    @property
    def rating_range(self) -> tuple[float, float]:
        return tuple(self.meta.get("rating_range", (0.5, 5.0)))

    # persistence
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), directory / "network.pt")
        arrays: dict[str, np.ndarray] = {
            "user_ids": self.user_map.ids,
            "item_ids": self.item_map.ids,
            "users": self.users,
            "genres": self.movies.genres,
            "text": self.movies.text,
            "numeric": self.movies.numeric,
            **{f"people_{r}": p for r, p in self.movies.people.items()},
            **(
                {"history_users": self.history_pairs[0], "history_items": self.history_pairs[1]}
                if self.history_pairs is not None
                else {}
            ),
        }
        # numpy's stub checks a **dict against every keyword, allow_pickle: bool included
        np.savez_compressed(directory / "catalogue.npz", **arrays)  # type: ignore[arg-type]
        (directory / "model.json").write_text(
            json.dumps(
                {
                    "config": self.config.to_dict(),
                    "vocab": self.vocab.to_dict(),
                    "meta": self.meta,
                    "global_mean": float(self.net.global_mean),
                },
                indent=1,
                default=str,
            )
        )
        return directory

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> HybridArtifact:
        directory = Path(directory)
        spec = json.loads((directory / "model.json").read_text())
        arrays = np.load(directory / "catalogue.npz")
        cfg = HybridConfig.from_dict(spec["config"])
        vocab = FeatureVocab.from_dict(spec["vocab"])
        movies = MovieContent(
            arrays["genres"], arrays["text"], {r: arrays[f"people_{r}"] for r in ROLES}, arrays["numeric"]
        )
        net = build_network(
            len(arrays["user_ids"]), movies, arrays["users"].shape[1], vocab, cfg, spec["global_mean"]
        )
        net.load_state_dict(torch.load(directory / "network.pt", map_location=device, weights_only=True))
        history = (
            (arrays["history_users"], arrays["history_items"]) if "history_users" in arrays.files else None
        )
        return cls(
            net,
            cfg,
            IdMap(arrays["user_ids"]),
            IdMap(arrays["item_ids"]),
            vocab,
            movies,
            arrays["users"],
            spec.get("meta", {}),
            device,
            history,
        )
