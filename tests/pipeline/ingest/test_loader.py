"""Ingestion into a real PostgreSQL: layouts, idempotence, latest-wins, and bad input kept with reasons."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pipeline.core.errors import InputError
from pipeline.ingest.loader import ingest_directory
from tests.support.movielens_files import T0, write_ml1m, write_ml100k, write_ml_latest, write_recbole


def rows(engine, sql, **params):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def snapshot(engine):
    return {t: rows(engine, f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("ratings", "users", "persons")} | {
        "movies": rows(
            engine, "SELECT movie_id, title, year, genres, imdb_id, updated_at FROM movies ORDER BY 1"
        ),
        "movie_persons": rows(engine, "SELECT * FROM movie_persons ORDER BY 1, 2, 3"),
    }


def rejected(engine, run_id):
    return rows(
        engine,
        "SELECT source_file, line_number, raw_text, reason FROM rejected_rows "
        "WHERE ingest_run_id = :r ORDER BY source_file, line_number",
        r=run_id,
    )


@pytest.mark.parametrize("writer", [write_ml100k, write_ml1m, write_ml_latest, write_recbole])
def test_every_layout_lands_and_reingest_changes_nothing(engine, tmp_path, writer):
    d = writer(tmp_path / "data")
    first = ingest_directory(engine, d, progress=False)
    n_ratings = rows(engine, "SELECT count(*) FROM ratings")[0][0]
    assert n_ratings == first.counts["ratings_inserted"] == first.counts["ratings_read"] > 0
    assert first.counts["ratings_fast_path"] == (1 if writer is not write_ml1m else 0)
    before = snapshot(engine)

    second = ingest_directory(engine, d, progress=False)
    assert snapshot(engine) == before
    assert second.counts["ratings_inserted"] == second.counts["ratings_updated"] == 0
    assert second.counts["movies_inserted"] == second.counts["movies_updated"] == 0
    runs = rows(engine, "SELECT status, rows_rejected FROM ingest_runs ORDER BY ingest_run_id")
    assert runs == [("succeeded", 0), ("succeeded", 0)]


def test_ml_latest_users_come_from_ratings_and_links_fill_ids(engine, tmp_path):
    ingest_directory(engine, write_ml_latest(tmp_path / "d"), progress=False)
    assert rows(engine, "SELECT user_id, gender FROM users ORDER BY 1") == [(1, None), (7, None)]
    assert rows(engine, "SELECT imdb_id, tmdb_id FROM movies WHERE movie_id = 1") == [("tt0114709", 862)]
    assert rows(engine, "SELECT rating FROM ratings WHERE user_id = 7") == [(0.5,)]


def test_latin1_titles_stored_as_text(engine, tmp_path):
    ingest_directory(engine, write_ml100k(tmp_path / "d"), progress=False)
    assert rows(engine, "SELECT title FROM movies WHERE movie_id = 2") == [("Misérables, Les",)]


def test_recbole_credits_become_people_without_names(engine, tmp_path):
    ingest_directory(engine, write_recbole(tmp_path / "d"), progress=False)
    assert rows(
        engine,
        """SELECT p.external_id, p.name, mp.role, mp.ordering FROM movie_persons mp
                           JOIN persons p USING (person_id) ORDER BY mp.role, mp.ordering""",
    ) == [
        ("freebase:m.0c0k1", None, "actor", 1),
        ("freebase:m.01h2jr", None, "actor", 2),
        ("freebase:m.0lbj1", None, "director", 1),
    ]


def test_later_rating_replaces_earlier_and_older_one_does_not(engine, tmp_path):
    ingest_directory(engine, write_ml100k(tmp_path / "week1"), progress=False)
    delta = write_ml100k(
        tmp_path / "week2",
        ratings=[
            f"1\t1\t2\t{T0 + 10_000}",  # re-rating, newer: replaces 5
            f"2\t1\t1\t{T0 - 10_000}",  # re-rating, older than the stored one: ignored
            f"3\t1\t4\t{T0 + 10_000}",  # new
        ],
    )
    result = ingest_directory(engine, delta, progress=False)
    assert (
        result.counts["ratings_inserted"],
        result.counts["ratings_updated"],
        result.counts["ratings_unchanged"],
    ) == (1, 1, 1)
    assert rows(engine, "SELECT user_id, rating FROM ratings WHERE movie_id = 1 ORDER BY 1") == [
        (1, 2.0),
        (2, 4.0),
        (3, 4.0),
    ]


def test_same_pair_twice_in_one_file_keeps_the_latest(engine, tmp_path):
    d = write_ml100k(tmp_path / "d", ratings=[f"1\t1\t5\t{T0 + 50}", f"1\t1\t2\t{T0}", f"2\t1\t3\t{T0}"])
    result = ingest_directory(engine, d, progress=False)
    assert result.counts["ratings_superseded_in_file"] == 1
    assert rows(engine, "SELECT user_id, rating FROM ratings ORDER BY 1") == [(1, 5.0), (2, 3.0)]


def test_bad_rating_lines_are_kept_with_reasons_and_good_ones_land(engine, tmp_path):
    d = write_ml100k(
        tmp_path / "d",
        ratings=[
            f"1\t1\t5\t{T0}",  # 1 good
            f"x\t1\t5\t{T0}",  # 2 non-numeric user
            f"1\t2\t7\t{T0}",  # 3 rating out of the 1-5 scale
            f"1\t99\t4\t{T0}",  # 4 unknown movie
            "2\t3\t4",  # 5 short line
            f"9\t3\t4\t{T0}",  # 6 unknown user (ml-100k has a users file)
            "2\t3\t4\t12",  # 7 timestamp in 1970
            f"2\t3\t4.5\t{T0}",  # 8 half star on a whole-star scale
            f"3\t4\t2\t{T0}",  # 9 good
        ],
    )
    result = ingest_directory(engine, d, progress=False)
    assert result.counts["ratings_fast_path"] == 0
    assert (result.counts["ratings_accepted"], result.counts["ratings_rejected"]) == (2, 7)
    assert rows(engine, "SELECT user_id, movie_id FROM ratings ORDER BY 1") == [(1, 1), (3, 4)]
    got = rejected(engine, result.ingest_run_id)
    assert [(f, n, raw) for f, n, raw, _ in got] == [
        ("u.data", 2, f"x\t1\t5\t{T0}"),
        ("u.data", 3, f"1\t2\t7\t{T0}"),
        ("u.data", 4, f"1\t99\t4\t{T0}"),
        ("u.data", 5, "2\t3\t4"),
        ("u.data", 6, f"9\t3\t4\t{T0}"),
        ("u.data", 7, "2\t3\t4\t12"),
        ("u.data", 8, f"2\t3\t4.5\t{T0}"),
    ]
    reasons = [r for *_, r in got]
    assert reasons[0] == "user_id 'x' is not a positive integer"
    assert reasons[1].startswith("rating 7 is outside the scale 1 to 5")
    assert reasons[2] == "unknown movie_id 99"
    assert reasons[3] == "expected 4 fields, found 3"
    assert reasons[4] == "unknown user_id 9"
    assert reasons[5].startswith("timestamp 12 is not between")
    assert reasons[6].startswith("rating 4.5 is outside the scale")
    assert rows(engine, "SELECT status, rows_rejected FROM ingest_runs") == [("succeeded", 7)]


def test_bad_catalogue_line_rejected_and_its_ratings_follow(engine, tmp_path):
    d = write_ml100k(tmp_path / "d")
    with (d / "u.item").open("ab") as fh:
        fh.write(b"5|Short line\n")
    (d / "u.data").write_text(f"1\t1\t5\t{T0}\n1\t5\t4\t{T0}\n")
    result = ingest_directory(engine, d, progress=False)
    got = rejected(engine, result.ingest_run_id)
    assert got[0][:2] == ("u.data", 2) and got[0][3] == "unknown movie_id 5"
    assert got[1] == ("u.item", 5, "5|Short line", "expected 24 fields, found 2")


def test_all_ratings_bad_fails_but_keeps_the_rejects(engine, tmp_path):
    d = write_ml100k(tmp_path / "d", ratings=["a\tb\tc\td", "1\t1"])
    with pytest.raises(InputError, match="no usable ratings"):
        ingest_directory(engine, d, progress=False)
    assert rows(engine, "SELECT status FROM ingest_runs") == [("failed",)]
    assert len(rows(engine, "SELECT * FROM rejected_rows")) == 2
    assert rows(engine, "SELECT count(*) FROM ratings") == [(0,)]


def test_failure_mid_ingest_leaves_the_previous_state(engine, tmp_path):
    ingest_directory(engine, write_ml100k(tmp_path / "good"), progress=False)
    before = snapshot(engine)
    changed = write_ml100k(tmp_path / "changed", ratings=[f"1\t3\t1\t{T0 + 99_999}"])
    empty_imdb = tmp_path / "imdb"
    empty_imdb.mkdir()  # no title.basics: enrichment fails after ratings were staged and upserted
    with pytest.raises(InputError):
        ingest_directory(engine, changed, imdb_dir=empty_imdb, progress=False)
    assert snapshot(engine) == before
    assert [s for _, s in rows(engine, "SELECT ingest_run_id, status FROM ingest_runs ORDER BY 1")] == [
        "succeeded",
        "failed",
    ]


def test_missing_and_empty_inputs_raise_input_error(engine, tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        ingest_directory(engine, tmp_path / "nowhere", progress=False)
    d = write_ml100k(tmp_path / "d")
    (d / "u.data").write_text("")
    with pytest.raises(InputError, match="empty"):
        ingest_directory(engine, d, progress=False)
    (d / "u.data").unlink()
    with pytest.raises(InputError, match="missing u.data"):
        ingest_directory(engine, d, progress=False)


@pytest.mark.slow
def test_real_ml100k_in_full(engine, ml100k_dir):
    result = ingest_directory(engine, ml100k_dir, dataset="ml-100k", progress=False)
    counts = rows(
        engine,
        "SELECT (SELECT count(*) FROM ratings), (SELECT count(*) FROM users), (SELECT count(*) FROM movies)",
    )[0]
    assert counts == (100_000, 943, 1_682)
    assert result.rows_rejected == 0
    with_director = rows(
        engine, "SELECT count(DISTINCT movie_id) FROM movie_persons WHERE role = 'director'"
    )[0][0]
    assert with_director / 1_682 > 0.9  # "directors known for most movies"
    assert rows(engine, "SELECT title, year FROM movies WHERE movie_id = 1") == [("Toy Story", 1995)]
    again = ingest_directory(engine, ml100k_dir, dataset="ml-100k", progress=False)
    assert again.counts["ratings_inserted"] == again.counts["ratings_updated"] == 0
    assert again.counts["ratings_unchanged"] == 100_000


def test_first_load_restores_every_key_and_index(engine, tmp_path):
    def schema():
        return (
            rows(
                engine,
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'ratings'::regclass ORDER BY 1",
            ),
            rows(engine, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ratings' ORDER BY 1"),
        )

    before = schema()
    assert len(before[0]) == 3 and len(before[1]) == 3  # PK + 2 FKs; PK index + 2 secondary
    ingest_directory(engine, write_ml100k(tmp_path / "d"), progress=False)
    assert schema() == before
    with engine.connect() as conn:  # the restored foreign key is enforced
        with pytest.raises(Exception, match="foreign key"):
            conn.execute(text("INSERT INTO ratings VALUES (1, 999, 3, now())"))


def test_duplicate_catalogue_id_is_rejected_with_its_line(engine, tmp_path):
    d = write_ml_latest(tmp_path / "d")
    with (d / "movies.csv").open("a") as fh:
        fh.write("2,Duplicate (1999),Drama\n")
    result = ingest_directory(engine, d, progress=False)
    assert rejected(engine, result.ingest_run_id) == [
        ("movies.csv", 5, "2,Duplicate (1999),Drama", "duplicate id 2 (first on line 3)")
    ]
    assert rows(engine, "SELECT title FROM movies WHERE movie_id = 2") == [("American President, The",)]
