"""A new user from a handful of ratings: fold-in to the published blend, no retraining.

Given ``(movie index, rating)`` pairs of a user the model has never seen, the catalogue is scored with the
published blend's own terms and weights (``PublishedBlend``, ``BlendRecommender``'s formula, every term for
every movie):

* **EASE**, exactly: its scores are ``x @ B`` with ``x`` the binary rated vector, so the given movies make a
  new user's row as they would a known one's.
* **Implicit ALS** (when the blend gives it a share), exactly as ALS itself solves a user: the item factors
  fixed, the user's factors are the solution of ALS's normal equation over the given ratings
  (``ALS.user_vector``: positives >= ``min_rating`` with confidence ``1 + alpha x rating``). A known user
  given all of their own ratings gets the exact solve where training stopped at a few conjugate-gradient
  steps of the same equation: close to their trained factors, not equal.
* **SASRec** (a member of the blend), exactly as it computes a known user's vector: the hidden state at the
  last of the given movies, read in the order given (oldest first), over the saved movie vectors
  (``SASRec.user_vector``). A known user given their own train sequence gets their trained vector.
* **The blend's other members** (LightGCN, BPR, logistic MF) are left out: the artefact keeps their fitted
  user vectors, not what computes one, so a folded-in user is ranked by the other terms with their shares
  scaled up to sum to 1 (``BlendWeights.without_members``); so is SASRec from an artefact saved before its
  network was kept.
* **The network** (its dot product and its rating head) through a folded-in user vector. A known user's
  vector is ``id embedding + demographics + |N|^-1/2 x sum of the history embeddings of the movies rated``
  (the SVD++-style history term). A new user has no id row and no demographics, so the fold-in starts from
  the average known user (the mean of ``id embedding + demographics`` over the users with ratings, and the
  mean user bias), adds the history term of the given movies, then (``method="fit"``, the default) fits an
  offset of the id part and the user bias to the given ratings with every other weight frozen: a fixed
  number of Adam steps on the training objective itself restricted to this user — squared error of the
  rating head, the ranking head's softmax cross-entropy of each given movie against the whole catalogue (at
  the training temperature and weight), and the training's L2 on the id embedding — with each pair's own
  movie left out of its history bag, as training leaves it out. Starting from zero, with no sampling, it is
  deterministic: the same pairs give the same scores.

**The popularity prior.** Five ratings say little: on held-out ML-100K users the most-rated movies rank their
later favourites better (NDCG@10) than any fold-in alone. So the folded-in scores, standardised over the
catalogue, are mixed with the standardised log-popularity of the movies (train ratings per movie) with the
weight ``c / (c + n)`` for ``n`` given movies: the prior counts as ``c`` ratings, so it leads with a few
ratings and fades as they grow (``FOLDIN_POPULARITY_PRIOR``, chosen on held-out validation users by
``bench.foldin``; 0 turns it off).

Why ``fit``: without the prior it ranks held-out ML-100K users best of the three methods here
(``python -m bench.foldin``: their first 5 ratings in, the rest held out); with it the three are within 1%,
and ``fit`` keeps a known user's own list best (the tests). ``history`` (the average user plus the history
term, no fit) and ``neighbours`` (the similarity-weighted mean vector of the known users who rated the same
movies) are kept for the comparison; ``fit`` costs about 40 ms a user on a 2-core CPU, they 3-5 ms. The
figures are in ``bench/README.md``. For a known user given all of their own ratings, the EASE term is their
own and the history term too, and the fitted offset stands in for their id embedding and demographics, so
the list comes out close to the one the batch published for them.

Pure numpy/torch over a loaded ``PublishedBlend``: the API (``POST /recommendations/for-ratings``) and the
measurement share it. A ``FoldIn`` computes the per-model constants once; build one per served model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.core.defaults import FOLDIN_POPULARITY_PRIOR
from pipeline.core.device import one_torch_thread
from pipeline.core.errors import InputError
from pipeline.models.base import Scorer
from pipeline.models.baselines import EASE
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.scorer import BlendRecommender, standardise
from pipeline.models.implicit_mf import ALS
from pipeline.models.sasrec import SASRec
from pipeline.models.topn import top_k

Method = Literal["fit", "history", "neighbours"]
METHODS: tuple[Method, ...] = ("fit", "history", "neighbours")
DEFAULT_METHOD: Method = "fit"
FIT_STEPS = 40  # Adam steps on the user's offset and bias
FIT_LR = 0.05
NEIGHBOURS = 50  # known users averaged by the ``neighbours`` method


@dataclass(frozen=True)
class FoldedUser:
    """A new user as the network sees one: a user vector and a rating bias, and the movies given."""

    vector: np.ndarray  # (d,)
    bias: float
    items: np.ndarray  # the given movie indices, in the order given
    ratings: np.ndarray  # their ratings


class _FoldedNetwork:
    """The network for one folded-in user, as the blend's ``Scorer``/``RatingMatrix`` (row 0 is the user)."""

    name = "hybrid (folded-in)"

    def __init__(self, fold: FoldIn, user: FoldedUser) -> None:
        self._fold = fold
        self._u = torch.as_tensor(user.vector, device=fold.device).unsqueeze(0)
        self._b = torch.tensor([user.bias], device=fold.device)

    @torch.no_grad()
    def _ratings(self, items: torch.Tensor) -> torch.Tensor:
        f = self._fold
        n = len(items)
        pred = f.net.rating_given_bias(
            self._b.expand(n), self._u.expand(n, -1), f.vec[items], f.item_bias[items]
        )
        return pred.float().clamp(*f.rating_range)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        idx = torch.as_tensor(np.asarray(items, np.int64), device=self._fold.device)
        return self._ratings(idx).cpu().numpy()

    @torch.no_grad()
    def score_users(self, users: np.ndarray) -> np.ndarray:
        f = self._fold
        return f.net.ranking(self._u, f.vec, f.item_bias).float().cpu().numpy()

    def rating_matrix(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        f = self._fold
        if items is None:
            return self._ratings(torch.arange(f.n_items, device=f.device)).cpu().numpy()[None, :]
        cols = np.asarray(items, np.int64).reshape(1, -1)
        out = np.full(cols.shape, np.nan, np.float32)
        keep = cols[0] >= 0
        out[0, keep] = self._ratings(torch.as_tensor(cols[0, keep], device=f.device)).cpu().numpy()
        return out


class _FoldedRow:
    """A member's scores for one folded-in user (row 0), computed once, as the blend's ``Scorer``."""

    name = "folded-in"
    _row: np.ndarray  # (1, n_items)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(np.asarray(items).shape, np.nan, np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self._row


class _FoldedEASE(_FoldedRow):
    """EASE for one rated vector: ``x @ B`` (``EASE.score_items``), exactly as for a known user."""

    name = "EASE (folded-in)"

    def __init__(self, ease: EASE, items: np.ndarray) -> None:
        self._row = ease.score_items(items)[None, :]


class _FoldedALS(_FoldedRow):
    """Implicit ALS for one user folded in from their ratings (``ALS.user_vector``): ``x @ Yᵀ``."""

    name = "ALS (folded-in)"

    def __init__(self, als: ALS, items: np.ndarray, ratings: np.ndarray) -> None:
        _, q = als.factors()
        self.vector = als.user_vector(items, ratings)
        self._row = (self.vector @ q.T)[None, :].astype(np.float32)


class _FoldedSequence(_FoldedRow):
    """SASRec for one user folded in from the movies given, in the order given (``SASRec.user_vector``)."""

    name = "SASRec (folded-in)"

    def __init__(self, sasrec: SASRec, items: np.ndarray) -> None:
        self.vector = sasrec.user_vector(items)
        self._row = (self.vector @ sasrec.fitted_vectors()[1].T)[None, :].astype(np.float32)


class FoldIn:
    """Fold-in scoring with one ``PublishedBlend``; the per-model constants are computed once."""

    def __init__(
        self,
        model: PublishedBlend,
        method: Method = DEFAULT_METHOD,
        steps: int = FIT_STEPS,
        prior: float = FOLDIN_POPULARITY_PRIOR,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown fold-in method {method!r}; expected one of {', '.join(METHODS)}")
        if not prior >= 0:
            raise ValueError(f"the popularity prior counts as ratings: 0 or more, not {prior}")
        self.model, self.method, self.steps, self.prior = model, method, steps, prior
        artifact = model.network
        self.net, self.device = artifact.net, artifact.device
        self.config = artifact.config
        self.n_items = model.n_items
        self.rating_range = artifact.rating_range
        self.vec, self.item_bias = artifact.catalogue_vectors()
        counts = np.bincount(model.rated.indices, minlength=self.n_items)  # train ratings per movie
        self._popularity = standardise(np.log1p(counts.astype(np.float64))[None, :])[0]
        # The history embeddings pool only where the model was trained with them and knows the rated pairs.
        self._history = self.net.history_emb if artifact.history_pairs is not None else None
        known = np.flatnonzero(np.diff(model.rated.indptr) > 0)  # users with a rating up to the cut-off
        if len(known) == 0:
            raise ValueError("the model knows no user with a rating: nothing to fold in against")
        self._known = known
        with torch.no_grad():
            users = torch.as_tensor(known, device=self.device)
            x = (
                torch.as_tensor(artifact.users[known], device=self.device)
                if artifact.users.shape[1]
                else None
            )
            own = self.net.user_vectors(users, x)  # id embedding + demographics, no history
            self._base = own.mean(0)
            self._base_bias = float(self.net.user_bias(users).mean())

    # --- the user --------------------------------------------------------------------------------------

    def check(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(items, ratings)`` as arrays, or ``InputError``: at least one pair, movie indices of the
        model's catalogue, each once, finite ratings."""
        items = np.asarray(items, np.int64).ravel()
        ratings = np.asarray(ratings, np.float32).ravel()
        if len(items) == 0:
            raise InputError("a fold-in needs at least one rated movie")
        if items.shape != ratings.shape:
            raise InputError(f"{len(items)} movies and {len(ratings)} ratings do not pair up")
        if items.min() < 0 or items.max() >= self.n_items:
            raise InputError(f"movie indices must be within 0..{self.n_items - 1}")
        if len(np.unique(items)) != len(items):
            raise InputError("each movie once")
        if not np.isfinite(ratings).all():
            raise InputError("ratings must be finite")
        return items, ratings

    # One intra-op thread: a fold-in is many tiny torch ops between numpy's BLAS calls, and on a 2-core
    # machine torch's second thread waited on BLAS's spinning ones (about 5x the time: bench/README.md).
    @one_torch_thread()
    def user(self, items: np.ndarray, ratings: np.ndarray) -> FoldedUser:
        """The folded-in user of ``(items, ratings)`` (see the module doc for ``method``)."""
        items, ratings = self.check(items, ratings)
        if self.method == "neighbours":
            return self._neighbours(items, ratings)
        idx = torch.as_tensor(items, device=self.device)
        with torch.no_grad():
            summed = self._history(idx).sum(0) if self._history is not None else torch.zeros_like(self._base)
        n = len(items)
        start = self._base + summed / np.sqrt(n)
        if self.method == "history":
            return FoldedUser(start.float().cpu().numpy(), self._base_bias, items, ratings)
        offset, bias = self._fit(idx, torch.as_tensor(ratings, device=self.device), summed)
        return FoldedUser((start + offset).float().cpu().numpy(), bias, items, ratings)

    def _fit(
        self, idx: torch.Tensor, ratings: torch.Tensor, summed: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        """The id-part offset and user bias that minimise the training objective on the given pairs."""
        cfg, n = self.config, len(idx)
        # each pair sees the history of the other given movies (training's leave-one-out bag)
        if self._history is not None:
            with torch.no_grad():
                bags = (summed.unsqueeze(0) - self._history(idx)) / max(n - 1, 1) ** 0.5
        else:
            bags = torch.zeros((n, len(self._base)), device=self.device)
        rows = (self._base.unsqueeze(0) + bags).detach()
        vec, item_bias = self.vec[idx], self.item_bias[idx]
        offset = torch.zeros_like(self._base, requires_grad=True)
        bias = torch.tensor(self._base_bias, device=self.device, requires_grad=True)
        opt = torch.optim.Adam([offset, bias], lr=FIT_LR)
        with torch.enable_grad():
            for _ in range(self.steps):
                u = rows + offset
                pred = self.net.rating_given_bias(bias.expand(n), u, vec, item_bias)
                mse = F.mse_loss(pred.float(), ratings)
                logits = self.net.ranking(u, self.vec, self.item_bias).float() / cfg.temperature
                ce = F.cross_entropy(logits, idx)
                loss = mse + cfg.ranking_weight * ce + cfg.embedding_l2 * offset.pow(2).sum()
                # only the user's two parameters: the network's own weights are never touched
                offset.grad, bias.grad = torch.autograd.grad(loss, [offset, bias])
                opt.step()
        return offset.detach(), float(bias.detach())

    def _neighbours(self, items: np.ndarray, ratings: np.ndarray) -> FoldedUser:
        """The similarity-weighted mean vector and bias of the known users who rated the same movies
        (cosine of the binary rated vectors, the ``NEIGHBOURS`` most similar)."""
        rated = self.model.rated[self._known]
        overlap = np.asarray(rated[:, items].sum(axis=1)).ravel()
        sim = overlap / np.sqrt(np.maximum(np.diff(rated.indptr), 1) * len(items))
        if not (sim > 0).any():  # nobody rated any of them: the average user
            return FoldedUser(self._base.float().cpu().numpy(), self._base_bias, items, ratings)
        top, weight = top_k(sim[None, :], NEIGHBOURS)
        keep = top[0] >= 0
        near, w = self._known[top[0][keep]], weight[0][keep]
        w = np.where(w > 0, w, 0.0)
        vectors = self.model.network.user_vectors(near)[1].float().cpu().numpy()
        with torch.no_grad():
            biases = self.net.user_bias(torch.as_tensor(near, device=self.device)).squeeze(-1).cpu().numpy()
        vector = ((w @ vectors) / w.sum()).astype(np.float32)
        return FoldedUser(vector, float(w @ biases / w.sum()), items, ratings)

    # --- scoring ---------------------------------------------------------------------------------------

    def scores(self, user: FoldedUser) -> np.ndarray:
        """``user``'s scores over the whole catalogue (``n_items``, higher is better; the given movies are
        not masked here): the published ranking blend's, mixed with the popularity prior (module doc)."""
        personal = self.blend_scores(user)
        if self.prior == 0:
            return personal
        w = self.prior / (self.prior + len(user.items))
        return (1 - w) * standardise(personal[None, :].astype(np.float64))[0] + w * self._popularity

    @one_torch_thread()
    def blend_scores(self, user: FoldedUser) -> np.ndarray:
        """The published ranking blend for ``user`` over the whole catalogue, no prior."""
        ease, als = self.model.ease, self.model.als
        partner = _FoldedEASE(ease, user.items) if ease is not None else None
        folded_als = _FoldedALS(als, user.items, user.ratings) if als is not None else None
        members: dict[str, Scorer] = {
            name: _FoldedSequence(member, user.items)
            for name, member in self.model.members.items()
            if isinstance(member, SASRec) and member.folds_in and name in self.model.weights.active_members
        }
        blend = BlendRecommender(
            _FoldedNetwork(self, user),
            partner,
            # the other members and AutoRec need the user's own training
            self.model.weights.without_members(keep=members).without_autorec(),
            self.model.mf,
            self.model.rating_scale,
            als=folded_als,
            members=members,
        )
        return blend.score_users(np.zeros(1, np.int64))[0]

    def recommend(
        self, items: np.ndarray, ratings: np.ndarray, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``n`` movie indices and their scores for a new user who gave ``ratings`` to ``items``,
        never a given movie nor one in ``exclude``; fewer when fewer are left."""
        user = self.user(items, ratings)
        scores = self.scores(user).astype(np.float64)
        scores[user.items] = -np.inf
        if exclude is not None and len(exclude):
            scores[np.asarray(exclude, np.int64)] = -np.inf
        idx, values = top_k(scores[None, :], n)
        keep = idx[0] >= 0
        return idx[0][keep], values[0][keep]
