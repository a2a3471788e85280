"""
# movierec weekly

Rebuilds the published recommendation lists once a week: MovieLens ratings in, a retrained hybrid
network out (if it beats the current champion), top-N lists for every user published in one transaction.

| step | what it does (`pipeline/orchestration/steps.py`, one function per task) |
|---|---|
| `fetch` | the named dataset (checksummed download, offline ML-100K fallback) or the `source` directory |
| `ingest` | validating, idempotent load into PostgreSQL; bad lines kept in `rejected_rows` |
| `quality` | row counts and the share of rejected rows: over `max_reject_share` fails the run, no retry |
| `evaluate` | the gate's protocol (temporal) beside the baselines, data up to the cut-off; blend weights |
| `train` | the model to publish, on all data up to the cut-off, logged to MLflow and registered |
| `promote` | the promotion gate: the new version becomes `champion` only if it beats the current one |
| `prepare_batch` | a pending batch for the champion; the cut-off's users cut into `shards` user-id ranges |
| `score_shard` | one task per range (dynamic task mapping): its users' lists written into the pending batch |
| `publish` | every user listed exactly once, the publication check; the lists replace the published ones |
| `report` | a short text report of the run, in the task log and its return value |

**Why evaluate comes before train:** the published model is a blend whose weights are chosen on
validation splits during evaluation; training the final model needs them. (`movierec evaluate` runs both
protocols, random and temporal.)

**Data cut-off = logical date.** Every task reads the run's logical date as `as_of`: ratings after it are
unseen. A backfill over past weeks therefore rebuilds what each of those weeks would have published
(MovieLens' ML-100K spans 1997-09 to 1998-04; `start_date` is early enough to backfill it). A manual run
without a logical date uses all the data.

**Concurrency:** `evaluate` and `train` run in the `movierec_training` pool (1 slot, created by
`movierec airflow init`), so two runs never train at once on one GPU. `max_active_runs=1` keeps scheduled
runs one at a time; a backfill has its own limit: create it with `--max-active-runs 1` to keep its weeks in
date order, since each week's promotion gate compares with the champion the weeks before it left. Airflow
starts no run of a paused DAG, backfills included: unpause it first.

**Kubernetes:** under the KubernetesExecutor `evaluate` and `train` run in a pod with one GPU (their
`executor_config` names `deploy/kubernetes/pod-template-train.yaml`); other executors ignore it.

**Sharded scoring:** `score_shard` is mapped over the ranges `prepare_batch` planned (from the cut-off's
users only, so a retry gets the same range); with several workers the shards score side by side. Each shard
commits its rows on its own, after deleting what an earlier try of it wrote: a failed shard retries alone
and never duplicates a row. Readers see none of it: a `pending` batch is in no view, and `publish` checks
that every user of the cut-off is listed exactly once before it publishes, in one transaction as ever (a
batch with a missing user is refused and stays pending). `shards` left empty: one per 50,000 users (one
for ML-100K and ML-1M). `movierec recommend` and `movierec run` write the same lists in one process.

**Retries:** every task retries with exponential back-off; bad input (`InputError`) and failed quality
checks (`DataQualityError`: the publication check's refusal, a batch missing a user) fail at once, since
retrying cannot fix them.

Parameters (trigger form): `dataset` or `source`, `top_n`, `candidates`, `diversity`,
`popularity_penalty`, `force_publish`, `shards`, `epochs`, `device`, `train_processes`,
`full_retrain`, `max_reject_share`. Tasks run with the worker's environment: `MOVIEREC_HOME`, `DATABASE_URL`,
`MLFLOW_TRACKING_URI`, and `MOVIEREC_DEVICE` / `MOVIEREC_TRAIN_PROCESSES` when `device` /
`train_processes` is left empty. `publish` updates the asset `movierec://recommendation_batches`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import (
    Asset,
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    chain,
    dag,
    task,
)

from pipeline.core.defaults import (
    DAG_ID,
    DATASETS,
    DEFAULT_CANDIDATES,
    DEFAULT_DATASET,
    DEFAULT_DIVERSITY,
    DEFAULT_POPULARITY_PENALTY,
    DEFAULT_TOP_N,
    MAX_CANDIDATES,
    MAX_POPULARITY_PENALTY,
    MAX_REJECT_SHARE,
    MAX_SHARDS,
    MAX_TOP_N,
    SHARD_USERS,
    TRAIN_POD_TEMPLATE,
    TRAINING_POOL,
    WARM_START_MAX_AGE_WEEKS,
)

if TYPE_CHECKING:  # the tasks import steps at run time; parsing this file imports pipeline.core only
    from pipeline.batch.shards import Shard, ShardResult
    from pipeline.orchestration.steps import Evaluation, Fetched, Ingested, Training

PUBLISHED_LISTS = Asset(name="recommendation_batches", uri="movierec://recommendation_batches")
# The KubernetesExecutor starts the training tasks from this pod template (a GPU); other executors ignore it.
TRAINING_POD: dict[str, Any] = {"pod_template_file": TRAIN_POD_TEMPLATE}

default_args: dict[str, Any] = {
    "owner": "movierec",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,  # waits 2-4 min, then 4-8 min (Airflow adds jitter)
    "max_retry_delay": timedelta(minutes=30),
    "retry_policy": ExceptionRetryPolicy(
        rules=[
            RetryRule(
                exception=["pipeline.core.errors.InputError", "pipeline.core.errors.DataQualityError"],
                action=RetryAction.FAIL,
                reason="bad input: retrying cannot fix it",
            ),
        ]
    ),
}

params = {
    "dataset": Param(
        DEFAULT_DATASET,
        type="string",
        title="Dataset",
        enum=list(DATASETS),
        description="Named MovieLens dataset, downloaded with its checksum (ignored when source is set).",
    ),
    "source": Param(
        None,
        type=["null", "string"],
        title="Source directory",
        description="A directory in a GroupLens (or RecBole ML-100K) layout on the worker; "
        "overrides dataset (the data is then named after the directory).",
    ),
    "top_n": Param(
        DEFAULT_TOP_N,
        type="integer",
        minimum=1,
        maximum=MAX_TOP_N,
        title="Top N",
        description="Length of each user's published list.",
    ),
    "candidates": Param(
        DEFAULT_CANDIDATES,
        type="integer",
        minimum=0,
        maximum=MAX_CANDIDATES,
        title="Re-ranked candidates",
        description="Movies per user the network's rating head re-ranks after retrieval by "
        "the cheap terms; 0 scores every movie with every term.",
    ),
    "diversity": Param(
        DEFAULT_DIVERSITY,
        type="number",
        minimum=0,
        maximum=1,
        title="Diversity",
        description="Strength of the diversity re-rank of each list (MMR over content similarity): "
        "0 keeps the ranking, up to 1 favours movies unlike those already listed.",
    ),
    "popularity_penalty": Param(
        DEFAULT_POPULARITY_PENALTY,
        type="number",
        minimum=0,
        maximum=MAX_POPULARITY_PENALTY,
        title="Popularity penalty",
        description="Standard deviations of a user's scores taken off per standard deviation of a "
        "movie's log-popularity before the re-rank; 0: none.",
    ),
    "force_publish": Param(
        False,
        type="boolean",
        title="Publish even if the publication check refuses",
        description="Publish the new lists even when their top-10 coverage or long-tail share fell more "
        "than the guardrail's margin below the published batch's (the check's figures are kept either way).",
    ),
    "shards": Param(
        None,
        type=["null", "integer"],
        minimum=1,
        maximum=MAX_SHARDS,
        title="Scoring shards",
        description="score_shard tasks the users are split into (ranges of user ids, scored side by side "
        f"on the workers); empty: one per {SHARD_USERS:,} users.",
    ),
    "epochs": Param(
        None,
        type=["null", "integer"],
        minimum=1,
        title="Epochs",
        description="Maximum training epochs (early stopping may end sooner); empty: the model's default.",
    ),
    "device": Param(
        None,
        type=["null", "string"],
        enum=[None, "auto", "cpu", "cuda"],
        title="Device",
        description="auto uses CUDA when the worker has it; empty: the worker's MOVIEREC_DEVICE.",
    ),
    "train_processes": Param(
        None,
        type=["null", "integer"],
        minimum=1,
        title="Training processes",
        description="Data-parallel processes the train task trains the network in (torchrun's "
        "nproc_per_node: gloo on the CPU, one GPU each with CUDA); "
        "empty: the worker's MOVIEREC_TRAIN_PROCESSES.",
    ),
    "full_retrain": Param(
        False,
        type="boolean",
        title="Full retrain",
        description="Train the networks from scratch instead of warm-starting them from the champion's "
        "(the evaluation's validation network from the champion's evaluation's) "
        f"(a full retrain also happens every MOVIEREC_FULL_RETRAIN_WEEKS, default "
        f"{WARM_START_MAX_AGE_WEEKS}, and whenever the hyperparameters changed).",
    ),
    "max_reject_share": Param(
        MAX_REJECT_SHARE,
        type="number",
        minimum=0,
        maximum=1,
        title="Max rejected share",
        description="The run fails when a larger share of the ingested lines is rejected.",
    ),
}


def _as_of(logical_date: datetime | None) -> str | None:
    """The run's logical date as ISO-8601: the data cut-off (None for a run without one)."""
    return logical_date.isoformat() if logical_date is not None else None


def _device(params: dict[str, Any]) -> str:
    from pipeline.core.settings import get_settings

    return params["device"] or get_settings().device


@dag(
    dag_id=DAG_ID,
    doc_md=__doc__,
    description="Weekly: fetch, ingest, check, evaluate, train, promote, score in shards and publish "
    "top-N lists, report",
    schedule="@weekly",
    start_date=datetime(1995, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=params,
    tags=["movierec", "weekly", "ml"],
)
def movierec_weekly() -> None:
    # Context values (params, logical_date) arrive as keyword arguments; steps are imported inside the
    # tasks, so parsing this file stays cheap.
    @task
    def fetch(params: dict[str, Any] | None = None) -> dict:
        """Fetch the named `dataset` (checksummed) or resolve the `source` directory."""
        from pipeline.orchestration import steps

        assert params is not None
        if params["source"]:  # a source directory is named after itself, not after the default dataset
            return dict(steps.fetch(None, params["source"]))
        return dict(steps.fetch(params["dataset"], None))

    @task
    def ingest(fetched: Fetched) -> dict:
        """Validate and load the fetched files into PostgreSQL (idempotent; bad lines kept)."""
        from pipeline.orchestration import steps

        return dict(steps.ingest(fetched))

    @task
    def quality(ingested: Ingested, params: dict[str, Any] | None = None) -> dict:
        """Row counts and rejected share; over `max_reject_share` the run fails with the reason."""
        from pipeline.orchestration import steps

        assert params is not None
        return dict(steps.quality(ingested, max_reject_share=params["max_reject_share"]))

    @task(pool=TRAINING_POOL, executor_config=TRAINING_POD)
    def evaluate(params: dict[str, Any] | None = None, logical_date: datetime | None = None) -> dict:
        """Evaluation protocols and baselines on the data up to the cut-off; chooses the blend weights."""
        from pipeline.orchestration import steps

        assert params is not None
        return dict(
            steps.evaluate(
                _as_of(logical_date),
                epochs=params["epochs"],
                device=_device(params),
                full_retrain=bool(params.get("full_retrain")),
            )
        )

    @task(pool=TRAINING_POOL, executor_config=TRAINING_POD)
    def train(
        evaluation: Evaluation, params: dict[str, Any] | None = None, logical_date: datetime | None = None
    ) -> dict:
        """Train the model to publish on all data up to the cut-off; log to MLflow and register it."""
        from pipeline.orchestration import steps

        assert params is not None
        return dict(
            steps.train(
                _as_of(logical_date),
                evaluation,
                epochs=params["epochs"],
                device=_device(params),
                processes=params["train_processes"],
                full_retrain=bool(params.get("full_retrain")),  # .get: a run triggered before the param
            )
        )

    @task
    def promote(training: Training, evaluation: Evaluation, logical_date: datetime | None = None) -> dict:
        """Promotion gate: the new version becomes champion only if it beats the current one."""
        from pipeline.orchestration import steps

        return dict(steps.promote(training, evaluation, _as_of(logical_date)))

    @task
    def prepare_batch(
        params: dict[str, Any] | None = None, logical_date: datetime | None = None
    ) -> list[dict]:
        """Open a pending batch for the champion; cut the cut-off's users into `shards` ranges of user ids."""
        from pipeline.orchestration import steps

        assert params is not None
        return [
            dict(shard)
            for shard in steps.prepare_batch(
                _as_of(logical_date),
                top_n=params["top_n"],
                shards=params.get("shards"),  # .get: a run triggered before the param existed
                candidates=params["candidates"],
                diversity=params.get("diversity"),
                popularity_penalty=params.get("popularity_penalty"),
            )
        ]

    # A mapped task takes no docs from its docstring (the UI would show none): given here.
    @task(doc_md="Write one range of users' lists into the pending batch; a retry replaces its rows.")
    def score_shard(shard: Shard) -> dict:
        from pipeline.orchestration import steps

        return dict(steps.score_shard(shard))

    @task(outlets=[PUBLISHED_LISTS])
    def publish(
        prepared: list[Shard],
        scored: list[ShardResult],
        params: dict[str, Any] | None = None,
        logical_date: datetime | None = None,
    ) -> dict:
        """Check that every user is listed exactly once; publish the batch's lists in one transaction."""
        from pipeline.orchestration import steps

        assert params is not None
        return dict(
            steps.publish(
                _as_of(logical_date),
                prepared=list(prepared),
                scored=list(scored),  # one result per shard (Airflow's lazy sequence of the mapped XComs)
                force=bool(params.get("force_publish", False)),
            )
        )

    @task
    def report(
        fetched: dict,
        ingested: dict,
        checked: dict,
        evaluation: dict,
        training: dict,
        promotion: dict,
        publication: dict,
        logical_date: datetime | None = None,
    ) -> str:
        """A short text report of the run: logged here and returned."""
        import logging

        from pipeline.orchestration import steps

        text = steps.report(
            {
                "as_of": _as_of(logical_date),
                "fetch": fetched,
                "ingest": ingested,
                "quality": checked,
                "evaluation": evaluation,
                "training": training,
                "promotion": promotion,
                "publication": publication,
            }
        )
        logging.getLogger("airflow.task").info("movierec weekly run report:\n%s", text)
        return text

    # Airflow types a task call as taking its function's parameters; here they are the upstream XComArgs.
    fetched = fetch()
    ingested = ingest(fetched)  # type: ignore[arg-type]
    checked = quality(ingested)  # type: ignore[arg-type]
    evaluation = evaluate()
    training = train(evaluation)  # type: ignore[arg-type]
    promotion = promote(training, evaluation)  # type: ignore[arg-type]
    prepared = prepare_batch()
    scored = score_shard.expand(shard=prepared)  # one task instance per shard
    publication = publish(prepared, scored)  # type: ignore[arg-type]
    chain(checked, evaluation)
    chain(promotion, prepared)
    report(fetched, ingested, checked, evaluation, training, promotion, publication)  # type: ignore[arg-type]


movierec_weekly()
