"""A short account of what the database holds: table counts and a few facts, for people and logs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

_FACTS = {
    "ratings": "SELECT count(*) FROM ratings",
    "users": "SELECT count(*) FROM users",
    "movies": "SELECT count(*) FROM movies",
    "persons": "SELECT count(*) FROM persons",
    "movies_with_director": "SELECT count(DISTINCT movie_id) FROM movie_persons WHERE role = 'director'",
    "rejected_rows": "SELECT count(*) FROM rejected_rows",
    "ingest_runs": "SELECT count(*) FROM ingest_runs",
}


def database_summary(engine: Engine, top: int = 5) -> dict[str, Any]:
    """Counts per table, the rating period, the mean rating and the most-rated movies."""
    with engine.connect() as conn:
        out: dict[str, Any] = {name: conn.execute(text(sql)).scalar_one() for name, sql in _FACTS.items()}
        first, last, mean = conn.execute(
            text(
                "SELECT min(rated_at)::date, max(rated_at)::date, round(avg(rating)::numeric, 3) FROM ratings"
            )
        ).one()
        out.update(
            first_rating=str(first) if first else None,
            last_rating=str(last) if last else None,
            mean_rating=float(mean) if mean is not None else None,
        )
        out["most_rated"] = [
            dict(r._mapping)
            for r in conn.execute(
                text("""
            SELECT m.title, m.year, count(*) AS ratings,
                round(avg(r.rating)::numeric, 2)::float AS mean_rating
            FROM ratings r JOIN movies m USING (movie_id)
            GROUP BY m.movie_id, m.title, m.year ORDER BY count(*) DESC, m.title LIMIT :top"""),
                {"top": top},
            )
        ]
    return out
