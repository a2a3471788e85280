"""EASE above its cap (``EASEConfig.max_items``): what the blend's large-catalogue partner costs and buys.

    python -m bench.ease [--part quality|cost|both] [--home DIR] [--epochs N] [--caps 250,500,1000]
                         [--rows N] [--fit-caps 5000,10000] [--device auto|cpu|cuda] [--keep] [--output FILE]

**Quality** (``--part quality``), on real ML-100K (943 users, 1,682 movies) under the temporal protocol (each
user's latest 20% held out, relevant = rated >= 4): the network is trained once on the train split
(``HybridRecommender``, default config), then the published ranking blend is scored the way the weekly batch
scores it (retrieve ``DEFAULT_CANDIDATES``, re-rank with the rating head) with the weekly run's weights on
ML-100K (``WEIGHTS``, fixed: the weight search is not rerun per variant) and EASE in three forms: the
full EASE, EASE capped at each of ``--caps`` movies (the most-rated of the train split; every other movie
scores 0), and none (the network's weight 1). EASE alone, full and capped, is reported beside. NDCG@10,
Recall@10, coverage@10 and long-tail share@10.

**Cost** (``--part cost``), on synthetic ratings with ML-25M's shape (``--rows``, default 25,000,095: 162,541
users, 59,047 rated movies; ``bench.ingest``'s generator, pairs only, held in memory): for each of
``--fit-caps`` one ``EASE(EASEConfig(max_items=cap)).fit`` in a fresh forked process (its peak RSS is the
fit's alone, above the data the parent built), the Gram matrix's build alone, and scoring 1,024 users; the
share of the ratings the kept movies hold at each cap and at the default cap; and the default cap's fit
projected from the largest cap measured: the inverse grows as cap^3, the Gram build as the number of kept
movie pairs the users rated (counted exactly), memory as 12 bytes per kept movie pair (the float64 Gram
matrix inverted in place, the float32 weights).

Prints tables and writes ``bench/results/ease.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "ease.json"
WEIGHTS = {"weight": 0.6, "rating_weight": 1.0, "rerank_weight": 0.75}  # the weekly run's ranking on ML-100K
K = 10
SCORE_USERS = 1024
ML25M_ROWS = 25_000_095


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


# --- quality on real ML-100K ----------------------------------------------------------------------------


def quality(args: argparse.Namespace) -> dict[str, Any]:
    from bench.train import Home
    from pipeline.core.defaults import DEFAULT_CANDIDATES
    from pipeline.core.device import resolve_device
    from pipeline.evaluation.protocol import evaluate_model
    from pipeline.evaluation.splits import make_split
    from pipeline.models.baselines import EASE, EASEConfig
    from pipeline.models.blend.scorer import BlendRecommender, rating_scale
    from pipeline.models.blend.weights import BlendWeights
    from pipeline.models.hybrid.recommender import HybridRecommender
    from pipeline.orchestration.steps import hybrid_config

    device = resolve_device(args.device)
    home = Home(args.home, args.keep)
    data = home.training_data()
    train, test = make_split(data.interactions, "temporal", data.ids)
    log(f"training the network on the temporal train split ({len(train):,} ratings, {device})")
    t0 = time.perf_counter()
    network = HybridRecommender(data, hybrid_config(args.epochs), device).fit(train)
    train_s = time.perf_counter() - t0
    weights = BlendWeights.from_dict(WEIGHTS)
    rated, scale = train.binary_matrix(), rating_scale(train)

    def blend(ease: EASE | None, w: BlendWeights) -> BlendRecommender:
        return BlendRecommender(network, ease, w, None, scale, DEFAULT_CANDIDATES, rated)

    def figures(model: Any) -> dict[str, float]:
        m = evaluate_model(model, train, test, "temporal", K)
        return {key: round(float(m[f"{key}@{K}"]), 4) for key in ("ndcg", "recall", "coverage", "long_tail")}

    rows: list[dict[str, Any]] = []
    eases: dict[str, tuple[int, Any]] = {}
    for cap in [None, *args.caps]:
        t0 = time.perf_counter()
        ease = EASE(EASEConfig() if cap is None else EASEConfig(max_items=cap)).fit(train)
        fit_s = time.perf_counter() - t0
        kept = train.n_items if ease.kept_ is None else len(ease.kept_)
        eases["full" if cap is None else f"capped {cap}"] = (kept, ease)
        log(f"EASE {'full' if cap is None else f'capped at {cap}'}: {kept} movies kept, fit {fit_s:.2f} s")
    counts = np.bincount(rated.indices, minlength=train.n_items)
    for name, (kept, ease) in eases.items():
        held = counts.sum() if ease.kept_ is None else counts[ease.kept_].sum()
        share = round(float(held / counts.sum()), 4)
        rows.append(
            {
                "model": f"blend, EASE {name}",
                "kept": kept,
                "ratings_share": share,
                **figures(blend(ease, weights)),
            }
        )
        rows.append({"model": f"EASE {name} alone", "kept": kept, "ratings_share": share, **figures(ease)})
    no_ease = BlendWeights(1.0, weights.rating_weight, weights.rerank_weight)
    rows.append(
        {
            "model": "blend, no EASE (network weight 1)",
            "kept": 0,
            "ratings_share": 0.0,
            **figures(blend(None, no_ease)),
        }
    )
    return {
        "dataset": data.dataset,
        "users": train.n_users,
        "movies": train.n_items,
        "train_ratings": len(train),
        "test_ratings": len(test),
        "weights": WEIGHTS,
        "epochs": args.epochs,
        "network_train_s": round(train_s, 1),
        "setup": home.setup,
        "rows": rows,
    }


# --- cost at ML-25M shape -----------------------------------------------------------------------------------


def synthetic(rows: int, seed: int) -> Any:
    """(user, movie) pairs with ML-25M's shape scaled to ``rows``, drawn as ``bench.ingest`` draws them (whole
    users per chunk, a flattened Zipf over the rated movies); ratings and timestamps are not needed."""
    from bench.ingest import CHUNK_ROWS, GEN_VERSION, SHIFT, Shape, _ratings_per_user, _Sampler
    from pipeline.features.interactions import Interactions

    shape = Shape.for_rows(rows)
    cache = (
        Path(tempfile.gettempdir())
        / "movierec-bench"
        / f"ease-pairs-rows{rows}-seed{seed}-v{GEN_VERSION}.npz"
    )
    if cache.is_file():
        log(f"using cached pairs {cache}")
        saved = np.load(cache)
        u, i = saved["users"].astype(np.int64), saved["items"].astype(np.int64)
        n = len(u)
        return Interactions(
            u, i, np.ones(n, np.float32), np.zeros(n, np.int64), shape.users, shape.rated_movies
        )
    rng = np.random.default_rng(seed)
    sampler = _Sampler(rng, np.arange(shape.rated_movies, dtype=np.int64), rows)
    cap = min(max(20, round(32_202 * shape.rated_movies / 59_047)), shape.rated_movies // 2)
    per_user = _ratings_per_user(rng, shape.users, rows, max(1, cap))
    users = np.arange(shape.users, dtype=np.int64)
    ends = np.cumsum(per_user)
    cuts = np.unique(np.searchsorted(ends, np.arange(CHUNK_ROWS, rows, CHUNK_ROWS), side="left") + 1)
    bounds = [0, *[int(c) for c in cuts if 0 < c < shape.users], shape.users]
    keys = np.concatenate(
        [sampler.pairs(users[lo:hi], per_user[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    )
    u, i = (keys >> SHIFT).astype(np.int64), (keys & ((1 << SHIFT) - 1)).astype(np.int64)
    n = len(keys)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, users=u.astype(np.int32), items=i.astype(np.int32))
    return Interactions(u, i, np.ones(n, np.float32), np.zeros(n, np.int64), shape.users, shape.rated_movies)


def _fit_child(train: Any, cap: int, out: Any) -> None:
    from pipeline.models.baselines import EASE, EASEConfig, _gram_upper, most_rated

    def rss_kib() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    start = rss_kib()
    t0, c0 = time.perf_counter(), time.process_time()
    ease = EASE(EASEConfig(max_items=cap)).fit(train)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    ease.score_users(np.arange(min(SCORE_USERS, train.n_users)))
    score_s = time.perf_counter() - t0
    weights_mib = ease.weights_.nbytes / 2**20  # type: ignore[union-attr]
    del ease
    x = train.binary_matrix()
    kept = most_rated(x, cap)
    t0, c0 = time.perf_counter(), time.process_time()
    _gram_upper(x[:, kept], 500.0)
    gram_s, gram_cpu = time.perf_counter() - t0, time.process_time() - c0
    out.send(
        {
            "cap": cap,
            "fit_s": round(fit_s, 1),
            "gram_s": round(gram_s, 1),
            "inverse_s": round(fit_s - gram_s, 1),
            "fit_cpu_s": round(fit_cpu, 1),
            "gram_cpu_s": round(gram_cpu, 1),
            "inverse_cpu_s": round(fit_cpu - gram_cpu, 1),
            "score_1024_users_s": round(score_s, 2),
            "rss_at_start_mib": _mib(start),
            "peak_rss_mib": _mib(peak),
            "fit_added_mib": _mib(peak - start),
            "weights_mib": round(weights_mib, 1),
        }
    )


def cost(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.models.baselines import EASE_MAX_ITEMS, most_rated

    log(f"drawing {args.rows:,} synthetic ratings with ML-25M's shape")
    t0 = time.perf_counter()
    train = synthetic(args.rows, args.seed)
    log(
        f"{train.n_users:,} users x {train.n_items:,} movies, {len(train):,} ratings "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    x = train.binary_matrix()
    counts = np.bincount(x.indices, minlength=train.n_items)

    def coverage(cap: int) -> dict[str, float]:
        kept = most_rated(x, cap)
        per_user = np.asarray(x[:, kept].sum(axis=1)).ravel()
        return {
            "ratings_share": round(float(counts[kept].sum() / counts.sum()), 4),
            "kept_pairs_rated": float((per_user * (per_user + 1) / 2).sum()),  # the Gram build's work
        }

    caps = sorted({*args.fit_caps, EASE_MAX_ITEMS})
    shares = {cap: coverage(cap) for cap in caps}
    fits = []
    ctx = mp.get_context("fork")  # the child shares the parent's data; its peak RSS is the fit's
    for cap in args.fit_caps:
        log(f"fitting EASE capped at {cap:,} in a child process")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_fit_child, args=(train, cap, child))
        proc.start()
        result = parent.recv()
        proc.join()
        fits.append({**result, **shares[cap]})
        log(f"  {result}")
    last = max(fits, key=lambda f: f["cap"])
    scale = EASE_MAX_ITEMS / last["cap"]
    pairs = shares[EASE_MAX_ITEMS]["kept_pairs_rated"] / shares[last["cap"]]["kept_pairs_rated"]
    projected = {
        "cap": EASE_MAX_ITEMS,
        "from_cap": last["cap"],
        "gram_cpu_s": round(last["gram_cpu_s"] * pairs, 0),
        "inverse_cpu_s": round(last["inverse_cpu_s"] * scale**3, 0),
        "fit_added_mib": round(
            12 * EASE_MAX_ITEMS**2 / 2**20 + (last["fit_added_mib"] - 12 * last["cap"] ** 2 / 2**20), 0
        ),
        "weights_mib": round(4 * EASE_MAX_ITEMS**2 / 2**20, 0),
        **shares[EASE_MAX_ITEMS],
    }
    projected["fit_cpu_s"] = projected["gram_cpu_s"] + projected["inverse_cpu_s"]
    from threadpoolctl import threadpool_info

    return {
        "blas_threads": sorted({int(i["num_threads"]) for i in threadpool_info()}),
        "rows": len(train),
        "users": train.n_users,
        "movies": train.n_items,
        "fits": fits,
        "shares": {str(k): v for k, v in shares.items()},
        "projected_default_cap": projected,
    }


# --- report -----------------------------------------------------------------------------------------------


def _print(report: dict[str, Any]) -> None:
    q = report.get("quality")
    if q:
        print(
            f"\nquality on {q['dataset']} ({q['users']} users x {q['movies']} movies), temporal protocol, "
            f"weights {q['weights']}\n"
        )
        print(
            f"| model | movies kept | their share of train ratings | NDCG@{K} | Recall@{K} | coverage@{K} "
            f"| long tail@{K} |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in q["rows"]:
            print(
                f"| {r['model']} | {r['kept']:,} | {r['ratings_share']:.1%} | {r['ndcg']:.4f} "
                f"| {r['recall']:.4f} | {r['coverage']:.4f} | {r['long_tail']:.4f} |"
            )
    c = report.get("cost")
    if c:
        print(
            f"\ncost at ML-25M shape (synthetic): {c['users']:,} users x {c['movies']:,} movies, "
            f"{c['rows']:,} ratings; BLAS threads {c['blas_threads']}\n"
        )
        print(
            "| cap | ratings share | fit CPU s (Gram + inverse) | fit wall s | score 1,024 users s "
            "| fit's peak RSS above the data | weights |"
        )
        print("|---|---|---|---|---|---|---|")
        for f in c["fits"]:
            print(
                f"| {f['cap']:,} | {f['ratings_share']:.1%} "
                f"| {f['fit_cpu_s']} ({f['gram_cpu_s']} + {f['inverse_cpu_s']}) | {f['fit_s']} "
                f"| {f['score_1024_users_s']} | {f['fit_added_mib']:,.0f} MiB | {f['weights_mib']:,.0f} MiB |"
            )
        p = c["projected_default_cap"]
        print(
            f"| {p['cap']:,} (projected from {p['from_cap']:,}) | {p['ratings_share']:.1%} "
            f"| {p['fit_cpu_s']:.0f} ({p['gram_cpu_s']:.0f} + {p['inverse_cpu_s']:.0f}) | | "
            f"| {p['fit_added_mib']:,.0f} MiB | {p['weights_mib']:,.0f} MiB |"
        )


def run(args: argparse.Namespace) -> int:
    from bench.machine import machine_info

    report: dict[str, Any] = {
        "benchmark": "ease",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "machine": machine_info(),
    }
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    report["loadavg_before"] = load
    if args.part in ("quality", "both"):
        report["quality"] = quality(args)
    if args.part in ("cost", "both"):
        report["cost"] = cost(args)
    report["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3] if load else []
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"\nJSON: {out}")
    return 0


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("quality", "cost", "both"), default="both")
    parser.add_argument(
        "--home", help="an existing MOVIEREC_HOME with ML-100K ingested (default: a fresh one)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="network epochs (default config: early stop)"
    )
    parser.add_argument(
        "--caps", type=_ints, default=[250, 500, 1000], help="EASE caps on ML-100K (250,500,1000)"
    )
    parser.add_argument("--rows", type=int, default=ML25M_ROWS, help="synthetic ratings (ML-25M: 25,000,095)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--fit-caps", type=_ints, default=[5000, 10000], help="caps fitted at ML-25M shape (5000,10000)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the fresh MOVIEREC_HOME and its server")
    parser.add_argument("--output", default=str(RESULTS))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
