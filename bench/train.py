"""Training benchmark on real ML-100K: the real training loop against a bare loop over pre-built batches.

    python -m bench.train [--home DIR] [--epochs N] [--warmup N] [--device auto|cpu|cuda] [--batch-size N]
                          [--no-full] [--profile-batches N] [--keep] [--output FILE]

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


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the data ------------------------------------------------------------------------------------------


class Home:
    """The embedded server of an existing MOVIEREC_HOME (``--home``), or a fresh temporary one with
    ML-100K."""

    def __init__(self, home: str | None, keep: bool) -> None:
        self.given, self.keep = home, keep
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
        log(f"fresh MOVIEREC_HOME {home}: starting an embedded PostgreSQL, migrating, ingesting ML-100K")
        t0 = time.perf_counter()
        embedded.start(self.settings)
        engine = get_engine(self.settings)
        upgrade(engine)
        t1 = time.perf_counter()
        path = fetch_offline_ml100k(self.settings).path
        t2 = time.perf_counter()
        result = ingest_directory(engine, path, dataset="ml-100k", progress=False)
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
    """Network and optimizer exactly as ``hybrid.fit._train`` builds them (same seed: same init)."""
    import torch

    from pipeline.models.hybrid.network import build_network

    train = data.interactions
    torch.manual_seed(cfg.seed)
    net = build_network(
        train.n_users, data.movies, data.users.shape[1], data.vocab, cfg, float(train.ratings.mean())
    ).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return net, opt


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

    from pipeline.models.hybrid.fit import Batches, train_hybrid

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
            "what": "hybrid.fit.train_hybrid(data, cfg=replace(cfg, epochs=warmup+epochs, patience=0), "
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
            "host sync per epoch) replicates the body of hybrid.fit._train's loop, with the same "
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
    from pipeline.models.hybrid.fit import train_hybrid

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


def run(args: argparse.Namespace) -> int:
    from pipeline.core.device import resolve_device
    from pipeline.features.loading import load_training_data
    from pipeline.models.hybrid.config import HybridConfig

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

    cfg = HybridConfig() if args.batch_size is None else HybridConfig(batch_size=args.batch_size)
    n = len(data.interactions)
    checks = [_check_equivalence(data, cfg, device)]
    m: dict[str, Any] = {}
    ab = measure_real_and_bare(data, cfg, device, args.warmup, args.epochs)
    m["a"], m["b"] = ab["a"], ab["b"]
    log("(p) the input pipeline alone")
    m["p"] = measure_pipeline_only(data, cfg, device, args.epochs)
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
        help="batch size of (a) and (b) (default: HybridConfig's); (f) always uses the default config",
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
    parser.add_argument("--output", default=str(RESULTS), help=f"JSON results ({RESULTS})")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.warmup < 0:
        parser.error("--epochs must be at least 1 and --warmup at least 0")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
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
