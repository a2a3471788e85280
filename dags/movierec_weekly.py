"""
# movierec weekly

Rebuilds the published recommendation lists once a week: MovieLens ratings in, a retrained hybrid
network out (if it beats the current champion), top-N lists for every user published in one transaction.

| step | what it does (`pipeline/weekly.py`) |
|---|---|
| `fetch` | the named dataset (checksummed download, offline ML-100K fallback) or the `source` directory |
| `ingest` | validating, idempotent load into PostgreSQL; bad lines kept in `rejected_rows` |
| `quality` | row counts and the share of rejected rows: over `max_reject_share` fails the run, no retry |
| `evaluate` | the gate's protocol (temporal) beside the baselines on the data up to the cut-off; chooses the blend weights (`movierec evaluate` runs both protocols) |
| `train` | the model to publish, on all data up to the cut-off, logged to MLflow and registered |
| `promote` | the promotion gate: the new version becomes `champion` only if it beats the current one |
| `publish` | the champion scores every user; the top-N lists replace the published ones atomically |
| `report` | a short text report of the run, in the task log and its return value |

**Why evaluate comes before train:** the published model is a blend whose weights are chosen on
validation splits during evaluation; training the final model needs them.

**Data cut-off = logical date.** Every task reads the run's logical date as `as_of`: ratings after it are
unseen. A backfill over past weeks therefore rebuilds what each of those weeks would have published
(MovieLens' ML-100K spans 1997-09 to 1998-04; `start_date` is early enough to backfill it). A manual run
without a logical date uses all the data.

**Concurrency:** `evaluate` and `train` run in the `movierec_training` pool (1 slot, created by
`movierec airflow init`), so two runs never train at once on one GPU. `max_active_runs=1` keeps scheduled
runs one at a time; a backfill has its own limit: create it with `--max-active-runs 1` to keep its weeks in
date order, since each week's promotion gate compares with the champion the weeks before it left. Airflow
starts no run of a paused DAG, backfills included: unpause it first.

**Retries:** every task retries with exponential back-off; bad input (`InputError`) and failed quality
checks (`DataQualityError`) fail at once, since retrying cannot fix them.

Parameters (trigger form): `dataset` or `source`, `top_n`, `candidates`, `epochs`, `device`, `max_reject_share`.
Tasks run with the worker's environment: `MOVIEREC_HOME`, `DATABASE_URL`, `MLFLOW_TRACKING_URI`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    chain,
    dag,
    get_current_context,
    task,
)

DAG_ID = "movierec_weekly"
TRAINING_POOL = "movierec_training"

default_args: dict[str, Any] = {
    "owner": "movierec",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,  # waits 2-4 min, then 4-8 min (Airflow adds jitter)
    "max_retry_delay": timedelta(minutes=30),
    "retry_policy": ExceptionRetryPolicy(rules=[
        RetryRule(exception=["pipeline.errors.InputError", "pipeline.errors.DataQualityError"],
                  action=RetryAction.FAIL, reason="bad input: retrying cannot fix it"),
    ]),
}

params = {
    "dataset": Param("ml-100k", type="string", title="Dataset",
                     enum=["ml-100k", "ml-1m", "ml-latest-small", "ml-25m", "ml-32m"],
                     description="Named MovieLens dataset, downloaded with its checksum (ignored when "
                                 "source is set)."),
    "source": Param(None, type=["null", "string"], title="Source directory",
                    description="A directory in a GroupLens (or RecBole ML-100K) layout on the worker; "
                                "overrides dataset (the data is then named after the directory)."),
    "top_n": Param(100, type="integer", minimum=1, maximum=1000, title="Top N",
                   description="Length of each user's published list."),
    "candidates": Param(500, type="integer", minimum=0, maximum=100_000, title="Re-ranked candidates",
                        description="Movies per user the network's rating head re-ranks after retrieval by "
                                    "the cheap terms; 0 scores every movie with every term."),
    "epochs": Param(None, type=["null", "integer"], minimum=1, title="Epochs",
                    description="Maximum training epochs (early stopping may end sooner); empty: the "
                                "model's default."),
    "device": Param(os.environ.get("MOVIEREC_DEVICE", "auto"), type="string", enum=["auto", "cpu", "cuda"],
                    title="Device", description="auto uses CUDA when the worker has it."),
    "max_reject_share": Param(0.05, type="number", minimum=0, maximum=1, title="Max rejected share",
                              description="The run fails when a larger share of the ingested lines is "
                                          "rejected."),
}


def _as_of() -> str | None:
    """The run's logical date as ISO-8601: the data cut-off (None for a run without one)."""
    logical_date = get_current_context().get("logical_date")
    return logical_date.isoformat() if logical_date is not None else None


def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


@dag(
    dag_id=DAG_ID,
    doc_md=__doc__,
    description="Weekly: fetch, ingest, check, evaluate, train, promote, publish top-N lists, report",
    schedule="@weekly",
    start_date=datetime(1995, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=params,
    tags=["movierec", "weekly", "ml"],
)
def movierec_weekly() -> None:
    @task
    def fetch() -> dict:
        """Fetch the named `dataset` (checksummed) or resolve the `source` directory."""
        from pipeline import weekly

        p = _params()
        if p["source"]:  # a source directory is named after itself, not after the default dataset
            return weekly.fetch_data(None, p["source"])
        return weekly.fetch_data(p["dataset"], None)

    @task
    def ingest(fetched: dict) -> dict:
        """Validate and load the fetched files into PostgreSQL (idempotent; bad lines kept)."""
        from pipeline import weekly

        return weekly.ingest_data(fetched["directory"], fetched["dataset"])

    @task
    def quality(ingested: dict) -> dict:
        """Row counts and rejected share; over `max_reject_share` the run fails with the reason."""
        from pipeline import weekly

        return weekly.check_data_quality(ingested, max_reject_share=_params()["max_reject_share"])

    @task(pool=TRAINING_POOL)
    def evaluate() -> dict:
        """Evaluation protocols and baselines on the data up to the cut-off; chooses the blend weights."""
        from pipeline import weekly

        p = _params()
        return weekly.evaluate_model(_as_of(), epochs=p["epochs"], device=p["device"])

    @task(pool=TRAINING_POOL)
    def train(evaluation: dict) -> dict:
        """Train the model to publish on all data up to the cut-off; log to MLflow and register it."""
        from pipeline import weekly

        p = _params()
        return weekly.train_model(_as_of(), evaluation, epochs=p["epochs"], device=p["device"])

    @task
    def promote(training: dict, evaluation: dict) -> dict:
        """Promotion gate: the new version becomes champion only if it beats the current one."""
        from pipeline import weekly

        return weekly.promote_model(training, evaluation, _as_of())

    @task
    def publish() -> dict:
        """Score every user with the champion; publish the top-N lists in one transaction."""
        from pipeline import weekly

        params = _params()
        return weekly.publish_recommendations(_as_of(), top_n=params["top_n"], candidates=params.get("candidates"))

    @task
    def report(fetched: dict, ingested: dict, checked: dict, evaluation: dict, training: dict,
               promotion: dict, publication: dict) -> str:
        """A short text report of the run: logged here and returned."""
        import logging

        from pipeline import weekly

        text = weekly.run_report({"as_of": _as_of(), "fetch": fetched, "ingest": ingested, "quality": checked,
                                  "evaluation": evaluation, "training": training, "promotion": promotion,
                                  "publication": publication})
        logging.getLogger("airflow.task").info("movierec weekly run report:\n%s", text)
        return text

    fetched = fetch()
    ingested = ingest(fetched)
    checked = quality(ingested)
    evaluation = evaluate()
    training = train(evaluation)
    promotion = promote(training, evaluation)
    publication = publish()
    chain(checked, evaluation)
    chain(promotion, publication)
    report(fetched, ingested, checked, evaluation, training, promotion, publication)


movierec_weekly()
