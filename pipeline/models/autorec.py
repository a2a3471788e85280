"""Item-based AutoRec (Sedhain et al. 2015, "AutoRec: Autoencoders Meet Collaborative Filtering") in PyTorch:
a rating predictor of another family than the network and biased MF, the rating blend's third member.

Each movie is the vector of its train ratings over every user (0 where unrated); one sigmoid hidden layer of
``hidden`` units encodes it and a linear layer decodes it back over the users. The loss is the squared error
on the rated entries only, plus ``reg`` / 2 times the squared weights (the paper's objective, spread over
the batches by their share of the movies), minimised by Adam over batches of ``batch_size`` movies for
``epochs`` passes. A prediction for (user, movie) is the decoder's output for that user from the movie's
code: ``code(movie) . V[user] + b[user]``, so a fitted model keeps the movies' codes, the decoder and the
users' biases (a factor model in effect: ``save``/``load`` need no train ratings). A user or movie without a
train rating gets the train mean; predictions are clipped to the train rating range. ``score_users``
ranks by the unclipped prediction.

Memory and time grow with users x movies: the encoder has one weight per user per hidden unit and each pass
multiplies every movie's full vector, so the blend offers it only up to ``AUTOREC_MAX_CELLS`` cells
(``pipeline.core.defaults``); above that the rating blend keeps the network and biased MF.

Defaults were chosen on ML-100K on the temporal validation split carved from the random protocol's train
part (``validation_split``), by the RMSE of the three-way rating blend (network, biased MF, AutoRec) at its
best validation weights, three seeds where close; AutoRec's own validation RMSE in brackets:
``hidden`` 300, ``reg`` 100: 0.9351-0.9363 (0.954); 500 / 100: 0.9359-0.9363 (0.965); 1,000 / 100: 0.9380;
200 / 100: 0.9389; 100 / 100: 0.9451; 500 / 300: 0.9406 (0.968); 500 / 30: 0.9375; 500 / 10: 0.9387;
500 / 1: 0.9396 (1.015); at 100 epochs and learning rate 1e-3 (those figures), 50 epochs 0.9376-0.9410,
200 epochs 0.9370. Then the schedule for 300 / 100: 60 epochs at learning rate 2e-3 0.9360-0.9368 over three
seeds (0.9370 at 100 epochs and 1e-3 with the same seed) in half the time, taken; 40 at 3e-3 0.9368; 30 at
4e-3 0.9381; batches of 512 movies 0.9405. A fit of the default takes about 2 s on ML-100K's 80k ratings on
a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from pipeline.core.defaults import AUTOREC_MAX_CELLS
from pipeline.features.interactions import Interactions
from pipeline.models.base import HYPERPARAMETERS, NotFitted, as_pairs, check_fitted, dot_scores
from pipeline.models.saved import load_arrays, save_arrays

__all__ = ["AutoRec", "AutoRecConfig", "autorec_fits"]


@dataclass(frozen=True, config=HYPERPARAMETERS)
class AutoRecConfig:
    hidden: PositiveInt = 300
    reg: NonNegativeFloat = 100.0  # lambda of the paper's squared-weight penalty
    epochs: PositiveInt = 60
    learning_rate: PositiveFloat = 2e-3
    batch_size: PositiveInt = 256  # movies per step
    init_scale: PositiveFloat = 0.03  # std of the initial weights
    seed: NonNegativeInt = 42


def autorec_fits(train: Interactions, max_cells: int = AUTOREC_MAX_CELLS) -> bool:
    """Whether ``train``'s users x movies is small enough for AutoRec (``max_cells``)."""
    return train.n_users * train.n_items <= max_cells


class AutoRec:
    """I-AutoRec behind the ``Recommender`` contract (module doc)."""

    name = "AutoRec"

    def __init__(self, config: AutoRecConfig | None = None) -> None:
        self.config = config or AutoRecConfig()
        self.codes_: np.ndarray | None = None  # (n_items, hidden): each movie's encoding
        self.decoder_: np.ndarray | None = None  # (n_users, hidden): the decoder's weights, one row per user
        self.user_bias_: np.ndarray | None = None  # (n_users,): the decoder's bias
        self.known_: np.ndarray | None = None  # (n_users + n_items,) bool: users then movies with a rating
        self.mu_ = 0.0
        self.rating_range_: tuple[float, float] = (-np.inf, np.inf)

    def fit(self, train: Interactions) -> AutoRec:
        c = self.config
        n_users, n_items = train.n_users, train.n_items
        generator = torch.Generator().manual_seed(c.seed)
        rows, columns = torch.from_numpy(train.items), torch.from_numpy(train.users)
        ratings = torch.zeros(n_items, n_users)
        ratings[rows, columns] = torch.from_numpy(train.ratings.astype(np.float32))
        rated = torch.zeros(n_items, n_users)  # not ratings != 0: a scale may include 0
        rated[rows, columns] = 1.0
        encoder = (torch.randn(n_users, c.hidden, generator=generator) * c.init_scale).requires_grad_()
        encoder_bias = torch.zeros(c.hidden, requires_grad=True)
        decoder = (torch.randn(c.hidden, n_users, generator=generator) * c.init_scale).requires_grad_()
        decoder_bias = torch.zeros(n_users, requires_grad=True)
        params = [encoder, encoder_bias, decoder, decoder_bias]
        optimiser = torch.optim.Adam(params, lr=c.learning_rate)
        for _ in range(c.epochs):
            for batch in torch.randperm(n_items, generator=generator).split(c.batch_size):
                optimiser.zero_grad()
                x = ratings[batch]
                out = torch.sigmoid(x @ encoder + encoder_bias) @ decoder + decoder_bias
                penalty = encoder.pow(2).sum() + decoder.pow(2).sum()
                loss = ((out - x) * rated[batch]).pow(2).sum() + c.reg / 2 * penalty * len(batch) / n_items
                loss.backward()
                optimiser.step()
        with torch.no_grad():
            self.codes_ = torch.sigmoid(ratings @ encoder + encoder_bias).numpy()
        self.decoder_ = decoder.detach().T.contiguous().numpy()
        self.user_bias_ = decoder_bias.detach().numpy()
        user_counts = np.bincount(train.users, minlength=n_users)
        item_counts = np.bincount(train.items, minlength=n_items)
        self.known_ = np.concatenate([user_counts > 0, item_counts > 0])
        r = train.ratings.astype(np.float64)
        self.mu_ = float(r.mean()) if len(r) else 0.0
        self.rating_range_ = (float(r.min()), float(r.max())) if len(r) else (-np.inf, np.inf)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        codes = check_fitted(self.codes_, self.name)
        decoder, bias, known = self._rest()
        users, items = as_pairs(users, items)
        out = np.einsum("ij,ij->i", codes[items].astype(np.float64), decoder[users]) + bias[users]
        n_users = len(decoder)
        out = np.where(known[users] & known[n_users + items], out, self.mu_)
        return np.clip(out, *self.rating_range_).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        codes = check_fitted(self.codes_, self.name)
        decoder, bias, _ = self._rest()
        users = np.asarray(users, np.int64)
        return dot_scores(decoder, codes, users) + bias[users, None].astype(np.float32)

    def _rest(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        decoder, bias, known = self.decoder_, self.user_bias_, self.known_
        if decoder is None or bias is None or known is None:  # set together with codes_
            raise NotFitted(f"{self.name} is only partly fitted")
        return decoder, bias, known

    def save(self, path: Path) -> Path:
        """The codes, decoder, biases and train statistics with the config in one ``.npz`` at ``path``."""
        codes = check_fitted(self.codes_, self.name)
        decoder, bias, known = self._rest()
        stats = np.asarray([self.mu_, *self.rating_range_], np.float64)
        arrays = {"codes": codes, "decoder": decoder, "user_bias": bias, "known": known, "stats": stats}
        return save_arrays(path, self.name, self.config, arrays)

    @classmethod
    def load(cls, path: Path) -> AutoRec:
        config, arrays = load_arrays(path, cls.name, AutoRecConfig)
        model = cls(config)
        model.codes_, model.decoder_ = arrays["codes"], arrays["decoder"]
        model.user_bias_, model.known_ = arrays["user_bias"], arrays["known"]
        mu, low, high = (float(v) for v in arrays["stats"])
        model.mu_, model.rating_range_ = mu, (low, high)
        return model
