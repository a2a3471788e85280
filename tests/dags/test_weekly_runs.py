"""The weekly DAG run through Airflow (``dag.test``: real task instances in the metadata database) on a real
ML-100K slice against PostgreSQL: a run that publishes, a scoring shard that fails and is retried alone, a
backfill."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from database.engine import sqlalchemy_url
from pipeline.core.settings import get_settings
from tests.support.database import copy_of
from tests.support.weekly import published_lists

pytestmark = pytest.mark.e2e  # DAG runs through Airflow

EPOCHS = 2
TOP_N = 20
FIRST_WEEK = datetime(1998, 5, 3, tzinfo=UTC)  # a Sunday after ML-100K's last rating: all of the slice
BACKFILL_WEEKS = [datetime(1998, 2, 1, tzinfo=UTC), datetime(1998, 2, 8, tzinfo=UTC)]  # inside its range


@dataclass
class World:
    """One user's state: app database, MOVIEREC_HOME (MLflow's sqlite store is there), the DAG, the data."""

    engine: Engine
    home: Path
    source: Path

    def run(self, logical_date: datetime, dag=None, **conf: Any) -> Any:  # type: ignore[no-untyped-def]
        from pipeline.orchestration.airflow_local import run_dag

        return run_dag(
            logical_date,
            {"source": str(self.source), "epochs": EPOCHS, "top_n": TOP_N, "device": "cpu", **conf},
            dag=dag,
        )

    def published(self) -> dict[str, Any]:
        """The list readers see now: its batch, model version, cut-off and rows."""
        return published_lists(self.engine)


@pytest.fixture(scope="module")
def world(
    airflow_home: Path,
    server_url: str,
    template_db: str,
    ml100k_slice_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """Tasks read the settings from the environment, as on an Airflow worker: point it at a fresh database."""
    from sqlalchemy.engine import make_url

    home = tmp_path_factory.mktemp("weekly-home")
    with copy_of(server_url, template_db) as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOVIEREC_HOME", str(home))
        patch.setenv("DATABASE_URL", url)
        patch.setenv("MOVIEREC_DEVICE", "cpu")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        get_settings.cache_clear()
        engine = create_engine(sqlalchemy_url(url))
        try:
            assert make_url(url).database.startswith("movierec_test_")
            yield World(engine, home, ml100k_slice_dir)
        finally:
            engine.dispose()
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def first_run(world: World):  # type: ignore[no-untyped-def]
    return world.run(FIRST_WEEK)


def _mlflow_runs(run_ids: list[str]) -> list[Any]:
    from mlflow.tracking import MlflowClient

    from pipeline.registry.store import tracking_uri

    uri = tracking_uri(get_settings())
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return [client.get_run(run_id) for run_id in run_ids]


def _states(outcome) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {t["task_id"]: t["state"] for t in outcome.tasks}


def test_weekly_run_ends_with_a_published_list(world: World, first_run) -> None:  # type: ignore[no-untyped-def]
    assert first_run.state == "success", first_run.tasks
    assert set(_states(first_run).values()) == {"success"}
    assert len(first_run.tasks) == 10  # score_shard: one shard for the slice's 150 users
    assert [t["map_index"] for t in first_run.tasks if t["task_id"] == "score_shard"] == [0]
    published = world.published()
    assert published["batches"] == 1
    assert published["users"] == 150  # every user of the slice
    assert published["rows"] == 150 * TOP_N
    assert published["data_cutoff"] == FIRST_WEEK
    training, publication = first_run.results["train"], first_run.results["publish"]
    assert published["model_version"] == training["version"] == publication["registered_version"]
    assert first_run.results["promote"]["promoted"] is True  # the first model has no champion to beat
    # no champion: the evaluate task saved its network, the train task started from it
    assert Path(first_run.results["evaluate"]["network_start"]).is_dir()
    assert "this run's evaluation network" in training["training_reason"]
    assert first_run.results["quality"]["rows_rejected"] == 0
    assert "published batch" in first_run.report and f"v{training['version']}" in first_run.report
    with world.engine.connect() as conn:
        cutoff, status = conn.execute(
            text("SELECT data_cutoff, status FROM model_versions WHERE registered_version = :v"),
            {"v": training["version"]},
        ).one()
    assert cutoff == FIRST_WEEK
    assert status == "champion"


def test_a_failed_shard_retries_alone_and_the_run_publishes_every_list_once(world: World, first_run) -> None:  # type: ignore[no-untyped-def]
    """Two shards; PostgreSQL refuses the second shard's rows once: readers keep the published lists, that
    shard alone is retried (its first try left nothing behind), and publish lists every user once."""
    from pipeline.orchestration.airflow_local import load_dag

    assert first_run.state == "success"
    before = world.published()
    with world.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION movierec_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure: disk full'; END $$"
            )
        )
        conn.execute(  # users 76..150 are the second shard's
            text(
                "CREATE TRIGGER movierec_test_refuse BEFORE INSERT ON batch_recommendations "
                "FOR EACH ROW WHEN (NEW.user_id > 100) EXECUTE FUNCTION movierec_test_refuse()"
            )
        )
    seen: dict[str, Any] = {}

    def between_tries(context) -> None:  # type: ignore[no-untyped-def]
        """Airflow's on_retry_callback: what readers see after the failure; then the cause goes away."""
        seen["error"] = str(context.get("exception"))
        seen["published"] = world.published()
        with world.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER movierec_test_refuse ON batch_recommendations"))
            conn.execute(text("DROP FUNCTION movierec_test_refuse()"))

    dag = load_dag()  # a private copy: the retry delay is shortened for this run only
    shard = dag.get_task("score_shard")
    shard.retry_delay = timedelta(seconds=1)
    shard.on_retry_callback = [between_tries]
    week = FIRST_WEEK + timedelta(days=7)
    outcome = world.run(week, dag=dag, shards=2)

    assert "injected failure" in seen["error"]
    assert seen["published"] == before  # the failed shard changed nothing readers see
    assert outcome.state == "success", outcome.tasks
    tries = {(t["task_id"], t["map_index"]): t["tries"] for t in outcome.tasks}
    assert tries[("score_shard", 0)] == 1 and tries[("score_shard", 1)] == 2  # the failed shard alone
    assert tries[("prepare_batch", -1)] == tries[("publish", -1)] == 1
    shards = outcome.results["prepare_batch"]
    assert [(s["first_user"], s["last_user"]) for s in shards] == [(1, 75), (76, 150)]
    assert [r["replaced"] for r in outcome.results["score_shard"]] == [0, 0]  # the failed try wrote nothing
    after = world.published()
    assert after["batch_id"] == outcome.results["publish"]["batch_id"] != before["batch_id"]
    assert after["data_cutoff"] == week
    assert after["batches"] == 1 and after["users"] == 150 and after["rows"] == 150 * TOP_N
    assert "network_start" not in outcome.results["evaluate"]  # a champion to start from: nothing saved
    assert "warm start from the champion" in outcome.results["train"]["training_reason"]


def test_backfill_of_two_past_weeks_trains_one_version_per_week(world: World) -> None:
    """As a backfill runs them (in date order, one at a time): each week's model sees only its own past."""
    outcomes = [world.run(week) for week in BACKFILL_WEEKS]
    assert [o.state for o in outcomes] == ["success", "success"], [o.tasks for o in outcomes]
    versions = [o.results["train"]["version"] for o in outcomes]
    assert len(set(versions)) == 2
    with world.engine.connect() as conn:
        cutoffs = [
            conn.execute(
                text("SELECT data_cutoff FROM model_versions WHERE registered_version = :v"), {"v": v}
            ).scalar_one()
            for v in versions
        ]
        seen = [
            conn.execute(text("SELECT count(*) FROM ratings WHERE rated_at <= :w"), {"w": w}).scalar_one()
            for w in BACKFILL_WEEKS
        ]
    assert cutoffs == BACKFILL_WEEKS
    runs = _mlflow_runs([o.results["train"]["run_id"] for o in outcomes])
    assert [r.data.tags["movierec.data_cutoff"] for r in runs] == [w.isoformat() for w in BACKFILL_WEEKS]
    n_train = [int(r.data.params["n_train"]) for r in runs]
    assert seen[0] < seen[1]  # the slice has ratings in the second week
    assert all(0 < n <= s for n, s in zip(n_train, seen)) and n_train[0] < n_train[1]
    for outcome, week in zip(outcomes, BACKFILL_WEEKS):
        assert outcome.results["evaluate"]["as_of"] == week.isoformat()
    assert world.published()["data_cutoff"] == BACKFILL_WEEKS[-1]


def test_run_weekly_refuses_a_dag_the_scheduler_runs(world: World, first_run) -> None:  # type: ignore[no-untyped-def]
    """Unpaused, the scheduler would schedule the same run's tasks too: the run is refused, nothing starts."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from pipeline.core.errors import MovierecError

    def set_paused(paused: bool) -> None:
        with create_session() as session:
            session.get(DagModel, "movierec_weekly").is_paused = paused

    before = world.published()
    set_paused(False)
    try:
        with pytest.raises(MovierecError, match="movierec_weekly is unpaused, so the scheduler runs it"):
            world.run(FIRST_WEEK + timedelta(days=7))
    finally:
        set_paused(True)
    assert world.published() == before


def test_a_logical_date_before_the_dags_start_is_refused(world: World, first_run) -> None:  # type: ignore[no-untyped-def]
    """Airflow creates such a run without a single task instance and marks it a success: refused instead,
    and no run is recorded."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from pipeline.core.errors import InputError

    early = datetime(1990, 1, 7, tzinfo=UTC)
    before = world.published()
    with pytest.raises(InputError, match="is before movierec_weekly's start date 1995-01-01"):
        world.run(early)
    with create_session() as session:
        assert not session.query(DagRun).filter(DagRun.logical_date == early).count()
    assert world.published() == before
