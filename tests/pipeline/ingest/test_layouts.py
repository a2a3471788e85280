"""Each layout parsed from small files in its official format."""

import pytest

from pipeline.core.errors import InputError
from pipeline.ingest.layouts import (
    Reject,
    detect_layout,
    parse_credits,
    parse_links,
    parse_movies,
    parse_users,
)
from tests.support.movielens_files import write_ml1m, write_ml100k, write_ml_latest, write_recbole


def test_ml100k_latin1_titles_years_and_genre_flags(tmp_path):
    layout = detect_layout(write_ml100k(tmp_path / "ml-100k"))
    assert layout.name == "ml-100k"
    movies = {m.movie_id: m for m in parse_movies(layout)}
    assert movies[1].title == "Toy Story" and movies[1].year == 1995
    assert movies[1].genres == ["Animation", "Children", "Comedy"]
    assert movies[2].title == "Misérables, Les"  # latin-1 decoded, not mojibake
    assert movies[4].title == "unknown" and movies[4].year is None and movies[4].genres == []
    users = list(parse_users(layout))
    assert users[1].gender == "F" and users[1].age == 53 and users[1].occupation == "other"


def test_ml1m_double_colon_and_coded_users(tmp_path):
    layout = detect_layout(write_ml1m(tmp_path / "ml-1m"))
    assert layout.name == "ml-1m" and layout.ratings.delimiter == "::"
    movies = list(parse_movies(layout))
    assert movies[1].title == "Misérables, Les" and movies[1].genres == ["Drama", "Musical"]
    user = list(parse_users(layout))[0]
    assert (user.gender, user.age, user.occupation) == ("F", 1, "K-12 student")


def test_ml_latest_quoted_titles_and_links(tmp_path):
    layout = detect_layout(write_ml_latest(tmp_path / "ml-latest-small"))
    assert layout.name == "ml-latest" and layout.ratings.scale.step == 0.5
    movies = list(parse_movies(layout))
    assert movies[1].title == "American President, The" and movies[1].year == 1995
    assert movies[2].year is None and movies[2].genres == []
    assert list(parse_links(layout)) == [
        (1, "tt0114709", 862),
        (2, "tt0112346", 9087),
        (3, "tt0105946", None),
    ]


def test_recbole_items_users_and_credits(tmp_path):
    layout = detect_layout(write_recbole(tmp_path / "rb"))
    assert layout.name == "recbole-ml-100k"
    movies = list(parse_movies(layout))
    assert movies[1].year is None  # RecBole's "unkonwn" is a missing year, not a bad row
    credits = list(parse_credits(layout))
    assert [(c.role, c.external_id, c.ordering) for c in credits] == [
        ("director", "freebase:m.0lbj1", 1),
        ("actor", "freebase:m.0c0k1", 1),
        ("actor", "freebase:m.01h2jr", 2),
    ]


def test_unpacked_archive_subdirectory_is_found(tmp_path):
    write_ml1m(tmp_path / "download" / "ml-1m")
    assert detect_layout(tmp_path / "download").directory.name == "ml-1m"


def test_bad_catalogue_lines_become_rejects_with_line_numbers(tmp_path):
    d = write_ml_latest(tmp_path / "m")
    (d / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Comedy\nx,Bad,Drama\n2,Short line\n3,Future (2999),Drama\n"
    )
    parsed = list(parse_movies(detect_layout(d)))
    rejects = [p for p in parsed if isinstance(p, Reject)]
    assert [(r.line, r.reason) for r in rejects] == [
        (3, "movie_id 'x' is not a positive integer"),
        (4, "expected 3 fields, found 2"),
        (5, "year 2999 is not between 1870 and " + rejects[2].reason.rsplit(" ", 1)[1]),
    ]
    assert rejects[0].raw == "x,Bad,Drama"


@pytest.mark.parametrize("case", ["missing_dir", "unknown_layout", "missing_movies", "empty_ratings"])
def test_unusable_directories_raise_input_error(tmp_path, case):
    d = tmp_path / "d"
    if case != "missing_dir":
        d.mkdir()
    if case == "unknown_layout":
        (d / "notes.txt").write_text("hello")
    if case == "missing_movies":
        (d / "u.data").write_text("1\t1\t5\t880000000\n")
    if case == "empty_ratings":
        write_ml100k(d)
        (d / "u.data").write_text("")
    with pytest.raises(InputError):
        detect_layout(d)


def test_a_latin1_csv_dataset_is_read_as_latin1_and_a_bom_is_not_data(tmp_path):
    d = write_ml_latest(tmp_path / "ml-latest")
    (d / "movies.csv").write_bytes(b"\xef\xbb\xbfmovieId,title,genres\n1,Caf\xe9 (1995),Drama\n")
    layout = detect_layout(d)
    assert layout.encoding_of(d / "movies.csv") == "latin-1"
    assert layout.notes == ("movies.csv is not UTF-8 (byte 0xe9 at offset 29): read as latin-1",)
    assert [m.title for m in parse_movies(layout)] == ["Café"]


def test_text_over_its_bound_rejects_the_line(tmp_path):
    d = write_ml100k(tmp_path / "ml-100k")
    (d / "u.user").write_text("1|24|M|technician|857110000000000000\n2|53|F|" + "x" * 65 + "|94043\n")
    (d / "u.data").write_text("1\t1\t5\t880000000\n")
    reasons = [r.reason for r in parse_users(detect_layout(d)) if isinstance(r, Reject)]
    assert reasons == [
        "zip code is 18 characters long (at most 16)",
        "occupation is 65 characters long (at most 64)",
    ]
