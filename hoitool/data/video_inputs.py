"""Inputs of video reconstruction: the clip's frames, per-frame hand and object masks, per-frame
2D hand keypoints; and writing a clip back to a video file.

As in image_inputs, everything is validated here so that a bad file ends in one clear line
(InputError) before any work starts.

Clips (load_clip):
- a video file (.mp4, .mov, .avi, .webm, .mkv, .m4v; any other suffix that is not a still image
  is tried too), decoded with PyAV; its display rotation (a phone's portrait video) is applied,
  as OpenCV's VideoCapture does;
- a .gif, read with Pillow (every frame, composited and converted to RGB);
- a folder of frames (.png, .jpg, .jpeg, .bmp, .webp) in natural order (frame2 before frame10),
  all of one size, each read with its EXIF orientation applied (as image_inputs.load_image does).

Frame numbers. `--frames A:B:STEP` selects frames by their 0-based position in the whole clip,
with Python's slice meaning (B excluded). Masks and keypoints are matched to a selected frame by
its stem (the file's stem for a folder, f"{index:05d}" for a video or gif) or by its *number*:
the index for a video or gif; for a folder, the integer in the frame's file name
(frame_0012.png -> 12) when every frame's name holds a distinct one, else the index. So masks
named after the frames (mask_0012.png for frame_0012.png) match whatever the numbering's base.

Resolution. With max_side the frames are shrunk (area interpolation) so that their longer side
is at most max_side pixels; masks and keypoints are still given at the clip's ORIGINAL size
(Clip.original_size) and load_mask_folder / load_clip_keypoints rescale them to the frames.
Pixel centres are at integer coordinates (pixel (0, 0) spans [-0.5, 0.5]^2), as elsewhere in
hoitool.

Keypoints of a clip (21 points per frame, OpenPose order, pixels of the original frames):
(a) JSON list with one entry per frame of the whole clip: 21 [u, v] or [u, v, confidence]
    (or a flat list of 42 / 63 numbers, or an OpenPose result), null or [] for a frame without
    a hand; also {"frames": that list};
(b) JSON {"frames": {"<frame stem or number>": <21 points>, ...}}, frames without a hand absent;
(c) a folder of per-frame OpenPose JSON files (<stem>_keypoints.json, or names holding the frame
    number, e.g. clip_000000000012_keypoints.json), the hand picked by `side`;
(d) .npy array (T, 21, 2) or (T, 21, 3) for the whole clip, NaN for missing frames or points.
Missing frames and points get confidence 0. Normalised keypoints (MediaPipe's [0, 1]) are
refused, as in image_inputs.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from hoitool.data import image_inputs as ii
from hoitool.errors import InputError

#: Suffixes of video files decoded with PyAV.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v"})
#: Suffixes of animated images read with Pillow.
GIF_SUFFIXES = frozenset({".gif"})
#: Image files taken as the frames of a folder clip.
FRAME_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
#: Still images (not clips): a path with one of these suffixes is routed to single-image inputs.
STILL_SUFFIXES = frozenset(FRAME_SUFFIXES | {".tif", ".tiff"})
#: Mask files looked for in a mask folder.
MASK_SUFFIXES = STILL_SUFFIXES
#: Frame rate of a folder of frames, and of a gif that does not give its frames' durations.
DEFAULT_FPS = 30.0
#: Frames smaller than this (pixels, either side) are refused, as image_inputs.load_image does.
MIN_FRAME_SIDE = 16

_EXIF_ORIENTATION = 0x0112
_CONVERT_HINT = ("convert it with ffmpeg (ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p clip.mp4) "
                 "or pass a folder of frames")


def _one_line(text) -> str:
    """str(text) with line breaks collapsed, for one-line error messages."""
    return " ".join(str(text).split())


def _natural_key(name: str) -> tuple:
    """Sort key putting frame2 before frame10 (digit runs compared as numbers, text case-folded)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def _last_number(name: str) -> int | None:
    """The last run of digits in `name` as an int (frame_0012 -> 12), or None."""
    found = re.findall(r"\d+", name)
    return int(found[-1]) if found else None


@dataclass
class Clip:
    """Frames of a video clip: only the selected ones, with where they came from."""

    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB, the selected frames (shrunk when loaded with max_side)."""
    indices: list[int]
    """(T,) original 0-based position of each selected frame in the whole clip."""
    stems: list[str]
    """(T,) per selected frame: its file stem (folder) or f"{index:05d}" (video, gif)."""
    fps: float
    """Frames per second of the whole clip (a selection with a step plays at fps / step)."""
    source: str
    """The path the clip was loaded from."""
    original_size: tuple[int, int] | None = None
    """(W, H) pixels of the frames as stored (before max_side); defaults to the frames' size.
    Masks and keypoints are given at this size."""
    total: int = 0
    """Number of frames of the whole clip (before --frames); defaults to max(indices) + 1."""
    numbers: list[int] = field(default_factory=list)
    """(T,) frame numbers used to match masks and keypoints by number (see the module doc);
    defaults to indices."""

    def __post_init__(self) -> None:
        if self.original_size is None:
            self.original_size = self.size
        if not self.total:
            self.total = max(self.indices) + 1 if self.indices else 0
        if not self.numbers:
            self.numbers = list(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) pixels of the loaded frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): loaded frame size / original size (1, 1 unless loaded with max_side)."""
        (w, h), (W, H) = self.size, self.original_size
        return w / W, h / H

    def frame_name(self, i: int) -> str:
        """How error messages name the i-th selected frame."""
        if self.stems[i] == f"{self.indices[i]:05d}":
            return f"frame {self.indices[i]}"
        return f"frame {self.stems[i]} (index {self.indices[i]})"


# -- frame selection ---------------------------------------------------------------------------------
def parse_frames(spec: str | None) -> tuple[int, int | None, int]:
    """(start, stop, step) of a --frames value, with Python's slice meaning (stop excluded).

    Accepts "A:B:STEP", "A:B", "A:", ":B", "::STEP", a single frame "A", or None / "" for every
    frame. Negative A or B count from the clip's end; STEP must be positive.
    """
    if spec is None or not spec.strip():
        return 0, None, 1
    text = spec.strip()
    parts = [p.strip() for p in text.split(":")]
    hint = "use --frames START:STOP:STEP, e.g. 0:48, 10:, ::2 (0-based, STOP excluded)"
    if len(parts) > 3:
        raise InputError(f"--frames {spec!r} has more than three parts: {hint}")
    try:
        nums = [int(p) if p else None for p in parts]
    except ValueError:
        raise InputError(f"--frames {spec!r} is not START:STOP:STEP with whole numbers: {hint}") from None
    if len(nums) == 1:
        if nums[0] is None:
            return 0, None, 1
        a = nums[0]
        return a, (a + 1 if a != -1 else None), 1
    start = nums[0] if nums[0] is not None else 0
    stop = nums[1]
    step = nums[2] if len(nums) == 3 and nums[2] is not None else 1
    if step <= 0:
        raise InputError(f"--frames {spec!r} has step {step}: the step must be a positive whole number; {hint}")
    return start, stop, step


def _select(spec: str | None, total: int) -> list[int]:
    """Indices of the whole clip's frames (0..total-1) that --frames `spec` selects, or InputError."""
    start, stop, step = parse_frames(spec)
    for name, v, limit in (("START", start, total - 1), ("STOP", stop, total)):
        if v is not None and (v > limit or v < -total):
            raise InputError(f"--frames {spec}: {name} {v} is outside the clip, which has {total} frames (0-{total - 1})")
    picked = list(range(*slice(start, stop, step).indices(total)))
    if not picked:
        span = f" (0-{total - 1})" if total else ""
        raise InputError(f"--frames {spec} selects no frame: the clip has {total} frames{span}")
    return picked


# -- clips ---------------------------------------------------------------------------------------------
def is_video_input(path: str | os.PathLike) -> bool:
    """True for a clip: a folder (of frames) or a file with a video or gif suffix; False for a
    still image (.jpg, .png, ...) or anything else. The path need not exist (routing only)."""
    p = Path(path)
    if p.is_dir():
        return True
    return p.suffix.lower() in VIDEO_SUFFIXES | GIF_SUFFIXES


def _oriented_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file as load_image returns it (EXIF orientation applied), from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
                w, h = h, w
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read frame {path}: {_one_line(e)}; pass PNG or JPEG frames") from e
    return w, h


def _load_folder(folder: Path, frames: str | None) -> tuple[list[np.ndarray], list[int], list[str], list[int], int, float]:
    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FRAME_SUFFIXES),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise InputError(f"folder {folder} holds no frames: put the clip's frames in it as PNG or JPEG files "
                         "(frame_00000.png, frame_00001.png, ...)")
    size0 = _oriented_size(files[0])
    for p in files[1:]:
        size = _oriented_size(p)
        if size != size0:
            raise InputError(f"frame {p.name} in {folder} is {size[0]}x{size[1]} but the first frame {files[0].name} is "
                             f"{size0[0]}x{size0[1]}: all frames of a clip must have the same size")
    picked = _select(frames, len(files))
    arrays = [ii._read(files[i], "frame", lambda im: np.asarray(im.convert("RGB"))) for i in picked]
    nums = [_last_number(p.stem) for p in files]
    if None in nums or len(set(nums)) != len(nums):
        nums = list(range(len(files)))
    return arrays, picked, [files[i].stem for i in picked], [nums[i] for i in picked], len(files), DEFAULT_FPS


def _load_gif(path: Path, frames: str | None) -> tuple[list[np.ndarray], list[int], list[str], list[int], int, float]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            all_frames, durations = [], []
            for fr in ImageSequence.Iterator(im):
                all_frames.append(np.asarray(fr.convert("RGB")))
                durations.append(fr.info.get("duration") or 0)
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as e:
        raise InputError(f"{path} cannot be read as a video: {_one_line(e)}; {_CONVERT_HINT}") from e
    if not all_frames:
        raise InputError(f"{path} cannot be read as a video: it holds no frame; {_CONVERT_HINT}")
    picked = _select(frames, len(all_frames))
    positive = [d for d in durations if d > 0]
    fps = 1000.0 / float(np.median(positive)) if positive else DEFAULT_FPS
    return [all_frames[i] for i in picked], picked, [f"{i:05d}" for i in picked], picked, len(all_frames), fps


def _apply_rotation(arr: np.ndarray, rotation: float) -> np.ndarray:
    """Turn a decoded frame upright: `rotation` is the display matrix's counterclockwise angle, degrees."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(arr, k)) if k else arr


def _load_video(path: Path, frames: str | None) -> tuple[list[np.ndarray], list[int], list[str], list[int], int, float]:
    import av

    start, stop, step = parse_frames(frames)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"{path} cannot be read as a video: {_one_line(e)}; {_CONVERT_HINT}") from e
    kept: dict[int, np.ndarray] = {}
    try:
        if not container.streams.video:
            raise InputError(f"{path} cannot be read as a video: it has no video stream; {_CONVERT_HINT}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate and float(rate) > 0 else DEFAULT_FPS
        # Negative start/stop need the length: keep every frame's position, select at the end.
        # Otherwise only frames the selection can take are converted (decoding runs to the end
        # so that the clip's length is known for the messages and for matching by order).
        need_all = start < 0 or (stop is not None and stop < 0)
        size = None
        n = 0
        for frame in container.decode(stream):
            i = n
            n += 1
            if not need_all and (i < start or (stop is not None and i >= stop) or (i - start) % step):
                continue
            if size is None:
                size = frame.width, frame.height
            arr = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
            kept[i] = _apply_rotation(arr, frame.rotation or 0)
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"{path} cannot be read as a video: decoding failed: {_one_line(e)}; {_CONVERT_HINT}") from e
    finally:
        container.close()
    if n == 0:
        raise InputError(f"{path} cannot be read as a video: it holds no frame; {_CONVERT_HINT}")
    picked = _select(frames, n)
    return [kept[i] for i in picked], picked, [f"{i:05d}" for i in picked], picked, n, fps


def _shrink(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """arr resized to (W, H) = size with area interpolation (uint8 or bool kept)."""
    import cv2

    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    if arr.dtype == bool:
        return cv2.resize(arr.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def load_clip(path: str | os.PathLike, frames: str | None = None, max_side: int | None = None) -> Clip:
    """The selected frames of a clip (video file, gif, or folder of frames; see the module doc).

    Args:
        path: video file, .gif, or folder of frames.
        frames: --frames selection "START:STOP:STEP" over the whole clip's 0-based frame
            positions (Python slice meaning); None for every frame.
        max_side: when given, frames are shrunk (area interpolation, aspect kept) so their longer
            side is at most this many pixels; Clip.original_size keeps the stored (W, H), at
            which masks and keypoints are still given.

    Returns:
        Clip with frames (T, H, W, 3) uint8 RGB.

    Raises:
        InputError: missing path, a still image, unreadable or empty video, frames of unequal
            size, a bad or empty --frames selection, frames under 16 pixels.
    """
    parse_frames(frames)  # bad text fails before any decoding
    if max_side is not None and max_side < MIN_FRAME_SIDE:
        raise InputError(f"--max-side {max_side} is too small: give at least {MIN_FRAME_SIDE} pixels")
    path = Path(path)
    if not path.exists():
        raise InputError(f"clip not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir():
        arrays, picked, stems, numbers, total, fps = _load_folder(path, frames)
    elif suffix in GIF_SUFFIXES:
        arrays, picked, stems, numbers, total, fps = _load_gif(path, frames)
    elif suffix in STILL_SUFFIXES:
        raise InputError(f"{path} is a still image, not a clip: pass a video file, a .gif or a folder of frames")
    else:
        arrays, picked, stems, numbers, total, fps = _load_video(path, frames)
    H, W = arrays[0].shape[:2]
    if H < MIN_FRAME_SIDE or W < MIN_FRAME_SIDE:
        raise InputError(f"the frames of {path} are {W}x{H} pixels: too small to reconstruct from")
    if max_side is not None and max(W, H) > max_side:
        s = max_side / max(W, H)
        new = (max(1, round(W * s)), max(1, round(H * s)))
        arrays = [_shrink(a, new) for a in arrays]
    return Clip(frames=np.stack(arrays), indices=picked, stems=stems, fps=fps, source=str(path),
                original_size=(W, H), total=total, numbers=numbers)


# -- matching per-frame files to frames -------------------------------------------------------------------
def _match_files(files: list[Path], clip: Clip, key, allow_missing: bool, what: str, where: Path) -> list[Path | None]:
    """Per selected frame, the file of `files` for it (see load_mask_folder), or None.

    key(path) -> the name compared with the frame's stem (and searched for its number).
    One rule serves the whole folder: by stem if it finds every selected frame's file, else by
    number if that does, else by sorted order when there is one file per frame of the whole
    clip; otherwise (allow_missing) the rule finding more frames, or (not allow_missing) an
    InputError naming the first frame without a file.
    """
    by_stem = {key(p): p for p in files}
    by_num: dict[int, Path] = {}
    clashes: dict[int, list[Path]] = {}
    for p in files:
        n = _last_number(key(p))
        if n is None:
            continue
        if n in by_num:
            clashes.setdefault(n, [by_num[n]]).append(p)
        else:
            by_num[n] = p
    stem_hits = [by_stem.get(s) for s in clip.stems]
    num_hits = [by_num.get(n) for n in clip.numbers]
    if all(stem_hits):
        return stem_hits
    if all(num_hits) or (allow_missing and sum(map(bool, num_hits)) > sum(map(bool, stem_hits))):
        for n, hit in zip(clip.numbers, num_hits):
            if hit is not None and n in clashes:
                names = ", ".join(p.name for p in clashes[n][:3])
                raise InputError(f"{what} files {names} in {where} all carry the frame number {n}: "
                                 "keep one file per frame in the folder")
        return num_hits
    if len(files) == clip.total:
        ordered = sorted(files, key=lambda p: _natural_key(p.name))
        return [ordered[i] for i in clip.indices]
    if allow_missing:
        return stem_hits
    best = stem_hits if sum(map(bool, stem_hits)) >= sum(map(bool, num_hits)) else num_hits
    i = best.index(None)
    raise InputError(f"no {what} for {clip.frame_name(i)} in {where}: name each {what} after its frame "
                     f"({clip.stems[i]}.png) or with the frame number ({clip.numbers[i]:05d}.png), or give one "
                     f"per frame of the whole clip ({clip.total} files, in the frames' order)")


def load_mask_folder(folder: str | os.PathLike, clip: Clip, what: str) -> np.ndarray:
    """(T, H, W) bool masks of the clip's selected frames from a folder of mask images.

    Each mask is an image of the clip's ORIGINAL size (Clip.original_size); pixels brighter than
    half (or opaque alpha, as image_inputs.load_mask) are set. It is then shrunk to the loaded
    frames' size when the clip was loaded with max_side. A frame's mask is found by the file's
    stem equal to the frame's stem, else by the integer in the file name equal to the frame
    number (mask_00012.png, 12.png; see the module doc), else by sorted order when the folder
    holds exactly one mask per frame of the whole clip.

    Args:
        folder: folder of mask images (.png, .jpg, .bmp, .webp, .tif).
        clip: the clip the masks belong to (load_clip).
        what: "hand" or "object", for messages.

    Raises:
        InputError: missing folder or mask, a mask of another size, a mask covering the whole
            frame, or every mask empty (an empty mask on some frames is allowed: hidden object).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} mask folder not found: {folder} (pass a folder with one mask image per frame)")
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MASK_SUFFIXES]
    if len(files) > clip.total:
        raise InputError(f"{folder} holds {len(files)} {what} masks but the clip has {clip.total} frames: "
                         "is it the mask folder of another clip? Keep one mask per frame")
    if not files:
        raise InputError(f"{what} mask folder {folder} holds no mask images: put one PNG per frame in it")
    matched = _match_files(files, clip, lambda p: p.stem, False, f"{what} mask", folder)
    W, H = clip.original_size
    masks = []
    for i, p in enumerate(matched):
        m = ii._read(p, f"{what} mask", ii._mask_channel) > 127
        if m.shape != (H, W):
            raise InputError(f"the {what} mask {p.name} in {folder} for {clip.frame_name(i)} is {m.shape[1]}x{m.shape[0]} "
                             f"but the frames are {W}x{H}: masks must have the frames' original size")
        if m.sum() > ii.MAX_MASK_COVER * m.size:
            raise InputError(f"the {what} mask {p.name} in {folder} covers the whole frame: it must mark only the "
                             f"{what}'s pixels")
        masks.append(_shrink(m, clip.size))
    out = np.stack(masks)
    if not out.any():
        raise InputError(f"every {what} mask in {folder} is empty on the selected frames: they must mark the "
                         f"{what}'s pixels in white")
    return out


# -- keypoints ---------------------------------------------------------------------------------------------
def _frame_points(entry, where: str, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(21, 2) pixels and (21,) confidences of one frame's entry, or None when it has no hand.

    The entry is a list of 21 [u, v] / [u, v, c] (or 42 / 63 numbers), {"keypoints": ...}, or an
    OpenPose result; null, [] and OpenPose results without people or without the side's hand
    mean no hand. Unlike image_inputs.parse_keypoints, few present points are not an error here.
    """
    if entry is None:
        return None
    if isinstance(entry, dict):
        if "people" in entry:
            if not entry.get("people"):
                return None
            entry = ii._openpose_hand(entry, side)
        elif "keypoints" in entry:
            entry = entry["keypoints"]
        else:
            raise InputError(f"keypoints of {where} have neither 'keypoints' nor 'people': give 21 points "
                             "[u, v] or [u, v, confidence] in OpenPose order")
    try:
        arr = np.asarray(entry, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"keypoints of {where} are not a list of numbers: {_one_line(e)}") from e
    if arr.size == 0:
        return None
    if arr.ndim == 1 and arr.size in (42, 63):
        arr = arr.reshape(21, -1)
    if arr.ndim != 2 or arr.shape[0] != 21 or arr.shape[1] not in (2, 3):
        raise InputError(f"keypoints of {where} have shape {arr.shape}: expected 21 points [u, v] or "
                         "[u, v, confidence] in OpenPose order")
    uv = arr[:, :2]
    conf = np.nan_to_num(arr[:, 2], nan=0.0, posinf=0.0, neginf=0.0).clip(0, 1) if arr.shape[1] == 3 else np.ones(21)
    bad = ~np.isfinite(uv).all(1)
    conf = np.where(bad, 0.0, conf)
    uv = np.where(bad[:, None] | (conf[:, None] <= 0), 0.0, uv)
    return uv, conf


def _looks_like_one_hand(data: list) -> bool:
    """True for a single frame's 21 points ([[u, v], ...] or 42 / 63 numbers) given where a clip's are expected."""
    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if len(data) in (42, 63) and all(number(x) for x in data):
        return True
    return len(data) == 21 and all(isinstance(x, list) and len(x) in (2, 3) and all(number(y) for y in x) for x in data)


def _entries_per_frame(entries, clip: Clip, where: Path) -> list:
    """The selected frames' entries of a whole-clip list (form a, or a .npy's rows)."""
    if len(entries) != clip.total:
        raise InputError(f"keypoint file {where} has {len(entries)} entries but the clip has {clip.total} frames: give one "
                         "entry per frame of the whole clip (null for a frame without a hand), or "
                         '{"frames": {"<frame number>": points}}')
    return [entries[i] for i in clip.indices]


def _entries_by_key(mapping: dict, clip: Clip, where: Path) -> list:
    """The selected frames' entries of {"<frame stem or number>": points} (form b)."""
    by_num = {}
    for k in mapping:
        ks = str(k).strip()
        n = int(ks) if ks.isdigit() else _last_number(ks)
        if n is not None:
            by_num.setdefault(n, mapping[k])
    str_keys = {str(k): v for k, v in mapping.items()}
    out = []
    for s, n in zip(clip.stems, clip.numbers):
        out.append(str_keys[s] if s in str_keys else by_num.get(n))
    if mapping and all(e is None for e in out):
        first = next(iter(mapping))
        raise InputError(f"no key of {where}'s \"frames\" (e.g. {str(first)!r}) names a selected frame: key each "
                         f"frame by its number ({clip.numbers[0]}) or its stem ({clip.stems[0]!r})")
    return out


def _entries_openpose_folder(folder: Path, clip: Clip) -> list:
    """The selected frames' OpenPose results (dicts), None where the folder has no file (form c)."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == ".json"]
    if not files:
        raise InputError(f"keypoint folder {folder} holds no JSON files: pass OpenPose's --write_json folder or "
                         "one JSON file of the whole clip")

    def key(p: Path) -> str:
        return p.stem[: -len("_keypoints")] if p.stem.endswith("_keypoints") else p.stem

    matched = _match_files(files, clip, key, True, "keypoint file", folder)
    if not any(matched):
        raise InputError(f"no file in keypoint folder {folder} belongs to a selected frame: name them "
                         f"<frame stem>_keypoints.json ({clip.stems[0]}_keypoints.json) or with the frame number")
    out = []
    for p in matched:
        if p is None:
            out.append(None)
            continue
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read keypoint file {p}: {_one_line(e)}") from e
    return out


def load_clip_keypoints(path: str | os.PathLike, clip: Clip, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Per selected frame, the hand's 21 keypoints (forms a-d of the module doc).

    Keypoints are given in pixels of the clip's ORIGINAL frames; they are checked against that
    size (image_inputs.check_keypoints_in_image, per frame) and scaled to the loaded frames'.

    Args:
        path: JSON file, .npy file, or folder of per-frame OpenPose JSON files.
        clip: the clip they belong to (load_clip).
        side: "right" or "left": the hand read from OpenPose results.

    Returns:
        uv: (T, 21, 2) float32 pixels of the loaded frames (0 where missing).
        conf: (T, 21) float32 in [0, 1]; 0 = missing point or frame.

    Raises:
        InputError: unreadable file, entries that are not 21 points, a list whose length is not
            the clip's, normalised or out-of-frame keypoints, or no selected frame with at least
            image_inputs.MIN_KEYPOINTS points.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"keypoint file not found: {path}")
    if path.is_dir():
        entries = _entries_openpose_folder(path, clip)
    elif path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read keypoint file {path}: {_one_line(e)}") from e
        if arr.ndim == 2 and arr.shape[1] in (42, 63):
            arr = arr.reshape(len(arr), 21, -1)
        if arr.ndim != 3 or arr.shape[1] != 21 or arr.shape[2] not in (2, 3):
            raise InputError(f"keypoint file {path} holds an array of shape {arr.shape}: expected (frames, 21, 2) or "
                             "(frames, 21, 3), NaN for missing frames")
        entries = _entries_per_frame(arr, clip, path)
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read keypoint file {path}: {_one_line(e)}") from e
        if isinstance(data, dict) and "frames" in data:
            frames = data["frames"]
            if isinstance(frames, dict):
                entries = _entries_by_key(frames, clip, path)
            elif isinstance(frames, list):
                entries = _entries_per_frame(frames, clip, path)
            else:
                raise InputError(f"\"frames\" of keypoint file {path} is neither a list (one entry per frame) nor an "
                                 "object keyed by frame number")
        elif isinstance(data, list) and _looks_like_one_hand(data):
            raise InputError(f"keypoint file {path} holds one hand (21 points), not one per frame: give a list with "
                             'one entry per frame, or {"frames": {"<frame number>": points}}')
        elif isinstance(data, list):
            entries = _entries_per_frame(data, clip, path)
        else:
            raise InputError(f"keypoint file {path} holds one image's keypoints, not a clip's: give a list with one "
                             'entry per frame, or {"frames": {"<frame number>": points}}')
    else:
        raise InputError(f"keypoint file {path} is neither .json nor .npy nor a folder of OpenPose JSON files")

    T = len(clip)
    uv = np.zeros((T, 21, 2), np.float64)
    conf = np.zeros((T, 21), np.float64)
    W, H = clip.original_size
    for i, entry in enumerate(entries):
        where = f"{path} for {clip.frame_name(i)}"
        got = _frame_points(entry, where, side)
        if got is None:
            continue
        uv[i], conf[i] = got
        # A hand's frame is checked alone (the message names it); frames with a few points only
        # are checked with the whole clip below (a lone point near the corner is no sign of
        # normalised keypoints).
        if (conf[i] > 0).sum() >= ii.MIN_KEYPOINTS:
            ii.check_keypoints_in_image(uv[i], conf[i], (H, W), where)
    counts = (conf > 0).sum(1)
    if not (counts >= ii.MIN_KEYPOINTS).any():
        raise InputError(f"no frame of the clip has a hand: {path} gives at least {ii.MIN_KEYPOINTS} of 21 keypoints on "
                         f"none of the {T} selected frames (most: {int(counts.max(initial=0))}); pass --keypoints with "
                         "the hand's 2D keypoints per frame, or --detect")
    ii.check_keypoints_in_image(uv.reshape(-1, 2), conf.reshape(-1), (H, W), str(path))
    sx, sy = clip.scale
    if (sx, sy) != (1.0, 1.0):
        uv = (uv + 0.5) * np.array([sx, sy]) - 0.5
        uv = np.where(conf[..., None] > 0, uv, 0.0)
    return uv.astype(np.float32), conf.astype(np.float32)


# -- writing ---------------------------------------------------------------------------------------------
def _as_frames(frames) -> list[np.ndarray]:
    """List of (H, W, 3) uint8 arrays of one size from an array (T, H, W, 3 | 4) or a list (grey kept as RGB)."""
    out = []
    for f in frames:
        a = np.asarray(f)
        if a.dtype != np.uint8:
            raise ValueError(f"write_video needs uint8 frames, got {a.dtype}")
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"write_video needs (H, W, 3) RGB frames, got shape {a.shape}")
        out.append(np.ascontiguousarray(a[..., :3]))
    if not out:
        raise ValueError("write_video needs at least one frame")
    if any(a.shape != out[0].shape for a in out):
        raise ValueError("write_video needs frames of one size, got " + ", ".join(sorted({str(a.shape) for a in out})))
    return out


def _encoder() -> str:
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - codec not built into this FFmpeg
            continue
    raise RuntimeError("this FFmpeg (PyAV) has neither the libx264 nor the mpeg4 encoder")


def _write_av(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import av

    H, W = frames[0].shape[:2]
    H2, W2 = H + H % 2, W + W % 2
    codec = _encoder()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = W2, H2, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        else:
            stream.bit_rate = int(max(2_000_000, W2 * H2 * fps * 0.5))
        for a in frames:
            if (H2, W2) != (H, W):
                a = np.pad(a, ((0, H2 - H), (0, W2 - W), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(a) for a in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(10, int(round(1000.0 / fps))), loop=0)


def write_video(path: str | os.PathLike, frames: np.ndarray | list, fps: float) -> Path:
    """Write frames as a video; returns the path.

    .mp4 / .mov / .mkv / .avi: PyAV, libx264 (crf 18) when this FFmpeg has it, else mpeg4; yuv420p,
    so an odd width or height is padded to even by repeating the last column / row (the file,
    read back, is that much larger). .gif: Pillow (palette of up to 256 colours per frame;
    frame durations in whole centiseconds, so 30 fps reads back as 33.3; Pillow merges identical
    consecutive frames into one longer frame).

    The file is written under a temporary name beside `path` and renamed when complete, so a
    crash never leaves a truncated video under the final name.

    Args:
        path: output file; its suffix picks the format.
        frames: (T, H, W, 3) uint8 RGB array, or a list of (H, W, 3) uint8 arrays of one size
            ((H, W) grey and (H, W, 4) RGBA frames are accepted; alpha is dropped).
        fps: frames per second, > 0.

    Raises:
        ValueError: no frames, frames not uint8 or of different sizes, fps <= 0, unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".mp4", ".mov", ".mkv", ".avi", ".gif"}:
        raise ValueError(f"write_video writes .mp4, .mov, .mkv, .avi or .gif, not {path.name}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"write_video needs fps > 0, got {fps}")
    arrays = _as_frames(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        if suffix == ".gif":
            _write_gif(tmp, arrays, fps)
        else:
            _write_av(tmp, arrays, fps)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
