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
import datetime
import json
import logging
import math
import os
import signal
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
from hoitool.utils import signals
from hoitool.utils.io import atomic_path, write_text
from hoitool.utils.seeding import numpy_rng

log = logging.getLogger(__name__)


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
    that has one; or a run folder / checkpoint / model.pt whose weights seed a fresh run (the
    run's own checkpoint, once there is one, wins)."""


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


def _distributed_env() -> tuple[int, int]:
    """(world size, local rank) as torchrun sets them (1, 0 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """The device of this process: 'auto' takes CUDA when present; under torchrun every
    process takes the GPU of its LOCAL_RANK ('cuda' alone included)."""
    world, local = _distributed_env()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device here; use --device cpu or auto")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and world > 1:
        if dev.index is not None:
            raise InputError(f"--device {name} puts all {world} processes on one GPU: use --device cuda "
                             "(each process takes the GPU of its LOCAL_RANK)")
        dev = torch.device("cuda", local)
    elif dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def backend_for(device: torch.device) -> str:
    """The process-group backend for a training device: nccl serves CUDA tensors, gloo CPU ones."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join torchrun's process group (once; the backend suits `device`): (rank, world size)."""
    world, _ = _distributed_env()
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # long enough for rank 0 to encode a large dataset while the others wait at a barrier
        minutes = float(os.environ.get("HOITOOL_DIST_TIMEOUT_MIN", "240"))
        dist.init_process_group(backend_for(device), timeout=datetime.timedelta(minutes=minutes))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_checkpoint(path: str | Path, what: str = "delete it to start the run over, or pass another --out") -> dict:
    """A checkpoint file; an unreadable one is a user error whose advice is `what`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"checkpoint {path} is unreadable ({type(e).__name__}): {what}") from None


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _model_keys(cfg: dict) -> dict:
    return cfg.get("model", cfg)


def _seed_weights(path: str | Path, task_name: str) -> tuple[dict, dict, Path]:
    """(model, EMA) state dicts to start a fresh run from: a run folder (its
    checkpoints/last.pt, else model.pt), a training checkpoint, or a model.pt (its EMA
    weights seed both)."""
    p = Path(path)
    if p.is_dir():
        cands = [p / "checkpoints" / "last.pt", p / "model.pt"]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise InputError(f"--resume {p}: a folder without checkpoints/last.pt or model.pt; pass a run folder of hoitool train or a checkpoint file")
        p = found[0]
    elif not p.exists():
        raise InputError(f"--resume {p}: no such checkpoint")
    state = load_checkpoint(p, "pass another --resume (a run folder, checkpoint or model.pt)")
    if not isinstance(state, dict):
        raise InputError(f"--resume {p}: not a hoitool checkpoint or model file")
    if "task_name" in state:  # a training checkpoint
        kind, model, ema = state["task_name"], state["model"], state["ema"]
    elif "kind" in state and "state_dict" in state:  # a model.pt (EMA weights only)
        kind, model, ema = state["kind"], state["state_dict"], state["state_dict"]
    else:
        raise InputError(f"--resume {p}: not a hoitool checkpoint or model file")
    if kind != task_name:
        raise InputError(f"--resume {p} holds a {kind} model, not {task_name}")
    return model, ema, p


def _load_weights(module: nn.Module, sd: dict, source: Path) -> None:
    try:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except RuntimeError:
        raise InputError(f"{source} was trained with other model options: use the same options, or another --out") from None


def _trim_metrics(path: Path, step: int) -> None:
    """Keep metrics.jsonl entries up to `step` (those after it are redone by the resumed run)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut by a kill
    write_text(path, "".join(keep))


def train(task: Task, cfg: TrainConfig, progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    """Train `task` into cfg.out; see the module docstring.

    Resume: the run's own checkpoints/last.pt always wins (with any --resume but 'never',
    which refuses it); a --resume PATH only seeds the weights of a fresh run. SIGINT, SIGTERM
    and SIGHUP are held back to the end of the step under way; the run then saves its
    checkpoint and raises `Interrupted`.
    """
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = init_distributed(device)
    if cfg.batch_size % world:
        raise InputError(f"--batch-size {cfg.batch_size} does not split over {world} processes: use a multiple of {world}")
    run = Path(cfg.out)
    if run.exists() and not run.is_dir():
        raise InputError(f"--out {run} is a file: pass a folder for the run")
    ckpt_path = run / "checkpoints" / "last.pt"
    t0 = time.time()

    torch.manual_seed(cfg.seed)
    model = task.build(device).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=tuple(cfg.betas),
                            weight_decay=cfg.weight_decay)
    start = 0
    own = ckpt_path.is_file()
    if cfg.resume == "never" and own:
        raise InputError(f"{run} already holds a run (checkpoint {ckpt_path}): pass --resume auto to continue it, or another --out")
    if own:
        state = load_checkpoint(ckpt_path)
        if cfg.resume not in ("auto", "never"):
            log.warning("%s has its own checkpoint (step %s): continuing it; --resume %s only seeds a fresh run",
                        run, state.get("step"), cfg.resume)
        if state.get("task_name") != task.name:
            raise InputError(f"{ckpt_path} is a {state.get('task_name')} checkpoint, not {task.name}: use another --out")
        theirs, ours = _model_keys(state["task"]), _model_keys(task.config())
        if theirs != ours:
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise InputError(f"{ckpt_path} was trained with other model options ({', '.join(diff)} differ): "
                             "use the same options and inputs, or another --out")
        _load_weights(model, state["model"], ckpt_path)
        _load_weights(ema, state["ema"], ckpt_path)
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    elif cfg.resume not in ("auto", "never"):
        m_sd, e_sd, src = _seed_weights(cfg.resume, task.name)
        _load_weights(model, m_sd, src)
        _load_weights(ema, e_sd, src)

    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        save_config({"task": task.name, "train": asdict(cfg), **task.config(), "world_size": world}, run / "config.yaml")
        _trim_metrics(run / "metrics.jsonl", start)
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
    stopped: int | None = None
    try:
        with signals.deferred() as flag:
            while step < cfg.steps:
                model.train()
                for g in opt.param_groups:
                    g["lr"] = learning_rate(cfg, step)
                idx = global_batch(cfg.seed, step, cfg.batch_size, n)[rank * local:(rank + 1) * local]
                keys = [(cfg.seed, step, rank * local + j) for j in range(local)]
                loss, logs = task.loss(trainee, idx, keys, device)
                # every rank learns of a non-finite loss or a stop signal on any rank before the
                # backward pass (whose gradient all-reduce would otherwise hang or break)
                flags = torch.tensor([0.0 if torch.isfinite(loss) else 1.0, 1.0 if flag.requested else 0.0], device=device)
                if world > 1:
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                if flags[0] > 0:
                    bad = f"{loss.item()}" if not torch.isfinite(loss) else "not finite on another process"
                    raise InputError(f"loss is {bad} at step {step}: lower --lr, or check the data (NaN in {task.name} inputs?)")
                if flags[1] > 0:
                    stopped = flag.requested or signal.SIGTERM
                    break
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
                vals = torch.tensor([loss.item(), float(gnorm), *logs.values()], dtype=torch.float64, device=device)
                if world > 1:
                    dist.all_reduce(vals)
                    vals /= world
                vals = vals.cpu()
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
            if stopped is not None:
                if rank == 0 and step > start:
                    _save_checkpoint(ckpt_path, snapshot())  # keep the work done since the last checkpoint
                raise signals.Interrupted(stopped)
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
