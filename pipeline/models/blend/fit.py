"""Training the blend to publish: the network on every rating up to the cut-off, with the partners its weights
call for, fitted on the same ratings."""

from __future__ import annotations

from pipeline.features.loading import TrainingData
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.fit import TrainingResult, train_hybrid


def train_published(
    data: TrainingData,
    cfg: HybridConfig,
    weights: BlendWeights,
    *,
    device: str = "auto",
    progress: bool = True,
    processes: int = 1,
) -> tuple[PublishedBlend, TrainingResult]:
    """The model to publish: the network on every rating up to the cut-off (in ``processes`` data-parallel
    processes when more than one), with the partners ``weights`` call for, fitted on the same ratings."""
    result = train_hybrid(data, None, cfg, device=device, progress=progress, processes=processes)
    published = PublishedBlend.from_training(
        result.model,
        data.interactions,
        weights,
        meta={"dataset": data.dataset, "as_of": data.as_of.isoformat() if data.as_of else None},
    )
    return published, result
