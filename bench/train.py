"""Training benchmark on real ML-100K: the real training loop against a bare loop over pre-built batches;
at ML-1M and ML-25M shape, the real step's throughput and the epoch time it implies.

    python -m bench.train [--home DIR] [--epochs N] [--warmup N] [--device auto|cpu|cuda] [--batch-size N]
                          [--no-full] [--profile-batches N] [--keep] [--output FILE]
    python -m bench.train --shape ml1m|ml25m [--steps N] [--warmup-steps N] [--device ...] [--batch-size N]

In one process, on one device, with the default ``HybridConfig`` (``patience=0`` for (a) and (b), so every
rating is trained on and nothing stops early):

(a) ``train_hybrid`` for ``warmup + epochs`` epochs; throughput from ``history[i]["seconds"]`` of the timed
    epochs;
(b) the bare loop: the same network (``build_network``, same seed, same init), the same AdamW, the same
    loss (``hybrid.fit.step_loss``, fed pre-built batches), the same step (embedding L2, backward, step,
    loss sums), over batches that were all materialised on the device beforehand (users, items, ratings,
    weights, candidates, positive positions, the candidates' content tensors, the users' features). The only
    difference from (a) is the input pipeline: index slicing, gathers and candidate sampling;
(p) the input pipeline alone (slices, gathers, candidates; no network): what (a) pays over (b) at most;
(f) a full default training (``train_hybrid(data)``, default config) to early stop.

(a) and (b) run interleaved, epoch by epoch (``train_hybrid``'s ``on_epoch`` runs one bare epoch), so that
both see the same load; every span also records how many cores other processes kept busy meanwhile.

``--shape ml1m`` (6,040 users x 3,706 movies) or ``ml25m`` (162,541 x 59,047): synthetic ratings with the
real files' numbers of users and movies and about their number of ratings (``bench.batch``'s
popularity-skewed generator with a latent taste model; random content with the real dimensions). Every rating
is in the data, so each user's history bag is as long as it would be. (s) times ``--steps`` steps of the real
training step (``hybrid.fit.Loop.step``, the body of ``train_hybrid``'s loop, on the real ``Batches``, network
and optimiser) after ``--warmup-steps``, and projects an epoch of the real file's ratings and a warm start's
epochs from that rate; at ML-1M shape, (a) also runs whole epochs of ``train_hybrid`` (``--epochs``,
``--warmup``). On the CPU one more step is counted and its matrix products timed alone
(``bench.roofline``): the samples/s no step of this arithmetic exceeds on this machine. Peak RSS is
recorded. Writes ``bench/results/train_<shape>.json``.

Prints a table and writes ``bench/results/train.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
TARGET_RATIO = 0.9
TARGET_FULL_SECONDS = 180.0
# The real files' users, rated movies and ratings, and the throughput targets at their shape (samples/s on a
# 2-core CPU).
SHAPES = {"ml1m": (6_040, 3_706, 1_000_209), "ml25m": (162_541, 59_047, 25_000_095)}
TARGET_SAMPLES_PER_S = {"ml1m": 100_000, "ml25m": 60_000}
# What the generator keeps of its ``ratings_per_user`` once repeated pairs are dropped, per shape (measured).
KEPT_SHARE = {"ml1m": 0.66, "ml25m": 0.76}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the data ------------------------------------------------------------------------------------------


class Home:
    """The embedded server of an existing MOVIEREC_HOME (``--home``), or a fresh temporary one with
    ML-100K, or with the files in ``ratings`` ingested as ``dataset``."""

    def __init__(
        self, home: str | None, keep: bool, ratings: Path | None = None, dataset: str = "ml-100k"
    ) -> None:
        self.given, self.keep, self.ratings, self.dataset = home, keep, ratings, dataset
        self.settings: Any = None
        self.fresh = home is None
        self.setup: dict[str, Any] = {}

    def engine(self) -> Any:
        from database import embedded
        from database.engine import get_engine
        from pipeline.core.settings import Settings

        if not self.fresh:
            # DATABASE_URL="": always the embedded server under the given home, never another database.
            self.settings = Settings(MOVIEREC_HOME=self.given, DATABASE_URL="")
            if not self.settings.pg_dir.exists():
                raise SystemExit(
                    f"--home {self.given}: no embedded PostgreSQL there ({self.settings.pg_dir})"
                )
            log(f"using the embedded PostgreSQL under {self.settings.home}")
            return get_engine(self.settings)
        from database.migrate import upgrade
        from pipeline.ingest.datasets import fetch_offline_ml100k
        from pipeline.ingest.loader import ingest_directory

        home = Path(tempfile.mkdtemp(prefix="movierec-bench-train-"))
        self.settings = Settings(MOVIEREC_HOME=home, DATABASE_URL="")
        log(
            f"fresh MOVIEREC_HOME {home}: starting an embedded PostgreSQL, migrating, "
            f"ingesting {self.dataset}"
        )
        t0 = time.perf_counter()
        embedded.start(self.settings)
        engine = get_engine(self.settings)
        upgrade(engine)
        t1 = time.perf_counter()
        path = self.ratings or fetch_offline_ml100k(self.settings).path
        t2 = time.perf_counter()
        result = ingest_directory(engine, path, dataset=self.dataset, progress=False)
        t3 = time.perf_counter()
        self.setup = {
            "server_and_migrate_s": round(t1 - t0, 2),
            "fetch_ml100k_s": round(t2 - t1, 2),
            "ingest_s": round(t3 - t2, 2),
            "rows_accepted": result.rows_accepted,
        }
        return engine

    def cleanup(self) -> None:
        if not self.fresh or self.settings is None:
            return
        if self.keep:
            log(
                f"--keep: leaving {self.settings.home} "
                f"(stop: MOVIEREC_HOME={self.settings.home} movierec db stop)"
            )
            return
        from database import embedded

        try:
            embedded.stop(self.settings)
        except Exception as exc:  # noqa: BLE001 (report, go on removing what can be removed)
            log(f"could not stop the embedded server under {self.settings.home}: {exc}")
        shutil.rmtree(self.settings.home, ignore_errors=True)

    def training_data(self) -> Any:
        """``load_training_data`` of this home's database; the server is stopped (and a fresh home removed,
        unless ``keep``) afterwards."""
        from pipeline.features.loading import load_training_data

        try:
            engine = self.engine()
            log("loading the training data (load_training_data)")
            data = load_training_data(engine, progress=False)
            engine.dispose()
        finally:
            self.cleanup()
        return data


# --- (b): pre-built batches fed to the real loss ---------------------------------------------------------


class _Given:
    """Indexing returns the tensor given: a pre-sliced column read by ``step_loss`` as ``b.x[idx]``."""

    __slots__ = ("t",)

    def __init__(self, t: Any) -> None:
        self.t = t

    def __getitem__(self, _: Any) -> Any:
        return self.t


class _Prebuilt:
    """One batch, every tensor already on the device, in the shape ``step_loss`` reads from ``Batches``."""

    def __init__(
        self,
        users: Any,
        items: Any,
        ratings: Any,
        weights: Any,
        cand: Any,
        pos: Any,
        content: tuple,
        user_x: Any,
        device: str,
        history: Any = None,
    ) -> None:
        self.u, self.i = users, items
        # The user-history bags are pooled inside the network (user_vectors), so both loops share them.
        self.history = history
        self.users, self.items, self.ratings, self.weights = (
            _Given(users),
            _Given(items),
            _Given(ratings),
            _Given(weights),
        )
        self._cand, self._pos, self._content = cand, pos, content
        self.user_x = _Given(user_x) if user_x is not None else None
        self.device = device
        self.n = len(users)

    def candidates(self, pos_items: Any, gen: Any) -> tuple[Any, Any]:
        return self._cand, self._pos

    def content(self, items: Any) -> tuple:
        return self._content

    def nbytes(self) -> int:
        genres, text, people, numeric = self._content
        ts = [
            self.u,
            self.i,
            self.ratings.t,
            self.weights.t,
            self._cand,
            self._pos,
            genres,
            text,
            numeric,
            *people.values(),
        ] + ([self.user_x.t] if self.user_x is not None else [])
        return sum(t.numel() * t.element_size() for t in ts)


def _slice_batch(b: Any, idx: Any, gen: Any) -> tuple:
    """The input pipeline of the real loop for one batch: exactly the indexing ``step_loss`` does."""
    users, items, ratings, weights = b.users[idx], b.items[idx], b.ratings[idx], b.weights[idx]
    cand, pos = b.candidates(items, gen)
    content = b.content(cand)
    user_x = b.user_x[users] if b.user_x is not None else None
    return users, items, ratings, weights, cand, pos, content, user_x


def _prebuild(b: Any, n: int, cfg: Any, device: str, seed: int) -> list[_Prebuilt]:
    """One epoch's batches (a seeded permutation), every tensor materialised separately on the device."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    perm = torch.randperm(n, device=device, generator=gen)
    out = []
    for s in range(0, n, cfg.batch_size):
        users, items, ratings, weights, cand, pos, content, user_x = _slice_batch(
            b, perm[s : s + cfg.batch_size], gen
        )
        genres, text, people, numeric = content
        # clone: every batch owns its tensors (the whole catalogue is the candidate set when it has at most
        # ``negatives`` movies, and ``candidates`` then returns the same tensor for every batch).
        out.append(
            _Prebuilt(
                users.clone(),
                items.clone(),
                ratings.clone(),
                weights.clone(),
                cand.clone(),
                pos.clone(),
                (genres.clone(), text.clone(), {r: p.clone() for r, p in people.items()}, numeric.clone()),
                user_x.clone() if user_x is not None else None,
                device,
                b.history,
            )
        )
    if device == "cuda":
        torch.cuda.synchronize()
    return out


def _autocast(device: str) -> Any:
    import torch

    return (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else torch.autocast("cpu", enabled=False)
    )


def _new_network(data: Any, cfg: Any, device: str) -> tuple[Any, Any]:
    """Network and optimizer exactly as ``hybrid.fit.train_network`` builds them (same seed: same init)."""
    import torch

    from pipeline.models.hybrid.fit import adamw
    from pipeline.models.hybrid.network import build_network

    train = data.interactions
    torch.manual_seed(cfg.seed)
    net = build_network(
        train.n_users, data.movies, data.users.shape[1], data.vocab, cfg, float(train.ratings.mean())
    ).to(device)
    return net, adamw(net, cfg)


def _bare_step(net: Any, opt: Any, pb: _Prebuilt, cfg: Any, gen: Any, autocast: Any) -> Any:
    """One step of ``_train``'s loop as written there, on a pre-built batch: no index slicing, no gathers."""
    import torch

    from pipeline.models.hybrid.fit import step_loss

    with autocast:
        mse, ce, _ = step_loss(net, pb, None, cfg, gen, train=True)
        reg = cfg.embedding_l2 * (
            net.user_emb(pb.u).pow(2).sum(-1).mean() + net.item_emb(pb.i).pow(2).sum(-1).mean()
        )
        loss = mse + cfg.ranking_weight * ce + reg
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([loss.detach(), mse.detach(), ce.detach()]) * pb.n


def _real_step(net: Any, opt: Any, b: Any, idx: Any, cfg: Any, gen: Any, autocast: Any) -> Any:
    """One step of ``_train``'s loop, on ``Batches`` and an index (for the profiler only)."""
    from pipeline.models.hybrid.fit import train_step

    return train_step(net, opt, b, idx, cfg, gen, autocast)


def _bare_epoch(
    net: Any, opt: Any, batches: list[_Prebuilt], cfg: Any, gen: Any, autocast: Any, n: int, device: str
) -> tuple[float, list[float]]:
    """``_train``'s epoch loop over pre-built batches; the same one host sync at the end."""
    import torch

    net.train()
    t0 = time.perf_counter()
    sums = torch.zeros(3, device=device)
    for pb in batches:
        sums += _bare_step(net, opt, pb, cfg, gen, autocast)
    losses = (sums / n).tolist()
    return time.perf_counter() - t0, losses


# --- measurements --------------------------------------------------------------------------------------


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Meter:
    """Wall time, this process's CPU time, and the CPU time every other process on the machine used meanwhile
    (from /proc/stat): other jobs on a small machine show up in the timings, this says how much."""

    HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @classmethod
    def _busy_s(cls) -> float | None:
        try:
            with open("/proc/stat") as fh:
                f = [int(x) for x in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / cls.HZ  # user nice system irq softirq steal

    def __init__(self) -> None:
        self.t, self.cpu, self.busy = time.perf_counter(), _cpu_s(), self._busy_s()

    def read(self) -> dict[str, Any]:
        wall, cpu, busy = time.perf_counter() - self.t, _cpu_s() - self.cpu, self._busy_s()
        out = {"wall_s": round(wall, 3), "own_cpu_s": round(cpu, 2)}
        if busy is not None and self.busy is not None:
            out["others_cpu_cores"] = round(max(0.0, busy - self.busy - cpu) / max(wall, 1e-9), 2)
        return out


def _others(loads: list[dict[str, Any]]) -> float | None:
    """Mean number of cores other processes kept busy over these spans."""
    if not loads or any("others_cpu_cores" not in x for x in loads):
        return None
    return round(sum(x["others_cpu_cores"] * x["wall_s"] for x in loads) / sum(x["wall_s"] for x in loads), 2)


def _rate(n: int, seconds: list[float]) -> dict[str, Any]:
    total = sum(seconds)
    return {
        "epochs_timed": len(seconds),
        "samples": n * len(seconds),
        "seconds": round(total, 3),
        "samples_per_s": round(n * len(seconds) / total, 1),
        "epoch_seconds": [round(s, 3) for s in seconds],
        "median_epoch_samples_per_s": round(n / statistics.median(seconds), 1),
    }


def measure_real_and_bare(data: Any, cfg: Any, device: str, warmup: int, epochs: int) -> dict[str, Any]:
    """(a) and (b), interleaved epoch by epoch so that both see the same load: ``train_hybrid`` runs its
    epochs, and its ``on_epoch`` callback (outside the epoch's own timing) runs one epoch of the bare loop."""
    import torch

    from pipeline.models.hybrid.fit import Batches
    from pipeline.models.hybrid.train import train_hybrid

    n = len(data.interactions)
    c = replace(cfg, epochs=warmup + epochs, patience=0)
    log(f"(b) pre-building {-(-n // c.batch_size)} batches of {c.batch_size} on {device}")
    t0 = time.perf_counter()
    b = Batches(data, data.interactions, c, device)
    batches = _prebuild(b, n, c, device, c.seed)
    del b
    build_s = time.perf_counter() - t0
    net, opt = _new_network(data, c, device)
    gen = torch.Generator(device=device).manual_seed(c.seed)
    autocast = _autocast(device)

    a_load: list[dict[str, Any]] = []
    b_runs: list[tuple[float, list[float], dict[str, Any]]] = []
    meter = [Meter()]

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        a_load.append(meter[0].read())  # (a)'s epoch (and, for the first, the setup of train_hybrid)
        m = Meter()
        secs, losses = _bare_epoch(
            net, opt, batches, c, gen, autocast, n, device
        )  # deterministic mode is on here
        b_runs.append((secs, losses, m.read()))
        log(
            f"  epoch {epoch}/{c.epochs}: (a) {record['seconds']:.2f} s, (b) {secs:.2f} s, others' CPU "
            f"{a_load[-1].get('others_cpu_cores', float('nan')):.2f} / "
            f"{b_runs[-1][2].get('others_cpu_cores', float('nan')):.2f} cores"
        )
        meter[0] = Meter()

    log(
        f"(a) train_hybrid and (b) the bare loop, interleaved: {warmup} warm-up + {epochs} timed epochs "
        "each, patience=0"
    )
    t0 = time.perf_counter()
    result = train_hybrid(data, cfg=c, device=device, progress=False, on_epoch=on_epoch)
    wall = time.perf_counter() - t0
    a_secs = [h["seconds"] for h in result.history]
    b_secs = [s for s, _, _ in b_runs]
    a = _rate(n, a_secs[warmup:])
    a["others_cpu_cores_timed"] = _others(a_load[warmup:])
    a.update(
        {
            "warmup_epoch_seconds": [round(s, 3) for s in a_secs[:warmup]],
            "load_per_epoch": a_load,
            "final_loss": round(result.history[-1]["loss"], 4),
            "what": "hybrid.train.train_hybrid(data, cfg=replace(cfg, epochs=warmup+epochs, patience=0), "
            "on_epoch=...); seconds = sum of history[i]['seconds'] over the timed epochs (the callback, "
            "which runs (b), is outside them)",
        }
    )
    bb = _rate(n, b_secs[warmup:])
    bb["others_cpu_cores_timed"] = _others([m for _, _, m in b_runs[warmup:]])
    bb.update(
        {
            "warmup_epoch_seconds": [round(s, 3) for s in b_secs[:warmup]],
            "load_per_epoch": [m for _, _, m in b_runs],
            "final_loss": round(b_runs[-1][1][0], 4),
            "prebuild_seconds": round(build_s, 2),
            "prebuilt_batches": len(batches),
            "prebuilt_mib": round(sum(pb.nbytes() for pb in batches) / 2**20, 1),
            "batches_reused_each_epoch": True,
            "loss": "hybrid.fit.step_loss itself (reused, not replicated), fed one pre-built batch per "
            "call through an object whose columns return the pre-sliced tensor for any index and "
            "whose candidates()/content() return the pre-built candidate set, positive positions and "
            "candidate content; the rest of the step (embedding L2 on the batch's users and items, "
            "loss = mse + ranking_weight*ce + reg, zero_grad, backward, AdamW step, loss sums, one "
            "host sync per epoch) replicates the body of hybrid.fit.train_network's loop, with the same "
            "autocast, and deterministic algorithms on (it runs inside train_hybrid's callback)",
        }
    )
    pairs = [x / y for x, y in zip(b_secs[warmup:], a_secs[warmup:])]  # rate(a)/rate(b) of each epoch pair
    return {"a": a, "b": bb, "call_wall_s": round(wall, 2), "pair_ratios": [round(p, 3) for p in pairs]}


def measure_pipeline_only(data: Any, cfg: Any, device: str, epochs: int) -> dict[str, Any]:
    """The real loop's input pipeline alone: randperm, slices, gathers, candidates, content; no network."""
    import torch

    from pipeline.models.hybrid.fit import Batches

    n = len(data.interactions)
    b = Batches(data, data.interactions, cfg, device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    secs = []
    meter = Meter()
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=gen)
        acc = torch.zeros((), device=device)
        for s in range(0, n, cfg.batch_size):
            batch = _slice_batch(b, perm[s : s + cfg.batch_size], gen)
            acc += batch[2][0]  # keep a dependency on the batch (the gathers run eagerly anyway)
        acc.item()
        secs.append(time.perf_counter() - t0)
    out = _rate(n, secs[1:])
    out["load"] = meter.read()
    out["others_cpu_cores_timed"] = out["load"].get("others_cpu_cores")
    out["what"] = (
        "per epoch: torch.randperm, then per batch the indexing step_loss does on Batches "
        "(users/items/ratings/weights[idx], candidates(), content(cand), user_x[users])"
    )
    return out


def profile_steps(data: Any, cfg: Any, device: str, batches_n: int, top: int = 15) -> dict[str, Any]:
    """torch.profiler over ``batches_n`` steps of the real step (``Batches`` + index) and of the bare step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from pipeline.models.hybrid.fit import Batches

    n = len(data.interactions)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    b = Batches(data, data.interactions, cfg, device)
    pre = _prebuild(b, min(n, (batches_n + 2) * cfg.batch_size), cfg, device, cfg.seed)
    autocast = _autocast(device)
    perm = torch.randperm(n, device=device, generator=torch.Generator(device=device).manual_seed(cfg.seed))

    def step(kind: str, k: int, net: Any, opt: Any, gen: Any) -> Any:
        if kind == "real":
            return _real_step(
                net, opt, b, perm[k * cfg.batch_size : (k + 1) * cfg.batch_size], cfg, gen, autocast
            )
        return _bare_step(net, opt, pre[k % len(pre)], cfg, gen, autocast)

    out: dict[str, Any] = {}
    for name in ("real", "bare"):
        net, opt = _new_network(data, cfg, device)
        net.train()
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        for k in range(2):  # warm-up
            step(name, k, net, opt, gen)
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for k in range(batches_n):
                step(name, k + 2, net, opt, gen)
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
        avgs = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
        total = sum(getattr(e, key) for e in avgs) or 1.0
        out[name] = {
            "batches": batches_n,
            "wall_ms_per_batch": round(1000 * wall / batches_n, 2),
            "top_ops_by_self_time": [
                {
                    "op": e.key,
                    "calls": e.count,
                    "self_ms": round(getattr(e, key) / 1000, 2),
                    "share": round(getattr(e, key) / total, 3),
                }
                for e in avgs[:top]
            ],
        }
        gather_ops = (
            "aten::index",
            "aten::index_select",
            "aten::randperm",
            "aten::unique",
            "aten::_unique2",
            "aten::searchsorted",
            "aten::slice",
            "aten::randint",
        )
        out[name]["indexing_ops_self_ms"] = round(
            sum(getattr(e, key) for e in avgs if e.key in gather_ops) / 1000, 2
        )
    return out


def measure_full(data: Any, device: str) -> dict[str, Any]:
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.train import train_hybrid

    log("(f) full default training to early stop (train_hybrid(data), default HybridConfig)")
    cfg = HybridConfig()
    meter = Meter()
    result = train_hybrid(data, cfg=cfg, device=device, progress=False)
    load = meter.read()
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    return {
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "max_epochs": cfg.epochs,
        "patience": cfg.patience,
        "early_stopped": len(result.history) < cfg.epochs,
        "train_loop_seconds": round(result.seconds, 2),
        "call_wall_s": load["wall_s"],
        "load": load,
        "samples_per_s": round(result.samples_per_s, 1),
        "mean_epoch_seconds": round(statistics.mean(h["seconds"] for h in result.history), 3),
        "best_val_rmse": round(best.get("val_rmse", float("nan")), 4),
        "best_val_ranking_ce": round(best.get("val_ranking_ce", float("nan")), 4),
        "n_train": result.model.meta.get("n_train"),
    }


# --- report --------------------------------------------------------------------------------------------


def _machine(device: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from bench.machine import machine_info

    out: dict[str, Any] = {
        **machine_info(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": device,
        "cuda_available": torch.cuda.is_available(),
    }
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = torch.version.cuda
    return out


def _source() -> dict[str, Any]:
    """The commit, and whether the training code differs from it (the figures are of the working tree)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parent.parent
    files = (
        "pipeline/models/hybrid/fit.py",
        "pipeline/models/hybrid/network.py",
        "pipeline/features/vocab.py",
    )
    out: dict[str, Any] = {
        "files_sha256": {f: hashlib.sha256((root / f).read_bytes()).hexdigest()[:16] for f in files}
    }

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=root, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()

    try:
        out["commit"] = git("rev-parse", "HEAD") or None
        out["uncommitted_changes"] = git("diff", "--name-only", "HEAD", "--", *files).splitlines()
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    return out


def _print(r: dict[str, Any]) -> None:
    mach, m = r["machine"], r["measurements"]
    dev = mach["device"] + (f" ({mach['gpu']})" if mach.get("gpu") else "")
    print(
        f"\nmovierec training benchmark: {r['data']['dataset']}, {r['data']['ratings']:,} ratings, "
        f"{r['data']['users']:,} users, {r['data']['movies']:,} movies; batch {r['config']['batch_size']}, "
        f"negatives {r['config']['negatives']}"
    )
    print(
        f"machine: {mach['cpu_count']} CPUs ({mach['cpu_model']}), torch {mach['torch']} with "
        f"{mach['torch_threads']} threads, device {dev}; load average before/after "
        f"{mach['loadavg_before'][0]}/{mach['loadavg_after'][0]}\n"
    )
    head = (
        f"{'measurement':<44}{'epochs':>7}{'seconds':>9}{'samples/s':>11}{'median epoch':>14}"
        f"{'others CPU':>12}"
    )
    print(head)
    print("-" * len(head))
    labels = {
        "a": "(a) train_hybrid",
        "b": "(b) bare loop, pre-built batches",
        "p": "(p) input pipeline alone, no network",
    }
    for k in ("a", "b", "p"):
        x = m[k]
        others = x.get("others_cpu_cores_timed")
        print(
            f"{labels[k]:<44}{x['epochs_timed']:>7}{x['seconds']:>9.2f}{x['samples_per_s']:>11,.0f}"
            f"{x['median_epoch_samples_per_s']:>14,.0f}"
            + (f"{others:>7.2f} cores" if others is not None else f"{'n/a':>12}")
        )
    print(
        "(samples/s: over all timed epochs; median epoch: samples/s of the median epoch; others CPU: cores "
        "that other processes kept busy meanwhile)"
    )
    ra = r["ratios"]

    def ok(met: bool) -> str:
        return "met" if met else "MISSED"

    print(
        f"\nrate(a)/rate(b) = {ra['a_over_b']:.3f}   "
        f"(median of epoch pairs {ra['a_over_b_median_of_epoch_pairs']:.3f}; "
        f"target >= {TARGET_RATIO}: {ok(r['targets_met'][f'a_over_b >= {TARGET_RATIO}'])})"
    )
    print(f"input pipeline alone = {100 * ra['pipeline_time_share_of_a']:.1f}% of (a)'s epoch time")
    st = m["s"]
    print(
        f"(s) the real step alone, {st['steps']} steps: {st['seconds_per_step'] * 1000:.1f} ms/step, "
        f"{st['samples_per_s']:,.0f} samples/s"
    )
    if st["roofline"] is not None:
        print(_roofline_line(st["roofline"], None))
    if "f" in m:
        f = m["f"]
        print(
            f"\n(f) full default training: {f['epochs_run']} epochs (best {f['best_epoch']}, early stop: "
            f"{f['early_stopped']}), {f['train_loop_seconds']:.1f} s in the loop, "
            f"{f['call_wall_s']:.1f} s the call; best val RMSE {f['best_val_rmse']}; "
            f"others' CPU {f['load'].get('others_cpu_cores', 'n/a')} cores   "
            f"(target <= {TARGET_FULL_SECONDS:.0f} s: "
            f"{ok(r['targets_met'][f'full training <= {TARGET_FULL_SECONDS:.0f} s'])})"
        )
    for name, p in r.get("profile", {}).items():
        print(
            f"\nprofile, {name} step ({p['batches']} batches, {p['wall_ms_per_batch']} ms/batch under the "
            f"profiler; indexing ops {p['indexing_ops_self_ms']} ms self in all):"
        )
        for e in p["top_ops_by_self_time"][:10]:
            print(f"  {e['self_ms']:>9.2f} ms {100 * e['share']:5.1f}%  {e['calls']:>6}x  {e['op']}")
    failed = [c for c in r["checks"] if not c["ok"]]
    print(
        f"\nchecks: {len(r['checks']) - len(failed)}/{len(r['checks'])} passed"
        + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in failed)
    )


def _check_equivalence(data: Any, cfg: Any, device: str) -> dict[str, Any]:
    """The loss of a pre-built batch equals the loss ``step_loss`` computes from ``Batches`` and the index."""
    import torch

    from pipeline.models.hybrid.fit import Batches, step_loss

    b = Batches(data, data.interactions, cfg, device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    perm = torch.randperm(len(data.interactions), device=device, generator=gen)
    idx = perm[: cfg.batch_size]
    net, _ = _new_network(data, cfg, device)
    net.eval()
    g1 = torch.Generator(device=device).manual_seed(7)
    g2 = torch.Generator(device=device).manual_seed(7)
    with torch.no_grad(), _autocast(device):
        users, items, ratings, weights, cand, pos, content, user_x = _slice_batch(b, idx, g1)
        pb = _Prebuilt(users, items, ratings, weights, cand, pos, content, user_x, device, b.history)
        a = step_loss(net, b, idx, cfg, g2, train=False)
        p = step_loss(net, pb, None, cfg, g2, train=False)
    same = all(torch.equal(x, y) for x, y in zip(a, p))
    return {
        "check": "pre-built batch gives step_loss the same mse, ce and predictions as Batches[idx]",
        "ok": bool(same),
        "detail": f"mse {float(a[0]):.6f} vs {float(p[0]):.6f}, ce {float(a[1]):.6f} vs {float(p[1]):.6f}",
    }


# --- ML-1M and ML-25M shape ------------------------------------------------------------------------------


def ingested_data(shape: str, keep: bool) -> Any:
    """``TrainingData`` of ``bench.ingest``'s generator at this shape, ingested into a fresh home and loaded
    as ``bench.weekly``'s first week loads it: the real files' users' activity, so history bags and the
    catalogue's popularity are as skewed as the real ones (``synthetic_data``'s are not)."""
    from bench.ingest import dataset
    from bench.weekly import SHAPES as WEEKLY_ROWS

    directory, _ = dataset(Path(tempfile.gettempdir()) / "movierec-bench-weekly", WEEKLY_ROWS[shape], 42)
    return Home(None, keep, directory / "base", f"synthetic-{shape}").training_data()


def synthetic_data(shape: str) -> Any:
    """``TrainingData`` with the real file's users and movies and about its number of ratings."""
    from bench.batch import _synthetic_data, _synthetic_ratings

    n_users, n_items, rows = SHAPES[shape]
    users, items, ratings = _synthetic_ratings(n_users, n_items, rows / n_users / KEPT_SHARE[shape])
    return _synthetic_data(n_users, n_items, users, items, ratings)


def measure_steps(data: Any, cfg: Any, device: str, warmup: int, steps: int) -> dict[str, Any]:
    """(s): ``steps`` optimiser steps of the real training step on the whole data, after ``warmup``."""
    import torch

    from pipeline.models.hybrid.fit import Batches, Loop, Trainer

    n = len(data.interactions)
    b = Batches(data, data.interactions, cfg, device)
    net, opt = _new_network(data, cfg, device)
    net.train()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    trainer, loop = Trainer(net, opt, b, cfg, gen, _autocast(device)), Loop()
    perm = torch.randperm(n, device=device, generator=gen)
    batches = [perm[s : s + cfg.batch_size] for s in range(0, n, cfg.batch_size)][: warmup + steps]
    if len(batches) < warmup + steps:
        raise SystemExit(f"--warmup-steps + --steps exceeds the {len(batches)} batches of one epoch")
    sums = torch.zeros(3, device=device)
    for idx in batches[:warmup]:
        sums += loop.step(trainer, idx)
    sums.sum().item()
    meter = Meter()
    t0 = time.perf_counter()
    for k, idx in enumerate(batches[warmup:], 1):
        sums += loop.step(trainer, idx)
        if k % max(1, steps // 5) == 0:
            log(f"  step {k}/{steps}: {(time.perf_counter() - t0) / k:.3f} s/step")
    sums.sum().item()  # one host sync, as the real loop has per epoch
    seconds = time.perf_counter() - t0
    load = meter.read()
    samples = sum(len(idx) for idx in batches[warmup:])
    roof = roofline(lambda: loop.step(trainer, batches[-1]), len(batches[-1]), samples / seconds, device)
    return {
        "roofline": roof,
        "steps": steps,
        "warmup_steps": warmup,
        "samples": samples,
        "seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4),
        "samples_per_s": round(samples / seconds, 1),
        "others_cpu_cores_timed": load.get("others_cpu_cores"),
        "load": load,
        "what": "hybrid.fit.Loop().step (train_step: loss, embedding L2, backward, AdamW step) on the real "
        "Batches of every rating, after warm-up steps; one host sync at the end",
    }


def roofline(step: Any, rows: int, samples_per_s: float, device: str) -> dict[str, Any] | None:
    """``bench.roofline.ceiling`` of the step; None off the CPU, where the products are not timed."""
    if device != "cpu":
        return None
    from bench.roofline import ceiling

    return ceiling(step, rows, samples_per_s)


def _roofline_line(roof: dict[str, Any], target: int | None) -> str:
    ceiling = roof["ceiling_samples_per_s"]
    line = (
        f"arithmetic: {roof['flop_per_sample'] / 1e6:.2f} MFLOP a sample ("
        + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in roof["flop_per_sample_by_part"].items())
        + f"); the step's matrix products alone take {roof['gemm_seconds_per_step'] * 1000:.1f} ms "
        f"({roof['gemm_gflop_per_s']:.0f} GFLOP/s), so no step of this arithmetic exceeds {ceiling:,} "
        f"samples/s here"
    )
    if target is not None:
        need = target * roof["flop_per_sample"] / 1e9
        line += f" ({ceiling / target:.2f}x the target; the target needs {need:.0f} GFLOP/s)"
    return (
        line + f"; peak {roof['peak_gflop_per_s']:.0f} GFLOP/s, the step achieves "
        f"{roof['achieved_gflop_per_s']:.0f}"
    )


def run_shape(args: argparse.Namespace) -> int:
    """(s) at ML-1M or ML-25M shape, and (a) whole epochs at ML-1M shape."""
    import resource

    from pipeline.core.device import resolve_device
    from pipeline.core.settings import Settings
    from pipeline.models.hybrid.fit import training_settings

    device = resolve_device(args.device)
    load_before = os.getloadavg()
    log(f"{args.ratings} ratings of {args.shape} shape")
    t0 = time.perf_counter()
    data = synthetic_data(args.shape) if args.ratings == "synthetic" else ingested_data(args.shape, args.keep)
    gen_s = time.perf_counter() - t0
    n, (_, _, real_rows) = len(data.interactions), SHAPES[args.shape]
    shape = f"{data.interactions.n_users:,} users, {data.interactions.n_items:,} movies"
    log(f"{n:,} ratings, {shape} ({gen_s:.0f} s)")
    cfg = _config(args)
    m: dict[str, Any] = {}
    log(f"(s) {args.warmup_steps} warm-up + {args.steps} timed steps of the real training step")
    with training_settings():
        m["s"] = measure_steps(data, cfg, device, args.warmup_steps, args.steps)
    if args.shape == "ml1m":
        log(f"(a) train_hybrid: {args.warmup} warm-up + {args.epochs} timed epochs, patience=0")
        from pipeline.models.hybrid.train import train_hybrid

        c = replace(cfg, epochs=args.warmup + args.epochs, patience=0)
        meter = Meter()
        result = train_hybrid(data, cfg=c, device=device, progress=False)
        a = _rate(n, [h["seconds"] for h in result.history][args.warmup :])
        a["load"] = meter.read()
        a["others_cpu_cores_timed"] = a["load"].get("others_cpu_cores")
        m["a"] = a
    rate = m["s"]["samples_per_s"]
    warm_epochs = Settings().warm_start_epochs
    projection = {
        "real_ratings": real_rows,
        "epoch_seconds_at_real_ratings": round(real_rows / rate, 1),
        "warm_start_epochs": warm_epochs,
        "warm_start_training_seconds": round(warm_epochs * real_rows / rate, 1),
        "from": "(s) samples/s",
    }
    target = TARGET_SAMPLES_PER_S[args.shape]
    machine = _machine(device)
    machine["loadavg_before"] = [round(x, 2) for x in load_before]
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "train",
        "shape": args.shape,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "machine": machine,
        "source": _source(),
        "data": {
            "dataset": data.dataset,
            "ratings_source": args.ratings,
            "ratings": n,
            "users": data.interactions.n_users,
            "movies": data.interactions.n_items,
            "text_dim": int(data.movies.text.shape[1]),
            "generate_or_load_s": round(gen_s, 1),
        },
        "config": cfg.to_dict(),
        "measurements": m,
        "projection": projection,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets_met": {f"(s) >= {target:,} samples/s": rate >= target},
    }
    out = Path(args.output) if args.output != str(RESULTS) else RESULTS.with_name(f"train_{args.shape}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    s = m["s"]
    print(
        f"\nmovierec training benchmark, {args.shape} shape: {n:,} {args.ratings} ratings, "
        f"{report['data']['users']:,} users, {report['data']['movies']:,} movies; batch {cfg.batch_size}, "
        f"negatives {cfg.negatives}; {machine['cpu_count']} CPUs ({machine['cpu_model']}), torch "
        f"{machine['torch']} with {machine['torch_threads']} threads, device {device}; load average "
        f"before/after {machine['loadavg_before'][0]}/{machine['loadavg_after'][0]}"
    )
    others = s["others_cpu_cores_timed"]
    print(
        f"(s) {s['steps']} steps: {s['seconds_per_step'] * 1000:.0f} ms/step, {rate:,.0f} samples/s "
        f"(target >= {target:,}: {'met' if rate >= target else 'MISSED'}); others' CPU "
        + (f"{others:.2f} cores" if others is not None else "n/a")
    )
    if s["roofline"] is not None:
        print(_roofline_line(s["roofline"], target))
    if "a" in m:
        print(f"(a) train_hybrid, {m['a']['epochs_timed']} epochs: {m['a']['samples_per_s']:,.0f} samples/s")
    print(
        f"projected at {real_rows:,} ratings: {projection['epoch_seconds_at_real_ratings'] / 60:.1f} min an "
        f"epoch, {projection['warm_start_training_seconds'] / 3600:.2f} h for a warm start's {warm_epochs} "
        f"epochs; peak RSS {report['peak_rss_mib']:,.0f} MiB"
    )
    print(f"\nJSON: {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.shape != "ml100k":
        return run_shape(args)
    from pipeline.core.device import resolve_device
    from pipeline.features.loading import load_training_data
    from pipeline.models.hybrid.fit import training_settings

    device = resolve_device(args.device)
    load_before = os.getloadavg()
    home = Home(args.home, args.keep)
    try:
        engine = home.engine()
        log("loading the training data (load_training_data)")
        t0 = time.perf_counter()
        data = load_training_data(engine, progress=False)
        load_s = time.perf_counter() - t0
        engine.dispose()
    finally:
        home.cleanup()

    cfg = _config(args)
    n = len(data.interactions)
    checks = [_check_equivalence(data, cfg, device)]
    m: dict[str, Any] = {}
    ab = measure_real_and_bare(data, cfg, device, args.warmup, args.epochs)
    m["a"], m["b"] = ab["a"], ab["b"]
    log("(p) the input pipeline alone")
    m["p"] = measure_pipeline_only(data, cfg, device, args.epochs)
    log("(s) the real step alone, and the ceiling its arithmetic sets")
    with training_settings():
        m["s"] = measure_steps(data, cfg, device, args.warmup_steps, args.steps)
    ratios = {
        "a_over_b": round(m["a"]["samples_per_s"] / m["b"]["samples_per_s"], 3),
        "a_over_b_median_of_epoch_pairs": round(statistics.median(ab["pair_ratios"]), 3),
        "a_over_b_epoch_pairs": ab["pair_ratios"],
        "pipeline_time_share_of_a": round(m["p"]["seconds"] / m["a"]["seconds"], 3),
    }
    profile = {}
    if args.profile_batches or ratios["a_over_b"] < TARGET_RATIO:
        k = args.profile_batches or 20
        log(f"profiling {k} batches of the real and the bare step (torch.profiler)")
        with training_settings():
            profile = profile_steps(data, cfg, device, k)
    if not args.no_full:
        m["f"] = measure_full(data, device)

    targets = {f"a_over_b >= {TARGET_RATIO}": ratios["a_over_b"] >= TARGET_RATIO}
    if "f" in m:
        targets[f"full training <= {TARGET_FULL_SECONDS:.0f} s"] = (
            m["f"]["call_wall_s"] <= TARGET_FULL_SECONDS
        )
    machine = _machine(device)
    machine["loadavg_before"] = [round(x, 2) for x in load_before]
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "train",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "home": str(home.settings.home) if not home.fresh else "fresh (temporary, removed)",
        "setup": home.setup,
        "machine": machine,
        "source": _source(),
        "data": {
            "dataset": data.dataset,
            "ratings": n,
            "users": data.interactions.n_users,
            "movies": data.interactions.n_items,
            "text_dim": int(data.movies.text.shape[1]),
            "user_feature_dim": int(data.users.shape[1]),
            "load_training_data_s": round(load_s, 2),
        },
        "config": cfg.to_dict(),
        "warmup_epochs": args.warmup,
        "candidates": (
            "the whole catalogue for every batch"
            if data.interactions.n_items <= cfg.negatives
            else f"the batch's movies plus {cfg.negatives} sampled ones"
        ),
        "measurements": m,
        "ratios": ratios,
        "targets_met": targets,
        "checks": checks,
        "all_checks_ok": all(c["ok"] for c in checks),
    }
    if profile:
        report["profile"] = profile
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    _print(report)
    print(f"\nJSON: {out}")
    return 0 if report["all_checks_ok"] else 1


def _config(args: argparse.Namespace) -> Any:
    """The timed loops' ``HybridConfig``: the default, with ``--batch-size`` and ``--negatives`` if given."""
    from pipeline.models.hybrid.config import HybridConfig

    given = {"batch_size": args.batch_size, "negatives": args.negatives}
    return HybridConfig(**{k: v for k, v in given.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    import logging

    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--home",
        help="reuse this MOVIEREC_HOME's embedded server and its ingested ratings "
        "(default: a fresh temporary home, ML-100K ingested into it, removed after)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of (a) and (b) (3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs before them (1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="batch size of (a), (b) and (s) (default: HybridConfig's); (f) always uses the default config",
    )
    parser.add_argument(
        "--negatives",
        type=int,
        help="sampled movies per batch of (a), (b) and (s) (default: HybridConfig's); (f) always uses the "
        "default config",
    )
    parser.add_argument("--no-full", action="store_true", help="skip (f), the full default training")
    parser.add_argument(
        "--profile-batches",
        type=int,
        default=0,
        help="profile this many batches of each loop with torch.profiler (always 20 when "
        "rate(a)/rate(b) misses the target)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the fresh temporary home and its server")
    parser.add_argument(
        "--shape",
        choices=("ml100k", *SHAPES),
        default="ml100k",
        help="ml100k: the real file (default); ml1m, ml25m: synthetic ratings of that shape, (s) and "
        "the projected epoch",
    )
    parser.add_argument(
        "--ratings",
        choices=("synthetic", "weekly"),
        default="synthetic",
        help="at ml1m/ml25m shape: synthetic (generated in memory, default) or weekly (bench.ingest's "
        "generator through ingest and load, as bench.weekly trains on)",
    )
    parser.add_argument("--steps", type=int, default=40, help="timed steps of (s) at ml1m/ml25m shape (40)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before them (3)")
    parser.add_argument("--output", default=str(RESULTS), help=f"JSON results ({RESULTS})")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.warmup < 0 or args.steps < 1 or args.warmup_steps < 0:
        parser.error("--epochs and --steps must be at least 1, --warmup and --warmup-steps at least 0")
    for flag, value in (("--batch-size", args.batch_size), ("--negatives", args.negatives)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    from pipeline.core.device import resolve_device
    from pipeline.core.errors import MovierecError

    try:
        resolve_device(args.device)
    except MovierecError as exc:
        parser.error(str(exc))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
