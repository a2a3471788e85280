"""RecBole's side of ``bench/peers.py``: fit RecBole 1.2.1 models on the train part it is given and write
their full-sort scores over every movie, in the caller's dense indices.

    .venv-peers/bin/python bench/peers_recbole.py WORKDIR

Runs inside the peers virtual environment (RecBole and its pins, see ``bench/peers.py``), never in the
project's: it imports nothing of movierec. ``WORKDIR/request.json`` names the models (RecBole's model name,
its dataset under ``WORKDIR/data`` as atomic ``<dataset>.{train,valid,test}.inter`` files — RecBole's
``benchmark_filename`` mechanism — and the config overrides), ``n_users`` and ``n_items`` (the caller's index
ranges; the atomic files' tokens are those indices) and the thread count. For each model this writes
``WORKDIR/<key>.scores.npy``: a ``(n_users, n_items)`` float32 matrix, row = the caller's user index, column
= the caller's movie index, mapped back from RecBole's internal ids (``field2token_id``/``field2id_token``).
A user or movie RecBole does not know (in none of its files) gets the row's lowest score minus 1.

Training runs the configured epochs through: ``trainer.fit(train, valid_data=None, saved=False)``, so no
validation, no early stopping and no checkpoint file (RecBole's own ``torch.load`` of a checkpoint, which
torch >= 2.6 refuses under its ``weights_only=True`` default, is never reached). The fit time is the model's
construction (EASE solves there; LightGCN builds its adjacency there) plus ``trainer.fit``; the dataset and
data loaders are built before it. RecBole's own NDCG@10 and Recall@10 on its test file (``trainer.evaluate``,
full sort) are written beside, for reference. Writes ``WORKDIR/result.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("recbole", "torch", "numpy", "scipy", "pandas", "scikit-learn")

COMMON: dict[str, Any] = {
    "use_gpu": False,
    "show_progress": False,
    "reproducibility": True,
    "worker": 0,
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "RATING_FIELD": "rating",
    "TIME_FIELD": "timestamp",
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    "benchmark_filename": ["train", "valid", "test"],
    "eval_args": {"group_by": "user", "order": "TO", "mode": "full", "split": {"RS": [0.8, 0.1, 0.1]}},
    "metrics": ["NDCG", "Recall"],
    "topk": [10],
    "valid_metric": "NDCG@10",
    "checkpoint_dir": "saved",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] recbole: {msg}", file=sys.stderr, flush=True)


def fit_and_score(spec: dict[str, Any], request: dict[str, Any], data_path: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_seed

    overrides = {**COMMON, **spec["config"], "seed": request["seed"], "data_path": str(data_path)}
    config = Config(model=spec["model"], dataset=spec["dataset"], config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    log(f"{spec['model']} on {spec['dataset']}: {dataset.user_num - 1} users, {dataset.item_num - 1} movies")

    init_seed(config["seed"], config["reproducibility"])
    started = time.perf_counter()
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data=None, verbose=False, saved=False, show_progress=False)
    fit_seconds = time.perf_counter() - started
    log(f"{spec['model']} fitted in {fit_seconds:.1f}s ({config['epochs']} epochs)")

    own = trainer.evaluate(test_data, load_best_model=False, show_progress=False)

    uid_field, iid_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    n_users, n_items = request["n_users"], request["n_items"]
    known = dataset.field2token_id[uid_field]
    users = np.array([u for u in range(n_users) if str(u) in known], np.int64)
    internal_users = np.array([known[str(u)] for u in users], np.int64)
    tokens = dataset.field2id_token[iid_field]  # internal id -> token; id 0 is RecBole's [PAD]
    internal_items = np.array([i for i, t in enumerate(tokens) if t != "[PAD]"], np.int64)
    our_items = np.array([int(tokens[i]) for i in internal_items], np.int64)
    scores = np.full((n_users, n_items), np.nan, np.float32)
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(users), 256):
            batch = torch.from_numpy(internal_users[lo : lo + 256])
            full = model.full_sort_predict(Interaction({uid_field: batch}))
            block = np.asarray(full.reshape(len(batch), -1).cpu().numpy(), np.float32)
            rows = np.full((len(batch), n_items), np.nan, np.float32)
            rows[:, our_items] = block[:, internal_items]
            scores[users[lo : lo + 256]] = rows
    missing = np.isnan(scores)
    if missing.any():
        floor = np.where(missing, np.inf, scores).min(axis=1, keepdims=True)
        floor = np.where(np.isfinite(floor), floor, 0.0) - 1.0
        scores = np.where(missing, floor, scores).astype(np.float32)
    np.save(data_path.parent / f"{spec['key']}.scores.npy", scores)
    return {
        "model": spec["model"],
        "dataset": spec["dataset"],
        "config": {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in spec["config"].items()
        },
        "epochs": int(config["epochs"]),
        "learner": str(config["learner"]),
        "fit_seconds": round(fit_seconds, 2),
        "users_scored": int(len(users)),
        "movies_known": int(len(our_items)),
        "recbole_own_test": {k: float(v) for k, v in own.items()},
    }


def main() -> int:
    workdir = Path(sys.argv[1]).resolve()
    del sys.argv[1:]  # RecBole's Config reads sys.argv for overrides
    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas' and torch.amp's, inside RecBole
    request = json.loads((workdir / "request.json").read_text())
    os.chdir(workdir)  # RecBole writes log_tensorboard/ (and would write saved/) under the working directory
    import torch

    torch.set_num_threads(request["threads"])
    result: dict[str, Any] = {
        "versions": {p: metadata.version(p) for p in PACKAGES},
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "models": {},
    }
    for spec in request["models"]:
        result["models"][spec["key"]] = fit_and_score(spec, request, workdir / "data")
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
