"""One training run end to end: evaluate under the fixed protocols beside the baselines, then train the
model that will be published on every rating up to the cut-off.

What is published (``pipeline.published.PublishedModel``) is a blend: for ranking the network's dot product
with EASE (the strongest ranking baseline) plus the network's rating head, for ratings the network with
biased MF, every weight chosen on a temporal validation split inside the train data
(``pipeline.ensemble.choose_weights``); the network alone (its dot product) is
reported beside it. A weight of 1.0 means the network alone. The blend, partners included, is what MLflow
registers, so what is served is what was evaluated.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from pipeline.baselines import EASE, BiasedMF, GlobalMean, Popularity
from pipeline.cold_start import cold_start_split, content_scores, genre_popularity, rank_cold_items
from pipeline.ensemble import BlendWeights, RankBlend, choose_weights, rating_scale
from pipeline.evaluate import EvaluationReport, run_evaluation
from pipeline.features import TrainingData
from pipeline.interactions import Interactions
from pipeline.model import HybridConfig
from pipeline.published import PublishedModel
from pipeline.ranking import DEFAULT_CANDIDATES
from pipeline.settings import Settings
from pipeline.train import HybridEstimator, TrainingResult, train_hybrid

log = logging.getLogger(__name__)

PRIMARY_PROTOCOL = "temporal"
PRIMARY_METRIC = "ndcg@10"


@dataclass
class EvaluationOutcome:
    """Every model's figures, and the blend weights of the model to publish.

    ``blend_weight``/``rating_weight`` come from the primary (temporal) protocol's validation split when it
    ran, else from the random protocol's; ``blend_validation`` holds the validation figure of every weight
    tried, per protocol.
    """

    report: EvaluationReport
    blend_weight: float
    blend_validation: dict[str, Any] = field(default_factory=dict)
    cold_start: dict[str, dict[str, float]] = field(default_factory=dict)
    rating_weight: float = 1.0
    rerank_weight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "blend_weight": self.blend_weight, "rating_weight": self.rating_weight,
                "rerank_weight": self.rerank_weight,
                "blend_validation": self.blend_validation, "cold_start": self.cold_start}


def evaluate_all(data: TrainingData, cfg: HybridConfig, *, device: str = "auto",
                 protocols: tuple[str, ...] = ("random", "temporal"), cold_start: bool = True,
                 progress: bool = True) -> EvaluationOutcome:
    """Every model on the same splits in one run.

    Per protocol the network is trained twice: once on a validation split carved out of that protocol's
    train data, to choose both blend weights (``choose_weights``), then on the whole train split.
    """
    fitted: dict[str, HybridEstimator] = {}
    ease: dict[str, EASE] = {}
    mf: dict[str, BiasedMF] = {}
    weights: dict[str, BlendWeights] = {}
    validation: dict[str, Any] = {}

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
        # Weights are chosen where they are judged: on validation data carved out of this protocol's train.
        chosen = choose_weights(lambda: HybridEstimator(data, cfg, device), EASE, BiasedMF, train)
        weights[protocol], validation[protocol] = chosen, chosen.figures
        # Scored as the weekly batch scores it: the rating head re-ranks the retrieved candidates.
        return RankBlend(fitted[protocol], ease[protocol], chosen.weight, mf[protocol], chosen.rating_weight,
                         chosen.rerank_weight, rating_scale(train), DEFAULT_CANDIDATES, train.matrix(binary=True))

    factories = {
        "global_mean": lambda tr, p: GlobalMean().fit(tr),
        "popularity": lambda tr, p: Popularity().fit(tr),
        "biased_mf": mf_model,
        "ease": ease_model,
        "hybrid": hybrid,
        "blend": blend,
    }
    ordered = tuple(sorted(protocols, key=lambda p: p != PRIMARY_PROTOCOL))
    report = run_evaluation(data.interactions, factories, ordered, progress=progress)
    chosen = weights.get(PRIMARY_PROTOCOL) or next(iter(weights.values()), BlendWeights(1.0, 1.0))
    outcome = EvaluationOutcome(report, chosen.weight, validation, rating_weight=chosen.rating_weight,
                                rerank_weight=chosen.rerank_weight)
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
    published: PublishedModel
    run_id: str
    version: int
    decision: Any  # pipeline.registry.PromotionDecision
    report_path: Path | None = None


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


def write_report(settings: Settings, outcome: EvaluationOutcome) -> Path:
    """The evaluation as JSON under ``<home>/reports``; the path is logged to MLflow with the run."""
    reports = settings.home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"evaluation-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
    path.write_text(json.dumps(outcome.to_dict(), indent=1))
    return path


def train_published(data: TrainingData, cfg: HybridConfig, weight: float, rating_weight: float,
                    rerank_weight: float = 0.0, *, device: str = "auto",
                    progress: bool = True) -> tuple[PublishedModel, TrainingResult]:
    """The model to publish: the network on every rating up to the cut-off, with the partners its
    blend weights call for, fitted on the same ratings."""
    result = train_hybrid(data, None, cfg, device=device, progress=progress)
    published = PublishedModel.from_training(result.model, data.interactions, weight, rating_weight, rerank_weight,
                                             meta={"dataset": data.dataset,
                                                   "as_of": data.as_of.isoformat() if data.as_of else None})
    return published, result


def train_and_register(settings: Settings, engine: Engine, *, as_of: datetime | None = None,
                       cfg: HybridConfig | None = None, device: str = "auto", progress: bool = True,
                       protocols: tuple[str, ...] = (PRIMARY_PROTOCOL,)) -> TrainingRunOutcome:
    """Load data as of the cut-off, evaluate beside the baselines (``protocols``; the gate's own by
    default), train the model to publish, log it to MLflow, register it and let the promotion gate decide
    on the primary ranking metric."""
    from pipeline.features import load_training_data
    from pipeline.registry import log_training_run, promote_if_better

    cfg = cfg or HybridConfig()
    data = load_training_data(engine, as_of, device="cpu", progress=progress)
    outcome = evaluate_all(data, cfg, device=device, protocols=protocols, cold_start=False, progress=progress)
    published, result = train_published(data, cfg, outcome.blend_weight, outcome.rating_weight,
                                        outcome.rerank_weight, device=device, progress=progress)
    figures, baselines = published_metrics(outcome)
    report_path = write_report(settings, outcome)
    run = log_training_run(settings, published, result, figures, baselines, dataset=data.dataset,
                           data_cutoff=as_of, artifacts={"evaluation.json": report_path})
    decision = promote_if_better(settings, engine, run, dataset=data.dataset, data_cutoff=as_of,
                                 protocol=PRIMARY_PROTOCOL, primary_metric=PRIMARY_METRIC, metrics=figures,
                                 params=cfg.to_dict())
    return TrainingRunOutcome(outcome, result, published, run.run_id, run.registered_version, decision,
                              report_path)
