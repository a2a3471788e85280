"""The blend scorer: the published list can mix the network with the strongest baseline.

The ranking score of a (user, movie) pair is

    weight x z(network dot product) + als_weight x z(ALS) + sum over members m of share_m x z(m)
        + (1 - weight - als_weight - sum of share_m) x z(EASE) + rerank_weight x rating / rating_scale

where z standardises a member's scores per user over the whole catalogue (their scales differ: a dot
product, implicit ALS's factor products, EASE's regression weights) and ``rating`` is the network's full
rating head (its MLP included) in units of the train ratings' standard deviation. The members are further
ranking models by name (``pipeline.models.blend.members``, e.g. SASRec). All but the last term (the cheap
ones) cost a matrix product each (a sparse one for EASE); the rating head costs an MLP per pair,
which is why batch scoring at large catalogues retrieves the top candidates by the cheap terms and runs the
rating head on those only (``pipeline.batch.scoring``). Every weight is chosen on validation data carved out
of the train split — never on the test split it is reported on."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from pipeline.features.interactions import Interactions
from pipeline.models.base import RatingMatrix, Recommender, Scorer
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.topn import mask_rows, retrieve_and_rerank, scatter_rows, top_k

# Rows standardised at a time: their float64 copy and its square stay within a core's cache, so the passes
# the z-scores take (mean, centring, squares, their sum, the division, the blend) read main memory once.
_BLOCK_BYTES = 2 << 20


def _row_blocks(shape: tuple[int, ...]) -> Iterator[slice]:
    step = max(1, _BLOCK_BYTES // (8 * max(shape[1], 1)))
    return (slice(lo, lo + step) for lo in range(0, shape[0], step))


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row's z-scores over its columns, float64: (x - mean) / std with the population std, a constant row
    centred only. The floats of ``(s - s.mean(1)) / s.std(1)`` for ``s`` the scores as float64, exactly (a
    row's sums do not depend on the rows beside it), about 2.5x faster on 87,585 columns (``bench/README.md``,
    bench/batch)."""
    out = np.empty(scores.shape, np.float64)
    for rows in _row_blocks(out.shape):
        block = out[rows]
        block[...] = scores[rows]
        block -= block.mean(axis=1, keepdims=True)
        std = np.sqrt(np.square(block).sum(axis=1, keepdims=True) / block.shape[1])
        block /= np.where(std > 0, std, 1.0)
    return out


@runtime_checkable
class StandardisedScorer(Protocol):
    """A ranking term that hands out its scores already standardised: a weight search that mixes the same
    users' scores at many weights keeps them so, instead of standardising them again at every point."""

    def standardised_scores(self, users: np.ndarray) -> np.ndarray: ...


def standardised(member: Scorer, users: np.ndarray) -> np.ndarray:
    """``member``'s scores of ``users`` standardised per user over the catalogue, float64 (its own when it
    keeps them: ``StandardisedScorer``)."""
    scores, ready = _scores(member, users)
    return scores if ready else standardise(scores)


def _scores(member: Scorer, users: np.ndarray) -> tuple[np.ndarray, bool]:
    """``member``'s scores of ``users``, and whether they are standardised already."""
    if isinstance(member, StandardisedScorer):
        return member.standardised_scores(users), True
    return np.asarray(member.score_users(users)), False


class BlendRecommender:
    """Ranking: see the module doc (``rerank_weight`` 0: no rating-head term).
    Ratings: ``rating_weight`` x network + ``autorec_weight`` x ``autorec`` + the rest (``mf_weight``) x
    ``rating_partner`` (biased MF), each needed only when its share is above 0. The weights are one
    ``BlendWeights`` value; with ``rerank_weight`` > 0 the network must be a ``RatingMatrix`` too. ``partner``
    is EASE (needed when its share ``weights.ease_weight`` > 0), ``als`` implicit ALS (needed when
    ``weights.als_weight`` > 0), ``members`` the further ranking members by name (each needed when its share
    in ``weights.members`` > 0); any of them is any ``Scorer``.

    ``candidates`` K > 0 with ``rated`` (users x movies, the train ratings): ``score_users`` retrieves each
    user's top K unrated movies by the cheap terms and adds the rating-head term on those only, as the
    weekly batch does; every other movie scores ``-inf``. 0: every term for every movie.
    """

    name = "blend"

    def __init__(
        self,
        network: Scorer,
        partner: Scorer | None,
        weights: BlendWeights,
        rating_partner: Scorer | None = None,
        rating_scale: float = 1.0,
        candidates: int = 0,
        rated: sp.csr_matrix | None = None,
        als: Scorer | None = None,
        members: Mapping[str, Scorer] | None = None,
        autorec: Scorer | None = None,
    ) -> None:
        if rating_scale <= 0:
            raise ValueError(f"rating scale must be > 0, got {rating_scale}")
        if weights.ease_weight > 0 and partner is None:
            raise ValueError("an EASE share above 0 (network and ALS below 1) needs a partner")
        if weights.als_weight > 0 and als is None:
            raise ValueError("an ALS weight above 0 needs the ALS member")
        self.members = dict(members or {})
        missing = sorted(set(weights.active_members) - set(self.members))
        if missing:
            raise ValueError(f"the blend gives {missing} a share but has no such member")
        if weights.mf_weight > 0 and rating_partner is None:
            raise ValueError("a rating weight below 1 needs a rating partner")
        if weights.autorec_weight > 0 and autorec is None:
            raise ValueError("an AutoRec weight above 0 needs the AutoRec member")
        self.network, self.partner, self.rating_partner = network, partner, rating_partner
        self.als, self.autorec = als, autorec
        self.weights, self.rating_scale = weights, rating_scale
        if candidates and rated is None:
            raise ValueError("re-ranking candidates needs the rated movies to retrieve around")
        self.candidates, self.rated = candidates, rated

    @property
    def weight(self) -> float:
        return self.weights.weight

    @property
    def als_weight(self) -> float:
        return self.weights.als_weight

    @property
    def rating_weight(self) -> float:
        return self.weights.rating_weight

    @property
    def rerank_weight(self) -> float:
        return self.weights.rerank_weight

    def fit(self, train: Interactions) -> BlendRecommender:
        fitted = (
            self.network,
            self.partner,
            self.als,
            self.rating_partner,
            self.autorec,
            *self.members.values(),
        )
        for member in fitted:
            if isinstance(member, Recommender):
                member.fit(train)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        w = self.weights
        terms = [
            (w.rating_weight, self.network),
            (w.autorec_weight, self.autorec),
            (w.mf_weight, self.rating_partner),
        ]
        ratings: np.ndarray | None = None
        for share, member in terms:
            if share == 0 or member is None:  # a member with a share was checked by the constructor
                continue
            part = share * np.asarray(member.predict(users, items), np.float64)
            ratings = part if ratings is None else ratings + part
        return np.asarray(ratings, np.float32)

    def retrieval_scores(self, users: np.ndarray) -> np.ndarray:
        """The cheap terms (network dot product, ALS, the members, EASE) for every movie: len(users) x
        n_items; a member whose share is 0 is not scored."""
        w = self.weights
        terms: list[tuple[float, Scorer | None]] = [(w.weight, self.network), (w.als_weight, self.als)]
        terms += [(share, self.members[name]) for name, share in w.active_members.items()]
        terms.append((w.ease_weight, self.partner))
        scored: list[tuple[float, np.ndarray, bool]] = []  # (share, scores, standardised already)
        for share, member in terms:
            if share == 0:
                continue
            if member is None:  # the constructor checked; a member set to None since is a bug
                raise ValueError(f"a cheap-term share of {share} needs its member")
            scored.append((share, *_scores(member, users)))
        if not scored:  # unreachable: the shares sum to 1
            raise ValueError("the blend has no cheap term")
        # Standardised, weighted and summed a block of users at a time, in float64 as one matrix would be.
        mixed = np.empty(scored[0][1].shape, np.float32)
        for rows in _row_blocks(mixed.shape):
            block: np.ndarray | None = None
            for share, scores, ready in scored:
                part = share * (scores[rows] if ready else standardise(scores[rows]))
                block = part if block is None else block + part
            mixed[rows] = block
        return mixed

    def rerank_scores(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """The rating-head term for a row of movie indices per user (-1: NaN), or every movie when None."""
        if self.rerank_weight == 0:
            raise ValueError("this blend has no rating-head term")
        if not isinstance(self.network, RatingMatrix):
            raise TypeError(f"{self.network.name} has no rating_matrix: it cannot re-rank")
        ratings = self.network.rating_matrix(np.asarray(users, np.int64), items)
        return (self.rerank_weight / self.rating_scale * ratings).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Every term for every movie, or for the retrieved candidates only (see ``candidates``)."""
        if self.rerank_weight == 0 or not self.candidates:
            scores = self.retrieval_scores(users)
            return scores + self.rerank_scores(users) if self.rerank_weight > 0 else scores
        found, full = retrieve_and_rerank(
            self._unrated_cheap(users), self.candidates, lambda cols: self.rerank_scores(users, cols)
        )
        return scatter_rows(found, full, self.rated.shape[1])  # type: ignore[union-attr]

    def retrieve(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each user's top ``candidates`` unrated movies by the cheap terms: (indices, cheap scores)."""
        return top_k(self._unrated_cheap(users), self.candidates)

    def _unrated_cheap(self, users: np.ndarray) -> np.ndarray:
        return mask_rows(self.retrieval_scores(users), self.rated[users])  # type: ignore[index]


def rating_scale(train: Interactions) -> float:
    """The unit of the rating-head term: the standard deviation of the train ratings (1 when constant)."""
    std = float(np.std(train.ratings)) if len(train) else 0.0
    return std if std > 0 else 1.0
