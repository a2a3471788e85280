"""The weekly pipeline as steps: what the Airflow DAG's tasks and ``movierec run`` call.

Every step takes and returns plain JSON-able values (Airflow passes them between tasks), reads the one
settings object, and is safe to re-run. ``as_of`` is the data cut-off as an ISO-8601 string (the DAG run's
logical date): ratings after it are invisible to every step, so a backfill rebuilds what each past week
would have published.

Order: fetch -> ingest -> check_data_quality -> evaluate -> train -> promote -> publish -> report.
Evaluation comes before the final training because the published blend's weights are chosen there, on
validation data carved out of the evaluation's train split.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import DataQualityError, InputError
from pipeline.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_DATASET = "ml-100k"
MAX_REJECT_SHARE = 0.05
MIN_RATINGS = 1_000


def parse_as_of(value: str | datetime | None) -> datetime | None:
    """An ISO-8601 date or instant as an aware UTC datetime (a bare date means its midnight UTC)."""
    if value is None or value == "":
        return None
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _engine(settings: Settings) -> Any:
    from database.engine import get_engine
    from database.migrate import upgrade

    engine = get_engine(settings)
    upgrade(engine)  # idempotent: a fresh database (or a new release) is brought to head first
    return engine


def fetch_data(dataset: str | None = DEFAULT_DATASET, source: str | None = None, *,
               settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """The directory to ingest: ``source`` as given, or the named dataset downloaded (cached, checksummed)."""
    settings = settings or get_settings()
    if source:
        directory = Path(source).expanduser().resolve()
        if not directory.is_dir():
            raise InputError(f"source directory {directory} does not exist")  # no retry can fix it
        return {"directory": str(directory), "dataset": dataset or directory.name, "source": str(directory)}
    from pipeline.datasets import fetch_dataset

    name = dataset or DEFAULT_DATASET
    fetched = fetch_dataset(name, settings, progress=progress, echo=log.warning)
    return {"directory": str(fetched.path), "dataset": name, "source": fetched.source}


def ingest_data(directory: str, dataset: str, *, settings: Settings | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Load the directory into PostgreSQL (validated, idempotent); returns the ingest run's counts."""
    settings = settings or get_settings()
    from pipeline.ingest import ingest_directory

    result = ingest_directory(_engine(settings), Path(directory), dataset=dataset, source=directory,
                              progress=progress)
    return {"ingest_run_id": result.ingest_run_id, "rows_accepted": result.rows_accepted,
            "rows_rejected": result.rows_rejected, "counts": dict(result.counts), "dataset": dataset}


def check_data_quality(ingest: dict[str, Any], max_reject_share: float = MAX_REJECT_SHARE,
                       min_ratings: int = MIN_RATINGS, *, settings: Settings | None = None) -> dict[str, Any]:
    """Fail the run when too many input rows were rejected or too few ratings are in the database."""
    from sqlalchemy import text

    settings = settings or get_settings()
    accepted, rejected = int(ingest["rows_accepted"]), int(ingest["rows_rejected"])
    share = rejected / max(accepted + rejected, 1)
    with _engine(settings).connect() as conn:
        ratings = int(conn.execute(text("SELECT count(*) FROM ratings")).scalar_one())
        users = int(conn.execute(text("SELECT count(DISTINCT user_id) FROM ratings")).scalar_one())
    report = {"rejected_share": round(share, 6), "rows_rejected": rejected, "ratings": ratings, "users": users,
              "max_reject_share": max_reject_share}
    if share > max_reject_share:
        raise DataQualityError(
            f"{rejected:,} of {accepted + rejected:,} input rows rejected ({share:.1%} > {max_reject_share:.1%}); "
            f"see rejected_rows WHERE ingest_run_id = {ingest['ingest_run_id']}")
    if ratings < min_ratings:
        raise DataQualityError(f"only {ratings:,} ratings in the database (< {min_ratings:,}): too few to train on")
    return report


def hybrid_config(epochs: int | None = None) -> Any:
    """The default ``HybridConfig``, with ``epochs`` as the maximum when given."""
    from pipeline.model import HybridConfig

    return HybridConfig(epochs=epochs) if epochs else HybridConfig()


def evaluate_model(as_of: str | None, epochs: int | None = None, device: str = "auto", *,
                   settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """The gate's protocol beside the baselines on data up to ``as_of``; chooses the blend weights."""
    from pipeline.features import load_training_data
    from pipeline.registry import json_safe
    from pipeline.training import PRIMARY_PROTOCOL, evaluate_all, published_metrics, write_report

    settings = settings or get_settings()
    cutoff = parse_as_of(as_of)
    data = load_training_data(_engine(settings), cutoff, device="cpu", progress=progress)
    outcome = evaluate_all(data, hybrid_config(epochs), device=device, protocols=(PRIMARY_PROTOCOL,), cold_start=False,
                           progress=progress)
    published, baselines = published_metrics(outcome)
    return json_safe({"as_of": as_of, "dataset": data.dataset, "report_path": str(write_report(settings, outcome)),
                   "blend_weight": outcome.blend_weight, "rating_weight": outcome.rating_weight,
                   "rerank_weight": outcome.rerank_weight,
                   "metrics": published, "baselines": baselines})


def train_model(as_of: str | None, evaluation: dict[str, Any], epochs: int | None = None, device: str = "auto", *,
                settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """The model to publish, on every rating up to ``as_of``, logged to MLflow and registered."""
    from pipeline.features import load_training_data
    from pipeline.registry import log_training_run
    from pipeline.training import train_published

    settings = settings or get_settings()
    cutoff = parse_as_of(as_of)
    data = load_training_data(_engine(settings), cutoff, device="cpu", progress=progress)
    published, result = train_published(data, hybrid_config(epochs), float(evaluation["blend_weight"]),
                                        float(evaluation["rating_weight"]), float(evaluation.get("rerank_weight", 0.0)),
                                        device=device, progress=progress)
    run = log_training_run(settings, published, result, evaluation["metrics"], evaluation["baselines"],
                           dataset=data.dataset, data_cutoff=cutoff,
                           artifacts={"evaluation.json": Path(evaluation["report_path"])})
    return {"run_id": run.run_id, "version": run.registered_version, "model_uri": run.model_uri,
            "params": published.network.config.to_dict(),
            "dataset": data.dataset, "seconds": round(result.seconds, 1), "best_epoch": result.best_epoch,
            "blend": published.describe()}


def promote_model(training: dict[str, Any], evaluation: dict[str, Any], as_of: str | None, *,
                  settings: Settings | None = None) -> dict[str, Any]:
    """The promotion gate on the primary ranking metric; records the decision (MLflow and model_versions)."""
    from pipeline.registry import RunInfo, json_safe, promote_if_better
    from pipeline.training import PRIMARY_METRIC, PRIMARY_PROTOCOL

    settings = settings or get_settings()
    run = RunInfo(training["run_id"], training["model_uri"], int(training["version"]))
    decision = promote_if_better(settings, _engine(settings), run, dataset=training["dataset"],
                                 data_cutoff=parse_as_of(as_of), protocol=PRIMARY_PROTOCOL,
                                 primary_metric=PRIMARY_METRIC, metrics=evaluation["metrics"],
                                 params=training.get("params") or hybrid_config().to_dict())
    return json_safe({"promoted": decision.promoted, "reason": decision.reason, "version": decision.version,
                   "champion_version": decision.version if decision.promoted else decision.champion_version,
                   "new_value": decision.new_value, "champion_value": decision.champion_value})


def publish_recommendations(as_of: str | None, top_n: int = 100, *, settings: Settings | None = None,
                            device: str = "cpu", progress: bool = False,
                            candidates: int | None = None) -> dict[str, Any]:
    """Score every user with the champion (whichever the gate kept) and publish the lists atomically.
    ``candidates``: movies per user the rating head re-ranks (0: every movie; None: the batch's default)."""
    from pipeline.batch import publish_recommendations as publish
    from pipeline.ranking import DEFAULT_CANDIDATES
    from pipeline.registry import load_champion

    settings = settings or get_settings()
    engine = _engine(settings)
    model, version = load_champion(settings, device=device)
    return publish(engine, model, version, as_of=parse_as_of(as_of), top_n_items=top_n, progress=progress,
                   candidates=DEFAULT_CANDIDATES if candidates is None else candidates).to_dict()


def run_report(results: dict[str, Any]) -> str:
    """A few lines on what the run did, for the task log and the terminal."""
    lines = []
    if ingest := results.get("ingest"):
        lines.append(f"ingest run {ingest['ingest_run_id']}: {ingest['rows_accepted']:,} rows accepted, "
                     f"{ingest['rows_rejected']:,} rejected")
    if evaluation := results.get("evaluation"):
        temporal = evaluation["metrics"].get("temporal", {})
        ease = evaluation["baselines"].get("ease", {}).get("temporal", {})
        def fig(figures: dict[str, Any], key: str) -> str:
            return f"{figures[key]:.4f}" if figures.get(key) is not None else "n/a"

        lines.append(f"evaluation (temporal): published blend NDCG@10 {fig(temporal, 'ndcg@10')}, network alone "
                     f"{fig(temporal, 'network_ndcg@10')}, EASE {fig(ease, 'ndcg@10')} "
                     f"(weights: ranking {evaluation['blend_weight']}, rating head {evaluation.get('rerank_weight', 0.0)}, "
                     f"ratings {evaluation['rating_weight']})")
    if training := results.get("training"):
        lines.append(f"trained movierec-hybrid v{training['version']} in {training['seconds']} s "
                     f"(MLflow run {training['run_id']}; {training['blend']})")
    if decision := results.get("promotion"):
        lines.append(f"gate: {decision['reason']}")
    if batch := results.get("publication"):
        lines.append(f"published batch {batch['batch_id']} scored by v{batch['registered_version']}: "
                     f"{batch['users']:,} users ({batch['fallback_users']:,} on the fallback list), "
                     f"{batch['rows']:,} rows")
    return "\n".join(lines)


def run_weekly(dataset: str | None = DEFAULT_DATASET, source: str | None = None, *, as_of: str | None = None,
               top_n: int = 100, epochs: int | None = None, device: str = "auto",
               max_reject_share: float = MAX_REJECT_SHARE, settings: Settings | None = None,
               progress: bool = False, on_step: Any = None) -> dict[str, Any]:
    """Every step in order, in this process (``movierec run``); the DAG runs the same steps as tasks."""
    settings = settings or get_settings()
    results: dict[str, Any] = {}

    def step(name: str, value: dict[str, Any]) -> dict[str, Any]:
        results[name] = value
        if on_step:
            on_step(name, value)
        return value

    fetched = step("fetch", fetch_data(dataset, source, settings=settings, progress=progress))
    ingest = step("ingest", ingest_data(fetched["directory"], fetched["dataset"], settings=settings,
                                        progress=progress))
    step("quality", check_data_quality(ingest, max_reject_share, settings=settings))
    evaluation = step("evaluation", evaluate_model(as_of, epochs, device, settings=settings, progress=progress))
    training = step("training", train_model(as_of, evaluation, epochs, device, settings=settings,
                                            progress=progress))
    step("promotion", promote_model(training, evaluation, as_of, settings=settings))
    step("publication", publish_recommendations(as_of, top_n, settings=settings, progress=progress))
    results["report"] = run_report(results)
    return results
