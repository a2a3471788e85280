"""Small files in GroupLens' (and RecBole's) own formats, written by tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.ingest.layouts import ML100K_GENRES

T0 = 880_000_000  # 1997-11-20
CHILDRENS = "Children's"


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def write_ml100k(d: Path, ratings: list[str] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{_flags('Animation', CHILDRENS, 'Comedy')}",
        f"2|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/x|{_flags('Drama', 'Musical')}",
        f"3|Usual Suspects, The (1995)|14-Aug-1995||http://us.imdb.com/x|{_flags('Crime', 'Thriller')}",
        f"4|unknown||||{_flags('unknown')}",
    ]
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    if ratings is None:
        ratings = [
            f"1\t1\t5\t{T0}",
            f"1\t2\t3\t{T0 + 60}",
            f"2\t1\t4\t{T0 + 120}",
            f"2\t3\t2\t{T0 + 180}",
            f"3\t4\t1\t{T0 + 240}",
        ]
    (d / "u.data").write_text("\n".join(ratings) + "\n")
    return d


def write_ml1m(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Misérables, Les (1995)::Drama|Musical\n".encode(
            "latin-1"
        )
    )
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (d / "ratings.dat").write_text(f"1::1::5::{T0}\n1::2::3::{T0 + 1}\n2::2::4::{T0 + 2}\n")
    return d


def write_ml_latest(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Babylon 5,(no genres listed)\n",
        encoding="utf-8",
    )
    (d / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n2,0112346,9087\n3,0105946,\n")
    (d / "ratings.csv").write_text(
        f"userId,movieId,rating,timestamp\n1,1,4.0,{T0}\n1,2,3.5,{T0 + 1}\n7,3,0.5,{T0 + 2}\n"
    )
    return d


def write_recbole(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "ml-100k.inter").write_text(
        f"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t{T0}\n2\t2\t3\t{T0 + 5}\n"
    )
    (d / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "2\tunknown\tunkonwn\tunknown\n",
        encoding="utf-8",
    )
    (d / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"
    )
    (d / "ml-100k.link").write_text("item_id:token\tentity_id:token\n1\tm.0dyb1\n")
    (d / "ml-100k.kg").write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        "m.0dyb1\tfilm.film.directed_by\tm.0lbj1\n"
        "m.0dyb1\tfilm.film.actor\tm.0c0k1\nm.0dyb1\tfilm.film.actor\tm.01h2jr\n"
        "m.0dyb1\tfilm.film.genre\tm.0hcr\n"
    )
    return d


def zip_directory(d: Path, archive: Path) -> Path:
    """``d`` as GroupLens ships a dataset: one zip holding the folder ``d.name/`` and its files."""
    import zipfile

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(d.iterdir()):
            zf.write(path, f"{d.name}/{path.name}")
    return archive


def rewrite(path: Path, change: Callable[[bytes], bytes]) -> Path:
    """Replace ``path``'s bytes by ``change(bytes)``: how a test corrupts one file of a dataset."""
    path.write_bytes(change(path.read_bytes()))
    return path
