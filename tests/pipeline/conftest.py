"""Trained models and published databases the pipeline tests share.

* ``first_300_users`` / ``tiny_blend``: the first 300 real ML-100K users' ratings, and the published blend
  (tiny hybrid network, EASE, a rating-head term) trained on them once per session. Read-only.
* ``weekly_run``: the weekly flow on the ML-100K slice, once per module that asks for it: a champion in a
  sqlite MLflow store under its home and a published batch in its database. ``weekly_copy`` is a private
  copy of that database for one test (same home, same champion), so a test that publishes again, adds users
  or kills a writer leaves the next test the state the run left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine

from database.engine import get_engine, sqlalchemy_url
from pipeline.features.interactions import Interactions
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.weights import BlendWeights
from tests.support.configs import TINY
from tests.support.database import close_connections, copy_of, database_name
from tests.support.weekly import Published, run_weekly_slice, weekly_settings

TINY_BLEND_WEIGHTS = BlendWeights(0.6, 1.0, 1.0)  # network and EASE for ranking, plus the rating head


@pytest.fixture(scope="session")
def first_300_users(ml100k_data) -> Interactions:  # type: ignore[no-untyped-def]
    """Every rating of the first 300 real ML-100K users (``ml100k_data``'s index space)."""
    X = ml100k_data.interactions
    return X.subset(np.flatnonzero(X.users < 300))


@pytest.fixture(scope="session")
def tiny_blend(ml100k_data, first_300_users: Interactions) -> PublishedBlend:  # type: ignore[no-untyped-def]
    """The published blend of a tiny network trained on ``first_300_users``: ranking 0.6 network + 0.4 EASE
    plus the rating head at weight 1; ratings from the network alone."""
    from pipeline.models.hybrid.train import train_hybrid

    network = train_hybrid(ml100k_data, first_300_users, TINY, device="cpu", progress=False).model
    return PublishedBlend.from_training(network, first_300_users, TINY_BLEND_WEIGHTS)


@pytest.fixture(scope="module")
def weekly_run(
    tmp_path_factory: pytest.TempPathFactory, server_url: str, template_db: str, ml100k_slice_dir: Path
) -> Iterator[Published]:
    """One weekly run on the ML-100K slice (two epochs, top 20) in a database and home of its own."""
    with copy_of(server_url, template_db) as url:
        settings = weekly_settings(tmp_path_factory.mktemp("weekly-home"), url)
        results = run_weekly_slice(settings, ml100k_slice_dir)
        get_engine(settings).dispose()  # the run's pooled connections: the database is copied from here on
        close_connections(server_url, database_name(url))
        yield Published(settings, results)


@pytest.fixture
def weekly_copy(server_url: str, weekly_run: Published) -> Iterator[Published]:
    """This test's own copy of the weekly run's database, with the run's home (its champion) and results."""
    with copy_of(server_url, database_name(weekly_run.settings.database_url or "")) as url:
        yield Published(weekly_settings(weekly_run.settings.home, url), weekly_run.results)


@pytest.fixture
def weekly_engine(weekly_copy: Published) -> Iterator[Engine]:
    eng = create_engine(sqlalchemy_url(weekly_copy.settings.database_url or ""))
    yield eng
    eng.dispose()
