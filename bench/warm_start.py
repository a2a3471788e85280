"""Warm-started weekly networks against networks trained from scratch, on real ML-100K weekly backfills.

    python -m bench.warm_start [--home DIR] [--start 1998-02-22] [--weeks 5] [--keep] [--output FILE]

The network of the first cut-off (``--start``, end of a Sunday) is trained from scratch; then, for each of
the next ``--weeks`` weekly cut-offs, on the data up to it (``load_training_data(as_of=...)``: its own users,
catalogue and people, as a weekly run loads them):

* **scratch**: ``train_hybrid`` with the default ``HybridConfig`` (up to 60 epochs, early stopping);
* **warm**: the same config started from the previous week's warm network (the first week from the start
  network), at most ``WARM_START_EPOCHS`` epochs, as the weekly train step does (``pipeline.models.hybrid
  .warm_start``).

Both are judged on what happens next: the ratings of the week after the cut-off, of users and movies the
data up to the cut-off knows, ranked against every movie the user has not rated yet (``evaluate_model``'s
temporal ranking: NDCG@10 with relevant = rating >= 4). Warm-starting the temporal protocol's split itself
would leak (the champion saw the held-out ratings), which is why the comparison is forward in time. Reports
per week and on average (also weighted by each week's evaluated ratings): NDCG@10 of both, the ratio, training
seconds and epochs run. Epochs are machine-independent; seconds are from the same process, the two fits of a
week back to back.

Prints a table and writes ``bench/results/warm_start.json``. See ``bench/README.md``.
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

RESULTS = Path(__file__).resolve().parent / "results" / "warm_start.json"
TARGET_QUALITY = 0.98  # warm NDCG@10 at least this share of scratch's
TARGET_TIME = 0.30  # in at most this share of its training time
WEEK = timedelta(weeks=1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def next_week(engine: Any, data: Any, cutoff: datetime) -> Any:
    """The ratings in (cutoff, cutoff + 7 days] of users and movies ``data`` knows, in ``data``'s indices."""
    import numpy as np

    from pipeline.features.interactions import Interactions
    from pipeline.features.loading import load_training_data

    later = load_training_data(engine, cutoff + timedelta(days=7), progress=False)
    X = later.interactions
    users = data.user_map.index(later.user_map.ids[X.users])
    items = data.item_map.index(later.item_map.ids[X.items])
    keep = (X.timestamps > cutoff.timestamp()) & (users >= 0) & (items >= 0)
    return Interactions(
        users[keep],
        items[keep],
        X.ratings[keep],
        X.timestamps[keep],
        data.interactions.n_users,
        data.interactions.n_items,
    ), int(np.count_nonzero(X.timestamps > cutoff.timestamp()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="a MOVIEREC_HOME with ML-100K ingested (default: a fresh one)")
    parser.add_argument("--start", default="1998-02-22", help="the first cut-off (a date, end of that day)")
    parser.add_argument("--weeks", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep a fresh home (and its server) afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--warm-epochs", type=int, default=None, help="epochs of a warm start (default: the train step's)"
    )
    parser.add_argument(
        "--replay",
        default="1,0.5,0.25",
        help="comma-separated shares of the ratings before the previous cut-off that each warm epoch samples "
        "beside the week's new ones (the train step's MOVIEREC_WARM_START_EPOCH_RATINGS set to the new "
        "ratings plus that share of the old): one warm chain each; 1: every rating",
    )
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from bench.machine import machine_info
    from bench.train import Home
    from pipeline.core.defaults import WARM_START_EPOCHS
    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.features.loading import load_training_data
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.recommender import HybridRecommender
    from pipeline.models.hybrid.train import train_hybrid
    from pipeline.models.hybrid.warm_start import Replay

    warm_epochs = args.warm_epochs or WARM_START_EPOCHS
    replays = [float(f) for f in args.replay.split(",")]
    chains = [f"warm@{f:g}" for f in replays]
    home = Home(args.home, args.keep)
    cfg = HybridConfig()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC) + timedelta(days=1, seconds=-1)
    rows: list[dict[str, Any]] = []

    def replay(cutoff: datetime, share: float, week: dict[str, Any]) -> Replay:
        """Each epoch: the week's new ratings and ``share`` of the older ones."""
        n_new = week["new_ratings"]
        return Replay(int((cutoff - WEEK).timestamp()), n_new + round(share * (week["ratings"] - n_new)))

    try:
        engine = home.engine()
        data = load_training_data(engine, start, progress=False)
        log(f"start {start:%Y-%m-%d}: {len(data.interactions):,} ratings, training from scratch")
        first = train_hybrid(data, None, cfg, device="cpu", progress=False).model
        previous = dict.fromkeys(chains, first)  # each chain carries its own network from week to week
        for week in range(1, args.weeks + 1):
            cutoff = start + timedelta(weeks=week)
            data = load_training_data(engine, cutoff, progress=False)
            test, later = next_week(engine, data, cutoff)
            row: dict[str, Any] = {
                "cutoff": cutoff.date().isoformat(),
                "ratings": len(data.interactions),
                "new_ratings": int(
                    np.count_nonzero(data.interactions.timestamps > (cutoff - WEEK).timestamp())
                ),
                "next_week_ratings": later,
                "next_week_evaluated": len(test),
            }
            for kind in ("scratch", *chains):
                started = time.perf_counter()
                warm = kind != "scratch"
                result = train_hybrid(
                    data,
                    None,
                    cfg,
                    device="cpu",
                    progress=False,
                    init=previous[kind] if warm else None,
                    epochs=warm_epochs if warm else None,
                    replay=replay(cutoff, replays[chains.index(kind)], row) if warm else None,
                )
                seconds = time.perf_counter() - started
                model = HybridRecommender.from_artifact(result.model)
                figures = evaluate_model(model, data.interactions, test, "temporal")
                row[kind] = {
                    "ndcg@10": figures["ndcg@10"],
                    "recall@10": figures["recall@10"],
                    "seconds": round(seconds, 1),
                    "epochs": len(result.history),
                    "best_epoch": result.best_epoch,
                }
                if warm:
                    previous[kind] = result.model
                    row[kind]["ndcg_ratio"] = row[kind]["ndcg@10"] / row["scratch"]["ndcg@10"]
                    row[kind]["time_ratio"] = row[kind]["seconds"] / row["scratch"]["seconds"]
            rows.append(row)
            log(
                f"{row['cutoff']}: NDCG@10 scratch {row['scratch']['ndcg@10']:.4f} "
                f"({row['scratch']['seconds']} s, {row['scratch']['epochs']} epochs); "
                + "; ".join(
                    f"{c} {row[c]['ndcg@10']:.4f} ({row[c]['ndcg_ratio']:.3f}x, {row[c]['seconds']} s)"
                    for c in chains
                )
            )
    finally:
        home.cleanup()

    # A week of a few dozen users weighs as much as one of a thousand in the plain mean; the weighted one not.
    evaluated = [r["next_week_evaluated"] for r in rows]

    def figures(kind: str) -> dict[str, Any]:
        return {
            "ndcg@10": statistics.fmean(r[kind]["ndcg@10"] for r in rows),
            "ndcg@10_weighted": sum(n * r[kind]["ndcg@10"] for n, r in zip(evaluated, rows))
            / max(sum(evaluated), 1),
            "seconds": sum(r[kind]["seconds"] for r in rows),
            "epochs": sum(r[kind]["epochs"] for r in rows),
        }

    summary: dict[str, Any] = {"scratch": figures("scratch")}
    for c in chains:
        f = figures(c)
        f["ndcg_ratio"] = f["ndcg@10"] / summary["scratch"]["ndcg@10"]
        f["ndcg_ratio_weighted"] = f["ndcg@10_weighted"] / summary["scratch"]["ndcg@10_weighted"]
        f["weeks_not_worse"] = sum(r[c]["ndcg_ratio"] >= TARGET_QUALITY for r in rows)
        f["time_ratio"] = f["seconds"] / summary["scratch"]["seconds"]
        f["quality_target_met"] = f["ndcg_ratio"] >= TARGET_QUALITY
        f["time_target_met"] = f["time_ratio"] <= TARGET_TIME
        summary[c] = f
    print(
        f"{'cut-off':<11} {'ratings':>8} {'new':>6} {'next wk':>7}  {'scratch':>7}"
        + "".join(f" {c:>16}" for c in chains)
    )
    for r in rows:
        print(
            f"{r['cutoff']:<11} {r['ratings']:>8,} {r['new_ratings']:>6,} {r['next_week_evaluated']:>7,}  "
            f"{r['scratch']['ndcg@10']:>7.4f}"
            + "".join(f" {r[c]['ndcg@10']:>7.4f} ({r[c]['ndcg_ratio']:.3f}x)" for c in chains)
        )
    s0 = summary["scratch"]
    print(
        f"scratch: mean NDCG@10 {s0['ndcg@10']:.4f} (weighted {s0['ndcg@10_weighted']:.4f}), "
        f"{s0['seconds']:.0f} s, {s0['epochs']} epochs"
    )
    for c in chains:
        f = summary[c]
        print(
            f"{c}: mean NDCG@10 {f['ndcg@10']:.4f} ({f['ndcg_ratio']:.3f}x, target >= {TARGET_QUALITY}; "
            f"weighted {f['ndcg_ratio_weighted']:.3f}x), within {1 - TARGET_QUALITY:.0%} or better in "
            f"{f['weeks_not_worse']} of {len(rows)} weeks; training {f['seconds']:.0f} s "
            f"({f['time_ratio']:.2f}x, target <= {TARGET_TIME}), {f['epochs']} epochs"
        )
    report = {
        "machine": machine_info(),
        "config": {
            "warm_start_epochs": warm_epochs,
            "replay": replays,
            "start": args.start,
            "weeks": args.weeks,
            "torch_threads": torch.get_num_threads(),
        },
        "weeks": rows,
        "summary": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
