"""Top-N selection: ``pipeline.models.topn.top_k`` (one tie rule for the evaluation and the batch) against
the raw limit, a bare ``torch.topk`` (sorted, ties in no promised order), on the score matrices the batch
and the evaluation select from.

    python -m bench.topn [--repeats 5] [--output FILE]

Shapes (rows x columns, k), each a chunk of float32 scores as the batch scores it:

* ``ml100k full``: every ML-100K user x 1,682 movies, top 100 (exhaustive scoring of a small catalogue);
* ``ml32m retrieve``: one scoring chunk at ML-32M shape (``chunk_size(87,585)`` users x 87,585 movies), the
  500 candidates retrieved per user;
* ``ml32m rerank``: the same chunk's 500 re-ranked candidates, top 100;
* ``eval``: 256 users (the evaluation's batch) x 3,706 movies (ML-1M shape), top 10;
* ``ml25m eval, constant``: 256 users x 59,047 movies (ML-25M shape), top 10, every score equal (the global
  mean: every movie ties across the cut in every row).

Scores are random with a share of ``-inf`` (rated movies) and, except in ``no ties``, exact ties (rounded to
3 decimals: a tie across the cut in almost every wide row; a network's float32 scores rarely tie), or
constant. For each shape: the median of ``--repeats`` timed calls of each, their ratio, and
whether both returned the same top-N sets. Prints a table and writes ``bench/results/topn.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "topn.json"


def _scores(rows: int, cols: int, seed: int, ties: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((rows, cols)).astype(np.float32)
    if ties == "rounded":
        scores = np.round(scores, 3)
    elif ties == "constant":
        scores[:] = 3.5
    scores[rng.random((rows, cols)) < 0.05] = -np.inf  # rated movies are masked before selection
    return scores


def _median_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up: thread pools, allocations
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from bench.machine import machine_info
    from pipeline.batch.scoring import chunk_size
    from pipeline.models.topn import top_k

    def bare(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        values, idx = torch.topk(torch.from_numpy(scores), min(k, scores.shape[1]), dim=1, sorted=True)
        return idx.numpy(), values.numpy()

    shapes = {
        "ml100k full": (943, 1_682, 100, "rounded"),
        "ml32m retrieve": (chunk_size(87_585), 87_585, 500, "rounded"),
        "ml32m retrieve, no ties": (chunk_size(87_585), 87_585, 500, "none"),
        "ml32m rerank": (chunk_size(87_585), 500, 100, "rounded"),
        "eval": (256, 3_706, 10, "rounded"),
        "ml25m eval, constant": (256, 59_047, 10, "constant"),
    }
    figures: dict[str, Any] = {}
    print(f"{'shape':<24}{'rows x cols':>16}{'k':>6}{'top_k ms':>11}{'torch.topk ms':>15}{'ratio':>8}  same")
    for i, (name, (rows, cols, k, ties)) in enumerate(shapes.items()):
        scores = _scores(rows, cols, seed=i, ties=ties)
        ours = _median_seconds(lambda s=scores, k=k: top_k(s, k), args.repeats)
        raw = _median_seconds(lambda s=scores, k=k: bare(s, k), args.repeats)
        idx, _ = top_k(scores, k)
        ref, ref_values = bare(scores, k)
        # Both select the same scores (ties may pick other items of equal score): compare the finite values.
        finite = np.isfinite(ref_values)
        same = bool(
            np.array_equal(
                np.sort(np.take_along_axis(scores, np.maximum(idx[:, : ref.shape[1]], 0), 1), 1)[finite],
                np.sort(ref_values, 1)[finite],
            )
        )
        figures[name] = {
            "rows": rows,
            "columns": cols,
            "k": k,
            "top_k_ms": round(ours * 1e3, 2),
            "torch_topk_ms": round(raw * 1e3, 2),
            "ratio": round(ours / raw, 2),
            "same_scores_selected": same,
        }
        print(
            f"{name:<24}{f'{rows} x {cols}':>16}{k:>6}{ours * 1e3:>11.2f}{raw * 1e3:>15.2f}"
            f"{ours / raw:>8.2f}  {same}"
        )
    out = {
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "shapes": figures,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1))
    print(f"written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
