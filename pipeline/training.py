"""One training run end to end: evaluate under the fixed protocols beside the baselines, then train the
model that will be published on every rating up to the cut-off.

What is published is a blend of the network with EASE (the strongest baseline) whose weight is chosen on
a temporal validation split inside the train data; the network alone is reported beside it. A weight of
1.0 means the network alone is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from pipeline.baselines import EASE, BiasedMF, GlobalMean, Popularity
from pipeline.cold_start import cold_start_split, content_scores, genre_popularity, rank_cold_items
from pipeline.ensemble import RankBlend, choose_blend_weight, choose_rating_weight
from pipeline.evaluate import EvaluationReport, run_evaluation
from pipeline.features import TrainingData
from pipeline.interactions import Interactions
from pipeline.model import HybridConfig
from pipeline.settings import Settings
from pipeline.train import HybridEstimator, TrainingResult, train_hybrid

log = logging.getLogger(__name__)

PRIMARY_PROTOCOL = "temporal"
PRIMARY_METRIC = "ndcg@10"


@dataclass
class EvaluationOutcome:
    report: EvaluationReport
    blend_weight: float
    blend_validation: dict[float, float] = field(default_factory=dict)
    cold_start: dict[str, dict[str, float]] = field(default_factory=dict)
    rating_weight: float = 1.0


def evaluate_all(data: TrainingData, cfg: HybridConfig, *, device: str = "auto",
                 protocols: tuple[str, ...] = ("random", "temporal"), cold_start: bool = True,
                 progress: bool = True) -> EvaluationOutcome:
    """Every model on the same splits in one run; the network is trained once per split."""
    fitted: dict[str, HybridEstimator] = {}
    ease: dict[str, EASE] = {}
    mf: dict[str, BiasedMF] = {}
    weight = {"value": 1.0, "rating": 1.0}
    validation: dict[float, float] = {}

    def hybrid(train: Interactions, protocol: str) -> HybridEstimator:
        fitted[protocol] = HybridEstimator(data, cfg, device).fit(train)
        return fitted[protocol]

    def ease_model(train: Interactions, protocol: str) -> EASE:
        ease[protocol] = EASE().fit(train)
        return ease[protocol]

    def mf_model(train: Interactions, protocol: str) -> BiasedMF:
        mf[protocol] = BiasedMF().fit(train)
        return mf[protocol]

    def blend(train: Interactions, protocol: str) -> RankBlend:
        # Each weight is chosen where it is judged, on validation data carved out of that protocol's train.
        if protocol == PRIMARY_PROTOCOL:
            weight["value"], figures = choose_blend_weight(lambda: HybridEstimator(data, cfg, device), EASE, train)
            validation.update(figures)
        if protocol == "random":
            weight["rating"], _ = choose_rating_weight(lambda: HybridEstimator(data, cfg, device), BiasedMF, train)
        return RankBlend(fitted[protocol], ease[protocol], weight["value"], mf[protocol], weight["rating"])

    factories = {
        "global_mean": lambda tr, p: GlobalMean().fit(tr),
        "popularity": lambda tr, p: Popularity().fit(tr),
        "biased_mf": mf_model,
        "ease": ease_model,
        "hybrid": hybrid,
        "blend": blend,
    }
    ordered = tuple(sorted(protocols, key=lambda p: p != PRIMARY_PROTOCOL))  # the blend weight first
    report = run_evaluation(data.interactions, factories, ordered, progress=progress)
    outcome = EvaluationOutcome(report, weight["value"], validation, rating_weight=weight["rating"])
    if cold_start:
        outcome.cold_start = evaluate_cold_start(data, cfg, device=device)
    return outcome


def evaluate_cold_start(data: TrainingData, cfg: HybridConfig, *, device: str = "auto") -> dict[str, dict[str, float]]:
    """Content-only ranking of held-out movies against genre popularity (see ``pipeline.cold_start``)."""
    split = cold_start_split(data.interactions)
    model = train_hybrid(data, split.train, cfg, device=device, progress=False).model
    by_genre = genre_popularity(split.train, data.movies.genres, split.cold_items)
    genre_scores = np.tile(by_genre, (data.interactions.n_users, 1))
    return {"hybrid_content": rank_cold_items(content_scores(model, data.movies, split), split),
            "genre_popularity": rank_cold_items(genre_scores, split)}


@dataclass
class TrainingRunOutcome:
    evaluation: EvaluationOutcome
    result: TrainingResult
    run_id: str
    version: int
    decision: Any  # pipeline.registry.PromotionDecision
    report_path: Any = None


def published_metrics(outcome: EvaluationOutcome) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """(what will be published: the blend's figures per protocol, every other model's as baselines)."""
    results = outcome.report.results
    published = {p: dict(models["blend"]) for p, models in results.items() if "blend" in models}
    for p, models in results.items():  # the network alone, reported beside what is published
        if "hybrid" in models:
            published.setdefault(p, {}).update({f"network_{k}": v for k, v in models["hybrid"].items()})
    baselines: dict[str, dict[str, Any]] = {}
    for p, models in results.items():
        for name, figures in models.items():
            if name not in ("blend", "hybrid"):
                baselines.setdefault(name, {})[p] = figures
    return published, baselines


def train_and_register(settings: Settings, engine: Engine, *, as_of: datetime | None = None,
                       cfg: HybridConfig | None = None,
                       device: str = "auto", progress: bool = True) -> TrainingRunOutcome:
    """Load data as of the cut-off, evaluate beside the baselines, train the final model, log it to MLflow,
    register it and let the promotion gate decide on the primary ranking metric."""
    import json
    import time

    from pipeline.features import load_training_data
    from pipeline.registry import log_training_run, promote_if_better

    cfg = cfg or HybridConfig()
    data = load_training_data(engine, as_of, device="cpu", progress=progress)
    outcome = evaluate_all(data, cfg, device=device, cold_start=False, progress=progress)  # cold start: evaluate
    result = train_hybrid(data, None, cfg, device=device, progress=progress)  # every rating up to the cut-off
    result.model.meta["blend"] = {"partner": "ease", "weight": outcome.blend_weight,
                                  "rating_partner": "biased_mf", "rating_weight": outcome.rating_weight}
    published, baselines = published_metrics(outcome)
    reports = settings.home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    report_path = reports / f"evaluation-{time.strftime('%Y%m%dT%H%M%S')}.json"
    report_path.write_text(json.dumps({**outcome.report.to_dict(), "blend_weight": outcome.blend_weight,
                                       "blend_validation": outcome.blend_validation,
                                       "cold_start": outcome.cold_start}, indent=1))
    run = log_training_run(settings, result.model, result, published, baselines, dataset=data.dataset,
                           data_cutoff=as_of, artifacts={"evaluation.json": report_path})
    decision = promote_if_better(settings, engine, run, dataset=data.dataset, data_cutoff=as_of,
                                 protocol=PRIMARY_PROTOCOL, primary_metric=PRIMARY_METRIC, metrics=published,
                                 params=cfg.to_dict())
    return TrainingRunOutcome(outcome, result, run.run_id, run.registered_version, decision, report_path)
