"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation") in PyTorch on the CPU, with the
movies' content vectors among the item inputs: an evaluation-only, ranking-only model beside LightGCN.

The sequence of a user is their train ratings ``>= min_rating`` ordered by timestamp, ties by movie index
(``user_sequences``). A movie's vector is a free id embedding plus a linear projection (no bias) of its
content vector when the model is given one (``content``, ``(n_items, d)``, rows aligned with the
``Interactions`` movie indices; ``movie_content`` builds it from ``TrainingData``), so a movie with few
ratings still has a vector that says what it is; without content the model is plain SASRec, ids only. The
same vectors are the inputs and the outputs (tied).

The network: the last ``max_length`` movies, left-padded, scaled by ``sqrt(factors)`` as in the paper's
code, plus a learned embedding of each slot, then dropout and ``blocks`` pre-norm Transformer blocks
(multi-head self-attention with ``heads`` heads, then a two-layer ReLU feed-forward of width ``factors``,
each with dropout and a residual), then a final layer norm. Attention is causal: a slot sees itself and the
real slots before it, never a later one and never a padding slot (a padding slot sees only itself, so no row
of the mask is empty); padding slots are zeroed after every block. A user's vector is the hidden state at
the last slot of their whole train sequence; a score is that vector dotted with the movie's vector;
``predict`` is NaN throughout (ranking only). A user without a train rating has a zero vector and scores
every movie 0.

Training is next-movie prediction at every slot: each user's sequence is cut, from its end, into windows of
``max_length`` targets (every movie after the first is a target exactly once, the movie before it the last
input), the windows shuffled each epoch and taken ``batch_size`` at a time, AdamW with ``weight_decay``.
``loss``:

* ``"bce"``: the paper's binary cross-entropy, with ``negatives_per_target`` negatives per slot (the paper
  draws one) drawn uniformly from the movies the user has not rated in the train split
  (``lightgcn.sample_negatives``), their terms summed;
* ``"softmax"``: cross-entropy of the target against the whole catalogue (``negatives = 0``) or against a set
  of ``negatives`` movies drawn uniformly for the batch and shared by all its slots (the target's own draws
  masked; no correction for the sampling).

After the last epoch the movie vectors (projection applied) and every user's vector are computed once and
kept: a saved model is these two matrices, the config and the network's other weights, so ``load`` needs
no content; a loaded model scores, and computes a new user's vector from their movies (``user_vector``, run
over the saved movie vectors), but is not refitted with content. ``save_network`` keeps the network itself
for a later fit on more of the same ratings to start from (``start_from``; ``warm_started`` does the same
from a fitted model in memory): SASRec has no user parameters, so a network fitted on a subset of the
ratings is a start for the whole.

Determinism: the weights are initialised and dropout drawn from a ``torch.Generator``, the windows' order and
the negatives from a ``numpy`` generator, both seeded by ``seed``; the network is built on the meta device
and initialised from the generator, so nothing reads or changes torch's global random state. ``fit`` holds
torch to one thread (and restores the count after), as LightGCN does, so the same seed gives the same floats
(checked in ``tests/pipeline/models/test_sasrec.py``).

Defaults were chosen on ML-100K on the temporal validation split carved from the temporal protocol's train
part (``temporal_split(train)``), by NDCG@10 (``evaluate_model``, temporal; never the test split), with
``movie_content``'s vectors unless "ids only". Single points around a base of 64 factors, 2 blocks, 1 head,
``max_length`` 50, dropout 0.2, batch 128, ``min_rating`` 0, no weight decay; validation NDCG@10
(coverage@10), the chosen one first (with one negative per target but in the last paragraph of this list):

* 0.1709 (0.279): loss ``"bce"``, learning rate 0.002, 20 epochs; ids only 0.1535 (0.189).
* ``"bce"``, learning rate 0.001, 20 epochs: 0.1698 (0.213); ids only 0.1548 (0.142).
* ``"softmax"`` over the whole catalogue, learning rate 0.001: 20 epochs 0.1697 (0.336), ids only 0.1592
  (0.245); 10 epochs 0.1671, ids only 0.1517; 30 epochs with dropout 0.3 0.1572; learning rate 0.002,
  20 epochs 0.1581 (0.438). The softmax ties the chosen point within 1% at a wider coverage; it overfits
  with more steps.
* ``"softmax"`` over 256 shared uniform negatives, learning rate 0.001, 20 epochs: 0.1377, ids only 0.1298;
  learning rate 0.003 0.1339; ``min_rating`` 4 0.1200; dropout 0.5 0.1401; 32 factors 0.1472 (ids only
  0.1259), with dropout 0.5 0.1314. Uniform sampled negatives without a correction rank well below both.

Later single points (2026-12-05; the same split; in a fixed blend with ALS and EASE in brackets): batches of
256 windows 0.1714 (0.1928), at learning rate 0.003 0.1734 (0.1942, coverage@10 0.211 against 0.228), 0.79x
the time; taken into the weekly run that last point lowered the published blend on the temporal test split
to NDCG@10 0.2029 from 0.2151, so it was not taken. Targets drawn from the next K movies instead of the next
one (ratings entered in sittings): 0.1661 at K = 5, 0.1740 at K = 10, 0.1594 at K = 20, 0.1361 at K = 50, no
consistent gain; not taken (not an option of the config). A user's vector as the mean of the hidden states
of the last L slots instead of the last one (scoring only, the same fit): alone 0.1706 at L = 2, 0.1776 at 3,
0.1740 at 5 (0.1708 at 1), but in the fixed blend 0.1939 at L = 3 against 0.1943, coverage@10 0.214 against
0.228; on the temporal test split alone 0.1721 at L = 3 against 0.1633, still below EASE's 0.1731; not taken.

**Negatives per target** (2026-12-05; the same split; seeds 42, 7 and 13; in the fixed blend with ALS and
EASE in brackets): 1, the paper's, 0.1702, 0.1676, 0.1708 (0.1941, 0.1990, 0.1951), coverage@10 0.28; 2:
0.1818, 0.1748, 0.1804 (0.1985, 0.1997, 0.2005); **4: 0.1789, 0.1772, 0.1870 (0.1993, 0.2008, 0.2028),
coverage@10 0.26**; 8: 0.1878, 0.1800, 0.1824 (0.1985, 0.1995, 0.2015), coverage@10 0.23; 16 (seed 42)
0.1769 (0.1960), 0.19; 16 at learning rate 0.001 0.1448. Four, the default, was best in the blend for every
seed and 1.07x one negative alone on average, at 1.1 to 1.3x the time of a fit. gBCE (Petrov & Macdonald
2023; 64 negatives, t = 0.75) 0.0961.

The content adds 0.008 to 0.021 NDCG@10 at every compared point and widens coverage. For comparison on the
same validation split ALS scores 0.162 and LightGCN 0.153. A fit of the default took 37 to 100 s on one
thread of a busy, shared 2-core machine (an epoch about 2 to 5 s on the validation train part's 63k
ratings in about 1,750 windows).

On the temporal protocol's test split (fitted once on its whole train part, 80k ratings; ``evaluate_model``,
temporal) the default scored NDCG@10 0.1751, coverage@10 0.298 (recall@10 0.167, MRR@10 0.307); seeds 7 and
13 0.1719 and 0.1816 (mean of the three 0.1762); fits of 31 to 32 s on one thread with another job beside
them on the 2-core machine. EASE scores 0.1731 on the same split (the default seed 1.011x, the mean 1.018x,
seed 7 0.993x), ALS 0.195 and the hybrid network 0.160. With one negative per target it scored 0.1641,
coverage@10 0.312 (ids only 0.1465, coverage@10 0.209). The weekly evaluation's SASRec (5 epochs warm from
the validation split's, ``warm_started``) scored 0.1777. ML-100K's users entered most of their ratings in a
few sittings, so the order within a user's history is a weak signal; a likely reason, not tested here, why
SASRec gains less over EASE here than on the datasets of the paper.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from pydantic.dataclasses import dataclass
from torch import nn

from pipeline.core.device import one_torch_thread
from pipeline.features.interactions import Interactions
from pipeline.models.base import HYPERPARAMETERS, check_fitted
from pipeline.models.lightgcn import sample_negatives
from pipeline.models.saved import load_arrays, save_arrays
from pipeline.models.vectors import VectorModel

if TYPE_CHECKING:
    from pipeline.features.loading import TrainingData

PAD = 0  # the padding index of a window; movie i is index i + 1
NETWORK_FILE_MODEL = "SASRec network"  # the model name in a saved network's header (``save_network``)
READER_PREFIX = "network."  # a saved model's network weights (``saved_extras``)


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def _arrays(network: nn.Module, prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """``network``'s weights as arrays named ``prefix + name``, but those whose name starts with ``skip``."""
    return {
        prefix + key: value.detach().numpy()
        for key, value in network.state_dict().items()
        if not key.startswith(skip)
    }


@dataclass(frozen=True, config=HYPERPARAMETERS)
class SASRecConfig:
    factors: PositiveInt = 64  # width of the movie vectors and of every hidden state
    blocks: PositiveInt = 2  # Transformer blocks
    heads: PositiveInt = 1  # attention heads; factors must be a multiple of it
    max_length: PositiveInt = 50  # the latest movies of a sequence the network reads
    dropout: float = 0.2  # on the inputs and inside every block, in [0, 1)
    loss: Literal["bce", "softmax"] = "bce"
    negatives: NonNegativeInt = 0  # softmax: the batch's shared sampled negatives; 0 = the whole catalogue
    negatives_per_target: PositiveInt = 4  # bce: negatives drawn for each target movie
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 128  # windows per step
    learning_rate: PositiveFloat = 2e-3  # AdamW's
    weight_decay: NonNegativeFloat = 0.0  # AdamW's decoupled decay
    min_rating: NonNegativeFloat = 0.0  # ratings below this do not enter the sequences
    seed: NonNegativeInt = 42

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.factors % self.heads:
            raise ValueError(f"factors ({self.factors}) must be a multiple of heads ({self.heads})")
        return self


def movie_content(data: TrainingData) -> np.ndarray:
    """The content vector of every movie of ``data``, float32 ``(n_items, 384 + n_genres + 4)``, rows aligned
    with ``data.interactions``' movie indices (``data.movies`` holds every catalogue movie in the item map's
    order): the unit-length text embedding, the genres multi-hot scaled to unit length (a movie without a
    genre: zeros), and the four numeric features (year and runtime z-scores and their missing flags)."""
    movies = data.movies
    if len(movies) != data.interactions.n_items:
        raise ValueError(f"{len(movies)} movies' content for {data.interactions.n_items} movie indices")
    text = np.asarray(movies.text, np.float64)
    text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    genres = np.asarray(movies.genres, np.float64)
    genres = genres / np.maximum(np.linalg.norm(genres, axis=1, keepdims=True), 1e-12)
    return np.concatenate([text, genres, np.asarray(movies.numeric, np.float64)], axis=1).astype(np.float32)


def user_sequences(train: Interactions, min_rating: float) -> list[np.ndarray]:
    """Each user's movie indices of the ratings ``>= min_rating``, oldest first, ties by movie index (a user
    without one: an empty array)."""
    keep = np.flatnonzero(train.ratings >= min_rating)
    users, items, times = train.users[keep], train.items[keep], train.timestamps[keep]
    order = np.lexsort((items, times, users))
    counts = np.bincount(users, minlength=train.n_users)
    return np.split(items[order], np.cumsum(counts)[:-1])


def training_windows(
    sequences: list[np.ndarray], max_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs, targets, users)``: each sequence cut from its end into windows of up to ``max_length``
    targets, every movie after the first a target once with the movie before it as the last input; rows
    left-padded with ``PAD``, movies as index + 1."""
    inputs, targets, users = [], [], []
    for user, seq in enumerate(sequences):
        for end in range(len(seq), 1, -max_length):
            start = max(1, end - max_length)
            row_in = np.full(max_length, PAD, np.int64)
            row_out = np.full(max_length, PAD, np.int64)
            row_in[max_length - (end - start) :] = seq[start - 1 : end - 1] + 1
            row_out[max_length - (end - start) :] = seq[start:end] + 1
            inputs.append(row_in)
            targets.append(row_out)
            users.append(user)
    if not inputs:
        empty = np.zeros((0, max_length), np.int64)
        return empty, empty.copy(), np.zeros(0, np.int64)
    return np.stack(inputs), np.stack(targets), np.asarray(users, np.int64)


def last_windows(sequences: list[np.ndarray], max_length: int) -> np.ndarray:
    """The last ``max_length`` movies of every sequence, left-padded with ``PAD``, movies as index + 1."""
    rows = np.full((len(sequences), max_length), PAD, np.int64)
    for user, seq in enumerate(sequences):
        tail = seq[-max_length:]
        if len(tail):
            rows[user, max_length - len(tail) :] = tail + 1
    return rows


def attention_mask(inputs: torch.Tensor) -> torch.Tensor:
    """The boolean ``(batch, 1, L, L)`` mask (True: may attend; the same for every head) of left-padded
    ``inputs``: a slot attends to itself and to the real slots before it."""
    length = inputs.shape[1]
    earlier = torch.ones(length, length, dtype=torch.bool).tril()
    real = (inputs != PAD)[:, None, :]  # a real key
    itself = torch.eye(length, dtype=torch.bool)[None]
    return (earlier[None] & (real | itself))[:, None]


def _dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawn from ``generator``; the identity when ``generator`` is None (not training)."""
    if generator is None or p == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator) >= p
    return x * keep / (1.0 - p)


class _Attention(nn.Module):
    """Multi-head self-attention: one packed in-projection, ``scaled_dot_product_attention``, the output
    projection. ``nn.MultiheadAttention``'s parameters under its names, so a network saved by either loads in
    the other and a seed draws the same initial weights; written out because with ``batch_first`` it spent
    about a fifth of a training step repacking its projections on the CPU."""

    def __init__(self, factors: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * factors, factors))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * factors))
        self.out_proj = nn.Linear(factors, factors)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, factors = x.shape
        packed = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        query, key, value = packed.view(batch, length, 3, self.heads, factors // self.heads).permute(
            2, 0, 3, 1, 4
        )
        attended = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, factors))


class _Block(nn.Module):
    """A pre-norm Transformer block: self-attention, then a ReLU feed-forward, each residual."""

    def __init__(self, factors: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(factors)
        self.attention = _Attention(factors, heads)
        self.forward_norm = nn.LayerNorm(factors)
        self.inner = nn.Linear(factors, factors)
        self.outer = nn.Linear(factors, factors)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        y = self.attention_norm(x)
        x = x + _dropout(self.attention(y, mask), self.dropout, generator)
        y = _dropout(torch.relu(self.inner(self.forward_norm(x))), self.dropout, generator)
        return x + _dropout(self.outer(y), self.dropout, generator)


class SASRecNetwork(nn.Module):
    """The movie vectors (id embedding + projected content) and the causal Transformer over windows."""

    def __init__(self, n_items: int, content: torch.Tensor | None, config: SASRecConfig) -> None:
        super().__init__()
        c = self.config = config
        with torch.device("meta"):  # no draw from torch's global generator: initialised in `initialise`
            self.ids = nn.Parameter(torch.empty(n_items, c.factors))
            self.projection = (
                nn.Linear(content.shape[1], c.factors, bias=False) if content is not None else None
            )
            self.positions = nn.Parameter(torch.empty(c.max_length, c.factors))
            self.layers = nn.ModuleList(_Block(c.factors, c.heads, c.dropout) for _ in range(c.blocks))
            self.norm = nn.LayerNorm(c.factors)
        self.to_empty(device="cpu")
        self.content = content

    def initialise(self, generator: torch.Generator) -> None:
        """Xavier-uniform matrices (the paper's code), zero biases, unit layer-norm scales."""
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter, generator=generator)
                elif name.endswith("norm.weight"):
                    parameter.fill_(1.0)
                else:
                    parameter.zero_()

    def item_vectors(self) -> torch.Tensor:
        """``(n_items, factors)``: the id embeddings plus the projected content."""
        if self.projection is None or self.content is None:
            return self.ids
        return self.ids + self.projection(self.content)

    def hidden(
        self, inputs: torch.Tensor, items: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The ``(batch, L, factors)`` hidden states of left-padded ``inputs`` (movie index + 1, ``PAD``)
        given the movie vectors ``items``; dropout drawn from ``generator`` (None: none, as in scoring)."""
        c = self.config
        table = torch.cat([torch.zeros(1, c.factors), items])
        real = (inputs != PAD).unsqueeze(-1).to(table.dtype)
        x = table[inputs] * math.sqrt(c.factors) + self.positions[-inputs.shape[1] :]
        x = _dropout(x, c.dropout, generator) * real
        mask = attention_mask(inputs)
        for layer in self.layers:
            x = layer(x, mask, generator) * real
        return self.norm(x)


class SASRec(VectorModel):
    """SASRec with content-aware movie vectors, trained by next-movie prediction (see the module doc)."""

    name = "SASRec"
    config_type = SASRecConfig
    vectors = ("user_vectors", "item_vectors")

    def __init__(self, config: SASRecConfig | None = None, content: np.ndarray | None = None) -> None:
        self.config = config if config is not None else SASRecConfig()
        if not isinstance(self.config, SASRecConfig):
            raise TypeError(f"{self.name} takes a SASRecConfig, not {type(config).__name__}")
        self.content = None if content is None else np.ascontiguousarray(content, np.float32)
        if self.content is not None and (self.content.ndim != 2 or not np.isfinite(self.content).all()):
            raise ValueError(
                f"content must be a finite (n_items, d) matrix, not of shape {self.content.shape}"
            )
        self.network_: SASRecNetwork | None = None  # the trained network
        # A loaded model's network over the saved movie vectors: what ``user_vector`` runs (``load``)
        self.reader_: SASRecNetwork | None = None
        self.start_: SASRecNetwork | None = None  # a trained network this fit starts from (``warm_started``)
        self.user_vectors_: np.ndarray | None = None  # the hidden state at the end of each user's sequence
        self.item_vectors_: np.ndarray | None = None  # the movie vectors, content projected
        self.losses_: list[float] = []  # the mean loss of each epoch

    @classmethod
    def for_data(cls, data: TrainingData, config: SASRecConfig | None = None) -> Self:
        """The model with ``movie_content(data)`` as its movies' content."""
        return cls(config, movie_content(data))

    def warm_started(self, epochs: int) -> Self:
        """An unfitted SASRec with this one's config and content whose ``fit`` starts from this fitted one's
        network instead of a random one and trains ``epochs`` epochs: SASRec has no user parameters, so a
        network fitted on a subset of the ratings (the evaluation's validation split) is a start for the
        whole (its protocol split). On ML-100K's temporal protocol 5 epochs from the validation split's
        network rank at NDCG@10 0.178 alone (0.175 from scratch, 20 epochs; with one negative per target
        0.164 and 0.164, and 0.216 in the blend against 0.214) in about a quarter of the time."""
        return self._starting_from(check_fitted(self.network_, self.name), epochs)

    def saved_extras(self) -> dict[str, np.ndarray]:
        """The network's weights but the movie vectors' (the file keeps those projected), so that a loaded
        model computes a new user's vector (``user_vector``); none when there is no network."""
        network = self._network_at_hand()
        return {} if network is None else _arrays(network, READER_PREFIX, skip=("ids", "projection"))

    def restore_extras(self, arrays: dict[str, np.ndarray]) -> None:
        state = {k[len(READER_PREFIX) :]: v for k, v in arrays.items() if k.startswith(READER_PREFIX)}
        if not state or self.item_vectors_ is None:
            return  # a file written before the network was kept: the model scores, it folds in no one
        reader = SASRecNetwork(len(self.item_vectors_), None, self.config)
        reader.load_state_dict({"ids": torch.from_numpy(self.item_vectors_), **_tensors(state)})
        reader.eval()
        self.reader_ = reader

    def _network_at_hand(self) -> SASRecNetwork | None:
        """The trained network, else the one loaded over the saved movie vectors (either runs
        ``hidden`` given the movie vectors)."""
        return self.network_ if self.network_ is not None else self.reader_

    @property
    def folds_in(self) -> bool:
        """Whether ``user_vector`` can compute a new user's vector (a fitted model, or one loaded from a
        file that kept the network)."""
        return self.item_vectors_ is not None and self._network_at_hand() is not None

    @property
    def started(self) -> bool:
        return self.start_ is not None

    def user_vector(self, items: np.ndarray) -> np.ndarray:
        """The vector of a user whose history is the movie indices ``items``, oldest first: the hidden state
        at the last slot of their last ``max_length`` movies, as ``fit`` computes every known user's (a new
        user folded in, ``pipeline.models.foldin``). ``NotFitted`` when the network is not at hand."""
        network = check_fitted(self._network_at_hand(), self.name)
        vectors = torch.from_numpy(check_fitted(self.item_vectors_, self.name))
        window = last_windows([np.asarray(items, np.int64)], self.config.max_length)
        with torch.no_grad():
            return network.hidden(torch.from_numpy(window), vectors)[0, -1].numpy().copy()

    def save_network(self, path: Path) -> Path:
        """The trained network's weights and the config in one ``.npz`` file at ``path`` (``save_arrays``):
        what a later fit on more of the same ratings can start from (``start_from``). The content is not in
        it; the model that starts from it brings its own."""
        network = check_fitted(self.network_, self.name)
        return save_arrays(path, NETWORK_FILE_MODEL, self.config, _arrays(network))

    def start_from(self, path: Path, epochs: int) -> Self:
        """An unfitted copy of this model whose ``fit`` starts from the network ``save_network`` wrote at
        ``path`` and trains ``epochs`` epochs, as ``warm_started`` does from a fitted model: the weekly train
        step's SASRec starts from the evaluation's. ``ValueError`` when the file holds another model, was
        trained with another config (the epochs aside) or has other shapes (another catalogue, content or
        none); ``OSError`` when it cannot be read."""
        config, state = load_arrays(path, NETWORK_FILE_MODEL, SASRecConfig)
        if dataclasses.replace(config, epochs=self.config.epochs) != self.config:
            raise ValueError(f"{path} holds a network trained with another config ({config})")
        content = None if self.content is None else torch.from_numpy(self.content)
        if content is not None and len(content) != len(state["ids"]):
            raise ValueError(f"{path} holds a network of {len(state['ids'])} movies, not {len(content)}")
        network = SASRecNetwork(len(state["ids"]), content, self.config)
        try:
            network.load_state_dict(_tensors(state))
        except RuntimeError as exc:  # missing, unexpected or mis-shaped weights
            raise ValueError(f"{path} does not fit this SASRec: {exc}") from exc
        return self._starting_from(network, epochs)

    def _starting_from(self, network: SASRecNetwork, epochs: int) -> Self:
        model = type(self)(dataclasses.replace(self.config, epochs=epochs), self.content)
        model.start_ = network
        return model

    def fit(self, train: Interactions) -> Self:
        with one_torch_thread():  # deterministic only on one thread (see the module doc)
            return self._fit(train)

    def _fit(self, train: Interactions) -> Self:
        c = self.config
        if self.content is not None and len(self.content) != train.n_items:
            raise ValueError(f"content has {len(self.content)} rows for {train.n_items} movies")
        content = None if self.content is None else torch.from_numpy(self.content)
        sequences = user_sequences(train, c.min_rating)
        inputs, targets, window_users = training_windows(sequences, c.max_length)
        rng = np.random.default_rng(c.seed)
        generator = torch.Generator().manual_seed(c.seed)
        if self.start_ is not None and len(self.start_.ids) != train.n_items:
            raise ValueError(f"the start network has {len(self.start_.ids)} movies, not {train.n_items}")
        network = SASRecNetwork(train.n_items, content, c)
        network.initialise(generator)
        if self.start_ is not None:
            network.load_state_dict(self.start_.state_dict())  # same movies and config: same shapes
        optimiser = torch.optim.AdamW(network.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        keys = np.sort(train.users * train.n_items + train.items)
        self.losses_ = []
        network.train()
        for _ in range(c.epochs if len(inputs) else 0):
            order = rng.permutation(len(inputs))
            total, count = 0.0, 0
            for start in range(0, len(order), c.batch_size):
                batch = order[start : start + c.batch_size]
                x, y = torch.from_numpy(inputs[batch]), torch.from_numpy(targets[batch])
                items = network.item_vectors()
                states = network.hidden(x, items, generator)
                real = y != PAD
                h, target = states[real], y[real] - 1
                loss = self._loss(h, target, items, window_users[batch], real, keys, train.n_items, rng)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(target)
                count += len(target)
            self.losses_.append(total / count)
        network.eval()
        with torch.no_grad():
            items = network.item_vectors()
            last = network.hidden(torch.from_numpy(last_windows(sequences, c.max_length)), items)[:, -1]
            empty = torch.from_numpy(np.array([len(s) == 0 for s in sequences]))
            last = torch.where(empty[:, None], torch.zeros_like(last), last)
        self.network_ = network
        self.user_vectors_ = np.ascontiguousarray(last.numpy(), np.float32)
        self.item_vectors_ = np.ascontiguousarray(items.detach().numpy(), np.float32)
        return self

    def _loss(
        self,
        h: torch.Tensor,
        target: torch.Tensor,
        items: torch.Tensor,
        window_users: np.ndarray,
        real: torch.Tensor,
        keys: np.ndarray,
        n_items: int,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """The mean loss of the batch's real slots: hidden states ``h``, their target movies ``target``."""
        c = self.config
        if c.loss == "bce":
            per_target = c.negatives_per_target
            slot_users = np.repeat(window_users, real.sum(1).numpy())
            draws = sample_negatives(np.repeat(slot_users, per_target), keys, n_items, rng)
            negative = torch.from_numpy(draws).view(len(target), per_target)
            positive_logit = (h * items[target]).sum(1)
            negative_logit = torch.einsum("sf,snf->sn", h, items[negative])
            return -(
                nn.functional.logsigmoid(positive_logit) + nn.functional.logsigmoid(-negative_logit).sum(1)
            ).mean()
        if c.negatives == 0:
            return nn.functional.cross_entropy(h @ items.T, target)
        drawn = torch.from_numpy(rng.integers(0, n_items, c.negatives))
        negative_logits = h @ items[drawn].T
        negative_logits = negative_logits.masked_fill(drawn[None, :] == target[:, None], -torch.inf)
        positive_logit = (h * items[target]).sum(1, keepdim=True)
        logits = torch.cat([positive_logit, negative_logits], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(target), dtype=torch.int64))
