"""The registered model as an MLflow pyfunc: the published blend (``PublishedBlend``) behind
DataFrame (user_id, movie_id) -> DataFrame (rating). Its only artifact is the directory written by
``PublishedBlend.save``: ``mlflow.pytorch`` would save a ``torch.export`` graph of the network alone, not what
the evaluation scored."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import ColSpec, Schema

from pipeline.core.errors import MovierecError
from pipeline.models.blend.published import PublishedBlend
from pipeline.registry.store import MODEL_ARTIFACT


def predict_ratings(model: PublishedBlend, frame: pd.DataFrame) -> pd.DataFrame:
    """Predicted ratings (the blend's) of ``frame``'s (user_id, movie_id) rows, as a ``rating`` column.

    A user or movie the model has never seen gets NaN, not a guess: the caller knows better whether
    the global mean, a popularity prior or the content-only path (``predict_content_index``) fits.
    """
    net = model.network
    missing = {"user_id", "movie_id"} - set(frame.columns)
    if missing:
        raise MovierecError(f"input lacks column(s) {sorted(missing)}; expected user_id, movie_id")
    users = net.user_map.index(frame["user_id"].to_numpy(np.int64))
    items = net.item_map.index(frame["movie_id"].to_numpy(np.int64))
    known = (users >= 0) & (items >= 0)
    out = np.full(len(frame), np.nan, np.float64)
    if known.any():
        out[known] = model.predict_index(users[known], items[known])
    return pd.DataFrame({"rating": out}, index=frame.index)


class HybridPyfunc(PythonModel):
    """MLflow pyfunc around ``PublishedBlend``: DataFrame (user_id, movie_id) -> DataFrame (rating).

    Unknown users or movies get NaN (see ``predict_ratings``). The device comes from the load-time
    ``model_config={"device": ...}`` (default cpu). Loading needs the movierec package importable (it
    is not on PyPI, so it is not among the logged pip requirements); the weights travel as the
    ``published`` artifact, never inside the pickle.
    """

    def __init__(self) -> None:
        self.model: PublishedBlend | None = None

    def load_context(self, context: PythonModelContext) -> None:
        device = (context.model_config or {}).get("device", "cpu")
        self.model = PublishedBlend.load(Path(context.artifacts[MODEL_ARTIFACT]), device=device)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self.model is None:
            raise MovierecError("HybridPyfunc.predict before load_context")
        return predict_ratings(self.model, pd.DataFrame(model_input))


def pip_requirements() -> list[str]:
    reqs = []
    for dist in _REQUIREMENTS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        reqs.append(f"{dist}=={version.split('+')[0]}")  # torch 2.x+cpu: any build of that release
    return reqs


# Declared, not inferred: ids are integers (inference would also warn that ints cannot hold NaN).
_REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "scipy", "sqlalchemy", "cloudpickle")


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("long", "user_id"), ColSpec("long", "movie_id")]),
    outputs=Schema([ColSpec("double", "rating")]),
)


def input_example(model: PublishedBlend, n: int = 5) -> pd.DataFrame:
    net = model.network
    k = min(n, len(net.user_map), len(net.item_map))
    return pd.DataFrame(
        {
            "user_id": net.user_map.ids[:k].astype(np.int64),
            "movie_id": net.item_map.ids[:: max(len(net.item_map) // max(k, 1), 1)][:k].astype(np.int64),
        }
    )
