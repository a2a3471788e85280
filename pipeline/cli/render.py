"""What the commands print: rich tables and one-line summaries, from the pipeline's plain results."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from pipeline.evaluation.report import sample_line
from pipeline.registry.report import blend_line, evaluation_headers, evaluation_rows

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pipeline.batch.compare import BatchComparison
    from pipeline.core.settings import Settings
    from pipeline.ingest.loader import IngestResult
    from pipeline.orchestration.airflow_local import TaskEvent

# Logs and pipes get wide tables rather than rich's 80-column default, so no figure is cut.
out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)


def evaluation_table(report: dict[str, Any]) -> Table:
    """One row per (protocol, model) of an evaluation report (``EvaluationReport.to_dict`` and what builds
    on it); a dash where a metric does not apply."""
    table = Table(title=f"Offline evaluation (k={report['k']})")
    for i, header in enumerate(evaluation_headers(report["k"])):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in evaluation_rows(report):
        table.add_row(*row)
    return table


def print_evaluation(report: dict[str, Any]) -> None:
    """The table, the blend's weights and, where present, the item cold-start figures."""
    out.print(evaluation_table(report))
    if sample := report.get("sample"):
        out.print(sample_line(sample))
    out.print(blend_line(report))
    for name, figures in report.get("cold_start", {}).items():
        out.print(f"cold start, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))


def print_published_lists(users: int = 3, k: int = 10) -> None:
    """The top ``k`` of a few users' published lists, and where to query the rest (password masked)."""
    from database.engine import get_engine
    from pipeline.batch.publish import sample_lists

    with get_engine().connect() as conn:
        lists = sample_lists(conn, users, k)
    for user, rows in lists.items():
        table = Table(title=f"top {k} for user {user}")
        for col in ("rank", "title", "year", "genres", "score", "list"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                str(r["rank"]),
                r["title"],
                str(r["year"] or ""),
                ", ".join(r["genres"]),
                f"{r['score']:.3f}",
                r["source"],
            )
        out.print(table)
    out.print(
        "look further: `movierec serve`, then http://127.0.0.1:8000/ui/ (pages) and /docs (REST API)",
        highlight=False,
    )
    out.print(
        f'every user\'s list: SELECT * FROM current_recommendations (psql "{psql_url()}"); '
        "example queries in database/sql/examples/",
        highlight=False,
        soft_wrap=True,
    )


_MARKS = {"success": "✓", "failed": "✗", "up_for_retry": "↻", "skipped": "–", "upstream_failed": "–"}


def task_line(task_id: str, state: str, tries: int, seconds: float | None) -> str:
    """One progress line of a DAG run: mark, task, state, duration, try (split on spaces by tests)."""
    took = f"{seconds:.1f}s" if seconds is not None and state not in ("upstream_failed", "skipped") else "-"
    return f"{_MARKS.get(state, '·')} {task_id:<14} {state:<15} {took:>7}  try {tries}"


def print_task_event(console: Console, event: TaskEvent) -> None:
    style = {"success": "green", "failed": "red", "up_for_retry": "yellow"}.get(event.state, "dim")
    console.print(
        f"[{style}]{task_line(event.label, event.state, event.tries, event.seconds)}[/]", highlight=False
    )


@contextmanager
def output_to_file(path: Path) -> Iterator[Console]:
    """Sends this process's stdout and stderr to ``path`` at the file-descriptor level (Airflow's and the
    tasks' logs, libraries' prints, C extensions' output) and yields a console on the real terminal for
    what a person should see. Restored on the way out, exceptions included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8")
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield Console(file=terminal) if terminal.isatty() else Console(file=terminal, width=160)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
    finally:
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()


def psql_url(settings: Settings | None = None) -> str:
    """The app database's address as a person reaches it (``MOVIEREC_PUBLIC_DATABASE_URL`` where the pipeline
    sees another one, as inside the Docker stack), without its password: psql asks for it."""
    from sqlalchemy.engine import URL, make_url

    from database.engine import database_url
    from pipeline.core.settings import get_settings

    settings = settings or get_settings()
    url = make_url(settings.public_database_url or database_url(settings))
    bare = URL.create("postgresql", url.username, None, url.host, url.port, url.database, url.query)
    return bare.render_as_string(hide_password=False)


def print_ingest(result: IngestResult) -> None:
    table = Table(title=f"ingest run {result.ingest_run_id}: {result.dataset} ({result.layout} layout)")
    for col in ("rows", "accepted", "rejected", "inserted", "updated"):
        table.add_column(col, justify="right" if col != "rows" else "left")
    for kind in ("movies", "users", "credits", "ratings"):
        c = result.counts
        if f"{kind}_accepted" in c:
            table.add_row(
                kind,
                *(str(c.get(f"{kind}_{k}", "")) for k in ("accepted", "rejected", "inserted", "updated")),
            )
    out.print(table)
    if result.rows_rejected:
        out.print(
            f"[yellow]{result.rows_rejected} rejected lines kept in rejected_rows "
            f"(ingest_run_id = {result.ingest_run_id})[/yellow]"
        )
    out.print("timings (s): " + ", ".join(f"{k} {v}" for k, v in result.timings.items()))


def print_summary(engine: Engine) -> None:
    from pipeline.ingest.summary import database_summary

    s = database_summary(engine)
    out.print(
        f"database: {s['ratings']:,} ratings by {s['users']:,} users of {s['movies']:,} movies "
        f"({s['first_rating']} to {s['last_rating']}, mean {s['mean_rating']}); "
        f"{s['persons']:,} people, directors known for {s['movies_with_director']:,} movies; "
        f"{s['rejected_rows']:,} rejected rows over {s['ingest_runs']} ingest runs"
    )
    table = Table(title="most-rated movies")
    for col in ("title", "year", "ratings", "mean rating"):
        table.add_column(col)
    for m in s["most_rated"]:
        table.add_row(m["title"], str(m["year"] or ""), str(m["ratings"]), str(m["mean_rating"]))
    out.print(table)


def print_batch_comparison(c: BatchComparison) -> None:
    """``compare_batches``' figures: one row per figure, a column per batch and the change."""

    def f(value: float | None, signed: bool = False) -> str:
        return "—" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"

    table = Table(title=f"batch {c.batch_b} against batch {c.batch_a} (k={c.top_k})")
    table.add_column("figure")
    for header in (f"batch {c.batch_a}", f"batch {c.batch_b}", "both / change"):
        table.add_column(header, justify="right")
    table.add_row("users", f"{c.users_a:,}", f"{c.users_b:,}", f"{c.users_both:,}")
    table.add_row(f"overlap@{c.top_k} (share of top-{c.top_k} kept)", "", "", f(c.overlap_at_k))
    table.add_row(f"Jaccard@{c.top_k}", "", "", f(c.jaccard_at_k))
    table.add_row("churn (share of the list that is new)", "", "", f(c.churn))
    table.add_row("catalogue coverage", f(c.coverage_a), f(c.coverage_b), f(c.coverage_change, True))
    table.add_row("novelty (bits)", f(c.novelty_a), f(c.novelty_b), f(c.novelty_change, True))
    out.print(table)
