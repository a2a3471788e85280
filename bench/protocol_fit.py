"""The evaluation's protocol network: trained from scratch, against warm-started from the weight search's.

    python -m bench.protocol_fit [--home DIR] [--protocols temporal,random] [--keep] [--output FILE]

Each weekly evaluation trains the network twice: on the validation split's train part (the blend's weight
search) and on the protocol's train part (the figures the gate compares). The first is a subset of the
second, with nothing of the protocol's test part, so the second can start from it the way the weekly train
step starts from the champion (``train_hybrid(init=..., epochs=WARM_START_EPOCHS)``). On real ML-100K
(``bench.train.Home``), per protocol: the validation network (from scratch, as ``choose_weights`` fits it),
then the protocol network from scratch and warm from the validation network, both judged on the protocol's
test part (``evaluate_model``: NDCG@10 and recall@10 with relevant = rating >= 4; RMSE where the
protocol reports it). Reports the warm
network's figures and training time as ratios to the scratch network's, from one process, one fit after
another.

Prints a table and writes ``bench/results/protocol_fit.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "protocol_fit.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _fig(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="a MOVIEREC_HOME with ML-100K ingested (default: a fresh one)")
    parser.add_argument("--protocols", default="temporal,random")
    parser.add_argument("--keep", action="store_true", help="keep a fresh home (and its server) afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from bench.machine import machine_info
    from bench.train import Home
    from pipeline.core.defaults import WARM_START_EPOCHS
    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.evaluation.splits import make_split
    from pipeline.evaluation.weight_search import validation_split
    from pipeline.features.loading import load_training_data
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.recommender import HybridRecommender
    from pipeline.models.hybrid.train import train_hybrid

    home = Home(args.home, args.keep)
    cfg = HybridConfig()
    rows: list[dict[str, Any]] = []

    def fit(data: Any, ratings: Any, init: Any = None) -> tuple[Any, dict[str, Any]]:
        """A network on ``ratings``: from scratch, or warm from ``init`` for the warm start's epochs."""
        started = time.perf_counter()
        epochs = WARM_START_EPOCHS if init is not None else None
        result = train_hybrid(data, ratings, cfg, device="cpu", progress=False, init=init, epochs=epochs)
        seconds = round(time.perf_counter() - started, 1)
        return result, {"seconds": seconds, "epochs": len(result.history)}

    try:
        data = load_training_data(home.engine(), None, progress=False)
        for protocol in [p.strip() for p in args.protocols.split(",") if p.strip()]:
            train, test = make_split(data.interactions, protocol, data.ids)
            inner_train, _ = validation_split(train, data.ids)  # as the weight search carves it
            row: dict[str, Any] = {
                "protocol": protocol,
                "train": len(train),
                "validation_train": len(inner_train),
            }
            validation, row["validation"] = fit(data, inner_train)
            for kind, init in (("scratch", None), ("warm", validation.model)):
                result, row[kind] = fit(data, train, init)
                figures = evaluate_model(HybridRecommender.from_artifact(result.model), train, test, protocol)
                row[kind].update({m: figures.get(m) for m in ("ndcg@10", "recall@10", "rmse")})
                log(f"{protocol} {kind}: {row[kind]}")
            for metric in ("ndcg@10", "rmse"):  # the temporal protocol ranks, the random one rates
                warm_value, scratch_value = row["warm"][metric], row["scratch"][metric]
                if warm_value is not None and scratch_value:
                    row[f"{metric}_ratio"] = warm_value / scratch_value
            row["time_ratio"] = row["warm"]["seconds"] / row["scratch"]["seconds"]
            row["evaluation_time_ratio"] = (row["validation"]["seconds"] + row["warm"]["seconds"]) / (
                row["validation"]["seconds"] + row["scratch"]["seconds"]
            )
            rows.append(row)
    finally:
        home.cleanup()
    print(
        f"\n{'protocol':<9} {'NDCG@10 scratch':>15} {'warm':>7} {'ratio':>6} {'RMSE scratch':>12} {'warm':>6}"
    )
    for r in rows:
        print(
            f"{r['protocol']:<9} {_fig(r['scratch']['ndcg@10']):>15} {_fig(r['warm']['ndcg@10']):>7} "
            f"{_fig(r.get('ndcg@10_ratio')):>6} {_fig(r['scratch']['rmse']):>12} "
            f"{_fig(r['warm']['rmse']):>6}   "
            f"protocol fit {r['scratch']['seconds']:.0f} s ({r['scratch']['epochs']} epochs) vs "
            f"{r['warm']['seconds']:.0f} s ({r['warm']['epochs']}): {r['time_ratio']:.2f}x; "
            f"the evaluation's two fits {r['evaluation_time_ratio']:.2f}x"
        )
    report = {"warm_start_epochs": WARM_START_EPOCHS, "protocols": rows, "machine": machine_info()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
