"""Movies nobody has rated yet, scored from their content alone by a trained ``HybridArtifact``.

A new movie is featurised exactly as training featurised the catalogue (``features.movie_content``): the
same genre and numeric features (``features.genre_matrix``, ``features.numeric_features``), the MiniLM
embedding of ``features.movie_text(title)``, people slotted in billing order with those outside the
vocabulary skipped, all with the vocabularies and normalisation statistics saved with the model; a test
checks that a catalogue movie described this way gets exactly its catalogue content row. People are given
by name (matched case-insensitively against the names the model knows for that role) or by external id
(``imdb:nm…``, ``freebase:m.…``); people the model has no embedding for are reported and left out, as
training left them out. Genres must be the model's genres.

No pandas on this path: a request costs one MiniLM encode (or none: ``TEXT_VECTORS`` keeps recent ones)
and a few small matrix products, with every user's vector and the unit-length catalogue vectors
precomputed once per model by ``NewMovieScorer``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.features.vocab import (
    MAX_PEOPLE,
    ROLES,
    FeatureVocab,
    MovieContent,
    genre_matrix,
    movie_text,
    numeric_features,
)
from pipeline.models.hybrid.artifact import HybridArtifact

# Contract field -> role in the vocabulary.
PEOPLE_FIELDS = {"directors": "director", "actors": "actor", "writers": "writer"}


class UnknownGenre(InputError):
    """A genre the model was not trained with."""


@dataclass(frozen=True)
class NewMovie:
    """What the API accepts for a movie that is not in the catalogue."""

    title: str
    genres: Sequence[str] = ()
    directors: Sequence[str] = ()
    actors: Sequence[str] = ()
    writers: Sequence[str] = ()
    runtime: float | None = None  # minutes
    year: int | None = None


@dataclass
class PeopleMatch:
    """Per contract field (``directors``…): the people the model knows (as given) and those it ignored."""

    used: dict[str, list[str]] = field(default_factory=dict)
    ignored: dict[str, list[str]] = field(default_factory=dict)


class MovieFeaturizer:
    """Featurises new movies for one model's vocabulary; its lookup tables are built once."""

    def __init__(self, vocab: FeatureVocab) -> None:
        self.vocab = vocab
        self._genres = {g.lower(): g for g in vocab.genres}
        self._index = {role: vocab.person_index(role) for role in ROLES}  # external id -> feature index
        self._names = {role: vocab.person_names.get(role, {}) for role in ROLES}  # lower name -> external id

    def genres(self, genres: Sequence[str]) -> list[str]:
        """``genres`` spelled as the model spells them (case-insensitive); ``UnknownGenre`` for any other."""
        out, unknown = [], []
        for g in genres:
            name = self._genres.get(g.strip().lower())
            if name is None:
                unknown.append(g)
            elif name not in out:
                out.append(name)
        if unknown:
            raise UnknownGenre(
                f"unknown genre{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the model knows: {', '.join(self.vocab.genres)}"
            )
        return out

    def people(self, movie: NewMovie) -> tuple[dict[str, list[int]], PeopleMatch]:
        """Role -> feature indices of the people the model knows, in the order given; and what matched."""
        found: dict[str, list[int]] = {}
        match = PeopleMatch()
        for fld, role in PEOPLE_FIELDS.items():
            index, names = self._index[role], self._names[role]
            found[role], match.used[fld], match.ignored[fld] = [], [], []
            for given in getattr(movie, fld):
                key = given.strip()
                feature = index.get(key) or index.get(names.get(key.lower(), ""))
                if feature is None:
                    match.ignored[fld].append(given)
                elif feature not in found[role]:
                    found[role].append(feature)
                    match.used[fld].append(given)
        return found, match

    def content(self, movies: Sequence[NewMovie], text: np.ndarray) -> tuple[MovieContent, list[PeopleMatch]]:
        """Content rows for ``movies`` (``text``: their MiniLM vectors, row-aligned), as training builds them:
        the same genre and numeric features (``features.genre_matrix``/``numeric_features``), and people in
        billing order, the ones outside the vocabulary skipped, the first ``MAX_PEOPLE[role]`` kept."""
        people = {role: np.zeros((len(movies), MAX_PEOPLE[role]), np.int64) for role in ROLES}
        matches = []
        for k, movie in enumerate(movies):
            found, match = self.people(movie)
            matches.append(match)
            for role, features in found.items():
                kept = features[: MAX_PEOPLE[role]]
                people[role][k, : len(kept)] = kept
        year = np.array([np.nan if m.year is None else m.year for m in movies], np.float64)
        runtime = np.array([np.nan if m.runtime is None else m.runtime for m in movies], np.float64)
        content = MovieContent(
            genre_matrix(self.vocab, [self.genres(m.genres) for m in movies]),
            np.asarray(text, np.float32),
            people,
            numeric_features(self.vocab, year, runtime),
        )
        return content, matches


class TextVectors:
    """MiniLM vectors of texts, the ``size`` most recently used kept: one new movie is usually scored for
    many users, and the encoder is the expensive step. Texts not kept are encoded in one call."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str], device: str = "cpu") -> np.ndarray:
        from pipeline.features.text_embeddings import DIM, encode

        with self._lock:
            found = {t: self._kept[t] for t in texts if t in self._kept}
            for t in found:
                self._kept.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found.update(zip(missing, encode(missing, device=device)))
            with self._lock:
                for t in missing:
                    self._kept[t] = found[t]
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, DIM), np.float32)


TEXT_VECTORS = TextVectors()


def embed_titles(movies: Sequence[NewMovie], device: str = "cpu") -> np.ndarray:
    """MiniLM vectors of the movies' text (``features.movie_text``), through ``TEXT_VECTORS``."""
    return TEXT_VECTORS([movie_text(m.title) for m in movies], device=device)


class NewMovieScorer:
    """One model's scoring of new movies and its movie-to-movie similarity, with its vectors precomputed."""

    def __init__(self, model: HybridArtifact) -> None:
        self.model = model
        self.featurizer = MovieFeaturizer(model.vocab)
        with torch.no_grad():
            self._users, self._user_vectors = model.user_vectors(np.arange(len(model.user_map)))
            vectors, _ = model.catalogue_vectors()
            self._unit = torch.nn.functional.normalize(vectors.float(), dim=1)

    def content(
        self, movies: Sequence[NewMovie], device: str = "cpu"
    ) -> tuple[MovieContent, list[PeopleMatch]]:
        """Featurise ``movies`` (genres are checked before the encoder runs)."""
        for movie in movies:
            self.featurizer.genres(movie.genres)
        return self.featurizer.content(movies, embed_titles(movies, device))

    @torch.no_grad()
    def predict(self, user_idx: np.ndarray, content: MovieContent) -> np.ndarray:
        """Predicted rating of content row k by model user ``user_idx[k]`` (network, content path)."""
        vec, bias = self.model.content_vectors(content)
        index = torch.as_tensor(np.asarray(user_idx, np.int64), device=self.model.device)
        ratings = self.model.net.rating(self._users[index], self._user_vectors[index], vec, bias)
        return np.clip(ratings.float().cpu().numpy(), *self.model.rating_range)

    @torch.no_grad()
    def top_users(self, content: MovieContent, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` users with the highest predicted rating of the single movie in ``content``."""
        vec, bias = self.model.content_vectors(content)
        ratings = self.model.net.rating(
            self._users,
            self._user_vectors,
            vec.expand_as(self._user_vectors),
            bias.expand(len(self._users), -1),
        ).float()
        k = min(k, len(ratings))
        values, index = torch.topk(ratings, k)
        return index.cpu().numpy(), np.clip(values.cpu().numpy(), *self.model.rating_range)

    @torch.no_grad()
    def similar(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` movies whose model vectors are closest (cosine) to movie ``item_idx``'s, itself left
        out."""
        sims = self._unit @ self._unit[item_idx]
        sims[item_idx] = -torch.inf
        k = min(k, len(sims) - 1)
        values, index = torch.topk(sims, k)
        return index.cpu().numpy(), values.cpu().numpy()
