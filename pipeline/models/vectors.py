"""The shared tail of the ranking-only models that score by one vector per user and per movie."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from pipeline.features.interactions import Interactions
from pipeline.models.base import dot_scores, fitted_pair, no_ratings
from pipeline.models.saved import load_arrays, save_arrays


class VectorModel:
    """What the ranking-only models that score by one vector per user and per movie share (the implicit
    factorisations, LightGCN, SASRec): ``predict`` NaN, ``score_users`` the dot product (``dot_scores``), and
    save/load of the two arrays with the config in one ``.npz`` file.

    A subclass names its two fitted attributes in ``vectors``: ``fit`` sets ``<name>_`` for both, and the
    file holds them under ``<name>``; its ``__init__`` takes the config first.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[Any]]
    vectors: ClassVar[tuple[str, str]]
    config: Any

    def fit(self, train: Interactions) -> Self:
        """Set both vectors from the train ratings (each subclass fits its own way)."""
        raise NotImplementedError

    @property
    def started(self) -> bool:
        """Whether the fit starts from an earlier fit's state, not from scratch (``SASRec.warm_started``)."""
        return False

    def fitted_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted ``(user vectors, movie vectors)``; ``NotFitted`` before ``fit``."""
        user, item = self.vectors
        return fitted_pair(getattr(self, user + "_"), getattr(self, item + "_"), self.name)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        self.fitted_vectors()
        return no_ratings(users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return dot_scores(*self.fitted_vectors(), users)

    def save(self, path: Path) -> Path:
        """The fitted vectors, the config and ``saved_extras`` in one ``.npz`` file at ``path``."""
        arrays = dict(zip(self.vectors, self.fitted_vectors(), strict=True))
        return save_arrays(path, self.name, self.config, {**arrays, **self.saved_extras()})

    def saved_extras(self) -> dict[str, np.ndarray]:
        """Further arrays a subclass keeps in its file beside the vectors (``restore_extras`` reads them)."""
        return {}

    def restore_extras(self, arrays: dict[str, np.ndarray]) -> None:
        """Read back what ``saved_extras`` wrote (``arrays``: every array of the file); nothing by default."""

    @classmethod
    def load(cls, path: Path) -> Self:
        config, arrays = load_arrays(path, cls.name, cls.config_type)
        model = cls(config)  # type: ignore[call-arg]  # every subclass takes its config first
        for key in cls.vectors:
            setattr(model, key + "_", arrays[key])
        model.restore_extras(arrays)
        return model
