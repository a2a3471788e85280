"""The weekly pipeline as steps: what the Airflow DAG's tasks, ``movierec run`` and ``movierec train`` call.

One function per DAG task, named like it: ``fetch`` -> ``ingest`` -> ``quality`` -> ``evaluate`` -> ``train``
-> ``promote`` -> ``prepare_batch`` -> ``score_shard`` (one task per shard) -> ``publish`` -> ``report``;
``publish`` alone (no ``prepared`` batch) does the last three in one process, as ``movierec run`` and
``movierec recommend`` call it. Every step takes and returns plain JSON values (typed here as
``TypedDict``s; Airflow passes them between tasks as XComs), reads the one settings object, and is safe to
re-run. ``as_of`` is the data cut-off as an ISO-8601 string (the DAG run's logical date): ratings after it are
invisible to every step, so a backfill rebuilds what each past week would have published.

Evaluation comes before the final training because the published blend's weights are chosen there, on
validation data carved out of the evaluation's train split. ``ingest`` brings the schema to head; the other
steps expect it there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from pipeline.core.dates import parse_as_of
from pipeline.core.defaults import (
    DEFAULT_CANDIDATES,
    DEFAULT_DATASET,
    DEFAULT_DIVERSITY,
    DEFAULT_POPULARITY_PENALTY,
    DEFAULT_TOP_N,
    MAX_REJECT_SHARE,
    PRIMARY_METRIC,
    PRIMARY_PROTOCOL,
    REGISTERED_MODEL,
)
from pipeline.core.errors import InputError, MovierecError
from pipeline.core.jsonsafe import json_safe
from pipeline.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pipeline.batch.publish import Publication
    from pipeline.batch.shards import Shard, ShardResult
    from pipeline.features.loading import TrainingData
    from pipeline.ingest.quality import QualityReport
    from pipeline.models.blend.weights import WeightsDict
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.warm_start import TrainingPlan, WarmStart
    from pipeline.models.rerank import Rerank

log = logging.getLogger(__name__)


class Fetched(TypedDict):
    directory: str
    dataset: str
    source: str


class Ingested(TypedDict):
    ingest_run_id: int
    rows_accepted: int
    rows_rejected: int
    counts: dict[str, int]
    dataset: str


class Evaluation(TypedDict):
    as_of: str | None
    dataset: str
    report_path: str
    weights: WeightsDict  # BlendWeights.to_dict()
    metrics: dict[str, dict[str, float]]  # protocol -> the published blend's figures (network_* beside)
    baselines: dict[str, dict[str, Any]]  # model -> protocol -> figures
    configs: NotRequired[dict[str, dict[str, Any]]]  # model -> hyperparameters (the network's: its params)
    # The diversity trade-off on the validation split: one row per re-rank setting (weight_search)
    tradeoff: NotRequired[list[dict[str, float]]]
    # Blend member -> the saved fit the train step's fit of it starts from (members.save_starts)
    member_starts: NotRequired[dict[str, str]]
    # The evaluation's network, saved when there was no champion: the train step's start (training_plan)
    network_start: NotRequired[str]
    # Its validation network: the train step logs it with the run, next week's evaluation starts from it
    validation_network: NotRequired[str]
    # The fixed sample of users the evaluation ran on (EvaluationReport.sample), when it ran on one
    sample: NotRequired[dict[str, int]]


class Training(TypedDict):
    run_id: str
    version: int
    model_uri: str
    params: dict[str, Any]
    dataset: str
    seconds: float
    best_epoch: int
    blend: str
    kind: NotRequired[str]  # how the network was trained: "warm" (from the champion's) or "full"
    training_reason: NotRequired[str]


class Promotion(TypedDict):
    promoted: bool
    reason: str
    version: int | None
    champion_version: int | None
    new_value: float | None
    champion_value: float | None
    guardrails: list[dict[str, Any]]


def _engine(settings: Settings) -> Engine:
    from database.engine import get_engine

    return get_engine(settings)


def _training_data(as_of: str | None, settings: Settings, progress: bool) -> TrainingData:
    """The ratings, features and text embeddings up to the cut-off (embedded on the CPU, cached)."""
    from pipeline.features.loading import load_training_data

    return load_training_data(_engine(settings), parse_as_of(as_of), device="cpu", progress=progress)


def hybrid_config(epochs: int | None = None) -> HybridConfig:
    """The default ``HybridConfig``, with ``epochs`` as the maximum when given."""
    from pipeline.models.hybrid.config import HybridConfig

    return HybridConfig(epochs=epochs) if epochs else HybridConfig()


def fetch(
    dataset: str | None = DEFAULT_DATASET,
    source: str | None = None,
    *,
    settings: Settings | None = None,
    progress: bool = False,
) -> Fetched:
    """The directory to ingest: ``source`` as given, or the named dataset downloaded (cached, checksummed)."""
    settings = settings or get_settings()
    if source:
        directory = Path(source).expanduser().resolve()
        if not directory.is_dir():
            raise InputError(f"source directory {directory} does not exist")  # no retry can fix it
        return Fetched(directory=str(directory), dataset=dataset or directory.name, source=str(directory))
    from pipeline.ingest.datasets import fetch_dataset

    name = dataset or DEFAULT_DATASET
    fetched = fetch_dataset(name, settings, progress=progress, echo=log.warning)
    return Fetched(directory=str(fetched.path), dataset=name, source=fetched.source)


def ingest(fetched: Fetched, *, settings: Settings | None = None, progress: bool = False) -> Ingested:
    """Bring the schema to head, then load the fetched directory into PostgreSQL (validated, idempotent)."""
    from database.migrate import upgrade
    from pipeline.ingest.loader import ingest_directory

    settings = settings or get_settings()
    engine = _engine(settings)
    upgrade(engine)  # idempotent: a fresh database (or a new release) is brought to head first
    result = ingest_directory(
        engine,
        Path(fetched["directory"]),
        dataset=fetched["dataset"],
        source=fetched["directory"],
        progress=progress,
    )
    return Ingested(
        ingest_run_id=result.ingest_run_id,
        rows_accepted=result.rows_accepted,
        rows_rejected=result.rows_rejected,
        counts=dict(result.counts),
        dataset=fetched["dataset"],
    )


def quality(
    ingested: Ingested, max_reject_share: float = MAX_REJECT_SHARE, *, settings: Settings | None = None
) -> QualityReport:
    """Fail the run when too many input rows were rejected or too few ratings are in the database."""
    from pipeline.ingest.quality import check_data_quality

    return check_data_quality(
        _engine(settings or get_settings()),
        int(ingested["ingest_run_id"]),
        int(ingested["rows_accepted"]),
        int(ingested["rows_rejected"]),
        max_reject_share=max_reject_share,
    )


def evaluate(
    as_of: str | None,
    epochs: int | None = None,
    device: str = "auto",
    *,
    protocols: Sequence[str] = (PRIMARY_PROTOCOL,),
    settings: Settings | None = None,
    progress: bool = False,
    data: TrainingData | None = None,
    full_retrain: bool = False,
) -> Evaluation:
    """Every model on the same splits of the data up to ``as_of`` (the gate's protocol by default), with the
    evaluation-only models of ``settings.weekly_models``; chooses the blend weights; writes the report (a
    failed model is a row with its error; one the published blend is built from fails the step).
    ``data``: already loaded for this cut-off (one process). The validation network warm-starts from the
    champion's evaluation's unless ``full_retrain`` or the warm-start policy says otherwise
    (``validation_plan``)."""
    from pipeline.evaluation.benchmark import evaluate_all, published_metrics, write_report
    from pipeline.evaluation.weight_search import tradeoff_table
    from pipeline.models.blend.members import save_starts
    from pipeline.registry.champion import champion_version

    settings = settings or get_settings()
    data = data if data is not None else _training_data(as_of, settings, progress)
    members = offered_members(settings, len(data.interactions))
    outcome = evaluate_all(
        data,
        hybrid_config(epochs),
        device=device,
        protocols=tuple(protocols),
        cold_start=False,
        progress=progress,
        extra=settings.weekly_models,
        members=members,
        warm_epochs=settings.warm_start_epochs,
        autorec_max_cells=settings.autorec_max_cells,
        max_users=settings.evaluation_user_cap,
        validation_plan=validation_plan(data, hybrid_config(epochs), settings, full=full_retrain),
    )
    report_path = write_report(settings, outcome)  # written first: it holds a failed model's error
    outcome.check_published()
    published, baselines = published_metrics(outcome)
    evaluation = Evaluation(
        as_of=as_of,
        dataset=data.dataset,
        report_path=str(report_path),
        weights=outcome.weights.to_dict(),
        metrics=published,
        baselines=baselines,
        configs={name: c for name, c in outcome.report.configs.items() if name != "hybrid"},
        tradeoff=tradeoff_table(outcome.weights.figures),
    )
    # Beside the report, as shared between tasks as it is: what the train step's fits start from.
    starts = report_path.with_suffix("")
    evaluation["member_starts"] = save_starts(outcome.members, starts)
    if outcome.report.sample:
        evaluation["sample"] = outcome.report.sample
    if outcome.network is not None and champion_version(settings) is None:
        evaluation["network_start"] = str(outcome.network.save(starts / "network"))
    if outcome.validation_network is not None:
        evaluation["validation_network"] = str(outcome.validation_network.save(starts / "validation-network"))
    return json_safe(evaluation)


def validation_plan(data: TrainingData, cfg: HybridConfig, settings: Settings, *, full: bool) -> TrainingPlan:
    """Warm start the evaluation's validation network from the champion's evaluation's, or train it from
    scratch (``pipeline.evaluation.validation_chain``; the same policy as the train step's network)."""
    from pipeline.evaluation.validation_chain import SOURCE
    from pipeline.models.hybrid.warm_start import plan_training
    from pipeline.registry.champion import champion_evaluation_network

    start = None if full else champion_evaluation_network(settings)
    return plan_training(
        start, cfg, data.dataset, _cutoff(data), full=full, policy=_warm_start(settings), source=SOURCE
    )


def _cutoff(data: TrainingData) -> datetime:
    """The data's cut-off: ``as_of``, or the latest rating's time when the data has none."""
    return data.as_of or datetime.fromtimestamp(int(data.interactions.timestamps.max()), UTC)


def _warm_start(settings: Settings) -> WarmStart:
    from pipeline.models.hybrid.warm_start import WarmStart

    return WarmStart(
        settings.warm_start_epochs, settings.full_retrain_weeks, settings.warm_start_epoch_ratings
    )


def offered_members(settings: Settings, n_ratings: int) -> tuple[str, ...]:
    """The blend members this run offers (``Settings.members_for``), logging when its size leaves them out."""
    members = settings.members_for(n_ratings)
    if settings.blend_members and not members:
        log.info(
            "blend members %s not offered: %d ratings, above MOVIEREC_BLEND_MEMBERS_MAX_RATINGS (%d)",
            ",".join(settings.blend_members),
            n_ratings,
            settings.blend_members_max_ratings,
        )
    return members


def train(
    as_of: str | None,
    evaluation: Evaluation,
    epochs: int | None = None,
    device: str = "auto",
    *,
    settings: Settings | None = None,
    progress: bool = False,
    data: TrainingData | None = None,
    processes: int | None = None,
    full_retrain: bool = False,
) -> Training:
    """The model to publish, on every rating up to ``as_of`` with the evaluation's weights, logged to MLflow
    and registered. ``data``: already loaded for this cut-off (one process). ``processes``: data-parallel
    training processes (``torchrun``); None: ``settings.train_processes`` (``MOVIEREC_TRAIN_PROCESSES``).
    The network warm-starts from the champion's unless ``full_retrain`` or the warm-start policy says
    otherwise (``training_plan``)."""
    from pipeline.models.blend.fit import train_published
    from pipeline.models.blend.weights import BlendWeights
    from pipeline.registry.tracking import log_training_run

    settings = settings or get_settings()
    data = data if data is not None else _training_data(as_of, settings, progress)
    cfg = hybrid_config(epochs)
    plan = training_plan(data, cfg, settings, full=full_retrain, seed=evaluation.get("network_start"))
    log.info("training: %s", plan.reason)
    published, result = train_published(
        data,
        cfg,
        BlendWeights.from_dict(evaluation["weights"]),
        device=device,
        progress=progress,
        processes=processes or settings.train_processes,
        plan=plan,
        warm_epochs=min(settings.warm_start_epochs, cfg.epochs),
        member_starts=evaluation.get("member_starts"),
        member_epochs=settings.warm_start_epochs,
    )
    run = log_training_run(
        settings,
        published,
        result,
        evaluation["metrics"],
        evaluation["baselines"],
        dataset=data.dataset,
        data_cutoff=data.as_of,
        artifacts=_evaluation_artifacts(evaluation),
        configs=evaluation.get("configs", {}),
        tradeoff=evaluation.get("tradeoff", []),
    )
    return Training(
        run_id=run.run_id,
        version=run.registered_version,
        model_uri=run.model_uri,
        params=published.network.config.to_dict(),
        dataset=data.dataset,
        seconds=round(result.seconds, 1),
        best_epoch=result.best_epoch,
        blend=published.describe(),
        kind=str(published.network.meta.get("training", "full")),
        training_reason=str(published.network.meta.get("training_reason", "")),
    )


def _evaluation_artifacts(evaluation: Evaluation) -> dict[str, Path]:
    """What the training run keeps of its evaluation: the report, and the validation network next week's
    evaluation starts from."""
    from pipeline.registry.store import EVALUATION_NETWORK_ARTIFACT

    artifacts = {"evaluation.json": Path(evaluation["report_path"])}
    if evaluation.get("validation_network"):
        artifacts[EVALUATION_NETWORK_ARTIFACT] = Path(evaluation["validation_network"])
    return artifacts


def training_plan(
    data: TrainingData, cfg: HybridConfig, settings: Settings, *, full: bool, seed: str | None = None
) -> TrainingPlan:
    """Warm start from the champion's network or train from scratch (``warm_start.plan_training``), for the
    data's cut-off: ``as_of``, or the latest rating's time when the data has none. ``seed``: the directory
    of the evaluation's network (``Evaluation.network_start``), the start when there is no champion; one
    that cannot be read is logged and not used."""
    from pipeline.models.hybrid.artifact import HybridArtifact
    from pipeline.models.hybrid.warm_start import plan_training
    from pipeline.registry.champion import champion_network

    champion = None if full else champion_network(settings)
    seeded = None
    if seed and not full and champion is None:
        try:
            seeded = HybridArtifact.load(Path(seed))
        except (OSError, ValueError) as exc:
            log.warning("the evaluation's network at %s cannot start this one (%s)", seed, exc)
    return plan_training(
        champion[0] if champion else None,
        cfg,
        data.dataset,
        _cutoff(data),
        full=full,
        policy=_warm_start(settings),
        source_version=champion[1] if champion else None,
        seed=seeded,
    )


def promote(
    training: Training, evaluation: Evaluation, as_of: str | None, *, settings: Settings | None = None
) -> Promotion:
    """The promotion gate on the primary ranking metric and the release guardrails; records the decision
    (MLflow and model_versions)."""
    from pipeline.registry.gate import promote_if_better
    from pipeline.registry.tracking import RunInfo

    settings = settings or get_settings()
    run = RunInfo(training["run_id"], training["model_uri"], int(training["version"]))
    decision = promote_if_better(
        settings,
        _engine(settings),
        run,
        dataset=training["dataset"],
        data_cutoff=parse_as_of(as_of),
        protocol=PRIMARY_PROTOCOL,
        primary_metric=PRIMARY_METRIC,
        metrics=evaluation["metrics"],
        params=training.get("params") or hybrid_config().to_dict(),
    )
    return json_safe(
        Promotion(
            promoted=decision.promoted,
            reason=decision.reason,
            version=decision.version,
            champion_version=decision.version if decision.promoted else decision.champion_version,
            new_value=decision.new_value,
            champion_value=decision.champion_value,
            guardrails=list(decision.guardrails),
        )
    )


def _rerank(diversity: float | None, popularity_penalty: float | None) -> Rerank:
    from pipeline.models.rerank import Rerank

    return Rerank(
        DEFAULT_DIVERSITY if diversity is None else float(diversity),
        DEFAULT_POPULARITY_PENALTY if popularity_penalty is None else float(popularity_penalty),
    )


def prepare_batch(
    as_of: str | None,
    top_n: int = DEFAULT_TOP_N,
    *,
    shards: int | None = None,
    settings: Settings | None = None,
    candidates: int | None = None,
    diversity: float | None = None,
    popularity_penalty: float | None = None,
) -> list[Shard]:
    """Open a pending batch for the champion and cut the cut-off's users into ``shards`` ranges (None: one
    per ``SHARD_USERS`` users): one ``Shard`` per ``score_shard`` task, each carrying the batch's settings.
    Bad settings are an ``InputError`` before anything is written."""
    from pipeline.batch.publish import ListSettings
    from pipeline.batch.shards import check_shards, prepare_shards
    from pipeline.registry.champion import champion_version

    check_shards(shards)
    lists = ListSettings(
        top_n=top_n,
        candidates=DEFAULT_CANDIDATES if candidates is None else candidates,
        rerank=_rerank(diversity, popularity_penalty),
    )
    settings = settings or get_settings()
    version = champion_version(settings)
    if version is None:
        raise MovierecError(f"no {REGISTERED_MODEL} champion yet: train a model and let the gate accept it")
    return prepare_shards(_engine(settings), version, as_of=parse_as_of(as_of), lists=lists, shards=shards)


def score_shard(shard: Shard, *, settings: Settings | None = None, device: str = "cpu") -> ShardResult:
    """Write the lists of one shard's users into its pending batch with the champion the batch was prepared
    with; a retry replaces the rows of the try before."""
    from pipeline.batch.shards import score_shard as write_shard
    from pipeline.registry.champion import load_champion

    settings = settings or get_settings()
    model, _ = load_champion(settings, device=device, version=int(shard["batch"]["registered_version"]))
    return write_shard(_engine(settings), model, shard, lock_timeout_s=settings.lock_timeout_s)


def publish(
    as_of: str | None,
    top_n: int = DEFAULT_TOP_N,
    *,
    settings: Settings | None = None,
    device: str = "cpu",
    progress: bool = False,
    candidates: int | None = None,
    diversity: float | None = None,
    popularity_penalty: float | None = None,
    force: bool = False,
    prepared: Sequence[Shard] | None = None,
    scored: Sequence[ShardResult] = (),
) -> Publication:
    """Score every user with the champion (whichever the gate kept) and publish the lists atomically.
    ``candidates``: movies per user the rating head re-ranks (0: every movie; None: the default).
    ``diversity`` / ``popularity_penalty``: the re-rank's strength and penalty (None: the defaults); a value
    out of bounds is an ``InputError`` before anything is loaded. ``force``: publish even when the
    publication check refuses the lists (``pipeline.batch.release``; else ``ListSetRefused``).

    ``prepared``: the shards of a batch ``prepare_batch`` opened and ``score_shard`` wrote (``scored``:
    their results): then nothing is scored here, and the list settings are the batch's (``as_of``,
    ``top_n``, ``candidates`` and the re-rank's are ignored): that batch is checked and published."""
    from pipeline.batch.publish import publish_batch
    from pipeline.registry.champion import load_champion

    settings = settings or get_settings()
    engine = _engine(settings)
    if prepared is not None:
        from pipeline.batch.shards import publish_shards

        version = int(prepared[0]["batch"]["registered_version"]) if prepared else None
        model, _ = load_champion(settings, device=device, version=version)
        return publish_shards(
            engine, model, prepared, scored, force=force, lock_timeout_s=settings.lock_timeout_s
        )
    rerank = _rerank(diversity, popularity_penalty)
    model, version = load_champion(settings, device=device)
    return publish_batch(
        engine,
        model,
        version,
        as_of=parse_as_of(as_of),
        top_n=top_n,
        progress=progress,
        candidates=DEFAULT_CANDIDATES if candidates is None else candidates,
        lock_timeout_s=settings.lock_timeout_s,
        rerank=rerank,
        force=force,
    )


def report(results: dict[str, Any]) -> str:
    """A few lines on what the run did, for the task log and the terminal."""
    from pipeline.registry.report import list_figures_line, tradeoff_lines

    lines = []
    if ingested := results.get("ingest"):
        lines.append(
            f"ingest run {ingested['ingest_run_id']}: {ingested['rows_accepted']:,} rows accepted, "
            f"{ingested['rows_rejected']:,} rejected"
        )
    if evaluation := results.get("evaluation"):
        temporal = evaluation["metrics"].get("temporal", {})
        ease = evaluation["baselines"].get("ease", {}).get("temporal", {})
        weights = evaluation["weights"]

        def fig(figures: dict[str, Any], key: str) -> str:
            return f"{figures[key]:.4f}" if figures.get(key) is not None else "n/a"

        lines.append(
            f"evaluation (temporal): published blend NDCG@10 {fig(temporal, 'ndcg@10')}, network alone "
            f"{fig(temporal, 'network_ndcg@10')}, EASE {fig(ease, 'ndcg@10')} "
            f"(weights: ranking network {weights['weight']}, ALS {weights.get('als_weight', 0.0)}, "
            + "".join(f"{name} {share:.3g}, " for name, share in (weights.get("members") or {}).items())
            + f"rating head {weights['rerank_weight']}, "
            f"ratings network {weights['rating_weight']}, AutoRec {weights.get('autorec_weight', 0.0)})"
        )
        if table := tradeoff_lines(evaluation.get("tradeoff", [])):
            lines.append("diversity trade-off on the validation split (top 10):")
            lines.extend(f"  {line}" for line in table)
    if training := results.get("training"):
        lines.append(
            f"trained {REGISTERED_MODEL} v{training['version']} in {training['seconds']} s "
            f"(MLflow run {training['run_id']}; {training['blend']})"
        )
        if reason := training.get("training_reason"):
            lines.append(f"network: {training.get('kind', 'full')} training, {reason}")
    if decision := results.get("promotion"):
        lines.append(f"gate: {decision['reason']}")
    if batch := results.get("publication"):
        lines.append(
            f"published batch {batch['batch_id']} scored by v{batch['registered_version']}: "
            f"{batch['users']:,} users ({batch['fallback_users']:,} on the fallback list), "
            f"{batch['rows']:,} rows"
        )
        if figures := batch.get("list_metrics"):
            lines.append(f"published lists: {list_figures_line(figures)}")
    return "\n".join(lines)


OnStep = Callable[[str, Any], None]


class _Results(dict[str, Any]):
    """Step results by name, each also handed to ``on_step`` as it arrives (the CLI's progress lines)."""

    def __init__(self, on_step: OnStep | None) -> None:
        super().__init__()
        self.on_step = on_step

    def add(self, name: str, value: Any) -> Any:
        self[name] = value
        if self.on_step:
            self.on_step(name, value)
        return value


def train_steps(
    as_of: str | None,
    epochs: int | None = None,
    device: str = "auto",
    *,
    protocols: Sequence[str] = (PRIMARY_PROTOCOL,),
    settings: Settings | None = None,
    progress: bool = False,
    on_step: OnStep | None = None,
    full_retrain: bool = False,
) -> dict[str, Any]:
    """``evaluate`` -> ``train`` -> ``promote`` in this process: ``movierec train``, and the middle of
    ``run_all``; the DAG runs the same three steps as tasks, each loading the data itself."""
    settings = settings or get_settings()
    data = _training_data(as_of, settings, progress)
    results = _Results(on_step)
    step = results.add
    evaluation = step(
        "evaluation",
        evaluate(
            as_of,
            epochs,
            device,
            protocols=protocols,
            settings=settings,
            progress=progress,
            data=data,
            full_retrain=full_retrain,
        ),
    )
    training = step(
        "training",
        train(
            as_of,
            evaluation,
            epochs,
            device,
            settings=settings,
            progress=progress,
            data=data,
            full_retrain=full_retrain,
        ),
    )
    step("promotion", promote(training, evaluation, as_of, settings=settings))
    return dict(results)


def run_all(
    dataset: str | None = DEFAULT_DATASET,
    source: str | None = None,
    *,
    as_of: str | None = None,
    top_n: int = DEFAULT_TOP_N,
    epochs: int | None = None,
    device: str = "auto",
    max_reject_share: float = MAX_REJECT_SHARE,
    candidates: int | None = None,
    diversity: float | None = None,
    popularity_penalty: float | None = None,
    force: bool = False,
    settings: Settings | None = None,
    progress: bool = False,
    on_step: OnStep | None = None,
    full_retrain: bool = False,
) -> dict[str, Any]:
    """Every step in order, in this process (``movierec run``); the DAG runs the same steps as tasks."""
    from pipeline.models.rerank import check_rerank

    check_rerank(diversity, popularity_penalty)  # a bad setting fails before hours of work, not after
    settings = settings or get_settings()
    results = _Results(on_step)
    step = results.add
    fetched = step("fetch", fetch(dataset, source, settings=settings, progress=progress))
    ingested = step("ingest", ingest(fetched, settings=settings, progress=progress))
    step("quality", quality(ingested, max_reject_share, settings=settings))
    results.update(
        train_steps(
            as_of,
            epochs,
            device,
            settings=settings,
            progress=progress,
            on_step=on_step,
            full_retrain=full_retrain,
        )
    )
    step(
        "publication",
        publish(
            as_of,
            top_n,
            settings=settings,
            progress=progress,
            candidates=candidates,
            diversity=diversity,
            popularity_penalty=popularity_penalty,
            force=force,
        ),
    )
    results["report"] = report(results)
    return dict(results)
