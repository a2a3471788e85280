"""Training the blend to publish: the network on every rating up to the cut-off, with the partners and
members its weights call for, fitted on the same ratings."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pipeline.core.defaults import WARM_START_EPOCHS
from pipeline.features.loading import TrainingData
from pipeline.models.blend.members import member_factories
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.train import TrainingResult, train_hybrid
from pipeline.models.hybrid.warm_start import TrainingPlan, WarmStartError

log = logging.getLogger(__name__)


def train_published(
    data: TrainingData,
    cfg: HybridConfig,
    weights: BlendWeights,
    *,
    device: str = "auto",
    progress: bool = True,
    processes: int = 1,
    plan: TrainingPlan | None = None,
    warm_epochs: int | None = None,
    member_starts: Mapping[str, str] | None = None,
    member_epochs: int = WARM_START_EPOCHS,
) -> tuple[PublishedBlend, TrainingResult]:
    """The model to publish: the network on every rating up to the cut-off (in ``processes`` data-parallel
    processes when more than one), with the partners and members ``weights`` call for, fitted on the same
    ratings.

    ``plan``: a warm start (at most ``warm_epochs`` epochs from ``plan.init``, each on ``plan.replay`` of the
    ratings) or a full training; a champion
    whose network cannot seed this one (``WarmStartError``) means a full training. The network's meta keeps
    which ran and why (``TrainingPlan.record``): what next week's plan reads. ``member_starts``: saved fits
    the members start from for ``member_epochs`` epochs (``members.member_factories``), each on a subset of
    these ratings (the evaluation's); a member without one trains from scratch."""

    def fit(plan: TrainingPlan | None) -> TrainingResult:
        warm = plan is not None and plan.kind == "warm"
        return train_hybrid(
            data,
            None,
            cfg,
            device=device,
            progress=progress,
            processes=processes,
            init=plan.init if plan is not None and warm else None,
            epochs=warm_epochs if warm else None,
            replay=plan.replay if plan is not None and warm else None,
        )

    try:
        result = fit(plan)
    except WarmStartError as exc:
        assert plan is not None  # only a warm start raises it
        plan = plan.retrain(f"the champion's network cannot seed this one ({exc})")
        log.warning("full retrain: %s", plan.reason)
        result = fit(plan)
    if plan is not None:
        result.model.meta.update(plan.record())
    published = PublishedBlend.from_training(
        result.model,
        data.interactions,
        weights,
        meta={"dataset": data.dataset, "as_of": data.as_of.isoformat() if data.as_of else None},
        members=member_factories(list(weights.active_members), data, member_starts, member_epochs),
    )
    return published, result
