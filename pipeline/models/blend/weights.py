"""The blend's weights as one value, from the weight search on validation data to the published artefact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


class WeightsDict(TypedDict):
    """``BlendWeights`` as plain JSON (an XCom, ``blend.json``)."""

    weight: float
    rating_weight: float
    rerank_weight: float


@dataclass(frozen=True)
class BlendWeights:
    """The weights of the published blend (see ``BlendRecommender``) and the validation figure of every one
    tried (``figures``: search name -> weight -> figure; empty when the weights were not searched).

    ``weight``: the network's share of the ranking's cheap terms (EASE has the rest); ``rating_weight``: the
    network's share of the predicted ratings (biased MF has the rest); ``rerank_weight``: the rating head's
    term in the ranking, in units of the train ratings' standard deviation (0: none).
    """

    weight: float = 1.0
    rating_weight: float = 1.0
    rerank_weight: float = 0.0
    figures: dict[str, dict[float, float]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("weight", "rating_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"blend {name} must be within [0, 1], got {getattr(self, name)}")
        if self.rerank_weight < 0:
            raise ValueError(f"blend rerank_weight must be >= 0, got {self.rerank_weight}")

    def to_dict(self) -> WeightsDict:
        """The three weights as plain floats (JSON, XCom, ``blend.json``); ``figures`` stay out."""
        return {
            "weight": self.weight,
            "rating_weight": self.rating_weight,
            "rerank_weight": self.rerank_weight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlendWeights:
        return cls(float(data["weight"]), float(data["rating_weight"]), float(data.get("rerank_weight", 0.0)))

    def describe(self) -> str:
        ranking = f"network x {self.weight:.2f}" + (" + EASE" if self.weight < 1 else "")
        if self.rerank_weight > 0:
            ranking += f" + rating head x {self.rerank_weight:.2f}"
        ratings = f"network x {self.rating_weight:.2f}" + (" + biased MF" if self.rating_weight < 1 else "")
        return f"ranking: {ranking}; ratings: {ratings}"
