"""`hoitool train vqvae|ghop|twohands|twohand-features|refinenet`: the G-HOP models on a prepared folder.

Multi-process (DDP; gloo on CPU, nccl on CUDA), same options:
    torchrun --nproc_per_node 2 -m hoitool train vqvae --data DATA --out RUN
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hoitool.cli.common import console, err_console, plain, progress_bar, setup_logging, summary, user_errors
from hoitool.cli.hoidiff import train_hoidiff

app = typer.Typer(help="Train a model (see `hoitool train MODEL --help`).", no_args_is_help=True, add_completion=False)

RESUME_HELP = "'auto' continues RUN's last checkpoint if there is one; 'never' refuses a RUN that has one; or a checkpoint to start from."


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def _train_progress(name: str) -> Iterator:
    """A progress bar with loss and rate, shown from the first finished step (so errors found
    while setting up print alone); None on ranks other than 0."""
    import time

    if _rank() != 0:
        yield None
        return
    prog = Progress(SpinnerColumn(), TextColumn(f"[bold]training {name}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} step/s"),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err_console)
    state: dict = {}

    def update(step: int, total: int, entry: dict) -> None:
        now = time.time()
        if not state:
            prog.start()
            state.update(task=prog.add_task(name, total=total, loss="-", rate="-"), first=(step, now))
        s0, t0 = state["first"]
        rate = (step - s0) / (now - t0) if now > t0 else 0.0
        prog.update(state["task"], completed=step, total=total, loss=f"{entry['loss']:.4f}", rate=f"{rate:.2f}")

    try:
        yield update
    finally:
        if state:
            prog.stop()


def _report(name: str, res, cfg) -> None:
    if _rank() != 0:
        return
    ran = res.step - res.resumed_from
    lines = [f"{res.step} steps in all" + (f" (resumed at {res.resumed_from})" if res.resumed_from else ""),
             f"this call: {ran} steps in {res.seconds:.0f} s ({ran / max(res.seconds, 1e-9):.2f} step/s)"]
    if res.losses:
        k = max(1, len(res.losses) // 10)
        lines.append(f"loss: first {sum(res.losses[:k]) / k:.4f}, last {sum(res.losses[-k:]) / k:.4f} (means of {k} steps)")
    summary(f"train {name}", res.written, lines)


def _data_weights(text: str | None, data: list[Path]) -> list[float] | None:
    """--data-weights as numbers, one per --data folder (None when not given)."""
    from hoitool.errors import InputError

    if text is None:
        return None
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--data-weights must be numbers separated by commas, got {text!r}") from None
    if len(w) != len(data):
        raise InputError(f"--data-weights has {len(w)} numbers for {len(data)} --data folder(s): give one per folder")
    if any(not (x >= 0) or x == float("inf") for x in w) or sum(w) <= 0:
        raise InputError(f"--data-weights must be non-negative and not all zero, got {text!r}")
    return w


def _data_yaml(data: list[Path], weights: list[float] | None) -> dict:
    """--data as --dry-run prints it: one folder as a path, several as a list (with their weights)."""
    d = {"data": str(data[0]) if len(data) == 1 else [str(p) for p in data]}
    if weights is not None:
        d["data_weights"] = weights
    return d


def _train_config(out, steps, batch_size, lr, device, resume, seed, checkpoint_every, log_every, **kw):
    from hoitool.train.loop import TrainConfig

    return TrainConfig(out=str(out), steps=steps, batch_size=batch_size, lr=lr, device=device, resume=resume, seed=seed,
                       checkpoint_every=checkpoint_every, log_every=log_every, **kw)


@app.command("vqvae")
def train_vqvae(
    data: list[Path] = typer.Option(..., "--data", help="Prepared folder (hoitool prepare-data); repeat to train on several (real and synthetic) at once."),
    data_weights: Optional[str] = typer.Option(None, "--data-weights", help="Share of samples drawn from each --data folder, comma-separated (e.g. 1,1 = half each) (default in proportion to their sizes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    steps: int = typer.Option(800, "--steps", min=1, help="Optimiser steps in all."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Global batch (split over torchrun processes)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine decay to lr/10)."),
    channels: int = typer.Option(64, "--channels", min=4, help="Base channel count."),
    codebook_size: int = typer.Option(512, "--codebook-size", min=2, help="Codebook entries."),
    patch: int = typer.Option(4, "--patch", min=1, help="Voxels per side folded into channels first (1 = none)."),
    bottleneck: str = typer.Option("continuous", "--bottleneck", help="continuous (default) or vq (a codebook, G-HOP's)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    resume: str = typer.Option("auto", "--resume", help=RESUME_HELP),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between metrics.jsonl / tensorboard entries."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the object autoencoder (VQ-VAE) that compresses 64^3 object grids to 3 x 16^3 latents."""
    from hoitool.errors import InputError
    from hoitool.models.vqvae import VQVAEConfig
    from hoitool.train.loop import train
    from hoitool.train.tasks import VQVAETask
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        if bottleneck not in ("continuous", "vq"):
            raise InputError(f"--bottleneck must be continuous or vq, got {bottleneck!r}")
        model = VQVAEConfig(patch=patch, channels=channels, codebook_size=codebook_size, bottleneck=bottleneck)
        weights = _data_weights(data_weights, data)
        cfg = _train_config(out, steps, batch_size, lr, device, resume, seed, checkpoint_every, log_every, betas=(0.5, 0.9))
        if dry_run:
            console.print(plain(dump_yaml({"train": cfg, "model": model, **_data_yaml(data, weights)})))
            return
        task = VQVAETask(list(data), model, weights=weights)
        with _train_progress("vqvae") as update:
            res = train(task, cfg, update)
        _report("vqvae", res, cfg)


@app.command("ghop")
def train_ghop(
    data: list[Path] = typer.Option(..., "--data", help="Prepared folder (hoitool prepare-data); repeat to train on several (real and synthetic) at once."),
    data_weights: Optional[str] = typer.Option(None, "--data-weights", help="Share of samples drawn from each --data folder, comma-separated (e.g. 1,1 = half each) (default in proportion to their sizes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    vqvae: Optional[Path] = typer.Option(None, "--vqvae", help="VQ-VAE run folder or model.pt (default: the shipped one)."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimiser steps in all."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Global batch (split over torchrun processes)."),
    lr: float = typer.Option(4e-4, "--lr", help="Peak learning rate (cosine decay to lr/10)."),
    channels: int = typer.Option(32, "--channels", min=8, help="Base channel count of the UNet."),
    text_encoder: str = typer.Option("minilm", "--text-encoder", help="'minilm' (shipped) or a local transformers text encoder folder (e.g. CLIP)."),
    text_dropout: float = typer.Option(0.2, "--text-dropout", min=0.0, max=1.0, help="Share of samples trained with the empty prompt."),
    copies: int = typer.Option(4, "--copies", min=1, help="Encoded copies per record (the first as prepared, the rest augmented)."),
    prediction: str = typer.Option("v", "--prediction", help="What the denoiser predicts: v (default) or epsilon (G-HOP's)."),
    min_snr_gamma: float = typer.Option(5.0, "--min-snr-gamma", min=0.0, help="Min-SNR loss weighting; 0 = plain MSE."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    resume: str = typer.Option("auto", "--resume", help=RESUME_HELP),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between metrics.jsonl / tensorboard entries."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="MANO folder, when it moved since prepare-data (default: the one DATA was prepared with)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the interaction prior: a text-conditioned 3D diffusion model over [VQ-VAE latent | hand field] grids."""
    from hoitool.errors import InputError
    from hoitool.models.unet3d import UNetConfig
    from hoitool.prior.model import ScheduleConfig
    from hoitool.train.loop import init_distributed, resolve_device, train
    from hoitool.train.tasks import GHOPTask, PriorOptions
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        model = UNetConfig(channels=channels)
        weights = _data_weights(data_weights, data)
        if prediction not in ("v", "epsilon"):
            raise InputError(f"--prediction must be v or epsilon, got {prediction!r}")
        opts = PriorOptions(text_encoder=text_encoder, text_dropout=text_dropout, copies=copies,
                            schedule=ScheduleConfig(prediction_type="v_prediction" if prediction == "v" else "epsilon"),
                            min_snr_gamma=min_snr_gamma or None)
        cfg = _train_config(out, steps, batch_size, lr, device, resume, seed, checkpoint_every, log_every, weight_decay=0.01)
        if dry_run:
            console.print(plain(dump_yaml({"train": cfg, "model": model, "options": opts, **_data_yaml(data, weights),
                                     "vqvae": str(vqvae) if vqvae else "shipped default",
                                     "mano_dir": str(mano_dir) if mano_dir else "as prepared"})))
            return
        if Path(out).exists() and not Path(out).is_dir():
            raise InputError(f"--out {out} is a file: pass a folder for the run")
        task = GHOPTask(list(data), vqvae, model, opts, cache=Path(out) / "latents", encode=False, mano_dir=mano_dir, weights=weights)
        dev = resolve_device(cfg.device)
        init_distributed(dev)  # rank 0 encodes the cache, the others wait for it
        with (contextlib.nullcontext(None) if _rank() != 0 else progress_bar("encoding records with the VQ-VAE")) as enc:
            task.encode(device=dev, progress=enc)
        with _train_progress("ghop") as update:
            res = train(task, cfg, update)
        _report("ghop", res, cfg)


@app.command("twohands")
def train_twohands(
    data: Path = typer.Option(..., "--data", help="Prepared two-hand folder (hoitool prepare-data --two-hands N, or a two-hand manifest)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Optimiser steps in all."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Global batch (split over torchrun processes)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine decay to lr/10)."),
    joint: bool = typer.Option(False, "--joint", help="One network over both hands at once (the non-cascaded ablation)."),
    width: int = typer.Option(384, "--width", min=16, help="Width of the fully connected stack."),
    token_dim: int = typer.Option(96, "--token-dim", min=8, help="Token width (a multiple of 4)."),
    dropout: float = typer.Option(0.1, "--dropout", min=0.0, max=0.9, help="Dropout in the denoiser."),
    cond_noise: float = typer.Option(1.0, "--cond-noise", min=0.0, help="Conditioning augmentation: noise on the anchor the second hand is conditioned on (normalised units)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    resume: str = typer.Option("auto", "--resume", help=RESUME_HELP),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    log_every: int = typer.Option(50, "--log-every", min=1, help="Steps between metrics.jsonl / tensorboard entries."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the two-hand diffusion model (InterHandGen): cascaded anchor / conditional stages sharing one network,
    x0 prediction, an object encoder when the data has objects."""
    from hoitool.errors import InputError
    from hoitool.train.loop import train
    from hoitool.train.tasks import TwoHandOptions, TwoHandTask
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        if token_dim % 4:
            raise InputError(f"--token-dim must be a multiple of 4 (the attention heads), got {token_dim}")
        opts = TwoHandOptions(joint=joint, width=width, token_dim=token_dim, dropout=dropout, cond_noise=cond_noise)
        cfg = _train_config(out, steps, batch_size, lr, device, resume, seed, checkpoint_every, log_every, grad_clip=4.0)
        if dry_run:
            console.print(plain(dump_yaml({"train": cfg, "options": opts, "data": str(data)})))
            return
        task = TwoHandTask(data, opts)
        with _train_progress("twohands") as update:
            res = train(task, cfg, update)
        _report("twohands", res, cfg)


@app.command("twohand-features")
def train_twohand_features(
    data: Path = typer.Option(..., "--data", help="Prepared two-hand folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    steps: int = typer.Option(1500, "--steps", min=1, help="Optimiser steps in all."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Global batch."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine decay to lr/10)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    resume: str = typer.Option("auto", "--resume", help=RESUME_HELP),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    log_every: int = typer.Option(50, "--log-every", min=1, help="Steps between metrics.jsonl / tensorboard entries."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="MANO folder, when it moved since prepare-data."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the feature network of hoitool evaluate twohands (FHID, KHID, precision, recall): a PointNet++ that
    regresses both hands' parameters from their point cloud."""
    from hoitool.train.loop import train
    from hoitool.train.tasks import TwoHandFeatureTask
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        cfg = _train_config(out, steps, batch_size, lr, device, resume, seed, checkpoint_every, log_every)
        if dry_run:
            console.print(plain(dump_yaml({"train": cfg, "data": str(data)})))
            return
        task = TwoHandFeatureTask(data, mano_dir)
        with _train_progress("twohand-features") as update:
            res = train(task, cfg, update)
        _report("twohand-features", res, cfg)


@app.command("refinenet")
def train_refinenet(
    data: list[Path] = typer.Option(..., "--data", help="Prepared folder (hoitool prepare-data); repeat to train on several (corpus and real) at once."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Optimiser steps in all."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Global batch (split over torchrun processes)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine decay to lr/10)."),
    iterations: int = typer.Option(3, "--iterations", min=1, help="Refinement steps with shared weights (the paper's 3)."),
    surface_points: int = typer.Option(64, "--surface-points", min=1, help="Hand surface vertices read, besides the 21 keypoints."),
    width: int = typer.Option(256, "--width", min=8, help="Width of the hidden layers."),
    articulation_noise: float = typer.Option(0.15, "--articulation-noise", min=0.0, help="Std (rad) of the noise on each articulation component."),
    rotation_noise: float = typer.Option(0.1, "--rotation-noise", min=0.0, help="Std (rad) per axis of the turn about the wrist."),
    translation_noise: float = typer.Option(0.01, "--translation-noise", min=0.0, help="Std (m) of the shift per axis."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    resume: str = typer.Option("auto", "--resume", help=RESUME_HELP),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    log_every: int = typer.Option(50, "--log-every", min=1, help="Steps between metrics.jsonl / tensorboard entries."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="MANO folder, when it moved since prepare-data (default: the one DATA was prepared with)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train Cao et al.'s refinement network: iterative pose updates from hand-to-object SDF features, on perturbed
    ground-truth grasps."""
    from hoitool.refine.data import Perturbation
    from hoitool.refine.model import RefineConfig
    from hoitool.refine.task import RefineTask
    from hoitool.train.loop import train
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        model = RefineConfig(surface_points=surface_points, width=width, iterations=iterations)
        pert = Perturbation(articulation=articulation_noise, rotation=rotation_noise, translation_m=translation_noise)
        cfg = _train_config(out, steps, batch_size, lr, device, resume, seed, checkpoint_every, log_every)
        if dry_run:
            console.print(plain(dump_yaml({"train": cfg, "model": model, "perturbation": pert, **_data_yaml(data, None),
                                           "mano_dir": str(mano_dir) if mano_dir else "as prepared"})))
            return
        task = RefineTask(list(data), model, pert, mano_dir=mano_dir)
        with _train_progress("refinenet") as update:
            res = train(task, cfg, update)
        _report("refinenet", res, cfg)


app.command("hoidiff")(train_hoidiff)
