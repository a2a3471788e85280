"""Data-parallel training benchmark on real ML-100K: the default network trained in 1 process and in N
data-parallel processes (``train_hybrid(..., processes=N)``: torchrun, DDP, gloo on the CPU).

    python -m bench.distributed [--home DIR] [--processes N] [--epochs N] [--rounds N] [--keep]
                                [--output FILE]

The default ``HybridConfig`` with ``patience=0`` (no validation split, every epoch timed), on the CPU. Each
round runs one training of each kind, one after the other (1 process, then N), so both see about the same
load; the per-epoch seconds are the training loop's own (``history[i]["seconds"]``; with N processes rank
0's, gradient exchange included), the first epoch of each training left out as warm-up. The call's wall time
adds what launching costs (pickling the inputs, torchrun's start, N interpreters importing torch, loading the
model back). One process runs torch's default threads (the cores), and once more with one thread, which tells
what the N processes gain by computing in parallel from what they gain by not oversubscribing a loaded
machine's cores with threads; each of N runs cores / N.

Every span records how many cores other processes kept busy meanwhile (the machine may be shared): the
figures are noisy, read them as the ratio within one run. Prints a table and writes
``bench/results/distributed.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.train import Home, Meter, _machine, _others, log

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.json"


def _one(data: Any, cfg: Any, processes: int, threads: int | None = None) -> dict[str, Any]:
    """One training; ``threads``: torch's threads in this process for it (one process only)."""
    import torch

    from pipeline.models.hybrid.train import train_hybrid

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    meter = Meter()
    try:
        result = train_hybrid(data, None, cfg, device="cpu", progress=False, processes=processes)
    finally:
        torch.set_num_threads(before)
    load = meter.read()
    epochs = [h["seconds"] for h in result.history]
    return {
        "processes": processes,
        "threads_per_process": threads or (before if processes == 1 else None),
        "epoch_seconds": [round(s, 3) for s in epochs],
        "timed_epoch_seconds": epochs[1:],
        "final_loss": result.history[-1]["loss"],
        "call": load,
    }


def run(args: argparse.Namespace) -> int:
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.distributed import cores, threads_per_process

    home = Home(args.home, args.keep)
    data = home.training_data()
    cfg = replace(HybridConfig(), epochs=args.epochs, patience=0)
    n = len(data.interactions)
    load_before = os.getloadavg()
    rounds = []
    for r in range(1, args.rounds + 1):
        log(f"round {r}: 1 process")
        single = _one(data, cfg, 1)
        log(f"round {r}: 1 process, 1 thread")
        single_1 = _one(data, cfg, 1, threads=1)
        log(f"round {r}: {args.processes} processes")
        parallel = _one(data, cfg, args.processes)
        rounds.append({"single": single, "single_1_thread": single_1, "parallel": parallel})

    def median_epoch(kind: str) -> float:
        return statistics.median(s for rd in rounds for s in rd[kind]["timed_epoch_seconds"])

    def median_call(kind: str) -> float:
        return statistics.median(rd[kind]["call"]["wall_s"] for rd in rounds)

    single_s, parallel_s = median_epoch("single"), median_epoch("parallel")
    single_1_s = median_epoch("single_1_thread")
    summary = {
        "single_median_epoch_s": round(single_s, 3),
        "single_1_thread_median_epoch_s": round(single_1_s, 3),
        "parallel_median_epoch_s": round(parallel_s, 3),
        "epoch_speedup": round(single_s / parallel_s, 3),
        "epoch_speedup_over_1_thread": round(single_1_s / parallel_s, 3),
        "single_samples_per_s": round(n / single_s, 1),
        "parallel_samples_per_s": round(n / parallel_s, 1),
        "single_median_call_s": round(median_call("single"), 2),
        "single_1_thread_median_call_s": round(median_call("single_1_thread"), 2),
        "parallel_median_call_s": round(median_call("parallel"), 2),
        "final_loss_relative_difference": [
            round(
                abs(rd["parallel"]["final_loss"] - rd["single"]["final_loss"]) / rd["single"]["final_loss"], 6
            )
            for rd in rounds
        ],
        "others_cpu_cores": _others([rd[k]["call"] for rd in rounds for k in rd]),
    }
    machine = _machine("cpu")
    machine["loadavg_before"] = [round(x, 2) for x in load_before]
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "distributed",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "machine": machine,
        "data": {"dataset": data.dataset, "ratings": n},
        "config": cfg.to_dict(),
        "processes": args.processes,
        "threads": {"single": cores(), "per_parallel_process": threads_per_process(args.processes)},
        "rounds": rounds,
        "summary": summary,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        f"\nML-100K, {n:,} ratings, default network, CPU ({machine['cpu_count']} cores), {args.rounds} rounds"
    )
    print("| processes x threads | median epoch (s) | ratings/s | median call (s) |")
    print("|---|---|---|---|")
    per = threads_per_process(args.processes)
    for label, seconds, call in (
        (f"1 x {cores()}", single_s, summary["single_median_call_s"]),
        ("1 x 1", single_1_s, summary["single_1_thread_median_call_s"]),
        (f"{args.processes} x {per}", parallel_s, summary["parallel_median_call_s"]),
    ):
        print(f"| {label} | {seconds:.2f} | {n / seconds:,.0f} | {call:.1f} |")
    print(
        f"epoch speed-up {summary['epoch_speedup']:.2f}x over 1 process "
        f"({summary['epoch_speedup_over_1_thread']:.2f}x over 1 process of 1 thread); other processes kept "
        f"{summary['others_cpu_cores']} cores busy on average; final loss differs by "
        f"{summary['final_loss_relative_difference']} (relative)"
    )
    print(f"\nJSON: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--home", help="an existing MOVIEREC_HOME with ML-100K ingested (default: a fresh one)"
    )
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes (2)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per training, the first untimed (4)")
    parser.add_argument("--rounds", type=int, default=2, help="trainings of each kind, alternating (2)")
    parser.add_argument("--keep", action="store_true", help="leave the fresh temporary home and its server")
    parser.add_argument("--output", default=str(RESULTS), help=f"JSON results ({RESULTS})")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
