"""The Docker stack, checked as a user would on a machine with Docker: ``./taskw stack:check``.

Builds the images, brings the stack up through the project's own tasks (``task up NO_PRETRAINED=1``, then
``task up``, which runs the weekly DAG on ML-100K), and checks what a user would look at: the Airflow UI and
API list the DAG, the run succeeded and its task logs are readable through the API, MLflow holds the
experiment and ``movierec-hybrid@champion``, the model server answers with its docs served locally, the
read-only role reads the lists and cannot write. Then ``task down``, ``task up`` again with the data intact,
and ``task down -- -v`` leaving no volume behind. One line per check; exits 1 on any failure. ``--workers N``
does all of it with the CeleryExecutor and N worker containers (``task up WORKERS=N``), and checks that the
weekly run's tasks ran on the workers, its N shards on N different ones.

It runs as its own Compose project (``movierec-check``, fresh random secrets in a temporary env file), so a
stack of yours keeps its volumes; it needs the same host ports (5432, 5000, 8000, 8080) free. Standard library
only: it needs Python, Docker with Compose v2 and the ``task`` runner, not the project installed. Not part of
the test suite (minutes, and Docker).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "movierec-check"
DAG_ID = "movierec_weekly"
MODEL = "movierec-hybrid"
AIRFLOW = "http://127.0.0.1:8080"
MLFLOW = "http://127.0.0.1:5000"
API = "http://127.0.0.1:8000"


class CheckFailed(Exception):
    pass


class Checks:
    """Runs named checks, printing one line each (status, seconds, name, detail)."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.timings: dict[str, float] = {}

    def run(self, name: str, check: Callable[[], str | None], *, fatal: bool = False) -> bool:
        start = time.monotonic()
        try:
            detail = check() or ""
            ok = True
        except (CheckFailed, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            detail, ok = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, CheckFailed) else str(exc),
                False,
            )
        seconds = time.monotonic() - start
        self.timings[name] = round(seconds, 1)
        print(
            f"{'ok  ' if ok else 'FAIL'} {seconds:7.1f} s  {name}{': ' + detail if detail else ''}",
            flush=True,
        )
        if not ok:
            self.failed.append(name)
            if fatal:
                raise SystemExit(self.summary())
        return ok

    def summary(self) -> int:
        if self.failed:
            print(f"stack check FAILED: {len(self.failed)} of {len(self.timings)} ({', '.join(self.failed)})")
            return 1
        print(f"stack check passed: {len(self.timings)} checks")
        return 0


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def sh(*args: str, env: dict[str, str] | None = None, timeout: float = 1800, log: Path | None = None) -> str:
    """Runs a command; its output goes to ``log`` (appended) and is returned; a failure quotes its tail."""
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(args)}\n{output}\n")
    if done.returncode != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-4:])
        raise CheckFailed(f"`{' '.join(args)}` exited {done.returncode}: {tail[-600:]}")
    return output


def http(
    method: str, url: str, *, body: Any = None, token: str | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body; an HTTP error status is an answer, not an exception."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json, text/html;q=0.9")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def get_json(url: str, *, token: str | None = None, status: int = 200) -> Any:
    code, _, payload = http("GET", url, token=token)
    expect(code == status, f"GET {url} -> {code}, expected {status}: {payload[:200]!r}")
    return json.loads(payload)


def wait_for(what: str, probe: Callable[[], bool], timeout: float, every: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except (OSError, ValueError, CheckFailed):
            pass
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def write_env_file(folder: Path) -> tuple[Path, dict[str, str]]:
    """Every variable .env.example names, secrets fresh and random (never printed)."""
    names = [
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    values = {name: secrets.token_hex(16) for name in names}
    values["MOVIEREC_DEVICE"] = "cpu"
    values["AIRFLOW_FERNET_KEY"] = ""
    path = folder / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path, values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack up at the end (no down -v)")
    parser.add_argument("--json", type=Path, help="write the checks' timings here")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the stack with the CeleryExecutor and this many worker containers (`task up WORKERS=N`); "
        "the weekly run then has as many shards, and each must run on a different worker",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="movierec-stack-check-"))
    env_file, values = write_env_file(work)
    log = work / "commands.log"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": PROJECT}
    compose = [
        "docker",
        "compose",
        "-f",
        "docker-compose.yml",
        "--profile",
        "celery",
        "--env-file",
        str(env_file),
    ]
    task = ["task", f"ENV_FILE={env_file}"] + ([f"WORKERS={args.workers}"] if args.workers else [])
    print(f"stack check: project {PROJECT}, command output in {log}", flush=True)
    checks = Checks()
    state: dict[str, Any] = {}

    def volumes() -> set[str]:
        return set(sh("docker", "volume", "ls", "-q").split())

    def preflight() -> str:
        version = sh("docker", "compose", "version").strip()
        sh("docker", "info", "--format", "{{.ServerVersion}}")
        state["volumes_before"] = volumes()
        expect(
            not sh(*compose, "ps", "-a", "-q", env=env).strip(),
            f"project {PROJECT} already has containers: `docker compose -p {PROJECT} down -v` first",
        )
        return version

    checks.run("docker engine and compose answer", preflight, fatal=True)
    checks.run(
        "images build (docker compose build)",
        lambda: (sh(*compose, "build", env=env, log=log), None)[1],
        fatal=True,
    )

    def once_per_up(output: str) -> str:
        """airflow-init is a dependency of several services: it must still run once per `up`."""
        runs = len(re.findall(r"airflow-init-1\s+Started", output))
        expect(runs == 1, f"airflow-init started {runs} times in one up")
        return "airflow-init ran once"

    def up_fresh() -> str:
        output = sh(*task, "up", "NO_PRETRAINED=1", env=env, log=log)
        return f"every service healthy, {once_per_up(output)}"

    checks.run("task up NO_PRETRAINED=1 on a fresh stack (images cached)", up_fresh, fatal=True)

    def serving_before_any_run() -> str:
        code, _, _ = http("GET", f"{API}/ping")
        expect(code == 200, f"/ping -> {code}")
        code, headers, payload = http("GET", f"{API}/health")
        expect(code == 503, f"/health -> {code} on a stack with no champion")
        expect("retry-after" in headers, "/health 503 without Retry-After")
        return f"/ping 200, /health 503 ({json.loads(payload).get('status', '?')})"

    checks.run("model server live, not ready, before the first run", serving_before_any_run)

    def weekly() -> str:
        shards = ["--", "--shards", str(args.workers)] if args.workers else []
        output = sh(*task, "up", *shards, env=env, log=log, timeout=3600)
        expect(values["MOVIEREC_DB_PASSWORD"] not in output, "the database password was printed")
        psql = re.search(r'psql "([^"]+)"', output)
        expect(psql is not None, "no psql line in the output")
        assert psql is not None
        expect(
            psql.group(1).startswith("postgresql://movierec@127.0.0.1:5432/"), f"psql line: {psql.group(1)}"
        )
        run = re.search(r"movierec_weekly run\s+(\S+)\s*:\s*success", output)  # a table title: may wrap
        expect(run is not None, "no successful movierec_weekly run in the output")
        assert run is not None
        state["run_id"] = run.group(1)
        return f"run {state['run_id']} succeeded; psql line {psql.group(1)} (no password)"

    checks.run("task up runs the weekly DAG on ML-100K (executor, in the stack)", weekly, fatal=True)

    def airflow_token() -> str:
        code, _, payload = http(
            "POST",
            f"{AIRFLOW}/auth/token",
            body={"username": "admin", "password": values["AIRFLOW_ADMIN_PASSWORD"]},
        )
        expect(code in (200, 201), f"POST /auth/token -> {code}")
        state["token"] = json.loads(payload)["access_token"]
        code, _, page = http("GET", f"{AIRFLOW}/")
        expect(code == 200 and b"<html" in page.lower(), f"Airflow UI / -> {code}")
        dags = get_json(f"{AIRFLOW}/api/v2/dags", token=state["token"])
        ids = [d["dag_id"] for d in dags["dags"]]
        expect(DAG_ID in ids, f"{DAG_ID} not among {ids}")
        return f"UI 200, API lists {ids}"

    checks.run("Airflow UI answers and its API lists the DAG", airflow_token)

    def run_and_logs() -> str:
        token = state["token"]
        run = get_json(
            f"{AIRFLOW}/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(state['run_id'])}", token=token
        )
        expect(run["state"] == "success", f"run state {run['state']}")
        tis = get_json(
            f"{AIRFLOW}/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(state['run_id'])}/taskInstances",
            token=token,
        )["task_instances"]
        state["task_instances"] = tis
        expect(
            bool(tis) and all(t["state"] in ("success", "skipped") for t in tis),
            "task states " + ", ".join(f"{t['task_id']}={t['state']}" for t in tis),
        )
        read = []
        for ti in tis:
            if ti["state"] != "success":
                continue
            url = (
                f"{AIRFLOW}/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(state['run_id'])}/taskInstances/"
                f"{ti['task_id']}/logs/{ti['try_number']}?full_content=true"
                + (f"&map_index={ti['map_index']}" if ti["map_index"] >= 0 else "")  # a mapped task (shards)
            )
            content = json.dumps(get_json(url, token=token).get("content"))
            expect("Could not read served logs" not in content, f"{ti['task_id']}: {content[:300]}")
            expect(ti["task_id"] in content or "Task" in content, f"{ti['task_id']}: log has no task lines")
            read.append(ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]")
        return f"{len(tis)} tasks succeeded; logs read through the API for {', '.join(read)}"

    checks.run("the DAG run succeeded and its task logs are readable through the API", run_and_logs)

    def on_the_workers() -> str:
        """CeleryExecutor: every task ran in a worker container, and the shards on as many workers."""
        workers = set(sh(*compose, "ps", "-q", "airflow-worker", env=env).split())
        expect(len(workers) == args.workers, f"{len(workers)} worker containers, not {args.workers}")
        tis = state.get("task_instances", [])  # as the run's check read them
        expect(bool(tis), "the run's task instances were not read")
        scheduler = sh(*compose, "ps", "-q", "airflow-scheduler", env=env).strip()
        hosts = {(t["task_id"], t["map_index"]): t["hostname"] for t in tis}
        expect(all(h and not scheduler.startswith(h) for h in hosts.values()), f"hosts {hosts}")
        shard_hosts = {h for (task_id, _), h in hosts.items() if task_id == "score_shard"}
        expect(len(shard_hosts) == args.workers, f"score_shard ran on {sorted(shard_hosts)}")
        return f"{len(hosts)} task instances on {len(set(hosts.values()))} workers; shards on {sorted(shard_hosts)}"

    if args.workers:
        checks.run(f"CeleryExecutor: the tasks ran on the {args.workers} worker containers", on_the_workers)

    def mlflow() -> str:
        found = get_json(f"{MLFLOW}/api/2.0/mlflow/experiments/get-by-name?experiment_name=movierec-ml-100k")
        alias = get_json(f"{MLFLOW}/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion")
        version = alias["model_version"]["version"]
        return f"experiment {found['experiment']['name']}, {MODEL}@champion = version {version}"

    checks.run("MLflow shows the experiment and the champion", mlflow)

    def api() -> str:
        wait_for(
            "/health 200 (the server polls the registry)", lambda: http("GET", f"{API}/health")[0] == 200, 120
        )
        body = get_json(f"{API}/users/1/recommendations?limit=5")
        items = body.get("items") or body.get("recommendations") or []
        expect(len(items) == 5, f"/users/1/recommendations: {str(body)[:200]}")
        state["user1"] = [i.get("movie_id") for i in items]
        served = []
        for page_path in ("/docs", "/ui/", "/ui/users/1"):
            code, _, page = http("GET", f"{API}{page_path}")
            expect(code == 200, f"{page_path} -> {code}")
            assets = re.findall(rb'(?:src|href)="([^"]+\.(?:js|css|png|svg|ico))"', page)
            expect(bool(assets), f"{page_path} references no script, style or image")
            external = [a for a in assets if re.match(rb"(https?:)?//", a)]
            expect(not external, f"{page_path} loads from elsewhere: {external}")
            for asset in assets:
                code, _, _ = http("GET", urllib.parse.urljoin(f"{API}{page_path}", asset.decode()))
                expect(code == 200, f"{asset.decode()} -> {code}")
            served.append(f"{page_path} ({len(assets)} local assets)")
        return f"/health 200, user 1's top 5 {state['user1']}; " + ", ".join(served)

    checks.run("the model server serves the lists, its docs and the web UI offline", api)

    def reader(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *compose,
                "exec",
                "-T",
                "-e",
                f"PGPASSWORD={values['MOVIEREC_READER_PASSWORD']}",
                "postgres",
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "movierec_reader",
                "-d",
                "movierec",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def read_only() -> str:
        count = reader("SELECT count(*) FROM current_recommendations")
        expect(count.returncode == 0, f"read: {count.stderr.strip()}")
        rows = int(count.stdout.strip())
        expect(rows > 0, "current_recommendations is empty")
        state["rows"] = rows
        write = reader("DELETE FROM batch_recommendations")
        expect(
            write.returncode != 0 and "permission denied" in write.stderr, f"write: {write.stderr.strip()}"
        )
        return f"reads {rows:,} rows of current_recommendations; DELETE refused (permission denied)"

    checks.run("psql as the read-only role reads the lists and cannot write", read_only)

    def dismissal() -> str:
        """The API's one write goes through movierec_feedback over the network (its own password)."""
        before = [i["movie_id"] for i in get_json(f"{API}/users/2/recommendations?limit=5")["items"]]
        code, _, payload = http("POST", f"{API}/users/2/dismissals", body={"movie_id": before[0]})
        expect(code == 201, f"POST /users/2/dismissals -> {code}: {payload[:200]!r}")
        after = [i["movie_id"] for i in get_json(f"{API}/users/2/recommendations?limit=5")["items"]]
        expect(before[0] not in after and len(after) == 5, f"list after the dismissal: {after}")
        stored = reader("SELECT count(movie_id) FROM dismissals WHERE user_id = 2")
        expect(
            stored.returncode == 0 and stored.stdout.strip() == "1",
            f"dismissals: {stored.stdout}{stored.stderr}",
        )
        return f"user 2 dismissed movie {before[0]}: 201, gone from the list (5 left), stored once"

    checks.run("a dismissal is recorded through the feedback role and leaves the list", dismissal)

    checks.run("task down", lambda: (sh(*task, "down", env=env, log=log), None)[1])

    def up_again() -> str:
        output = sh(*task, "up", "NO_PRETRAINED=1", env=env, log=log)
        return f"every service healthy, {once_per_up(output)}"

    checks.run("task up again (images cached, data kept)", up_again)

    def intact() -> str:
        count = reader("SELECT count(*) FROM current_recommendations")
        expect(
            count.returncode == 0 and int(count.stdout.strip()) == state.get("rows"),
            f"rows {count.stdout.strip()} vs {state.get('rows')}",
        )
        wait_for("/health 200", lambda: http("GET", f"{API}/health")[0] == 200, 120)
        body = get_json(f"{API}/users/1/recommendations?limit=5")
        items = body.get("items") or body.get("recommendations") or []
        expect([i.get("movie_id") for i in items] == state.get("user1"), "user 1's list changed")
        alias = get_json(f"{MLFLOW}/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion")
        return f"{state['rows']:,} rows, user 1's list and champion v{alias['model_version']['version']} kept"

    checks.run("the data survived down/up", intact)

    if args.keep:
        print(f"--keep: the stack is up as project {PROJECT}; env file {env_file}")
    else:
        checks.run("task down -- -v", lambda: (sh(*task, "down", "--", "-v", env=env, log=log), None)[1])

        def no_volume_left() -> str:
            left = volumes() - state.get("volumes_before", set())
            expect(not left, f"volumes left behind: {sorted(left)}")
            return "no volume left behind"

        checks.run("down -v leaves no volume (named or anonymous)", no_volume_left)
    if args.json:
        args.json.write_text(json.dumps({"timings_s": checks.timings, "failed": checks.failed}, indent=2))
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
