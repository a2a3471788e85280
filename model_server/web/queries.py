"""What the pages read beyond the API's own queries, as the read-only role.

Each statement touches only what ``movierec_reader`` may read: the columns of migration 0004 (a user's
ratings are read without their values), the analyst views of ``database/sql/views.sql`` and the two views
of migration 0005 (``recommendation_history``, ``model_version_decisions``). A failure is the server's
``DatabaseUnavailable`` like any other read.
"""

from __future__ import annotations

from typing import Any

from model_server.db import Database

RATED_SHOWN = 50  # a user's most recent ratings on their page
AUDIENCE_SHOWN = 50  # users a movie is recommended to, best rank first

# Starting points for the home page: a few users with a list, the movies most often in a top 10.
EXAMPLE_USERS = "SELECT user_id FROM current_recommendations WHERE rank = 1 ORDER BY user_id LIMIT 5"
EXAMPLE_MOVIES = (
    "SELECT movie_id, title, count(*) AS top10 FROM current_recommendations WHERE rank <= 10 "
    "GROUP BY movie_id, title ORDER BY top10 DESC, movie_id LIMIT 5"
)
# The movies a user rated, newest first (when, not how: the reader cannot read rating values).
USER_RATED = (
    "SELECT r.movie_id, m.title, m.year, m.genres, r.rated_at, count(*) OVER () AS total "
    "FROM ratings r JOIN movies m ON m.movie_id = r.movie_id "
    "WHERE r.user_id = $1 ORDER BY r.rated_at DESC, r.movie_id LIMIT $2"
)
# A user's list in every kept batch, and how much of it the published list still holds.
USER_HISTORY = (
    "SELECT h.batch_id, h.batch_status, h.model_version, max(h.generated_at) AS generated_at, "
    "count(*) AS list_length, min(h.source) AS source, count(c.movie_id) AS overlap, "
    "count(*) FILTER (WHERE h.rank <= 10 AND c.rank <= 10) AS overlap_top10 "
    "FROM recommendation_history h "
    "LEFT JOIN recommendation_history c "
    "ON c.user_id = h.user_id AND c.movie_id = h.movie_id AND c.batch_status = 'published' "
    "WHERE h.user_id = $1 "
    "GROUP BY h.batch_id, h.batch_status, h.model_version ORDER BY h.batch_id DESC"
)
# Who the published batch recommends a movie to.
MOVIE_AUDIENCE = (
    "SELECT user_id, rank, score, source, count(*) OVER () AS total "
    "FROM current_recommendations WHERE movie_id = $1 ORDER BY rank, user_id LIMIT $2"
)
MOVIE_RATINGS_PER_MONTH = (
    "SELECT date_trunc('month', rated_at AT TIME ZONE 'UTC')::date AS month, count(*) AS ratings "
    "FROM ratings WHERE movie_id = $1 GROUP BY 1 ORDER BY 1"
)
BATCHES = (
    "SELECT batch_id, status, model_version, data_cutoff, top_n, users, fallback_users, rows, "
    "distinct_movies, catalogue_coverage, mean_score, generated_at, published_at "
    "FROM recommendation_batch_summary ORDER BY batch_id DESC"
)
MODEL_VERSIONS = (
    "SELECT registered_model, registered_version, dataset, data_cutoff, protocol, primary_metric, "
    "metric_value, champion_metric_value, status, decision, trained_at "
    "FROM model_version_decisions ORDER BY trained_at DESC, model_version_id DESC"
)
# Churn between the two most recent batches, over all users (one row; none when nothing is published).
CHURN = (
    "SELECT batch_id, previous_batch_id, count(*) AS users, avg(churn)::float8 AS mean_churn, "
    "avg(overlap_top10)::float8 AS mean_overlap_top10, avg(list_length)::float8 AS mean_list_length "
    "FROM recommendation_churn GROUP BY batch_id, previous_batch_id"
)


def _rows(records: list[Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in records]


async def user_rated(db: Database, user_id: int) -> tuple[int, list[dict[str, Any]]]:
    """How many movies ``user_id`` rated, and the most recent ones."""
    rows = _rows(await db.fetch(USER_RATED, user_id, RATED_SHOWN))
    return (rows[0]["total"] if rows else 0), rows


async def user_history(db: Database, user_id: int) -> list[dict[str, Any]]:
    return _rows(await db.fetch(USER_HISTORY, user_id))


async def movie_audience(db: Database, movie_id: int) -> tuple[int, list[dict[str, Any]]]:
    """How many users the published batch recommends ``movie_id`` to, and the best-ranked of them."""
    rows = _rows(await db.fetch(MOVIE_AUDIENCE, movie_id, AUDIENCE_SHOWN))
    return (rows[0]["total"] if rows else 0), rows


async def movie_ratings_per_month(db: Database, movie_id: int) -> list[dict[str, Any]]:
    return _rows(await db.fetch(MOVIE_RATINGS_PER_MONTH, movie_id))


async def runs(db: Database) -> dict[str, Any]:
    churn = _rows(await db.fetch(CHURN))
    return {
        "batches": _rows(await db.fetch(BATCHES)),
        "versions": _rows(await db.fetch(MODEL_VERSIONS)),
        "churn": churn[0] if churn else None,
    }
