"""Our BPR, LightGCN and EASE against RecBole 1.2.1's on one split of real ML-100K, judged by the same code.

    python -m bench.peers [--home DIR] [--models bpr,bpr-pop,lightgcn,ease] [--peers-venv DIR] [--keep DIR]
                          [--output FILE]

RecBole (https://recbole.io) is an independent, maintained library of recommenders; its BPR, LightGCN and EASE
are the peers of ``pipeline.models.implicit_mf.BPR`` (which wraps ``implicit``), ``pipeline.models.lightgcn
.LightGCN`` and ``pipeline.models.baselines.EASE``; ``bpr-pop`` is a diagnostic pair, our BPR against
RecBole's with negatives drawn in proportion to popularity as ``implicit`` draws them. RecBole 1.2.1 needs
numpy < 1.24 (its NDCG uses ``np.float``) and scipy < 1.12 (its LightGCN calls ``dok_matrix._update``), so it
runs in a virtual environment of its own, ``.venv-peers`` (``PEERS_REQUIREMENTS``; created on the first run,
re-created when the pins change), as a child process (``bench/peers_recbole.py``). It is no dependency of the
project.

One split for both: the offline ML-100K (``bench.model_grid._ml100k``), the temporal protocol's
``make_split(data, "temporal", ids)`` (ties by the ratings' ids, as the evaluation's). RecBole gets exactly
the train part, as atomic ``.inter`` files whose tokens are our dense indices: per model, the ratings our
model treats as positives (BPR and EASE every rating, LightGCN those >= its ``min_rating``, 4). Its test file
holds the held-out ratings >= 4 (our relevance), read only for RecBole's own NDCG@10, printed for reference.
RecBole fits on the train file with the configured epochs run through (no validation, no early stopping); its
full-sort scores of every user over every movie are mapped back to our indices and written to ``.npy``. Both
sides are then judged by our ``evaluate_model(..., "temporal")`` — a small ``Recommender`` returns RecBole's
saved scores — so the metric code, the masking of rated movies and the tie rule are the same and only the
model differs.

Hyperparameters are ours (each class's defaults) wherever the two models have the same knob; where they do not
(``NOT_MATCHED``), RecBole's defaults. Both fit on one thread (``OMP_NUM_THREADS=1`` for the child; BLAS held
to one thread here; LightGCN and RecBole's torch on one thread). Prints a table per model (ours, RecBole, ours
/ RecBole) and writes ``bench/results/peers.json`` with the versions, configs and machine. Exits non-zero only
on an error, never on a ratio. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "peers.json"
PEERS_VENV = ROOT / ".venv-peers"
CHILD = ROOT / "bench" / "peers_recbole.py"
PEERS_REQUIREMENTS = (
    "recbole==1.2.1",
    "torch==2.13.0",  # the CPU build (this machine's pip config); a bare "torch" pulls CUDA wheels
    "numpy==1.23.5",  # RecBole 1.2.1's metrics use np.float, gone in numpy 1.24
    "scipy==1.11.4",  # RecBole 1.2.1's LightGCN calls dok_matrix._update, gone in scipy 1.12
    "pandas==2.3.3",
    "scikit-learn==1.7.2",
)
SEED = 42  # our models' default seed; RecBole's is set to it too (its own default is 2020)
MODELS = ("bpr", "bpr-pop", "lightgcn", "ease")
METRICS = ("ndcg@10", "recall@10", "coverage@10")

# What the two sides of a pair cannot share, and what RecBole uses instead.
NOT_MATCHED = {
    "bpr": (
        "ours is implicit's BPR: per-sample SGD (learning rate 0.005, L2 0.01 on the sampled rows) with "
        "an item-bias column, and after the fit the popularity correction (popularity_correction 1: each "
        "movie's score plus log(1 + its train positives)); RecBole's is a PyTorch BPR trained by Adam on "
        "mini-batches of 2048 (its default learning rate 0.001, no L2: weight_decay 0), no bias, xavier-"
        "normal initialisation. implicit draws each negative in proportion to the movie's number of train"
        " ratings (an entry of the matrix's nonzeros) and skips the pair when the user rated it; RecBole "
        "draws it uniformly and redraws. Matched: 64 factors, 300 epochs (ours; RecBole's default too) of"
        " one negative per positive, every rating a positive."
    ),
    "bpr-pop": (
        "a diagnostic pair: ours is BPR as above; RecBole's is its BPR as above but for its negatives, drawn "
        "in proportion to the movie's number of train ratings as implicit draws them (train_neg_sample_args "
        "distribution 'popularity', alpha 1), so the pair isolates what the optimiser and the bias column "
        "do from what the negatives do."
    ),
    "lightgcn": (
        "initialisation (ours N(0, 0.1^2), RecBole xavier-uniform) and RecBole's degree epsilon (1e-7) in "
        "D^-1/2; everything else matched: 128 factors, 2 layers, Adam at 0.01, batches of 2048, 80 epochs, "
        "L2 1e-3 on the batch's layer-0 embeddings as half the squared norm over the batch size (RecBole's "
        "require_pow=True), positives = ratings >= 4, one uniform negative per positive per epoch."
    ),
    "ease": (
        "nothing of the model: the same closed form with lambda 500 (our default; RecBole's default "
        "reg_weight is 250, set to 500 here) on the binary matrix of every train rating. RecBole solves in "
        "float32 with np.linalg.inv, ours in float64 by Cholesky."
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_venv(venv: Path) -> Path:
    """The peers environment's python: ``venv`` created and ``PEERS_REQUIREMENTS`` installed when missing or
    installed from other pins (a stamp file holds their hash)."""
    python = venv / "bin" / "python"
    stamp = venv / ".peers-installed"
    want = hashlib.sha256("\n".join(PEERS_REQUIREMENTS).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    log(f"installing {', '.join(PEERS_REQUIREMENTS)} into {venv} (a few minutes, once)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEERS_REQUIREMENTS], check=True)
    stamp.write_text(want + "\n")
    return python


class SavedScores:
    """A ``Recommender`` over a fixed ``(n_users, n_items)`` score matrix (a peer's full-sort scores): the
    harness masks rated movies and ranks exactly as it does for our models."""

    name = "saved-scores"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, np.float32)

    def fit(self, train: Any) -> SavedScores:
        if self.scores.shape != (train.n_users, train.n_items):
            raise ValueError(f"scores of shape {self.scores.shape} for {train.n_users} x {train.n_items}")
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(np.asarray(users).shape, np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.scores[np.asarray(users, np.int64)]


def write_atomic(
    path: Path, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, ts: np.ndarray
) -> None:
    """A RecBole atomic ``.inter`` file (tab-separated, typed header); tokens are our dense indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, i, r, t in zip(users.tolist(), items.tolist(), ratings.tolist(), ts.tolist()):
            fh.write(f"{u}\t{i}\t{r:g}\t{t}\n")


def write_dataset(
    data_path: Path, name: str, train: Any, test: Any, min_rating: float, relevant: float
) -> None:
    """``<name>.train.inter``: the train ratings >= ``min_rating``; ``.valid`` and ``.test``: the held-out
    ones >= ``relevant`` (valid is never read: no validation)."""
    from pipeline.models.implicit_mf import positives

    u, i, r = positives(train, min_rating)  # one row per pair, as our models see it
    stamp = {
        (a, b): t for a, b, t in zip(train.users.tolist(), train.items.tolist(), train.timestamps.tolist())
    }
    ts = np.array([stamp[(a, b)] for a, b in zip(u.tolist(), i.tolist())], np.int64)
    write_atomic(data_path / name / f"{name}.train.inter", u, i, r, ts)
    keep = test.ratings >= relevant
    for part in ("valid", "test"):
        write_atomic(
            data_path / name / f"{name}.{part}.inter",
            test.users[keep],
            test.items[keep],
            test.ratings[keep],
            test.timestamps[keep],
        )


def peer_specs(models: list[str], seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Our configs (the defaults, ``seed`` for the sampled ones) and the RecBole request derived from them."""
    from pipeline.models.baselines import EASEConfig
    from pipeline.models.implicit_mf import BPRConfig
    from pipeline.models.lightgcn import LightGCNConfig

    bpr, gcn, ease = BPRConfig(seed=seed), LightGCNConfig(seed=seed), EASEConfig()
    ours = {"bpr": bpr, "bpr-pop": bpr, "lightgcn": gcn, "ease": ease}
    bpr_config = {
        "embedding_size": bpr.factors,
        "epochs": bpr.iterations,
        "train_batch_size": 2048,
        "learning_rate": 0.001,  # RecBole's default for its Adam (ours is implicit's SGD step)
    }
    # implicit's negatives: an entry of the train matrix, so a movie in proportion to its ratings
    popularity = {
        "distribution": "popularity",
        "sample_num": 1,
        "alpha": 1.0,
        "dynamic": False,
        "candidate_num": 0,
    }
    specs: dict[str, dict[str, Any]] = {
        "bpr": {"model": "BPR", "min_rating": bpr.min_rating, "config": bpr_config},
        "bpr-pop": {
            "model": "BPR",
            "min_rating": bpr.min_rating,
            "config": {**bpr_config, "train_neg_sample_args": popularity},
        },
        "lightgcn": {
            "model": "LightGCN",
            "min_rating": gcn.min_rating,
            "config": {
                "embedding_size": gcn.factors,
                "n_layers": gcn.layers,
                "reg_weight": gcn.regularization,
                "require_pow": True,  # half the squared norm over the batch: our L2 term
                "learning_rate": gcn.learning_rate,
                "epochs": gcn.epochs,
                "train_batch_size": gcn.batch_size,
            },
        },
        "ease": {"model": "EASE", "min_rating": 0.0, "config": {"reg_weight": ease.lam, "epochs": 1}},
    }
    request = []
    for key in models:
        spec = specs[key]
        dataset = "peers-all" if spec["min_rating"] <= 1.0 else f"peers-min{spec['min_rating']:g}"
        request.append(
            {
                "key": key,
                "model": spec["model"],
                "dataset": dataset,
                "config": spec["config"],
                "min_rating": spec["min_rating"],
            }
        )
    return {k: ours[k] for k in models}, request


def fit_ours(key: str, config: Any, train: Any) -> tuple[Any, float]:
    from threadpoolctl import threadpool_limits

    from pipeline.models.baselines import EASE
    from pipeline.models.implicit_mf import BPR
    from pipeline.models.lightgcn import LightGCN

    model = {"bpr": BPR, "bpr-pop": BPR, "lightgcn": LightGCN, "ease": EASE}[key](config)
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        model.fit(train)
    return model, time.perf_counter() - started


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def print_table(key: str, row: dict[str, Any]) -> None:
    print(f"\n{key}: ours ({row['ours']['class']}) vs RecBole {row['recbole']['model']}")
    print(f"  {'metric':<14}{'ours':>10}{'RecBole':>10}{'ours/RecBole':>14}")
    for metric in (*METRICS, "fit_seconds"):
        a, b, r = row["ours"][metric], row["recbole"][metric], row["ratio"][metric]
        print(f"  {metric:<14}{a:>10.4f}{b:>10.4f}{(f'{r:.3f}' if r is not None else '-'):>14}")
    own = row["recbole"]["recbole_own_test"]
    print(
        f"  RecBole's own evaluator on its test file: ndcg@10 {own.get('ndcg@10', float('nan')):.4f}, "
        f"recall@10 {own.get('recall@10', float('nan')):.4f} (masks only its train file's movies)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="a MOVIEREC_HOME holding (or to fetch) the offline ML-100K")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS))
    parser.add_argument(
        "--peers-venv", type=Path, default=PEERS_VENV, help="RecBole's environment (made if missing)"
    )
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (atomic files, scores)")
    parser.add_argument("--seed", type=int, default=SEED, help="both sides' seed (BPR, LightGCN, RecBole)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(MODELS)}")

    python = ensure_venv(args.peers_venv)
    home = args.home or Path(tempfile.mkdtemp(prefix="movierec-peers-"))
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="movierec-peers-work-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, models, python, home, workdir)
    finally:  # a temporary home or work dir goes; --home and --keep stay
        for scratch in (None if args.home else home, None if args.keep else workdir):
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, models: list[str], python: Path, home: Path, workdir: Path) -> int:
    from bench.machine import machine_info
    from bench.model_grid import _ml100k
    from pipeline.core.defaults import RELEVANCE_THRESHOLD
    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.evaluation.splits import make_split

    data, ids = _ml100k(home)
    train, test = make_split(data, "temporal", ids)
    log(
        f"temporal split: {len(train):,} train, {len(test):,} held-out ratings; "
        f"{data.n_users} users, {data.n_items} movies"
    )

    ours_configs, request = peer_specs(models, args.seed)
    for dataset in {spec["dataset"]: spec["min_rating"] for spec in request}.items():
        write_dataset(workdir / "data", dataset[0], train, test, dataset[1], RELEVANCE_THRESHOLD)
    (workdir / "request.json").write_text(
        json.dumps(
            {
                "models": request,
                "n_users": data.n_users,
                "n_items": data.n_items,
                "seed": args.seed,
                "threads": 1,
            },
            indent=1,
        )
    )
    log(f"RecBole fits in {python} (work dir {workdir})")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    child = subprocess.run([str(python), str(CHILD), str(workdir)], env=env)
    if child.returncode != 0:
        raise SystemExit(f"bench.peers: the RecBole run failed (exit {child.returncode})")
    peer = json.loads((workdir / "result.json").read_text())

    results: dict[str, Any] = {}
    ours_done: dict[int, tuple[Any, float, dict[str, float]]] = {}  # bpr and bpr-pop share our side
    for spec in request:
        key = spec["key"]
        config = ours_configs[key]
        if id(config) not in ours_done:
            model, fit_s = fit_ours(key, config, train)
            log(f"ours {model.name} fitted in {fit_s:.1f}s")
            ours_done[id(config)] = (model, fit_s, evaluate_model(model, train, test, "temporal"))
        model, fit_s, mine = ours_done[id(config)]
        scores = np.load(workdir / f"{key}.scores.npy")
        theirs = evaluate_model(SavedScores(scores).fit(train), train, test, "temporal")
        p = peer["models"][key]
        own = {k.lower(): v for k, v in p["recbole_own_test"].items()}
        row: dict[str, Any] = {
            "ours": {
                "class": model.name,
                "config": asdict(config),
                **{m: mine[m] for m in METRICS},
                "fit_seconds": round(fit_s, 2),
                "all_metrics": mine,
            },
            "recbole": {
                "model": p["model"],
                "config": p["config"],
                "learner": p["learner"],
                "train_file": f"{spec['dataset']}.train.inter (ratings >= {spec['min_rating']:g})",
                **{m: theirs[m] for m in METRICS},
                "fit_seconds": p["fit_seconds"],
                "all_metrics": theirs,
                "recbole_own_test": own,
                "users_scored": p["users_scored"],
                "movies_known": p["movies_known"],
            },
            "not_matched": NOT_MATCHED[key],
        }
        row["ratio"] = {m: ratio(row["ours"][m], row["recbole"][m]) for m in (*METRICS, "fit_seconds")}
        results[key] = row
        print_table(key, row)

    out = {
        "dataset": "ML-100K (offline copy), temporal protocol split",
        "split": {"train": len(train), "test": len(test), "users": data.n_users, "movies": data.n_items},
        "evaluation": "pipeline.evaluation.protocol.evaluate_model(..., 'temporal') for both sides",
        "seed": args.seed,
        "threads": "1 per fit (OMP/BLAS/torch)",
        "note": "machine shared with other jobs: fit seconds are indicative",
        "versions": {
            "ours": {p: metadata.version(p) for p in ("implicit", "torch", "numpy", "scipy")},
            "peers": peer["versions"],
            "peers_python": peer["python"],
            "peers_requirements": list(PEERS_REQUIREMENTS),
        },
        "models": results,
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1, default=str))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
