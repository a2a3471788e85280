"""Fold-in quality on real ML-100K: a new user from their first few ratings, against the popularity fallback.

    python -m bench.foldin [--home DIR] [--holdout 0.1] [--given 5] [--epochs N] [--device auto|cpu|cuda]
                           [--model DIR] [--keep] [--output FILE]

Two disjoint seeded shares of the users (``--holdout`` each, 10%: 94 of 943) are taken out of training
entirely: validation users and test users. The published blend (``PublishedBlend``: the network with EASE
and its rating head, biased MF) is trained on the other users' ratings with the weights the weekly evaluation
chose on full ML-100K (``WEIGHTS``: the weight search is not rerun). Each held-out user's ratings are
ordered by time (ties by movie id): the first ``--given`` (5) are folded in (``pipeline.models.foldin``), the
rest are held out, and the movies among them rated >= 4 are the relevant ones (users without one are
skipped). Every list leaves out the given movies. The fold-in's popularity prior (as ratings, ``PRIORS``) is
chosen by NDCG@10 of ``fit`` on the validation users; the test users' figures are reported with it.
Compared:

* ``popularity``: the fallback such a user gets today, the most-rated movies (``batch.fallback.most_rated``'s
  order: rating count, ties to the lower id) of the training users;
* each fold-in method of ``pipeline.models.foldin`` (``fit``, ``history``, ``neighbours``) with the chosen
  prior, the published blend over the whole catalogue; ``fit`` without the prior;
* ``fit`` without SASRec (the other shares scaled up, as before a folded-in user had SASRec's term), with
  the network alone (no EASE, no rating head) and ``EASE`` alone, to show what each term brings.

Also, as a check of the known-user property the tests assert on the served model: for the first
``KNOWN_SAMPLE`` training users, the overlap of the fold-in of all their own ratings (oldest first) with
their own top 10 and top 20 by the blend (``PublishedBlend.score_users``, rated movies masked).

``--model DIR`` keeps the trained model there and reuses it on the next run (same holdout and epochs).
Prints a table and writes ``bench/results/foldin.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "foldin.json"
# The weekly run's on ML-100K (2026-12-05): ALS, SASRec and EASE rank, the network with biased MF rates.
WEIGHTS = {
    "weight": 0.0,
    "rating_weight": 0.5,
    "rerank_weight": 0.0,
    "als_weight": 0.17857142857142858,
    "members": {"sasrec": 0.7142857142857143},
}
HOLDOUT_SEED = 42
K = 10
KNOWN_SAMPLE = 100
PRIORS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # the popularity prior's grid (as ratings)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def held_out_users(n_users: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint seeded sets of ``share`` of the users each: validation (the prior is chosen on it) and
    test (the figures reported)."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    size = max(1, round(share * n_users))
    drawn = rng.choice(n_users, size=2 * size, replace=False)
    return np.sort(drawn[:size]), np.sort(drawn[size:])


def first_and_rest(data: Any, user: int, given: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The user's first ``given`` (movie, rating) by time, ties by movie index, and the rest."""
    rows = np.flatnonzero(data.users == user)
    rows = rows[np.lexsort((data.items[rows], data.timestamps[rows]))]
    first, rest = rows[:given], rows[given:]
    return data.items[first], data.ratings[first], data.items[rest], data.ratings[rest]


def _model(args: argparse.Namespace, data: Any, holdout: np.ndarray) -> tuple[Any, float]:
    from pipeline.models.blend.fit import train_published
    from pipeline.models.blend.published import PublishedBlend
    from pipeline.models.blend.weights import BlendWeights
    from pipeline.orchestration.steps import hybrid_config

    if args.model and (Path(args.model) / "blend.json").exists():
        log(f"reusing the model in {args.model}")
        return PublishedBlend.load(Path(args.model), device=args.device_resolved), 0.0
    inter = data.interactions
    train = dataclasses.replace(data, interactions=inter.subset(~np.isin(inter.users, holdout)))
    log(f"training the published blend on {len(train.interactions):,} ratings (held-out users left out)")
    t0 = time.perf_counter()
    model, _ = train_published(
        train,
        hybrid_config(args.epochs),
        BlendWeights.from_dict(WEIGHTS),
        device=args.device_resolved,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    if args.model:
        model.save(Path(args.model))
    return model, seconds


def _metrics(top: list[np.ndarray], relevant: list[np.ndarray]) -> dict[str, float]:
    from pipeline.evaluation.metrics import ranking_metrics_from_hits

    hits = np.array([np.isin(t[:K], r) for t, r in zip(top, relevant)])
    m = ranking_metrics_from_hits(hits, np.array([len(r) for r in relevant]), K)
    return {f"ndcg@{K}": float(np.mean(m["ndcg"])), f"recall@{K}": float(np.mean(m["recall"]))}


def measure(
    model: Any,
    data: Any,
    holdout: np.ndarray,
    given: int,
    prior: float,
    excluded: np.ndarray,
    *,
    every_method: bool = True,
) -> dict[str, Any]:
    """Each fold-in method (with the popularity ``prior``) against the popularity list on the ``holdout``
    users; ``excluded``: every user left out of training (the popularity counts are the others')."""
    from pipeline.core.defaults import RELEVANCE_THRESHOLD
    from pipeline.models.blend.weights import BlendWeights
    from pipeline.models.foldin import METHODS, FoldIn
    from pipeline.models.topn import top_k

    inter = data.interactions
    train = ~np.isin(inter.users, excluded)
    counts = np.bincount(inter.items[train], minlength=inter.n_items).astype(np.float64)
    folds = {m: FoldIn(model, m, prior=prior) for m in (METHODS if every_method else ("fit",))}
    if every_method:
        folds["fit, no prior"] = FoldIn(model, "fit", prior=0.0)
        only = {
            "fit, without SASRec": model.weights.without_members(),
            "fit, network only": BlendWeights(1.0, model.weights.rating_weight, 0.0),
            "EASE only": BlendWeights(0.0, model.weights.rating_weight, 0.0),
        }
        for name, w in only.items():
            folds[name] = FoldIn(dataclasses.replace(model, weights=w), "fit", prior=prior)
    tops: dict[str, list[np.ndarray]] = {"popularity": [], **{name: [] for name in folds}}
    seconds: dict[str, float] = {name: 0.0 for name in folds}
    relevant: list[np.ndarray] = []
    for user in holdout:
        items, ratings, later, later_ratings = first_and_rest(inter, int(user), given)
        rel = np.unique(later[later_ratings >= RELEVANCE_THRESHOLD])
        if len(rel) == 0:
            continue
        relevant.append(rel)
        pop = counts.copy()
        pop[items] = -np.inf
        tops["popularity"].append(top_k(pop[None, :], K)[0][0])
        for name, fold in folds.items():
            t0 = time.perf_counter()
            found, _ = fold.recommend(items, ratings, K)
            seconds[name] += time.perf_counter() - t0
            tops[name].append(found)
    rows = {name: _metrics(top, relevant) for name, top in tops.items()}
    for name in folds:
        rows[name]["ms_per_user"] = 1000 * seconds[name] / len(relevant)
    base = rows["popularity"][f"ndcg@{K}"]
    for row in rows.values():
        row["ndcg_vs_popularity"] = row[f"ndcg@{K}"] / base if base else float("nan")
    if not every_method:
        return {"users_measured": len(relevant), "methods": rows}
    known = _known_users(model, folds["fit"], inter)
    return {"users_measured": len(relevant), "methods": rows, "known_users": known}


def choose_prior(model: Any, data: Any, validation: np.ndarray, given: int, excluded: np.ndarray) -> Any:
    """NDCG@K of ``fit`` on the validation users at every prior of ``PRIORS``; the best (ties: the
    smaller)."""
    figures = {}
    for c in PRIORS:
        rows = measure(model, data, validation, given, c, excluded, every_method=False)["methods"]
        figures[c] = rows["fit"][f"ndcg@{K}"]
        popularity = rows["popularity"][f"ndcg@{K}"]
        log(f"  prior {c:g}: validation NDCG@{K} {figures[c]:.4f} (popularity {popularity:.4f})")
    return max(figures, key=lambda c: (figures[c], -c)), figures


def _known_users(model: Any, fold: Any, inter: Any) -> dict[str, float]:
    """Overlap of the fold-in of a known user's own ratings with their own top lists by the blend."""
    from pipeline.models.topn import mask_rows, top_k

    users = np.flatnonzero(np.diff(model.rated.indptr) > 0)[:KNOWN_SAMPLE]
    own = mask_rows(model.score_users(users).astype(np.float64), model.rated[users])
    out: dict[str, list[float]] = {"overlap@10": [], "overlap@20": []}
    for row, user in enumerate(users):
        # oldest first, as the blend's sequence model read them in training
        items, ratings, _, _ = first_and_rest(inter, int(user), int(np.sum(inter.users == user)))
        found, _ = fold.recommend(items, ratings, 20)
        for k in (10, 20):
            mine = top_k(own[row : row + 1], k)[0][0]
            out[f"overlap@{k}"].append(len(set(mine) & set(found[:k])) / k)
    return {
        **{f"mean {key}": float(np.mean(v)) for key, v in out.items()},
        **{f"min {key}": float(np.min(v)) for key, v in out.items()},
        "users": float(len(users)),
    }


def _print(report: dict[str, Any]) -> None:
    r = report["results"]
    print(
        f"\nfold-in on ML-100K: {report['holdout_users']} held-out users, "
        f"first {report['given']} ratings in; "
    )
    print(f"{r['users_measured']} with a relevant (>= 4) later rating measured")
    grid = ", ".join(f"{c}: {v:.4f}" for c, v in report["prior_validation_ndcg"].items())
    print(
        f"popularity prior chosen on {report['validation_users']} other held-out users: "
        f"{report['chosen_prior']:g} (validation NDCG@{K} by prior: {grid})\n"
    )
    print(f"| method | NDCG@{K} | Recall@{K} | x popularity | ms per user |")
    print("|---|---|---|---|---|")
    for name, row in r["methods"].items():
        ms = f"{row['ms_per_user']:.1f}" if "ms_per_user" in row else ""
        print(
            f"| {name} | {row[f'ndcg@{K}']:.4f} | {row[f'recall@{K}']:.4f} | "
            f"{row['ndcg_vs_popularity']:.2f} | {ms} |"
        )
    k = r["known_users"]
    print(
        f"\nknown users (first {k['users']:.0f}), fold-in of all their own ratings vs their own list: "
        f"overlap@10 mean {k['mean overlap@10']:.2f} (min {k['min overlap@10']:.2f}), "
        f"overlap@20 mean {k['mean overlap@20']:.2f} (min {k['min overlap@20']:.2f})"
    )


def run(args: argparse.Namespace) -> int:
    from bench.machine import machine_info
    from bench.train import Home
    from pipeline.core.device import resolve_device

    args.device_resolved = resolve_device(args.device)
    home = Home(args.home, args.keep)
    data = home.training_data()
    validation, holdout = held_out_users(data.interactions.n_users, args.holdout)
    excluded = np.union1d(validation, holdout)
    model, train_s = _model(args, data, excluded)
    t0 = time.perf_counter()
    log(f"choosing the popularity prior on {len(validation)} validation users")
    prior, validation_figures = choose_prior(model, data, validation, args.given, excluded)
    log(f"measuring with prior {prior:g} on {len(holdout)} test users")
    results = measure(model, data, holdout, args.given, prior, excluded)
    report = {
        "benchmark": "foldin",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "machine": {**machine_info(), "device": args.device_resolved},
        "dataset": data.dataset,
        "holdout_share": args.holdout,
        "holdout_seed": HOLDOUT_SEED,
        "holdout_users": len(holdout),
        "validation_users": len(validation),
        "prior_validation_ndcg": {str(c): v for c, v in validation_figures.items()},
        "chosen_prior": prior,
        "given": args.given,
        "weights": WEIGHTS,
        "epochs": args.epochs,
        "train_s": round(train_s, 1),
        "measure_s": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"\nJSON: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", help="an existing MOVIEREC_HOME with ML-100K ingested (default: a fresh one)"
    )
    parser.add_argument(
        "--holdout", type=float, default=0.1, help="share of users held out of training (0.1)"
    )
    parser.add_argument("--given", type=int, default=5, help="ratings folded in per held-out user (5)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default config: early stop)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--model", help="keep the trained model in DIR and reuse it when present")
    parser.add_argument("--keep", action="store_true", help="leave the fresh temporary home and its server")
    parser.add_argument("--output", default=str(RESULTS), help=f"JSON results ({RESULTS})")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
