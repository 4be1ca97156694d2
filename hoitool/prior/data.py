"""Training data of the prior, built on the fly from a prepared folder.

Every record keeps its object's canonical SDF (unit-ball frame u) and the transform uTn from
the hand-centric grid frame n into u, so object grids can be resampled under augmentations
(a rotation and shift of the grid frame) instead of being stored once. Hand fields come from
the hand parameters (left records mirrored into right hands, as their object grids are).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hoitool.data.prepared import HAND_KEYS, load_object, read_index
from hoitool.geometry.grid import GRID_RES, LATENT_RES, object_channel
from hoitool.geometry.rotations import axis_angle_to_matrix
from hoitool.hand.field import hand_field
from hoitool.hand.mirror import mirror_params
from hoitool.hand.model import HandModel, HandParams


class InteractionData:
    """All records of a prepared folder, in memory (objects once, records as transforms).

    Attributes:
        categories: (N,) category of each record.
        uTn: (N, 4, 4) grid frame n -> object unit-ball frame u.
        object_index: (N,) row of each record's object in `sdf` (O, 1, R, R, R).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = read_index(self.root)
        if not index:
            from hoitool.errors import InputError

            raise InputError(f"{self.root} has no records: run hoitool prepare-data first")
        self.ids = [e["id"] for e in index]
        self.categories = [e["category"] for e in index]
        objects = list(dict.fromkeys(e["object_id"] for e in index))
        pos = {o: i for i, o in enumerate(objects)}
        sdfs, uTos = zip(*(load_object(self.root, o) for o in objects))
        self.sdf = torch.as_tensor(np.stack(sdfs), dtype=torch.float32)[:, None]
        uTo = torch.as_tensor(np.stack(uTos), dtype=torch.float32)
        self.object_index = torch.tensor([pos[e["object_id"]] for e in index])
        keys = ("hTo", "nTh", "mirrored", *HAND_KEYS)
        shards: dict[int, dict] = {}
        for e in index:
            if e["shard"] not in shards:
                with np.load(self.root / "shards" / f"shard-{e['shard']:05d}.npz") as z:
                    shards[e["shard"]] = {k: z[k] for k in keys}
        arr = {k: torch.as_tensor(np.stack([shards[e["shard"]][k][e["row"]] for e in index]).astype(np.float32)) for k in keys}
        self.uTn = uTo[self.object_index] @ torch.linalg.inv(arr["hTo"]) @ torch.linalg.inv(arr["nTh"])
        mirrored = arr["mirrored"].bool()
        self.hand = HandParams(arr["global_orient"], arr["hand_pose"], arr["betas"], arr["transl"], "right")
        if mirrored.any():  # left hands in their own convention -> the right hands they were mirrored into
            left = HandParams(*(getattr(self.hand, k)[mirrored] for k in HandParams.TENSORS), side="left")
            right = mirror_params(left)
            for k in HandParams.TENSORS:
                getattr(self.hand, k)[mirrored] = getattr(right, k)

    def __len__(self) -> int:
        return len(self.ids)

    def object_grids(self, idx: torch.Tensor, augment: torch.Tensor | None = None, res: int = GRID_RES,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """(B, 1, res, res, res) object channels in [-1, 1], resampled on `device` (default: CPU).

        Args:
            idx: (B,) record indices.
            augment: (B, 4, 4) optional rigid transforms of the grid frame (augmented n -> n).
        """
        device = torch.device(device) if device is not None else self.sdf.device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        uTn = self.uTn[idx]
        if augment is not None:
            uTn = uTn @ augment
        sdf = self._sdf_on(device)
        return object_channel(sdf[self.object_index[idx].to(device)], uTn.to(device), res)

    def _sdf_on(self, device: torch.device) -> torch.Tensor:
        """The objects' SDF grids on `device` (moved there once)."""
        if self.sdf.device != device:
            cached = getattr(self, "_sdf_device", None)
            if cached is None or cached.device != device:
                self._sdf_device = self.sdf.to(device)
            return self._sdf_device
        return self.sdf

    def hand_fields(self, hand: HandModel, idx: torch.Tensor, res: int = LATENT_RES,
                    device: torch.device | str | None = None) -> torch.Tensor:
        """(B, 20, res, res, res) skeletal fields of the records' (right) hands, on `device`
        (default: the hand model's)."""
        params = self.hand[idx]
        if device is not None:
            params = params.to(device)
        return hand_field(hand, params, res)


def random_rigid(generator: torch.Generator, max_angle: float, max_shift: float) -> torch.Tensor:
    """(4, 4) rotation of up to `max_angle` rad about a uniform axis and a shift of up to
    `max_shift` per axis (grid units)."""
    u = torch.rand(5, generator=generator)
    z, phi = 2 * u[0] - 1, 2 * np.pi * u[1]
    axis = torch.stack([torch.sqrt(1 - z * z) * torch.cos(phi), torch.sqrt(1 - z * z) * torch.sin(phi), z])
    T = torch.eye(4)
    T[:3, :3] = axis_angle_to_matrix((axis * max_angle * u[2])[None])[0]
    T[:3, 3] = (torch.rand(3, generator=generator) * 2 - 1) * max_shift
    return T
