"""Offline evaluation: every model on the same splits, under a fixed protocol so results compare.

Protocols (``PROTOCOLS`` holds the same text, and ``EvaluationReport.to_dict`` carries it):

* ``random``: ``random_split(data, 0.2, seed=42)`` (see ``pipeline.splits``); rating prediction, RMSE and MAE
  over every test rating. Models that cannot predict ratings (``predict`` all NaN) get no rating metrics.
* ``temporal``: ``temporal_split(data, 0.2)``, each user's latest 20% held out; top-k ranking. A user's
  candidates are all items they did not rate in train (train items are masked with -inf, whatever the model
  scores them); relevant items are the user's held-out ratings >= 4; users without one are skipped. Metrics
  at k (``pipeline.metrics``): NDCG, Recall, Precision, MRR, HR averaged over evaluated users, catalog
  coverage over all their top-k lists, and ``users``, the number evaluated. Ties in scores are broken
  by the lower item index, so a model that scores everything equally still gives a deterministic list.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table

from pipeline.baselines import Recommender
from pipeline.interactions import Interactions
from pipeline.metrics import catalog_coverage, hits_at_k, mae, ranking_metrics_from_hits, rmse
from pipeline.ranking import mask_rows
from pipeline.splits import random_split, temporal_split

__all__ = [
    "PROTOCOLS", "RELEVANCE_THRESHOLD", "SPLIT_SEED", "TEST_FRACTION", "EvaluationReport", "ModelFactory",
    "evaluate_model", "make_split", "run_evaluation", "top_k", "top_k_for_users",
]

SPLIT_SEED = 42
TEST_FRACTION = 0.2
RELEVANCE_THRESHOLD = 4.0
BATCH_USERS = 256

PROTOCOLS: Mapping[str, str] = {
    "random": (f"Random {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split of ratings: "
               f"perm = numpy.random.default_rng({SPLIT_SEED}).permutation(n_ratings), the first "
               f"round({TEST_FRACTION} * n_ratings) positions are test. Rating prediction: RMSE and MAE over "
               "all test ratings; models that cannot predict ratings are skipped."),
    "temporal": (f"Per user, ratings sorted by timestamp, ties by a fixed hash of (user, item, seed 42); "
                 f"the last round({TEST_FRACTION} * n) "
                 "are test, at least 1 and at most n-1 for users with n >= 2 ratings, none for n = 1. "
                 "Ranking: candidates are all items the user has not rated in train; relevant = test "
                 f"ratings >= {RELEVANCE_THRESHOLD:g}; users without a relevant test item are skipped. "
                 "NDCG@k (binary gains, log2 discount, ideal DCG over min(|relevant|, k)), Recall@k "
                 "(hits/|relevant|), Precision@k (hits/k), MRR@k, HR@k, averaged over users; coverage@k = "
                 "distinct items in all top-k lists / n_items. Score ties go to the lower item index."),
}

ModelFactory = Callable[[Interactions, str], Recommender]
"""Receives the train split and the protocol name, returns a fitted model."""


def make_split(data: Interactions, protocol: str) -> tuple[Interactions, Interactions]:
    """The protocol's ``(train, test)`` split of ``data``."""
    if protocol == "random":
        return random_split(data, TEST_FRACTION, seed=SPLIT_SEED)
    if protocol == "temporal":
        return temporal_split(data, TEST_FRACTION)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Item indices of each row's ``k`` highest scores, best first, ties to the lower index.

    Entries whose score is -inf (masked) are returned as -1, so a row with fewer than ``k`` finite scores
    ends in padding. NaN scores are rejected: they would sort arbitrarily.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError("scores must be 2-D (users x items)")
    if k < 1:
        raise ValueError("k must be >= 1")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_rows, n_items = scores.shape
    k_eff = min(k, n_items)
    out = np.full((n_rows, k), -1, np.int64)
    if n_rows == 0 or n_items == 0:
        return out
    # Only the items tied with or above each row's k-th largest score can make the list: a partial
    # partition finds that threshold, then those few candidates are sorted exactly (score desc, index asc).
    kth = np.partition(scores, n_items - k_eff, axis=1)[:, n_items - k_eff]
    rows, cols = np.nonzero(scores >= kth[:, None])
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k_eff
    out[rows[keep], rank[keep]] = cols[keep]
    filled = out[:, :k_eff]
    out[:, :k_eff] = np.where(np.isneginf(np.take_along_axis(scores, filled, axis=1)), -1, filled)
    return out


def _score_batch(model: Recommender, users: np.ndarray, rated: sp.csr_matrix) -> np.ndarray:
    scores = np.array(model.score_users(users), dtype=np.float32)  # a copy: the model's array stays intact
    expected = (len(users), rated.shape[1])
    if scores.shape != expected:
        raise ValueError(f"{getattr(model, 'name', model)}.score_users returned {scores.shape}, "
                         f"expected {expected}")
    return mask_rows(scores, rated[users])


def top_k_for_users(model: Recommender, train: Interactions, users: np.ndarray, k: int = 10,
                    batch_size: int = BATCH_USERS) -> np.ndarray:
    """``(len(users), k)`` recommendations among items each user did not rate in ``train`` (-1 padding)."""
    users = np.asarray(users, np.int64)
    rated = train.matrix(binary=True)
    out = np.empty((len(users), k), np.int64)
    for lo in range(0, len(users), batch_size):
        batch = users[lo:lo + batch_size]
        out[lo:lo + len(batch)] = top_k(_score_batch(model, batch, rated), k)
    return out


def _rating_metrics(model: Recommender, test: Interactions) -> dict[str, float]:
    predicted = np.asarray(model.predict(test.users, test.items), np.float64)
    if predicted.shape != (len(test),):
        raise ValueError(f"predict returned shape {predicted.shape}, expected ({len(test)},)")
    nan = np.isnan(predicted)
    if nan.all():
        return {}  # a ranking-only model: nothing to report, not an error
    if nan.any():
        raise ValueError(f"{getattr(model, 'name', model)}.predict returned NaN for {int(nan.sum())} of "
                         f"{len(test)} ratings; a model predicts every rating or none")
    return {"rmse": rmse(predicted, test.ratings), "mae": mae(predicted, test.ratings),
            "ratings": float(len(test))}


def _ranking_metrics(model: Recommender, train: Interactions, test: Interactions, k: int,
                     batch_size: int, relevance_threshold: float) -> dict[str, float]:
    relevant_test = test.subset(test.ratings >= relevance_threshold)
    relevant = relevant_test.matrix(binary=True)
    relevant.sum_duplicates()
    relevant.data[:] = 1.0
    n_relevant = np.diff(relevant.indptr)
    users = np.flatnonzero(n_relevant > 0)
    rated = train.matrix(binary=True)
    per_user: dict[str, list[np.ndarray]] = {}
    recommended = np.zeros(train.n_items, bool)
    for lo in range(0, len(users), batch_size):
        batch = users[lo:lo + batch_size]
        lists = top_k(_score_batch(model, batch, rated), k)
        hits = hits_at_k(lists, relevant[batch].toarray().astype(bool))
        for name, values in ranking_metrics_from_hits(hits, n_relevant[batch], k).items():
            per_user.setdefault(name, []).append(values)
        recommended[lists[lists >= 0]] = True
    if len(users) == 0:
        raise ValueError("no user has a relevant test item; nothing to rank")
    result = {f"{name}@{k}": float(np.mean(np.concatenate(parts))) for name, parts in per_user.items()}
    result[f"coverage@{k}"] = catalog_coverage(np.flatnonzero(recommended), train.n_items)
    result["users"] = float(len(users))
    return result


def evaluate_model(model: Recommender, train: Interactions, test: Interactions, protocol: str, k: int = 10,
                   *, batch_size: int = BATCH_USERS,
                   relevance_threshold: float = RELEVANCE_THRESHOLD) -> dict[str, float]:
    """Metrics of a fitted ``model`` on ``test`` under ``protocol`` (see the module doc).

    ``random``: ``{"rmse", "mae", "ratings"}``, or ``{}`` for a model whose predictions are all NaN.
    ``temporal``: ``{"ndcg@k", "recall@k", "precision@k", "mrr@k", "hr@k", "coverage@k", "users"}``; users
    are scored ``batch_size`` at a time, so memory is bounded by ``batch_size x n_items`` scores.
    """
    if protocol == "random":
        return _rating_metrics(model, test)
    if protocol == "temporal":
        return _ranking_metrics(model, train, test, k, batch_size, relevance_threshold)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")


# --- a whole run ---------------------------------------------------------------------------------------------

_COLUMNS = (("rmse", "RMSE"), ("mae", "MAE"), ("ndcg", "NDCG"), ("recall", "Recall"), ("precision", "Prec"),
            ("mrr", "MRR"), ("hr", "HR"), ("coverage", "Cov"), ("users", "Users"))


def _json_float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass
class EvaluationReport:
    """Metrics of every model under every protocol of one run, on shared splits."""

    k: int
    n_users: int
    n_items: int
    n_ratings: int
    splits: dict[str, dict[str, int]] = field(default_factory=dict)          # protocol -> n_train, n_test
    results: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # protocol -> model -> metrics
    timings: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # protocol -> model -> seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``results`` is protocol -> model -> metrics (with ``fit_seconds``/``eval_seconds``).

        NaN becomes None; the protocols' definitions, dataset size and split sizes come along.
        """
        results: dict[str, dict[str, dict[str, float | None]]] = {}
        for protocol, models in self.results.items():
            results[protocol] = {}
            for model, metrics in models.items():
                row = {name: _json_float(value) for name, value in metrics.items()}
                row.update({name: round(value, 3) for name, value in self.timings[protocol][model].items()})
                results[protocol][model] = row
        return {
            "k": self.k,
            "dataset": {"n_users": self.n_users, "n_items": self.n_items, "n_ratings": self.n_ratings},
            "protocols": {p: {"definition": PROTOCOLS[p], "test_fraction": TEST_FRACTION,
                              **({"seed": SPLIT_SEED} if p == "random" else
                                 {"relevance_threshold": RELEVANCE_THRESHOLD})}
                          for p in self.results},
            "splits": {p: dict(sizes) for p, sizes in self.splits.items()},
            "results": results,
        }

    def table(self) -> Table:
        """One row per (protocol, model); a dash where a metric does not apply."""
        table = Table(title=f"Offline evaluation (k={self.k})")
        table.add_column("Protocol")
        table.add_column("Model")
        for _, header in _COLUMNS:
            table.add_column(header if header in ("RMSE", "MAE", "Users") else f"{header}@{self.k}",
                             justify="right")
        table.add_column("Fit s", justify="right")
        for protocol, models in self.results.items():
            for model, metrics in models.items():
                cells = []
                for key, _ in _COLUMNS:
                    name = key if key in ("rmse", "mae", "users") else f"{key}@{self.k}"
                    value = metrics.get(name)
                    cells.append("—" if value is None or math.isnan(value) else
                                 f"{int(value)}" if key == "users" else f"{value:.4f}")
                cells.append(f"{self.timings[protocol][model]['fit_seconds']:.1f}")
                table.add_row(protocol, model, *cells)
        return table


def run_evaluation(data: Interactions, factories: Mapping[str, ModelFactory],
                   protocols: Sequence[str] = ("random", "temporal"), k: int = 10,
                   progress: bool = True) -> EvaluationReport:
    """Split ``data`` once per protocol, then fit (through its factory) and evaluate every model on it.

    Models are reported under their ``factories`` key. Fit time is the factory call's wall time.
    """
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    console = Console(stderr=True) if progress else None
    report = EvaluationReport(k=k, n_users=data.n_users, n_items=data.n_items, n_ratings=len(data))
    for protocol in protocols:
        train, test = make_split(data, protocol)
        report.splits[protocol] = {"n_train": len(train), "n_test": len(test)}
        report.results[protocol], report.timings[protocol] = {}, {}
        for name, factory in factories.items():
            started = time.perf_counter()
            model = factory(train, protocol)
            fitted = time.perf_counter()
            if not isinstance(model, Recommender):
                raise TypeError(f"factory {name!r} returned {type(model).__name__}, not a Recommender")
            metrics = evaluate_model(model, train, test, protocol, k)
            done = time.perf_counter()
            report.results[protocol][name] = metrics
            report.timings[protocol][name] = {"fit_seconds": fitted - started, "eval_seconds": done - fitted}
            if console is not None:
                shown = ", ".join(f"{m}={v:.4f}" for m, v in metrics.items() if m not in ("users", "ratings"))
                console.print(f"[{protocol}] {name}: fit {fitted - started:.1f}s, eval {done - fitted:.1f}s"
                              f"{': ' + shown if shown else ' (no metrics for this protocol)'}",
                              markup=False, highlight=False)
    return report
