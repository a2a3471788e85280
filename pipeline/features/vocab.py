"""Featurisation of movies and users, pure (no SQL): vocabularies, content arrays, user features.

The vocabularies and normalisation statistics (``FeatureVocab``) are saved with the model, so the API
featurises a movie nobody has rated yet exactly as training featurised the catalogue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ROLES = ("director", "writer", "actor")
MAX_PEOPLE = {"director": 3, "writer": 3, "actor": 8}  # billing order: the first few carry the signal


@dataclass
class FeatureVocab:
    """Everything needed to featurise a movie or user the same way later."""

    genres: list[str]
    persons: dict[str, list[str]]  # role -> external ids; feature index = position + 1 (0 pads)
    person_names: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> lower name -> external id
    occupations: list[str] = field(default_factory=list)
    year_mean: float = 1990.0
    year_std: float = 15.0
    runtime_mean: float = 105.0
    runtime_std: float = 25.0
    age_mean: float = 32.0
    age_std: float = 12.0
    text_model: str = "all-MiniLM-L6-v2"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureVocab:
        return cls(**data)

    def person_index(self, role: str) -> dict[str, int]:
        return {pid: k + 1 for k, pid in enumerate(self.persons.get(role, []))}


@dataclass
class MovieContent:
    """Content of every catalogue movie, row-aligned with the item IdMap."""

    genres: np.ndarray  # (n, n_genres) multi-hot
    text: np.ndarray  # (n, 384) unit-length sentence embeddings
    people: dict[str, np.ndarray]  # role -> (n, MAX_PEOPLE[role]) person indices, 0 = none
    numeric: np.ndarray  # (n, 4): year z, year missing, runtime z, runtime missing

    def __len__(self) -> int:
        return len(self.genres)

    def rows(self, index: np.ndarray) -> MovieContent:
        return MovieContent(
            self.genres[index],
            self.text[index],
            {r: p[index] for r, p in self.people.items()},
            self.numeric[index],
        )


def movie_text(title: str, overview: str | None = None) -> str:
    """The text that is embedded for a movie: its title, and its overview where a source has one."""
    return f"{title}. {overview}" if overview else title


def build_vocab(
    movies: pd.DataFrame, credits: pd.DataFrame, users: pd.DataFrame, min_person_count: int
) -> FeatureVocab:
    genres = sorted({g for gs in movies["genres"] for g in gs})
    persons: dict[str, list[str]] = {}
    names: dict[str, dict[str, str]] = {}
    for role in ROLES:
        c = credits[credits["role"] == role]
        counts = c.groupby("external_id")["movie_id"].nunique()
        kept = sorted(counts[counts >= min_person_count].index)
        persons[role] = kept
        named = c[c["external_id"].isin(kept) & c["name"].notna()].drop_duplicates("external_id")
        names[role] = {str(n).lower(): e for n, e in zip(named["name"], named["external_id"])}
    years = movies["year"].dropna().astype(float)
    runtimes = movies["runtime_minutes"].dropna().astype(float)
    ages = users["age"].dropna().astype(float) if len(users) else pd.Series(dtype=float)
    occupations = sorted(users["occupation"].dropna().unique().tolist()) if len(users) else []
    return FeatureVocab(
        genres=genres,
        persons=persons,
        person_names=names,
        occupations=occupations,
        year_mean=float(years.mean()) if len(years) else 1990.0,
        year_std=float(years.std() or 15.0) if len(years) > 1 else 15.0,
        runtime_mean=float(runtimes.mean()) if len(runtimes) else 105.0,
        runtime_std=float(runtimes.std() or 25.0) if len(runtimes) > 1 else 25.0,
        age_mean=float(ages.mean()) if len(ages) else 32.0,
        age_std=float(ages.std() or 12.0) if len(ages) > 1 else 12.0,
    )


def movie_content(
    vocab: FeatureVocab, movies: pd.DataFrame, credits: pd.DataFrame, text: np.ndarray
) -> MovieContent:
    """Featurise ``movies`` (columns movie_id, genres, year, runtime_minutes; row order kept).

    ``credits`` has movie_id, external_id, role, ordering; ``text`` is row-aligned with ``movies``.
    """
    n = len(movies)
    row_of = {mid: k for k, mid in enumerate(movies["movie_id"].tolist())}
    people = {}
    for role in ROLES:
        index = vocab.person_index(role)
        mat = np.zeros((n, MAX_PEOPLE[role]), np.int64)
        c = credits[credits["role"] == role].sort_values(["movie_id", "ordering"])
        c = c[c["external_id"].isin(index.keys()) & c["movie_id"].isin(row_of.keys())]
        slot = c.groupby("movie_id").cumcount().to_numpy()
        keep = slot < MAX_PEOPLE[role]
        rows = c["movie_id"].map(row_of).to_numpy()[keep]
        mat[rows, slot[keep]] = c["external_id"].map(index).to_numpy()[keep]
        people[role] = mat
    return MovieContent(
        genre_matrix(vocab, movies["genres"]),
        np.asarray(text, np.float32),
        people,
        numeric_features(
            vocab, movies["year"].astype(float).to_numpy(), movies["runtime_minutes"].astype(float).to_numpy()
        ),
    )


def genre_matrix(vocab: FeatureVocab, genre_lists: Iterable[Iterable[str]]) -> np.ndarray:
    """Multi-hot rows over ``vocab.genres``; genres outside the vocabulary are left out."""
    genre_col = {g: k for k, g in enumerate(vocab.genres)}
    rows = list(genre_lists)
    out = np.zeros((len(rows), len(vocab.genres)), np.float32)
    for k, gs in enumerate(rows):
        for g in gs:
            if g in genre_col:
                out[k, genre_col[g]] = 1.0
    return out


def numeric_features(vocab: FeatureVocab, year: np.ndarray, runtime: np.ndarray) -> np.ndarray:
    """(n, 4): year z-score, year missing, runtime z-score, runtime missing (NaN = missing)."""
    year, runtime = np.asarray(year, np.float64), np.asarray(runtime, np.float64)
    return np.stack(
        [
            np.nan_to_num((year - vocab.year_mean) / vocab.year_std),
            np.isnan(year).astype(np.float64),
            np.nan_to_num((runtime - vocab.runtime_mean) / vocab.runtime_std),
            np.isnan(runtime).astype(np.float64),
        ],
        axis=1,
    ).astype(np.float32)


def user_features(vocab: FeatureVocab, users: pd.DataFrame) -> np.ndarray:
    """Gender one-hot, age z-score with a missing flag, occupation one-hot; zeros where unknown."""
    occ = {o: k for k, o in enumerate(vocab.occupations)}
    out = np.zeros((len(users), 4 + len(occ)), np.float32)
    gender = users["gender"].to_numpy()
    out[:, 0] = gender == "M"
    out[:, 1] = gender == "F"
    age = users["age"].astype(float).to_numpy()
    out[:, 2] = np.nan_to_num((age - vocab.age_mean) / vocab.age_std)
    out[:, 3] = np.isnan(age)
    for k, o in enumerate(users["occupation"].to_numpy()):
        if o in occ:
            out[k, 4 + occ[o]] = 1.0
    return out
