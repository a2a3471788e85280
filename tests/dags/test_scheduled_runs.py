"""The weekly DAG as Airflow's scheduler runs it, every component its own process
(``pipeline.orchestration.airflow_cluster``, what ``movierec airflow celery`` starts): once with the
LocalExecutor, once with the CeleryExecutor and two Celery workers whose broker is the test PostgreSQL. Same
real ML-100K slice, week and parameters: both publish the same lists, and the Celery run's scoring shards ran
on both workers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from pipeline.core.defaults import DAG_ID
from pipeline.orchestration.airflow_cluster import Cluster, Executor
from tests.support.database import admin_connection, copy_of, with_database
from tests.support.servers import free_port
from tests.support.weekly import EPOCHS, SLICE_USERS, TOP_N, published_lists, weekly_settings

pytestmark = pytest.mark.e2e  # Airflow's components as processes

WEEK = datetime(1998, 5, 3, tzinfo=UTC)  # after the slice's last rating
# Well more shards than workers: which worker takes a shard is up to timing. A worker can stay busy up to 5 s
# after its task's last log line (Airflow's task supervisor waits up to [workers] min_heartbeat_interval, 5 s,
# before it sees the task's process gone), and a shard of this slice takes about 2.6 s: once in CI with two
# shards the other worker took both. One worker would now have to be held for five shards' time.
SHARDS = 6
RUN_BOUND_S = 45 * 60  # how long a run may take before the test gives up: a bound, not a timing check


@dataclass
class ScheduledRun:
    state: str
    tasks: dict[tuple[str, int], tuple[str, str]]  # (task_id, map_index) -> (state, the host that ran it)
    published: dict[str, Any]


def _wait(what: str, probe: Any, cluster: Cluster, bound_s: float, every_s: float = 3.0) -> Any:
    """``probe()`` until it returns something truthy; fails with the component that exited, if one did."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if dead := cluster.dead():
            pytest.fail(f"waiting for {what}: " + "; ".join(dead))
        if found := probe():
            return found
        time.sleep(every_s)
    pytest.fail(f"no {what} after {bound_s:.0f} s: components' logs in {cluster.log_dir}")


def _scheduled_run(
    executor: Executor, server_url: str, template_db: str, source: Path, root: Path
) -> ScheduledRun:
    """One triggered run of the weekly DAG on a fresh app database, metadata database and MOVIEREC_HOME."""
    name = f"movierec_test_airflow_{executor}_{os.getpid()}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    metadata = sqlalchemy_url(with_database(server_url, name))
    try:
        with copy_of(server_url, template_db) as url:
            environ = dict(
                os.environ,
                MOVIEREC_HOME=str(root / "home"),
                DATABASE_URL=url,
                MOVIEREC_DEVICE="cpu",
                AIRFLOW_HOME=str(root / "airflow"),
                AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata,
                AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",  # the triggered run only, no weekly one
            )
            environ.pop("MLFLOW_TRACKING_URI", None)  # MLflow's sqlite store under the home
            cluster = Cluster(
                weekly_settings(root / "home", url),
                executor=executor,
                workers=2,
                port=free_port(),
                environ=environ,
            )
            meta = create_engine(metadata)
            try:
                with cluster:
                    cluster.wait_ready()

                    def parsed() -> bool:
                        with meta.connect() as conn:
                            query = text("SELECT count(*) FROM dag WHERE dag_id = :d")
                            return bool(conn.execute(query, {"d": DAG_ID}).scalar_one())

                    _wait("parsed DAG", parsed, cluster, bound_s=300)
                    cluster.airflow("dags", "unpause", DAG_ID)
                    conf = {"source": str(source), "epochs": EPOCHS, "top_n": TOP_N, "device": "cpu"}
                    conf["shards"] = SHARDS
                    cluster.airflow(
                        "dags",
                        "trigger",
                        DAG_ID,
                        "--logical-date",
                        WEEK.isoformat(),
                        "--conf",
                        json.dumps(conf),
                    )

                    def finished() -> str | None:
                        with meta.connect() as conn:
                            state = conn.execute(
                                text("SELECT state FROM dag_run WHERE dag_id = :d"), {"d": DAG_ID}
                            ).scalar_one_or_none()
                        return state if state in ("success", "failed") else None

                    state = _wait("finished run", finished, cluster, bound_s=RUN_BOUND_S, every_s=5)
                    with meta.connect() as conn:
                        rows = conn.execute(
                            text(
                                "SELECT task_id, map_index, state, hostname FROM task_instance WHERE dag_id = :d"
                            ),
                            {"d": DAG_ID},
                        ).all()
            finally:
                meta.dispose()
            app = create_engine(sqlalchemy_url(url))
            try:
                published = published_lists(app)
            finally:
                app.dispose()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    tasks = {(task_id, int(index)): (str(ti_state), host or "") for task_id, index, ti_state, host in rows}
    return ScheduledRun(str(state), tasks, published)


@pytest.fixture(scope="module")
def scheduled(
    airflow_home: Path,
    server_url: str,
    template_db: str,
    ml100k_slice_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Executor], ScheduledRun]:
    """The run with the given executor, made once per module."""
    runs: dict[str, ScheduledRun] = {}

    def run(executor: Executor) -> ScheduledRun:
        if executor not in runs:
            root = tmp_path_factory.mktemp(f"{executor}-executor")
            runs[executor] = _scheduled_run(executor, server_url, template_db, ml100k_slice_dir, root)
        return runs[executor]

    return run


def _every_task_succeeded(run: ScheduledRun) -> None:
    assert run.state == "success", run.tasks
    assert {state for state, _ in run.tasks.values()} == {"success"}, run.tasks
    assert sorted(key for key in run.tasks if key[0] == "score_shard") == [
        ("score_shard", i) for i in range(SHARDS)
    ]
    assert run.published["batches"] == 1 and run.published["users"] == SLICE_USERS
    assert run.published["rows"] == SLICE_USERS * TOP_N and run.published["data_cutoff"] == WEEK


def test_the_scheduler_runs_the_weekly_dag_with_the_local_executor(scheduled: Any) -> None:
    local_run = scheduled("local")
    _every_task_succeeded(local_run)
    assert not any(host.startswith("worker") for _, host in local_run.tasks.values())  # the scheduler's host


def test_two_celery_workers_run_the_weekly_dag_and_share_the_shards(scheduled: Any) -> None:
    celery_run = scheduled("celery")
    _every_task_succeeded(celery_run)
    hosts = {key: host for key, (_, host) in celery_run.tasks.items()}
    assert all(host.split("@")[0] in ("worker1", "worker2") for host in hosts.values()), hosts
    shard_hosts = {hosts[("score_shard", i)].split("@")[0] for i in range(SHARDS)}
    assert shard_hosts == {"worker1", "worker2"}, hosts  # shards on each worker


def test_both_executors_publish_the_same_lists(scheduled: Any) -> None:
    local_run, celery_run = scheduled("local"), scheduled("celery")
    assert local_run.published["digest"] == celery_run.published["digest"]
    assert local_run.published["rows"] == celery_run.published["rows"] == SLICE_USERS * TOP_N
