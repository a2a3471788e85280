"""The hybrid network's training entry point: in this process (``fit.train_network``) or in several
data-parallel ones (``distributed.train_distributed``), which both run ``fit``'s one loop."""

from __future__ import annotations

import logging

import torch

from pipeline.core.device import resolve_device
from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.distributed import train_distributed
from pipeline.models.hybrid.fit import Epoch, TrainingResult, train_network
from pipeline.models.hybrid.warm_start import Replay, TrainingPlan, WarmStartError

__all__ = ["TrainingResult", "train_hybrid", "train_planned"]

log = logging.getLogger(__name__)


def train_hybrid(
    data: TrainingData,
    train: Interactions | None = None,
    cfg: HybridConfig | None = None,
    *,
    device: str = "auto",
    progress: bool = True,
    on_epoch: Epoch | None = None,
    processes: int = 1,
    init: HybridArtifact | None = None,
    epochs: int | None = None,
    replay: Replay | None = None,
) -> TrainingResult:
    """Train on ``train`` (default: all of ``data``'s ratings) with ``data``'s features.

    ``init``: warm start from that network's weights (``warm_start.transfer_weights``: known users, movies
    and people keep theirs; ``WarmStartError`` when its shared layers have other shapes), trained for all
    its epochs on every row, no early stopping; ``epochs``: that many epochs instead of ``cfg.epochs`` (the
    model's config keeps ``cfg``); ``replay``: the warm start's epochs train on the ratings after the
    champion's cut-off and a fresh sample of the older ones (``warm_start.Replay``; None: every rating).

    ``processes`` > 1: that many data-parallel processes launched with ``torchrun`` (gloo on the CPU, NCCL
    with one GPU each; ``pipeline.models.hybrid.distributed``); ``on_epoch`` then sees each epoch's record
    once training is over, and the model is the one the processes saved."""
    cfg = cfg or HybridConfig()
    if processes > 1:
        result = train_distributed(data, train, cfg, resolve_device(device), processes, init, epochs, replay)
        if on_epoch:
            for record in result.history:
                on_epoch(int(record["epoch"]), record)
        return result
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        return train_network(
            data,
            train,
            cfg,
            resolve_device(device),
            progress,
            on_epoch,
            init=init,
            epochs=epochs,
            replay=replay,
        )
    finally:
        torch.use_deterministic_algorithms(previous)


def train_planned(
    data: TrainingData,
    train: Interactions | None,
    cfg: HybridConfig,
    plan: TrainingPlan | None,
    *,
    warm_epochs: int | None,
    source: str,
    device: str = "auto",
    progress: bool = True,
    processes: int = 1,
) -> TrainingResult:
    """``train_hybrid`` as ``plan`` says: a warm start (at most ``warm_epochs`` epochs from ``plan.init``,
    each on ``plan.replay`` of the ratings) or a full training (also when ``plan`` is None). A start whose
    network cannot seed this one (``WarmStartError``; ``source`` names it in the reason) means a full
    training. The network's meta keeps which ran and why (``TrainingPlan.record``): what next week's plan
    reads."""

    def fit(plan: TrainingPlan | None) -> TrainingResult:
        warm = plan if plan is not None and plan.kind == "warm" else None
        return train_hybrid(
            data,
            train,
            cfg,
            device=device,
            progress=progress,
            processes=processes,
            init=warm.init if warm else None,
            epochs=warm_epochs if warm else None,
            replay=warm.replay if warm else None,
        )

    try:
        result = fit(plan)
    except WarmStartError as exc:
        assert plan is not None  # only a warm start raises it
        plan = plan.retrain(f"{source} cannot seed this one ({exc})")
        log.warning("full retrain: %s", plan.reason)
        result = fit(plan)
    if plan is not None:
        result.model.meta.update(plan.record())
    return result
