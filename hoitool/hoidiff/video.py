"""Anchor-frame self-attention (HOIDiffusion's video mode; in the paper, not in its code).

The frames of one trajectory are denoised together. In every UNet self-attention (`attn1` of
each transformer block) a frame's queries attend to the keys and values of its own tokens
concatenated with those of the anchor frame (the middle one), so every frame borrows the
anchor's appearance:

    with anchor_attention(unet, frames=8):        # anchor = frame 8 // 2 = 4
        eps = unet(x, t, text).sample             # x: (G * 8, C, h, w), G groups of 8 frames

The batch is G groups of `frames` consecutive frames, each group with its own anchor: with
classifier-free guidance the sampler's batch is [unconditional frames | conditional frames],
so G = 2 and the unconditional half attends to its own anchor, the conditional half to its.
Cross-attention (`attn2`, text) is unchanged.

For the anchor frame itself the keys are its own tokens twice; a softmax over duplicated keys
gives each copy half the weight, so its output is plain self-attention.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class AnchorAttnProcessor:
    """A diffusers attention processor: self-attention over [own tokens | anchor frame's tokens]."""

    def __init__(self, frames: int, anchor: int | None = None):
        if frames < 1:
            raise ValueError(f"frames must be positive, got {frames}")
        self.frames = int(frames)
        self.anchor = self.frames // 2 if anchor is None else int(anchor)
        if not 0 <= self.anchor < self.frames:
            raise ValueError(f"anchor {self.anchor} is not one of the {frames} frames")
        from diffusers.models.attention_processor import AttnProcessor2_0

        self._plain = AttnProcessor2_0()

    def anchor_tokens(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, C) hidden states -> (B, N, C): each frame's group anchor's tokens."""
        B, N, C = h.shape
        if B % self.frames:
            raise ValueError(f"batch of {B} is not whole groups of {self.frames} frames")
        g = h.view(B // self.frames, self.frames, N, C)
        return g[:, self.anchor:self.anchor + 1].expand(-1, self.frames, -1, -1).reshape(B, N, C)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None:  # cross-attention: untouched
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if hidden_states.ndim != 3 or attn.group_norm is not None or attn.spatial_norm is not None or attention_mask is not None:
            raise ValueError("anchor attention supports the transformer blocks' plain self-attention only")
        kv = torch.cat([hidden_states, self.anchor_tokens(hidden_states)], dim=1)
        # norm_cross is off on self-attention layers, so the keys and values are the tokens as they are
        return self._plain(attn, hidden_states, kv, None, temb)


def self_attention_names(unet) -> list[str]:
    """Processor names of the UNet's self-attention layers (`...attn1.processor`)."""
    return [n for n in unet.attn_processors if n.endswith("attn1.processor")]


@contextlib.contextmanager
def anchor_attention(unet, frames: int, anchor: int | None = None) -> Iterator[AnchorAttnProcessor]:
    """Within the block, every self-attention of `unet` attends to the anchor frame too; the
    processors it had come back afterwards."""
    before = dict(unet.attn_processors)
    proc = AnchorAttnProcessor(frames, anchor)
    names = set(self_attention_names(unet))
    unet.set_attn_processor({n: (proc if n in names else p) for n, p in before.items()})
    try:
        yield proc
    finally:
        unet.set_attn_processor(before)
