"""Every model on the same splits in one run, the blend's weights chosen on validation data: what the weekly
evaluation and ``movierec evaluate`` report.

What is published (``pipeline.models.blend.published.PublishedBlend``) is a blend: for ranking the network's
dot product with EASE and implicit-feedback ALS (the strongest ranking baselines) plus the network's rating
head, for ratings the network with biased MF and AutoRec (up to ``Settings.autorec_max_cells`` users x
movies), every weight chosen on a temporal validation split inside the train data
(``pipeline.evaluation.weight_search.choose_weights``); the network alone (its dot product) is reported
beside it. A weight of 1.0 means the network alone.

Beside them, the evaluation-only models (``EVALUATION_ONLY``: implicit-feedback ALS, AutoRec, BPR and
logistic MF, item-kNN, LightGCN, NeuMF and SASRec) when asked for: ``movierec evaluate`` runs all of them,
the weekly run those of ``Settings.weekly_models``. They are never published on their own; ALS is also the
blend's third ranking member and AutoRec its third rating member: when its row is asked for, the blend uses
that fit, otherwise the blend fits its own when its weights give it a share (AutoRec only under a protocol
that reports ratings). A model that fails is a row with its error, not a gap."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.core.defaults import (
    AUTOREC_MAX_CELLS,
    DEFAULT_CANDIDATES,
    EVALUATION_MAX_USERS,
    PRIMARY_PROTOCOL,
    SEARCH_BESIDE_NETWORK_MAX_RATINGS,
    WARM_START_EPOCHS,
)
from pipeline.core.device import SideThread, side_thread
from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings
from pipeline.evaluation.cold_start import cold_start_split, content_scores, genre_popularity, rank_cold_items
from pipeline.evaluation.protocol import ModelFactory, reports_ratings, run_evaluation
from pipeline.evaluation.report import EvaluationReport
from pipeline.evaluation.validation_chain import SOURCE, start_validation
from pipeline.evaluation.weight_search import choose_weights, validation_split
from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.autorec import AutoRec, autorec_fits
from pipeline.models.base import Recommender
from pipeline.models.baselines import EASE, BiasedMF, GlobalMean, Popularity
from pipeline.models.blend.members import member_factories, warm_or_new, warm_start_of
from pipeline.models.blend.published import fit_members
from pipeline.models.blend.scorer import BlendRecommender, rating_scale
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.recommender import HybridRecommender
from pipeline.models.hybrid.train import TrainingResult, train_hybrid
from pipeline.models.hybrid.warm_start import TrainingPlan
from pipeline.models.implicit_mf import ALS, BPR, LMF
from pipeline.models.item_knn import ItemKNN
from pipeline.models.lightgcn import LightGCN
from pipeline.models.neumf import NeuMF
from pipeline.models.sasrec import SASRec
from pipeline.models.vectors import VectorModel

log = logging.getLogger(__name__)

# The evaluation-only models by report name, each built with its default config for the data it is evaluated
# on (``EVALUATION_ONLY_MODELS``; a model reading movie content takes it from there).
EVALUATION_ONLY: dict[str, Callable[[TrainingData], Recommender]] = {
    "als": lambda data: ALS(),
    "autorec": lambda data: AutoRec(),
    "bpr": lambda data: BPR(),
    "lmf": lambda data: LMF(),
    "item_knn": lambda data: ItemKNN(),
    "lightgcn": lambda data: LightGCN(),
    "neumf": lambda data: NeuMF(),
    "sasrec": SASRec.for_data,
}

# What the published blend is built from: the weekly run cannot go on when one of them failed.
PUBLISHED_MEMBERS = ("biased_mf", "ease", "hybrid", "blend")


@dataclass
class EvaluationOutcome:
    """Every model's figures, and the blend weights of the model to publish.

    ``weights`` come from the primary (temporal) protocol's validation split when it ran, else from the
    random protocol's; ``blend_validation`` holds the validation figure of every weight tried, per protocol.
    """

    report: EvaluationReport
    weights: BlendWeights
    blend_validation: dict[str, Any] = field(default_factory=dict)
    cold_start: dict[str, dict[str, float]] = field(default_factory=dict)
    # The blend's fitted members (those with a share) under the protocol ``weights`` come from: what the
    # train step's fits of them may start from (``members.save_starts``). Not in the report.
    members: dict[str, Recommender] = field(default_factory=dict, repr=False)
    # That protocol's network: the train step's start when there is no champion (steps.training_plan).
    network: HybridArtifact | None = field(default=None, repr=False)
    # The primary protocol's validation network, when ``validation_plan`` trained it: next week's start
    # (``pipeline.evaluation.validation_chain``).
    validation_network: HybridArtifact | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        w = self.weights
        return {
            **self.report.to_dict(),
            "blend_weight": w.weight,
            "rating_weight": w.rating_weight,
            "rerank_weight": w.rerank_weight,
            "als_weight": w.als_weight,
            "member_weights": dict(w.members),
            "autorec_weight": w.autorec_weight,
            "blend_validation": self.blend_validation,
            "cold_start": self.cold_start,
        }

    def check_published(self) -> None:
        """``MovierecError`` when a model the published blend is built from failed under any protocol: its
        weights would be the defaults and its figures missing."""
        for protocol, failed in self.report.failures.items():
            for name in PUBLISHED_MEMBERS:
                if name in failed:
                    raise MovierecError(f"evaluation of {name} failed ({protocol} protocol): {failed[name]}")


# Protocols whose network starts from the weight search's: the temporal one ranks within 1% of a network
# trained from scratch in a fifth of the time; the random one's RMSE was 1.3% worse warm, so it trains from
# scratch (``python -m bench.protocol_fit``, bench/README.md).
WARM_PROTOCOLS: Final = frozenset({"temporal"})


def evaluate_all(
    data: TrainingData,
    cfg: HybridConfig,
    *,
    device: str = "auto",
    protocols: tuple[str, ...] = ("random", "temporal"),
    cold_start: bool = True,
    progress: bool = True,
    extra: Sequence[str] = (),
    warm_epochs: int = WARM_START_EPOCHS,
    members: Sequence[str] = (),
    autorec_max_cells: int = AUTOREC_MAX_CELLS,
    max_users: int | None = EVALUATION_MAX_USERS,
    validation_plan: TrainingPlan | None = None,
) -> EvaluationOutcome:
    """Every model on the same splits in one run; ``extra`` names evaluation-only models (``EVALUATION_ONLY``)
    reported beside the baselines; ``members`` the further ranking members the weight search may give a
    share of the blend (``pipeline.models.blend.members``): each is fitted on the validation split for the
    search and, when it gets a share, on the protocol's train split for the blend row (under
    ``WARM_PROTOCOLS`` starting from the search's fit where the member can: ``members.warm_or_new``); each
    is also a row of its own after the blend's, that same fit when it has a share (its fit time then 0).
    The search's fits, and then the protocol's warm ones whatever their share, run in a ``side_thread``
    beside the validation network (the member rows use the warm fits too), the weight search
    (``choose_weights``) beside the protocol network up to ``SEARCH_BESIDE_NETWORK_MAX_RATINGS``.
    AutoRec joins the rating blend's search where the protocol's users x movies are at most
    ``autorec_max_cells`` (``Settings.autorec_max_cells``). Above ``max_users`` users with a rating
    (``Settings.evaluation_max_users``; None: never) every fit and figure is on a fixed sample of that many
    users' ratings (``protocol.evaluation_sample``, keyed on their database ids; ``report.sample``); the
    item cold-start check (``cold_start``) keeps every rating.

    Per protocol the network is trained twice: from scratch on the validation split carved out of that
    protocol's train data (``validation_split``), which chooses the blend weights (``choose_weights``) (the
    primary protocol's as ``validation_plan`` says when given: warm from last week's validation network,
    ``pipeline.evaluation.validation_chain``, its record in the network's meta; ``outcome
    .validation_network``), then
    on the whole train split: under ``WARM_PROTOCOLS`` warm-started from that network for ``warm_epochs``
    (at most ``cfg.epochs``) epochs, as the weekly train step starts from the champion (the validation
    network has seen none of the protocol's test ratings), otherwise from scratch. The hybrid row's fit time
    is both trainings.
    """
    unknown = sorted(set(extra) - set(EVALUATION_ONLY))
    if unknown:
        known = list(EVALUATION_ONLY)
        raise ValueError(f"unknown evaluation-only models {unknown}; expected some of {known}")
    ordered = tuple(sorted(protocols, key=lambda p: p != PRIMARY_PROTOCOL))
    with side_thread("members") as side:
        run = _Evaluation(
            data,
            cfg,
            side,
            device=device,
            members=members,
            warm_epochs=warm_epochs,
            autorec_max_cells=autorec_max_cells,
            validation_plan=validation_plan,
            protocols=ordered,
        )
        report = run_evaluation(
            data.interactions,
            run.factories(extra),
            ordered,
            progress=progress,
            max_users=max_users,
            user_ids=data.user_map.ids,
            item_ids=data.item_map.ids,
        )
    outcome = run.outcome(report)
    if cold_start:
        outcome.cold_start = evaluate_cold_start(data, cfg, device=device)
    return outcome


@dataclass
class _ProtocolFits:
    """What one protocol's rows share. The futures are fits running in the side thread; each is read once,
    into the field below it."""

    inner: Interactions | None = None  # the validation split's train part
    searched: HybridRecommender | None = None  # the weight search's network, trained on ``inner``
    network: HybridRecommender | None = None  # the protocol's network: the hybrid row, the blend's
    ease: EASE | None = None
    mf: BiasedMF | None = None
    # The evaluation-only rows' fits by name: the blend's ALS, AutoRec and members reuse them (one fit).
    rows: dict[str, Recommender] = field(default_factory=dict)
    searching: Future[dict[str, VectorModel]] | None = None
    searched_members: dict[str, VectorModel] = field(default_factory=dict)  # the weight search's members
    warming: Future[dict[str, VectorModel]] | None = None
    warmed: dict[str, VectorModel] = field(default_factory=dict)  # the protocol's warm fits of those
    choosing: Future[BlendWeights] | None = None  # the weight search, beside the protocol network
    weights: BlendWeights | None = None
    blend_members: dict[str, Recommender] = field(default_factory=dict)  # the blend row's, with a share


class _Evaluation:
    """``evaluate_all``'s rows as ``run_evaluation`` factories, and what they share per protocol."""

    def __init__(
        self,
        data: TrainingData,
        cfg: HybridConfig,
        side: SideThread,
        *,
        device: str,
        members: Sequence[str],
        warm_epochs: int,
        autorec_max_cells: int,
        validation_plan: TrainingPlan | None,
        protocols: Sequence[str],
    ) -> None:
        self.data, self.cfg, self.device = data, cfg, device
        self.side = side  # the fits beside the network (``side_thread``)
        self.make_members = member_factories(members, data)  # an unknown name fails before any work
        self.ids = data.ids  # every temporal split's ties, by database id
        self.warm_epochs, self.autorec_max_cells = warm_epochs, autorec_max_cells
        self.validation_plan = validation_plan
        self.fits = {protocol: _ProtocolFits() for protocol in protocols}  # in the order they run

    def factories(self, extra: Sequence[str]) -> dict[str, ModelFactory]:
        """The rows in report order: the blend after the network and the evaluation-only rows it reuses."""
        return {
            "global_mean": lambda tr, p: GlobalMean().fit(tr),
            "popularity": lambda tr, p: Popularity().fit(tr),
            "biased_mf": self.mf_row,
            "ease": self.ease_row,
            **{name: self.extra_row(name) for name in extra},
            "hybrid": self.hybrid_row,
            "blend": self.blend_row,
            **{name: self.member_row(name) for name in self.make_members if name not in extra},
        }

    def outcome(self, report: EvaluationReport) -> EvaluationOutcome:
        report.networks = {
            p: {"validation": _training(f.searched.result), "protocol": _training(f.network.result)}
            for p, f in self.fits.items()
            if f.network is not None and f.searched is not None  # the hybrid row trained both
        }
        chosen = {p: f.weights for p, f in self.fits.items() if f.weights is not None}
        protocol = PRIMARY_PROTOCOL if PRIMARY_PROTOCOL in chosen else next(iter(chosen), None)
        fits = self.fits[protocol] if protocol else _ProtocolFits()
        outcome = EvaluationOutcome(
            report,
            fits.weights if fits.weights is not None else BlendWeights(),
            {p: weights.figures for p, weights in chosen.items()},
            members=fits.blend_members,
            network=fits.network.artifact if fits.network is not None else None,
        )
        primary = self.fits.get(PRIMARY_PROTOCOL)
        if self.validation_plan is not None and primary is not None and primary.searched is not None:
            outcome.validation_network = primary.searched.artifact
        return outcome

    def mf_row(self, train: Interactions, protocol: str) -> BiasedMF:
        fits = self.fits[protocol]
        fits.mf = BiasedMF().fit(train)
        return fits.mf

    def ease_row(self, train: Interactions, protocol: str) -> EASE:
        fits = self.fits[protocol]
        fits.ease = EASE().fit(train)
        return fits.ease

    def extra_row(self, name: str) -> ModelFactory:
        def fit(train: Interactions, protocol: str) -> Recommender:
            model = self.fits[protocol].rows[name] = EVALUATION_ONLY[name](self.data).fit(train)
            return model

        return fit

    def hybrid_row(self, train: Interactions, protocol: str) -> HybridRecommender:
        fits = self.fits[protocol]
        fits.inner, _ = validation_split(train, self.ids)
        # The weight search's members fit beside the network (``side_thread``); the blend row reads them.
        fits.searching = self.side.submit(fit_members, fits.inner, list(self.make_members), self.make_members)
        if protocol in WARM_PROTOCOLS:
            # Then, still beside the network, the protocol's fits of those that start from them, whatever
            # share the search will give them: the blend row takes the ones with a share, the members' own
            # rows the rest.
            fits.warming = self.side.submit(self._warm_fits, fits.searching, train, protocol)
        fits.searched = self._validation_network(protocol, fits.inner)
        # The weights need the validation network and the members, not the protocol's network: they are
        # chosen beside it, where both fit in memory at once.
        if len(train) <= SEARCH_BESIDE_NETWORK_MAX_RATINGS:
            fits.choosing = self.side.submit(self._search_weights, train, protocol)
        if protocol in WARM_PROTOCOLS:
            start, epochs = fits.searched.artifact, min(self.warm_epochs, self.cfg.epochs)
            network = HybridRecommender(self.data, self.cfg, self.device, init=start, epochs=epochs)
        else:
            network = HybridRecommender(self.data, self.cfg, self.device)
        fits.network = network.fit(train)
        return fits.network

    def member_row(self, name: str) -> ModelFactory:
        # A member's own row is the blend's fit of it or the warm fit made beside the network (no second
        # fit), else fitted as the blend would.
        def fit(train: Interactions, protocol: str) -> Recommender:
            fits = self.fits[protocol]
            got = fits.blend_members.get(name) or fits.warmed.get(name)
            return got if got is not None else self._protocol_member(name, protocol).fit(train)

        return fit

    def blend_row(self, train: Interactions, protocol: str) -> BlendRecommender:
        fits = self.fits[protocol]
        if fits.network is None or fits.ease is None or fits.mf is None:
            # The rows the blend is built from run first: their failure is the blend's.
            built_from = (("biased_mf", fits.mf), ("ease", fits.ease), ("hybrid", fits.network))
            failed = [row for row, fit in built_from if fit is None]
            raise MovierecError(f"the {protocol} protocol's {' and '.join(failed)} did not fit")
        if fits.choosing is not None:
            chosen, fits.choosing = fits.choosing.result(), None
        else:
            chosen = self._search_weights(train, protocol)
        fits.weights = chosen
        if chosen.als_weight > 0 and "als" not in fits.rows:  # no "als" row: fitted here only
            fits.rows["als"] = ALS().fit(train)
        # A protocol that reports no ratings never asks the blend row for them: it skips AutoRec's fit and
        # scores ratings without it, as for a folded-in user (the report keeps the chosen weights).
        scored = chosen
        if not reports_ratings(protocol):
            scored = chosen.without_autorec()
        elif chosen.autorec_weight > 0 and "autorec" not in fits.rows:
            fits.rows["autorec"] = AutoRec().fit(train)
        # A member also evaluated as a row (same model, same config) is that fit, as ALS is; otherwise,
        # like the network, it starts from the search's fit where the protocol and the member allow.
        if fits.warming is not None:
            fits.warmed, fits.warming = fits.warming.result(), None
        fits.blend_members = {
            name: fits.rows.get(name)
            or fits.warmed.get(name)
            or self._protocol_member(name, protocol).fit(train)
            for name in chosen.active_members
        }
        # Scored as the weekly batch scores it: the rating head re-ranks the retrieved candidates.
        return BlendRecommender(
            fits.network,
            fits.ease,
            scored,
            fits.mf,
            rating_scale(train),
            DEFAULT_CANDIDATES,
            train.binary_matrix(),
            als=fits.rows.get("als"),
            members=fits.blend_members,
            autorec=fits.rows.get("autorec"),
        )

    def _validation_network(self, protocol: str, inner: Interactions) -> HybridRecommender:
        plan = self.validation_plan if protocol == PRIMARY_PROTOCOL else None
        if plan is None:
            return HybridRecommender(self.data, self.cfg, self.device).fit(inner)
        plan = start_validation(plan, self.data, inner)
        log.info("validation network: %s", plan.reason)
        epochs = min(self.warm_epochs, self.cfg.epochs)
        network = HybridRecommender(self.data, self.cfg, self.device, epochs=epochs, plan=plan, source=SOURCE)
        return network.fit(inner)

    def _warm_fits(
        self, search: Future[dict[str, VectorModel]], train: Interactions, protocol: str
    ) -> dict[str, VectorModel]:
        rows = self.fits[protocol].rows
        starts = {name: warm_start_of(fit, self.warm_epochs) for name, fit in search.result().items()}
        return {
            name: model.fit(train)
            for name, model in starts.items()
            if model is not None and name not in rows  # a row's own fit is the blend's
        }

    def _protocol_member(self, name: str, protocol: str) -> VectorModel:
        start = self.fits[protocol].searched_members.get(name)
        if protocol in WARM_PROTOCOLS and start is not None:
            return warm_or_new(start, self.make_members[name], self.warm_epochs)
        return self.make_members[name]()

    def _search_weights(self, train: Interactions, protocol: str) -> BlendWeights:
        # Weights are chosen where they are judged: on validation data carved out of this protocol's train.
        fits = self.fits[protocol]
        assert fits.searching is not None and fits.searched is not None  # the hybrid row started both
        fits.searched_members, fits.searching = fits.searching.result(), None
        return choose_weights(
            None,  # the network is the hybrid row's validation network
            EASE,
            BiasedMF,
            train,
            movies=self.data.movies,
            make_als=ALS,
            network=fits.searched,
            members=fits.searched_members,
            make_autorec=AutoRec if autorec_fits(train, self.autorec_max_cells) else None,
            ids=self.ids,
        )


def _training(result: TrainingResult | None) -> dict[str, Any]:
    """How a network of the evaluation was trained: ratings, epochs run, the kept epoch, full or warm."""
    assert result is not None  # every network in the report was fitted by this evaluation
    meta = result.model.meta
    return {
        "ratings": meta["n_train"],
        "training": meta["training"],
        **({"reason": meta["training_reason"]} if "training_reason" in meta else {}),
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
    }


def evaluate_cold_start(
    data: TrainingData, cfg: HybridConfig, *, device: str = "auto"
) -> dict[str, dict[str, float]]:
    """Content-only ranking of held-out movies against genre popularity (see
    ``pipeline.evaluation.cold_start``)."""
    split = cold_start_split(data.interactions)
    model = train_hybrid(data, split.train, cfg, device=device, progress=False).model
    by_genre = genre_popularity(split.train, data.movies.genres, split.cold_items)
    genre_scores = np.tile(by_genre, (data.interactions.n_users, 1))
    return {
        "hybrid_content": rank_cold_items(content_scores(model, data.movies, split), split),
        "genre_popularity": rank_cold_items(genre_scores, split),
    }


def published_metrics(
    outcome: EvaluationOutcome,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
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
