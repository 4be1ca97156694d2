"""A local Stable Diffusion 1.x folder in diffusers layout: checked, loaded, and a tiny random one for tests.

    BASE/model_index.json
    BASE/unet/         config.json + diffusion_pytorch_model.safetensors (or .bin)
    BASE/vae/          config.json + diffusion_pytorch_model.safetensors (or .bin)
    BASE/text_encoder/ config.json + model.safetensors (or pytorch_model.bin)
    BASE/tokenizer/    tokenizer.json, or vocab.json + merges.txt
    BASE/scheduler/    scheduler_config.json

    check_sd_folder("sd-v1-4")            # InputError naming the first part missing
    sd = load_sd("sd-v1-4", device)       # SDParts(unet, vae, text_encoder, tokenizer, schedule)
    make_tiny_sd(tmp_path / "sd")         # random weights, seconds to build: tests only

Nothing is downloaded: the folder is the user's (e.g. a saved CompVis/stable-diffusion-v1-4).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hoitool.errors import InputError

_WEIGHTS = {"unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
            "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
            "text_encoder": ("model.safetensors", "pytorch_model.bin")}
#: Scheduler settings the model reads from the base (the rest of its config is the scheduler's own).
SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type", "steps_offset",
                 "set_alpha_to_one", "timestep_spacing", "clip_sample")


@dataclass
class SDParts:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    schedule: dict
    """The base's scheduler settings (SCHEDULE_KEYS present in its scheduler_config.json)."""
    path: Path


def check_sd_folder(path: str | os.PathLike, what: str | None = None) -> Path:
    """The folder, resolved, if it holds every part of a diffusers Stable Diffusion layout; else an
    InputError naming the first part that is missing, after `what` (default: "--base PATH is not
    a diffusers Stable Diffusion folder")."""
    p = Path(path).expanduser()
    what = what or f"--base {path} is not a diffusers Stable Diffusion folder"
    if not p.is_dir():
        raise InputError(f"{what}: no such folder")
    if not (p / "model_index.json").is_file():
        raise InputError(f"{what}: model_index.json is missing (save the pipeline with save_pretrained)")
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (p / part).is_dir():
            raise InputError(f"{what}: the {part}/ folder is missing")
    for part, names in _WEIGHTS.items():
        if not (p / part / "config.json").is_file():
            raise InputError(f"{what}: {part}/config.json is missing")
        if not any((p / part / n).is_file() for n in names):
            raise InputError(f"{what}: {part}/ has no weights ({' or '.join(names)}; fp16 variants alone are not read)")
    tok = p / "tokenizer"
    if not ((tok / "tokenizer.json").is_file() or ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file())):
        raise InputError(f"{what}: tokenizer/ has neither tokenizer.json nor vocab.json + merges.txt")
    if not (p / "scheduler" / "scheduler_config.json").is_file():
        raise InputError(f"{what}: scheduler/scheduler_config.json is missing")
    try:
        unet_cfg = json.loads((p / "unet" / "config.json").read_text())
        sched = json.loads((p / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{what}: unreadable config ({e})") from None
    if unet_cfg.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        raise InputError(f"{what}: unet/ holds a {unet_cfg.get('_class_name')}, not a UNet2DConditionModel")
    if sched.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
        raise InputError(f"{what}: its scheduler predicts {sched.get('prediction_type')!r}; epsilon or v_prediction is needed")
    return p.resolve()


def read_schedule(path: Path) -> dict:
    sched = json.loads((Path(path) / "scheduler" / "scheduler_config.json").read_text())
    out = {k: sched[k] for k in SCHEDULE_KEYS if k in sched}
    out.setdefault("prediction_type", "epsilon")
    out["clip_sample"] = False
    return out


def load_sd(path: str | os.PathLike, device: torch.device | str = "cpu") -> SDParts:
    """The base's parts in float32 on `device`, frozen (requires_grad off), in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    p = check_sd_folder(path)
    try:
        # low_cpu_mem_usage off: diffusers would only warn that `accelerate` is missing, then do the same
        kw = {"local_files_only": True, "torch_dtype": torch.float32}
        unet = UNet2DConditionModel.from_pretrained(p / "unet", low_cpu_mem_usage=False, **kw)
        vae = AutoencoderKL.from_pretrained(p / "vae", low_cpu_mem_usage=False, **kw)
        text = CLIPTextModel.from_pretrained(p / "text_encoder", **kw)
        tok = CLIPTokenizer.from_pretrained(p / "tokenizer", local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(f"--base {path}: a part did not load ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for m in (unet, vae, text):
        m.requires_grad_(False).eval().to(device)
    return SDParts(unet, vae, text, tok, read_schedule(p), p)


def vae_scale(vae) -> int:
    """Image pixels per latent pixel of an AutoencoderKL."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


class ClipText:
    """encode(prompts) -> (N, L, D) CLIP last hidden states (padded to the tokenizer's maximum
    length, as Stable Diffusion), cached per prompt on the CPU."""

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer, self.model = tokenizer, text_encoder
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            dev = next(self.model.parameters()).device
            n = min(int(self.tokenizer.model_max_length), int(self.model.config.max_position_embeddings))
            ids = self.tokenizer(new, padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids.to(dev)
            h = self.model(ids).last_hidden_state.float().cpu()
            self._cache.update(zip(new, h))
        return torch.stack([self._cache[p] for p in prompts])

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


# -- a tiny random base for tests ------------------------------------------------------------


def _byte_chars() -> list[str]:
    """The 256 characters byte-level BPE (GPT-2, CLIP) uses for the 256 byte values."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def make_tiny_sd(folder: str | os.PathLike, seed: int = 0, sample_size: int = 16) -> Path:
    """Write a randomly initialised Stable Diffusion folder, small enough for CPU tests: a
    2-level UNet (32, 64 channels, latents `sample_size`^2), a 2-level AutoencoderKL (factor 2,
    so images are 2 `sample_size` pixels), a 2-layer CLIP text model of width 32, and a
    CLIP tokenizer whose vocabulary is the 256 byte characters (alone and word-final) with no
    merges. Returns the folder."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                         layers_per_block=1, cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8
                         ).save_pretrained(out / "unet")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  layers_per_block=1, norm_num_groups=8, sample_size=2 * sample_size).save_pretrained(out / "vae")
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    raw = out / "tokenizer-source"
    raw.mkdir(exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=77).save_pretrained(out / "tokenizer")
    for f in raw.iterdir():
        f.unlink()
    raw.rmdir()
    n = len(vocab)
    CLIPTextModel(CLIPTextConfig(vocab_size=n, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                 max_position_embeddings=77, projection_dim=32, bos_token_id=n - 2, eos_token_id=n - 1,
                                 pad_token_id=n - 1)).save_pretrained(out / "text_encoder")
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False).save_pretrained(out / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": _diffusers_version(),
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None], "feature_extractor": [None, None],
             "requires_safety_checker": False}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__
