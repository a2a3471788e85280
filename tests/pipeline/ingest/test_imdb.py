"""IMDb enrichment against a real database, with small files in IMDb's official TSV format."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from pipeline.core.errors import InputError
from pipeline.ingest import imdb
from pipeline.ingest.imdb import enrich_from_imdb

N = "\\N"

BASICS = [
    [
        "tconst",
        "titleType",
        "primaryTitle",
        "originalTitle",
        "isAdult",
        "startYear",
        "endYear",
        "runtimeMinutes",
        "genres",
    ],
    ["tt0114709", "movie", "Toy Story", "Toy Story", "0", "1995", N, "81", "Animation,Comedy"],  # line 2
    ["tt0114814", "movie", "The Usual Suspects", "The Usual Suspects", "0", "1995", N, "106", "Crime"],
    ["tt9000001", "tvEpisode", "The Usual Suspects", "The Usual Suspects", "0", "1995", N, "22", "Crime"],
    ["tt0114814x"],  # line 5: one field only
    ["tt9000002", "movie", "Twins", "Twins", "0", "2000", N, "90", "Drama"],
    ["tt9000003", "movie", "Twins", "Twins", "0", "2000", N, "95", "Drama"],
    ["tt9000004", "movie", "Heat", "Heat", "0", "1996", N, N, "Crime"],  # one year off, no runtime
    ["tt9000005", "video", "Gamma", "Gamma", "0", "2003", N, "70", "Drama"],
    ["tt9000006", "movie", "Gamma", "Gamma", "0", "2003", N, "75", "Drama"],
    ["tt9000007", "movie", "Delta", "Delta", "0", "2005", N, "abc", "Drama"],  # line 11: bad runtime
    ["tt9000008", "movie", "Le Samouraï", "Le Samouraï", "0", "1967", N, "105", "Crime"],
]
CREW = [
    ["tconst", "directors", "writers"],
    ["tt0114709", "nm0005124", "nm0005124,nm0230032,nm0004056"],
    ["tt0114814", "nm0001741", "nm0003160"],
    ["tt9000002", "nm9999999", N],
]
PRINCIPALS = [
    ["tconst", "ordering", "nconst", "category", "job", "characters"],
    ["tt0114709", "1", "nm0000158", "actor", N, '["Woody"]'],
    ["tt0114709", "2", "nm0000158", "actor", N, '["Woody (singing)"]'],  # listed twice: first one counts
    ["tt0114709", "3", "nm0000741", "actor", N, '["Buzz Lightyear"]'],
    ["tt0114709", "4", "nm0005124", "director", N, N],
    ["tt0114709", "5", "nm0725543", "actress", N, '["Bo Peep"]'],
    ["tt0114814", "3", "nm0000228", "actor", N, '["Verbal"]'],
    ["tt0114814", "1", "nm0000321", "actor", N, '["Keaton"]'],
    ["tt0114814", "2", "nm0000286", "self", N, N],
    ["tt9000002", "1", "nm9999998", "actor", N, N],
]
NAMES = [
    ["nconst", "primaryName", "birthYear", "deathYear", "primaryProfession", "knownForTitles"],
    ["nm0000158", "Tom Hanks", "1956", N, "actor", "tt0114709"],
    ["nm0000741", "Tim Allen", "1953", N, "actor", "tt0114709"],
    ["nm0725543", "Annie Potts", "1952", N, "actress", "tt0114709"],
    ["nm0005124", "John Lasseter", "1957", N, "director", "tt0114709"],
    ["nm0230032", "Pete Docter", "1968", N, "writer", "tt0114709"],
    ["nm0004056", "Andrew Stanton", "1965", N, "writer", "tt0114709"],
    ["nm0001741", "Bryan Singer", "1965", N, "director", "tt0114814"],
    ["nm0003160", N, N, N, "writer", "tt0114814"],
    ["nm0000228", "Kevin Spacey", "1959", N, "actor", "tt0114814"],
    ["nm0000321", "Gabriel Byrne", "1950", N, "actor", "tt0114814"],
]

MOVIES = [  # (movie_id, title, year, imdb_id)
    (1, "Toy Story", 1995, "tt0114709"),
    (2, "Usual Suspects, The", 1995, None),
    (3, "Some Film Nobody Made", 1995, None),
    (4, "Twins", 2000, None),  # two equally good candidates
    (5, "Heat", 1995, None),  # only a one-year-off candidate
    (6, "Gamma", 2003, None),  # movie preferred over video
    (7, "Samouraï, Le", 1967, None),
]


def _write(path: Path, rows: list[list[str]]) -> None:
    body = "".join("\t".join(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(body)
    else:
        path.write_text(body, encoding="utf-8", newline="")


@pytest.fixture
def imdb_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imdb"
    d.mkdir()
    _write(d / "title.basics.tsv.gz", BASICS)
    _write(d / "title.crew.tsv", CREW)
    _write(d / "title.principals.tsv", PRINCIPALS)
    _write(d / "name.basics.tsv.gz", NAMES)
    return d


def _run_id(conn: Connection) -> int:
    return conn.execute(
        text(
            "INSERT INTO ingest_runs (dataset, source, layout, status) "
            "VALUES ('imdb', 'test', 'imdb', 'running') RETURNING ingest_run_id"
        )
    ).scalar_one()


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    with engine.begin() as conn:
        for movie_id, title, year, imdb_id in MOVIES:
            conn.execute(
                text(
                    "INSERT INTO movies (movie_id, title, year, imdb_id, source) "
                    "VALUES (:m, :t, :y, :i, 'test')"
                ),
                {"m": movie_id, "t": title, "y": year, "i": imdb_id},
            )
        # An existing name must survive IMDb having none; an existing NULL name gets IMDb's.
        conn.execute(
            text(
                "INSERT INTO persons (external_id, name) VALUES "
                "('imdb:nm0003160', 'Christopher McQuarrie'), ('imdb:nm0001741', NULL)"
            )
        )
    return engine


def _enrich(engine: Engine, imdb_dir: Path) -> dict[str, int]:
    with engine.begin() as conn:
        return enrich_from_imdb(conn, imdb_dir, _run_id(conn), progress=False)


def _credits(engine: Engine, movie_id: int, role: str) -> list[tuple[int, str | None, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT mp.ordering, p.name, p.external_id "
                    "FROM movie_persons mp JOIN persons p USING (person_id) "
                    "WHERE mp.movie_id = :m AND mp.role = :r ORDER BY mp.ordering"
                ),
                {"m": movie_id, "r": role},
            )
        ]


def _movies(engine: Engine) -> dict[int, tuple]:
    with engine.connect() as conn:
        return {
            r.movie_id: (r.imdb_id, r.runtime_minutes)
            for r in conn.execute(text("SELECT movie_id, imdb_id, runtime_minutes FROM movies"))
        }


def _snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2, 3"))]
            for t in ("movies", "persons", "movie_persons")
        }


def test_matches_and_fills_runtime_and_credits(seeded: Engine, imdb_dir: Path) -> None:
    counts = _enrich(seeded, imdb_dir)

    assert _movies(seeded) == {
        1: ("tt0114709", 81),
        2: ("tt0114814", 106),  # title + exact year; the tvEpisode namesake is ignored
        3: (None, None),  # no candidate: untouched
        4: (None, None),  # two 'movie' candidates in 2000: ambiguous, skipped
        5: ("tt9000004", None),  # only candidate is a year off; IMDb has no runtime
        6: ("tt9000006", 75),  # 'movie' preferred over 'video'
        7: ("tt9000008", 105),  # accents and the trailing article are normalised away
    }
    assert _credits(seeded, 1, "director") == [(1, "John Lasseter", "imdb:nm0005124")]
    assert _credits(seeded, 1, "writer") == [
        (1, "John Lasseter", "imdb:nm0005124"),
        (2, "Pete Docter", "imdb:nm0230032"),
        (3, "Andrew Stanton", "imdb:nm0004056"),
    ]
    # principals: actress counts as actor; a repeat and the director row take no rank
    assert _credits(seeded, 1, "actor") == [
        (1, "Tom Hanks", "imdb:nm0000158"),
        (2, "Tim Allen", "imdb:nm0000741"),
        (3, "Annie Potts", "imdb:nm0725543"),
    ]
    # rank follows principals ordering, not file order; 'self' is no actor
    assert _credits(seeded, 2, "actor") == [
        (1, "Gabriel Byrne", "imdb:nm0000321"),
        (2, "Kevin Spacey", "imdb:nm0000228"),
    ]
    assert _credits(seeded, 2, "director") == [(1, "Bryan Singer", "imdb:nm0001741")]  # NULL name filled
    assert _credits(seeded, 2, "writer") == [(1, "Christopher McQuarrie", "imdb:nm0003160")]  # name kept
    assert _credits(seeded, 4, "director") == []  # crew of an ambiguous candidate is not attached

    assert counts["movies_matched_by_id"] == 1
    assert counts["movies_matched_by_title"] == 4
    assert counts["ambiguous"] == 1
    assert counts["unmatched"] == 1
    assert counts["runtime_set"] == 4
    assert (counts["directors"], counts["writers"], counts["actors"]) == (2, 4, 5)
    assert counts["persons"] == 8 + 1  # 8 new, 1 renamed from NULL
    assert counts["rejected"] == 2
    assert counts["missing_title_crew"] == counts["missing_name_basics"] == 0


def test_second_run_changes_nothing(seeded: Engine, imdb_dir: Path) -> None:
    _enrich(seeded, imdb_dir)
    before = _snapshot(seeded)
    counts = _enrich(seeded, imdb_dir)

    assert _snapshot(seeded) == before
    assert len(before["movie_persons"]) == 11
    # title-matched movies are now matched by their stored id
    assert counts["movies_matched_by_id"] == 5 and counts["movies_matched_by_title"] == 0
    written = ("runtime_set", "persons", "directors", "writers", "actors")
    assert {k: counts[k] for k in written} == dict.fromkeys(written, 0)


def test_bad_lines_are_rejected_with_line_numbers(seeded: Engine, imdb_dir: Path) -> None:
    _enrich(seeded, imdb_dir)
    with seeded.connect() as conn:
        rows = conn.execute(
            text("SELECT source_file, line_number, raw_text, reason FROM rejected_rows ORDER BY line_number")
        ).all()
    assert [(r.source_file, r.line_number, r.raw_text) for r in rows] == [
        ("title.basics.tsv", 5, "tt0114814x"),
        ("title.basics.tsv", 11, "\t".join(BASICS[10])),
    ]
    assert "expected 9 tab-separated fields, found 1" in rows[0].reason
    assert "runtimeMinutes" in rows[1].reason and "'abc'" in rows[1].reason


def test_lines_split_across_read_blocks(
    seeded: Engine, imdb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny blocks cut lines in half: results and rejected line numbers must not change."""
    monkeypatch.setattr(imdb, "_BLOCK_BYTES", 7)
    # last line without its newline, short line in principals
    (imdb_dir / "title.principals.tsv").write_text(
        "\n".join("\t".join(r) for r in PRINCIPALS[:3] + [["tt0114709", "9"]] + PRINCIPALS[3:])
    )
    counts = _enrich(seeded, imdb_dir)

    assert _movies(seeded)[2] == ("tt0114814", 106)
    assert [name for _, name, _ in _credits(seeded, 1, "actor")] == ["Tom Hanks", "Tim Allen", "Annie Potts"]
    assert _credits(seeded, 2, "actor")[-1] == (2, "Kevin Spacey", "imdb:nm0000228")  # the unterminated line
    with seeded.connect() as conn:
        lines = conn.execute(text("SELECT source_file, line_number FROM rejected_rows ORDER BY 1, 2")).all()
    assert [tuple(r) for r in lines] == [
        ("title.basics.tsv", 5),
        ("title.basics.tsv", 11),
        ("title.principals.tsv", 4),
    ]
    assert counts["rejected"] == 3


def test_optional_files_may_be_missing(seeded: Engine, imdb_dir: Path) -> None:
    for name in ("title.crew.tsv", "title.principals.tsv", "name.basics.tsv.gz"):
        (imdb_dir / name).unlink()
    counts = _enrich(seeded, imdb_dir)

    missing = ("missing_title_crew", "missing_title_principals", "missing_name_basics")
    assert [counts[k] for k in missing] == [1, 1, 1]
    assert counts["runtime_set"] == 4
    assert _movies(seeded)[1] == ("tt0114709", 81)
    assert _snapshot(seeded)["movie_persons"] == []


def test_missing_input_raises(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        run_id = _run_id(conn)
        with pytest.raises(InputError, match="title.basics.tsv"):
            enrich_from_imdb(conn, tmp_path, run_id, progress=False)
        with pytest.raises(InputError, match="not found"):
            enrich_from_imdb(conn, tmp_path / "nope", run_id, progress=False)
        (tmp_path / "title.basics.tsv").write_text("")
        with pytest.raises(InputError, match="empty"):
            enrich_from_imdb(conn, tmp_path, run_id, progress=False)


def test_bare_links_csv_id_is_matched(engine: Engine, imdb_dir: Path) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO movies (movie_id, title, year, imdb_id, source) "
                "VALUES (1, 'Whatever', 1995, '0114709', 'test')"
            )
        )
    counts = _enrich(engine, imdb_dir)
    assert counts["movies_matched_by_id"] == 1
    assert _movies(engine)[1] == ("0114709", 81)  # the stored id is left as it was


def test_a_name_over_the_bound_is_rejected_not_stored(seeded: Engine, imdb_dir: Path) -> None:
    names = [row if row[0] != "nm0000228" else [row[0], "K" * 5_000, *row[2:]] for row in NAMES]
    _write(imdb_dir / "name.basics.tsv.gz", names)
    _enrich(seeded, imdb_dir)
    with seeded.connect() as conn:
        rejects = conn.execute(
            text("SELECT line_number, reason FROM rejected_rows WHERE source_file = 'name.basics.tsv'")
        ).all()
        longest = conn.execute(text("SELECT max(length(name)) FROM persons")).scalar_one()
    assert [tuple(r) for r in rejects] == [(10, "primaryName is 5000 characters long (at most 300)")]
    assert longest < 300
