"""Training the hybrid network: ratings and ranking together, early stopping, repeatable by seed.

Loss = MSE of the rating head on observed ratings
     + ranking_weight x softmax cross-entropy of the ranking head: each observed (user, movie) against the
       batch's candidate movies — the whole catalogue when it has at most ``negatives`` movies, else the
       batch's own movies plus uniformly sampled ones. Positives are weighted by recency (half-life), since
       what a user rates next resembles what they rated last more than what they rated a year ago.
The rating loss alone ranks poorly (it learns how much a user likes what they chose to watch, not what
they will choose); the softmax alone forgets the rating scale. Together one network serves both.

Everything lives in tensors on the device; a batch is an index slice, no per-sample Python.

``train_network`` runs the loop in this process; ``train.train_hybrid`` calls it, or with ``processes`` > 1
``distributed.train_distributed``, which runs it in N data-parallel processes: ``train_network`` takes a
``Loop`` that says how a step runs, and the one-process ``Loop`` is exactly the loop it always was."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.device import cores_beside_side_fits, flush_denormals, keep_freed_memory
from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.network import UserHistory, build_network
from pipeline.models.hybrid.warm_start import Replay, transfer_weights

log = logging.getLogger(__name__)


FUSED_ADAMW_MIN_PARAMS = 5_000_000  # see ``adamw``


@dataclass
class TrainingResult:
    model: HybridArtifact
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    samples_per_s: float = 0.0


class Batches:
    """The training tensors on the device, and the per-batch candidate set for the ranking softmax."""

    def __init__(
        self,
        data: TrainingData,
        train: Interactions,
        cfg: HybridConfig,
        device: str,
        history: UserHistory | None = None,
    ) -> None:
        """``history``: the users' rated movies to pool; default (with ``cfg.history``) these rows' own."""
        dev = self.device = device
        self.users = torch.as_tensor(train.users, device=dev)
        self.items = torch.as_tensor(train.items, device=dev)
        self.ratings = torch.as_tensor(train.ratings, device=dev)
        if cfg.recency_half_life_days:
            age_days = (train.timestamps.max() - train.timestamps) / 86400.0
            w = np.power(0.5, age_days / cfg.recency_half_life_days)
            w = w / w.mean()
        else:
            w = np.ones(len(train))
        self.weights = torch.as_tensor(w, dtype=torch.float32, device=dev)
        m = data.movies
        self.genres = torch.as_tensor(m.genres, device=dev)
        self.text = torch.as_tensor(m.text, device=dev)
        self.people = {r: torch.as_tensor(p, device=dev) for r, p in m.people.items()}
        self.numeric = torch.as_tensor(m.numeric, device=dev)
        self.user_x = torch.as_tensor(data.users, device=dev) if data.users.shape[1] else None
        if history is None and cfg.history:
            history = UserHistory.from_pairs(train.users, train.items, train.n_users, dev)
        self.history = history
        self.n_items = train.n_items
        self.negatives = cfg.negatives
        self.all_items = torch.arange(self.n_items, device=dev)

    def content(
        self, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        return (
            self.genres[items],
            self.text[items],
            {r: p[items] for r, p in self.people.items()},
            self.numeric[items],
        )

    def candidates(self, pos_items: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate movies and the position of each positive among them."""
        if self.n_items <= self.negatives:
            return self.all_items, pos_items
        sampled = torch.randint(self.n_items, (self.negatives,), device=self.device, generator=gen)
        cand = torch.unique(torch.cat([pos_items, sampled]))
        return cand, torch.searchsorted(cand, pos_items)


def step_loss(
    net: Any,
    b: Batches,
    idx: torch.Tensor,
    cfg: HybridConfig,
    gen: torch.Generator,
    train: bool,
    batch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rating MSE and ranking CE (means over the rows ``idx``) and the rows' predicted ratings.

    ``batch``: the whole batch ``idx`` is a shard of (data-parallel training); its movies make the candidate
    set, so every process draws the same candidates as one process would for the whole batch."""
    users, items, ratings, weights = b.users[idx], b.items[idx], b.ratings[idx], b.weights[idx]
    if batch is None:
        cand, pos = b.candidates(items, gen)
    else:
        cand, _ = b.candidates(b.items[batch], gen)
        pos = items if cand is b.all_items else torch.searchsorted(cand, items)
    content = net.content(*b.content(cand))
    keep = None
    if train and cfg.id_dropout > 0:  # hide some movies' id embeddings so content learns to stand alone
        keep = (torch.rand(len(cand), 1, device=b.device, generator=gen) >= cfg.id_dropout).to(
            content[0].dtype
        )
    vec, bias = net.item_vectors(cand, content, keep)
    # a training pair's own movie is in its user's history: leave it out, or the history gives it away
    u = net.user_vectors(
        users, b.user_x[users] if b.user_x is not None else None, b.history, items if train else None
    )
    # index_select, not vec[pos]: its backward adds the rows in index order, where indexing's sorted the
    # repeated movies in an order that changed with the thread count (the same floats on 1 or 2 threads)
    pred = net.rating(users, u, vec.index_select(0, pos), bias.index_select(0, pos))
    mse = F.mse_loss(pred.float(), ratings)
    # the temperature divides the (B, d) user vectors and the biases, not the (B, candidates) logits
    logits = net.ranking(u / cfg.temperature, vec, bias / cfg.temperature).float()
    ce = (F.cross_entropy(logits, pos, reduction="none") * weights).mean()
    return mse, ce, pred


def batch_loss(
    net: Any,
    b: Batches,
    idx: torch.Tensor,
    cfg: HybridConfig,
    gen: torch.Generator,
    batch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training loss (with the embedding L2), MSE and ranking CE, means over the rows ``idx``."""
    mse, ce, _ = step_loss(net, b, idx, cfg, gen, train=True, batch=batch)
    reg = cfg.embedding_l2 * (
        _rows(net.user_emb, b.users[idx]).pow(2).sum(-1).mean()
        + _rows(net.item_emb, b.items[idx]).pow(2).sum(-1).mean()
    )
    return mse + cfg.ranking_weight * ce + reg, mse, ce


def _rows(emb: torch.nn.Embedding, idx: torch.Tensor) -> torch.Tensor:
    # A sparse gradient, summed into the dense one of the forward's lookup: no second table-sized gradient.
    return F.embedding(idx, emb.weight, sparse=True)


def adamw(net: torch.nn.Module, cfg: HybridConfig) -> torch.optim.AdamW:
    """The training's optimiser: fused (one kernel per parameter instead of a dozen passes over it, the same
    update) once the network has ``FUSED_ADAMW_MIN_PARAMS`` parameters. On 2 CPU cores the fused step took
    212 against 292 ms a step at ML-25M shape (18M parameters, most of them id embeddings), but ML-100K's
    epochs took 5.9 against 4.9 s with it (``bench/README.md``); between the two the threshold is a guess."""
    fused = sum(p.numel() for p in net.parameters()) >= FUSED_ADAMW_MIN_PARAMS
    return torch.optim.AdamW(
        net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused
    )


def train_step(
    net: Any,
    opt: torch.optim.Optimizer,
    b: Batches,
    idx: torch.Tensor,
    cfg: HybridConfig,
    gen: torch.Generator,
    autocast: Any,
) -> torch.Tensor:
    """One optimiser step on the rows ``idx``; returns (loss, mse, ranking CE) summed over those rows."""
    with autocast:
        loss, mse, ce = batch_loss(net, b, idx, cfg, gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([loss.detach(), mse.detach(), ce.detach()]) * len(idx)


@dataclass
class Trainer:
    """What every step of one training uses: the network, its optimiser, the data, the generator."""

    net: Any
    opt: torch.optim.Optimizer
    b: Batches
    cfg: HybridConfig
    gen: torch.Generator
    autocast: Any


class Loop:
    """How the training loop's steps run: here, in this one process. ``distributed.DataParallel`` runs them
    as one of several processes, each on a shard of every batch."""

    lead = True  # the process that reports progress

    def prepare(self, t: Trainer) -> None:
        """Called once, after the network is built and before the first step."""

    def step(self, t: Trainer, idx: torch.Tensor) -> torch.Tensor:
        """One optimiser step on the batch ``idx``: (loss, mse, ranking CE) summed over the rows trained."""
        return train_step(t.net, t.opt, t.b, idx, t.cfg, t.gen, t.autocast)

    def total(self, sums: torch.Tensor) -> torch.Tensor:
        """An epoch's sums over every process's rows."""
        return sums

    def agree(self, record: dict[str, float]) -> dict[str, float]:
        """The epoch's record every process acts on (early stopping)."""
        return record


Epoch = Callable[[int, dict[str, float]], None]


@contextmanager
def training_settings() -> Iterator[None]:
    """The process settings every training runs under, in one process or as one of several
    (``distributed``); benchmarks that time bare steps enter it too."""
    with flush_denormals(), keep_freed_memory():
        yield


@training_settings()
def train_network(
    data: TrainingData,
    train: Interactions | None,
    cfg: HybridConfig,
    device: str,
    progress: bool,
    on_epoch: Epoch | None,
    loop: Loop | None = None,
    *,
    init: HybridArtifact | None = None,
    epochs: int | None = None,
    replay: Replay | None = None,
) -> TrainingResult:
    loop = loop or Loop()
    train = train if train is not None else data.interactions
    torch.manual_seed(cfg.seed)
    # Same seed, same model: the deterministic kernels cost little at this size (CUDA needs the env var).
    torch.use_deterministic_algorithms(True, warn_only=True)
    cuda = torch.device(device).type == "cuda"  # "cuda:1": a data-parallel process's own GPU
    if cuda:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    order = rng.permutation(len(train))
    # A warm start trains its epochs through, on every row: the champion was trained on most of any
    # validation share drawn now, so that share's loss is best after one epoch and cannot say when to stop.
    n_val = int(len(train) * cfg.validation_fraction) if cfg.patience and init is None else 0
    fit_rows, val_rows = train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))
    b = Batches(data, fit_rows, cfg, device)
    vb = (
        Batches(data, val_rows, cfg, device, history=b.history) if n_val else None
    )  # what the model will know
    net = build_network(
        train.n_users, data.movies, data.users.shape[1], data.vocab, cfg, float(fit_rows.ratings.mean())
    ).to(device)
    transfer = None
    if init is not None:
        transfer = transfer_weights(net, init, data.user_map, data.item_map, data.vocab)
        log.info("warm start: %s", transfer.describe())
    epoch_rows = EpochRows(fit_rows, replay if init is not None else None, device, gen)
    opt = adamw(net, cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    trainer = Trainer(net, opt, b, cfg, gen, autocast)
    loop.prepare(trainer)

    from tqdm import tqdm

    history: list[dict[str, float]] = []
    best, best_state, best_epoch, stale = math.inf, None, 0, 0
    trained = 0  # rows trained over all epochs
    started = time.perf_counter()
    bar = tqdm(
        range(1, (epochs or cfg.epochs) + 1),
        desc="training",
        unit="epoch",
        disable=not (progress and loop.lead),
        leave=False,
    )
    with cores_beside_side_fits() as share:
        for epoch in bar:
            net.train()
            t0 = time.perf_counter()
            perm = epoch_rows.draw()
            n = len(perm)
            trained += n
            sums = torch.zeros(3, device=device)
            for s in range(0, n, cfg.batch_size):
                share()  # one thread while work runs beside the network (``side_thread``)
                sums += loop.step(trainer, perm[s : s + cfg.batch_size])
            record = dict(zip(("loss", "mse", "ranking_ce"), (loop.total(sums) / n).tolist()))
            record["epoch"] = epoch
            record["epoch_ratings"] = n
            record["seconds"] = time.perf_counter() - t0
            if vb is not None:
                record.update(_validate(net, vb, cfg, gen, autocast))
                record = loop.agree(record)
                score = record["val_mse"] + cfg.ranking_weight * record["val_ranking_ce"]
                if score < best - 1e-4:
                    best, best_state, best_epoch, stale = score, copy.deepcopy(net.state_dict()), epoch, 0
                else:
                    stale += 1
            history.append(record)
            bar.set_postfix(
                loss=f"{record['loss']:.3f}", val_rmse=f"{record.get('val_rmse', float('nan')):.3f}"
            )
            if on_epoch:
                on_epoch(epoch, record)
            if vb is not None and stale >= cfg.patience:
                log.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break
    seconds = time.perf_counter() - started
    log.info(
        "trained the network on %d ratings: %d epochs in %.0f s (best epoch %d), %d ratings an epoch",
        len(fit_rows),
        len(history),
        seconds,
        best_epoch if best_state is not None else len(history),
        trained // max(len(history), 1),
    )
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    meta = {
        "dataset": data.dataset,
        "as_of": data.as_of.isoformat() if data.as_of else None,
        "trained_at": datetime.now(UTC).isoformat(),
        "best_epoch": best_epoch,
        "rating_range": [float(train.ratings.min()), float(train.ratings.max())],
        "n_train": len(train),
        "training": "warm" if init is not None else "full",
    }
    if transfer is not None:
        meta["warm_start"] = transfer.describe()
    if epoch_rows.replay is not None:
        meta["replay"] = epoch_rows.describe()
    model = HybridArtifact(
        net,
        cfg,
        data.user_map,
        data.item_map,
        data.vocab,
        data.movies,
        data.users,
        meta,
        device,
        (fit_rows.users, fit_rows.items) if cfg.history else None,
    )
    return TrainingResult(model, history, best_epoch, seconds, trained / max(seconds, 1e-9))


class EpochRows:
    """The rows each epoch trains on, shuffled: all of them, or a warm start's ``Replay`` of them when it
    leaves some out."""

    def __init__(self, rows: Interactions, replay: Replay | None, device: str, gen: torch.Generator) -> None:
        self.n, self.device, self.gen, self.replay = len(rows), device, gen, None
        if replay is not None:
            new, old = replay.split(rows.timestamps)
            self.take = replay.old_per_epoch(len(new), len(old))
            if self.take < len(old):
                self.replay = replay
                self.new = torch.as_tensor(new, device=device)
                self.old = torch.as_tensor(old, device=device)
                log.info("warm start: %s", self.describe())

    def describe(self) -> str:
        assert self.replay is not None
        return self.replay.describe(len(self.new), len(self.old))

    def draw(self) -> torch.Tensor:
        if self.replay is None:
            return torch.randperm(self.n, device=self.device, generator=self.gen)
        sample = self.old[torch.randperm(len(self.old), device=self.device, generator=self.gen)[: self.take]]
        rows = torch.cat([self.new, sample])
        return rows[torch.randperm(len(rows), device=self.device, generator=self.gen)]


@torch.no_grad()
def _validate(
    net: Any, vb: Batches, cfg: HybridConfig, gen: torch.Generator, autocast: Any
) -> dict[str, float]:
    net.eval()
    sums = torch.zeros(2, device=vb.device)
    n = len(vb.users)
    for s in range(0, n, 4096):
        idx = torch.arange(s, min(s + 4096, n), device=vb.device)
        with autocast:
            mse, ce, _ = step_loss(net, vb, idx, cfg, gen, train=False)
        sums += torch.stack([mse, ce]) * len(idx)
    mse, ce = (sums / n).tolist()
    return {"val_mse": mse, "val_rmse": math.sqrt(mse), "val_ranking_ce": ce}
