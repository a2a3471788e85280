"""The weekly DAG as Airflow parses it: no import errors, the task graph, retries, docs, pools and params."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from pipeline.core.defaults import DEFAULT_DIVERSITY, DEFAULT_POPULARITY_PENALTY, MAX_SHARDS
from pipeline.orchestration.airflow_local import DAG_ID, TRAINING_POOL, dags_folder

ORDER = [
    "fetch",
    "ingest",
    "quality",
    "evaluate",
    "train",
    "promote",
    "prepare_batch",
    "score_shard",
    "publish",
    "report",
]
DOWNSTREAM = {
    "fetch": {"ingest", "report"},
    "ingest": {"quality", "report"},
    "quality": {"evaluate", "report"},
    "evaluate": {"train", "promote", "report"},
    "train": {"promote", "report"},
    "promote": {"prepare_batch", "report"},
    "prepare_batch": {"score_shard", "publish"},
    "score_shard": {"publish"},
    "publish": {"report"},
    "report": set(),
}
PARAMS = {
    "dataset": "ml-100k",
    "source": None,
    "top_n": 100,
    "candidates": 500,
    "diversity": DEFAULT_DIVERSITY,
    "popularity_penalty": DEFAULT_POPULARITY_PENALTY,
    "force_publish": False,
    "shards": None,  # empty: one per SHARD_USERS users
    "epochs": None,
    "device": None,  # empty: the worker's MOVIEREC_DEVICE
    "train_processes": None,  # empty: the worker's MOVIEREC_TRAIN_PROCESSES
    "full_retrain": False,  # warm start from the champion when the policy allows
    "max_reject_share": 0.05,
}


@pytest.fixture(scope="module")
def dag(dagbag):  # type: ignore[no-untyped-def]
    return dagbag.get_dag(DAG_ID)


def test_dag_folder_imports_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dag_ids


def test_task_graph(dag) -> None:  # type: ignore[no-untyped-def]
    assert {task.task_id: set(task.downstream_task_ids) for task in dag.tasks} == DOWNSTREAM
    assert [task.task_id for task in dag.topological_sort()] == ORDER


@pytest.mark.parametrize("task_id", ORDER)
def test_every_task_retries_with_backoff_and_has_docs(dag, task_id: str) -> None:  # type: ignore[no-untyped-def]
    task = dag.get_task(task_id)
    assert task.retries >= 2
    assert task.retry_exponential_backoff > 1
    assert task.max_retry_delay is not None
    assert task.retry_policy is not None
    assert task.owner == "movierec"
    assert task.doc_md and len(task.doc_md.strip()) > 20


@pytest.mark.parametrize("task_id", ORDER)
def test_only_training_tasks_use_the_training_pool(dag, task_id: str) -> None:  # type: ignore[no-untyped-def]
    expected = TRAINING_POOL if task_id in ("evaluate", "train") else "default_pool"
    assert dag.get_task(task_id).pool == expected


def test_dag_settings_and_docs(dag) -> None:  # type: ignore[no-untyped-def]
    assert {"movierec", "weekly"} <= set(dag.tags)
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.timetable.expression == "0 0 * * 0"  # @weekly
    assert dag.start_date <= datetime(1997, 9, 1, tzinfo=UTC)  # ML-100K's weeks can be backfilled
    assert "Why evaluate comes before train" in dag.doc_md
    assert "logical date" in dag.doc_md


@pytest.mark.parametrize(("name", "default"), PARAMS.items())
def test_params_in_the_trigger_form(dag, name: str, default) -> None:  # type: ignore[no-untyped-def]
    param = dag.params.get_param(name)
    assert param.value == default
    assert param.description
    assert param.schema.get("title")


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("top_n", 0),
        ("candidates", -1),
        ("diversity", -0.1),
        ("diversity", 1.5),
        ("diversity", "strong"),
        ("popularity_penalty", -1),
        ("popularity_penalty", 50),
        ("force_publish", "yes"),
        ("shards", 0),
        ("shards", MAX_SHARDS + 1),
        ("shards", "many"),
        ("device", "tpu"),
        ("max_reject_share", 1.5),
        ("epochs", 0),
        ("train_processes", 0),
        ("dataset", "ml-2m"),
    ],
)
def test_params_reject_bad_values(dag, name: str, bad) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError):
        params[name] = bad


def test_bad_input_fails_at_once_other_errors_retry(dag) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk import RetryAction

    from pipeline.core.errors import DataQualityError, InputError, SourceUnavailable

    policy = dag.get_task("quality").retry_policy
    assert policy.evaluate(DataQualityError("12% rejected"), 1, 3).action == RetryAction.FAIL
    assert policy.evaluate(InputError("no ratings file"), 1, 3).action == RetryAction.FAIL
    assert policy.evaluate(SourceUnavailable("timeout"), 1, 3).action == RetryAction.DEFAULT
    assert policy.evaluate(ConnectionError("reset"), 1, 3).action == RetryAction.DEFAULT


def test_dag_survives_serialization(dag) -> None:  # type: ignore[no-untyped-def]
    """What the DAG processor stores and the scheduler reads back keeps the graph, pools and retries."""
    from airflow.serialization.serialized_objects import DagSerialization

    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert {t.task_id: set(t.downstream_task_ids) for t in restored.tasks} == DOWNSTREAM
    assert restored.get_task("train").pool == TRAINING_POOL
    assert restored.get_task("score_shard").is_mapped  # one instance per shard, from prepare_batch's XCom
    assert all(t.retries >= 2 for t in restored.tasks)


def test_parsing_the_dag_file_imports_nothing_heavy(airflow_home) -> None:  # type: ignore[no-untyped-def]
    """The DAG processor re-parses the file often: heavy libraries load inside the tasks only."""
    heavy = [
        "torch",
        "mlflow",
        "pandas",
        "sentence_transformers",
        "sklearn",
        "pipeline.orchestration.steps",
        "pipeline.evaluation.benchmark",
        "database.engine",
    ]
    code = (
        f"import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('weekly_dag', {str(dags_folder() / 'movierec_weekly.py')!r})\n"
        f"module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_an_empty_device_param_means_the_workers_setting(airflow_home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The trigger form's `device` left empty: each task uses its worker's MOVIEREC_DEVICE, read when the task
    runs, not when the file was parsed."""
    import importlib.util

    from pipeline.core.settings import get_settings

    spec = importlib.util.spec_from_file_location("weekly_dag_device", dags_folder() / "movierec_weekly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.params["device"].value is None
    for device in ("cuda", "cpu"):
        monkeypatch.setenv("MOVIEREC_DEVICE", device)
        get_settings.cache_clear()
        assert module._device({"device": None}) == device
        assert module._device({"device": "auto"}) == "auto"
    get_settings.cache_clear()
