"""NeuMF (He et al. 2017, "Neural Collaborative Filtering") in PyTorch on the CPU: an evaluation-only,
ranking-only model beside LightGCN (``lightgcn``) and the implicit-feedback factorisations (``implicit_mf``).

Two branches score a (user, movie) pair, each with its own embeddings of every user and movie (``factors``
wide, initialised N(0, 0.01²) as in the paper's code):

* GMF, generalised matrix factorisation: the elementwise product ``p_u ⊙ q_i`` of the GMF embeddings;
* MLP: the concatenation ``[m_u, m_i]`` of the MLP embeddings (``2 * factors`` wide) through a tower of
  fully connected layers, ``mlp_layers`` wide (e.g. 64 → 32 → 16), each followed by a ReLU.

The NeuMF layer fuses them: one linear map of ``[GMF output, MLP output]`` to a logit, ``σ(logit)`` being
the probability that the user likes the movie. The layers' weights and biases start uniform in
``±1/sqrt(fan_in)`` (``torch.nn.Linear``'s default). The paper also pretrains GMF and MLP apart and starts
NeuMF from them; here the whole model is trained jointly from that start, once (the paper's NeuMF without
pre-training). A score is the logit; ``predict`` is NaN throughout (ranking only).

Training is pointwise, for ranking, on the train split's positives: the ratings ``>= min_rating``, a pair
rated twice once (``implicit_mf.positives``). Each epoch pairs every positive (label 1) with ``negatives``
movies drawn uniformly from those that are not the user's positives (label 0; a movie rated below
``min_rating`` can be drawn: it is not a positive; ``lightgcn.sample_negatives``), shuffles the rows and
takes them ``batch_size`` at a time with Adam. The loss of a batch is the mean binary cross-entropy of its
logits plus ``regularization`` times half the squared norm of the batch's embedding rows (the user's and
the movie's, both branches), divided by the batch size (the L2 term LightGCN takes); the layers are not
penalised.

Scoring every movie for a block of users runs the network on every (user, movie) pair, in float64 numpy,
then float32. The MLP's first layer is split by its input halves, ``W [m_u, m_i] = W_u m_u + W_i m_i``, so
the movies' half is one product per call and the users' half one for the batch's users; the rest of the
tower runs on ``SCORE_PAIRS`` (user, movie) pairs at a time, whole users, so memory stays bounded. As
for the factor models (``base.dot_scores``), a user's scores do not depend on the other users of the batch.
Rated movies are scored like the others: masking them is the evaluator's job (the ``Recommender``
contract).

Determinism: the embeddings and layers are initialised from a ``torch.Generator`` and the negatives and
row order drawn from a ``numpy`` generator, both seeded by ``seed``; nothing reads or changes torch's global
random state. ``fit`` holds torch to one thread (and restores the count after), as LightGCN's does, so that
a re-run with the same seed gives the same floats (checked in ``tests/pipeline/models/test_neumf.py``).

Speed: on ML-100K's temporal validation split (64k ratings, 37.5k positives at >= 4 stars, so 187k rows an
epoch with 4 negatives) an epoch took 1.2 to 3 s at the defaults, on one thread of a busy 2-core machine:
the defaults' 20 epochs fit in 35 to 60 s there, 55 s on the protocol's whole train part (80k ratings).

Defaults were chosen on ML-100K on the temporal validation split carved from the temporal protocol's train
part, by NDCG@10 (``make_split(data, "temporal")``, then ``temporal_split(train)`` and ``evaluate_model``,
as ``bench.model_grid`` does; never the test split), 12 points. The paper's learning rate 0.001, 4
negatives and the 64 → 32 → 16 tower held unless said. Points, the chosen one first, and their
validation NDCG@10:

* 0.1401: factors 32, 20 epochs, regularization 0. At 10 and 40 epochs 0.1377 and 0.1291 (the training
  loss still falling: longer fits overfit); at 64 factors 0.1358, 0.1360 and 0.1334 (10, 20, 40 epochs); at
  16 factors, 20 epochs, 0.1348.
* Regularization 0.01 was lower at 32 factors: 0.1228, 0.1323, 0.1288 (10, 20, 40 epochs).
* Single points from the chosen one: 8 negatives 0.1381; learning rate 0.003 at 10 epochs 0.1314.

On ML-100K NeuMF ranks below ALS (0.162) and LightGCN (0.1530) on the same validation split. Fitted once at
the defaults on the temporal protocol's train part, it scored test NDCG@10 0.1626 and coverage@10 0.376
(EASE 0.173, ALS about 0.19, LightGCN 0.179 there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from pipeline.core.device import one_torch_thread
from pipeline.features.interactions import Interactions
from pipeline.models.base import HYPERPARAMETERS, check_fitted, no_ratings
from pipeline.models.implicit_mf import positives
from pipeline.models.lightgcn import sample_negatives
from pipeline.models.saved import load_arrays, save_arrays

INIT_STD = 0.01  # the embeddings' initial standard deviation (the paper's code)
SCORE_PAIRS = 1 << 17  # (user, movie) pairs the tower scores at a time (about 64 MiB per float64 layer)


@dataclass(frozen=True, config=HYPERPARAMETERS)
class NeuMFConfig:
    factors: PositiveInt = 32  # width of the GMF embeddings, and of the MLP's user and movie embeddings each
    mlp_layers: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (64, 32, 16)  # the tower's widths
    negatives: PositiveInt = 4  # sampled non-positive movies per positive, each epoch
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 1024  # (user, movie, label) rows per step
    learning_rate: PositiveFloat = 1e-3  # Adam's
    regularization: NonNegativeFloat = 0.0  # L2 on the batch's embedding rows
    min_rating: NonNegativeFloat = 4.0  # ratings below this are not positives
    seed: NonNegativeInt = 42


def _layer_names(n_layers: int) -> list[str]:
    return [f"{kind}{k}" for k in range(n_layers) for kind in ("mlp_weight", "mlp_bias")]


class NeuMF:
    """NeuMF (GMF and MLP branches, one fused output) trained on sampled negatives (see the module doc)."""

    name = "NeuMF"

    def __init__(self, config: NeuMFConfig | None = None) -> None:
        self.config = config if config is not None else NeuMFConfig()
        if not isinstance(self.config, NeuMFConfig):
            raise TypeError(f"{self.name} takes a NeuMFConfig, not {type(config).__name__}")
        # the fitted parameters by name, float32: user_gmf, item_gmf, user_mlp, item_mlp, mlp_weight{k},
        # mlp_bias{k} (k per layer of the tower), output_weight, output_bias
        self.parameters_: dict[str, np.ndarray] | None = None
        self.losses_: list[float] = []  # the mean cross-entropy (without the L2 term) of each epoch

    def fit(self, train: Interactions) -> Self:
        with one_torch_thread():  # deterministic only on one thread (see the module doc)
            return self._fit(train)

    def _initial(self, n_users: int, n_items: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        params: dict[str, torch.Tensor] = {}
        for name, rows in (("user_gmf", n_users), ("item_gmf", n_items), ("user_mlp", n_users)):
            params[name] = torch.randn(rows, c.factors, generator=generator) * INIT_STD
        params["item_mlp"] = torch.randn(n_items, c.factors, generator=generator) * INIT_STD

        def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
            bound = 1.0 / fan_in**0.5
            return (torch.rand(shape, generator=generator) * 2 - 1) * bound

        width = 2 * c.factors
        for k, out in enumerate(c.mlp_layers):
            params[f"mlp_weight{k}"] = uniform((out, width), width)
            params[f"mlp_bias{k}"] = uniform((out,), width)
            width = out
        fused = c.factors + width
        params["output_weight"] = uniform((fused,), fused)
        params["output_bias"] = uniform((1,), fused)
        return params

    def _logits(self, params: dict[str, torch.Tensor], u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        gmf = params["user_gmf"][u] * params["item_gmf"][i]
        x = torch.cat([params["user_mlp"][u], params["item_mlp"][i]], 1)
        for k in range(len(self.config.mlp_layers)):
            x = torch.relu(torch.nn.functional.linear(x, params[f"mlp_weight{k}"], params[f"mlp_bias{k}"]))
        return torch.cat([gmf, x], 1) @ params["output_weight"] + params["output_bias"]

    def _fit(self, train: Interactions) -> Self:
        c = self.config
        users, items, _ = positives(train, c.min_rating)
        n_users, n_items = train.n_users, train.n_items
        keys = np.sort(users * n_items + items)
        rng = np.random.default_rng(c.seed)
        generator = torch.Generator().manual_seed(c.seed)
        params = self._initial(n_users, n_items, generator)
        for tensor in params.values():
            tensor.requires_grad_(True)
        optimiser = torch.optim.Adam(list(params.values()), lr=c.learning_rate)
        repeated = np.repeat(users, c.negatives)
        row_users = torch.from_numpy(np.concatenate([users, repeated]))
        labels = torch.cat([torch.ones(len(users)), torch.zeros(len(repeated))])
        self.losses_ = []
        for _ in range(c.epochs if len(users) else 0):
            row_items = torch.from_numpy(
                np.concatenate([items, sample_negatives(repeated, keys, n_items, rng)])
            )
            order = torch.from_numpy(rng.permutation(len(row_users)))
            total = 0.0
            for start in range(0, len(order), c.batch_size):
                batch = order[start : start + c.batch_size]
                u, i, y = row_users[batch], row_items[batch], labels[batch]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(self._logits(params, u, i), y)
                # row norms first, as LightGCN's: each sum stays one thread's, whatever the thread count
                l2 = (
                    params["user_gmf"][u].square().sum(1)
                    + params["item_gmf"][i].square().sum(1)
                    + params["user_mlp"][u].square().sum(1)
                    + params["item_mlp"][i].square().sum(1)
                ).sum() / 2
                optimiser.zero_grad()
                (loss + c.regularization * l2 / len(batch)).backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            self.losses_.append(total / len(row_users))
        self.parameters_ = {name: t.detach().numpy().astype(np.float32) for name, t in params.items()}
        return self

    def parameters(self) -> dict[str, np.ndarray]:
        """The fitted parameters by name (float32 arrays); ``NotFitted`` before ``fit``."""
        return check_fitted(self.parameters_, self.name)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        self.parameters()
        return no_ratings(users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """The logit of every movie for each of ``users``, ``(len(users), n_items)`` float32 (see the module
        doc: float64 throughout, the tower ``SCORE_PAIRS`` pairs at a time)."""
        w = {name: a.astype(np.float64) for name, a in self.parameters().items()}
        users = np.asarray(users, np.int64)
        f, layers = self.config.factors, len(self.config.mlp_layers)
        h_gmf, h_mlp = w["output_weight"][:f], w["output_weight"][f:]
        n_items = len(w["item_gmf"])
        first = w["mlp_weight0"]
        user_half = w["user_mlp"][users] @ first[:, :f].T + w["mlp_bias0"]  # (users, width)
        item_half = w["item_mlp"] @ first[:, f:].T  # (n_items, width)
        gmf = (w["user_gmf"][users] * h_gmf) @ w["item_gmf"].T  # h · (p_u ⊙ q_i) = (p_u ⊙ h) · q_i
        out = np.empty((len(users), n_items), np.float32)
        block = max(1, SCORE_PAIRS // max(n_items, 1))
        for lo in range(0, len(users), block):
            x = np.maximum(user_half[lo : lo + block, None, :] + item_half[None, :, :], 0.0)
            for k in range(1, layers):
                x = np.maximum(x @ w[f"mlp_weight{k}"].T + w[f"mlp_bias{k}"], 0.0)
            logits = gmf[lo : lo + block] + x @ h_mlp + w["output_bias"][0]
            out[lo : lo + block] = logits
        return out

    def save(self, path: Path) -> Path:
        """The fitted parameters and the config in one ``.npz`` file at ``path``."""
        return save_arrays(path, self.name, self.config, self.parameters())

    @classmethod
    def load(cls, path: Path) -> Self:
        config, arrays = load_arrays(path, cls.name, NeuMFConfig)
        expected = {"user_gmf", "item_gmf", "user_mlp", "item_mlp", "output_weight", "output_bias"}
        expected |= set(_layer_names(len(config.mlp_layers)))
        if set(arrays) != expected:
            raise ValueError(f"{path} holds the arrays {sorted(arrays)}, not those of its config's NeuMF")
        model = cls(config)
        model.parameters_ = arrays
        return model
