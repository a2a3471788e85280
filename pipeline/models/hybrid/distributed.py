"""Data-parallel training of the hybrid network: N processes under ``torchrun``, PyTorch's
DistributedDataParallel (DDP) around the loss, gloo on the CPU and NCCL with one GPU per process.

``train.train_hybrid(..., processes=N)`` (``MOVIEREC_TRAIN_PROCESSES``, which the train step reads) comes
here:

* **launching** (``train_distributed``, ``launch``): the inputs (training data, rows, config, device) are
  pickled into a temporary directory, and ``python -m torch.distributed.run --standalone --nproc-per-node N``
  starts N copies of this module on it (rendezvous on localhost, a free port; no restarts). Each process runs
  ``cores / N`` threads, so N processes share the machine's cores instead of fighting over them.
* **each process** (``main``): ``init_process_group`` (gloo, or NCCL on its own GPU ``cuda:LOCAL_RANK``), then
  the one training loop, ``fit.train_network``, with a ``DataParallel`` loop. Every process draws the same
  permutation and the same candidate movies (the same seed; candidates from the *whole* batch's movies), and
  computes the loss on its own contiguous shard of each batch: per-process batch = batch / N. DDP averages the
  gradients; each shard's loss is weighted by its share of the batch, so the averaged gradient is the whole
  batch's, as one process computes it, uneven last batch included. What still differs from one process:
  dropout masks (each process draws its own for its rows) and the order of float sums.
* **validation and early stopping**: every process validates (the same parameters, so the same figures and the
  same generator state afterwards), and the record of rank 0 is broadcast so that all stop at the same epoch.
  Rank 0 saves the artifact and the history into the directory; the launcher loads them back.
* **failures**: a process that raises writes its one-line error beside the inputs; torchrun then stops the
  others. ``launch`` raises ``MovierecError`` naming the rank whose error came first (a peer's error is then
  usually only the lost connection), or the tail of torchrun's output when no process wrote one.

On the ML-100K slice (tiny config, 2 gloo processes) the final validation loss is within 1% of one process's
(``tests/pipeline/models/hybrid/test_distributed.py``). One process (the default) never comes here: it is the
unchanged ``fit.train_network`` loop, the same model for the same seed as before.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.core.errors import MovierecError, one_line, shorten
from pipeline.features.interactions import Interactions
from pipeline.features.loading import TrainingData
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.fit import Batches, Loop, Trainer, TrainingResult, batch_loss, train_network
from pipeline.models.hybrid.warm_start import Replay

log = logging.getLogger(__name__)

ENTRY = "pipeline.models.hybrid.distributed"  # the module torchrun runs in each process
INPUTS, MODEL, RESULT, LAUNCH_LOG = "inputs.pkl", "model", "result.json", "torchrun.log"
INIT = "init"  # the network a warm start begins from (HybridArtifact.save)


def _error_file(workdir: Path, rank: int) -> Path:
    return workdir / f"rank-{rank}.error"


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_process(processes: int) -> int:
    return max(1, cores() // processes)


# --- the launcher ------------------------------------------------------------------------------------------


def train_distributed(
    data: TrainingData,
    train: Interactions | None,
    cfg: HybridConfig,
    device: str,
    processes: int,
    init: HybridArtifact | None = None,
    epochs: int | None = None,
    replay: Replay | None = None,
) -> TrainingResult:
    """Train in ``processes`` data-parallel processes on this machine; the model comes back on ``device``.
    ``init``, ``epochs``, ``replay``: a warm start, as ``train_hybrid`` takes them (every process loads
    ``init``)."""
    if processes < 2:
        raise ValueError(f"data-parallel training needs at least 2 processes, not {processes}")
    if torch.device(device).type == "cuda" and processes > torch.cuda.device_count():
        raise MovierecError(
            f"{processes} training processes asked for, but this machine has {torch.cuda.device_count()} "
            "CUDA devices (one process per GPU)"
        )
    with tempfile.TemporaryDirectory(prefix="movierec-ddp-") as tmp:
        workdir = Path(tmp)
        if init is not None:
            init.save(workdir / INIT)
        with (workdir / INPUTS).open("wb") as f:
            pickle.dump(
                {
                    "data": data,
                    "train": train,
                    "cfg": cfg,
                    "device": device,
                    "epochs": epochs,
                    "replay": replay,
                },
                f,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        launch(workdir, processes)
        out = json.loads((workdir / RESULT).read_text())
        model = HybridArtifact.load(workdir / MODEL, device)
    return TrainingResult(model, out["history"], out["best_epoch"], out["seconds"], out["samples_per_s"])


def launch(workdir: Path, processes: int) -> None:
    """Run ``processes`` copies of this module on ``workdir`` under torchrun; a failure raises one line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process(processes))}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "--max-restarts=0",
        "-m",
        ENTRY,
        str(workdir),
    ]
    log.info("training in %d processes: %s", processes, " ".join(command[1:]))
    with (workdir / LAUNCH_LOG).open("wb") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code == 0 and (workdir / RESULT).exists():
        return
    tail = (workdir / LAUNCH_LOG).read_text(errors="replace").strip().splitlines()[-20:]
    log.error("torchrun exited with %d; the end of its output:\n%s", code, "\n".join(tail))
    errors = sorted(workdir.glob("rank-*.error"), key=lambda p: p.stat().st_mtime_ns)
    if errors:
        rank = errors[0].stem.removeprefix("rank-")
        reason = errors[0].read_text().strip()
        raise MovierecError(
            shorten(f"distributed training failed: rank {rank} of {processes}: {reason}".replace("\n", " "))
        )
    last = tail[-1] if tail else "no output"
    raise MovierecError(shorten(f"distributed training failed (torchrun exit {code}): {last}"))


# --- one process ---------------------------------------------------------------------------------------


class _BatchLoss(nn.Module):
    """The loss as a module's forward: DDP synchronises gradients of what runs inside its forward."""

    def __init__(self, net: nn.Module, b: Batches, cfg: HybridConfig) -> None:
        super().__init__()
        self.net, self.b, self.cfg = net, b, cfg

    def forward(
        self, idx: torch.Tensor, batch: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return batch_loss(self.net, self.b, idx, self.cfg, gen, batch)


class DataParallel(Loop):
    """The loop's steps as process ``rank`` of ``world``: its shard of each batch, DDP's gradients."""

    def __init__(self, rank: int, world: int, device: str) -> None:
        self.rank, self.world, self.device = rank, world, device
        self.lead = rank == 0
        self.ddp: DistributedDataParallel | None = None

    def prepare(self, t: Trainer) -> None:
        dev = torch.device(self.device)
        self.ddp = DistributedDataParallel(
            _BatchLoss(t.net, t.b, t.cfg), device_ids=[dev.index] if dev.type == "cuda" else None
        )

    def step(self, t: Trainer, idx: torch.Tensor) -> torch.Tensor:
        assert self.ddp is not None, "prepare() first"
        own = idx.tensor_split(self.world)[self.rank]
        share = len(own) / len(idx)
        if not len(own):  # a last batch smaller than the processes: a zero-weighted row keeps DDP in step
            own, share = idx[:1], 0.0
        with t.autocast:
            loss, mse, ce = self.ddp(own, idx, t.gen)
        t.opt.zero_grad(set_to_none=True)
        # DDP averages over the processes: weighted by its share x world, each shard's mean adds up to the
        # whole batch's mean, which is what one process steps on.
        (loss * (share * self.world)).backward()
        t.opt.step()
        return torch.stack([loss.detach(), mse.detach(), ce.detach()]) * (share * len(idx))

    def total(self, sums: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(sums)
        return sums

    def agree(self, record: dict[str, float]) -> dict[str, float]:
        shared: list[Any] = [record]
        dist.broadcast_object_list(shared, src=0)
        return dict(shared[0])


def _log_epoch(epoch: int, record: dict[str, float]) -> None:
    log.info("epoch %d: %s", epoch, record)


def _run(workdir: Path, rank: int, world: int, local_rank: int) -> None:
    with (workdir / INPUTS).open("rb") as f:
        inputs = pickle.load(f)  # written by train_distributed in this same run
    device = inputs["device"]
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    else:
        backend = "gloo"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or threads_per_process(world)))
    dist.init_process_group(backend)  # env:// — torchrun set the rendezvous, rank and world size
    try:
        result = train_network(
            inputs["data"],
            inputs["train"],
            inputs["cfg"],
            device,
            progress=False,
            on_epoch=_log_epoch if rank == 0 else None,
            loop=DataParallel(rank, world, device),
            init=HybridArtifact.load(workdir / INIT, device) if (workdir / INIT).exists() else None,
            epochs=inputs.get("epochs"),
            replay=inputs.get("replay"),
        )
        if rank == 0:
            result.model.save(workdir / MODEL)
            (workdir / RESULT).write_text(
                json.dumps(
                    {
                        "history": result.history,
                        "best_epoch": result.best_epoch,
                        "seconds": result.seconds,
                        "samples_per_s": result.samples_per_s,
                        "processes": world,
                    }
                )
            )
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """One training process (torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); argv: the directory."""
    args = sys.argv[1:] if argv is None else argv
    workdir = Path(args[0])
    rank = int(os.environ["RANK"])
    logging.basicConfig(level=logging.INFO, format=f"rank {rank}: %(levelname)s %(name)s: %(message)s")
    try:
        _run(workdir, rank, int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    except BaseException as exc:
        _error_file(workdir, rank).write_text(one_line(exc))
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
