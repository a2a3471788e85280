"""``movierec recommend`` and ``movierec run``: publish the lists, or the whole weekly flow in one process;
``movierec publish --rollback`` and ``movierec compare-batches``: put the previous lists back, compare two."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from pipeline.cli.options import (
    AsOf,
    Candidates,
    Device,
    Diversity,
    Epochs,
    Force,
    FullRetrain,
    PopularityPenalty,
    TopN,
    as_of_option,
    dataset_option,
    device_option,
    rerank_options,
)
from pipeline.cli.render import err, out, print_batch_comparison, print_published_lists
from pipeline.core.defaults import DEFAULT_DATASET, DEFAULT_TOP_N, REGISTERED_MODEL
from pipeline.core.settings import get_settings


def recommend(
    top_n: TopN = DEFAULT_TOP_N,
    as_of: AsOf = None,
    device: Device = None,
    candidates: Candidates = None,
    diversity: Diversity = None,
    popularity_penalty: PopularityPenalty = None,
    force: Force = False,
) -> None:
    """Score every user with the champion and publish the lists (current_recommendations) atomically."""
    from pipeline.orchestration.steps import publish
    from pipeline.registry.report import list_figures_line

    as_of_option(as_of)
    rerank_options(diversity, popularity_penalty)
    batch = publish(
        as_of,
        top_n,
        device=device_option(device) if device else "cpu",
        progress=sys.stderr.isatty(),
        candidates=candidates,
        diversity=diversity,
        popularity_penalty=popularity_penalty,
        force=force,
    )
    out.print(
        f"published batch {batch['batch_id']} scored by {REGISTERED_MODEL} v{batch['registered_version']}: "
        f"{batch['users']:,} users ({batch['fallback_users']:,} on the fallback list), "
        f"{batch['rows']:,} rows in {batch['timings']['total']} s"
    )
    out.print(f"published lists: {list_figures_line(batch['list_metrics'])}", highlight=False)
    print_published_lists()


def run(
    dataset: Annotated[str | None, typer.Option(help=f"named dataset (default {DEFAULT_DATASET})")] = None,
    source: Annotated[
        Path | None, typer.Option(help="a directory in a GroupLens (or RecBole) layout")
    ] = None,
    as_of: AsOf = None,
    top_n: TopN = DEFAULT_TOP_N,
    epochs: Epochs = None,
    device: Device = None,
    candidates: Candidates = None,
    diversity: Diversity = None,
    popularity_penalty: PopularityPenalty = None,
    force: Force = False,
    full_retrain: FullRetrain = False,
) -> None:
    """The weekly pipeline in one process: ingest, evaluate, train, promote, recommend; then show lists."""
    from pipeline.orchestration.steps import run_all

    dataset = dataset_option(dataset, source)
    as_of_option(as_of)  # a bad date fails before any work
    rerank_options(diversity, popularity_penalty)

    def on_step(name: str, value: Any) -> None:
        err.print(f"[green]✓[/green] {name}", highlight=False)

    results = run_all(
        dataset or (None if source else DEFAULT_DATASET),
        str(source) if source else None,
        as_of=as_of,
        top_n=top_n,
        epochs=epochs,
        device=device_option(device),
        candidates=candidates,
        diversity=diversity,
        popularity_penalty=popularity_penalty,
        force=force,
        progress=sys.stderr.isatty(),
        on_step=on_step,
        full_retrain=full_retrain,
    )
    out.print(results["report"], highlight=False)
    print_published_lists()


def publish_kept(
    rollback: Annotated[
        bool, typer.Option("--rollback", help="make the previous kept batch the published one again")
    ] = False,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            min=1,
            help="roll back only this batch: if it was rolled back already, do nothing (safe to re-run)",
        ),
    ] = None,
) -> None:
    """Change which kept batch is published, without scoring: --rollback puts the previous lists back.

    A command of its own rather than a flag of ``recommend``: every option of ``recommend`` (top-N, cut-off,
    device, candidates) is about scoring a new batch and would mean nothing here, while ``publish`` names
    what changes, the published batch. The swap is one transaction under the same lock as a publication."""
    from database.engine import get_engine
    from pipeline.batch.rollback import rollback_batch

    if not rollback:
        raise click.UsageError("nothing to do: give --rollback")
    settings = get_settings()
    done = rollback_batch(get_engine(settings), expect=batch, lock_timeout_s=settings.lock_timeout_s)
    if done["rolled_back"] is None:
        out.print(
            f"batch {batch} was already rolled back: batch {done['published']} is published; nothing done"
        )
    else:
        out.print(
            f"rolled back batch {done['rolled_back']} (by {done['by']}): "
            f"batch {done['published']} is published again"
        )


def compare_batches(
    a: Annotated[
        int | None, typer.Argument(help="reference batch (default: the previous kept batch)")
    ] = None,
    b: Annotated[
        int | None, typer.Argument(help="batch compared with it (default: the published one)")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="list head the overlaps look at")] = 10,
) -> None:
    """Compare two kept batches: users in both, overlap@k, churn, catalogue coverage and novelty."""
    from database.engine import get_engine
    from pipeline.batch import compare

    if (a is None) != (b is None):
        raise click.UsageError(
            "give two batch ids, or none (the previous kept batch against the published one)"
        )
    with get_engine(get_settings()).connect() as conn:
        pair = (a, b) if a is not None and b is not None else compare.default_pair(conn)
        print_batch_comparison(compare.compare_batches(conn, *pair, k=k))
