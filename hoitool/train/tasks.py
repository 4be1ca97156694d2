"""The models' training tasks for hoitool.train.loop: the VQ-VAE and the G-HOP prior."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hoitool.errors import HoiError, InputError
from hoitool.geometry.grid import LATENT_RES
from hoitool.hand.model import HandModel, hand_fingerprint
from hoitool.models.text import DEFAULT_ENCODER, TextEncoder, prompt_for
from hoitool.models.unet3d import UNet3D, UNetConfig
from hoitool.models.vqvae import VQVAE, VQVAEConfig
from hoitool.prior.checkpoint import read_model, vqvae_from_model
from hoitool.prior.data import InteractionData, random_rigid
from hoitool.prior.model import GridNormaliser, ScheduleConfig, loss_weights, train_scheduler
from hoitool.utils.seeding import torch_generator


@dataclass
class Augment:
    """Random rigid motion of the grid frame n, per sample."""

    rotation: float = math.pi
    """Largest rotation (rad) about the grid centre."""
    shift: float = 0.1
    """Largest shift per axis (n units; 0.1 = 2 cm)."""


class VQVAETask:
    """L1 reconstruction of object grids (resampled under augmentations), plus `surface_weight`
    times the L1 over voxels within `surface_band` of the surface (where the zero level set, and
    so the decoded mesh, is decided: thin walls are only a voxel or two of it), plus
    `occupancy_weight` times the cross-entropy of inside/outside over the same voxels (logit
    -recon / `occupancy_tau`), plus the bottleneck's own loss (codebook and commitment, or the
    latent's mean square)."""

    name = "vqvae"

    def __init__(self, data: str | Path | list, model: VQVAEConfig | None = None, augment: Augment | None = None,
                 surface_weight: float = 4.0, surface_band: float = 0.25, occupancy_weight: float = 0.25,
                 occupancy_tau: float = 0.025, weights: list[float] | None = None):
        self.data = InteractionData(data)
        self.data_roots, self.weights = self.data.roots, weights
        self.shares = self.data.folder_shares(weights)
        self.model_cfg = model or VQVAEConfig()
        self.augment = augment or Augment()
        self.surface_weight = float(surface_weight)
        self.surface_band = float(surface_band)
        self.occupancy_weight = float(occupancy_weight)
        self.occupancy_tau = float(occupancy_tau)

    def config(self) -> dict:
        return {"model": asdict(self.model_cfg), **data_config(self.data_roots, self.weights), "augment": asdict(self.augment),
                "surface_weight": self.surface_weight, "surface_band": self.surface_band,
                "occupancy_weight": self.occupancy_weight, "occupancy_tau": self.occupancy_tau}

    def build(self, device: torch.device) -> nn.Module:
        return VQVAE(self.model_cfg)

    def size(self) -> int:
        return len(self.data)

    def loss(self, model, idx, keys, device):
        aug = torch.stack([random_rigid(torch_generator(*k, "augment"), self.augment.rotation, self.augment.shift) for k in keys])
        idx = self.data.draw(idx, self.shares, [torch_generator(*k, "record") for k in keys])  # see --data-weights
        grid = self.data.object_grids(idx, aug, device=device)
        out = model(grid)
        err = (out.recon - grid).abs()
        l1 = err.mean()
        near = grid.abs() < self.surface_band
        dims = tuple(range(1, grid.dim()))
        count = near.sum(dim=dims).clamp_min(1)
        # per-sample means, then the batch mean: the same loss however the batch is split over processes
        l1_near = ((err * near).sum(dim=dims) / count).mean()
        loss = l1 + self.surface_weight * l1_near + out.vq_loss
        info = {"l1": l1.item(), "l1_near": l1_near.item(), "vq": out.vq_loss.item()}
        if self.occupancy_weight:
            # inside/outside as a classification near the surface: a thin wall is a voxel or two
            # whose values lie within a millimetre or two of 0, which the L1 alone barely sees
            bce = F.binary_cross_entropy_with_logits(-out.recon / self.occupancy_tau, (grid < 0).to(out.recon.dtype), reduction="none")
            occ = ((bce * near).sum(dim=dims) / count).mean()
            loss = loss + self.occupancy_weight * occ
            info["occupancy"] = occ.item()
        return loss, info

    def export(self, model: nn.Module) -> dict:
        return {"config": asdict(self.model_cfg), **data_config(self.data_roots, self.weights)}


@dataclass
class PriorOptions:
    """Options of the prior's task besides the denoiser's sizes."""

    text_encoder: str = DEFAULT_ENCODER
    """'minilm' (shipped offline) or a local transformers text encoder folder (e.g. CLIP)."""
    text_dropout: float = 0.2
    """Probability of training a sample with the empty prompt (for classifier-free guidance)."""
    copies: int = 4
    """Encoded copies of each record: the first as prepared, the others augmented."""
    augment: Augment = field(default_factory=lambda: Augment(rotation=0.1, shift=0.03))
    """Augmentation of the extra copies (small: the hand-object relation must survive)."""
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(prediction_type="v_prediction"))
    min_snr_gamma: float | None = 5.0
    """Min-SNR-gamma loss weighting (None: plain MSE)."""


def data_config(roots: list[Path], weights: list[float] | None) -> dict:
    """How a run's data is written in its config: one folder as a string, several as a list (with weights)."""
    d = {"data": str(roots[0]) if len(roots) == 1 else [str(r) for r in roots]}
    if weights is not None:
        d["data_weights"] = list(weights)
    return d


def state_hash(sd: dict) -> str:
    """A short hash of a state dict's names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k]
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def data_fingerprint(root: Path) -> str:
    """A hash of a prepared folder's index and the size and modification time of its shards and
    objects: a folder prepared again (or changed in place) gets a new fingerprint."""
    h = hashlib.sha256((root / "index.jsonl").read_bytes())
    for p in sorted([*root.glob("shards/shard-*.npz"), *root.glob("objects/*.npz")]):
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepared_hand(root: Path, mano_dir: str | Path | None = None) -> HandModel:
    """The right hand a prepared folder's grids were made with (its config.yaml records it).

    `mano_dir` overrides the recorded MANO folder (e.g. after moving it); a hand whose arrays
    differ from the recorded one is refused."""
    import yaml

    cfg_path = root / "config.yaml"
    rec = (yaml.safe_load(cfg_path.read_text()) or {}).get("hand") if cfg_path.exists() else None
    if rec is None:  # prepared before hoitool recorded the hand: trust the caller
        return HandModel("right", mano_dir)
    source = mano_dir if mano_dir is not None else rec.get("mano_dir")
    try:
        hand = HandModel("right", source)
    except HoiError as e:
        raise InputError(f"{root} was prepared with {rec.get('source')}, which cannot be loaded now ({e}): pass --mano-dir") from None
    if hand_fingerprint(hand) != rec.get("fingerprint"):
        raise InputError(f"{root} was prepared with {rec.get('source')}, but the hand found now is {hand.source}: "
                         "pass the --mano-dir that prepare-data was given")
    return hand


#: Version of the latent cache's layout and contents (part of its key).
CACHE_VERSION = 2


class GHOPTask:
    """epsilon-prediction MSE on interaction grids [VQ-VAE latent | hand field], text-conditioned.

    The latents of every record (and its augmented copies) and the hand fields are encoded
    once into a cache folder (`latents.npy`, `fields.npy`, `key.json`), memory-mapped while
    training, so a dataset larger than RAM trains with the pages the batches touch. The cache
    is keyed by the VQ-VAE's weights, the data's fingerprint, the hand model and the options;
    under torchrun rank 0 encodes and writes it while the others wait, then all map it.
    """

    name = "ghop"

    def __init__(self, data: str | Path | list, vqvae: str | Path | None, model: UNetConfig | None = None,
                 options: PriorOptions | None = None, cache: Path | None = None,
                 log: Callable[[str], None] | None = None, progress: Callable[[int, int], None] | None = None,
                 encode: bool = True, mano_dir: str | Path | None = None, weights: list[float] | None = None):
        self.opts = options or PriorOptions()
        vq_model = read_model(vqvae, "vqvae")
        self.vqvae_source = vq_model["path"]
        self.vqvae = vqvae_from_model(vq_model)
        self.vqvae_state = {"config": vq_model["config"], "state_dict": self.vqvae.state_dict()}
        self.vqvae_sha = state_hash(self.vqvae.state_dict())
        self.data = InteractionData(data)
        self.data_roots, self.weights = self.data.roots, weights
        self.shares = self.data.folder_shares(weights)
        self.hand = prepared_hand(self.data_roots[0], mano_dir)
        self.hand_sha = hand_fingerprint(self.hand)
        for root in self.data_roots[1:]:  # one hand for all: grids and fields must agree
            other = prepared_hand(root, mano_dir)
            if hand_fingerprint(other) != self.hand_sha:
                raise InputError(f"{root} was prepared with {other.source}, {self.data_roots[0]} with {self.hand.source}: "
                                 "prepare every --data folder with the same hand model")
        self.text = TextEncoder(self.opts.text_encoder)
        cats = sorted(set(self.data.categories))
        self.prompts = [prompt_for(c) for c in cats] + [""]
        emb = self.text.encode(self.prompts)
        self.embeddings = {p: emb[i].numpy() for i, p in enumerate(self.prompts)}
        self.categories = cats
        self.category_context = emb[:-1]
        self.record_category = torch.tensor([cats.index(c) for c in self.data.categories])
        self.null_context = emb[-1]
        self.model_cfg = model or UNetConfig()
        self.model_cfg.context_dim = int(emb.shape[-1])
        self.scheduler = train_scheduler(self.opts.schedule)
        self.cache = Path(cache) if cache is not None else None
        if encode:
            self.encode(log=log, progress=progress)

    def cache_key(self) -> dict:
        return {"version": CACHE_VERSION, "vqvae": self.vqvae_sha, "data": "+".join(data_fingerprint(r) for r in self.data_roots),
                "n": len(self.data), "hand": self.hand_sha, "copies": self.opts.copies,
                "augment": asdict(self.opts.augment)}

    def _open_cache(self, key: dict) -> bool:
        """Map the cache when it holds exactly `key`'s latents."""
        folder = self.cache
        if folder is None or not (folder / "key.json").is_file():
            return False
        try:
            if json.loads((folder / "key.json").read_text()) != key:
                return False
            self.latents = np.load(folder / "latents.npy", mmap_mode="r")
            self.fields = np.load(folder / "fields.npy", mmap_mode="r")
            norm = torch.load(folder / "normaliser.pt", map_location="cpu", weights_only=False)
        except (OSError, ValueError, json.JSONDecodeError, RuntimeError):
            return False
        self.norm = GridNormaliser(norm["latent_shift"], norm["latent_scale"], norm["template"], norm["spread"], norm["clip"])
        return True

    def encode(self, device: torch.device | str = "cpu", log: Callable[[str], None] | None = None,
               progress: Callable[[int, int], None] | None = None) -> None:
        """Encode (or map from the cache) the latents of every copy of every record, the hand
        fields and the latent normalisation; see the class docstring."""
        device = torch.device(device)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join the group first
            from hoitool.train.loop import init_distributed

            init_distributed(device)
        distributed = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if distributed else 0
        key = self.cache_key()
        if rank == 0 and not self._open_cache(key):
            self._encode(key, device, log, progress)
        if distributed:
            dist.barrier()
            if rank != 0 and not self._open_cache(key):
                raise HoiError(f"rank {rank}: the latent cache {self.cache} written by rank 0 is unreadable here: "
                               "give every process the same file system")

    def _encode(self, key: dict, device: torch.device, log, progress) -> None:
        if log:
            log(f"encoding {len(self.data)} records x {self.opts.copies} copies with the VQ-VAE on {device}")
        n, A, bs = len(self.data), self.opts.copies, 16
        r = LATENT_RES
        vq = self.vqvae.to(device)
        hand = self.hand.to(device)
        parent = self.cache.parent if self.cache is not None else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        if self.cache is not None:  # what a killed encoder or an older release left beside the cache
            for stale in [*parent.glob(".latents.*.part"), *parent.glob(f".{self.cache.name}.old-*"), parent / "latents.pt"]:
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".latents.", suffix=".part", dir=parent))
        try:
            lat = np.lib.format.open_memmap(tmp / "latents.npy", mode="w+", dtype=np.float32,
                                            shape=(n, A, vq.config.latent_channels, r, r, r))
            fields = np.lib.format.open_memmap(tmp / "fields.npy", mode="w+", dtype=np.float16, shape=(n, 20, r, r, r))
            done, total = 0, n * A
            with torch.no_grad():
                for s in range(0, n, bs):
                    idx = torch.arange(s, min(n, s + bs))
                    fields[s:s + len(idx)] = self.data.hand_fields(hand, idx, device=device).half().cpu().numpy()
                    for c in range(A):
                        aug = None if c == 0 else torch.stack([
                            random_rigid(torch_generator(0, "copy", int(i), c), self.opts.augment.rotation, self.opts.augment.shift) for i in idx])
                        lat[s:s + len(idx), c] = vq.encode(self.data.object_grids(idx, aug, device=device)).cpu().numpy()
                        done += len(idx)
                        if progress:
                            progress(done, total)
            lat.flush()
            fields.flush()
            del lat, fields
            lat = np.load(tmp / "latents.npy", mmap_mode="r")
            fields = np.load(tmp / "fields.npy", mmap_mode="r")
            self.norm = GridNormaliser.fit(lat[:, 0], fields)
            torch.save(self.norm.state(), tmp / "normaliser.pt")
            (tmp / "key.json").write_text(json.dumps(key))  # the folder is complete: it can be named
            if self.cache is not None:
                if self.cache.exists():
                    old = self.cache.with_name(f".{self.cache.name}.old-{os.getpid()}")
                    os.replace(self.cache, old)
                    shutil.rmtree(old, ignore_errors=True)
                os.replace(tmp, self.cache)
                final = self.cache
            else:
                final = tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.vqvae.cpu()
        self.latents = np.load(final / "latents.npy", mmap_mode="r")
        self.fields = np.load(final / "fields.npy", mmap_mode="r")
        if self.cache is None:  # no cache asked for: the maps stay valid after the files go
            shutil.rmtree(final, ignore_errors=True)

    def config(self) -> dict:
        return {"model": {"unet": asdict(self.model_cfg), "schedule": asdict(self.opts.schedule), "text_encoder": self.opts.text_encoder,
                          "vqvae_sha256": self.vqvae_sha, "hand": self.hand_sha},
                **data_config(self.data_roots, self.weights), "vqvae": self.vqvae_source, "hand": self.hand.source,
                "options": {k: v for k, v in asdict(self.opts).items() if k != "schedule"}}

    def build(self, device: torch.device) -> nn.Module:
        return UNet3D(self.model_cfg)

    def size(self) -> int:
        return len(self.data)

    def x0(self, idx: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        i, c = idx.numpy(), copy.numpy()
        z = torch.from_numpy(np.asarray(self.latents[i, c], dtype=np.float32))
        f = torch.from_numpy(np.asarray(self.fields[i], dtype=np.float32))
        return self.norm.pack(z, f)

    def loss(self, model, idx, keys, device):
        T = self.opts.schedule.num_train_timesteps
        gens = [torch_generator(*k, "noise") for k in keys]
        copy = torch.tensor([int(torch.randint(self.opts.copies, (1,), generator=g)) for g in gens])
        t = torch.tensor([int(torch.randint(T, (1,), generator=g)) for g in gens])
        drop = torch.tensor([bool(torch.rand(1, generator=g) < self.opts.text_dropout) for g in gens])
        idx = self.data.draw(idx, self.shares, [torch_generator(*k, "record") for k in keys])  # see --data-weights
        x0 = self.x0(idx, copy)
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens])
        ctx = torch.where(drop[:, None], self.null_context[None], self.category_context[self.record_category[idx]])[:, None]
        xt = self.scheduler.add_noise(x0, noise, t)
        pred = self.opts.schedule.prediction_type
        target = self.scheduler.get_velocity(x0, noise, t) if pred == "v_prediction" else noise
        out = model(xt.to(device), t.to(device), ctx.to(device))
        w = loss_weights(self.scheduler, t, pred, self.opts.min_snr_gamma).to(device)
        per = (out - target.to(device)).square().mean(dim=tuple(range(1, out.dim())))
        return (w * per).mean(), {"mse": per.mean().item()}

    def export(self, model: nn.Module) -> dict:
        return {"unet": asdict(self.model_cfg), "schedule": asdict(self.opts.schedule), "vqvae": self.vqvae_state,
                "normaliser": self.norm.state(), "text_encoder": self.opts.text_encoder,
                "text_embeddings": self.embeddings, "categories": self.categories,
                **data_config(self.data_roots, self.weights), "hand": self.hand.source, "hand_sha": self.hand_sha}


@dataclass
class TwoHandOptions:
    """Options of the two-hand task besides the network's sizes."""

    joint: bool = False
    """One network over both hands at once (the ablation) instead of the cascade."""
    width: int = 384
    token_dim: int = 96
    dropout: float = 0.1
    """Dropout in the denoiser (transformer and fully connected stack)."""
    object_points: int = 256
    """Object surface points fed to the encoder per sample (drawn from the prepared 1024)."""
    rotate_objects: bool = True
    """Turn object records about the vertical (z) axis at random (hands with them)."""
    cond_noise: float = 1.0
    """Conditioning augmentation: Gaussian noise (normalised units) added to the anchor the second
    stage is conditioned on, in training and sampling alike. Without it the clean anchor is a
    key to its own record: on 2,400 pairs the second stage learned the training partners (train
    MSE 0.03) and did worse than the unconditional pass on held-out pairs (MSE 1.05-1.3 vs
    0.15-0.94 for t = 200-950)."""


class TwoHandTask:
    """x0-prediction MSE on normalised two-hand vectors (InterHandGen).

    Cascaded: every batch trains both stages, the anchor with the null condition and the second
    hand conditioned on the clean anchor (condition dropout 0.5, as InterHandGen). Object records
    condition both on a PointNet++ feature of their points; records without one use the null
    object token. Joint: one pass over [x_a | x_b]."""

    name = "twohands"

    def __init__(self, data: str | Path, options: TwoHandOptions | None = None):
        from hoitool.twohands.model import TwoHandSchedule, train_scheduler
        from hoitool.twohands.params import VectorNormaliser
        from hoitool.twohands.prepare import read_prepared

        self.data_root = Path(data)
        self.opts = options or TwoHandOptions()
        arr = read_prepared(data)
        self.xa = torch.as_tensor(arr["xa"], dtype=torch.float32)
        self.xb = torch.as_tensor(arr["xb"], dtype=torch.float32)
        self.obj = torch.as_tensor(arr["object"], dtype=torch.long)
        self.points = torch.as_tensor(arr["object_points"], dtype=torch.float32)
        self.type_names = [str(n) for n in arr["type_names"]]
        self.has_objects = bool((self.obj >= 0).any())
        self.norm = VectorNormaliser.fit(self.xa, self.xb)
        self.schedule = TwoHandSchedule()
        self.scheduler = train_scheduler(self.schedule)
        self.hand_source = _prepared_hand_source(self.data_root)

    def config(self) -> dict:
        return {"data": str(self.data_root), "options": asdict(self.opts), "schedule": asdict(self.schedule),
                "records": len(self.xa), "with_object": int((self.obj >= 0).sum())}

    def build(self, device: torch.device) -> nn.Module:
        from hoitool.twohands.model import TwoHandDiffusion, default_encoder, default_net

        enc = default_encoder() if self.has_objects else None
        net = default_net(self.opts.joint, enc.feature_dim if enc else 0, self.opts.width, self.opts.token_dim, self.opts.dropout)
        return TwoHandDiffusion(net, enc, self.norm, self.schedule, self.opts.joint, self.opts.object_points,
                                0.0 if self.opts.joint else self.opts.cond_noise)

    def size(self) -> int:
        return len(self.xa)

    def _batch(self, idx: torch.Tensor, gens: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        from hoitool.twohands.params import rotate_reference

        xa, xb = self.xa[idx].clone(), self.xb[idx]
        oid = self.obj[idx]
        has = oid >= 0
        pts = None
        if self.has_objects:
            P = self.opts.object_points
            sel = torch.stack([torch.randperm(self.points.shape[1], generator=g)[:P] for g in gens])
            pts = torch.zeros(len(idx), P, 3)
            if has.any():
                pts[has] = torch.gather(self.points[oid[has]], 1, sel[has][..., None].expand(-1, -1, 3))
            if self.opts.rotate_objects and has.any():
                ang = torch.tensor([float(torch.rand(1, generator=g)) * 2 * math.pi for g in gens])
                c, s = torch.cos(ang), torch.sin(ang)
                Q = torch.zeros(len(idx), 3, 3)
                Q[:, 0, 0], Q[:, 0, 1], Q[:, 1, 0], Q[:, 1, 1], Q[:, 2, 2] = c, -s, s, c, 1.0
                Q[~has] = torch.eye(3)
                xa = rotate_reference(xa, Q)
                pts = pts @ Q.transpose(1, 2)
        return self.norm.norm_a(xa), self.norm.norm_b(xb), pts, has

    def loss(self, model, idx, keys, device):
        from hoitool.twohands.params import DIM

        gens = [torch_generator(*k, "twohands") for k in keys]
        idx = torch.as_tensor(idx)
        za, zb, pts, has = self._batch(idx, gens)
        T = self.schedule.num_train_timesteps
        B = len(idx)
        ta = torch.tensor([int(torch.randint(T, (1,), generator=g)) for g in gens])
        tb = torch.tensor([int(torch.randint(T, (1,), generator=g)) for g in gens])
        na = torch.stack([torch.randn(DIM, generator=g) for g in gens])
        nb = torch.stack([torch.randn(DIM, generator=g) for g in gens])
        pts = pts.to(device) if pts is not None else None
        has = has.to(device)
        if self.opts.joint:
            z = torch.cat([za, zb], 1)
            zt = self.scheduler.add_noise(z, torch.cat([na, nb], 1), ta)
            out = model(zt.to(device), ta.to(device), points=pts, obj_mask=has)
            mse = (out - z.to(device)).square().mean()
            return mse, {"mse": mse.item()}
        x = torch.cat([self.scheduler.add_noise(za, na, ta), self.scheduler.add_noise(zb, nb, tb)]).to(device)
        t = torch.cat([ta, tb]).to(device)
        nc = torch.stack([torch.randn(DIM, generator=g) for g in gens])
        cond = torch.cat([torch.zeros_like(za), za + self.opts.cond_noise * nc]).to(device)
        mask = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(device)
        out = model(x, t, cond=cond, cond_mask=mask, points=pts, obj_mask=has, repeat=2)
        err = (out - torch.cat([za, zb]).to(device)).square().mean(1)
        la, lb = err[:B].mean(), err[B:].mean()
        return (la + lb) / 2, {"mse_anchor": la.item(), "mse_second": lb.item()}

    def export(self, model: nn.Module) -> dict:
        m = model.module if hasattr(model, "module") else model
        return {"config": m.config(), "normaliser": self.norm.state(), "data": str(self.data_root),
                "hand": self.hand_source, "type_names": self.type_names}


def _prepared_hand_source(root: Path) -> dict | None:
    import yaml

    p = root / "config.yaml"
    return (yaml.safe_load(p.read_text()) or {}).get("hand") if p.exists() else None


class TwoHandFeatureTask:
    """Regression of both hands' normalised vectors from their point cloud (the FHID feature
    network; see hoitool.twohands.features)."""

    name = "twohands_features"

    def __init__(self, data: str | Path, mano_dir: str | Path | None = None):
        from hoitool.twohands.params import VectorNormaliser
        from hoitool.twohands.prepare import read_prepared
        from hoitool.twohands.features import canonical

        self.data_root = Path(data)
        arr = read_prepared(data)
        self.xa = torch.as_tensor(arr["xa"], dtype=torch.float32)
        self.xb = torch.as_tensor(arr["xb"], dtype=torch.float32)
        self.norm = VectorNormaliser.fit(canonical(self.xa), self.xb)
        src = _prepared_hand_source(self.data_root) or {}
        self.mano_dir = mano_dir if mano_dir is not None else src.get("mano_dir")
        self.hands = {s: HandModel(s, self.mano_dir) for s in ("right", "left")}
        self.hand_source = src

    def config(self) -> dict:
        return {"data": str(self.data_root), "records": len(self.xa)}

    def build(self, device: torch.device) -> nn.Module:
        from hoitool.hand.subset import even_subset
        from hoitool.twohands.features import POINTS_PER_HAND, TwoHandFeatures, feature_config

        ids = {s: torch.as_tensor(even_subset(h, POINTS_PER_HAND)) for s, h in self.hands.items()}
        return TwoHandFeatures(feature_config(), self.norm, ids)

    def size(self) -> int:
        return len(self.xa)

    def loss(self, model, idx, keys, device):
        from hoitool.twohands.features import pair_clouds

        m = model.module if hasattr(model, "module") else model
        idx = torch.as_tensor(idx)
        g = torch_generator(*keys[0], "features")
        hands = {s: h.to(device) for s, h in self.hands.items()}
        with torch.no_grad():
            pts, lab = pair_clouds(hands, self.xa[idx].to(device), self.xb[idx].to(device), generator=g)
        target = m.target(self.xa[idx].to(device), self.xb[idx].to(device))
        mse = (model(pts, lab) - target).square().mean()
        return mse, {"mse": mse.item()}

    def export(self, model: nn.Module) -> dict:
        m = model.module if hasattr(model, "module") else model
        return {"config": asdict(m.net.config), "normaliser": self.norm.state(), "data": str(self.data_root),
                "hand": self.hand_source}
