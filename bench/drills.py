"""Reliability drills: the API under load while its database is stopped cleanly or crashes, and a corpus of
hostile requests, on real ML-100K.

    python -m bench.drills [--home DIR] [--clients 32] [--cycles 3] [--before 3] [--down 3] [--after 5]

Without ``--home`` a fresh ``MOVIEREC_HOME`` runs the weekly pipeline once on the offline ML-100K with a
small, fast model (``--epochs``, default 1: the drills test the serving, not the model), then is stopped and
removed unless ``--keep``. The server is ``movierec serve`` on a free loopback port, a process of its own.

1. the hostile corpus (``tests.support.drills.hostile_corpus``): each request on its own connection, each
   answered with a documented status, never a 5xx;
2. ``--cycles`` clean stops (``pg_ctl stop -m fast``, what ``movierec db stop`` does) and as many crash stops
   (``-m immediate``: the backends end at once, crash recovery at the next start), each in the middle of a
   closed-loop load of ``--clients`` connections over the lookup, similar movies, predicted ratings of
   catalogue movies, ``/health``, the fallback list and the new-movie scorer: answers by status and phase,
   5xx other than 503, 503s without ``Retry-After``, and the recovery (from the database's first accepted
   connection after the start command to the end of the last 503 answered to a request sent after it;
   target <= 1 s);
3. the row count of every table of the app database, before and after: unchanged.

Prints a table and writes ``bench/results/drills.json``. Exits 1 when a correctness check fails (a 5xx
other than 503, a 503 without ``Retry-After``, a corpus answer off its documented statuses, a changed
row count); the recovery time is a target, reported as met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.api import Server, log, prepare_home
from bench.machine import machine_info
from tests.support.drills import (
    Outage,
    accepting,
    hostile_corpus,
    load_with_outage,
    published,
    run_corpus,
    start_database,
    stop_database,
    table_counts,
)

RESULTS = Path(__file__).resolve().parent / "results" / "drills.json"
TARGET_RECOVERY_S = 1.0


def run(args: argparse.Namespace) -> int:
    from database import embedded
    from database.engine import database_url

    settings, fresh, setup = prepare_home(args.home, args.epochs)
    if not fresh:
        log(f"--home {args.home}: its database will be stopped and started {2 * args.cycles} times")
    report: dict[str, Any] = {
        "machine": machine_info(),
        "loadavg_before": os.getloadavg(),
        "model": f"trained {args.epochs} epoch(s) for the drill" if fresh else f"the champion of {args.home}",
        "clients": args.clients,
        "phases_s": {"before": args.before, "down": args.down, "after": args.after},
        "target_recovery_s": TARGET_RECOVERY_S,
        "setup": setup,
    }
    try:
        url = database_url(settings)
        users, movies = published(url)
        if not users:
            raise SystemExit("no published recommendations in this home: run `movierec run` first")
        counts_before = table_counts(url)
        report["postgres_pid_before"] = embedded.status(settings).pid
        with Server(settings) as server:
            report["model_version"] = server.health["model"]["version"]
            log(f"hostile corpus against {server.url}")
            corpus = run_corpus(server.port, hostile_corpus(users[0], movies[0]))
            report["corpus"] = [asdict(c) for c in corpus]
            drills: list[Outage] = []
            for mode in ("fast",) * args.cycles + ("immediate",) * args.cycles:
                log(f"{'clean' if mode == 'fast' else 'crash'} stop under {args.clients} clients")
                outage = load_with_outage(
                    server.url,
                    users,
                    movies,
                    stop=lambda mode=mode: stop_database(settings, mode),  # type: ignore[misc]
                    start=lambda: start_database(settings),
                    ready=lambda: accepting(url),
                    mode=mode,
                    clients=args.clients,
                    before_s=args.before,
                    down_s=args.down,
                    after_s=args.after,
                    seed=len(drills),
                )
                drills.append(outage)
                log(
                    f"  {outage.requests} requests, {outage.server_errors} 5xx (not 503), "
                    f"{outage.without_retry_after} 503 without Retry-After, "
                    f"recovery {outage.recovery_s:.3f} s"
                )
            report["drills"] = [{**asdict(d), "recovery_s": round(d.recovery_s, 3)} for d in drills]
        counts_after = table_counts(url)
        report["table_counts"] = {"before": counts_before, "after": counts_after}
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
    report["verdict"] = verdict(report, drills, corpus, counts_before, counts_after)
    print_report(report, drills, corpus)
    output = Path(args.output) if args.output else RESULTS
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1, default=str))
    log(f"written {output}")
    v = report["verdict"]
    return (
        0
        if v["no_5xx"] and v["every_503_with_retry_after"] and v["corpus_ok"] and v["counts_unchanged"]
        else 1
    )


def verdict(
    report: dict[str, Any],
    drills: list[Any],
    corpus: list[Any],
    before: dict[str, int],
    after: dict[str, int],
) -> dict[str, Any]:
    worst = max((d.recovery_s for d in drills), default=0.0)
    return {
        "no_5xx": all(d.server_errors == 0 for d in drills),
        "every_503_with_retry_after": all(d.without_retry_after == 0 for d in drills),
        "no_transport_errors": all(d.transport_errors == 0 for d in drills),
        "recovery_worst_s": round(worst, 3),
        "recovery_ok": worst <= TARGET_RECOVERY_S
        and all(d.first_ok_after_back_s is not None for d in drills),
        "corpus_ok": all(c.ok for c in corpus),
        "counts_unchanged": before == after,
    }


def print_report(report: dict[str, Any], drills: list[Any], corpus: list[Any]) -> None:
    m = report["machine"]
    print(
        f"\nmovierec drills on {m['cpu_count']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB; model "
        f"v{report.get('model_version')} ({report['model']}); {report['clients']} clients"
    )
    print(
        f"{'drill':<12}{'requests':>10}{'200':>8}{'404':>6}{'503':>7}{'5xx':>5}{'503 no RA':>11}"
        f"{'transport':>11}"
        f"{'stop s':>8}{'start s':>9}{'back s':>8}{'first ok s':>12}{'recovery s':>12}"
    )
    for k, d in enumerate(drills):
        total: Counter[str] = Counter()
        for phase in d.statuses.values():
            total.update(phase)
        name = f"{'clean' if d.mode == 'fast' else 'crash'} {k % max(1, len(drills) // 2) + 1}"
        first = f"{d.first_ok_after_back_s:.3f}" if d.first_ok_after_back_s is not None else "never"
        print(
            f"{name:<12}{d.requests:>10}{total['200']:>8}{total['404']:>6}{total['503']:>7}{d.server_errors:>5}"
            f"{d.without_retry_after:>11}{d.transport_errors:>11}{d.stop_s:>8.2f}{d.start_s:>9.2f}{d.back_s:>8.2f}{first:>12}"
            f"{d.recovery_s:>12.3f}"
        )
    kinds: dict[str, Counter[str]] = {}
    for c in corpus:
        kinds.setdefault(c.kind, Counter())[str(c.status)] += 1
    off = sum(not c.ok for c in corpus)
    print(f"\nhostile corpus: {len(corpus)} requests, {off} off their documented status")
    for kind, statuses in kinds.items():
        print(f"  {kind:<14}" + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    for c in corpus:
        if not c.ok:
            print(f"  OFF: {c.name}: {c.status} (expected {c.expected})")
    v = report["verdict"]

    def ok(flag: bool) -> str:
        return "met" if flag else "MISSED"

    print(
        f"0 5xx: {ok(v['no_5xx'])}; every 503 with Retry-After: {ok(v['every_503_with_retry_after'])}; "
        f"recovery <= {TARGET_RECOVERY_S:g} s: {ok(v['recovery_ok'])} (worst {v['recovery_worst_s']} s); "
        f"corpus as documented: {ok(v['corpus_ok'])}; "
        f"table row counts unchanged: {ok(v['counts_unchanged'])}; "
        f"load average before/after {report['loadavg_before'][0]:.2f}/{report['loadavg_after'][0]:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", help="an existing MOVIEREC_HOME with a published batch (default: a fresh one)"
    )
    parser.add_argument(
        "--epochs", type=int, default=1, help="training epochs for a fresh home (a fast model)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=3, help="clean stops, and as many crash stops")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of load before each stop")
    parser.add_argument("--down", type=float, default=3.0, help="seconds the database stays down")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load once every route recovered")
    parser.add_argument("--keep", action="store_true", help="keep a fresh home and its server")
    parser.add_argument("--output", help=f"JSON report (default {RESULTS})")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(code)
