"""A tiny trained blend for the registry tests: trained and saved once for the package, loaded per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.core.settings import Settings
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.train import TrainingResult, train_hybrid
from tests.support.configs import TINY_VALIDATED


@pytest.fixture(scope="package")
def trained(ml100k_data, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A tiny hybrid model trained on the first 100 users' real ratings, saved once with both blend partners,
    and 25 real rated (user_id, movie_id) pairs."""
    data = ml100k_data
    X = data.interactions
    train = X.subset(np.flatnonzero(X.users < 100))
    result = train_hybrid(data, train, TINY_VALIDATED, device="cpu", progress=False)
    # Both partners in: what is registered and served must be the whole blend, not the network alone.
    directory = PublishedBlend.from_training(result.model, train, BlendWeights(0.6, 0.5)).save(
        tmp_path_factory.mktemp("registry-model") / "published"
    )
    rows = np.flatnonzero(X.users < 100)[::97][:25]  # real rated pairs
    pairs = pd.DataFrame(
        {"user_id": data.user_map.ids[X.users[rows]], "movie_id": data.item_map.ids[X.items[rows]]}
    )
    return directory, result, pairs


@pytest.fixture
def result(trained) -> TrainingResult:  # type: ignore[no-untyped-def]
    """The training result, its network freshly loaded."""
    directory, original, _ = trained
    return TrainingResult(
        HybridArtifact.load(directory / "network"),
        original.history,
        original.best_epoch,
        original.seconds,
        original.samples_per_s,
    )


@pytest.fixture
def registered_blend(trained) -> PublishedBlend:  # type: ignore[no-untyped-def]
    """The blend (network, EASE, biased MF), freshly loaded."""
    return PublishedBlend.load(trained[0])


@pytest.fixture
def pairs(trained) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return trained[2]


@pytest.fixture
def mlsettings(tmp_path: Path, db_url: str) -> Settings:
    """The default store when DATABASE_URL is set: sqlite under a fresh home (never a user's MLflow)."""
    return Settings(MOVIEREC_HOME=tmp_path / "home", DATABASE_URL=db_url, MLFLOW_TRACKING_URI="")
