"""Item cold start: can the content path rank movies nobody rated?

Protocol: 10% of the rated movies (seeded) are held out entirely — every rating of them leaves the train
set. The model is trained on the rest; then, for each user with a held-out rating >= 4, the held-out
movies are ranked by the model's content-only score and by genre popularity (a movie scores the mean
train popularity of its genres). NDCG@10 and Recall@10 over those candidates are compared."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.defaults import RELEVANCE_THRESHOLD
from pipeline.evaluation.metrics import hits_at_k, ranking_metrics_from_hits
from pipeline.features.interactions import Interactions
from pipeline.features.vocab import MovieContent
from pipeline.models.topn import top_k


@dataclass(frozen=True)
class ColdStartSplit:
    train: Interactions
    test: Interactions
    cold_items: np.ndarray  # dense item indices held out


def cold_start_split(data: Interactions, fraction: float = 0.1, seed: int = 42) -> ColdStartSplit:
    rated = np.unique(data.items)
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(rated, size=max(1, int(round(fraction * len(rated)))), replace=False))
    is_cold = np.isin(data.items, cold)
    return ColdStartSplit(data.subset(~is_cold), data.subset(is_cold), cold)


def genre_popularity(train: Interactions, genres: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mean train popularity (ratings per genre) of each movie's genres; 0 for a movie without genres."""
    counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
    per_genre = counts @ genres  # ratings of movies in each genre
    g = genres[items]
    return (g @ per_genre) / np.maximum(g.sum(1), 1.0)


def rank_cold_items(scores: np.ndarray, split: ColdStartSplit, k: int = 10) -> dict[str, float]:
    """Metrics of ranking the cold movies for each user with a relevant held-out rating.

    ``scores`` is (n_users, len(split.cold_items)).
    """
    test = split.test
    col = {item: c for c, item in enumerate(split.cold_items.tolist())}
    liked = test.ratings >= RELEVANCE_THRESHOLD
    users = np.unique(test.users[liked])
    row = {u: r for r, u in enumerate(users.tolist())}
    relevant = np.zeros((len(users), len(split.cold_items)), bool)
    relevant[[row[u] for u in test.users[liked].tolist()], [col[i] for i in test.items[liked].tolist()]] = (
        True
    )
    top = top_k(np.asarray(scores, np.float64)[users], k)[0]
    metrics = ranking_metrics_from_hits(hits_at_k(top, relevant), relevant.sum(1), k)
    return {
        f"ndcg@{k}": float(np.mean(metrics["ndcg"])),
        f"recall@{k}": float(np.mean(metrics["recall"])),
        "users": float(len(users)),
        "cold_items": float(len(split.cold_items)),
    }


def content_scores(model: object, movies: MovieContent, split: ColdStartSplit) -> np.ndarray:
    """The trained model's content-only ranking scores of the cold movies for every user."""
    vectors = model.content_vectors(movies.rows(split.cold_items))  # type: ignore[attr-defined]
    return model.rank_index(np.arange(split.train.n_users), vectors)  # type: ignore[attr-defined]
