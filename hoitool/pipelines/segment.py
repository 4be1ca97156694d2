"""Masks from a local Segment Anything checkpoint with box or point prompts.

segment-anything imports torchvision for two image helpers (and two box helpers used only
by its automatic mask generator); torchvision has no CPU build for this torch, so when it
cannot be imported, small equivalents written on PIL and torch are registered under its
module names before segment-anything is imported. The model type (vit_b / vit_l / vit_h)
is read from the checkpoint's tensor shapes.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

from hoitool.errors import InputError, require

#: image encoder width -> segment-anything builder name
_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def _resize(image, size):
    """PIL image resized to size = (h, w) (bilinear), as torchvision's functional resize."""
    from PIL import Image

    h, w = size
    return image.resize((int(w), int(h)), Image.BILINEAR)


def _to_pil_image(arr):
    from PIL import Image

    return Image.fromarray(np.asarray(arr))


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression per category; indices kept, by decreasing score."""
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp_min(0).prod(1)
        iou = inter / (_box_area(boxes[i:i + 1]) + _box_area(boxes) - inter).clamp_min(1e-9)
        suppressed |= (iou > iou_threshold) & (idxs == idxs[i])
    return torch.as_tensor(keep, dtype=torch.long)


def _install_torchvision_helpers() -> None:
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # the CUDA-only wheel fails in several ways on CPU machines
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    mods = {n: types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                                             "torchvision.ops", "torchvision.ops.boxes")}
    mods["torchvision.transforms.functional"].resize = _resize
    mods["torchvision.transforms.functional"].to_pil_image = _to_pil_image
    mods["torchvision.ops.boxes"].batched_nms = _batched_nms
    mods["torchvision.ops.boxes"].box_area = _box_area
    mods["torchvision"].transforms, mods["torchvision"].ops = mods["torchvision.transforms"], mods["torchvision.ops"]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]
    mods["torchvision.ops"].boxes = mods["torchvision.ops.boxes"]
    sys.modules.update(mods)


def parse_box(text: str, flag: str) -> np.ndarray:
    try:
        v = np.array([float(x) for x in text.split(",")], np.float32)
    except ValueError:
        v = np.zeros(0)
    if v.shape != (4,) or not np.isfinite(v).all() or v[2] <= v[0] or v[3] <= v[1]:
        raise InputError(f"{flag} must be x0,y0,x1,y1 in pixels with x1 > x0 and y1 > y0, got {text!r}")
    return v


def parse_point(text: str) -> np.ndarray:
    try:
        v = np.array([float(x) for x in text.split(",")], np.float32)
    except ValueError:
        v = np.zeros(0)
    if v.shape != (2,) or not np.isfinite(v).all():
        raise InputError(f"--object-point must be u,v in pixels, got {text!r}")
    return v


class SamSegmenter:
    """A SAM predictor from a local checkpoint (any of vit_b / vit_l / vit_h)."""

    def __init__(self, checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
        path = Path(checkpoint)
        if not path.is_file():
            raise InputError(f"SAM checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(f"cannot read SAM checkpoint {path}: {type(e).__name__}: {e}") from e
        key = "image_encoder.patch_embed.proj.weight"
        if not isinstance(state, dict) or key not in state:
            raise InputError(f"{path} is not a Segment Anything checkpoint (no {key})")
        kind = _WIDTHS.get(int(state[key].shape[0]))
        if kind is None:
            raise InputError(f"{path}: unknown SAM encoder width {state[key].shape[0]}")
        _install_torchvision_helpers()
        sa = require("segment_anything", "sam", "segmentation with --sam-checkpoint")
        model = sa.sam_model_registry[kind]()
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(f"{path} does not match SAM {kind}: {str(e).splitlines()[0]}") from e
        self.kind = kind
        self.predictor = sa.SamPredictor(model.to(device).eval())

    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB."""
        with torch.no_grad():
            self.predictor.set_image(image)

    def segment(self, box: np.ndarray | None = None, points: list[np.ndarray] | None = None) -> np.ndarray:
        """(H, W) bool: the highest-scoring of SAM's three masks for a box and/or foreground points."""
        pts = np.stack(points).astype(np.float32) if points else None
        labels = np.ones(len(pts), np.int64) if pts is not None else None
        with torch.no_grad():
            masks, scores, _ = self.predictor.predict(point_coords=pts, point_labels=labels, box=box, multimask_output=True)
        return np.asarray(masks[int(np.argmax(scores))], dtype=bool)
