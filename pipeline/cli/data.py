"""``movierec ingest``: a MovieLens dataset (and IMDb) into the database."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from pipeline.cli.options import dataset_option
from pipeline.cli.render import err, print_ingest, print_summary
from pipeline.core.defaults import DATASETS
from pipeline.core.errors import MovierecError, one_line
from pipeline.core.settings import Settings, get_settings


def ingest(
    dataset: Annotated[str | None, typer.Option(help=f"named dataset: {', '.join(DATASETS)}")] = None,
    source: Annotated[
        Path | None, typer.Option(help="a directory (or its zip archive) in a GroupLens (or RecBole) layout")
    ] = None,
    imdb: Annotated[Path | None, typer.Option(help="directory with IMDb TSV dumps to enrich from")] = None,
) -> None:
    """Load a MovieLens dataset (and optionally IMDb) into the database, then summarise it."""
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.ingest.loader import ingest_directory

    if (dataset is None) == (source is None):
        raise click.UsageError("give exactly one of --dataset NAME or --source DIR")
    dataset = dataset_option(dataset)  # an unknown name is a usage error, not a failed ingest
    settings = get_settings()
    if dataset is not None:
        from pipeline.ingest.datasets import fetch_dataset, get_spec

        spec = get_spec(dataset)
        try:
            fetched = fetch_dataset(dataset, settings, echo=lambda msg: err.print(msg))
        except MovierecError as exc:  # a download that fails is a failed ingest of that dataset
            _record_failed_fetch(settings, spec.name, spec.url, exc)
            raise
        directory, origin = fetched.path, fetched.source
    else:
        assert source is not None
        directory, origin = source, str(source.resolve())
    engine = get_engine(settings)
    upgrade(engine)  # idempotent: a fresh database needs no separate migrate step
    result = ingest_directory(
        engine, directory, dataset=dataset, source=origin, imdb_dir=imdb, progress=sys.stderr.isatty()
    )
    print_ingest(result)
    print_summary(engine)


def _record_failed_fetch(settings: Settings, dataset: str, url: str, exc: MovierecError) -> None:
    """An ``ingest_runs`` row for a download that failed; the database being out of reach too is only
    logged: the download's error is the one to report."""
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.ingest.loader import record_failed_ingest

    try:
        engine = get_engine(settings)
        upgrade(engine)
        record_failed_ingest(engine, dataset=dataset, source=url, error=exc)
    except Exception as record_exc:
        logging.getLogger(__name__).warning("the failed download was not recorded: %s", one_line(record_exc))
