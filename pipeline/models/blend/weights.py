"""The blend's weights as one value, from the weight search on validation data to the published artefact."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

# Shares of the cheap terms may sum to a hair above 1 after float arithmetic (0.7 + 0.3): that much is 1.
_SHARE_SLACK = 1e-9


class WeightsDict(TypedDict):
    """``BlendWeights`` as plain JSON (an XCom, ``blend.json``)."""

    weight: float
    rating_weight: float
    rerank_weight: float
    als_weight: float
    members: dict[str, float]
    autorec_weight: float


@dataclass(frozen=True)
class BlendWeights:
    """The weights of the published blend (see ``BlendRecommender``) and the validation figure of every one
    tried (``figures``: search name -> weight -> figure; empty when the weights were not searched).

    The ranking's cheap terms have shares summing to 1: ``weight`` the network's dot product, ``als_weight``
    implicit-feedback ALS, ``members`` those of further models by name (``pipeline.models.blend.members``,
    e.g. SASRec), EASE the rest (``ease_weight``).
    ``rating_weight``: the network's share of the predicted ratings and ``autorec_weight`` AutoRec's
    (``pipeline.models.autorec``), summing to at most 1: biased MF has the rest (``mf_weight``);
    ``rerank_weight``: the rating head's term in the ranking, in units of the train ratings' standard
    deviation (0: none).
    """

    weight: float = 1.0
    rating_weight: float = 1.0
    rerank_weight: float = 0.0
    als_weight: float = 0.0
    members: dict[str, float] = field(default_factory=dict)
    autorec_weight: float = 0.0
    figures: dict[str, dict[float, float]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("weight", "rating_weight", "als_weight", "autorec_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"blend {name} must be within [0, 1], got {getattr(self, name)}")
        for name, share in self.members.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"blend member {name}'s share must be within [0, 1], got {share}")
        if self.weight + self.als_weight + sum(self.members.values()) > 1.0 + _SHARE_SLACK:
            raise ValueError(
                f"blend weight + als_weight + the members' shares must be at most 1 (EASE has the rest), "
                f"got {self.weight} + {self.als_weight} + {sum(self.members.values())}"
            )
        if self.rating_weight + self.autorec_weight > 1.0 + _SHARE_SLACK:
            raise ValueError(
                f"blend rating_weight + autorec_weight must be at most 1 (biased MF has the rest), "
                f"got {self.rating_weight} + {self.autorec_weight}"
            )
        if self.rerank_weight < 0:
            raise ValueError(f"blend rerank_weight must be >= 0, got {self.rerank_weight}")

    @property
    def ease_weight(self) -> float:
        """EASE's share of the cheap terms: what the network and ALS leave (0 within float slack)."""
        rest = 1.0 - self.weight - self.als_weight - sum(self.members.values())
        return rest if rest > _SHARE_SLACK else 0.0

    @property
    def mf_weight(self) -> float:
        """Biased MF's share of the predicted ratings: what the network and AutoRec leave (0 within float
        slack)."""
        rest = 1.0 - self.rating_weight - self.autorec_weight
        return rest if rest > _SHARE_SLACK else 0.0

    @property
    def active_members(self) -> dict[str, float]:
        """The members with a share above 0."""
        return {name: share for name, share in self.members.items() if share > 0}

    def without_members(self, keep: Collection[str] = ()) -> BlendWeights:
        """The same blend without the members (but those in ``keep``), the other shares scaled up to sum to
        1 (for a user the members cannot score: a new user folded in). Unchanged when none is dropped."""
        dropped = {name for name in self.active_members if name not in keep}
        if not dropped:
            return self
        rest = 1.0 - sum(self.active_members[name] for name in dropped)
        if rest <= _SHARE_SLACK:
            raise ValueError("the blend ranks by those members alone: without them nothing is left")
        # min: a share that is the whole may come out a hair above 1 from the division
        return BlendWeights(
            min(self.weight / rest, 1.0),
            self.rating_weight,
            self.rerank_weight,
            min(self.als_weight / rest, 1.0),
            members={n: min(v / rest, 1.0) for n, v in self.active_members.items() if n not in dropped},
            autorec_weight=self.autorec_weight,
        )

    def without_autorec(self) -> BlendWeights:
        """The same blend with AutoRec's share of the ratings given to the network and biased MF in their
        proportion (the network alone when they had none): for a user AutoRec has no decoder weights for (a
        new user folded in). Unchanged without an AutoRec share."""
        if self.autorec_weight == 0:
            return self
        rest = self.rating_weight + self.mf_weight
        rating_weight = min(self.rating_weight / rest, 1.0) if rest > _SHARE_SLACK else 1.0
        return dataclasses.replace(self, rating_weight=rating_weight, autorec_weight=0.0)

    def to_dict(self) -> WeightsDict:
        """The weights as plain floats (JSON, XCom, ``blend.json``); ``figures`` stay out."""
        return {
            "weight": self.weight,
            "rating_weight": self.rating_weight,
            "rerank_weight": self.rerank_weight,
            "als_weight": self.als_weight,
            "members": dict(self.members),
            "autorec_weight": self.autorec_weight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlendWeights:
        """The inverse of ``to_dict``; a key that earlier versions did not write (``rerank_weight``,
        ``als_weight``, ``members``, ``autorec_weight``) reads as 0 (no members)."""
        return cls(
            float(data["weight"]),
            float(data["rating_weight"]),
            float(data.get("rerank_weight", 0.0)),
            float(data.get("als_weight", 0.0)),
            {str(name): float(share) for name, share in (data.get("members") or {}).items()},
            float(data.get("autorec_weight", 0.0)),
        )

    def describe(self) -> str:
        ranking = f"network x {self.weight:.2f}"
        if self.als_weight > 0:
            ranking += f" + ALS x {self.als_weight:.2f}"
        for name, share in self.active_members.items():
            ranking += f" + {name} x {share:.2f}"
        if self.ease_weight > 0:
            plain = self.als_weight == 0 and not self.active_members
            ranking += " + EASE" if plain else f" + EASE x {self.ease_weight:.2f}"
        if self.rerank_weight > 0:
            ranking += f" + rating head x {self.rerank_weight:.2f}"
        ratings = f"network x {self.rating_weight:.2f}"
        if self.autorec_weight > 0:
            ratings += f" + AutoRec x {self.autorec_weight:.2f}"
        if self.mf_weight > 0:
            plain = self.autorec_weight == 0
            ratings += " + biased MF" if plain else f" + biased MF x {self.mf_weight:.2f}"
        return f"ranking: {ranking}; ratings: {ratings}"
