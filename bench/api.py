"""API load benchmark: the list lookup and the new-movie scorer against the framework's ceiling, on loopback.

    python -m bench.api [--home DIR] [--duration 30] [--connections 32] [--client auto|python|wrk]

One ``movierec serve`` process, a closed-loop load generator with ``--connections`` concurrent keep-alive
connections (each sends its next request when the last answer arrived), ``--duration`` seconds per
scenario after ``--warmup`` unrecorded seconds:

ceiling     GET /ping: a constant JSON answer through the same app, middleware and metrics
lookup      GET /users/{random published user}/recommendations?limit=10
new-movie   POST /predict/new-movie {a new movie from a pool of 50, a random user}

and, unless ``--no-extras``, three figures without targets: the lookup with the list memory off
(``MOVIEREC_API_CACHE_MB=0``, every request reads ``current_recommendations``), the new-movie scorer with
a never-seen title on every request (one MiniLM encode each), and the new movie ranked over all users.

Prints a table and writes ``bench/results/api.json`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "api.json"
TARGETS = {"lookup_p99_ms": 10.0, "lookup_vs_ceiling": 0.5, "new_movie_p99_ms": 50.0}
NEW_MOVIES = 50


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the data and the server ------------------------------------------------------------------------------


def prepare_home(home: str | None, epochs: int) -> tuple[Any, bool, dict[str, Any]]:
    """Settings of ``--home`` (its embedded server, its published batch), or a fresh home where the weekly
    pipeline runs once on the offline ML-100K."""
    from pipeline.core.settings import Settings

    if home:
        settings = Settings(
            MOVIEREC_HOME=home, DATABASE_URL="", MLFLOW_TRACKING_URI="", READER_DATABASE_URL=""
        )
        if not settings.pg_dir.exists():
            raise SystemExit(f"--home {home}: no embedded PostgreSQL there ({settings.pg_dir})")
        return settings, False, {}
    from pipeline.ingest.datasets import fetch_offline_ml100k
    from pipeline.orchestration.steps import run_all

    fresh = Path(tempfile.mkdtemp(prefix="movierec-bench-api-"))
    settings = Settings(MOVIEREC_HOME=fresh, DATABASE_URL="", MLFLOW_TRACKING_URI="", READER_DATABASE_URL="")
    log(f"fresh MOVIEREC_HOME {fresh}: the weekly pipeline on ML-100K ({epochs} epoch(s)), a few minutes")
    t0 = time.perf_counter()
    results = run_all(
        source=str(fetch_offline_ml100k(settings).path),
        dataset="ml-100k",
        epochs=epochs,
        top_n=100,
        settings=settings,
    )
    log(results["report"])
    return settings, True, {"weekly_run_s": round(time.perf_counter() - t0, 1)}


def workload(settings: Any) -> dict[str, Any]:
    """Published users and the catalogue's genres, read from the app database."""
    from sqlalchemy import text

    from database.engine import get_engine

    with get_engine(settings).connect() as conn:
        users = [r[0] for r in conn.execute(text("SELECT DISTINCT user_id FROM current_recommendations"))]
        genres = [r[0] for r in conn.execute(text("SELECT DISTINCT unnest(genres) FROM movies ORDER BY 1"))]
    if not users:
        raise SystemExit("no published recommendations in this home: run `movierec run` first")
    return {"users": users, "genres": genres}


class Server:
    """``movierec serve`` on a free loopback port, for one configuration."""

    def __init__(self, settings: Any, extra_env: dict[str, str] | None = None) -> None:
        self.settings, self.extra_env = settings, extra_env or {}
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        env = {
            **os.environ,
            "MOVIEREC_HOME": str(self.settings.home),
            "DATABASE_URL": "",
            "MLFLOW_TRACKING_URI": "",
            "READER_DATABASE_URL": "",
            **self.extra_env,
        }
        self.log = open(self.settings.home / f"bench-api-server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"movierec serve exited ({self.proc.returncode}); see {self.log.name}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=5)
                if health.status_code == 200:
                    self.health = health.json()
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"movierec serve not healthy after 180 s; see {self.log.name}")
            time.sleep(0.5)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# --- CPU accounting -----------------------------------------------------------------------------------------


def _busy_s() -> float:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")


def _cpu_by_pid(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:  # gone: its time during the span is lost (a backend that exited)
            pass
    return out


class CpuMeter:
    """Cores used during a span by the server, PostgreSQL (this home's postmaster and its children), the
    load generator, and everything else on the machine."""

    def __init__(self, server_pid: int, postmaster_pid: int | None, client: list[psutil.Process]) -> None:
        self.server = [psutil.Process(server_pid)]
        self.postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None
        self.client = client

    @property
    def postgres(self) -> list[psutil.Process]:
        if self.postmaster is None:
            return []
        try:
            return [self.postmaster, *self.postmaster.children(recursive=True)]
        except psutil.Error:
            return []

    def start(self) -> None:
        self.t, self.busy = time.perf_counter(), _busy_s()
        self.base = {k: _cpu_by_pid(getattr(self, k)) for k in ("server", "postgres", "client")}

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t
        used = {}
        for k in ("server", "postgres", "client"):
            now = _cpu_by_pid(getattr(self, k))
            used[k] = sum(v - self.base[k].get(pid, 0.0) for pid, v in now.items()) / wall  # new pids from 0
        used["others"] = max(0.0, (_busy_s() - self.busy) / wall - sum(used.values()))
        return {f"{k}_cores": round(v, 2) for k, v in used.items()}


# --- load generators ----------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    method: str
    path: str  # {user} is replaced per request
    body: str | None = None  # JSON; {user} and {title} replaced per request
    titles: list[str] = field(default_factory=list)  # empty: a never-seen title per request
    query: str = ""


def _render(
    s: Scenario, users: list[int], rng: random.Random, counter: list[int]
) -> tuple[str, bytes | None]:
    user = str(rng.choice(users))
    path = s.path.replace("{user}", user) + s.query
    if s.body is None:
        return path, None
    if s.titles:
        title = rng.choice(s.titles)
    else:
        counter[0] += 1
        title = f"Unseen Film No. {counter[0]} ({os.getpid()})"
    return path, s.body.replace("{user}", user).replace("{title}", title).encode()


async def _python_load(
    url: str, s: Scenario, users: list[int], connections: int, seconds: float, record: bool
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    counter = [0]
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(
        url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        end = time.perf_counter() + seconds

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < end:
                path, body = _render(s, users, rng, counter)
                t = time.perf_counter()
                try:
                    async with session.request(s.method, path, data=body, headers=headers) as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(repr(exc)[:200])
                    continue
                if record:
                    latencies.append(time.perf_counter() - t)
                    statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker(k) for k in range(connections)))
    return {"latencies": latencies, "statuses": statuses, "errors": errors}


def python_load(
    url: str, s: Scenario, users: list[int], connections: int, warmup: float, seconds: float, meter: CpuMeter
) -> dict[str, Any]:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_python_load(url, s, users, connections, warmup, record=False))
    meter.start()
    t0 = time.perf_counter()
    raw = runner(_python_load(url, s, users, connections, seconds, record=True))
    wall = time.perf_counter() - t0
    cpu = meter.read()
    lat = sorted(raw["latencies"])
    n = len(lat)

    def pct(q: float) -> float:
        return round(lat[min(n - 1, int(q * n))] * 1000, 3) if n else float("nan")

    bad = sum(v for k, v in raw["statuses"].items() if k >= 400)
    return {
        "requests": n,
        "seconds": round(wall, 2),
        "req_per_s": round(n / wall, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1] * 1000, 3) if n else None,
        "statuses": {str(k): v for k, v in sorted(raw["statuses"].items())},
        "errors": bad + len(raw["errors"]),
        "error_samples": raw["errors"][:5],
        "cpu": cpu,
    }


_WRK_LUA = """
local users = {%(users)s}
local titles = {%(titles)s}
local body = %(body)s
local n = 0
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local user = tostring(users[math.random(#users)])
  local path = string.gsub("%(path)s", "{user}", user) .. "%(query)s"
  if body == nil then return wrk.format("%(method)s", path) end
  local title
  if #titles > 0 then title = titles[math.random(#titles)]
  else n = n + 1; title = "Unseen Film No. " .. n .. " " .. math.random(1e9) end
  local b = string.gsub(string.gsub(body, "{user}", user), "{title}", title)
  return wrk.format("%(method)s", path, {["Content-Type"] = "application/json"}, b)
end
"""


def _lua_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this text


def wrk_load(
    url: str,
    s: Scenario,
    users: list[int],
    connections: int,
    warmup: float,
    seconds: float,
    meter: CpuMeter,
    workdir: Path,
) -> dict[str, Any]:
    script = workdir / f"{s.name}.lua"
    script.write_text(
        _WRK_LUA
        % {
            "users": ",".join(map(str, users)),
            "titles": ",".join(_lua_str(t) for t in s.titles),
            "body": _lua_str(s.body) if s.body else "nil",
            "path": s.path,
            "query": s.query,
            "method": s.method,
        }
    )
    threads = str(min(2, connections))
    subprocess.run(
        [
            "wrk",
            "-t",
            threads,
            "-c",
            str(connections),
            "-d",
            f"{max(1, int(warmup))}s",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
    )
    meter.client = []  # wrk's CPU: from its rusage once it has been waited for
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter.start()
    out = subprocess.run(
        [
            "wrk",
            "-t",
            threads,
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu = meter.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    cpu["client_cores"] = round(wrk_cores, 2)
    cpu["others_cores"] = round(max(0.0, cpu["others_cores"] - wrk_cores), 2)

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return round(float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], 3)

    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(total.group(1)) if total else 0
    return {
        "requests": requests,
        "seconds": seconds,
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms(dist["50"]),
        "p90_ms": ms(dist["90"]),
        "p99_ms": ms(dist["99"]),
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0),
        "cpu": cpu,
        "wrk_output": out,
    }


# --- the run ------------------------------------------------------------------------------------------------


def scenarios(genres: list[str]) -> dict[str, Scenario]:
    rng = random.Random(11)
    body = json.dumps(
        {"title": "{title}", "genres": ["Drama", "Comedy"], "runtime": 110, "year": 1996, "user_id": 0}
    ).replace('"user_id": 0', '"user_id": {user}')
    if "Drama" not in genres:
        body = body.replace('"Drama", "Comedy"', json.dumps(genres[0]))
    pool = [
        f"{rng.choice(['The', 'A', 'Last', 'Secret'])} {rng.choice(['Orbit', 'Harbour', 'Winter', 'Heist'])} "
        f"{k}"
        for k in range(NEW_MOVIES)
    ]
    anonymous = body.replace(', "user_id": {user}', "")
    return {
        "ceiling": Scenario("ceiling", "GET", "/ping"),
        "lookup": Scenario("lookup", "GET", "/users/{user}/recommendations", query="?limit=10"),
        "new_movie": Scenario("new_movie", "POST", "/predict/new-movie", body, pool),
        "lookup_no_memory": Scenario(
            "lookup_no_memory", "GET", "/users/{user}/recommendations", query="?limit=10"
        ),
        "new_movie_unseen_titles": Scenario("new_movie_unseen_titles", "POST", "/predict/new-movie", body),
        "new_movie_top_users": Scenario(
            "new_movie_top_users", "POST", "/predict/new-movie", anonymous, pool, query="?limit=10"
        ),
    }


def run(args: argparse.Namespace) -> int:
    from database import embedded

    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--client wrk: wrk is not on PATH (Debian: apt-get install wrk)")
    settings, fresh, setup = prepare_home(args.home, args.epochs)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "loadavg_before": os.getloadavg(),
        "client": client,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "targets": TARGETS,
        "setup": setup,
        "results": {},
    }
    try:
        work = workload(settings)
        plan = scenarios(work["genres"])
        postmaster = embedded.status(settings).pid
        workdir = Path(tempfile.mkdtemp(prefix="movierec-bench-api-wrk-"))
        runs = [({}, ["ceiling", "lookup", "new_movie"])]
        if not args.no_extras:
            runs[0][1].extend(["new_movie_unseen_titles", "new_movie_top_users"])
            runs.append(({"MOVIEREC_API_CACHE_MB": "0"}, ["lookup_no_memory"]))
        for env, names in runs:
            with Server(settings, env) as server:
                report["model_version"] = server.health["model"]["version"]
                report["batch_id"] = server.health["database"]["batch_id"]
                for name in names:
                    meter = CpuMeter(server.proc.pid, postmaster, [psutil.Process()])  # type: ignore[union-attr]
                    log(
                        f"{name}: {args.connections} connections, {args.warmup:g} s warm-up + "
                        f"{args.duration:g} s ({client})"
                    )
                    if client == "wrk":
                        result = wrk_load(
                            server.url,
                            plan[name],
                            work["users"],
                            args.connections,
                            args.warmup,
                            args.duration,
                            meter,
                            workdir,
                        )
                    else:
                        result = python_load(
                            server.url,
                            plan[name],
                            work["users"],
                            args.connections,
                            args.warmup,
                            args.duration,
                            meter,
                        )
                    report["results"][name] = result
                    log(
                        f"  {result['req_per_s']:,.0f} req/s, p50 {result['p50_ms']} ms, "
                        f"p99 {result['p99_ms']} ms, "
                        f"{result['errors']} errors; cores: {result['cpu']}"
                    )
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if fresh and not args.keep:
            embedded.stop(settings)
            shutil.rmtree(settings.home, ignore_errors=True)
        elif fresh:
            log(
                f"--keep: {settings.home} left in place "
                f"(stop: MOVIEREC_HOME={settings.home} movierec db stop)"
            )
    report["loadavg_after"] = os.getloadavg()
    report["verdict"] = verdict(report["results"])
    print_report(report)
    output = Path(args.output) if args.output else RESULTS
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1, default=str))
    log(f"written {output}")
    return 0


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    c, lookup, new = results["ceiling"], results["lookup"], results["new_movie"]
    ratio = lookup["req_per_s"] / c["req_per_s"] if c["req_per_s"] else float("nan")
    return {
        "lookup_vs_ceiling": round(ratio, 3),
        "new_movie_vs_ceiling": round(new["req_per_s"] / c["req_per_s"], 3) if c["req_per_s"] else None,
        "lookup_p99_ok": lookup["p99_ms"] <= TARGETS["lookup_p99_ms"],
        "lookup_ratio_ok": ratio >= TARGETS["lookup_vs_ceiling"],
        "new_movie_p99_ok": new["p99_ms"] <= TARGETS["new_movie_p99_ms"],
        "zero_errors": all(r["errors"] == 0 for r in results.values()),
    }


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\nmovierec API on {m['cpu_count']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB; "
        f"client {report['client']}, "
        f"{report['connections']} connections, {report['duration_s']:g} s per scenario; model v"
        f"{report.get('model_version')}, batch {report.get('batch_id')}"
    )
    print(
        f"{'scenario':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
        "   cores: server/postgres/client/others"
    )
    for name, r in report["results"].items():
        c = r["cpu"]
        print(
            f"{name:<26}{r['req_per_s']:>10,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8}   "
            f"{c['server_cores']}/{c['postgres_cores']}/{c['client_cores']}/{c['others_cores']}"
        )
    v = report["verdict"]

    def ok(flag: bool) -> str:
        return "met" if flag else "MISSED"

    print(
        f"lookup p99 <= {TARGETS['lookup_p99_ms']:g} ms: {ok(v['lookup_p99_ok'])}; lookup/ceiling req/s = "
        f"{v['lookup_vs_ceiling']} (>= {TARGETS['lookup_vs_ceiling']}: {ok(v['lookup_ratio_ok'])}); "
        f"new-movie p99 <= {TARGETS['new_movie_p99_ms']:g} ms: {ok(v['new_movie_p99_ok'])}; "
        f"zero errors: {ok(v['zero_errors'])}; "
        f"load average before/after {report['loadavg_before'][0]:.2f}/{report['loadavg_after'][0]:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", help="an existing MOVIEREC_HOME with a published batch (default: a fresh one)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="training epochs for a fresh home")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--client",
        choices=("auto", "python", "wrk"),
        default="auto",
        help="auto: wrk when on PATH, else the Python (aiohttp) generator",
    )
    parser.add_argument("--no-extras", action="store_true", help="only the three scenarios with targets")
    parser.add_argument("--keep", action="store_true", help="keep a fresh home and its server")
    parser.add_argument("--output", help=f"JSON report (default {RESULTS})")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
