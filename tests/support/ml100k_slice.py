"""Real ML-100K as ``Interactions``, whole or a small slice of it, for model and evaluation tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.features.interactions import Interactions, build_interactions
from pipeline.features.loading import TrainingData

SLICE_MAX_USER_ID = 150  # users 1..150 of ML-100K: about 15k ratings, small enough for fast tests


@lru_cache(maxsize=4)
def _read(path: str) -> pd.DataFrame:
    # RecBole's atomic file: header "user_id:token  item_id:token  rating:float  timestamp:float".
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def load_ml100k(dataset_dir: Path, max_user_id: int | None = None) -> Interactions:
    """Ratings of ``ml-100k.inter`` (users with id <= ``max_user_id`` when given), dense indices by id order."""
    frame = _read(str(Path(dataset_dir) / "ml-100k.inter"))
    if max_user_id is not None:
        frame = frame[frame["user_id"] <= max_user_id]
    data, _, _ = build_interactions(
        frame["user_id"].to_numpy(np.int64),
        frame["item_id"].to_numpy(np.int64),
        frame["rating"].to_numpy(np.float32),
        frame["timestamp"].to_numpy(np.int64),
    )
    return data


def load_ml100k_slice(dataset_dir: Path) -> Interactions:
    """The first ``SLICE_MAX_USER_ID`` users of real ML-100K, over the movies they rated."""
    return load_ml100k(dataset_dir, SLICE_MAX_USER_ID)


def slice_of(data: TrainingData, max_user_id: int = SLICE_MAX_USER_ID) -> Interactions:
    """The same users' ratings out of ``data`` (loaded from the database), in its index space: what a model
    that needs ``data``'s features (the hybrid network) is fitted on. ``n_users``/``n_items`` stay ``data``'s."""
    X = data.interactions
    return X.subset(np.flatnonzero(data.user_map.ids[X.users] <= max_user_id))
