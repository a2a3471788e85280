"""Reliability drills against a live API server and its embedded PostgreSQL, shared by the test suite
(``tests/model_server/test_drills.py``, the fast parts) and ``bench/drills.py`` (the full drills).

* ``hostile_corpus`` / ``run_corpus``: hand-made bad requests (huge, negative and SQL-like ids, deep JSON,
  oversized bodies and headers, bad content types, Host header games, NUL bytes), each sent as raw bytes on
  its own connection, each with the statuses the API documents for it;
* ``load_with_outage``: a closed-loop load (``clients`` concurrent keep-alive connections over the routes
  that read the database and those that do not) during which the database is stopped and started again,
  cleanly (``pg_ctl stop -m fast``, what ``movierec db stop`` does) or as a crash (``-m immediate``: no
  shutdown checkpoint, crash recovery at the next start); it counts answers by status and phase, checks
  that every 503 carries ``Retry-After``, and measures the recovery after the database is back;
* ``table_counts``: the row count of every table of the app database, to compare before and after.

Only loopback addresses are used; every loop is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from database.engine import sqlalchemy_url

# --- the app database ---------------------------------------------------------------------------------------


def table_counts(database_url: str) -> dict[str, int]:
    """Rows of every table of the ``public`` schema of ``database_url``'s database."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            names = [
                r[0]
                for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            ]
            quote = conn.dialect.identifier_preparer.quote
            return {
                n: int(conn.execute(text(f"SELECT count(*) FROM {quote(n)}")).scalar_one())
                for n in sorted(names)
            }
    finally:
        engine.dispose()


def published(database_url: str) -> tuple[list[int], list[int]]:
    """Users with a published list, and the movies of those lists (all known to the champion)."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            users = [r[0] for r in conn.execute(text("SELECT DISTINCT user_id FROM current_recommendations"))]
            movies = [
                r[0] for r in conn.execute(text("SELECT DISTINCT movie_id FROM current_recommendations"))
            ]
    finally:
        engine.dispose()
    return sorted(users), sorted(movies)


def accepting(database_url: str) -> bool:
    """Whether the server of ``database_url`` accepts a connection now."""
    import psycopg2

    try:
        psycopg2.connect(
            make_url(sqlalchemy_url(database_url))
            .set(drivername="postgresql")
            .render_as_string(hide_password=False),
            connect_timeout=1,
        ).close()
    except psycopg2.Error:
        return False
    return True


def _movierec_db(settings: Any, command: str) -> None:
    """``movierec db <command>`` for ``settings``' home, in a process of its own, as an operator runs it (the
    embedded server's handle is kept per process: one process cannot stop a server and start it again)."""
    env = {**os.environ, "MOVIEREC_HOME": str(settings.home), "DATABASE_URL": ""}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "db", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"movierec db {command} failed: {(done.stderr or done.stdout).strip()[-500:]}")


def stop_database(settings: Any, mode: str) -> None:
    """Stop the embedded server of ``settings``: ``fast``, a clean stop (``movierec db stop``), or
    ``immediate``, a crash (``pg_ctl stop -m immediate``: every backend ends at once, no shutdown checkpoint,
    crash recovery at the next start)."""
    if mode == "fast":
        _movierec_db(settings, "stop")
        return
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # as database.embedded.stop does

    pg_ctl(["-w", "-m", mode, "stop"], pgdata=settings.pg_dir, user="pgserver" if os.geteuid() == 0 else None)


def start_database(settings: Any) -> None:
    """``movierec db start``: returns once the server accepts connections."""
    _movierec_db(settings, "start")


# --- raw HTTP -----------------------------------------------------------------------------------------------


@dataclass
class RawAnswer:
    status: int | None  # None: the server closed the connection without an answer
    headers: dict[str, str]
    body: bytes
    sent_all: bool


def raw_request(port: int, data: bytes, timeout: float = 30.0) -> RawAnswer:
    """Send ``data`` as it is on a new loopback connection and read the answer until the server closes it
    (requests carry ``Connection: close``) or has sent the announced body."""
    answer, sent_all = b"", True
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server answered and closed before reading everything
            sent_all = False
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                head, sep, body = answer.partition(b"\r\n\r\n")
                if sep:
                    length = re_length(head)
                    if length is not None and len(body) >= length:
                        break
        except OSError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = None
    if lines and lines[0].startswith(b"HTTP/1.1 "):
        status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return RawAnswer(status, headers, body, sent_all)


def re_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def _request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str = "api",
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1", "surrogateescape")]
    if host:
        lines.append(f"Host: {host}".encode())
    for name, value in headers or []:
        lines.append(f"{name}: {value}".encode("latin-1"))
    if body or method in ("POST", "PUT", "PATCH"):
        if not any(n.lower() == "content-length" for n, _ in headers or []):
            lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass
class Case:
    name: str
    kind: str
    data: bytes
    expect: frozenset[int]  # the documented statuses; None in it: the server may also just close
    closed_ok: bool = False  # a refusal by closing the connection is an acceptable answer


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def hostile_corpus(user: int, movie: int) -> list[Case]:
    """The hostile requests, for a published ``user`` and a catalogue ``movie``."""
    J = [("Content-Type", "application/json")]
    existing = "/recommendations/existing"
    new_movie = "/predict/new-movie"
    ok_new = {"title": "T", "genres": ["Drama"], "user_id": user}
    cases: list[Case] = []

    def add(name: str, kind: str, data: bytes, *expect: int, closed_ok: bool = False) -> None:
        cases.append(Case(name, kind, data, frozenset(expect), closed_ok))

    # ids: huge, negative, zero, not numbers, SQL-like
    for bad in (
        "0",
        "-1",
        "2147483648",
        "9" * 40,
        "1e3",
        "0x10",
        "1.5",
        "%20",
        "1%20OR%201=1",
        "1;DROP%20TABLE%20users",
        "'%20OR%20'1'='1",
        "1--",
        "$1",
        "NULL",
        "1" * 10000,
    ):
        add(f"user id {bad[:30]}", "ids", _request("GET", f"/users/{bad}/recommendations"), 422)
        add(f"movie id {bad[:30]}", "ids", _request("GET", f"/movies/{bad}/similar"), 422)
    for bad in ("0", "-5", "1001", "1e9", "abc", "10;SELECT%201", "%00"):
        add(f"limit {bad}", "ids", _request("GET", f"/users/{user}/recommendations?limit={bad}"), 422)
    add("unknown user: the fallback list", "ids", _request("GET", "/users/2147483647/recommendations"), 200)
    add("unknown movie", "ids", _request("GET", "/movies/2147483647/similar"), 404)
    add(
        "existing: huge id",
        "ids",
        _request("POST", existing, J, _json({"user_id": user, "movie_ids": [10**40]})),
        422,
    )
    add(
        "existing: negative id",
        "ids",
        _request("POST", existing, J, _json({"user_id": -1, "movie_ids": [movie]})),
        422,
    )
    add(
        "existing: SQL-like id",
        "ids",
        _request("POST", existing, J, _json({"user_id": "1 OR 1=1", "movie_ids": [movie]})),
        422,
    )
    add(
        "existing: 1,001 ids",
        "ids",
        _request("POST", existing, J, _json({"user_id": user, "movie_ids": [movie] * 1001})),
        422,
    )
    add(
        "new movie: SQL-like title",
        "ids",
        _request("POST", new_movie, J, _json({**ok_new, "title": "x'); DROP TABLE movies; --"})),
        200,
    )
    # JSON shape: deep, wrong types, not JSON
    for depth in (100, 5000, 20000):
        add(
            f"deep JSON array x{depth}",
            "json",
            _request("POST", existing, J, b"[" * depth + b"]" * depth),
            422,
            413,
        )
        deep = b'{"a":' * depth + b"1" + b"}" * depth
        add(f"deep JSON object x{depth}", "json", _request("POST", new_movie, J, deep), 422, 413)
    for body in (
        b"null",
        b"[]",
        b"1e999",
        b"NaN",
        b'"x"',
        b"{",
        b'{"user_id": 1, "movie_ids": [1],}',
        b"\xff\xfe",
        b"",
    ):
        add(f"existing body {body[:20]!r}", "json", _request("POST", existing, J, body), 422)
    add(
        "duplicate key: the last one counts",
        "json",
        _request("POST", existing, J, b'{"user_id": 1, "user_id": %d, "movie_ids": [%d]}' % (user, movie)),
        200,
    )
    add("unknown field", "json", _request("POST", new_movie, J, _json({**ok_new, "director": "x"})), 422)
    # sizes: bodies and heads
    big = _json({"user_id": user, "movie_ids": [movie] * 40000})
    add("body over 100 KB", "size", _request("POST", existing, J, big), 413, closed_ok=True)
    add("body 2 MB", "size", _request("POST", new_movie, J, b" " * (2 << 20)), 413, closed_ok=True)
    add(
        "Content-Length 10 GB, no body",
        "size",
        _request("POST", existing, [*J, ("Content-Length", str(10 << 30))]),
        413,
        closed_ok=True,
    )
    add(
        "Content-Length -1",
        "size",
        _request("POST", existing, [*J, ("Content-Length", "-1")], b"{}"),
        400,
        413,
    )
    add("header 40 KiB", "size", _request("GET", "/ping", [("X-Big", "a" * 40_000)]), 431, closed_ok=True)
    add("header 4 MiB", "size", _request("GET", "/ping", [("X-Big", "a" * (4 << 20))]), 431, closed_ok=True)
    add(
        "2,000 headers",
        "size",
        _request("GET", "/ping", [(f"X-{k}", "v" * 20) for k in range(2000)]),
        431,
        closed_ok=True,
    )
    add("URL 40 KiB", "size", _request("GET", "/ping?" + "q" * 40_000), 431, closed_ok=True)
    # content types
    body = _json({"user_id": user, "movie_ids": [movie]})
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=latin-1",
        "",
    ):
        headers = [("Content-Type", ctype)] if ctype else []
        add(
            f"content type {ctype[:30]!r}",
            "content-type",
            _request("POST", existing, headers, body),
            200,
            415,
            422,
        )
    add(
        "form body",
        "content-type",
        _request(
            "POST",
            existing,
            [("Content-Type", "application/x-www-form-urlencoded")],
            b"user_id=1&movie_ids=1",
        ),
        415,
        422,
    )
    # Host header games and request targets
    for host in ("evil.example", "evil.example:80", "", "127.0.0.1:1@evil.example", "a" * 300, "[::1]"):
        add(
            f"Host {host[:30]!r}, trailing slash",
            "host",
            _request("GET", f"/users/{user}/recommendations/", host=host),
            404,
            400,
        )
    add("two Host headers", "host", _request("GET", "/ping", [("Host", "evil.example")]), 200, 400)
    add("X-Forwarded-Host", "host", _request("GET", "/health/", [("X-Forwarded-Host", "evil.example")]), 404)
    add(
        "absolute-form target",
        "host",
        _request("GET", "http://evil.example/users/1/recommendations/"),
        404,
        400,
    )
    add("path traversal", "host", _request("GET", "/../../etc/passwd"), 404, 400)
    add("double slash", "host", _request("GET", f"//users/{user}/recommendations"), 404)
    # NUL bytes
    add("NUL in the path", "nul", _request("GET", f"/users/{user}\x00/recommendations"), 400, closed_ok=True)
    add("%00 in the path", "nul", _request("GET", f"/users/{user}%00/recommendations"), 422, 404)
    add(
        "NUL in the content type",
        "nul",
        _request("POST", existing, [("Content-Type", "application/json\x00")], body),
        400,
        closed_ok=True,
    )
    add("NUL in a header", "nul", _request("GET", "/ping", [("X-A", "a\x00b")]), 400, closed_ok=True)
    add("NUL in a title", "nul", _request("POST", new_movie, J, _json({**ok_new, "title": "a\x00b"})), 422)
    add(
        "NUL in a genre",
        "nul",
        _request("POST", new_movie, J, _json({**ok_new, "genres": ["Drama\x00"]})),
        422,
    )
    add("NUL in a name", "nul", _request("POST", new_movie, J, _json({**ok_new, "actors": ["\x00"]})), 422)
    add(
        "lone surrogate in a title",
        "nul",
        _request("POST", new_movie, J, b'{"title": "\\ud800", "genres": ["Drama"]}'),
        422,
    )
    # methods
    for method, path in (
        ("DELETE", f"/users/{user}/recommendations"),
        ("PUT", existing),
        ("TRACE", "/health"),
        ("PATCH", new_movie),
        ("GET", existing),
        ("BREW", "/ping"),
    ):
        add(
            f"{method} {path}",
            "method",
            _request(method, path, J if method in ("PUT", "PATCH") else None),
            405,
            400,
            closed_ok=method == "BREW",
        )
    return cases


@dataclass
class CaseResult:
    name: str
    kind: str
    status: int | None
    expected: list[int]
    ok: bool


def run_corpus(port: int, cases: list[Case]) -> list[CaseResult]:
    """Each case on its own connection; ``ok``: answered with a documented status (or, where allowed,
    refused by closing the connection), never a 5xx."""
    results = []
    for case in cases:
        answer = raw_request(port, case.data)
        status = answer.status
        ok = (status in case.expect) if status is not None else case.closed_ok
        if status is not None and status == 503:
            ok = ok and "retry-after" in answer.headers
        results.append(
            CaseResult(case.name, case.kind, status, sorted(case.expect), ok and (status or 0) < 500)
        )
    return results


# --- load with an outage ------------------------------------------------------------------------------------


@dataclass
class Outage:
    mode: str  # fast (clean) or immediate (crash)
    clients: int
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> status -> count
    by_route: dict[str, dict[str, int]] = field(default_factory=dict)  # route -> status -> count
    server_errors: int = 0  # 5xx answers other than 503
    without_retry_after: int = 0  # 503 answers without Retry-After
    transport_errors: int = 0  # the API server itself unreachable or closing a connection mid-answer
    transport_samples: list[str] = field(default_factory=list)
    stop_s: float = 0.0  # the stop command's duration
    start_s: float = 0.0  # the start command's duration
    back_s: float = 0.0  # from the start command to the database's first accepted connection
    first_ok_after_back_s: float | None = None  # first 200 on a database route sent once it was back
    last_503_after_back_s: float | None = None  # end of the last 503 to a request sent once it was back
    requests: int = 0

    @property
    def recovery_s(self) -> float:
        """From the database's return (its first accepted connection) to the end of the last 503 answered to
        a request sent after it: 0 when the first request after its return was answered."""
        return max(0.0, self.last_503_after_back_s or 0.0)


# Routes of the load: (label, reads the database)
ROUTES = ("lookup", "similar", "existing", "health", "fallback", "new_movie")


def _route_request(
    rng: random.Random, users: list[int], movies: list[int], route: str
) -> tuple[str, str, Any]:
    user, movie = rng.choice(users), rng.choice(movies)
    if route == "lookup":
        return "GET", f"/users/{user}/recommendations?limit=10", None
    if route == "similar":
        return "GET", f"/movies/{movie}/similar?limit=10", None
    if route == "existing":
        return (
            "POST",
            "/recommendations/existing",
            {"user_id": user, "movie_ids": [movie, rng.choice(movies)]},
        )
    if route == "health":
        return "GET", "/health", None
    if route == "fallback":
        return "GET", f"/users/{2_000_000_000 + rng.randrange(1000)}/recommendations", None
    return "POST", "/predict/new-movie", {"title": "Drill", "genres": ["Drama"], "user_id": user}


def load_with_outage(
    url: str,
    users: list[int],
    movies: list[int],
    stop: Callable[[], None],
    start: Callable[[], None],
    ready: Callable[[], bool] | None = None,
    *,
    mode: str,
    clients: int = 8,
    before_s: float = 2.0,
    down_s: float = 2.0,
    after_s: float = 3.0,
    max_after_s: float = 60.0,
    seed: int = 0,
) -> Outage:
    """A closed load on ``url`` for ``before_s``, then ``stop()`` (in a thread, the load going on), ``down_s``
    with the database down, ``start()``, then the load until every database route has answered 200 again
    and ``after_s`` more (at most ``max_after_s``). ``ready()``, polled while ``start()`` runs, says when the
    database accepts connections again (without it: when ``start()`` returns)."""
    import aiohttp

    out = Outage(mode, clients)
    marks: dict[str, float] = {}
    records: list[tuple[float, float, str, int, bool]] = []  # sent, done, route, status, retry-after
    lock = threading.Lock()

    def outage() -> None:
        time.sleep(before_s)
        marks["stop"] = time.monotonic()
        stop()
        marks["stopped"] = time.monotonic()
        time.sleep(down_s)
        marks["start"] = time.monotonic()
        starting = threading.Thread(target=start)
        starting.start()
        while ready is not None and "back" not in marks and starting.is_alive():
            if ready():
                marks["back"] = time.monotonic()
            else:
                time.sleep(0.01)
        starting.join()
        marks.setdefault("back", time.monotonic())
        marks["started"] = time.monotonic()

    def recovered() -> bool:
        if "started" not in marks:
            return False
        t = marks["started"]
        with lock:
            oks = {r[2] for r in records if r[0] >= t and r[3] == 200}
            return oks >= {"lookup", "similar", "existing", "health"}

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
            done_at: list[float] = []

            def finished() -> bool:
                now = time.monotonic()
                if "started" in marks and now - marks["started"] > max_after_s:
                    return True
                if not done_at and recovered():
                    done_at.append(now)
                return bool(done_at) and now - done_at[0] > after_s

            async def client(k: int) -> None:
                rng = random.Random(seed * 1000 + k)
                while not finished():
                    route = ROUTES[rng.randrange(len(ROUTES))]
                    method, path, body = _route_request(rng, users, movies, route)
                    sent = time.monotonic()
                    try:
                        async with session.request(method, path, json=body) as r:
                            await r.read()
                            status, retry = r.status, "Retry-After" in r.headers
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        out.transport_errors += 1
                        if len(out.transport_samples) < 5:
                            out.transport_samples.append(f"{route}: {exc!r}"[:200])
                        await asyncio.sleep(0.05)
                        continue
                    with lock:
                        records.append((sent, time.monotonic(), route, status, retry))

            await asyncio.gather(*(client(k) for k in range(clients)))

    worker = threading.Thread(target=outage, daemon=True)
    worker.start()
    asyncio.run(run())
    worker.join(timeout=120)
    if "started" not in marks:
        raise RuntimeError("the database did not start again during the drill")

    # phases by when a request was sent: before the stop, during the stop command, down, between the start
    # command and the database's first accepted connection, after that
    bounds = [("before", marks["stop"]), ("stopping", marks["stopped"]), ("down", marks["start"])]
    bounds.append(("starting", marks["back"]))
    phases: dict[str, Counter[str]] = {p: Counter() for p, _ in [*bounds, ("after", 0.0)]}
    routes: dict[str, Counter[str]] = {r: Counter() for r in ROUTES}
    back = marks["back"]
    for sent, done, route, status, retry in records:
        phase = next((p for p, t in bounds if sent < t), "after")
        phases[phase][str(status)] += 1
        routes[route][str(status)] += 1
        out.without_retry_after += status == 503 and not retry
        if sent >= back and status == 503:
            out.last_503_after_back_s = max(out.last_503_after_back_s or 0.0, done - back)
        if sent >= back and status == 200 and route in ("lookup", "similar", "existing", "health"):
            first = done - back
            if out.first_ok_after_back_s is None or first < out.first_ok_after_back_s:
                out.first_ok_after_back_s = first
    out.server_errors = sum(c for p in phases.values() for s, c in p.items() if int(s) >= 500 and s != "503")
    out.statuses = {p: dict(sorted(c.items())) for p, c in phases.items()}
    out.by_route = {r: dict(sorted(c.items())) for r, c in routes.items()}
    out.stop_s = marks["stopped"] - marks["stop"]
    out.start_s = marks["started"] - marks["start"]
    out.back_s = marks["back"] - marks["start"]
    out.requests = len(records)
    return out
