"""The published model: what is registered in MLflow, scored in batch and served by the API.

It is exactly what the evaluation reports as ``blend``: the hybrid network's dot product with EASE,
implicit-feedback ALS and the further members the weight search chose (e.g. SASRec) plus its rating head for
ranking, the network with biased MF and AutoRec for ratings, mixed with the weights chosen on validation data
(``pipeline.models.blend.scorer.BlendRecommender``). Keeping the partners inside one artefact is what makes
the served lists the evaluated ones.

On disk (``save``/``load``)::

    network/      HybridArtifact.save (network, id maps, vocab, catalogue content)
    rated.npz     every (user, movie) index pair rated up to the cut-off: what EASE scores from and what
                  a user's list must never contain
    ease.npy      EASE's item x item weights over its kept movies (absent when EASE's share of the ranking
                  is 0)
    ease_kept.npy the catalogue indices of those movies, ascending (absent when EASE keeps every movie)
    als.npz       implicit ALS's user and item factors and its config (``ALS.save``; absent when its ranking
                  share is 0, as in every artefact written before ALS joined the blend)
    member-<name>.npz  each further ranking member with a share (``pipeline.models.blend.members``, e.g.
                  SASRec): its user and movie vectors and config (``VectorModel.save``)
    mf.npz        biased MF's factors and biases (absent when its share of the ratings is 0)
    autorec.npz   AutoRec's movie codes, decoder and config (``AutoRec.save``; absent when its share of the
                  ratings is 0, as in every artefact written before AutoRec joined the blend)
    blend.json    the weights, the rating-head term's unit, the partners' names and configs
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from pipeline.features.interactions import Interactions
from pipeline.models.autorec import AutoRec
from pipeline.models.base import Recommender, check_fitted
from pipeline.models.baselines import EASE, EASE_MAX_ITEMS, BiasedMF, BiasedMFConfig, EASEConfig
from pipeline.models.blend.members import MEMBERS
from pipeline.models.blend.scorer import BlendRecommender, rating_scale
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.implicit_mf import ALS, ALSConfig
from pipeline.models.vectors import VectorModel

log = logging.getLogger(__name__)

# EASE_MAX_ITEMS (re-exported): EASE's default cap; above it EASE has weights for the most-rated movies only.
__all__ = ["EASE_MAX_ITEMS", "Partners", "PublishedBlend", "fit_members", "fit_partners"]


@dataclass
class PublishedBlend:
    """The network plus its blend partners, scored by dense user/movie index (``network.user_map`` etc.)."""

    network: HybridArtifact
    rated: sp.csr_matrix  # users x movies, 1 where rated up to the cut-off
    weights: BlendWeights = field(default_factory=BlendWeights)
    ease: EASE | None = None
    mf: BiasedMF | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    rating_scale: float = 1.0  # the rating-head term's unit: the standard deviation of the train ratings
    als: ALS | None = None  # implicit ALS, fitted on the same ratings (its ranking share > 0 only)
    members: dict[str, VectorModel] = field(default_factory=dict)  # by name, fitted on the same ratings
    autorec: AutoRec | None = None  # the rating blend's third member (its rating share > 0 only)

    def __post_init__(self) -> None:
        if self.weights.ease_weight > 0 and self.ease is None:
            raise ValueError("an EASE share above 0 (network and ALS below 1) needs the EASE partner")
        if self.weights.als_weight > 0 and self.als is None:
            raise ValueError("an ALS weight above 0 needs the ALS partner")
        if self.weights.mf_weight > 0 and self.mf is None:
            raise ValueError("a rating weight below 1 needs the biased MF partner")
        if self.weights.autorec_weight > 0 and self.autorec is None:
            raise ValueError("an AutoRec weight above 0 needs the AutoRec partner")
        self._blend = BlendRecommender(
            self.network,
            self.ease,
            self.weights,
            self.mf,
            self.rating_scale,
            als=self.als,
            members=self.members,
            autorec=self.autorec,
        )

    # --- building ---------------------------------------------------------------------------------------

    @classmethod
    def from_training(
        cls,
        network: HybridArtifact,
        train: Interactions,
        weights: BlendWeights,
        meta: dict[str, Any] | None = None,
        ease_config: EASEConfig | None = None,
        als_config: ALSConfig | None = None,
        members: Mapping[str, Callable[[], VectorModel]] | None = None,
        fitted_members: Mapping[str, VectorModel] | None = None,
    ) -> PublishedBlend:
        """Fit the partners the weights call for on ``train`` (the network's own training data;
        ``fit_partners``).

        ``members``: a factory of each further ranking member by name (``members.member_factories``); those
        the weights give a share are built and fitted here, and one missing is a ``ValueError``;
        ``fitted_members``: those already fitted on ``train`` (``fit_members``), taken as they are.

        ``ease_config`` defaults to ``EASEConfig()``, as the evaluation that chose the weights uses: above its
        ``max_items`` movies EASE has weights for the most-rated ones only (the cap is recorded in meta).
        ``als_config`` defaults to ``ALSConfig()``, as the evaluation's ALS."""
        ease_config = ease_config or EASEConfig()
        partners = fit_partners(train, weights, ease_config, als_config, members, fitted_members)
        return cls(
            network,
            train.binary_matrix(),
            weights,
            partners.ease,
            partners.mf,
            {**(meta or {}), "ease_max_items": ease_config.max_items},
            rating_scale(train),
            partners.als,
            partners.members,
            partners.autorec,
        )

    # --- scoring ----------------------------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.network.user_map)

    @property
    def n_items(self) -> int:
        return len(self.network.item_map)

    @property
    def rerank_weight(self) -> float:
        return self.weights.rerank_weight

    def predict_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, movie) index pairs: the rating blend."""
        return self._blend.predict(np.asarray(users, np.int64), np.asarray(items, np.int64))

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Ranking scores (len(users) x n_items, higher is better) of the ranking blend, every term for every
        movie; rated movies are not masked here (see ``rated``)."""
        return self._blend.score_users(np.asarray(users, np.int64))

    def retrieval_scores(self, users: np.ndarray) -> np.ndarray:
        """The cheap terms of ``score_users`` (dot product, ALS, EASE) for every movie."""
        return self._blend.retrieval_scores(np.asarray(users, np.int64))

    def rerank_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The rating-head term of ``score_users`` for one row of movie indices per user (-1: NaN);
        ``retrieval_scores + rerank_scores`` at those movies equals ``score_users`` there."""
        return self._blend.rerank_scores(np.asarray(users, np.int64), items)

    def describe(self) -> str:
        return self.weights.describe()

    # --- persistence ------------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.network.save(directory / "network")
        coo = self.rated.tocoo()
        np.savez_compressed(
            directory / "rated.npz", users=coo.row.astype(np.int32), items=coo.col.astype(np.int32)
        )
        if self.ease is not None:
            np.save(directory / "ease.npy", check_fitted(self.ease.weights_, self.ease.name))
            if self.ease.kept_ is not None:
                np.save(directory / "ease_kept.npy", self.ease.kept_.astype(np.int32))
        if self.als is not None:
            self.als.save(directory / "als.npz")
        for name, member in self.members.items():
            member.save(directory / f"member-{name}.npz")
        if self.autorec is not None:
            self.autorec.save(directory / "autorec.npz")
        if self.mf is not None:
            mu, user_factors, item_factors, user_bias, item_bias = self.mf.parameters()
            np.savez(
                directory / "mf.npz",
                user_factors=user_factors,
                item_factors=item_factors,
                user_bias=user_bias,
                item_bias=item_bias,
                mu=np.float64(mu),
                rating_range=np.asarray(self.mf.rating_range_, np.float64),
            )
        (directory / "blend.json").write_text(
            json.dumps(
                {
                    **self.weights.to_dict(),
                    "rating_scale": self.rating_scale,
                    "partner": "ease" if self.ease else None,
                    "rating_partner": "biased_mf" if self.mf else None,
                    "ease_lambda": self.ease.config.lam if self.ease else None,
                    "ease_max_items": self.ease.config.max_items if self.ease else None,
                    "mf_factors": self.mf.config.factors if self.mf else None,
                    "als_partner": "als" if self.als else None,
                    "als_config": dataclasses.asdict(self.als.config) if self.als else None,
                    "autorec_config": dataclasses.asdict(self.autorec.config) if self.autorec else None,
                    "member_files": {name: f"member-{name}.npz" for name in self.members},
                    "meta": self.meta,
                },
                indent=1,
                default=str,
            )
        )
        return directory

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> PublishedBlend:
        directory = Path(directory)
        spec = json.loads((directory / "blend.json").read_text())
        network = HybridArtifact.load(directory / "network", device=device)
        pairs = np.load(directory / "rated.npz")
        rated = sp.csr_matrix(
            (np.ones(len(pairs["users"]), np.float32), (pairs["users"], pairs["items"])),
            shape=(len(network.user_map), len(network.item_map)),
        )
        ease = None
        if (directory / "ease.npy").exists():
            config = EASEConfig(
                lam=spec.get("ease_lambda") or EASEConfig.lam,
                max_items=spec.get("ease_max_items") or EASEConfig.max_items,
            )
            kept_file = directory / "ease_kept.npy"
            kept = np.load(kept_file) if kept_file.exists() else None
            ease = EASE.restore(config, np.load(directory / "ease.npy"), rated, kept)
        mf = None
        if (directory / "mf.npz").exists():
            arrays = np.load(directory / "mf.npz")
            mf = BiasedMF(BiasedMFConfig(factors=spec.get("mf_factors") or BiasedMFConfig.factors))
            mf.user_factors_, mf.item_factors_ = arrays["user_factors"], arrays["item_factors"]
            mf.user_bias_, mf.item_bias_ = arrays["user_bias"], arrays["item_bias"]
            mf.mu_, mf.rating_range_ = float(arrays["mu"]), tuple(arrays["rating_range"].tolist())
        als = ALS.load(directory / "als.npz") if (directory / "als.npz").exists() else None
        autorec_file = directory / "autorec.npz"
        autorec = AutoRec.load(autorec_file) if autorec_file.exists() else None
        members = {
            name: MEMBERS[name].kind.load(directory / file)
            for name, file in (spec.get("member_files") or {}).items()
        }
        return cls(
            network,
            rated,
            BlendWeights.from_dict(spec),
            ease,
            mf,
            spec.get("meta", {}),
            float(spec.get("rating_scale", 1.0)),
            als,
            members,
            autorec,
        )


@dataclass(frozen=True)
class Partners:
    """The fitted partners of a blend; None (or absent from ``members``) where the weights give no share."""

    ease: EASE | None
    als: ALS | None
    mf: BiasedMF | None
    autorec: AutoRec | None
    members: dict[str, VectorModel]


def fit_partners(
    train: Interactions,
    weights: BlendWeights,
    ease_config: EASEConfig | None = None,
    als_config: ALSConfig | None = None,
    members: Mapping[str, Callable[[], VectorModel]] | None = None,
    fitted_members: Mapping[str, VectorModel] | None = None,
) -> Partners:
    """Fit on ``train`` the partners ``weights`` give a share, each fit's time logged (``from_training``'s
    contract); a member with a share and no factory in ``members`` is a ``ValueError``, raised before any
    fit. ``fitted_members``: members already fitted on ``train`` (``fit_members``, beside the network),
    taken as they are."""
    fitted = dict(fitted_members or {})
    missing = sorted(set(weights.active_members) - set(members or {}) - set(fitted))
    if missing:
        raise ValueError(f"the weights give {missing} a share but no factory builds them")
    fitted.update(fit_members(train, [n for n in weights.active_members if n not in fitted], members or {}))
    return Partners(
        ease=_fit("EASE", EASE(ease_config), train) if weights.ease_weight > 0 else None,
        als=_fit("ALS", ALS(als_config), train) if weights.als_weight > 0 else None,
        mf=_fit("biased MF", BiasedMF(), train) if weights.mf_weight > 0 else None,
        autorec=_fit("AutoRec", AutoRec(), train) if weights.autorec_weight > 0 else None,
        members={name: fitted[name] for name in weights.active_members},
    )


def fit_members(
    train: Interactions, names: Sequence[str], members: Mapping[str, Callable[[], VectorModel]]
) -> dict[str, VectorModel]:
    """The named members built by their factories in ``members`` and fitted on ``train``, each fit's time
    logged; ``KeyError`` for a name without a factory."""
    return {name: _fit(name, members[name](), train) for name in names}


_F = TypeVar("_F", bound=Recommender)


def _fit(name: str, model: _F, train: Interactions) -> _F:
    """``model`` fitted on ``train``, its time logged: at large sizes a partner's fit takes minutes."""
    start = time.perf_counter()
    model.fit(train)  # in place: every Recommender's fit returns the model itself
    log.info("blend partner %s fitted on %d ratings in %.1f s", name, len(train), time.perf_counter() - start)
    return model
