"""Per-sample seeds: sample i depends only on (seed, i), never on batch size or device count."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def sample_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed derived from a base seed and any number of keys (index, name)."""
    h = hashlib.blake2b(repr((int(seed),) + tuple(keys)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def numpy_rng(seed: int, *keys: int | str) -> np.random.Generator:
    return np.random.default_rng(sample_seed(seed, *keys))


def torch_generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU generator: draw on it, then move the tensor, so a seed gives the same numbers on any device."""
    g = torch.Generator(device="cpu")
    g.manual_seed(sample_seed(seed, *keys))
    return g
