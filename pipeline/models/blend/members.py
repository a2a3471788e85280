"""The models the blend's weight search may add to the published ranking beside the network, ALS and EASE.

Each scores by one vector per user and per movie (``VectorModel``): the published artefact keeps a member
as its two fitted matrices (``VectorModel.save``), so the batch and the API score exactly the evaluated
member without its training code or inputs. A member is built for the data it is fitted on (SASRec reads
the movies' content from there) and fitted on the same ratings as the network it is blended with.
Which of them a weekly run offers the search is ``Settings.blend_members`` (``BLEND_MEMBERS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from pipeline.models.implicit_mf import BPR, LMF
from pipeline.models.lightgcn import LightGCN
from pipeline.models.sasrec import SASRec
from pipeline.models.vectors import VectorModel

if TYPE_CHECKING:
    from pipeline.features.loading import TrainingData

__all__ = ["MEMBERS", "Member", "member_factories", "warm_or_new"]


@dataclass(frozen=True)
class Member:
    """How a member is built for a data set (``build``, unfitted, default config) and read back (``kind``)."""

    kind: type[VectorModel]
    build: Callable[[TrainingData], VectorModel]


MEMBERS: Mapping[str, Member] = {
    "sasrec": Member(SASRec, SASRec.for_data),
    "lightgcn": Member(LightGCN, lambda data: LightGCN()),
    "bpr": Member(BPR, lambda data: BPR()),
    "lmf": Member(LMF, lambda data: LMF()),
}  # defaults.BLEND_MEMBER_MODELS names the same (the settings check against it without importing torch)


def member_factories(names: Sequence[str], data: TrainingData) -> dict[str, Callable[[], VectorModel]]:
    """A factory of each named member built for ``data``; ``ValueError`` naming an unknown one."""
    unknown = [name for name in names if name not in MEMBERS]
    if unknown:
        raise ValueError(f"unknown blend members {unknown}; expected some of {list(MEMBERS)}")
    return {name: partial(MEMBERS[name].build, data) for name in names}


def warm_or_new(fitted: VectorModel, make: Callable[[], VectorModel], epochs: int) -> VectorModel:
    """An unfitted member for a superset of ``fitted``'s ratings: one that starts from ``fitted`` and trains
    ``epochs`` epochs (at most its config's) when the member can (SASRec: ``warm_started``), else
    ``make()``."""
    if isinstance(fitted, SASRec):
        return fitted.warm_started(min(epochs, fitted.config.epochs))
    return make()
