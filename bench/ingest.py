"""Ingestion benchmark on an ML-25M-shaped dataset: the engine against the raw COPY floor.

    python -m bench.ingest --rows N [--workdir DIR] [--keep] [--seed S]

Four measurements on one PostgreSQL server (a fresh embedded one, or the server of ``DATABASE_URL``,
where it creates and drops its own ``movierec_bench_*`` databases and touches no other):

(a) first ingest of the generated directory into an empty migrated database (``ingest_directory``);
(b) the floor: one ``COPY ratings (...) FROM STDIN (FORMAT csv, HEADER)`` of the same rows, timestamps
    already ISO text, into the real ``ratings`` table of a second migrated database whose users and movies
    were filled beforehand (untimed), so the same primary key, indexes and foreign keys are maintained;
(c) a second ingest of the same directory into (a)'s database (nothing may change);
(d) a weekly delta (4% of the rows: new ratings and newer re-ratings of existing pairs) into (a)'s database.

Prints a table and writes ``bench/results/ingest.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
GEN_VERSION = 1  # bump when the generated data changes: cached datasets of other versions are not reused

# ML-25M, from its README and ratings.csv
ML25M_ROWS, ML25M_USERS, ML25M_RATED, ML25M_MOVIES, ML25M_MAX_MOVIE_ID = (
    25_000_095,
    162_541,
    59_047,
    62_423,
    209_171,
)
MIN_MOVIES = 5_000
RATING_COUNTS = np.array(
    [393_068, 776_815, 399_490, 1_640_868, 1_262_797, 4_896_928, 3_177_318, 6_639_798, 2_200_539, 3_612_474],
    dtype=np.float64,
)  # 0.5, 1.0, ..., 5.0 stars in ML-25M
RATING_P = RATING_COUNTS / RATING_COUNTS.sum()
T_FIRST, T_LAST = 789_652_009, 1_574_327_703  # first and last timestamp of ML-25M (1995-01-09, 2019-11-21)
DELTA_START = T_LAST + 86_400  # the delta is the following week
DELTA_FRACTION = 0.04
DELTA_MIX = {"rerated": 0.25, "new_pairs": 0.55, "new_users": 0.20}
CHUNK_ROWS = 1_000_000
SHIFT = 20  # key = user_id << SHIFT | movie_id (movie ids < 2**20)
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- fast CSV formatting -------------------------------------------------------------------------------

_POW10 = 10 ** np.arange(1, 19, dtype=np.int64)
_RATING_TEXT = np.frombuffer(b"".join(f"{0.5 * i:.1f}".encode() for i in range(1, 11)), np.uint8).reshape(
    10, 3
)
_ISO_TEMPLATE = np.frombuffer(b"0000-00-00 00:00:00+00", np.uint8)


def _csv_bytes(columns: list[np.ndarray]) -> bytes:
    """Comma-separated lines from int64 arrays (non-negative, any width) and uint8 matrices (fixed width)."""
    n = len(columns[0])
    widths = []
    for col in columns:
        if col.ndim == 1:
            widths.append(np.searchsorted(_POW10, col, side="right") + 1)
        else:
            widths.append(np.full(n, col.shape[1], dtype=np.int64))
    line_len = sum(widths) + len(columns)  # commas and the newline
    pos = np.zeros(n, dtype=np.int64)
    np.cumsum(line_len[:-1], out=pos[1:])
    buf = np.empty(int(pos[-1] + line_len[-1]) if n else 0, dtype=np.uint8)
    for j, (col, width) in enumerate(zip(columns, widths)):
        if col.ndim == 1:
            rest, end = col.copy(), pos + width - 1
            for d in range(int(width.max()) if n else 0):
                live = width > d
                buf[end[live] - d] = 48 + rest[live] % 10
                rest //= 10
        else:
            for c in range(col.shape[1]):
                buf[pos + c] = col[:, c]
        pos += width
        buf[pos] = ord("\n") if j == len(columns) - 1 else ord(",")
        pos += 1
    return buf.tobytes()


def _put_digits(out: np.ndarray, at: int, values: np.ndarray, width: int) -> None:
    for d in range(width):
        out[:, at + width - 1 - d] = 48 + values % 10
        values = values // 10


def _iso_matrix(ts: np.ndarray) -> np.ndarray:
    """Unix seconds as ``YYYY-MM-DD HH:MM:SS+00`` (timestamptz input), one 22-byte row each."""
    day = (ts // 86_400).astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    sec = ts % 86_400
    out = np.empty((len(ts), len(_ISO_TEMPLATE)), dtype=np.uint8)
    out[:] = _ISO_TEMPLATE
    _put_digits(out, 0, month.astype("datetime64[Y]").astype(np.int64) + 1970, 4)
    _put_digits(out, 5, month.astype(np.int64) % 12 + 1, 2)
    _put_digits(out, 8, (day - month).astype(np.int64) + 1, 2)
    _put_digits(out, 11, sec // 3600, 2)
    _put_digits(out, 14, sec // 60 % 60, 2)
    _put_digits(out, 17, sec % 60, 2)
    return out


# --- dataset generation -------------------------------------------------------------------------------


@dataclass
class Shape:
    rows: int
    users: int
    movies: int
    rated_movies: int
    max_movie_id: int
    delta_rows: int

    @classmethod
    def for_rows(cls, rows: int) -> Shape:
        f = rows / ML25M_ROWS
        movies = max(MIN_MOVIES, round(ML25M_MOVIES * f))
        return cls(
            rows=rows,
            users=max(1, round(ML25M_USERS * f)),
            movies=movies,
            rated_movies=round(movies * ML25M_RATED / ML25M_MOVIES),
            max_movie_id=max(movies, round(ML25M_MAX_MOVIE_ID * movies / ML25M_MOVIES)),
            delta_rows=max(1, round(rows * DELTA_FRACTION)),
        )


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: numpy's hash-based ``unique`` is much slower on int64 keys)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


class _Sampler:
    """Movies by popularity: a flattened Zipf over the rated movies plus a uniform share so all get rated."""

    def __init__(self, rng: np.random.Generator, rated_ids: np.ndarray, rows: int) -> None:
        self.rng = rng
        self.ids = rng.permutation(rated_ids)  # popularity rank -> movie id
        zipf = 1.0 / (np.arange(len(rated_ids)) + 50.0)  # top movie ~0.3% of ratings, as in ML-25M
        uniform = min(0.5, max(0.05, 5 * len(rated_ids) / max(rows, 1)))
        p = (1 - uniform) * zipf / zipf.sum() + uniform / len(rated_ids)
        self.cdf = np.cumsum(p)
        self.cdf /= self.cdf[-1]

    def movies(self, n: int) -> np.ndarray:
        idx = np.searchsorted(self.cdf, self.rng.random(n), side="right")
        return self.ids[np.minimum(idx, len(self.ids) - 1)]

    def pairs(self, users: np.ndarray, k: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """Sorted keys: ``k[i]`` distinct movies for ``users[i]`` (ascending), none of the sorted
        ``exclude``."""
        rng = self.rng

        def draw(us: np.ndarray, per: np.ndarray) -> np.ndarray:
            u = np.repeat(us, per)
            keys = (u.astype(np.int64) << SHIFT) | self.movies(len(u))
            if exclude is not None and len(exclude):
                at = np.minimum(np.searchsorted(exclude, keys), len(exclude) - 1)
                keys = keys[exclude[at] != keys]
            return keys

        keys = _unique(draw(users, np.ceil(k * 1.15).astype(np.int64) + 2))
        for _ in range(200):
            have = np.bincount(np.searchsorted(users, keys >> SHIFT), minlength=len(users))
            short = have < k
            if not short.any():
                break
            keys = _unique(np.concatenate([keys, draw(users[short], (k[short] - have[short]) * 2 + 4)]))
        else:
            raise RuntimeError("could not draw enough distinct movies per user")
        if (have > k).any():  # drop the surplus at random, keeping exactly k per user
            owner = np.searchsorted(users, keys >> SHIFT)
            order = np.lexsort((rng.random(len(keys)), owner))
            starts = np.repeat(np.cumsum(have) - have, have)
            keep = (np.arange(len(keys)) - starts) < np.repeat(k, have)
            keys = np.sort(keys[order[keep]])
        return keys


def _ratings_per_user(rng: np.random.Generator, users: int, rows: int, cap: int) -> np.ndarray:
    """ML-25M-like counts (at least 20, median ~70, long tail), summing exactly to ``rows``."""
    floor = max(1, min(20, rows // users))
    cap = max(cap, -(-rows // users))
    k = floor + rng.lognormal(3.93, 1.39, users)
    k = np.clip(np.round(k * rows / k.sum()), floor, cap).astype(np.int64)
    for _ in range(100_000):
        diff = rows - int(k.sum())
        if diff == 0:
            return k
        room = (cap - k) if diff > 0 else (k - floor)
        cand = np.flatnonzero(room > 0)
        if not len(cand):
            break
        pick = rng.choice(cand, min(abs(diff), len(cand)), replace=False)
        k[pick] += 1 if diff > 0 else -1
    raise RuntimeError("could not balance ratings per user")


def _write_movies(rng: np.random.Generator, directory: Path, movie_ids: np.ndarray) -> None:
    years = rng.integers(1902, 2020, len(movie_ids))
    n_genres = rng.integers(1, 5, len(movie_ids))
    with (
        (directory / "movies.csv").open("w", newline="", encoding="utf-8") as fh,
        (directory / "links.csv").open("w", newline="", encoding="utf-8") as lf,
    ):
        movies, links = csv.writer(fh, lineterminator="\n"), csv.writer(lf, lineterminator="\n")
        movies.writerow(["movieId", "title", "genres"])
        links.writerow(["movieId", "imdbId", "tmdbId"])
        for i, mid in enumerate(movie_ids.tolist()):
            title = f"Synthetic Film {mid}" + (", The" if i % 7 == 0 else "")
            if i % 97 != 0:  # a few titles carry no year, as in ml-latest
                title += f" ({years[i]})"
            genres = (
                "(no genres listed)"
                if i % 13 == 0
                else "|".join(sorted(rng.choice(GENRES, n_genres[i], replace=False).tolist()))
            )
            movies.writerow([mid, title, genres])
            links.writerow([mid, f"{100000 + mid * 7:07d}", "" if i % 50 == 0 else mid + 1000])


def _rating_ts(rng: np.random.Generator, users: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per-user activity windows: a start between 1995 and 2019 and a mostly short span after it."""
    start = T_FIRST + (rng.random(len(users)) * (T_LAST - T_FIRST)).astype(np.int64)
    span = rng.exponential(180 * 86_400, len(users))
    owner = np.searchsorted(users, keys >> SHIFT)
    ts = start[owner] + (rng.random(len(keys)) ** 3 * span[owner]).astype(np.int64)
    return np.minimum(ts, T_LAST)


def _rating_idx(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(10, size=n, p=RATING_P)


def generate(directory: Path, rows: int, seed: int) -> dict[str, Any]:
    """Write base/ (ratings.csv, movies.csv, links.csv), floor/ratings_iso.csv and delta/ under
    ``directory``."""
    t0 = time.perf_counter()
    shape = Shape.for_rows(rows)
    rng = np.random.default_rng(seed)
    base, floor, delta = directory / "base", directory / "floor", directory / "delta"
    for d in (base, floor, delta):
        d.mkdir(parents=True)
    movie_ids = np.sort(rng.choice(shape.max_movie_id, shape.movies, replace=False) + 1).astype(np.int64)
    _write_movies(rng, base, movie_ids)
    for name in ("movies.csv", "links.csv"):
        shutil.copyfile(base / name, delta / name)
    rated = np.sort(rng.choice(movie_ids, shape.rated_movies, replace=False))
    sampler = _Sampler(rng, rated, rows)
    cap = min(max(20, round(32_202 * shape.rated_movies / ML25M_RATED)), shape.rated_movies // 2)
    per_user = _ratings_per_user(rng, shape.users, rows, max(1, cap))
    user_ids = np.arange(1, shape.users + 1, dtype=np.int64)

    n_rerated = round(shape.delta_rows * DELTA_MIX["rerated"])
    n_new_user_rows = round(shape.delta_rows * DELTA_MIX["new_users"])
    n_new_pairs = shape.delta_rows - n_rerated - n_new_user_rows
    delta_keys: list[np.ndarray] = []
    rated_seen = np.zeros(shape.max_movie_id + 1, dtype=bool)

    # chunks of whole users, about CHUNK_ROWS ratings each
    ends = np.cumsum(per_user)
    cuts = np.unique(np.searchsorted(ends, np.arange(CHUNK_ROWS, rows, CHUNK_ROWS), side="left") + 1)
    bounds = [0, *[int(c) for c in cuts if 0 < c < shape.users], shape.users]
    done = 0
    rr_done = np.int64(0)
    np_done = np.int64(0)
    with (base / "ratings.csv").open("wb") as out, (floor / "ratings_iso.csv").open("wb") as iso:
        out.write(b"userId,movieId,rating,timestamp\n")
        iso.write(b"userId,movieId,rating,rated_at\n")
        for lo, hi in itertools.pairwise(bounds):
            users, k = user_ids[lo:hi], per_user[lo:hi]
            keys = sampler.pairs(users, k)
            n = len(keys)
            ts = _rating_ts(rng, users, keys)
            rating = _rating_idx(rng, n)
            uid, mid = keys >> SHIFT, keys & ((1 << SHIFT) - 1)
            rated_seen[mid] = True
            out.write(_csv_bytes([uid, mid, _RATING_TEXT[rating], ts]))
            iso.write(_csv_bytes([uid, mid, _RATING_TEXT[rating], _iso_matrix(ts)]))
            done += n
            # this chunk's share of the delta: re-ratings of its pairs, new pairs of its users
            rr = int(round(n_rerated * done / rows) - rr_done)
            npairs = int(round(n_new_pairs * done / rows) - np_done)
            rr_done += rr
            np_done += npairs
            if rr:
                delta_keys.append(keys[rng.choice(n, rr, replace=False)])
            if npairs:
                who, want = np.unique(rng.choice(users, npairs), return_counts=True)
                room = k[np.searchsorted(users, who)]
                want = np.minimum(want, shape.rated_movies - room)  # a user cannot rate more than every movie
                short = npairs - int(want.sum())
                if short:  # rare (tiny datasets): give the rest to users with room left
                    spare = shape.rated_movies - room - want
                    for i in np.flatnonzero(spare > 0):
                        add = min(short, int(spare[i]))
                        want[i] += add
                        short -= add
                        if not short:
                            break
                live = want > 0
                delta_keys.append(sampler.pairs(who[live], want[live], exclude=keys))
            log(f"generated {done:,}/{rows:,} ratings")
    if n_new_user_rows:
        n_new_users = max(1, n_new_user_rows // 30)
        new_users = np.arange(shape.users + 1, shape.users + n_new_users + 1, dtype=np.int64)
        per_new = _ratings_per_user(rng, n_new_users, n_new_user_rows, max(1, shape.rated_movies))
        delta_keys.append(sampler.pairs(new_users, per_new))
    else:
        n_new_users = 0
    dkeys = np.sort(np.concatenate(delta_keys)) if delta_keys else np.zeros(0, np.int64)
    assert len(np.unique(dkeys)) == len(dkeys) == shape.delta_rows, (len(dkeys), shape.delta_rows)
    dts = DELTA_START + rng.integers(0, 7 * 86_400, len(dkeys))
    delta_ratings = _rating_idx(rng, len(dkeys))
    with (delta / "ratings.csv").open("wb") as out:
        out.write(b"userId,movieId,rating,timestamp\n")
        out.write(_csv_bytes([dkeys >> SHIFT, dkeys & ((1 << SHIFT) - 1), _RATING_TEXT[delta_ratings], dts]))
    manifest = {
        "generator_version": GEN_VERSION,
        "seed": seed,
        **shape.__dict__,
        "rated_movies_actual": int(rated_seen.sum()),
        "ratings_per_user": {
            "min": int(per_user.min()),
            "median": float(np.median(per_user)),
            "mean": round(float(per_user.mean()), 1),
            "max": int(per_user.max()),
        },
        "delta": {
            "rows": shape.delta_rows,
            "rerated": n_rerated,
            "new_pairs_existing_users": n_new_pairs,
            "new_user_rows": n_new_user_rows,
            "new_users": n_new_users,
        },
        "bytes": {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*.csv"))},
        "generation_seconds": round(time.perf_counter() - t0, 1),
    }
    return manifest


def dataset(workdir: Path, rows: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The cached dataset for ``rows`` (generated on first use); its directory and manifest."""
    root = workdir / "datasets"
    final = root / f"ml25m-shaped-rows{rows}-seed{seed}-v{GEN_VERSION}"
    manifest_path = final / "manifest.json"
    if manifest_path.is_file():
        log(f"using cached dataset {final}")
        return final, json.loads(manifest_path.read_text())
    root.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)  # an interrupted earlier generation
    partial = Path(tempfile.mkdtemp(prefix=f"{final.name}.partial-", dir=root))
    try:
        log(f"generating {rows:,} ratings into {final}")
        manifest = generate(partial, rows, seed)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
        try:
            partial.rename(final)
        except OSError:  # a concurrent run finished the same dataset first: use that one
            if not manifest_path.is_file():
                raise
            shutil.rmtree(partial, ignore_errors=True)
            return final, json.loads(manifest_path.read_text())
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(f"generated in {manifest['generation_seconds']} s")
    return final, manifest


# --- memory sampling -----------------------------------------------------------------------------------


@dataclass
class Peaks:
    """Highest RSS seen: this process, the largest server process, and all server processes summed."""

    bench_start: int = 0
    bench: int = 0
    server_proc: int = 0
    server_proc_title: str = ""
    server_sum: int = 0
    samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        def mib(b):
            return round(b / 2**20, 1)

        return {
            "bench_mib": mib(self.bench),
            "bench_at_start_mib": mib(self.bench_start),
            "server_max_process_mib": mib(self.server_proc),
            "server_max_process": self.server_proc_title,
            "server_sum_mib": mib(self.server_sum),
            "samples": self.samples,
        }


class MemorySampler:
    """A background thread sampling RSS every ``interval`` seconds (psutil): this process and the server's."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.me = psutil.Process()
        self.server: psutil.Process | None = None
        self.overall = Peaks()
        self._phase: Peaks | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def watch_server(self, pid: int | None) -> None:
        try:
            self.server = psutil.Process(pid) if pid else None
        except psutil.Error:
            self.server = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        mine = self.me.memory_info().rss
        procs: list[tuple[int, psutil.Process]] = []
        if self.server is not None:
            try:
                candidates = [self.server, *self.server.children(recursive=True)]
            except psutil.Error:
                candidates = []
            for proc in candidates:
                try:
                    procs.append((proc.memory_info().rss, proc))
                except psutil.Error:
                    pass
        total = sum(r for r, _ in procs)
        top_rss, top = max(procs, key=lambda rp: rp[0]) if procs else (0, None)
        with self._lock:
            for peaks in (self.overall, self._phase):
                if peaks is None:
                    continue
                peaks.samples += 1
                peaks.bench = max(peaks.bench, mine)
                peaks.server_sum = max(peaks.server_sum, total)
                if top is not None and top_rss > peaks.server_proc:
                    peaks.server_proc = top_rss
                    try:
                        peaks.server_proc_title = " ".join(top.cmdline()).strip()[:120]
                    except psutil.Error:
                        pass

    @contextmanager
    def phase(self) -> Iterator[Peaks]:
        peaks = Peaks(bench_start=self.me.memory_info().rss)
        with self._lock:
            self._phase = peaks
        self.sample()
        try:
            yield peaks
        finally:
            self.sample()
            with self._lock:
                self._phase = None


# --- where the engine's time goes ----------------------------------------------------------------------

_STATEMENTS = (  # (all of these substrings, label); first match wins
    (("WITH up AS", "INSERT INTO ratings"), "ratings upsert (INSERT ... ON CONFLICT into ratings)"),
    (("count(*)", "reason IS NOT NULL"), "ratings validation scan (count failing rows)"),
    (("INSERT INTO users (user_id) SELECT DISTINCT",), "users from ratings (DISTINCT over staging)"),
    (("INSERT INTO rejected_rows",), "rejected rows (careful path)"),
    (("INSERT INTO stage_ratings",), "careful path: split lines in SQL"),
    (("INSERT INTO movies",), "movies upsert"),
)


def _label(statement: str) -> str:
    for needles, label in _STATEMENTS:
        if all(n in statement for n in needles):
            return label
    return "other SQL (temp tables, savepoints, bookkeeping)"


class StatementTimes:
    """Wall time per kind of statement the engine sends (SQLAlchemy events), and per COPY (wrapped)."""

    def __init__(self) -> None:
        self.items: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])  # seconds, calls, rows
        self.captured: dict[str, tuple[str, Any]] = {}  # first statement of each label, with its parameters

    def add(self, label: str, seconds: float, rows: int) -> None:
        item = self.items[label]
        item[0] += seconds
        item[1] += 1
        item[2] += max(rows, 0)

    @contextmanager
    def watching(self, engine: Any) -> Iterator[StatementTimes]:
        from sqlalchemy import event

        import pipeline.ingest.loader as ingest_module

        def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
            key = "stage table" if "CREATE TEMP TABLE stage_ratings" in statement else _label(statement)
            self.captured.setdefault(key, (statement, parameters))
            conn.info.setdefault("bench_t0", []).append(time.perf_counter())

        def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            started = conn.info["bench_t0"].pop()
            self.add(_label(statement), time.perf_counter() - started, getattr(cursor, "rowcount", 0))

        def failed(context: Any) -> None:
            stack = context.connection.info.get("bench_t0") if context.connection is not None else None
            if stack:
                stack.pop()

        original = ingest_module.copy_file

        def timed_copy(conn: Any, copy_sql: str, fileobj: Any, **kw: Any) -> int:
            started = time.perf_counter()
            rows = 0
            self.captured.setdefault(f"copy {copy_sql.split('(')[0].strip()}", (copy_sql, None))
            try:
                rows = original(conn, copy_sql, fileobj, **kw)
                return rows
            finally:
                target = copy_sql.split("(")[0].replace("COPY", "").strip()
                self.add(
                    f"COPY file -> {target} (server parse, client sha256)",
                    time.perf_counter() - started,
                    rows,
                )

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "handle_error", failed)
        ingest_module.copy_file = timed_copy
        try:
            yield self
        finally:
            ingest_module.copy_file = original
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
            event.remove(engine, "handle_error", failed)

    def as_dict(self, total: float) -> dict[str, Any]:
        out = {
            label: {
                "seconds": round(s, 3),
                "share": round(s / total, 3) if total else None,
                "calls": c,
                "rows": r,
            }
            for label, (s, c, r) in sorted(self.items.items(), key=lambda kv: -kv[1][0])
        }
        rest = total - sum(s for s, _, _ in self.items.values())
        out["not in timed SQL (Python parsing of movies/links, their COPY to staging, commit, hashing)"] = {
            "seconds": round(rest, 3),
            "share": round(rest / total, 3) if total else None,
        }
        return out


# --- the server and its databases ----------------------------------------------------------------------


def _with_database(url: str, name: str, driver: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    from database.engine import sqlalchemy_url

    u = make_url(sqlalchemy_url(url)).set(database=name)
    if driver:
        u = u.set(drivername=driver)
    return u.render_as_string(hide_password=False)


class Server:
    """A fresh embedded server under a temporary MOVIEREC_HOME, or the server of DATABASE_URL."""

    def __init__(self, workdir: Path, keep: bool) -> None:
        self.workdir, self.keep = workdir, keep
        self.external = os.environ.get("DATABASE_URL") or None
        self.settings: Any = None
        self.home: Path | None = None
        self.admin_url = ""
        self.created: list[str] = []

    @property
    def kind(self) -> str:
        return "DATABASE_URL" if self.external else "embedded (fresh)"

    def start(self) -> None:
        if self.external:
            self.admin_url = _with_database(self.external, "postgres")
            return
        from database import embedded
        from pipeline.core.settings import Settings

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="pg-", dir=self.workdir))
        self.settings = Settings(MOVIEREC_HOME=self.home)
        log(f"starting an embedded PostgreSQL under {self.home}")
        embedded.start(self.settings)
        self.admin_url = embedded.url_for(self.settings, "postgres")

    def connect(self, database: str = "postgres") -> Any:
        import psycopg2

        conn = psycopg2.connect(_with_database(self.admin_url, database, driver="postgresql"))
        conn.autocommit = True
        return conn

    def postmaster_pid(self) -> int | None:
        if self.settings is not None:
            from database import embedded

            return embedded.status(self.settings).pid
        conn = self.connect()  # an external server: only trackable when it runs on this machine
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                backend = cur.fetchone()[0]
            proc = psutil.Process(backend)
            parent = proc.parent()
            return parent.pid if parent is not None and "postgres" in parent.name() else None
        except psutil.Error:
            return None
        finally:
            conn.close()

    def create_database(self, suffix: str) -> str:
        name = f"movierec_bench_{os.getpid()}_{suffix}"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone():
                    raise SystemExit(f"database {name} already exists: refusing to touch it")
                cur.execute(f'CREATE DATABASE "{name}"')  # our own generated name
        finally:
            conn.close()
        self.created.append(name)
        return _with_database(self.admin_url, name)

    def info(self) -> dict[str, Any]:
        conn = self.connect()
        names = (
            "server_version",
            "shared_buffers",
            "work_mem",
            "maintenance_work_mem",
            "temp_buffers",
            "max_wal_size",
            "checkpoint_timeout",
            "synchronous_commit",
            "fsync",
            "wal_level",
            "max_parallel_workers_per_gather",
            "effective_cache_size",
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT version()")
                out: dict[str, Any] = {"version": cur.fetchone()[0], "server": self.kind}
                for name in names:
                    cur.execute(f"SHOW {name}")  # constant names above
                    out[name] = cur.fetchone()[0]
        finally:
            conn.close()
        return out

    def cleanup(self) -> None:
        if self.keep:
            log(
                f"--keep: leaving databases {', '.join(self.created) or '(none)'}"
                + (
                    f" on the embedded server under {self.home} "
                    f"(stop: MOVIEREC_HOME={self.home} movierec db stop)"
                    if self.home
                    else ""
                )
            )
            return
        if self.created:
            try:
                conn = self.connect()
                with conn.cursor() as cur:
                    for name in self.created:
                        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.close()
            except Exception as exc:  # noqa: BLE001 (the server may be gone already: report, go on)
                log(f"could not drop {self.created}: {exc}")
        if self.settings is not None:
            from database import embedded

            embedded.stop(self.settings)
            shutil.rmtree(self.home, ignore_errors=True)


# --- the measurements ----------------------------------------------------------------------------------


@dataclass
class Bench:
    server: Server
    sampler: MemorySampler
    rows: int
    manifest: dict[str, Any]
    checks: list[dict[str, Any]] = field(default_factory=list)
    last_times: StatementTimes | None = None

    def check(self, what: str, got: Any, expected: Any) -> None:
        ok = got == expected
        self.checks.append({"check": what, "got": got, "expected": expected, "ok": ok})
        if not ok:
            log(f"CHECK FAILED: {what}: got {got}, expected {expected}")

    def checkpoint(self) -> bool:
        try:
            conn = self.server.connect()
            with conn.cursor() as cur:
                cur.execute("CHECKPOINT")
            conn.close()
            return True
        except Exception as exc:  # noqa: BLE001 (needs superuser or pg_checkpoint on an external server)
            log(f"CHECKPOINT not possible ({type(exc).__name__}); measurements start with dirty buffers")
            return False

    def settle(self, engine: Any, tables: str = "ratings") -> float:
        """Untimed: VACUUM ANALYZE what was just loaded (so autovacuum does not run during the next
        measurement), then CHECKPOINT (so the next one does not pay for this one's dirty buffers)."""
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            from sqlalchemy import text

            conn.execute(text(f"VACUUM (ANALYZE) {tables}"))
        self.checkpoint()
        return round(time.perf_counter() - started, 1)

    def wal_lsn(self) -> str:
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_current_wal_lsn()::text")
                return cur.fetchone()[0]
        finally:
            conn.close()

    def wal_since(self, lsn: str) -> int:
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (lsn,))
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    def measure(self, label: str, rows: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.checkpoint()
        log(f"measuring {label} ...")
        lsn = self.wal_lsn()
        with self.sampler.phase() as peaks:
            started = time.perf_counter()
            detail = fn()
            seconds = time.perf_counter() - started
        wal = self.wal_since(lsn)
        log(f"  {seconds:.1f} s, {rows / seconds:,.0f} rows/s, {wal / 2**20:,.0f} MiB of WAL")
        return {
            "label": label,
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds),
            "wal_mib": round(wal / 2**20, 1),
            "peak_rss": peaks.as_dict(),
            **detail,
        }

    def ingest(self, engine: Any, directory: Path) -> Callable[[], dict[str, Any]]:
        from pipeline.ingest.loader import ingest_directory

        def run() -> dict[str, Any]:
            times = StatementTimes()
            started = time.perf_counter()
            with times.watching(engine):
                result = ingest_directory(engine, directory, progress=False)
            total = time.perf_counter() - started
            self.last_times = times
            return {
                "counts": result.counts,
                "engine_timings": result.timings,
                "breakdown": times.as_dict(total),
            }

        return run

    def explain_upsert(
        self, database: str, captured: dict[str, tuple[str, Any]], ratings: Path
    ) -> dict[str, Any]:
        """EXPLAIN ANALYZE of the engine's own ratings upsert (the statement and parameters captured during
        (a)) after staging ``ratings`` the engine's way, in one transaction that is rolled back."""
        create_sql = captured["stage table"][0]
        copy_sql = next(
            sql for key, (sql, _) in captured.items() if key.startswith("copy COPY stage_ratings")
        )
        upsert_sql, params = captured[UPSERT_LABEL]
        self.checkpoint()
        conn = self.server.connect(database)
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(create_sql)
                with ratings.open("rb") as fh:
                    cur.copy_expert(copy_sql, fh, size=1 << 20)
                started = time.perf_counter()
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + upsert_sql, params)
                plan = cur.fetchone()[0]
                wall = time.perf_counter() - started
        finally:
            conn.rollback()
            conn.close()
        return _plan_summary(plan, wall)


def _plan_summary(plan: Any, wall: float) -> dict[str, Any]:
    top = plan[0]
    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        loops = node.get("Actual Loops", 1) or 1
        name = node["Node Type"]
        if node.get("Operation"):
            name = f"{name} ({node['Operation']})"
        if node.get("Relation Name"):
            name += f" on {node['Relation Name']}"
        if node.get("Join Type"):
            name += f" [{node['Join Type']}]"
        if node.get("Subplan Name"):
            name += f" <{node['Subplan Name']}>"
        children = node.get("Plans", [])
        total = node.get("Actual Total Time", 0.0) * loops
        below = sum(
            c.get("Actual Total Time", 0.0) * (c.get("Actual Loops", 1) or 1)
            for c in children
            if c.get("Parent Relationship") not in ("InitPlan", "SubPlan")
        )
        if node.get("CTE Name"):  # a CTE Scan's time includes running the CTE it reads
            below += sum(n["total_ms"] for n in nodes if n["node"].endswith(f"<CTE {node['CTE Name']}>"))
            name += f" of {node['CTE Name']}"
        nodes.append(
            {
                "depth": depth,
                "node": name,
                "total_ms": round(total, 1),
                "self_ms": round(max(total - below, 0.0), 1),
                "rows": node.get("Actual Rows", 0) * loops,
                "shared_hit": node.get("Shared Hit Blocks"),
                "shared_read": node.get("Shared Read Blocks"),
                "local_hit": node.get("Local Hit Blocks"),
                "local_read": node.get("Local Read Blocks"),
            }
        )
        for child in children:
            walk(child, depth + 1)

    walk(top["Plan"], 0)
    triggers = [
        {
            "trigger": t.get("Constraint Name") or t.get("Trigger Name"),
            "relation": t.get("Relation"),
            "ms": round(t.get("Time", 0.0), 1),
            "calls": t.get("Calls"),
        }
        for t in top.get("Triggers", [])
    ]
    return {
        "wall_s": round(wall, 3),
        "execution_ms": round(top.get("Execution Time", 0.0), 1),
        "planning_ms": round(top.get("Planning Time", 0.0), 1),
        "triggers": triggers,
        "nodes": nodes,
    }


UPSERT_LABEL = _STATEMENTS[0][1]


def _count(engine: Any, sql: str) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def _prefill_floor(engine: Any, base: Path, users: int) -> None:
    """The floor database's movies and users, so the ratings' foreign keys hold (untimed)."""
    from sqlalchemy import text

    from database.bulk import copy_rows

    with (base / "movies.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        movie_rows = [(int(r[0]), r[1], "ml-latest") for r in reader]
    with engine.begin() as conn:
        copy_rows(conn, "movies", ("movie_id", "title", "source"), movie_rows)
        conn.execute(text("INSERT INTO users (user_id) SELECT generate_series(1, :n)"), {"n": users})


FLOOR_COPY = "COPY ratings (user_id, movie_id, rating, rated_at) FROM STDIN (FORMAT csv, HEADER)"


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from database.engine import sqlalchemy_url
    from database.migrate import upgrade

    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "movierec-bench").resolve()
    # generated in a child process, so that this process's RSS (the ingest's) starts clean
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        data_dir, manifest = pool.submit(dataset, workdir, args.rows, args.seed).result()
    base, delta, iso = data_dir / "base", data_dir / "delta", data_dir / "floor" / "ratings_iso.csv"
    rows, dm = args.rows, manifest["delta"]
    server, sampler = Server(workdir, args.keep), MemorySampler()
    engines: list[Any] = []
    measurements: dict[str, dict[str, Any]] = {}
    settle: dict[str, float] = {}
    explain: dict[str, Any] = {}
    load_before = os.getloadavg()
    try:
        server.start()
        sampler.watch_server(server.postmaster_pid())
        sampler.start()
        pg = server.info()
        log(f"PostgreSQL: {pg['version']}")
        b = Bench(server, sampler, rows, manifest)

        eng_a = create_engine(sqlalchemy_url(server.create_database("ingest")))
        eng_f = create_engine(sqlalchemy_url(server.create_database("floor")))
        engines += [eng_a, eng_f]
        for eng in (eng_a, eng_f):
            upgrade(eng)
        _prefill_floor(eng_f, base, manifest["users"])
        settle["floor prefill"] = b.settle(eng_f, "users, movies")

        # (a) first ingest, end to end
        a = measurements["a"] = b.measure(
            "(a) first ingest into an empty database", rows, b.ingest(eng_a, base)
        )
        b.check("(a) ratings inserted", a["counts"].get("ratings_inserted"), rows)
        b.check("(a) ratings rejected", a["counts"].get("ratings_rejected"), 0)
        b.check("(a) fast path taken", a["counts"].get("ratings_fast_path"), 1)
        b.check("(a) rows in ratings", _count(eng_a, "SELECT count(*) FROM ratings"), rows)
        b.check("(a) rows in users", _count(eng_a, "SELECT count(*) FROM users"), manifest["users"])
        captured = b.last_times.captured if b.last_times else {}
        settle["after (a)"] = b.settle(eng_a)

        # (b) the floor: one raw COPY, same table definition, keys, indexes and foreign keys
        def floor() -> dict[str, Any]:
            from database.bulk import copy_file

            with eng_f.begin() as conn, iso.open("rb") as fh:
                copied = copy_file(conn, FLOOR_COPY, fh)
            return {"copied": copied, "statement": FLOOR_COPY, "file": str(iso)}

        fl = measurements["b"] = b.measure("(b) floor: raw COPY into ratings", rows, floor)
        b.check("(b) rows copied", fl["copied"], rows)
        b.check("(b) rows in ratings", _count(eng_f, "SELECT count(*) FROM ratings"), rows)
        settle["after (b)"] = b.settle(eng_f)

        # (c) the same directory again: nothing changes
        c = measurements["c"] = b.measure("(c) re-ingest, nothing changed", rows, b.ingest(eng_a, base))
        b.check("(c) ratings inserted", c["counts"].get("ratings_inserted"), 0)
        b.check("(c) ratings updated", c["counts"].get("ratings_updated"), 0)
        b.check("(c) ratings unchanged", c["counts"].get("ratings_unchanged"), rows)
        b.check("(c) rows in ratings", _count(eng_a, "SELECT count(*) FROM ratings"), rows)
        settle["after (c)"] = b.settle(eng_a)

        # (d) a weekly delta
        new = dm["new_pairs_existing_users"] + dm["new_user_rows"]
        d = measurements["d"] = b.measure("(d) weekly delta", dm["rows"], b.ingest(eng_a, delta))
        b.check("(d) ratings inserted", d["counts"].get("ratings_inserted"), new)
        b.check("(d) ratings updated", d["counts"].get("ratings_updated"), dm["rerated"])
        b.check("(d) ratings rejected", d["counts"].get("ratings_rejected"), 0)
        b.check("(d) rows in ratings", _count(eng_a, "SELECT count(*) FROM ratings"), rows + new)
        b.check(
            "(d) rows in users",
            _count(eng_a, "SELECT count(*) FROM users"),
            manifest["users"] + dm["new_users"],
        )
        checks = b.checks

        if (
            args.explain
        ):  # diagnostics, untimed: the upsert statement of (a) under EXPLAIN ANALYZE, rolled back
            eng_x = create_engine(sqlalchemy_url(server.create_database("explain")))
            engines.append(eng_x)
            upgrade(eng_x)
            _prefill_floor(eng_x, base, manifest["users"])
            b.settle(eng_x, "users, movies")
            log("EXPLAIN ANALYZE of the engine's upsert: first load into an empty ratings table ...")
            explain["first_load"] = b.explain_upsert(server.created[-1], captured, base / "ratings.csv")
            log("EXPLAIN ANALYZE of the engine's upsert: the same file against the loaded table of (a) ...")
            explain["reingest"] = b.explain_upsert(server.created[0], captured, base / "ratings.csv")
    finally:
        sampler.stop()
        for eng in engines:
            eng.dispose()
        server.cleanup()

    report = _report(args, workdir, data_dir, manifest, pg, measurements, settle, checks, sampler.overall)
    report["machine"]["loadavg_before"] = [round(x, 2) for x in load_before]
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if explain:
        report["explain_upsert"] = explain
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"\nJSON: {out}")
    return 0 if report["all_checks_ok"] else 1


def _machine() -> dict[str, Any]:
    import sqlalchemy

    from bench.machine import machine_info

    return {
        **machine_info(),
        "numpy": np.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "psutil": psutil.__version__,
    }


def _report(
    args: argparse.Namespace,
    workdir: Path,
    data_dir: Path,
    manifest: dict[str, Any],
    pg: dict[str, Any],
    m: dict[str, dict[str, Any]],
    settle: dict[str, float],
    checks: list[dict[str, Any]],
    overall: Peaks,
) -> dict[str, Any]:
    ratios = {
        "rate_a_over_rate_b": round(m["a"]["rows_per_s"] / m["b"]["rows_per_s"], 3),
        "time_c_over_time_a": round(m["c"]["seconds"] / m["a"]["seconds"], 3),
        "time_d_over_time_a": round(m["d"]["seconds"] / m["a"]["seconds"], 3),
    }
    ingest_peak = max(m[k]["peak_rss"]["bench_mib"] for k in ("a", "c", "d"))
    targets = {
        "rate_a_over_rate_b >= 0.7": ratios["rate_a_over_rate_b"] >= 0.7,
        "time_c_over_time_a < 1": ratios["time_c_over_time_a"] < 1,
        "time_d_over_time_a < 1": ratios["time_d_over_time_a"] < 1,
        "ingest process peak RSS <= 1.5 GB": ingest_peak * 2**20 <= 1.5e9,
    }
    return {
        "benchmark": "ingest",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "rows": args.rows,
        "seed": args.seed,
        "dataset_dir": str(data_dir),
        "dataset": manifest,
        "machine": _machine(),
        "postgres": pg,
        "measurements": m,
        "ratios": ratios,
        "ingest_process_peak_rss_mib": ingest_peak,
        "targets_met": targets,
        "untimed_settle_seconds": settle,
        "peak_rss_whole_run": overall.as_dict(),
        "floor_definition": (
            "One COPY ratings (user_id, movie_id, rating, rated_at) FROM STDIN (FORMAT csv, HEADER) of "
            "floor/ratings_iso.csv (the same rows as base/ratings.csv, timestamp already ISO text with +00), "
            "streamed by database.bulk.copy_file in one transaction into the real ratings table of a second "
            "freshly migrated database (same PK, indexes ix_ratings_movie and ix_ratings_rated_at, "
            "FKs to users and movies), whose users and movies were filled beforehand, untimed."
        ),
        "checks": checks,
        "all_checks_ok": all(c["ok"] for c in checks),
    }


def _print(r: dict[str, Any]) -> None:
    mach, pg, m = r["machine"], r["postgres"], r["measurements"]
    print(
        f"\nmovierec ingest benchmark: {r['rows']:,} ratings, ML-25M-shaped "
        f"({r['dataset']['users']:,} users, {r['dataset']['rated_movies_actual']:,} rated of "
        f"{r['dataset']['movies']:,} movies)"
    )
    print(
        f"machine: {mach['cpu_count']} CPUs ({mach['cpu_model']}), {mach['ram_gib']} GiB RAM, "
        f"{mach['platform']}, Python {mach['python']}; "
        f"load average before/after {mach['loadavg_before'][0]}/{mach['loadavg_after'][0]}"
    )
    print(
        f"PostgreSQL {pg['server_version']} ({pg['server']}), shared_buffers {pg['shared_buffers']}, "
        f"work_mem {pg['work_mem']}, temp_buffers {pg['temp_buffers']}, max_wal_size {pg['max_wal_size']}\n"
    )
    head = (
        f"{'measurement':<42}{'rows':>12}{'seconds':>10}{'rows/s':>11}{'WAL':>10}{'bench RSS':>11}"
        "  server RSS max proc / sum"
    )
    print(head)
    print("-" * len(head))
    for k in "abcd":
        x, p = m[k], m[k]["peak_rss"]
        print(
            f"{x['label']:<42}{x['rows']:>12,}{x['seconds']:>10.2f}{x['rows_per_s']:>11,}"
            f"{x['wal_mib']:>6.0f} MiB"
            f"{p['bench_mib']:>7.0f} MiB  {p['server_max_process_mib']:.0f} / {p['server_sum_mib']:.0f} MiB"
        )
    ra, t = r["ratios"], r["targets_met"]

    def ok(b):
        return "met" if b else "MISSED"

    print(
        f"\nrate(a)/rate(b) = {ra['rate_a_over_rate_b']:.3f}   "
        f"(target >= 0.7: {ok(t['rate_a_over_rate_b >= 0.7'])})"
    )
    print(f"time(c)/time(a) = {ra['time_c_over_time_a']:.3f}   (target well under 1)")
    print(f"time(d)/time(a) = {ra['time_d_over_time_a']:.3f}   (target well under 1)")
    print(
        f"peak RSS of the ingest process = {r['ingest_process_peak_rss_mib']:.0f} MiB   (target <= 1.5 GB: "
        f"{ok(t['ingest process peak RSS <= 1.5 GB'])})"
    )
    for k in "acd":
        print(f"\nwhere the time of {m[k]['label']} goes ({m[k]['seconds']:.1f} s):")
        for label, item in m[k]["breakdown"].items():
            print(f"  {item['seconds']:>9.2f} s {100 * (item['share'] or 0):5.1f}%  {label}")
    for name, ex in r.get("explain_upsert", {}).items():
        print(
            f"\nEXPLAIN ANALYZE of the engine's upsert, {name.replace('_', ' ')} (rolled back): "
            f"execution {ex['execution_ms'] / 1000:.2f} s"
        )
        for node in ex["nodes"]:
            print(
                f"  {'  ' * node['depth']}{node['node']}: {node['total_ms'] / 1000:.2f} s "
                f"(self {node['self_ms'] / 1000:.2f} s), {node['rows']:,} rows"
            )
        for t in ex["triggers"]:
            print(
                f"  trigger {t['trigger']} on {t['relation']}: {t['ms'] / 1000:.2f} s, {t['calls']:,} calls"
            )
    failed = [c for c in r["checks"] if not c["ok"]]
    print(
        f"\nchecks: {len(r['checks']) - len(failed)}/{len(r['checks'])} passed"
        + "".join(f"\n  FAILED {c['check']}: got {c['got']}, expected {c['expected']}" for c in failed)
    )


def main(argv: list[str] | None = None) -> int:
    import logging

    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows", type=int, default=25_000_000, help="ratings in the generated file (25,000,000)"
    )
    parser.add_argument(
        "--workdir",
        help="generated datasets (cached by row count) and the embedded server "
        "(default: $TMPDIR/movierec-bench)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the databases (and embedded server) in place"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="afterwards, re-run the engine's ratings upsert under EXPLAIN ANALYZE (rolled back) "
        "on an empty table and on the loaded one: where its time goes",
    )
    parser.add_argument("--output", default=str(RESULTS), help=f"JSON results ({RESULTS})")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
