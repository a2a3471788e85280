"""One ``.npz`` file per fitted model: its arrays, its class name and its config (JSON), for the models that
save and load themselves this way (``implicit_mf``, ``item_knn``).

A file is checked on load: a file of another model, or one written by a config this version does not accept,
is refused with a ``ValueError`` naming the file, never scored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

_C = TypeVar("_C")


def save_arrays(path: Path, model: str, config: Any, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` with ``model`` and ``config`` (a dataclass) to ``path`` (exactly that name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"model": model, "config": dataclasses.asdict(config)})
    with path.open("wb") as f:  # a file object: numpy appends no ".npz" to the name
        np.savez(f, __header__=np.array(header), **arrays)  # type: ignore[arg-type]
    return path


def load_arrays(path: Path, model: str, config_type: type[_C]) -> tuple[_C, dict[str, np.ndarray]]:
    """The config and arrays ``save_arrays`` wrote for ``model``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as stored:
        if "__header__" not in stored.files:
            raise ValueError(f"{path} is not a saved model (no header)")
        header = json.loads(str(stored["__header__"]))
        arrays = {name: stored[name] for name in stored.files if name != "__header__"}
    if header.get("model") != model:
        raise ValueError(f"{path} holds a {header.get('model')!r} model, not {model!r}")
    return config_type(**header["config"]), arrays


def csr_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as four named arrays (``csr_from``'s input)."""
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.asarray(matrix.shape, np.int64),
    }


def csr_from(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(n) for n in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )
