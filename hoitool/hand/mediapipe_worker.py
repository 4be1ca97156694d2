"""2D hand keypoints with MediaPipe Hands, run in the detector's own environment.

A standalone script: it imports only the standard library, numpy and (inside `run`) mediapipe,
so it runs under `.venv-detect/bin/python`, which `make setup-detect` builds, and it imports
nowhere else in hoitool. The main side is `hoitool.hand.detect`.

    .venv-detect/bin/python hoitool/hand/mediapipe_worker.py IN.npz OUT.npz [--video]
    .venv-detect/bin/python hoitool/hand/mediapipe_worker.py --check

IN.npz holds uint8 RGB images (H, W, 3): either one array "images" (N, H, W, 3) or arrays
"image_000000", "image_000001", ... (any sizes; taken in name order). OUT.npz holds, for N
images and M = --max-hands slots (hands in MediaPipe's order, empty slots last):

    keypoints (N, M, 21, 2) float32  pixels (u = x * W, v = y * H of the normalised landmarks);
                                      21 in MediaPipe order, which is OpenPose order: wrist;
                                      thumb 1-4; index 1-4; middle 1-4; ring 1-4; little 1-4
    landmarks (N, M, 21, 3) float32  MediaPipe's normalised landmarks (x, y in [0, 1], z relative)
    world     (N, M, 21, 3) float32  MediaPipe's world landmarks (metres, origin near the hand centre)
    right     (N, M) int8            1 right hand, 0 left hand, -1 empty slot, for the image AS GIVEN
    score     (N, M) float32         MediaPipe's handedness score for that label (0 in empty slots)
    count     (N,) int32             hands found per image

Handedness: MediaPipe labels hands as if the image were mirrored (a selfie camera), and its
documentation says to swap the label otherwise. Checked on a photograph (a right hand holding a
cup, the hand's back to the camera): MediaPipe says "Left", and "Right" for the same photo
flipped left-right. So `right` is the swapped label unless --mirrored says the images are
selfie-mirrored.

--video processes the images as consecutive frames of one clip (static_image_mode=False: palm
detection once, then landmark tracking); otherwise each image is independent.

--check imports mediapipe, prints "mediapipe VERSION" and exits 0 (the doctor's cheap check).
"""

from __future__ import annotations

import argparse
import sys
import types

import numpy as np

NUM_KEYPOINTS = 21


def to_pixels(normalised: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised landmarks (..., 2 or 3) -> pixels (..., 2): u = x * W - 0.5, v = y * H - 0.5.

    MediaPipe's x and y are fractions of the image width and height from the top-left corner
    of the image (0 and 1 are its outer edges); hoitool puts pixel centres at integers, so the
    first pixel's centre (x = 0.5 / W) is u = 0. z (if given) is dropped.
    """
    p = np.asarray(normalised, dtype=np.float64)[..., :2]
    return (p * np.array([width, height], dtype=np.float64) - 0.5).astype(np.float32)


def is_right(mediapipe_label: str, mirrored: bool = False) -> bool:
    """Whether a hand is a right hand in the image as given, from MediaPipe's label.

    MediaPipe's label assumes a mirrored (selfie) image: for an ordinary photograph the hand
    it calls "Left" is a right hand.
    """
    label = mediapipe_label.strip().lower()
    if label not in ("left", "right"):
        raise ValueError(f"unknown handedness label {mediapipe_label!r}")
    return (label == "right") if mirrored else (label == "left")


def read_images(path: str) -> list[np.ndarray]:
    """The images of IN.npz, as a list of (H, W, 3) uint8 RGB arrays."""
    with np.load(path, allow_pickle=False) as z:
        if "images" in z.files:
            images = list(z["images"])
        else:
            images = [z[k] for k in sorted(k for k in z.files if k.startswith("image_"))]
    for i, im in enumerate(images):
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {im.shape} {im.dtype}")
    return [np.ascontiguousarray(im) for im in images]


def _import_mediapipe():
    """Import mediapipe. Its package __init__ imports drawing_utils, which imports cv2 and
    matplotlib for drawing only; the detector environment leaves both out (hundreds of MB), so
    empty stand-ins are registered when they are missing. Nothing on the hands path uses them."""
    for name in ("cv2", "matplotlib", "matplotlib.pyplot"):
        if name in sys.modules:
            continue
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    import mediapipe

    return mediapipe


def run(images: list[np.ndarray], video: bool = False, max_hands: int = 2, min_detection: float = 0.5,
        min_tracking: float = 0.5, mirrored: bool = False) -> dict[str, np.ndarray]:
    """Detect up to `max_hands` hands per image; the arrays of OUT.npz."""
    mp = _import_mediapipe()
    n, m = len(images), max_hands
    out = {
        "keypoints": np.zeros((n, m, NUM_KEYPOINTS, 2), np.float32),
        "landmarks": np.zeros((n, m, NUM_KEYPOINTS, 3), np.float32),
        "world": np.zeros((n, m, NUM_KEYPOINTS, 3), np.float32),
        "right": np.full((n, m), -1, np.int8),
        "score": np.zeros((n, m), np.float32),
        "count": np.zeros((n,), np.int32),
    }
    with mp.solutions.hands.Hands(static_image_mode=not video, max_num_hands=max_hands, model_complexity=1,
                                  min_detection_confidence=min_detection,
                                  min_tracking_confidence=min_tracking) as hands:
        for i, im in enumerate(images):
            h, w = im.shape[:2]
            res = hands.process(im)
            found = res.multi_hand_landmarks or []
            handed = res.multi_handedness or []
            worlds = res.multi_hand_world_landmarks or []
            for j, lms in enumerate(found[:m]):
                lm = np.array([[p.x, p.y, p.z] for p in lms.landmark], np.float32)
                out["landmarks"][i, j] = lm
                out["keypoints"][i, j] = to_pixels(lm, w, h)
                if j < len(worlds):
                    out["world"][i, j] = [[p.x, p.y, p.z] for p in worlds[j].landmark]
                if j < len(handed):
                    c = handed[j].classification[0]
                    out["right"][i, j] = int(is_right(c.label, mirrored))
                    out["score"][i, j] = c.score
                else:  # not seen in practice: a hand without a label
                    out["right"][i, j] = -1
                out["count"][i] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="2D hand keypoints with MediaPipe Hands (npz in, npz out).")
    ap.add_argument("input", nargs="?", help="npz of uint8 RGB images")
    ap.add_argument("output", nargs="?", help="npz to write")
    ap.add_argument("--video", action="store_true", help="frames of one clip: track hands between frames")
    ap.add_argument("--max-hands", type=int, default=2)
    ap.add_argument("--min-detection", type=float, default=0.5)
    ap.add_argument("--min-tracking", type=float, default=0.5)
    ap.add_argument("--mirrored", action="store_true", help="the images are mirrored (selfie camera)")
    ap.add_argument("--check", action="store_true", help="import mediapipe, print its version, exit")
    a = ap.parse_args(argv)
    try:
        if a.check:
            mp = _import_mediapipe()
            hands = mp.solutions.hands  # noqa: F841 (the hands solution imports)
            print(f"mediapipe {getattr(mp, '__version__', '?')}")
            return 0
        if not a.input or not a.output:
            ap.error("IN.npz and OUT.npz are needed (or --check)")
        out = run(read_images(a.input), video=a.video, max_hands=a.max_hands, min_detection=a.min_detection,
                  min_tracking=a.min_tracking, mirrored=a.mirrored)
        np.savez(a.output, **out)
        return 0
    except Exception as e:  # one last line for the caller
        sys.stderr.flush()
        print(f"mediapipe_worker: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
