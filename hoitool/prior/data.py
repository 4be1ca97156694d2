"""Training data of the prior, built on the fly from a prepared folder.

Every record keeps its object's canonical SDF (unit-ball frame u) and the transform uTn from
the hand-centric grid frame n into u, so object grids can be resampled under augmentations
(a rotation and shift of the grid frame) instead of being stored once. Hand fields come from
the hand parameters (left records mirrored into right hands, as their object grids are).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from hoitool.data.prepared import HAND_KEYS, load_object, read_index
from hoitool.geometry.grid import GRID_RES, LATENT_RES, object_channel
from hoitool.geometry.rotations import axis_angle_to_matrix
from hoitool.hand.field import hand_field
from hoitool.hand.mirror import mirror_params
from hoitool.hand.model import HandModel, HandParams


#: Object SDF grids (1 MB each) kept in memory, most recently used first.
OBJECT_CACHE = 256


def _object_transform(root: Path, object_id: str) -> np.ndarray:
    """uTo of an object, without decompressing its SDF grid."""
    with np.load(root / "objects" / f"{object_id}.npz") as z:
        return z["uTo"]


class InteractionData:
    """The records of one or more prepared folders as transforms and hand parameters (a few
    hundred bytes each, in memory); objects' SDF grids are read when used, the last
    OBJECT_CACHE kept. Several folders are concatenated in the order given.

    Attributes:
        categories: (N,) category of each record.
        uTn: (N, 4, 4) grid frame n -> object unit-ball frame u.
        object_index: (N,) each record's object, an index into `objects` ((folder, id) pairs).
        folder: (N,) each record's folder, an index into `roots`.
    """

    def __init__(self, roots: str | Path | list):
        from hoitool.errors import InputError

        self.roots = [Path(r) for r in (roots if isinstance(roots, (list, tuple)) else [roots])]
        self.root = self.roots[0]
        self.ids, self.categories, objects, folder, rows = [], [], [], [], []
        for k, root in enumerate(self.roots):
            index = read_index(root)
            if not index:
                raise InputError(f"{root} has no records: run hoitool prepare-data first")
            self.ids += [e["id"] for e in index]
            self.categories += [e["category"] for e in index]
            objects += [(k, e["object_id"]) for e in index]
            folder += [k] * len(index)
            rows += [(k, e) for e in index]
        self.objects = list(dict.fromkeys(objects))
        pos = {o: i for i, o in enumerate(self.objects)}
        uTo = torch.as_tensor(np.stack([_object_transform(self.roots[k], o) for k, o in self.objects]), dtype=torch.float32)
        self._cache: OrderedDict[tuple[int, str], torch.Tensor] = OrderedDict()
        self.object_index = torch.tensor([pos[o] for o in objects])
        self.folder = torch.tensor(folder)
        keys = ("hTo", "nTh", "mirrored", *HAND_KEYS)
        shards: dict[tuple[int, int], dict] = {}
        for k, e in rows:
            if (k, e["shard"]) not in shards:
                with np.load(self.roots[k] / "shards" / f"shard-{e['shard']:05d}.npz") as z:
                    shards[k, e["shard"]] = {key: z[key] for key in keys}
        arr = {key: torch.as_tensor(np.stack([shards[k, e["shard"]][key][e["row"]] for k, e in rows]).astype(np.float32)) for key in keys}
        self.uTn = uTo[self.object_index] @ torch.linalg.inv(arr["hTo"]) @ torch.linalg.inv(arr["nTh"])
        mirrored = arr["mirrored"].bool()
        self.hand = HandParams(arr["global_orient"], arr["hand_pose"], arr["betas"], arr["transl"], "right")
        if mirrored.any():  # left hands in their own convention -> the right hands they were mirrored into
            left = HandParams(*(getattr(self.hand, k)[mirrored] for k in HandParams.TENSORS), side="left")
            right = mirror_params(left)
            for k in HandParams.TENSORS:
                getattr(self.hand, k)[mirrored] = getattr(right, k)

    def folder_shares(self, weights: list[float] | None) -> torch.Tensor | None:
        """Each folder's share of the samples from --data-weights (None: no weights, every record
        equally likely, so folders in proportion to their sizes)."""
        if weights is None:
            return None
        from hoitool.errors import InputError

        if len(weights) != len(self.roots):
            raise InputError(f"{len(weights)} data weights for {len(self.roots)} --data folders: give one per folder")
        w = np.asarray(weights, np.float64)
        if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
            raise InputError(f"data weights must be non-negative numbers, not all zero; got {', '.join(map(str, weights))}")
        return torch.as_tensor(w / w.sum(), dtype=torch.float64)

    def draw(self, positions: torch.Tensor, shares: torch.Tensor | None, generators: list) -> torch.Tensor:
        """Record indices for sampled positions: the positions themselves without shares; with
        shares, per sample a folder drawn with probability share_k and then one of its records
        uniformly, from that sample's own generator (so any positive share is sampled and every
        record of a folder is reachable)."""
        positions = torch.as_tensor(positions)
        if shares is None:
            return positions
        if not hasattr(self, "_own"):
            self._own = [torch.nonzero(self.folder == k)[:, 0] for k in range(len(self.roots))]
        out = []
        for g in generators:
            k = int(torch.multinomial(shares, 1, generator=g))
            own = self._own[k]
            out.append(own[int(torch.randint(len(own), (1,), generator=g))])
        return torch.stack(out) if out else positions

    def __len__(self) -> int:
        return len(self.ids)

    def object_grids(self, idx: torch.Tensor, augment: torch.Tensor | None = None, res: int = GRID_RES,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """(B, 1, res, res, res) object channels in [-1, 1], resampled on `device` (default: CPU).

        Args:
            idx: (B,) record indices.
            augment: (B, 4, 4) optional rigid transforms of the grid frame (augmented n -> n).
        """
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        uTn = self.uTn[idx]
        if augment is not None:
            uTn = uTn @ augment
        sdf = torch.stack([self.object_sdf(int(o), device) for o in self.object_index[idx]])
        return object_channel(sdf, uTn.to(device), res)

    def object_sdf(self, o: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(1, R, R, R) canonical SDF of object `o`, read from its file when not among the
        OBJECT_CACHE most recently used (the objects of a large dataset never sit in memory
        together)."""
        key = (o, str(device))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        k, oid = self.objects[o]
        sdf, _ = load_object(self.roots[k], oid)
        t = torch.as_tensor(sdf, dtype=torch.float32)[None].to(device)
        self._cache[key] = t
        if len(self._cache) > OBJECT_CACHE:
            self._cache.popitem(last=False)
        return t

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
