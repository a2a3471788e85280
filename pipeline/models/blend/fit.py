"""Training the blend to publish: the network on every rating up to the cut-off, with the partners and
members its weights call for, fitted on the same ratings."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.defaults import WARM_START_EPOCHS
from pipeline.core.device import side_thread
from pipeline.features.loading import TrainingData
from pipeline.models.blend.members import member_factories
from pipeline.models.blend.published import PublishedBlend, fit_members
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.train import TrainingResult, train_planned
from pipeline.models.hybrid.warm_start import TrainingPlan


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

    ``plan``: a warm start from the champion or a full training (``train_planned``: a champion whose
    network cannot seed this one means a full training; the network's meta keeps which ran and why).
    ``member_starts``: saved fits
    the members start from for ``member_epochs`` epochs (``members.member_factories``), each on a subset of
    these ratings (the evaluation's); a member without one trains from scratch. The members fit in a
    ``side_thread`` while the network trains; the other partners after it."""

    factories = member_factories(list(weights.active_members), data, member_starts, member_epochs)
    # The members (SASRec: one torch thread) fit beside the network, which cannot keep two cores busy.
    with side_thread("members") as side:
        members = side.submit(fit_members, data.interactions, list(weights.active_members), factories)
        result = train_planned(
            data,
            None,
            cfg,
            plan,
            warm_epochs=warm_epochs,
            source="the champion's network",
            device=device,
            progress=progress,
            processes=processes,
        )
    published = PublishedBlend.from_training(
        result.model,
        data.interactions,
        weights,
        meta={"dataset": data.dataset, "as_of": data.as_of.isoformat() if data.as_of else None},
        fitted_members=members.result(),
    )
    return published, result
