"""The hyperparameter grids of the evaluation-only models, judged on validation data only.

    python -m bench.model_grid [--home DIR] [--models als,bpr,lmf,item_knn,lightgcn,neumf] [--output FILE]

On real ML-100K (the offline copy, ``fetch_offline_ml100k``): the temporal protocol's split
(``make_split(data, "temporal", ids)``), then the validation split carved from its train part exactly as the
blend's weight search carves it (``temporal_split(train, ids=ids)``; ties broken by the ratings' ids, as the
evaluation breaks them). Every grid point is fitted on the validation split's train part and judged by NDCG@10
of its held-out movies (``evaluate_model``, temporal); the protocol's test split is never read. Prints each
model's best point and writes every figure to ``bench/results/model_grid.json``. The defaults in
``pipeline/models/implicit_mf.py``, ``item_knn.py``, ``lightgcn.py`` and ``neumf.py`` are the points this
chose (their docstrings list the grids).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "model_grid.json"

GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "als": {
        "factors": (32, 64, 128, 256),
        "regularization": (1.0, 3.0, 10.0, 30.0, 100.0),
        "alpha": (0.0, 0.1, 0.25, 1.0),
        "min_rating": (1.0, 4.0),
    },
    "bpr": {
        "factors": (64,),
        "learning_rate": (0.0025, 0.005),
        "regularization": (0.001, 0.01),
        "iterations": (100, 200, 300, 500),
        "popularity_correction": (0.0, 0.5, 1.0, 1.5, 2.0),
        "min_rating": (1.0,),
    },
    "lmf": {
        "factors": (30, 64),
        "learning_rate": (0.25, 0.5),
        "regularization": (2.0, 5.0, 10.0),
        "iterations": (100, 200),
        "min_rating": (1.0, 4.0),
    },
    "item_knn": {"neighbours": (50, 100, 200, 400, 800), "shrinkage": (0.0, 10.0, 50.0)},
    "lightgcn": {
        "factors": (64, 128),
        "layers": (2, 3),
        "regularization": (1e-3, 3e-3),
        "learning_rate": (1e-2,),
        "epochs": (80, 160),
    },
    "neumf": {"factors": (32, 64), "epochs": (10, 20, 40), "regularization": (0.0, 0.01)},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _factories() -> dict[str, Callable[[dict[str, Any]], Any]]:
    from pipeline.models.implicit_mf import ALS, BPR, LMF, ALSConfig, BPRConfig, LMFConfig
    from pipeline.models.item_knn import ItemKNN, ItemKNNConfig
    from pipeline.models.lightgcn import LightGCN, LightGCNConfig
    from pipeline.models.neumf import NeuMF, NeuMFConfig

    return {
        "als": lambda p: ALS(ALSConfig(**p)),
        "bpr": lambda p: BPR(BPRConfig(**p)),
        "lmf": lambda p: LMF(LMFConfig(**p)),
        "item_knn": lambda p: ItemKNN(ItemKNNConfig(**p)),
        "lightgcn": lambda p: LightGCN(LightGCNConfig(**p)),
        "neumf": lambda p: NeuMF(NeuMFConfig(**p)),
    }


def _ml100k(home: Path) -> tuple[Any, tuple[Any, Any]]:
    """The offline ML-100K's ratings, and the users' and movies' ids by dense index (the file's ids, the
    database's after ingest): what the temporal splits break ties by, as the evaluation's do."""
    import numpy as np
    import pandas as pd

    from pipeline.core.settings import Settings
    from pipeline.features.interactions import build_interactions
    from pipeline.ingest.datasets import fetch_offline_ml100k

    path = fetch_offline_ml100k(Settings(MOVIEREC_HOME=home)).path / "ml-100k.inter"
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    data, users, movies = build_interactions(
        frame["user_id"].to_numpy(np.int64),
        frame["item_id"].to_numpy(np.int64),
        frame["rating"].to_numpy(np.float32),
        frame["timestamp"].to_numpy(np.int64),
    )
    return data, (users.ids, movies.ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="a MOVIEREC_HOME holding (or to fetch) the offline ML-100K")
    parser.add_argument("--models", default=",".join(GRIDS), help="comma-separated, of " + ", ".join(GRIDS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.evaluation.splits import make_split, temporal_split

    home = args.home or Path(tempfile.mkdtemp(prefix="movierec-grid-"))
    data, ids = _ml100k(home)
    train, _ = make_split(data, "temporal", ids)  # the test part is dropped unread
    inner_train, inner_test = temporal_split(train, ids=ids)
    log(f"validation split: {len(inner_train):,} train, {len(inner_test):,} held-out ratings")
    factories = _factories()
    results: dict[str, Any] = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        grid = GRIDS[name]
        points = []
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            started = time.perf_counter()
            model = factories[name](params).fit(inner_train)
            fit_s = time.perf_counter() - started
            ndcg = evaluate_model(model, inner_train, inner_test, "temporal")["ndcg@10"]
            points.append({"params": params, "ndcg@10": ndcg, "fit_seconds": round(fit_s, 2)})
            log(f"{name} {params}: ndcg@10 {ndcg:.4f} (fit {fit_s:.1f}s)")
        best = max(points, key=lambda p: p["ndcg@10"])
        results[name] = {"grid": {k: list(v) for k, v in grid.items()}, "best": best, "points": points}
        print(f"{name}: best {best['params']} validation ndcg@10 {best['ndcg@10']:.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
