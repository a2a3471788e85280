"""The evaluation's validation network warm-started week to week, against trained from scratch each week, on
real ML-100K weekly backfills.

    python -m bench.validation_chain [--home DIR] [--start 1998-02-22] [--weeks 3] [--keep] [--output FILE]

For the first cut-off (``--start``, end of that day) and each of the next ``--weeks`` weekly ones, on the
data up to it, the weekly evaluation (``evaluate_all`` with the weekly run's models: the gate's temporal
protocol, ``Settings.weekly_models``, the offered blend members) runs twice:

* **scratch**: its validation network from scratch (early stopping), as every week before the chain;
* **chain**: its validation network warm-started from the previous week's chain network
  (``pipeline.evaluation.validation_chain``: ``WARM_START_EPOCHS`` epochs, users whose trained pair is now
  held out start afresh), as the weekly evaluate step does from the champion's evaluation; the first cut-off
  trains from scratch (the chain's full training).

Both are judged on the protocol's test part as the gate judges them: the blend's NDCG@10 (the figure the gate
compares) and the network's alone, with the weights each validation network chose and its training seconds.
Seconds are from the same process, one evaluation after the other.

Prints a table and writes ``bench/results/validation_chain.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "validation_chain.json"
TARGET_QUALITY = 0.98  # the chain's blend NDCG@10 at least this share of scratch's (the warm start's target)
WEEK = timedelta(weeks=1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="a MOVIEREC_HOME with ML-100K ingested (default: a fresh one)")
    parser.add_argument("--start", default="1998-02-22", help="the first cut-off (a date, end of that day)")
    parser.add_argument("--weeks", type=int, default=3, help="weekly cut-offs after the first")
    parser.add_argument("--keep", action="store_true", help="keep a fresh home (and its server) afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from bench.machine import machine_info
    from bench.train import Home
    from pipeline.core.settings import Settings
    from pipeline.evaluation.benchmark import evaluate_all
    from pipeline.features.loading import load_training_data
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.warm_start import TrainingPlan, WarmStart, plan_training

    home = Home(args.home, args.keep)
    cfg = HybridConfig()
    settings = Settings()  # the weekly run's models and warm-start policy, from the environment
    policy = WarmStart(
        settings.warm_start_epochs, settings.full_retrain_weeks, settings.warm_start_epoch_ratings
    )
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC) + timedelta(days=1, seconds=-1)
    rows: list[dict[str, Any]] = []

    def evaluate(data: Any, plan: TrainingPlan) -> tuple[dict[str, Any], Any]:
        started = time.perf_counter()
        outcome = evaluate_all(
            data,
            cfg,
            device="cpu",
            protocols=("temporal",),
            cold_start=False,
            progress=False,
            extra=settings.weekly_models,
            members=settings.members_for(len(data.interactions)),
            warm_epochs=settings.warm_start_epochs,
            validation_plan=plan,
        )
        seconds = time.perf_counter() - started
        results, networks = outcome.report.results["temporal"], outcome.report.networks["temporal"]
        return {
            "blend_ndcg@10": results["blend"]["ndcg@10"],
            "network_ndcg@10": results["hybrid"]["ndcg@10"],
            "weights": outcome.weights.to_dict(),
            "validation": networks["validation"],
            "protocol": networks["protocol"],
            "evaluation_seconds": round(seconds, 1),
        }, outcome.validation_network

    try:
        engine = home.engine()
        previous = None  # the chain's network, carried from week to week
        for week in range(args.weeks + 1):
            cutoff = start + week * WEEK
            data = load_training_data(engine, cutoff, progress=False)
            row: dict[str, Any] = {"cutoff": cutoff.date().isoformat(), "ratings": len(data.interactions)}
            scratch = TrainingPlan("full", "from scratch every week", cutoff.isoformat(), cutoff.isoformat())
            row["scratch"], first = evaluate(data, scratch)
            if previous is None:
                row["chain"], previous = row["scratch"], first  # the chain's full training is this one
            else:
                plan = plan_training(
                    previous,
                    cfg,
                    data.dataset,
                    cutoff,
                    policy=policy,
                    source="last week's validation network",
                )
                row["chain"], previous = evaluate(data, plan)
            for kind in ("scratch", "chain"):
                v = row[kind]["validation"]
                log(
                    f"{row['cutoff']} {kind}: blend NDCG@10 {row[kind]['blend_ndcg@10']:.4f}, network "
                    f"{row[kind]['network_ndcg@10']:.4f}; validation network {v['training']}, {v['epochs']} "
                    f"epochs, {v['seconds']} s; evaluation {row[kind]['evaluation_seconds']} s"
                )
            rows.append(row)
    finally:
        home.cleanup()

    chained = rows[1:]  # the weeks whose chain network started from last week's

    def summary(kind: str) -> dict[str, Any]:
        return {
            "blend_ndcg@10": statistics.fmean(r[kind]["blend_ndcg@10"] for r in chained),
            "network_ndcg@10": statistics.fmean(r[kind]["network_ndcg@10"] for r in chained),
            "validation_seconds": sum(r[kind]["validation"]["seconds"] for r in chained),
            "validation_epochs": sum(r[kind]["validation"]["epochs"] for r in chained),
            "evaluation_seconds": sum(r[kind]["evaluation_seconds"] for r in chained),
        }

    s, c = summary("scratch"), summary("chain")
    ratios = {
        "blend_ndcg": c["blend_ndcg@10"] / s["blend_ndcg@10"],
        "network_ndcg": c["network_ndcg@10"] / s["network_ndcg@10"],
        "validation_time": c["validation_seconds"] / s["validation_seconds"],
        "evaluation_time": c["evaluation_seconds"] / s["evaluation_seconds"],
    }
    print(
        f"\n{'cut-off':<11} {'ratings':>7}  {'blend scratch':>13} {'chain':>7}  {'network':>7} {'chain':>7}  "
        "val s"
    )
    for r in rows:
        print(
            f"{r['cutoff']:<11} {r['ratings']:>7,}  {r['scratch']['blend_ndcg@10']:>13.4f} "
            f"{r['chain']['blend_ndcg@10']:>7.4f}  {r['scratch']['network_ndcg@10']:>7.4f} "
            f"{r['chain']['network_ndcg@10']:>7.4f}  {r['scratch']['validation']['seconds']:.0f} / "
            f"{r['chain']['validation']['seconds']:.0f}"
        )
    print(
        f"over the {len(chained)} chained weeks: blend NDCG@10 {ratios['blend_ndcg']:.3f}x scratch's "
        f"(target >= {TARGET_QUALITY}), network {ratios['network_ndcg']:.3f}x; validation network "
        f"{ratios['validation_time']:.2f}x the time ({c['validation_epochs']} epochs against "
        f"{s['validation_epochs']}), the evaluation {ratios['evaluation_time']:.2f}x"
    )
    report = {
        "machine": machine_info(),
        "config": {"start": args.start, "weeks": args.weeks, "warm_start_epochs": settings.warm_start_epochs},
        "weeks": rows,
        "summary": {
            "scratch": s,
            "chain": c,
            "ratios": ratios,
            "quality_target_met": ratios["blend_ndcg"] >= TARGET_QUALITY,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
