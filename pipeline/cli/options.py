"""Options several commands share, with their bounds from ``pipeline.core.defaults``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import click
import typer

from pipeline.core.dates import parse_as_of
from pipeline.core.defaults import (
    DEFAULT_DIVERSITY,
    DEFAULT_POPULARITY_PENALTY,
    DEVICES,
    MAX_CANDIDATES,
    MAX_POPULARITY_PENALTY,
    MAX_TOP_N,
)
from pipeline.core.settings import get_settings

AsOf = Annotated[
    str | None, typer.Option("--as-of", help="data cut-off (ISO date): later ratings are unseen")
]
Epochs = Annotated[int | None, typer.Option(min=1, help="maximum epochs (early stopping may end sooner)")]
FullRetrain = Annotated[
    bool,
    typer.Option(
        "--full-retrain",
        help="train the networks from scratch instead of warm-starting them from the champion's (and the "
        "evaluation's validation network from the champion's evaluation's)",
    ),
]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: MOVIEREC_DEVICE)")]
TopN = Annotated[int, typer.Option("--top-n", min=1, max=MAX_TOP_N, help="list length per user")]
Candidates = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=MAX_CANDIDATES,
        help="movies per user the network's rating head re-ranks, retrieved by the cheap "
        "terms (default 500; 0: score every movie with every term)",
    ),
]

Diversity = Annotated[
    float | None,
    typer.Option(
        help="diversity re-rank strength: 0 keeps the ranking, up to 1 favours movies unlike those "
        f"already listed (MMR over content similarity; default {DEFAULT_DIVERSITY:g})",
    ),
]
PopularityPenalty = Annotated[
    float | None,
    typer.Option(
        help="popularity penalty: standard deviations of a user's scores taken off per standard "
        f"deviation of log-popularity, 0 to {MAX_POPULARITY_PENALTY:g} (default "
        f"{DEFAULT_POPULARITY_PENALTY:g})",
    ),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="publish even when the publication check refuses the lists (their coverage or long-tail share "
        "fell too far below the published batch's)",
    ),
]


def as_of_option(value: str | None) -> datetime | None:
    """``--as-of`` checked: a bad date is a usage error before any work starts."""
    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO date such as 1998-01-01", param_hint="'--as-of'"
        ) from exc


def dataset_option(name: str | None, source: str | Path | None = None) -> str | None:
    """``--dataset`` checked against the registry: an unknown name is a usage error before any work starts
    (the DAG's own check comes only after Airflow has started); so is giving it with ``--source``."""
    if name and source:
        raise click.UsageError("give at most one of --dataset NAME or --source DIR")
    if name is None:
        return None
    from pipeline.core.errors import InputError
    from pipeline.ingest.datasets import get_spec

    try:
        return get_spec(name).name
    except InputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--dataset'") from exc


def device_option(device: str | None) -> str:
    value = device or get_settings().device
    if value not in DEVICES:
        raise click.BadParameter(f"must be auto, cpu or cuda, not {value!r}", param_hint="'--device'")
    return value


def rerank_options(diversity: float | None, popularity_penalty: float | None) -> None:
    """``--diversity`` and ``--popularity-penalty`` checked against the re-rank's own bounds (one check for
    the CLI, the DAG's tasks and the pipeline): a usage error naming the flag, before any work starts."""
    from pipeline.core.errors import InputError
    from pipeline.models.rerank import check_rerank

    for flag, strength, penalty in (
        ("--diversity", diversity, None),
        ("--popularity-penalty", None, popularity_penalty),
    ):
        try:
            check_rerank(strength, penalty)
        except InputError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{flag}'") from exc
