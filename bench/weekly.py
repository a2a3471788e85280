"""The whole weekly run, step by step in one process, on synthetic data with the real files' shape.

    python -m bench.weekly --shape ml1m|ml25m [--epochs N] [--bootstrap-epochs N] [--project-epochs N]
                           [--evaluate-only | --train-only [--weights JSON]] [--workdir DIR]
                           [--device cpu|cuda|auto] [--output FILE]

The data is ``bench.ingest``'s generator at ML-1M (1,000,209 ratings) or ML-25M (25,000,095) rows: ML-25M
files (``ratings.csv``, ``movies.csv``, ``links.csv``) plus a weekly delta. A fresh ``MOVIEREC_HOME`` under
the workdir (embedded PostgreSQL, MLflow in its ``mlflow`` database, the default settings otherwise) runs
the steps the DAG runs, as ``movierec run`` calls them (``pipeline.orchestration.steps``), twice:

* **week 0** (bootstrap): ``base/`` ingested into the empty database; no champion yet, so the network is
  trained from scratch;
* **week 1** (the weekly run): ``delta/`` (the next week's ratings) ingested on top; the champion of week 0
  is recent, so the train step warm-starts from it (``MOVIEREC_WARM_START_EPOCHS`` epochs).

Each step (fetch, ingest, quality, load: ratings, features and text embeddings up to the cut-off,
evaluate, train, promote, publish) is timed with the peak RSS of this process and of the PostgreSQL
server's processes summed. Every network fit inside a step (the evaluation's validation and protocol fits,
the train step's fit) is recorded from the trainer's own log line: ratings, epochs run, seconds, and the
ratings each epoch trained on (fewer when a warm start samples the older ones to keep within
``MOVIEREC_WARM_START_EPOCH_RATINGS``).

``--epochs N`` caps every network fit at N epochs (the CLI's ``--epochs``), for shapes where full fits do
not fit in a sitting. A fit that ran into the cap is then projected: seconds per epoch times
``--project-epochs`` for a fit from scratch, times the warm-start epochs for a warm one; a fit that stopped
early by itself is taken as measured. Each step and week is reported measured and projected (equal when
no fit was capped). ``--bootstrap-epochs N`` caps week 0's fits alone: week 1, the weekly run the target
is about, then runs uncapped (measured, not projected) from a champion trained for N epochs.
``--evaluate-only`` runs week 0 up to its evaluate step and stops there: the evaluation at a size whose
two weeks do not fit in a sitting (ML-25M). ``--train-only`` is the other half at that size: no evaluate
step in either week (measured by ``--evaluate-only``); each train step gets the evaluation's place-holder
instead: week 0 the weights the evaluation chose at ML-25M shape (the network alone), week 1 ``--weights``
(default: a share for every partner the published blend fits at this size, EASE, ALS and biased MF, so the
train step fits them all as a real week's would), and a primary figure that lets the gate promote each
week's model. Week 0 is not published (it only makes the champion week 1 warm-starts from).

Prints a table and writes ``bench/results/weekly_<shape>.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHAPES = {"ml1m": 1_000_209, "ml25m": 25_000_095}  # ratings in the real files
TARGET_S = {"ml1m": 15 * 60, "ml25m": 3 * 3600}  # the weekly run (week 1) on the 2-core CPU
TARGET_RSS_MIB = 12 * 1024  # peak RSS at ML-25M shape
FIT_LOGGER = "pipeline.models.hybrid.fit"
# --train-only's week 1: every partner the published blend fits at ML-1M and ML-25M size gets a share (EASE
# the rest of the ranking's, biased MF the rest of the ratings'), so its train step fits them all.
DEFAULT_PARTNER_WEIGHTS = '{"weight": 0.5, "als_weight": 0.25, "rating_weight": 0.5, "rerank_weight": 1.0}'


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Fit:
    """One network fit, from ``train_hybrid``'s closing log line."""

    ratings: int
    epochs: int
    seconds: float
    warm: bool
    best_epoch: int  # the epoch kept: a fit from scratch that stops early ran patience epochs past it
    epoch_ratings: int  # trained an epoch: fewer than ``ratings`` when a warm start samples the older

    def projected(self, cap: int | None, full_epochs: int, warm_epochs: int) -> float:
        if cap is None or self.epochs < cap:  # uncapped, or stopped early by itself: complete
            return self.seconds
        return self.seconds / self.epochs * max(self.epochs, warm_epochs if self.warm else full_epochs)


class FitLog(logging.Handler):
    """Collects the network fits of a step from the trainer's log records (their arguments, not text)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.fits: list[Fit] = []
        self._warm = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("warm start:"):
            self._warm = True
        elif record.msg.startswith("trained the network on") and isinstance(record.args, tuple):
            ratings, epochs, seconds, best, each = (float(a) for a in record.args[:5])  # type: ignore[arg-type]
            fit = Fit(int(ratings), int(epochs), round(seconds, 1), self._warm, int(best), int(each))
            self.fits.append(fit)
            self._warm = False

    def take(self) -> list[Fit]:
        fits, self.fits = self.fits, []
        return fits


class StepLog(logging.Handler):
    """The INFO messages of the evaluation's loggers (the weight search's phases and their seconds), each
    with the seconds since its step began."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.started = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{time.perf_counter() - self.started:,.1f} s: {record.getMessage()}")

    def take(self) -> list[str]:
        lines, self.lines, self.started = self.lines, [], time.perf_counter()
        return lines


@dataclass
class Step:
    name: str
    seconds: float
    peaks: dict[str, Any]
    fits: list[Fit] = field(default_factory=list)
    projected_seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


class Week:
    """Runs and measures the steps of one weekly run."""

    def __init__(
        self, sampler: Any, fit_log: FitLog, project: Callable[[Fit], float], step_log: StepLog
    ) -> None:
        self.sampler, self.fit_log, self.project, self.step_log = sampler, fit_log, project, step_log
        self.steps: list[Step] = []

    def run(
        self, name: str, fn: Callable[[], Any], detail: Callable[[Any], dict[str, Any]] | None = None
    ) -> Any:
        log(f"{name} ...")
        self.fit_log.take()
        self.step_log.take()
        with self.sampler.phase() as peaks:
            t0 = time.perf_counter()
            value = fn()
            seconds = time.perf_counter() - t0
        fits = self.fit_log.take()
        measured_fits = sum(f.seconds for f in fits)
        projected = seconds - measured_fits + sum(self.project(f) for f in fits)
        step = Step(name, round(seconds, 1), peaks.as_dict(), fits, round(projected, 1))
        step.messages = self.step_log.take()
        step.detail = detail(value) if detail else {}
        self.steps.append(step)
        log(f"{name}: {seconds:,.1f} s" + (f" (projected {projected:,.1f} s)" if fits else ""))
        return value

    def as_dict(self) -> dict[str, Any]:
        steps = [asdict(s) for s in self.steps]
        return {
            "steps": steps,
            "seconds": round(sum(s.seconds for s in self.steps), 1),
            "projected_seconds": round(sum(s.projected_seconds for s in self.steps), 1),
            "peak_bench_mib": max(s.peaks["bench_mib"] for s in self.steps),
            "peak_server_sum_mib": max(s.peaks["server_sum_mib"] for s in self.steps),
        }


def blend_weights(text: str) -> dict[str, Any]:
    """``--weights``: checked as the train step will read them, before week 0's long fit rather than after."""
    from pipeline.models.blend.weights import BlendWeights

    try:
        return BlendWeights.from_dict(json.loads(text)).to_dict()  # type: ignore[return-value]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise argparse.ArgumentTypeError(f"not blend weights ({exc!r}): {text}") from exc


def placeholder_evaluation(home: Path, name: str, index: int, weights: dict[str, Any]) -> dict[str, Any]:
    """What ``--train-only``'s train and promote steps get in the evaluation's place: the weights, and a
    primary figure each week raises, so that the gate promotes (the gate is measured with the rest)."""
    from pipeline.core.defaults import PRIMARY_METRIC, PRIMARY_PROTOCOL

    report = home / "placeholder-evaluation.json"  # the MLflow run's evaluation.json
    report.write_text(json.dumps({"note": "bench.weekly --train-only: no evaluation ran"}) + "\n")
    return {
        "as_of": None,
        "dataset": f"placeholder ({name})",
        "report_path": str(report),
        "weights": weights,
        "metrics": {PRIMARY_PROTOCOL: {PRIMARY_METRIC: float(index)}},
        "baselines": {},
    }


def run_week(
    week: Week, directory: Path, args: argparse.Namespace, settings: Any, cap: int | None, index: int
) -> dict[str, Any]:  # the steps as run_all calls them, with the data loaded once for the three model steps
    from pipeline.models.blend.weights import BlendWeights
    from pipeline.orchestration import steps

    # One dataset name for both weeks, as a user's weekly runs have: another name forces a full retrain.
    name = f"synthetic-{args.shape}"
    fetched = week.run("fetch", lambda: steps.fetch(name, str(directory), settings=settings))
    ingested = week.run(
        "ingest",
        lambda: steps.ingest(fetched, settings=settings),
        lambda r: {"rows_accepted": r["rows_accepted"], "rows_rejected": r["rows_rejected"]},
    )
    week.run("quality", lambda: steps.quality(ingested, settings=settings))
    held: dict[str, Any] = {}  # the loaded data, dropped before publish as run_all drops it

    def load() -> Any:
        held["data"] = steps._training_data(None, settings, False)
        return held["data"]

    week.run(
        "load",
        load,
        lambda d: {
            "ratings": len(d.interactions),
            "users": d.interactions.n_users,
            "movies": d.interactions.n_items,
        },
    )
    if args.train_only:
        # week 0: the network alone (the defaults), what the evaluation chose at ML-25M shape on these ratings
        weights = args.weights if index else BlendWeights().to_dict()
        evaluation = placeholder_evaluation(settings.home, name, index, weights)
    else:
        evaluation = week.run(
            "evaluate",
            lambda: steps.evaluate(None, cap, args.device, settings=settings, data=held["data"]),
            lambda e: {
                "temporal": e["metrics"].get("temporal", {}),
                "weights": e["weights"],
                "sample": e.get("sample"),
                "models": _model_seconds(Path(e["report_path"])),
            },
        )
        if not week.steps[-1].fits:  # the trainer's log line changed: the projection would be wrong
            raise SystemExit(f"no network fit recorded from {FIT_LOGGER}'s log during evaluate")
    if args.evaluate_only:
        return week.as_dict()
    training = week.run(
        "train",
        lambda: steps.train(None, evaluation, cap, args.device, settings=settings, data=held["data"]),
        lambda t: {
            "kind": t["kind"],
            "reason": t["training_reason"],
            "best_epoch": t["best_epoch"],
            "weights": evaluation["weights"],
        },
    )
    held.clear()
    week.run(
        "promote",
        lambda: steps.promote(training, evaluation, None, settings=settings),
        lambda p: {"promoted": p["promoted"], "reason": p["reason"]},
    )
    if args.train_only and index == 0:  # only the champion week 1 starts from
        return week.as_dict()
    week.run(
        "publish",
        lambda: steps.publish(None, settings=settings, device="cpu"),
        lambda p: {"users": p["users"], "rows": p["rows"]},
    )
    return week.as_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=tuple(SHAPES), default="ml1m")
    parser.add_argument("--epochs", type=int, default=None, help="cap on every network fit's epochs (none)")
    parser.add_argument(
        "--bootstrap-epochs",
        type=int,
        default=None,
        help="cap on week 0's fits alone (default: --epochs); week 1 then runs uncapped unless --epochs",
    )
    parser.add_argument(
        "--project-epochs",
        type=int,
        default=None,
        help="epochs a fit from scratch is projected at when capped (default: the config's maximum)",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--evaluate-only", action="store_true", help="week 0 up to its evaluate step, then stop"
    )
    only.add_argument(
        "--train-only",
        action="store_true",
        help="no evaluate step: the train steps get --weights (week 1) and week 0 is not published",
    )
    parser.add_argument(
        "--weights",
        type=blend_weights,
        default=DEFAULT_PARTNER_WEIGHTS,
        help="week 1's blend weights with --train-only, as JSON (default: a share for EASE, ALS, biased MF)",
    )
    parser.add_argument("--device", default="auto", help="the network's device: auto, cpu or cuda (auto)")
    parser.add_argument("--workdir", type=Path, default=None, help="datasets and homes (a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the home (the dataset cache always stays)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=None, help="JSON (bench/results/weekly_<shape>.json)")
    args = parser.parse_args(argv)
    for name in ("epochs", "bootstrap_epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    caps = {
        "week0_bootstrap": args.epochs if args.bootstrap_epochs is None else args.bootstrap_epochs,
        "week1_weekly": args.epochs,
    }
    workdir = args.workdir or Path(tempfile.gettempdir()) / "movierec-bench-weekly"
    home = workdir / f"home-{args.shape}-{os.getpid()}"
    os.environ["MOVIEREC_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)  # the embedded server of the fresh home: measured with the rest
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from bench.ingest import MemorySampler, dataset
    from bench.machine import machine_info
    from database import embedded
    from pipeline.core.settings import get_settings
    from pipeline.models.hybrid.config import HybridConfig

    directory, manifest = dataset(workdir, SHAPES[args.shape], args.seed)
    settings = get_settings()
    full_epochs = args.project_epochs or HybridConfig().epochs
    warm_epochs = settings.warm_start_epochs

    def projector(cap: int | None) -> Callable[[Fit], float]:
        return lambda fit: fit.projected(cap, full_epochs, warm_epochs)

    fit_log = FitLog()
    fit_logger = logging.getLogger(FIT_LOGGER)
    fit_logger.addHandler(fit_log)
    fit_logger.setLevel(logging.INFO)
    step_log = StepLog()
    # The weight search's phases (evaluate) and the blend partners' fits (train), with their seconds.
    for logger_name in ("pipeline.evaluation", "pipeline.models.blend.published"):
        logging.getLogger(logger_name).addHandler(step_log)
        logging.getLogger(logger_name).setLevel(logging.INFO)
    sampler = MemorySampler()
    sampler.start()
    weeks: dict[str, Any] = {}
    output = args.output or RESULTS_DIR / f"weekly_{args.shape}.json"
    output.parent.mkdir(parents=True, exist_ok=True)

    def write() -> dict[str, Any]:  # after every week: a run stopped in week 1 keeps week 0's figures
        report = {
            "shape": args.shape,
            "rows": SHAPES[args.shape],
            "dataset": {
                k: manifest.get(k) for k in ("rows", "users", "movies", "rated_movies", "delta_rows")
            },
            "epochs_cap": caps,
            "project_epochs_full": full_epochs,
            "project_epochs_warm": warm_epochs,
            "device": args.device,
            "evaluate_only": args.evaluate_only,
            "train_only": args.train_only,
            "weeks": weeks,
            "target_seconds": TARGET_S[args.shape],
            "target_peak_rss_mib": TARGET_RSS_MIB if args.shape == "ml25m" else None,
            "machine": machine_info(),
        }
        output.write_text(json.dumps(report, indent=2) + "\n")
        return report

    try:
        embedded.start(settings)
        sampler.watch_server(embedded.status(settings).pid)
        for name, sub in (("week0_bootstrap", "base"), ("week1_weekly", "delta"))[
            : 1 if args.evaluate_only else 2
        ]:
            log(f"--- {name}: {directory / sub}")
            week = Week(sampler, fit_log, projector(caps[name]), step_log)
            weeks[name] = run_week(week, directory / sub, args, settings, caps[name], len(weeks))
            report = write()
    finally:
        sampler.stop()
        embedded.stop(settings)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    _print(report)
    log(f"wrote {output}")
    return 0


def _model_seconds(report_path: Path) -> dict[str, dict[str, float]]:
    """Each evaluated model's fit and scoring seconds on the gate's protocol, from the evaluation report."""
    results = json.loads(report_path.read_text())["results"]
    rows = results.get("temporal") or next(iter(results.values()), {})
    return {
        model: {"fit_seconds": row.get("fit_seconds", 0.0), "eval_seconds": row.get("eval_seconds", 0.0)}
        for model, row in rows.items()
    }


def _print(report: dict[str, Any]) -> None:
    from pipeline.evaluation.report import sample_line

    caps = report["epochs_cap"]
    print(f"\nweekly run at {report['shape']} shape ({report['rows']:,} ratings), device {report['device']}")
    if any(cap is not None for cap in caps.values()):
        print(
            f"capped fits projected at {report['project_epochs_full']} (from scratch) / "
            f"{report['project_epochs_warm']} (warm) epochs"
        )
    for name, week in report["weeks"].items():
        cap = caps.get(name)
        print(f"\n{name}: " + (f"network fits capped at {cap} epochs" if cap else "network fits uncapped"))
        print(f"  {'step':<9} {'seconds':>9} {'projected':>10} {'peak RSS MiB':>13} {'server MiB':>11}  fits")
        for s in week["steps"]:
            fits = ", ".join(
                f"{'warm' if f['warm'] else 'full'} {f['ratings']:,} x {f['epochs']} ep "
                f"(best {f['best_epoch']}) {f['seconds']:.0f} s"
                + (f", {f['epoch_ratings']:,} an epoch" if f["epoch_ratings"] != f["ratings"] else "")
                for f in s["fits"]
            )
            print(
                f"  {s['name']:<9} {s['seconds']:>9,.1f} {s['projected_seconds']:>10,.1f} "
                f"{s['peaks']['bench_mib']:>13,.0f} {s['peaks']['server_sum_mib']:>11,.0f}  {fits}"
            )
        print(
            f"  {'total':<9} {week['seconds']:>9,.1f} {week['projected_seconds']:>10,.1f} "
            f"{week['peak_bench_mib']:>13,.0f} {week['peak_server_sum_mib']:>11,.0f}"
        )
        sample = next((s["detail"].get("sample") for s in week["steps"] if s["name"] == "evaluate"), None)
        if sample:
            print(f"  evaluate: {sample_line(sample)}")
        for s in week["steps"]:
            models = s["detail"].get("models") or {}
            if models:
                shown = ", ".join(
                    f"{m} {t['fit_seconds']:,.0f}+{t['eval_seconds']:,.0f}" for m, t in models.items()
                )
                print(f"  {s['name']}'s models (fit+score s; the blend's fit is its weight search): {shown}")
            for line in s.get("messages", []):
                print(f"  {s['name']}: {line}")
        train = next((s["detail"] for s in week["steps"] if s["name"] == "train"), {})
        if train:
            print(f"  train step: {train['kind']} training, {train['reason']}")
    weekly = report["weeks"].get("week1_weekly")
    if weekly:
        total = weekly["projected_seconds"]
        verdict = "met" if total <= report["target_seconds"] else "MISSED"
        print(
            f"\nweekly run (week 1): {total / 60:,.1f} min "
            f"{'measured' if caps.get('week1_weekly') is None else 'projected'}, "
            f"target {report['target_seconds'] / 60:,.0f} min: {verdict} "
            f"({total / report['target_seconds']:.2f}x the target)"
        )


if __name__ == "__main__":
    sys.exit(main())
