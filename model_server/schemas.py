"""Request and response bodies of the REST API, with the bounds that keep bad input a 4xx.

Every bound is here, in one place: ids fit PostgreSQL's ``integer``, lists and strings have a maximum
length, runtime and year have plausible ranges, and unknown fields are refused (a typo such as
``director`` for ``directors`` is an error, not a silently ignored field). The examples show in ``/docs``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pipeline.models.group import Strategy

MAX_ID = 2**31 - 1  # PostgreSQL integer
MAX_LIMIT = 1000  # rows any list endpoint returns at most
DEFAULT_LIMIT = 10
MAX_MOVIE_IDS = 1000  # movies per POST /recommendations/existing
MAX_PEOPLE = 50  # names per role in a new movie
MAX_GENRES = 30
MAX_TITLE = 300
MAX_NAME = 200
MIN_YEAR = 1870  # before any film
MAX_YEAR = datetime.now(UTC).year + 10
MAX_RUNTIME = 1440  # minutes: a day
MAX_BODY_BYTES = 64 * 1024  # any request body; larger is a 413

Source = Literal["model", "fallback_popularity"]


# Text a person could have typed: no NUL, at least one character that is not white space. The schema publishes
# this pattern and the server checks the same one (with Python's ``re``, as schema-driven generators read it),
# so every string the schema allows is accepted and every other is a 422. A lone surrogate (``"\\ud800"`` in
# JSON) is no Unicode text: pydantic refuses it before this check (422 too).
_SPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # str.isspace(), spelled out
TEXT_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"  # (regex engines disagree on what \s covers)
_TEXT = re.compile(TEXT_PATTERN)


def _clean_text(value: str) -> str:
    """``value`` trimmed, when it matches ``TEXT_PATTERN``; the error says which rule it breaks."""
    if _TEXT.fullmatch(value) is None:
        raise ValueError("must not contain NUL characters" if "\x00" in value else "must not be blank")
    return value.strip()


UserId = Annotated[int, Field(ge=1, le=MAX_ID, description="a user id of the dataset", examples=[1])]
MovieId = Annotated[int, Field(ge=1, le=MAX_ID, description="a movie id of the catalogue", examples=[50])]
_PATTERN = {"pattern": TEXT_PATTERN}  # in the schema; checked by _clean_text
Title = Annotated[
    str, Field(min_length=1, max_length=MAX_TITLE, json_schema_extra=_PATTERN), AfterValidator(_clean_text)
]
Name = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME, json_schema_extra=_PATTERN), AfterValidator(_clean_text)
]
Genre = Annotated[
    str, Field(min_length=1, max_length=64, json_schema_extra=_PATTERN), AfterValidator(_clean_text)
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what is wrong, in one line; ``errors`` lists each invalid field (422)."""

    detail: str = Field(examples=["user 999999 is not known to model v3 (no ratings up to its cut-off)"])
    errors: list[dict[str, object]] | None = None


# --- GET /users/{user_id}/recommendations -------------------------------------------------------------------


class BecauseMovie(BaseModel):
    movie_id: int = Field(examples=[608])
    title: str = Field(examples=["Fargo"])


class SharedAttributes(BaseModel):
    genres: list[str] = Field(default=[], examples=[["Crime", "Thriller"]])
    directors: list[str] = Field(default=[], examples=[["Joel Coen"]])
    actors: list[str] = Field(default=[], examples=[["Frances McDormand"]])


class Explanation(BaseModel):
    """Why the movie is listed (``pipeline.batch.explain``), stored with the row by the batch."""

    because: list[BecauseMovie] = Field(
        description="the user's rated movies that contributed most to the movie's score, best first (empty: "
        "the fallback list, or a batch published before explanations)"
    )
    shared: SharedAttributes = Field(description="what the movie has in common with those movies")
    reason: str = Field(
        description="one sentence",
        examples=["Because you rated Fargo and Blood Simple highly; same director: Joel Coen"],
    )


class RecommendedMovie(BaseModel):
    rank: int = Field(examples=[1])
    movie_id: int = Field(examples=[318])
    title: str = Field(examples=["Schindler's List"])
    year: int | None = Field(examples=[1993])
    genres: list[str] = Field(examples=[["Drama", "War"]])
    score: float = Field(
        description="ranking score: model lists a per-user blend score, the fallback list the "
        "share of users who rated the movie; higher is better",
        examples=[2.41],
    )


class ExplainedMovie(RecommendedMovie):
    explanation: Explanation


class UserRecommendations(BaseModel):
    user_id: int = Field(examples=[1])
    source: Source = Field(
        description="model: the champion's list; fallback_popularity: most-rated movies (a "
        "user without a list of the model's, or unknown)",
        examples=["model"],
    )
    known_user: bool = Field(
        description="whether the published batch has a list for this user", examples=[True]
    )
    model_version: int = Field(
        description="registered version of movierec-hybrid that scored the batch", examples=[3]
    )
    batch_id: int = Field(examples=[12])
    data_cutoff: datetime | None = Field(
        description="ratings after this instant were not seen (null: all)", examples=["1998-04-01T00:00:00Z"]
    )
    generated_at: datetime = Field(examples=["2026-11-21T22:00:00Z"])
    items: list[ExplainedMovie]


MAX_EXCLUDE = 100  # movies one GET /users/{user_id}/recommendations may leave out (exclude=)


# --- POST /users/{user_id}/dismissals -----------------------------------------------------------------------


class DismissalRequest(_Request):
    movie_id: MovieId = Field(description="the movie the user is not interested in")


class Dismissal(BaseModel):
    user_id: int = Field(examples=[1])
    movie_id: int = Field(examples=[50])
    dismissed_at: datetime = Field(
        description="when the dismissal was first recorded", examples=["2026-11-24T09:12:00Z"]
    )
    created: bool = Field(
        description="true: recorded by this request (201); false: it was recorded already (200)",
        examples=[True],
    )


# --- POST /recommendations/existing -------------------------------------------------------------------------


class ExistingMoviesRequest(_Request):
    user_id: UserId
    movie_ids: list[MovieId] = Field(min_length=1, max_length=MAX_MOVIE_IDS, examples=[[50, 181, 1]])

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": 1, "movie_ids": [50, 181, 1]}]}
    )


class PredictedRating(BaseModel):
    movie_id: int = Field(examples=[50])
    title: str = Field(examples=["Star Wars"])
    predicted_rating: float = Field(
        description="the published rating blend, on the dataset's scale", examples=[4.62]
    )
    rated: bool = Field(description="the user had rated it by the model's cut-off", examples=[True])


class ExistingMoviesResponse(BaseModel):
    user_id: int = Field(examples=[1])
    model_version: int = Field(examples=[3])
    predictions: list[PredictedRating]


# --- POST /predict/new-movie --------------------------------------------------------------------------------


class NewMovieRequest(_Request):
    title: Title = Field(examples=["The Quiet Orbit"])
    genres: list[Genre] = Field(
        min_length=1,
        max_length=MAX_GENRES,
        description="the dataset's genres (case-insensitive); unknown ones are a 422",
        examples=[["Sci-Fi", "Drama"]],
    )
    directors: list[Name] = Field(
        default=[],
        max_length=MAX_PEOPLE,
        description="names, or external ids such as imdb:nm0000229; people the model "
        "does not know are ignored (and listed as such in the answer)",
    )
    actors: list[Name] = Field(default=[], max_length=MAX_PEOPLE)
    writers: list[Name] = Field(default=[], max_length=MAX_PEOPLE)
    runtime: int | None = Field(default=None, ge=1, le=MAX_RUNTIME, description="minutes", examples=[118])
    year: int | None = Field(default=None, ge=MIN_YEAR, le=MAX_YEAR, examples=[1997])
    user_id: UserId | None = Field(
        default=None,
        description="with it: that user's predicted rating; without: "
        "the users most likely to enjoy the movie",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "The Quiet Orbit",
                    "genres": ["Sci-Fi", "Drama"],
                    "directors": ["Robert Zemeckis"],
                    "actors": ["Jodie Foster"],
                    "writers": [],
                    "runtime": 118,
                    "year": 1997,
                    "user_id": 1,
                },
                {"title": "Midnight Heist", "genres": ["Crime", "Thriller"], "runtime": 104, "year": 1996},
            ]
        },
    )


class PeopleUsed(BaseModel):
    used: dict[str, list[str]] = Field(
        description="per role, the people the model knows and scored with",
        examples=[{"directors": ["Robert Zemeckis"], "actors": [], "writers": []}],
    )
    ignored: dict[str, list[str]] = Field(
        description="per role, the people the model has no embedding for",
        examples=[{"directors": [], "actors": ["Jodie Foster"], "writers": []}],
    )


class UserScore(BaseModel):
    user_id: int = Field(examples=[405])
    predicted_rating: float = Field(examples=[4.71])


class NewMovieResponse(BaseModel):
    model_version: int = Field(examples=[3])
    title: str = Field(examples=["The Quiet Orbit"])
    genres: list[str] = Field(description="as the model spells them", examples=[["Drama", "Sci-Fi"]])
    people: PeopleUsed
    user_id: int | None = Field(default=None, examples=[1])
    predicted_rating: float | None = Field(
        default=None, description="with user_id: that user's predicted rating", examples=[3.87]
    )
    top_users: list[UserScore] | None = Field(
        default=None, description="without user_id: the users with the highest predicted rating, best first"
    )


# --- GET /movies/{movie_id}/similar -------------------------------------------------------------------------


class SimilarMovie(BaseModel):
    movie_id: int = Field(examples=[172])
    title: str = Field(examples=["Empire Strikes Back, The"])
    year: int | None = Field(examples=[1980])
    genres: list[str] = Field(examples=[["Action", "Adventure", "Sci-Fi", "War"]])
    similarity: float = Field(description="cosine of the two movies' model vectors", examples=[0.93])


class SimilarMovies(BaseModel):
    movie_id: int = Field(examples=[50])
    title: str = Field(examples=["Star Wars"])
    model_version: int = Field(examples=[3])
    items: list[SimilarMovie]


# --- POST /groups/recommendations ---------------------------------------------------------------------------

MIN_GROUP, MAX_GROUP = 2, 20  # members of a group
MAX_GROUP_LIMIT = 100  # movies in a group's list


def _distinct(ids: list[int]) -> list[int]:
    repeated = sorted({u for u in ids if ids.count(u) > 1})
    if repeated:
        raise ValueError(f"each member once; repeated: {', '.join(map(str, repeated))}")
    return ids


class GroupRequest(_Request):
    user_ids: Annotated[
        list[UserId],
        Field(
            min_length=MIN_GROUP,
            max_length=MAX_GROUP,
            description="the members, each once",
            json_schema_extra={"uniqueItems": True},
        ),
        AfterValidator(_distinct),
    ]
    strategy: Strategy = Field(
        default="average",
        description="average: the mean of the members' standardised scores; least_misery: their minimum "
        "(the movie the least keen member likes most)",
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_GROUP_LIMIT, description="how many movies")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_ids": [1, 7], "strategy": "average", "limit": 10}]},
    )


class MemberScore(BaseModel):
    user_id: int = Field(examples=[7])
    score: float = Field(
        description="the member's ranking score of the movie, standardised over the group's candidates "
        "(the movies no member has rated)",
        examples=[1.84],
    )
    rank: int = Field(description="where the movie stands in the member's own ranking of those", examples=[3])
    explanation: Explanation = Field(
        description="which of this member's rated movies drove the movie up for them, by the batch's "
        "explanation terms (every rating of the member counts; none is said to be rated highly)"
    )


class GroupMovie(BaseModel):
    rank: int = Field(examples=[1])
    movie_id: int = Field(examples=[318])
    title: str = Field(examples=["Schindler's List"])
    year: int | None = Field(examples=[1993])
    genres: list[str] = Field(examples=[["Drama", "War"]])
    score: float = Field(
        description="the group score: the strategy over the members' scores", examples=[1.52]
    )
    members: list[MemberScore] = Field(description="each member's score and rank, in the request's order")


class GroupRecommendations(BaseModel):
    user_ids: list[int] = Field(examples=[[1, 7]])
    strategy: Strategy = Field(examples=["average"])
    model_version: int = Field(examples=[3])
    candidates: int = Field(description="movies the model knows that no member has rated", examples=[1378])
    items: list[GroupMovie]


# --- POST /recommendations/for-ratings ---------------------------------------------------------------------

MAX_GIVEN_RATINGS = 1000  # (movie, rating) pairs one fold-in takes
# The schema's static rating bounds: every MovieLens scale lies within them. The served model's own range
# (1-5 on ML-100K) replaces them in the published schema (``model_server.app``), and the route checks it.
MIN_RATING, MAX_RATING = 0.5, 5.0


class GivenRating(_Request):
    movie_id: MovieId
    rating: float = Field(
        ge=MIN_RATING,
        le=MAX_RATING,
        description="the user's rating, on the model's rating scale",
        examples=[5],
    )


class ForRatingsRequest(_Request):
    ratings: list[GivenRating] = Field(
        min_length=1,
        max_length=MAX_GIVEN_RATINGS,
        description="the new user's ratings, oldest first (the blend's sequence model reads their order); a "
        "movie given twice counts with its last rating (as ingestion keeps the later rating) at its first "
        "place, movies the model does not know are ignored (and listed as such)",
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_GROUP_LIMIT, description="how many movies")
    exclude: list[MovieId] = Field(
        default=[],
        max_length=MAX_EXCLUDE,
        description="movies to leave out of the answer besides the rated ones",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "ratings": [
                        {"movie_id": 50, "rating": 5},
                        {"movie_id": 181, "rating": 4},
                        {"movie_id": 100, "rating": 5},
                        {"movie_id": 258, "rating": 2},
                        {"movie_id": 1, "rating": 4},
                    ],
                    "limit": 10,
                }
            ]
        },
    )


class ForRatingsRecommendations(BaseModel):
    model_version: int = Field(examples=[3])
    used: int = Field(description="distinct movies of the request the model scored with", examples=[5])
    ignored: list[int] = Field(
        description="movie ids of the request the model does not know (left out of the fold-in)",
        examples=[[]],
    )
    duplicates: list[int] = Field(
        description="movie ids given more than once (their last rating counted)", examples=[[]]
    )
    items: list[RecommendedMovie] = Field(
        description="best first; never a rated or excluded movie. score: the published ranking blend for "
        "the folded-in user"
    )


# --- GET /health, GET /ping ---------------------------------------------------------------------------------


class DatabaseHealth(BaseModel):
    status: Literal["ok", "unavailable"] = Field(examples=["ok"])
    detail: str | None = Field(default=None, examples=[None])
    role: str | None = Field(
        default=None, description="the role the server is connected as", examples=["movierec_reader"]
    )
    batch_id: int | None = Field(default=None, description="the published batch", examples=[12])
    batch_model_version: int | None = Field(default=None, examples=[3])
    generated_at: datetime | None = None
    data_cutoff: datetime | None = None


class ModelHealth(BaseModel):
    status: Literal["loaded", "not_loaded"] = Field(examples=["loaded"])
    version: int | None = Field(default=None, description="movierec-hybrid version served", examples=[3])
    loaded_at: datetime | None = None
    last_check: datetime | None = Field(default=None, description="last time the registry was asked")
    last_error: str | None = Field(default=None, description="why the last check or load failed, if it did")
    users: int | None = Field(default=None, examples=[943])
    movies: int | None = Field(default=None, examples=[1682])


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok: database reachable with a published batch and a "
        "model loaded (HTTP 200); otherwise 503",
        examples=["ok"],
    )
    database: DatabaseHealth
    model: ModelHealth


class Pong(BaseModel):
    ping: Literal["pong"] = "pong"
