"""Inputs of single-image reconstruction: the image, hand and object masks, 2D hand keypoints,
box and point prompts.

Everything is validated here so that a bad file ends in one clear line (InputError) before
any work starts.

Keypoint files (21 points, OpenPose order: wrist; thumb 1-4; index 1-4; middle 1-4; ring
1-4; little 1-4), pixels of the full image:
- JSON: a list of 21 [u, v] or [u, v, confidence]; or {"keypoints": that list}; or an
  OpenPose result ({"people": [{"hand_right_keypoints_2d": [u, v, c, ...]}]}, the side's
  key picked by --side);
- .npy / .txt / .csv: a (21, 2) or (21, 3) array.
Keypoints normalised to [0, 1] (MediaPipe's landmarks) are refused with a line saying to
multiply u by the image width and v by its height: they are not scaled silently.

Images and masks are read with their EXIF orientation applied (as OpenCV's imread does), so a
phone photo and masks or keypoints made on it with OpenCV-based tools agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hoitool.errors import InputError

#: A hand needs at least this many keypoints with confidence > 0.
MIN_KEYPOINTS = 6
#: A mask covering more than this share of the image is rejected (an all-white mask).
MAX_MASK_COVER = 0.98
#: A box prompt (--object-box, --hand-box) must be at least this many pixels wide and high.
MIN_BOX_PX = 4
#: Keypoints whose present points all lie within 0.5 +- this are taken as normalised to [0, 1]
#: (MediaPipe's form, which may stray a little outside the image) and refused.
NORMALISED_LIMIT = 1.0


@dataclass
class ImageInputs:
    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    hand_mask: np.ndarray
    """(H, W) bool: visible hand."""
    object_mask: np.ndarray
    """(H, W) bool: visible object."""
    keypoints: np.ndarray
    """(21, 2) float pixels (OpenPose order)."""
    confidence: np.ndarray
    """(21,) float in [0, 1]; 0 = missing."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]


def _read(path: str | os.PathLike, what: str, convert) -> np.ndarray:
    """convert(PIL image) -> array for an image file, or one InputError line naming `what`.

    The EXIF orientation tag is applied first (as OpenCV's imread does), so a phone photo
    taken upright loads upright, with the size and pixels that tools built on OpenCV see."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return convert(ImageOps.exif_transpose(im))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read {what} {path}: {e}; pass a PNG or JPEG file") from e


def load_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any image file Pillow reads (greyscale and RGBA converted)."""
    arr = _read(path, "image", lambda im: np.asarray(im.convert("RGB")))
    if arr.shape[0] < 16 or arr.shape[1] < 16:
        raise InputError(f"image {path} is {arr.shape[1]}x{arr.shape[0]} pixels: too small to reconstruct from")
    return arr


def check_mask(mask: np.ndarray, shape: tuple[int, int], what: str, where: str) -> np.ndarray:
    """Validate a boolean mask against the image size (H, W)."""
    if mask.shape != tuple(shape):
        raise InputError(f"the {what} mask {where} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{shape[1]}x{shape[0]}: masks must have the image's size")
    n = int(mask.sum())
    if n == 0:
        raise InputError(f"the {what} mask {where} is empty: it must mark the {what}'s pixels in white")
    if n > MAX_MASK_COVER * mask.size:
        raise InputError(f"the {what} mask {where} covers the whole image: it must mark only the {what}'s pixels")
    return mask


def _mask_channel(im) -> np.ndarray:
    if im.mode in ("RGBA", "LA") and np.asarray(im.getchannel("A")).min() < 255:
        return np.asarray(im.getchannel("A"))
    return np.asarray(im.convert("L"))


def load_mask(path: str | os.PathLike, shape: tuple[int, int], what: str) -> np.ndarray:
    """(H, W) bool from an image file: pixels brighter than half (or opaque alpha) are set."""
    return check_mask(_read(path, f"{what} mask", _mask_channel) > 127, shape, what, str(path))


def _openpose_hand(obj: dict, side: str) -> list:
    people = obj.get("people") or []
    if not people:
        raise InputError("the OpenPose keypoint file has no people: no hand was detected")
    flat = people[0].get(f"hand_{side}_keypoints_2d") or []
    return np.asarray(flat, dtype=np.float64).reshape(-1, 3).tolist() if flat else []


def parse_keypoints(data, where: str, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """(21, 2) pixels and (21,) confidences from parsed keypoint data (see the module doc)."""
    if isinstance(data, dict):
        if "people" in data:
            data = _openpose_hand(data, side)
        elif "keypoints" in data:
            data = data["keypoints"]
        else:
            raise InputError(f"keypoint file {where} has neither 'keypoints' nor 'people': see `hoitool reconstruct --help`")
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"keypoint file {where} is not a list of numbers: {e}") from e
    if arr.size == 0:
        raise InputError(f"no hand in {where}: the keypoint list is empty")
    if arr.ndim == 1 and arr.size in (42, 63):
        arr = arr.reshape(21, -1)
    if arr.ndim != 2 or arr.shape[0] != 21 or arr.shape[1] not in (2, 3):
        raise InputError(f"keypoint file {where} holds an array of shape {arr.shape}: expected 21 points "
                         "[u, v] or [u, v, confidence] in OpenPose order")
    uv = arr[:, :2]
    conf = np.nan_to_num(arr[:, 2], nan=0.0, posinf=0.0, neginf=0.0).clip(0, 1) if arr.shape[1] == 3 else np.ones(21)
    bad = ~np.isfinite(uv).all(1)
    if bad.any():
        conf = np.where(bad, 0.0, conf)
        uv = np.where(bad[:, None], 0.0, uv)
    if (conf > 0).sum() < MIN_KEYPOINTS:
        raise InputError(f"no hand in {where}: only {(conf > 0).sum()} of 21 keypoints are present "
                         f"(at least {MIN_KEYPOINTS} are needed)")
    return uv.astype(np.float32), conf.astype(np.float32)


def load_keypoints(path: str | os.PathLike, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"keypoint file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        elif path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read keypoint file {path}: {e}") from e
    return parse_keypoints(data, str(path), side)


def check_keypoints_in_image(uv: np.ndarray, conf: np.ndarray, shape: tuple[int, int], where: str) -> None:
    """Refuse keypoints that are not pixels of this image: normalised ones (every present
    point within [-0.5, 1.5], as MediaPipe writes them; a hand in pixels is never that small)
    and ones far outside the image.

    Args:
        uv: (21, 2) float keypoints, pixels.
        conf: (21,) float confidences; 0 = missing (not checked).
        shape: (H, W) of the image, pixels.
        where: what to name in the message (the file).
    """
    H, W = shape
    p = uv[conf > 0]
    if len(p) and float(np.abs(p - 0.5).max()) <= NORMALISED_LIMIT:
        raise InputError(f"keypoints in {where} all lie in or near [0, 1]: they look normalised (as MediaPipe writes "
                         f"them), not pixels; multiply u by the image width ({W}) and v by its height ({H})")
    inside = (uv[:, 0] >= -0.5 * W) & (uv[:, 0] <= 1.5 * W) & (uv[:, 1] >= -0.5 * H) & (uv[:, 1] <= 1.5 * H)
    if not inside[conf > 0].all():
        raise InputError(f"keypoints in {where} lie far outside the {W}x{H} image: they must be pixels of this image")


def check_box(box: np.ndarray, shape: tuple[int, int], flag: str) -> np.ndarray:
    """Refuse a box prompt that is not inside the image or is smaller than MIN_BOX_PX on a side.

    Args:
        box: (4,) x0, y0, x1, y1 pixels with x1 > x0 and y1 > y0 (as segment.parse_box gives).
        shape: (H, W) of the image.
        flag: the option to name in the message.
    Returns: the box.
    """
    H, W = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    text = ",".join(f"{v:g}" for v in (x0, y0, x1, y1))
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        raise InputError(f"{flag} {text} is not inside the {W}x{H} image: x0, x1 must lie in 0..{W} and y0, y1 in 0..{H} "
                         "(pixels of the image as loaded, EXIF orientation applied)")
    if x1 - x0 < MIN_BOX_PX or y1 - y0 < MIN_BOX_PX:
        raise InputError(f"{flag} {text} is {x1 - x0:g}x{y1 - y0:g} pixels: too small to segment (at least "
                         f"{MIN_BOX_PX}x{MIN_BOX_PX}); draw it around the whole object")
    return np.asarray(box, np.float32)


def check_point(uv: np.ndarray, shape: tuple[int, int], flag: str) -> np.ndarray:
    """Refuse a point prompt (u, v pixels) outside the image (H, W)."""
    H, W = shape
    u, v = (float(x) for x in uv)
    if not (0 <= u <= W and 0 <= v <= H):
        raise InputError(f"{flag} {u:g},{v:g} is not inside the {W}x{H} image (u in 0..{W}, v in 0..{H})")
    return np.asarray(uv, np.float32)


def keypoint_box(uv: np.ndarray, conf: np.ndarray, shape: tuple[int, int], pad: float = 0.15) -> np.ndarray:
    """(4,) x0, y0, x1, y1: the present keypoints' box, padded by `pad` of its size, clipped to the image."""
    p = uv[conf > 0]
    lo, hi = p.min(0), p.max(0)
    m = (hi - lo) * pad + 4
    H, W = shape
    return np.array([max(lo[0] - m[0], 0), max(lo[1] - m[1], 0), min(hi[0] + m[0], W - 1), min(hi[1] + m[1], H - 1)], np.float32)


TWO_HAND_KEYPOINT_HELP = ('both hands\' 21 keypoints (OpenPose order, image pixels): JSON {"right": [[u, v, c] x 21], '
                          '"left": [...]} (each as a one-hand list), an OpenPose result with hand_right_keypoints_2d and '
                          'hand_left_keypoints_2d, or a (2, 21, 2|3) .npy [right, left].')


def load_two_hand_keypoints(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(2, 21, 2) pixels and (2, 21) confidences [right, left] from a two-hand keypoint file
    (see TWO_HAND_KEYPOINT_HELP); one InputError line naming the hand that is missing or short."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"keypoint file not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            raise InputError(f"keypoint file {path} must be .json or .npy for two hands: " + TWO_HAND_KEYPOINT_HELP)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read keypoint file {path}: {e}") from e
    if isinstance(data, np.ndarray):
        if data.ndim != 3 or data.shape[:2] != (2, 21) or data.shape[2] not in (2, 3):
            raise InputError(f"keypoint file {path} holds an array of shape {data.shape}: expected (2, 21, 2|3) [right, left]")
        hands = {"right": data[0], "left": data[1]}
    elif isinstance(data, dict) and "people" in data:
        hands = {s: data for s in ("right", "left")}
    elif isinstance(data, dict) and ("right" in data or "left" in data):
        hands = {s: data.get(s) for s in ("right", "left")}
    else:
        raise InputError(f"keypoint file {path} holds no two hands: " + TWO_HAND_KEYPOINT_HELP)
    uv, conf = [], []
    for side, d in hands.items():
        if d is None or (isinstance(d, list) and not d):
            raise InputError(f"keypoint file {path} has no {side} hand: two-hand reconstruction needs both hands' keypoints")
        u, c = parse_keypoints(d, f"{path} ({side} hand)", side)
        uv.append(u)
        conf.append(c)
    return np.stack(uv), np.stack(conf)
