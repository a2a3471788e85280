"""The Docker stack's files, checked without a Docker engine: structure, secrets, and (where Docker's own
tooling is installed) `docker compose config` / `docker-compose config`, which validates the Compose schema."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.core.defaults import TELEMETRY_OPT_OUTS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GPU = ROOT / "docker-compose.gpu.yml"
SERVICES = {
    "postgres",
    "mlflow",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "model-server",
}
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _required_vars(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == SERVICES


def test_every_secret_comes_from_env_file_and_none_has_a_default() -> None:
    text = COMPOSE.read_text()
    required = _required_vars(text)
    assert {
        "POSTGRES_PASSWORD",
        "MOVIEREC_DB_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "AIRFLOW_DB_PASSWORD",
        "MOVIEREC_READER_PASSWORD",
        "MOVIEREC_FEEDBACK_PASSWORD",
        "AIRFLOW_ADMIN_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_SECRET_KEY",
    } <= required
    assert not re.search(r"\$\{[A-Z0-9_]*(PASSWORD|SECRET|KEY)[A-Z0-9_]*:-[^}]", text)  # no default secrets
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required <= example


def test_postgres_initialises_every_database_and_role(compose: dict) -> None:
    pg = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    init = ROOT / "database" / "docker" / "init-databases.sh"
    assert any(
        v.startswith("./database/docker/init-databases.sh:/docker-entrypoint-initdb.d/")
        for v in pg["volumes"]
    )
    script = init.read_text()
    for role in ("movierec", "mlflow", "airflow", "movierec_reader", "movierec_feedback"):
        assert f"CREATE ROLE {role} LOGIN" in script
    for password in _required_vars(COMPOSE.read_text()) & {
        "MOVIEREC_DB_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "AIRFLOW_DB_PASSWORD",
        "MOVIEREC_READER_PASSWORD",
        "MOVIEREC_FEEDBACK_PASSWORD",
    }:
        assert password in pg["environment"] and f'"${password}"' in script


def test_mlflow_service(compose: dict) -> None:
    mlflow = compose["services"]["mlflow"]
    assert mlflow["build"] == "./mlflow_server"
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    assert any(v.endswith(":/mlflow/artifacts") for v in mlflow["volumes"])
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in mlflow


@pytest.mark.parametrize("name", AIRFLOW)
def test_airflow_services_share_one_configuration(compose: dict, name: str) -> None:
    service = compose["services"][name]
    env = service["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/app/dags"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["DATABASE_URL"].startswith("postgresql://movierec:")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert service["command"][0] == "airflow"
    assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in service
    assert env == compose["services"]["airflow-scheduler"]["environment"]


def test_the_celery_profile_adds_workers_that_run_the_schedulers_image_and_configuration(
    compose: dict,
) -> None:
    services = compose["services"]
    worker = services["airflow-worker"]
    assert worker["profiles"] == ["celery"]  # a plain `up` starts none
    assert [name for name, s in services.items() if s.get("profiles")] == ["airflow-worker"]
    assert worker["command"] == ["airflow", "celery", "worker"]
    assert worker["image"] == services["airflow-scheduler"]["image"] == "movierec:latest"
    assert worker["environment"] == services["airflow-scheduler"]["environment"]
    assert worker["volumes"] == services["airflow-scheduler"]["volumes"]
    env = worker["environment"]
    # the broker: the airflow database unless AIRFLOW_CELERY_BROKER_URL names another, its password from .env
    assert env["AIRFLOW__CELERY__BROKER_URL"] == (
        "${AIRFLOW_CELERY_BROKER_URL:-sqla+postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD}"
        "@postgres:5432/airflow}"
    )
    tasks = yaml.safe_load((ROOT / "Taskfile.yml").read_text())["tasks"]
    up = tasks["up"]
    assert "{{if .WORKERS}} --profile celery{{end}}" in up["vars"]["COMPOSE"]
    assert up["env"]["AIRFLOW_EXECUTOR"] == "{{if .WORKERS}}CeleryExecutor{{else}}LocalExecutor{{end}}"
    assert "airflow-worker --scale airflow-worker={{.WORKERS}}" in next(
        c for c in up["cmds"] if " up -d" in c
    )
    assert "--profile celery" in tasks["down"]["cmds"][0]  # down removes the workers too


def test_airflow_init_migrates_both_schemas_and_creates_the_pool(compose: dict) -> None:
    command = " ".join(compose["services"]["airflow-init"]["command"])
    assert "movierec db migrate" in command and "movierec airflow init" in command


def test_model_server_reads_as_the_read_only_role(compose: dict) -> None:
    server = compose["services"]["model-server"]
    assert server["command"] == ["movierec", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert server["environment"]["READER_DATABASE_URL"].startswith("postgresql://movierec_reader:")
    assert server["environment"]["DATABASE_URL"].startswith("postgresql://movierec_reader:")
    assert server["environment"]["FEEDBACK_DATABASE_URL"].startswith("postgresql://movierec_feedback:")
    # healthy when it serves: /ping, not /health (503 on a fresh stack until a champion and a batch exist)
    probe = " ".join(server["healthcheck"]["test"])
    assert "8000/ping'" in probe and "/health" not in probe


def test_gpu_override_reserves_the_gpu_for_the_services_that_train() -> None:
    gpu = yaml.safe_load(GPU.read_text())
    # the LocalExecutor runs the tasks in the scheduler; the celery profile's workers run them otherwise
    assert set(gpu["services"]) == {"airflow-scheduler", "airflow-worker"}
    for name in gpu["services"]:
        devices = gpu["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
        assert gpu["services"][name]["image"] == "movierec:cuda"
    assert "build" not in gpu["services"]["airflow-worker"]  # built once, by the scheduler's build
    assert gpu["services"]["airflow-worker"]["pull_policy"] == "never"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _compose_with_test_secrets(tmp_path: Path) -> tuple[list[str], list[str]]:
    """The compose command (skips the test without one) and its arguments for this repository with every
    required secret set to a test value."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env_file = tmp_path / "env"
    env_file.write_text(
        "".join(f"{name}=test-{name.lower()}\n" for name in _required_vars(COMPOSE.read_text()))
    )
    return command, [*command, "--env-file", str(env_file), "--project-directory", str(ROOT)]


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, GPU]], ids=["base", "gpu"])
def test_docker_compose_config_accepts_the_files(tmp_path: Path, files: list[Path]) -> None:
    command, args = _compose_with_test_secrets(tmp_path)
    for f in files:
        args += ["-f", str(f)]
    done = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (tmp_path / "empty").write_text("")
    missing = subprocess.run(
        [
            *command,
            "--env-file",
            str(tmp_path / "empty"),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    # a missing secret stops it with a reason (Compose v2 names whichever required secret it meets first)
    assert missing.returncode != 0 and re.search(r"(PASSWORD|SECRET)[A-Z_]* in \.env", missing.stderr)


def test_docker_compose_config_resolves_the_celery_profile(tmp_path: Path) -> None:
    _, base = _compose_with_test_secrets(tmp_path)
    args = [*base, "-f", str(COMPOSE)]
    env = dict(os.environ, AIRFLOW_EXECUTOR="CeleryExecutor")
    env.pop("AIRFLOW_CELERY_BROKER_URL", None)
    done = subprocess.run(
        [*args, "--profile", "celery", "config", "--format", "json"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    worker = services["airflow-worker"]["environment"]
    assert (
        worker["AIRFLOW__CORE__EXECUTOR"]
        == services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
        == "CeleryExecutor"
    )
    # the default broker: the stack's PostgreSQL, with the airflow role's password from the env file
    assert worker["AIRFLOW__CELERY__BROKER_URL"] == (
        "sqla+postgresql+psycopg2://airflow:test-airflow_db_password@postgres:5432/airflow"
    )
    plain = subprocess.run([*args, "config", "--services"], capture_output=True, text=True, env=env)
    assert plain.returncode == 0 and "airflow-worker" not in plain.stdout.split()  # only with the profile


def test_no_service_that_runs_mlflow_airflow_or_movierec_reports_usage(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name == "postgres":
            continue
        env = service.get("environment", {})
        assert {k: env.get(k) for k in TELEMETRY_OPT_OUTS} == TELEMETRY_OPT_OUTS, name


def test_one_service_builds_the_project_image_and_the_others_never_pull_it(compose: dict) -> None:
    builders = {name for name, s in compose["services"].items() if "build" in s}
    assert builders == {"airflow-init", "mlflow"}  # one build per image
    for name, service in compose["services"].items():
        if service.get("image") == "movierec:latest" and name != "airflow-init":
            assert service["pull_policy"] == "never", name  # no registry holds it: use the one just built
    gpu = yaml.safe_load(GPU.read_text())["services"]["airflow-scheduler"]
    assert gpu["image"] != "movierec:latest" and "build" in gpu  # the CUDA image is a build of its own


def test_images_declare_no_volume_so_no_anonymous_volume_outlives_down() -> None:
    for dockerfile in (ROOT / "Dockerfile", ROOT / "mlflow_server" / "Dockerfile"):
        assert not [line for line in dockerfile.read_text().splitlines() if line.startswith("VOLUME")], (
            dockerfile
        )


def test_the_project_image_has_the_openmp_runtime_implicit_links() -> None:
    # implicit's extension needs the system's libgomp.so.1; the slim base lacks it, and a process that
    # imported torch first (which ships its own) hid the gap until the train step imported implicit alone.
    text = (ROOT / "Dockerfile").read_text()
    step = text[text.index("apt-get install") :].split("\n\n", 1)[0]
    assert "libgomp1" in step
    assert text.index("libgomp1") < text.index('pip install -c constraints.txt ".')


def test_torch_falls_back_to_pypi_when_its_index_does_not_answer() -> None:
    text = (ROOT / "Dockerfile").read_text()
    step = text[text.index("RUN torch=") :].split("\nCOPY", 1)[0]
    assert '--index-url "$TORCH_INDEX_URL"' in step and 'else echo "torch from PyPI' in step
    assert 'pip install "$torch"' in step  # PyPI, where the build container reaches it


def test_the_printed_psql_address_is_the_hosts(compose: dict) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert (
        env["MOVIEREC_PUBLIC_DATABASE_URL"] == "postgresql://movierec@127.0.0.1:5432/movierec"
    )  # no password
    assert compose["services"]["postgres"]["ports"] == ["127.0.0.1:5432:5432"]


def test_task_up_starts_every_service_in_one_up_and_runs_the_dag_through_the_executor() -> None:
    tasks = yaml.safe_load((ROOT / "Taskfile.yml").read_text())["tasks"]
    ups = [c for c in tasks["up"]["cmds"] if isinstance(c, str) and " up -d" in c]
    assert len(ups) == 1 and "model-server" in ups[0]  # airflow-init (a dependency) runs once per `up`
    weekly = next(c for c in tasks["up"]["cmds"] if "run-weekly" in c)
    assert "run-weekly --executor" in weekly  # task processes write logs the UI reads
    assert tasks["stack:check"]["cmds"] == ["python3 tests/stack/check_stack.py {{.CLI_ARGS}}"]


def test_taskw_runs_the_stack_tasks_with_only_the_task_runner() -> None:
    script = (ROOT / "taskw").read_text()
    stack = script[script.index("case") : script.index("esac")]
    assert "up|down|logs|stack:check)" in stack
    assert "go-task-bin" in stack and '-e ".[dev]"' not in stack and "exec task" in stack
