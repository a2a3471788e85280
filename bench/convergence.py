"""How many epochs the hybrid network needs, per learning rate and batch size, judged on validation data.

    python -m bench.convergence [--home DIR] [--learning-rates 7e-4,1.4e-3,2.8e-3] [--batch-sizes 2048]
                                [--seeds 42] [--keep] [--output FILE]

Every fit from scratch trains to early stop (every week the evaluation's validation network; the train
step's on a full retrain), so epochs to convergence set most of a weekly run's time. On real ML-100K
(``bench.train.Home``: a fresh home with the offline copy, or ``--home``): the temporal protocol's train
part, then the validation split the blend's weight search carves from it (``weight_search.validation_split``).
Every point fits ``HybridRecommender`` (the default ``HybridConfig`` with that learning rate and batch size:
its own 5% validation share for early stopping) on the validation split's train part and is judged by the
network's NDCG@10 on its held-out ratings (``evaluate_model``, temporal) and its best validation loss; the
protocol's test part is never read. With several ``--seeds`` every point is fitted once
per seed and reported as the mean (NDCG's spread across seeds says what a difference is worth). Reports
epochs run, the best epoch, fit seconds and each point's NDCG and time as ratios to the default's, from one
process, one fit after another.

Prints a table and writes ``bench/results/convergence.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "convergence.json"
# A point's figures: the means over its seeds.
_MEANS = ("epochs", "best_epoch", "seconds", "best_val_loss", "val_rmse_at_best", "ndcg@10")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="a MOVIEREC_HOME with ML-100K ingested (default: a fresh one)")
    parser.add_argument("--learning-rates", default="7e-4,1.4e-3,2.8e-3")
    parser.add_argument("--batch-sizes", default="2048")
    parser.add_argument("--seeds", default="42", help="one fit per seed and point, reported as the mean")
    parser.add_argument("--keep", action="store_true", help="keep a fresh home (and its server) afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from bench.machine import machine_info
    from bench.train import Home
    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.evaluation.splits import make_split
    from pipeline.evaluation.weight_search import validation_split
    from pipeline.features.loading import load_training_data
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.recommender import HybridRecommender

    home = Home(args.home, args.keep)
    default = HybridConfig()
    points: list[dict[str, Any]] = []
    try:
        data = load_training_data(home.engine(), None, progress=False)
        train, _ = make_split(data.interactions, "temporal", data.ids)  # the test part is dropped unread
        inner_train, inner_test = validation_split(train, data.ids)
        log(f"validation split: {len(inner_train):,} train, {len(inner_test):,} held-out ratings")
        grid = [(lr, bs) for bs in map(int, _floats(args.batch_sizes)) for lr in _floats(args.learning_rates)]
        if (default.learning_rate, default.batch_size) not in grid:
            grid.insert(0, (default.learning_rate, default.batch_size))  # the baseline every ratio is against
        seeds = [int(v) for v in _floats(args.seeds)]
        for lr, bs in grid:
            runs = []
            for seed in seeds:
                cfg = dataclasses.replace(default, learning_rate=lr, batch_size=bs, seed=seed)
                started = time.perf_counter()
                model = HybridRecommender(data, cfg, "cpu").fit(inner_train)
                seconds = time.perf_counter() - started
                result = model.result
                assert result is not None
                ndcg = evaluate_model(model, inner_train, inner_test, "temporal")["ndcg@10"]
                val = [h["val_mse"] + cfg.ranking_weight * h["val_ranking_ce"] for h in result.history]
                run = {
                    "seed": seed,
                    "epochs": len(result.history),
                    "best_epoch": result.best_epoch,
                    "seconds": round(seconds, 1),
                    "best_val_loss": round(min(val), 4),
                    "val_rmse_at_best": round(result.history[result.best_epoch - 1]["val_rmse"], 4),
                    "ndcg@10": round(ndcg, 4),
                }
                runs.append(run)
                log(
                    f"lr {lr:g} batch {bs} seed {seed}: {run['epochs']} epochs (best {run['best_epoch']}), "
                    f"{seconds:.1f} s, val loss {run['best_val_loss']}, NDCG@10 {run['ndcg@10']:.4f}"
                )
            ndcgs = [r["ndcg@10"] for r in runs]
            points.append(
                {
                    "learning_rate": lr,
                    "batch_size": bs,
                    **{key: round(statistics.mean(r[key] for r in runs), 4) for key in _MEANS},
                    "ndcg@10_range": [min(ndcgs), max(ndcgs)],
                    "runs": runs,
                    "default": (lr, bs) == (default.learning_rate, default.batch_size),
                }
            )
    finally:
        home.cleanup()
    base = next(p for p in points if p["default"])
    for p in points:
        p["ndcg_ratio"] = round(p["ndcg@10"] / base["ndcg@10"], 3)
        p["time_ratio"] = round(p["seconds"] / base["seconds"], 3)
    report = {
        "validation_split": {"train": len(inner_train), "held_out": len(inner_test)},
        "seeds": seeds,
        "points": points,
    }
    report["machine"] = machine_info()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    header = ("lr", "batch", "epochs", "best", "seconds", "val loss", "val RMSE", "NDCG@10", "NDCG range")
    print(f"\nmeans over seeds {seeds}")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (8, 6, 7, 5, 8, 9, 9, 8, 16))) + "  ratios")
    for p in points:
        low, high = p["ndcg@10_range"]
        print(
            f"{p['learning_rate']:>8g} {p['batch_size']:>6} {p['epochs']:>7.1f} {p['best_epoch']:>5.1f} "
            f"{p['seconds']:>8.1f} {p['best_val_loss']:>9.4f} {p['val_rmse_at_best']:>9.4f} "
            f"{p['ndcg@10']:>8.4f} {low:>7.4f}-{high:.4f}  "
            f"NDCG {p['ndcg_ratio']:.3f}x, time {p['time_ratio']:.3f}x"
        )
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
