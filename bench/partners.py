"""The train step's blend partners at size: every partner the published blend may fit, on all the ratings.

    python -m bench.partners [--shape ml1m|ml25m] [--workdir DIR] [--seed N] [--output FILE]

After the network, the weekly train step fits the partners the evaluation's weights give a share
(``PublishedBlend.from_training`` through ``fit_partners``) on every rating up to the cut-off. On synthetic
ratings the weight search leaves them out (the network alone ranks best), so ``bench.weekly``'s train step
fits none of them; a user's real ratings may call for all. This fits each partner the weights may call for
at the shape's size, through ``fit_partners`` with a share for that partner alone, one after the other in
one process that keeps every fitted one, as the train step holds them: EASE at its default cap, implicit
ALS and biased MF (``Settings`` offers AutoRec and the further members only below sizes ML-1M already
exceeds; the report says which were offered). Each fit's seconds come from ``fit_partners``' own log line;
each phase's peak RSS (this process, sampled) and the total are reported.

The ratings are ``bench.ingest``'s generator at the shape (cached under the workdir as ``bench.weekly``
caches them): ``base/`` with the weekly ``delta/`` on top (a re-rating replaces the earlier one), the
ratings week 1's train step fits on. Read from the CSV files into memory; no database.

Prints a table and writes ``bench/results/partners_<shape>.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHAPES = {"ml1m": 1_000_209, "ml25m": 25_000_095}  # ratings in the real files, as bench.weekly
PARTNER_LOGGER = "pipeline.models.blend.published"
FITTED = re.compile(r"blend partner (?P<name>.+) fitted on (?P<ratings>\d+) ratings in (?P<seconds>[\d.]+) s")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class _FitLog(logging.Handler):
    """``fit_partners``' log lines, parsed."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.fits: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = FITTED.search(record.getMessage())
        if found:
            self.fits.append(
                {
                    "name": found["name"],
                    "ratings": int(found["ratings"]),
                    "seconds": float(found["seconds"]),
                }
            )


def week_ratings(directory: Path) -> Any:
    """``base/`` then ``delta/`` ratings as ``Interactions`` over dense indices, the later rating of a pair
    kept."""
    import numpy as np
    import pandas as pd

    from pipeline.features.interactions import Interactions

    frames = [
        pd.read_csv(
            directory / sub / "ratings.csv",
            dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float32, "timestamp": np.int64},
            engine="pyarrow",
        )
        for sub in ("base", "delta")
    ]
    ratings = pd.concat(frames, ignore_index=True).drop_duplicates(["userId", "movieId"], keep="last")
    users, user_ids = pd.factorize(ratings["userId"].to_numpy(), sort=True)
    items, item_ids = pd.factorize(ratings["movieId"].to_numpy(), sort=True)
    return Interactions(
        users.astype(np.int64),
        items.astype(np.int64),
        ratings["rating"].to_numpy(np.float32),
        ratings["timestamp"].to_numpy(np.int64),
        len(user_ids),
        len(item_ids),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=tuple(SHAPES), default="ml25m")
    parser.add_argument("--workdir", type=Path, default=None, help="the dataset cache (bench.weekly's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON (bench/results/partners_<shape>.json)"
    )
    args = parser.parse_args(argv)

    from bench.ingest import MemorySampler, dataset
    from bench.machine import machine_info
    from pipeline.core.settings import get_settings
    from pipeline.models.autorec import autorec_fits
    from pipeline.models.baselines import EASE_MAX_ITEMS
    from pipeline.models.blend.published import fit_partners
    from pipeline.models.blend.weights import BlendWeights

    workdir = args.workdir or Path(tempfile.gettempdir()) / "movierec-bench-weekly"
    directory, manifest = dataset(workdir, SHAPES[args.shape], args.seed)
    settings = get_settings()
    sampler = MemorySampler()
    sampler.start()
    try:
        t0 = time.perf_counter()
        with sampler.phase() as read_peaks:
            train = week_ratings(directory)
        read_s = time.perf_counter() - t0
        log(f"{len(train):,} ratings, {train.n_users:,} users x {train.n_items:,} movies in {read_s:.0f} s")
        # One weights object per partner, giving it alone a share (the others' shares are 0: not fitted).
        alone = {
            "EASE": BlendWeights(weight=0.5),
            "ALS": BlendWeights(als_weight=0.5, weight=0.5),
            "biased MF": BlendWeights(rating_weight=0.5),
        }
        if autorec_fits(train, settings.autorec_max_cells):
            alone["AutoRec"] = BlendWeights(rating_weight=0.5, autorec_weight=0.5)
        fit_log = _FitLog()
        partner_logger = logging.getLogger(PARTNER_LOGGER)
        partner_logger.addHandler(fit_log)
        partner_logger.setLevel(logging.INFO)
        held = []  # every fitted partner stays, as the published blend holds them together
        phases = []
        for name, weights in alone.items():
            log(f"fitting {name} on {len(train):,} ratings")
            t0 = time.perf_counter()
            with sampler.phase() as peaks:
                held.append(fit_partners(train, weights))
            wall = time.perf_counter() - t0
            logged = [f for f in fit_log.fits if f["name"] == name]
            if not logged:  # the log line changed: the figures would be wrong
                raise SystemExit(f"no fit of {name} recorded from {PARTNER_LOGGER}'s log")
            phases.append(
                {
                    **logged[-1],
                    "wall_seconds": round(wall, 1),
                    "rss_start_mib": round(peaks.bench_start / 2**20),
                    "peak_rss_mib": round(peaks.bench / 2**20),
                }
            )
            log(f"  {phases[-1]}")
    finally:
        sampler.stop()
    report = {
        "shape": args.shape,
        "dataset": {k: manifest.get(k) for k in ("rows", "users", "movies", "rated_movies", "delta_rows")},
        "ratings": len(train),
        "users": train.n_users,
        "movies": train.n_items,
        "read_seconds": round(read_s, 1),
        "read_peak_rss_mib": round(read_peaks.bench / 2**20),
        "ease_max_items": EASE_MAX_ITEMS,
        "autorec_offered": "AutoRec" in alone,
        "members_offered": list(settings.members_for(len(train))),
        "partners": phases,
        "seconds": round(sum(p["seconds"] for p in phases), 1),
        "peak_rss_mib": round(sampler.overall.bench / 2**20),
        "machine": machine_info(),
    }
    output = args.output or RESULTS_DIR / f"partners_{args.shape}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    log(f"wrote {output}")
    return 0


def _print(report: dict[str, Any]) -> None:
    print(
        f"\nbench.partners at {report['shape']} shape: {report['ratings']:,} ratings, "
        f"{report['users']:,} users x {report['movies']:,} movies (read in {report['read_seconds']} s)"
    )
    print(f"{'partner':<12} {'fit s':>9} {'RSS before MiB':>15} {'peak RSS MiB':>13}")
    for p in report["partners"]:
        print(f"{p['name']:<12} {p['seconds']:>9.1f} {p['rss_start_mib']:>15,} {p['peak_rss_mib']:>13,}")
    print(f"{'all':<12} {report['seconds']:>9.1f} {'':>15} {report['peak_rss_mib']:>13,}")
    offered = report["members_offered"] or "none"
    print(f"AutoRec offered: {report['autorec_offered']}; members offered at this size: {offered}")


if __name__ == "__main__":
    sys.exit(main())
