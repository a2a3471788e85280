"""The hybrid network as a ``Recommender``: ``fit`` trains it on a split, ``from_artifact`` wraps one already
trained. Scoring is the trained ``HybridArtifact``'s."""

from __future__ import annotations

import numpy as np

from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.base import NotFitted
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.train import TrainingResult, train_hybrid, train_planned
from pipeline.models.hybrid.warm_start import TrainingPlan


class HybridRecommender:
    """The network trained by ``fit`` on the evaluation's train split, with ``data``'s features; with
    ``init``, warm-started from that network for ``epochs`` epochs (``train_hybrid``); with ``plan``, trained
    as it says, ``epochs`` the warm start's (``train_planned``; ``source`` names the plan's start)."""

    name = "hybrid"

    def __init__(
        self,
        data: TrainingData | None,
        config: HybridConfig | None = None,
        device: str = "auto",
        progress: bool = False,
        *,
        init: HybridArtifact | None = None,
        epochs: int | None = None,
        plan: TrainingPlan | None = None,
        source: str = "the start",
    ) -> None:
        self.data, self.config, self.device, self.progress = data, config or HybridConfig(), device, progress
        self.init, self.epochs, self.plan, self.source = init, epochs, plan, source
        self.result: TrainingResult | None = None
        self._artifact: HybridArtifact | None = None

    @classmethod
    def from_artifact(cls, artifact: HybridArtifact) -> HybridRecommender:
        """A network trained elsewhere, as a fitted ``Recommender`` (``fit`` then retrains it from
        scratch)."""
        fitted = cls(None, artifact.config, artifact.device)
        fitted._artifact = artifact
        return fitted

    @property
    def artifact(self) -> HybridArtifact:
        if self._artifact is None:
            raise NotFitted("hybrid is not fitted; call fit(train) first")
        return self._artifact

    def fit(self, train: Interactions) -> HybridRecommender:
        if self.data is None:
            raise ValueError(
                "this hybrid was built from a trained artifact: it has no training data to fit on"
            )
        if self.plan is not None:
            self.result = train_planned(
                self.data,
                train,
                self.config,
                self.plan,
                warm_epochs=self.epochs,
                source=self.source,
                device=self.device,
                progress=self.progress,
            )
        else:
            self.result = train_hybrid(
                self.data,
                train,
                self.config,
                device=self.device,
                progress=self.progress,
                init=self.init,
                epochs=self.epochs,
            )
        self._artifact = self.result.model
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.artifact.predict(users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.artifact.score_users(users)

    def rating_matrix(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return self.artifact.rating_matrix(np.asarray(users, np.int64), items)
