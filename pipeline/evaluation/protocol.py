"""Offline evaluation: every model on the same splits, under a fixed protocol so results compare.

Protocols (``PROTOCOLS`` holds the same text, and ``EvaluationReport.to_dict`` carries it):

* ``random``: ``random_split(data, 0.2, seed=42)`` (see ``pipeline.splits``); rating prediction, RMSE and MAE
  over every test rating. Models that cannot predict ratings (``predict`` all NaN) get no rating metrics.
* ``temporal``: ``temporal_split(data, 0.2)``, each user's latest 20% held out; top-k ranking. A user's
  candidates are all items they did not rate in train (train items are masked with -inf, whatever the model
  scores them; a ``TopKLister`` lists them itself); relevant items are the user's held-out ratings >= 4;
  users without one are skipped. Metrics at k (``pipeline.metrics``): NDCG, Recall, Precision, MRR, HR
  averaged over evaluated users, catalog coverage and long-tail share (``pipeline.evaluation.list_metrics``)
  over all their top-k lists, NDCG over the cold users alone (at most ``COLD_USER_MAX_RATINGS`` train
  ratings; ``cold_users`` of them), and ``users``, the number evaluated. Ties in scores are broken
  by the lower item index, so a model that scores everything equally still gives a deterministic list.
  Above ``EVALUATION_MAX_USERS`` users with a relevant movie (ML-25M's 162k; ML-100K's 943 and ML-1M's
  6,040 are far below), a fixed random sample of that many of them is evaluated (the same for every model of
  a run: seeded, drawn from the same users), and ``users_eligible`` says of how many; catalogue coverage then
  counts the sample's lists only.

Above ``max_users`` users with a rating (``run_evaluation``; the weekly run's
``MOVIEREC_EVALUATION_MAX_USERS``, default ``EVALUATION_MAX_USERS``), the whole evaluation, its fits
included, runs on the ratings of a fixed sample of that many users (``stable_sample``: the same users from
week to week but for the new ones that displace some), and the report's ``sample`` says how many users and
ratings of how many it kept: at ML-25M size the evaluation's fits would otherwise cost more than the week's
training itself."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from rich.console import Console

from pipeline.core.defaults import COLD_USER_MAX_RATINGS, EVALUATION_MAX_USERS, RELEVANCE_THRESHOLD
from pipeline.core.errors import one_line
from pipeline.evaluation.list_metrics import long_tail_share, popularity_counts
from pipeline.evaluation.metrics import catalog_coverage, hits_at_k, mae, ranking_metrics_from_hits, rmse
from pipeline.evaluation.report import EvaluationReport
from pipeline.evaluation.splits import PROTOCOLS, SPLIT_SEED, make_split
from pipeline.features.interactions import Interactions
from pipeline.models.base import Recommender, TopKLister
from pipeline.models.topn import mask_rows, top_k

__all__ = [
    "ModelFactory",
    "evaluate_model",
    "evaluation_sample",
    "run_evaluation",
    "stable_sample",
    "top_k_for_users",
]

BATCH_USERS = 256

log = logging.getLogger(__name__)

ModelFactory = Callable[[Interactions, str], Recommender]
"""Receives the train split and the protocol name, returns a fitted model."""


def _lists(model: Recommender, users: np.ndarray, rated: sp.csr_matrix, k: int) -> np.ndarray:
    if isinstance(model, TopKLister):
        return model.top_k_lists(users, k)
    return top_k(_score_batch(model, users, rated), k)[0]


def _score_batch(model: Recommender, users: np.ndarray, rated: sp.csr_matrix) -> np.ndarray:
    scores = np.array(model.score_users(users), dtype=np.float32)  # a copy: the model's array stays intact
    expected = (len(users), rated.shape[1])
    if scores.shape != expected:
        raise ValueError(
            f"{getattr(model, 'name', model)}.score_users returned {scores.shape}, expected {expected}"
        )
    return mask_rows(scores, rated[users])


def top_k_for_users(
    model: Recommender, train: Interactions, users: np.ndarray, k: int = 10, batch_size: int = BATCH_USERS
) -> np.ndarray:
    """``(len(users), k)`` recommendations among items each user did not rate in ``train`` (-1 padding)."""
    users = np.asarray(users, np.int64)
    rated = train.binary_matrix()
    out = np.empty((len(users), k), np.int64)
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        out[lo : lo + len(batch)] = _lists(model, batch, rated, k)
    return out


def _rating_metrics(model: Recommender, test: Interactions) -> dict[str, float]:
    predicted = np.asarray(model.predict(test.users, test.items), np.float64)
    if predicted.shape != (len(test),):
        raise ValueError(f"predict returned shape {predicted.shape}, expected ({len(test)},)")
    nan = np.isnan(predicted)
    if nan.all():
        return {}  # a ranking-only model: nothing to report, not an error
    if nan.any():
        raise ValueError(
            f"{getattr(model, 'name', model)}.predict returned NaN for {int(nan.sum())} of "
            f"{len(test)} ratings; a model predicts every rating or none"
        )
    return {
        "rmse": rmse(predicted, test.ratings),
        "mae": mae(predicted, test.ratings),
        "ratings": float(len(test)),
    }


def _ranking_metrics(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    k: int,
    batch_size: int,
    relevance_threshold: float,
    max_users: int | None,
) -> dict[str, float]:
    relevant_test = test.subset(test.ratings >= relevance_threshold)
    relevant = relevant_test.binary_matrix()
    n_relevant = np.diff(relevant.indptr)
    users = eligible = np.flatnonzero(n_relevant > 0)
    if max_users is not None and len(users) > max_users:
        users = sample_users(users, max_users)
    rated = train.binary_matrix()
    per_user: dict[str, list[np.ndarray]] = {}
    all_lists = []
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        lists = _lists(model, batch, rated, k)
        hits = hits_at_k(lists, relevant[batch].toarray().astype(bool))
        for name, values in ranking_metrics_from_hits(hits, n_relevant[batch], k).items():
            per_user.setdefault(name, []).append(values)
        all_lists.append(lists)
    if len(users) == 0:
        raise ValueError("no user has a relevant test item; nothing to rank")
    per = {name: np.concatenate(parts) for name, parts in per_user.items()}
    result = {f"{name}@{k}": float(np.mean(values)) for name, values in per.items()}
    listed = np.concatenate(all_lists)
    result[f"coverage@{k}"] = catalog_coverage(listed, train.n_items)
    result[f"long_tail@{k}"] = long_tail_share(listed, popularity_counts(train.items, train.n_items))
    cold = np.diff(rated.indptr)[users] <= COLD_USER_MAX_RATINGS
    result[f"cold_ndcg@{k}"] = float(np.mean(per["ndcg"][cold])) if cold.any() else float("nan")
    result["cold_users"] = float(cold.sum())
    result["users"] = float(len(users))
    if len(users) < len(eligible):
        result["users_eligible"] = float(len(eligible))
    return result


def sample_users(users: np.ndarray, n: int, seed: int = 42) -> np.ndarray:
    """A fixed random sample of ``n`` of ``users`` (ascending): the same for the same users and seed."""
    return np.sort(np.random.default_rng(seed).choice(users, size=n, replace=False))


def stable_sample(ids: np.ndarray, n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """Positions (ascending) of the ``n`` of ``ids`` whose seeded hash is lowest (all when ``n`` >= their
    number). A bottom-n sample: when ids are added, a kept one leaves only for a new one with a lower hash, so
    next week's sample is this week's but for the new users that displace some."""
    if n >= len(ids):
        return np.arange(len(ids))
    return np.sort(np.argpartition(_hash64(np.asarray(ids, np.int64), seed), n)[:n])


def _hash64(ids: np.ndarray, seed: int) -> np.ndarray:
    # splitmix64's finaliser over id + seed * golden ratio: uint64 arithmetic wraps, as the mixer intends.
    x = ids.astype(np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def evaluation_sample(
    data: Interactions, max_users: int | None, user_ids: np.ndarray | None = None
) -> tuple[Interactions, dict[str, int] | None]:
    """The ratings an evaluation runs on: all of ``data``'s, or, above ``max_users`` users with a rating,
    those of ``stable_sample``'s ``max_users`` of them, keyed on ``user_ids`` (database ids by dense index;
    default the dense indices themselves), with what was kept (None: everything)."""
    rated = np.flatnonzero(np.bincount(data.users, minlength=data.n_users))
    if max_users is None or len(rated) <= max_users:
        return data, None
    keyed = rated if user_ids is None else np.asarray(user_ids)[rated]
    keep = np.zeros(data.n_users, bool)
    keep[rated[stable_sample(keyed, max_users)]] = True
    sampled = data.subset(keep[data.users])
    sample = {"users": max_users, "of_users": len(rated), "ratings": len(sampled), "of_ratings": len(data)}
    log.info(
        "evaluating on a fixed sample of %d of %d users (%d of %d ratings)",
        max_users,
        len(rated),
        len(sampled),
        len(data),
    )
    return sampled, sample


def evaluate_model(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    protocol: str,
    k: int = 10,
    *,
    batch_size: int = BATCH_USERS,
    relevance_threshold: float = RELEVANCE_THRESHOLD,
    max_users: int | None = EVALUATION_MAX_USERS,
) -> dict[str, float]:
    """Metrics of a fitted ``model`` on ``test`` under ``protocol`` (see the module doc).

    ``random``: ``{"rmse", "mae", "ratings"}``, or ``{}`` for a model whose predictions are all NaN.
    ``temporal``: ``{"ndcg@k", "recall@k", "precision@k", "mrr@k", "hr@k", "coverage@k", "long_tail@k",
    "cold_ndcg@k", "cold_users", "users"}`` (and ``users_eligible`` when more than ``max_users`` users had a
    relevant movie and a fixed sample of ``max_users`` was evaluated; None: every one); users are scored
    ``batch_size`` at a time, so memory is bounded by ``batch_size x n_items`` scores.
    """
    if reports_ratings(protocol):
        return _rating_metrics(model, test)
    if protocol == "temporal":
        return _ranking_metrics(model, train, test, k, batch_size, relevance_threshold, max_users)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")


def reports_ratings(protocol: str) -> bool:
    """Whether ``protocol``'s metrics come from predicted ratings (RMSE, MAE) rather than rankings."""
    return protocol == "random"


def run_evaluation(
    data: Interactions,
    factories: Mapping[str, ModelFactory],
    protocols: Sequence[str] = ("random", "temporal"),
    k: int = 10,
    progress: bool = True,
    *,
    max_users: int | None = None,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> EvaluationReport:
    """Split ``data`` once per protocol, then fit (through its factory) and evaluate every model on it.

    Models are reported under their ``factories`` key. Fit time is the factory call's wall time. A model whose
    factory (its fit) or evaluation raises is reported as failed, with no metrics and the error in
    ``report.failures``, and the others still run; a factory that returns something other than a
    ``Recommender`` is a programming error and raises. A fitted model's dataclass ``config`` is kept in
    ``report.configs`` under its name. ``max_users``/``user_ids``: fit and evaluate on a fixed sample of
    the users (``evaluation_sample``; ``report.sample`` says what was kept). With ``item_ids`` too (the
    movies' database ids by dense index), the temporal split breaks its ties by the pairs' ids
    (``temporal_split``): a week's split of the older ratings is the previous week's.
    """
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    console = Console(stderr=True) if progress else None
    report = EvaluationReport(k=k, n_users=data.n_users, n_items=data.n_items, n_ratings=len(data))
    data, report.sample = evaluation_sample(data, max_users, user_ids)
    ids = (user_ids, item_ids) if user_ids is not None and item_ids is not None else None
    for protocol in protocols:
        train, test = make_split(data, protocol, ids)
        report.splits[protocol] = {"n_train": len(train), "n_test": len(test)}
        report.results[protocol], report.timings[protocol] = {}, {}
        for name, factory in factories.items():
            started = time.perf_counter()
            metrics: dict[str, float] = {}
            error: Exception | None = None
            try:
                model = factory(train, protocol)
            except Exception as exc:  # reported as failed below; the other models still run
                error = exc
            fitted = time.perf_counter()
            if error is None:
                if not isinstance(model, Recommender):
                    raise TypeError(f"factory {name!r} returned {type(model).__name__}, not a Recommender")
                try:
                    metrics = evaluate_model(model, train, test, protocol, k)
                except Exception as exc:
                    error = exc
                config = getattr(model, "config", None)
                if dataclasses.is_dataclass(config) and not isinstance(config, type):
                    report.configs[name] = dataclasses.asdict(config)
            done = time.perf_counter()
            report.results[protocol][name] = metrics
            report.timings[protocol][name] = {"fit_seconds": fitted - started, "eval_seconds": done - fitted}
            if error is not None:
                report.failures.setdefault(protocol, {})[name] = one_line(error)
                log.warning("[%s] %s failed: %s", protocol, name, one_line(error), exc_info=error)
                if console is not None:
                    console.print(
                        f"[{protocol}] {name}: failed after {done - started:.1f}s: {one_line(error)}",
                        markup=False,
                        highlight=False,
                    )
                continue
            if console is not None:
                shown = ", ".join(f"{m}={v:.4f}" for m, v in metrics.items() if m not in ("users", "ratings"))
                console.print(
                    f"[{protocol}] {name}: fit {fitted - started:.1f}s, eval {done - fitted:.1f}s"
                    f"{': ' + shown if shown else ' (no metrics for this protocol)'}",
                    markup=False,
                    highlight=False,
                )
    return report
