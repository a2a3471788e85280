"""The models the blend's weight search may add to the published ranking beside the network, ALS and EASE.

Each scores by one vector per user and per movie (``VectorModel``): the published artefact keeps a member
as its two fitted matrices (``VectorModel.save``), so the batch and the API score exactly the evaluated
member without its training code or inputs. A member is built for the data it is fitted on (SASRec reads
the movies' content from there) and fitted on the same ratings as the network it is blended with.
Which of them a weekly run offers the search is ``Settings.blend_members`` (``BLEND_MEMBERS``).

A member that can start from an earlier fit (SASRec) does so twice a week: the evaluation's protocol fit from
its validation fit (``warm_or_new``), and the published fit from the evaluation's, which the evaluate step
saves (``save_starts``) and the train step reads back (``member_factories``' ``starts``). Each link sees a
superset of the previous one's ratings; on ML-100K's temporal protocol a chain of two such links ranks as a
fit from scratch does (NDCG@10 0.1643 alone against 0.1641, 0.2149 in the blend against 0.2138, with one
negative per target in its loss).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.defaults import WARM_START_EPOCHS
from pipeline.models.implicit_mf import BPR, LMF
from pipeline.models.lightgcn import LightGCN
from pipeline.models.sasrec import SASRec
from pipeline.models.vectors import VectorModel

if TYPE_CHECKING:
    from pipeline.features.loading import TrainingData

__all__ = ["MEMBERS", "Member", "member_factories", "save_starts", "warm_or_new"]

log = logging.getLogger(__name__)


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


def member_factories(
    names: Sequence[str],
    data: TrainingData,
    starts: Mapping[str, str] | None = None,
    epochs: int = WARM_START_EPOCHS,
) -> dict[str, Callable[[], VectorModel]]:
    """A factory of each named member built for ``data``; ``ValueError`` naming an unknown one. A member
    with a file in ``starts`` (``save_starts``) starts from it and trains ``epochs`` epochs (at most its
    config's); a file it cannot start from is logged and the member trains from scratch."""
    unknown = [name for name in names if name not in MEMBERS]
    if unknown:
        raise ValueError(f"unknown blend members {unknown}; expected some of {list(MEMBERS)}")
    starts = starts or {}
    return {
        name: partial(_started, name, data, Path(starts[name]), epochs)
        if name in starts
        else partial(MEMBERS[name].build, data)
        for name in names
    }


def _started(name: str, data: TrainingData, path: Path, epochs: int) -> VectorModel:
    model = MEMBERS[name].build(data)
    if not isinstance(model, SASRec):
        return model
    try:
        started = model.start_from(path, min(epochs, model.config.epochs))
    except (OSError, ValueError) as exc:
        log.warning("blend member %s trains from scratch: it cannot start from %s (%s)", name, path, exc)
        return model
    log.info("blend member %s: %d epochs from %s", name, started.config.epochs, path)
    return started


def save_starts(fitted: Mapping[str, object], directory: Path) -> dict[str, str]:
    """Save, under ``directory``, each of the ``fitted`` members a later fit can start from (SASRec: its
    network); their paths by name."""
    return {
        name: str(model.save_network(directory / f"{name}-network.npz"))
        for name, model in fitted.items()
        if isinstance(model, SASRec) and model.network_ is not None
    }


def warm_start_of(fitted: VectorModel, epochs: int) -> VectorModel | None:
    """An unfitted member for a superset of ``fitted``'s ratings that starts from ``fitted`` and trains
    ``epochs`` epochs (at most its config's), when the member can (SASRec: ``warm_started``); else None."""
    if isinstance(fitted, SASRec):
        return fitted.warm_started(min(epochs, fitted.config.epochs))
    return None


def warm_or_new(fitted: VectorModel, make: Callable[[], VectorModel], epochs: int) -> VectorModel:
    """``warm_start_of(fitted, epochs)``, or ``make()`` for a member that cannot start from a fit."""
    warm = warm_start_of(fitted, epochs)
    return warm if warm is not None else make()
