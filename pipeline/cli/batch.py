"""``movierec recommend`` and ``movierec run``: publish the lists, or the whole weekly flow in one process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from pipeline.cli.options import AsOf, Candidates, Device, Epochs, TopN, as_of_option, device_option
from pipeline.cli.render import err, out, print_published_lists
from pipeline.core.defaults import DEFAULT_DATASET, DEFAULT_TOP_N, REGISTERED_MODEL


def recommend(
    top_n: TopN = DEFAULT_TOP_N, as_of: AsOf = None, device: Device = None, candidates: Candidates = None
) -> None:
    """Score every user with the champion and publish the lists (current_recommendations) atomically."""
    from pipeline.orchestration.steps import publish

    as_of_option(as_of)
    batch = publish(
        as_of,
        top_n,
        device=device_option(device) if device else "cpu",
        progress=sys.stderr.isatty(),
        candidates=candidates,
    )
    out.print(
        f"published batch {batch['batch_id']} scored by {REGISTERED_MODEL} v{batch['registered_version']}: "
        f"{batch['users']:,} users ({batch['fallback_users']:,} on the fallback list), "
        f"{batch['rows']:,} rows in {batch['timings']['total']} s"
    )
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
) -> None:
    """The weekly pipeline in one process: ingest, evaluate, train, promote, recommend; then show lists."""
    from pipeline.orchestration.steps import run_all

    if dataset and source:
        raise click.UsageError("give at most one of --dataset NAME or --source DIR")
    as_of_option(as_of)  # a bad date fails before any work

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
        progress=sys.stderr.isatty(),
        on_step=on_step,
    )
    out.print(results["report"], highlight=False)
    print_published_lists()
