"""The training loop shared by every model.

    from hoitool.train.loop import TrainConfig, train
    train(task, TrainConfig(out="runs/vq", steps=2000, batch_size=8))

Runs unchanged under torchrun (DDP; gloo on CPU, nccl on CUDA); rank 0 alone writes:

    torchrun --nproc_per_node 2 -m hoitool train vqvae --data DATA --out RUN

Run folder: config.yaml (resolved options), checkpoints/last.pt (model, EMA, optimiser, step;
replaced atomically, so a kill at any moment leaves the previous one readable), metrics.jsonl
and tb/ (tensorboard scalars), model.pt (EMA weights for sampling, written at the end).

Which records form the batch of step s, and every random draw of a sample, depend only on
(seed, s, the sample's position in the global batch), never on the number of processes: a
2-process run and a 1-process run with the same global batch see the same data and noise.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hoitool.errors import InputError
from hoitool.utils.config import save_config
from hoitool.utils.io import atomic_path
from hoitool.utils.seeding import numpy_rng


@dataclass
class TrainConfig:
    """Options of the training loop (the model's own options live in its task)."""

    out: str = "runs/run"
    """Run folder."""
    steps: int = 2000
    """Optimiser steps in all (a resumed run continues up to this)."""
    batch_size: int = 8
    """Global batch: split evenly over the processes."""
    lr: float = 2e-4
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup: int = 50
    """Linear warm-up steps."""
    schedule: str = "cosine"
    """'cosine' (to lr / 10 at the last step) or 'constant'."""
    grad_clip: float = 10.0
    """Clip the gradient norm to this (0: no clipping)."""
    ema_decay: float = 0.999
    """Decay of the weight average used for sampling (with the usual warm-up (1+s)/(10+s))."""
    checkpoint_every: int = 200
    """Steps between checkpoints."""
    log_every: int = 10
    """Steps between tensorboard / metrics.jsonl entries."""
    seed: int = 0
    """Seed of initialisation, batch order and noise."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    resume: str = "auto"
    """'auto': continue from checkpoints/last.pt when there is one; 'never': refuse a run folder
    that has one; or a checkpoint path to start from."""


class Task(Protocol):
    """What the loop needs of a model."""

    name: str

    def config(self) -> dict:
        """The task's resolved options (saved in config.yaml and every checkpoint)."""

    def build(self, device: torch.device) -> nn.Module:
        """The trainable module, freshly initialised (the loop seeds torch first)."""

    def size(self) -> int:
        """Number of training records."""

    def loss(self, model: nn.Module, idx: np.ndarray, keys: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over a (local) batch of records `idx`; `keys` are (step, global position)
        per sample, for per-sample random draws."""

    def export(self, model: nn.Module) -> dict:
        """What model.pt holds besides the weights (configs, normalisation, ...)."""


@dataclass
class TrainResult:
    run: Path
    step: int
    """Steps done in all."""
    resumed_from: int
    """Step the run started from (0 for a fresh run)."""
    losses: list[float]
    """Loss of every step run by this call (averaged over processes)."""
    seconds: float
    written: list[Path]


def global_batch(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Record indices of step `step`: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, off = divmod(start + len(out), n)
        perm = numpy_rng(seed, "epoch", epoch).permutation(n)
        out.extend(perm[off:off + batch_size - len(out)].tolist())
    return np.asarray(out)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if dist.is_initialized() and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device here; use --device cpu or auto")
    return torch.device(name)


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"checkpoint {path} is unreadable ({type(e).__name__}): delete it to start over, or pass another --resume") from None


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _model_keys(cfg: dict) -> dict:
    return cfg.get("model", cfg)


def train(task: Task, cfg: TrainConfig, progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    """Train `task` into cfg.out; see the module docstring."""
    rank, world = _init_distributed()
    if cfg.batch_size % world:
        raise InputError(f"--batch-size {cfg.batch_size} does not split over {world} processes: use a multiple of {world}")
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run = Path(cfg.out)
    ckpt_path = run / "checkpoints" / "last.pt"
    t0 = time.time()

    torch.manual_seed(cfg.seed)
    model = task.build(device).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=tuple(cfg.betas),
                            weight_decay=cfg.weight_decay)
    start = 0
    source = ckpt_path if cfg.resume == "auto" and ckpt_path.exists() else None
    if cfg.resume == "never" and ckpt_path.exists():
        raise InputError(f"{run} already holds a run (checkpoint {ckpt_path}): pass --resume auto to continue it, or another --out")
    if cfg.resume not in ("auto", "never"):
        source = Path(cfg.resume)
        if not source.exists():
            raise InputError(f"--resume {source}: no such checkpoint")
    if source is not None:
        state = load_checkpoint(source)
        if state.get("task_name") != task.name:
            raise InputError(f"{source} is a {state.get('task_name')} checkpoint, not {task.name}")
        if _model_keys(state["task"]) != _model_keys(task.config()):
            raise InputError(f"{source} was trained with other model options: use the same options, or another --out")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if "optimizer" in state and source == ckpt_path:
            opt.load_state_dict(state["optimizer"])
            start = int(state["step"])

    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        save_config({"task": task.name, "train": asdict(cfg), **task.config(), "world_size": world}, run / "config.yaml")
    writer = None
    if rank == 0:
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run / "tb"), purge_step=start)
    trainee = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    local = cfg.batch_size // world
    n = task.size()
    losses: list[float] = []
    step = start

    def snapshot() -> dict:
        return {"task_name": task.name, "task": task.config(), "train": asdict(cfg), "step": step,
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "export": task.export(ema)}

    metrics = open(run / "metrics.jsonl", "a") if rank == 0 else None
    try:
        while step < cfg.steps:
            model.train()
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, step)
            idx = global_batch(cfg.seed, step, cfg.batch_size, n)[rank * local:(rank + 1) * local]
            keys = [(cfg.seed, step, rank * local + j) for j in range(local)]
            loss, logs = task.loss(trainee, idx, keys, device)
            if not torch.isfinite(loss):
                raise InputError(f"loss is {loss.item()} at step {step}: lower --lr, or check the data (NaN in {task.name} inputs?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            opt.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
            vals = torch.tensor([loss.item(), float(gnorm), *logs.values()], dtype=torch.float64)
            if world > 1:
                dist.all_reduce(vals)
                vals /= world
            step += 1
            losses.append(float(vals[0]))
            entry = {"step": step, "loss": float(vals[0]), "grad_norm": float(vals[1]), "lr": opt.param_groups[0]["lr"],
                     **{k: float(v) for k, v in zip(logs, vals[2:])}}
            if rank == 0:
                if step % cfg.log_every == 0 or step == cfg.steps:
                    metrics.write(json.dumps(entry) + "\n")
                    metrics.flush()
                    if writer is not None:
                        for k, v in entry.items():
                            if k != "step":
                                writer.add_scalar(f"{task.name}/{k}", v, step)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    _save_checkpoint(ckpt_path, snapshot())
                if progress is not None:
                    progress(step, cfg.steps, entry)
    except KeyboardInterrupt:
        if rank == 0 and step > start:
            _save_checkpoint(ckpt_path, snapshot())  # keep the work done since the last checkpoint
        raise
    finally:
        if metrics is not None:
            metrics.close()
        if writer is not None:
            writer.close()
    written = []
    if rank == 0:
        final = {"kind": task.name, "step": step, "state_dict": ema.state_dict(), **task.export(ema)}
        with atomic_path(run / "model.pt") as tmp:
            torch.save(final, tmp)
        written = [run / "model.pt", ckpt_path, run / "config.yaml", run / "metrics.jsonl"] + ([run / "tb"] if writer else [])
    if world > 1:
        dist.barrier()
    return TrainResult(run, step, start, losses, time.time() - t0, written)
