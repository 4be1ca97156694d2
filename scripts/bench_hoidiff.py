"""Benchmark of HOIDiffusion's image model (`hoitool synthesize`) on held-out renders.

    PYOPENGL_PLATFORM=egl python scripts/bench_hoidiff.py --train /work/data/renders_train \
        --heldout /work/data/renders_heldout --model outputs/hoidiff/RUN --trajectories 16 --steps 50 \
        --json bench_results/bench_hoidiff.json

TRAIN and HELDOUT are `hoitool render` folders, the held-out one rendered with another --seed.
The first N held-out trajectories are copied (index lines + links to their folders) into
WORK/heldout, and `hoitool synthesize` runs on them as a subprocess: once on one trajectory (to
separate the model-load overhead), once on all N, and once on all N with --video. Without
--model, synthesize's shipped default model is used. `--generated DIR [--generated-video DIR]`
scores existing synthesize outputs of those trajectories instead (no speed numbers then).
Generated images are STEM_image.png, square, of any size G; every measure compares them with the
condition maps of the frame they were drawn from. Real renders are scored the same way as a
ceiling (resized to G first, so they carry the same loss of resolution).

1. Segmentation agreement. A small CNN segmenter (background / hand / object per pixel) is trained,
   seeded, on TRAIN's colour images resized to G (capped by --seg-size; its own input size S), with
   flips and colour jitter. Reported: per-class IoU and mIoU (pixels pooled over frames) on the
   held-out real colour images (the segmenter's ceiling), then on the generated images, both
   against the segmentation conditions resized (nearest) to S.
2. Hand keypoints. MediaPipe Hands (the `detect` extra, hoitool.hand.detect.detect_keypoints, in
   .venv-detect; it returns confidence 0 for "no hand"; its 21 keypoints are in hoitool's order)
   on every frame whose 21 keypoints are all in view (in front, inside the image), upscaled
   (bicubic) to at least 256 px. PCK@alpha counts a keypoint as correct
   within alpha * max side of the true 2D keypoint box (alpha 0.1, 0.2), over the images where a
   hand was found (`pck_detected`) and over all (`pck_all`: misses are wrong); detection rate.
   `real` is the colour render resized to G; `real_full` at its own size.
3. Contact recall on the grasp frames (the last stem). The paper scores contact with an
   off-the-shelf hand-object contact classifier that hoitool does not have; the substitute: a frame
   is "in contact" when the segmenter's hand and object regions touch (some hand pixel within
   1 px, 8-neighbourhood, of an object pixel, at S). Recall = share of the grasp frames whose
   condition segmentation touches (at render size) where the segmented image touches too.
4. Temporal consistency. Within a trajectory the camera and object are static, so a pixel that
   is not hand in frames t and t+1 (by the conditions) shows the same surface in both. Mean
   absolute RGB difference (0-255) between consecutive frames over those pixels, split into
   object and background pixels; lower is more consistent. Pixels within 1 px of the hand are
   left out (the renders are antialiased: the hand's colour bleeds into its outline), and a
   pixel at G counts only when its whole footprint at render size is static. `real_full` is the
   renders at their own size: exactly 0, as the lights do not move (a sanity check); `real`,
   resized to G, is the floor that resizing leaves.
5. Speed: seconds per generated image from the subprocess's wall time (everything included), and
   the load overhead and per-image marginal time from the one-trajectory run.

Run it alone: segmenter training and synthesize share the CPU. Smoke run (tiny settings):
    python scripts/bench_hoidiff.py --train R1 --heldout R2 --trajectories 2 --steps 2 --seg-steps 20
"""

from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hoitool.metrics.hoi_images import (  # noqa: E402
    CLASS_NAMES,
    HAND,
    OBJECT,
    TemporalConsistency,
    contact_recall,
    masked_frame_difference,
    pck,
    regions_touch,
    segmentation_iou,
    segmentation_labels,
    static_pixels,
    temporal_consistency,
)
from hoitool.render.dataset import INDEX, TRAJECTORIES, RenderedTrajectory, read_index  # noqa: E402

ALPHAS = (0.1, 0.2)
DETECT_MIN_SIZE = 256
CONTACT_RADIUS_PX = 1
#: Pixels this close to the hand (at render size) are not static: renders are antialiased.
HAND_MARGIN_PX = 1
SEG_WIDTH = 16


# ---------------------------------------------------------------- images


def _resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """A square (H, W[, C]) uint8 image resized to size x size (bicubic, antialiased when shrinking;
    nearest for label maps)."""
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC))


def _shrink_all(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool, set only where the pixel's whole footprint in `mask` is set."""
    from PIL import Image

    if mask.shape == (size, size):
        return mask.copy()
    f = Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(f) > 1.0 - 1e-4


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


# ---------------------------------------------------------------- data


@dataclass
class HeldoutFrames:
    """The held-out frames, trajectory-major: T trajectories x F frames, render size R."""

    ids: list[str]
    stems: list[str]
    rgb: np.ndarray  # (T, F, R, R, 3) uint8
    labels: np.ndarray  # (T, F, R, R) uint8 classes
    keypoints: np.ndarray  # (T, F, 21, 2) pixels at R
    sides: list[str]  # per trajectory
    in_view: np.ndarray  # (T, F) bool: all 21 keypoints in front of the camera and inside the image


def subset_renders(src: Path, dst: Path, n: int) -> list[RenderedTrajectory]:
    """A render folder at dst holding the first n trajectories of src (index lines, links to their
    folders, the top-level config files); its trajectories."""
    trajs = read_index(src)[:n]
    if dst.exists():
        shutil.rmtree(dst)
    (dst / TRAJECTORIES).mkdir(parents=True)
    lines = []
    for t in trajs:
        rec = dict(t.meta)
        rec["dir"] = f"{TRAJECTORIES}/{t.id}"
        (dst / rec["dir"]).symlink_to(t.dir.resolve(), target_is_directory=True)
        lines.append(json.dumps(rec))
    for name in ("config.yaml", "render.json"):
        if (src / name).is_file():
            (dst / name).symlink_to((src / name).resolve())
    (dst / INDEX).write_text("".join(ln + "\n" for ln in lines))
    return read_index(dst)


def load_heldout(trajs: list[RenderedTrajectory]) -> HeldoutFrames:
    from hoitool.render.hoi_frame import read_frame

    stems = trajs[0].stems
    rgb, lab, kp, sides, view = [], [], [], [], []
    for t in trajs:
        if t.stems != stems:
            raise SystemExit(f"trajectory {t.id} has frames {t.stems}, not {stems} like the first: render the held-out folder with one --frames")
        frames = [read_frame(t.dir, s) for s in stems]
        rgb.append([f.rgb for f in frames])
        lab.append([segmentation_labels(f.segmentation) for f in frames])
        kp.append([np.asarray(f.labels["keypoints_2d_px"], np.float64) for f in frames])
        view.append([_in_view(f.labels, f.rgb.shape[0]) for f in frames])
        sides.append(str(frames[0].labels.get("hand_side", t.meta.get("side", "right"))))
    rgb = np.asarray(rgb)
    if rgb.shape[2] != rgb.shape[3]:
        raise SystemExit(f"held-out renders are {rgb.shape[3]}x{rgb.shape[2]}: the benchmark expects square renders")
    return HeldoutFrames([t.id for t in trajs], stems, rgb, np.asarray(lab), np.asarray(kp), sides, np.asarray(view, bool))


def _in_view(labels: dict, size: int) -> bool:
    """All keypoints in front of the camera and inside the image (the render's own flags when it has them)."""
    if "keypoints_in_image" in labels:
        return bool(all(labels["keypoints_in_image"]))
    uv = np.asarray(labels["keypoints_2d_px"], np.float64)
    z = np.asarray(labels["keypoints_3d_camera_m"], np.float64)[:, 2]
    return bool((z > 0).all() and (uv >= -0.5).all() and (uv <= size - 0.5).all())


def load_generated(out: Path, data: HeldoutFrames) -> np.ndarray:
    """(T, F, G, G, 3) uint8 generated images of the held-out frames from a synthesize output."""
    ims = []
    for tid in data.ids:
        row = []
        for s in data.stems:
            p = out / TRAJECTORIES / tid / f"{s}_image.png"
            if not p.is_file():
                raise SystemExit(f"{p} is missing: {out} is not a synthesize output of these held-out trajectories")
            row.append(_read_rgb(p))
        ims.append(row)
    sizes = {im.shape for row in ims for im in row}
    if len(sizes) != 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
        raise SystemExit(f"generated images in {out} are not all one square size: {sorted(sizes)}")
    return np.asarray(ims)


def load_train(root: Path, size: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour images (N, S, S, 3) uint8 and class labels (N, S, S) of a render folder at size S:
    every frame of the first `limit` trajectories (0: all), plus each background with no hand or object."""
    trajs = read_index(root)
    trajs = trajs[:limit] if limit else trajs
    xs, ys = [], []
    for t in trajs:
        for s in t.stems:
            xs.append(_resize(_read_rgb(t.frame_paths(s, "rgb")), size))
            ys.append(_resize(segmentation_labels(_read_rgb(t.frame_paths(s, "segmentation"))), size, nearest=True))
        if t.background.is_file():
            xs.append(_resize(_read_rgb(t.background), size))
            ys.append(np.zeros((size, size), np.uint8))
    return np.stack(xs), np.stack(ys)


# ---------------------------------------------------------------- synthesize


def hoitool_command() -> list[str]:
    """The hoitool CLI of the running environment."""
    exe = Path(sys.executable).with_name("hoitool")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "hoitool"]


def synthesize(renders: Path, out: Path, args, video: bool) -> dict:
    """Run `hoitool synthesize` on a render folder into a fresh `out`; its command and wall time."""
    if out.exists():
        shutil.rmtree(out)
    cmd = hoitool_command() + ["synthesize", str(renders), "--out", str(out), "--steps", str(args.steps),
                               "--guidance", str(args.guidance), "--seed", str(args.seed)]
    if args.model:
        cmd += ["--model", str(args.model)]
    if video:
        cmd += ["--video"]
    if args.device:
        cmd += ["--device", args.device]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"hoitool synthesize failed (exit {r.returncode}):\n{tail}")
    return {"command": cmd, "seconds": round(dt, 3)}


# ---------------------------------------------------------------- segmenter


def build_segmenter(width: int = SEG_WIDTH):
    """A small U-Net: 4 levels (width, 2w, 4w, 4w), two 3x3 convs per level, 3 classes out."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(4, o), nn.SiLU(),
                             nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(4, o), nn.SiLU())

    class Segmenter(nn.Module):
        def __init__(self):
            super().__init__()
            c = [width, 2 * width, 4 * width, 4 * width]
            self.enc = nn.ModuleList([block(3, c[0]), block(c[0], c[1]), block(c[1], c[2]), block(c[2], c[3])])
            self.dec = nn.ModuleList([block(c[3] + c[2], c[2]), block(c[2] + c[1], c[1]), block(c[1] + c[0], c[0])])
            self.head = nn.Conv2d(c[0], len(CLASS_NAMES), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """x (B, 3, S, S) in [0, 1] -> logits (B, 3, S, S)."""
            skips = []
            h = x * 2.0 - 1.0
            for i, e in enumerate(self.enc):
                h = e(h if i == 0 else F.avg_pool2d(h, 2))
                skips.append(h)
            for d, s in zip(self.dec, reversed(skips[:-1])):
                h = d(torch.cat([F.interpolate(h, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
            return self.head(h)

    return Segmenter()


def _augment(x, gen):
    """Flips are done by the caller (they move labels too); colour jitter and noise on x (B, 3, S, S)."""
    import torch

    B = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    x = x * (0.7 + 0.6 * u(B, 1, 1, 1)) * (0.9 + 0.2 * u(B, 3, 1, 1))
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (0.75 + 0.5 * u(B, 1, 1, 1)) + mean
    x = x + torch.randn(x.shape, generator=gen) * 0.05 * u(B, 1, 1, 1)
    return x.clamp(0, 1)


def train_segmenter(x: np.ndarray, y: np.ndarray, steps: int, batch: int, seed: int, device: str):
    """Train the segmenter on images x (N, S, S, 3) uint8 and labels y (N, S, S); model and log."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = build_segmenter().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    warm = max(1, steps // 20)  # linear warm-up over 5% of the steps, then cosine decay to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / max(steps - warm, 1))))
    X = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    Y = torch.from_numpy(y.astype(np.int64))
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        idx = torch.randint(0, len(X), (batch,), generator=gen)
        xb, yb = X[idx].float() / 255.0, Y[idx]
        flip = torch.rand(batch, generator=gen) < 0.5
        xb[flip], yb[flip] = xb[flip].flip(-1), yb[flip].flip(-1)
        xb = _augment(xb, gen)
        loss = F.cross_entropy(net(xb.to(device)), yb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(steps // 10, 1) == 0 or step + 1 == steps:
            dt = time.perf_counter() - t0
            print(f"  segmenter step {step + 1}/{steps}  loss {np.mean(losses[-20:]):.4f}  "
                  f"{(step + 1) / dt:.2f} it/s  ~{(steps - step - 1) * dt / (step + 1):.0f} s left", flush=True)
    net.eval()
    return net, {"steps": steps, "batch": batch, "train_images": int(len(x)), "seconds": round(time.perf_counter() - t0, 1),
                 "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None}


def segment(net, images: np.ndarray, size: int, device: str) -> np.ndarray:
    """Class labels (N, S, S) uint8 of images (N, H, W, 3) uint8, resized to the segmenter's size S."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            xb = np.stack([_resize(im, size) for im in images[i:i + 64]])
            xb = torch.from_numpy(xb).permute(0, 3, 1, 2).float().div(255.0).to(device)
            out.append(net(xb).argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------- measures


def _iou_report(pred: np.ndarray, target: np.ndarray) -> dict:
    r = segmentation_iou(pred, target)
    return {"miou": round(r.miou, 4), "iou": {k: round(v, 4) for k, v in r.per_class().items()}}


def _detect(images: np.ndarray, sides: list[str], render_size: int) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe keypoints (T, F, 21, 2) in render pixels and found (T, F) bool, images (T, F, G, G, 3)
    upscaled to at least 256 px; one detector call per hand side."""
    from hoitool.hand.detect import detect_keypoints

    T, F, G = images.shape[:3]
    up = _detect_size(G)
    kp = np.zeros((T, F, 21, 2))
    found = np.zeros((T, F), bool)
    for side in sorted(set(sides)):
        rows = [i for i in range(T) if sides[i] == side]
        ims = [_resize(images[i, f], up) for i in rows for f in range(F)]
        k, conf = detect_keypoints(ims, side=side)
        kp[rows] = ((k.astype(np.float64) + 0.5) * (render_size / up) - 0.5).reshape(len(rows), F, 21, 2)
        found[rows] = (conf[:, 0] > 0).reshape(len(rows), F)
    return kp, found


def _pck_report(kp: np.ndarray, found: np.ndarray, truth: np.ndarray, in_view: np.ndarray) -> dict:
    """PCK over the frames whose hand is wholly in view (the others have no full skeleton to match)."""
    m = in_view.reshape(-1)
    kp, found, truth = kp.reshape(-1, 21, 2)[m], found.reshape(-1)[m], truth.reshape(-1, 21, 2)[m]
    rep = {"images": int(m.sum()), "images_left_out_hand_not_in_view": int((~m).sum()),
           "detection_rate": round(float(found.mean()), 4) if m.any() else float("nan")}
    for a in ALPHAS:
        p = pck(kp, truth, a, found)
        rep[f"pck@{a}"] = {"detected": round(p.pck_detected, 4), "all": round(p.pck_all, 4)}
    return rep


def _consistency(frames: np.ndarray, data: HeldoutFrames) -> dict:
    """Temporal consistency of frames (T, F, G, G, 3) against the held-out conditions."""
    T, F, G = frames.shape[:3]
    total = None
    for i in range(T):
        if G == data.labels.shape[2]:
            r = temporal_consistency(frames[i], data.labels[i] == HAND, data.labels[i] == OBJECT, HAND_MARGIN_PX)
        else:
            s = static_pixels(data.labels[i] == HAND, data.labels[i] == OBJECT, HAND_MARGIN_PX)
            obj = np.stack([_shrink_all(m, G) for m in s.object])
            bg = np.stack([_shrink_all(m, G) for m in s.background])
            r = TemporalConsistency(masked_frame_difference(frames[i], obj), masked_frame_difference(frames[i], bg))
        total = r if total is None else total + r
    return {"object": round(total.object.mean, 3), "background": round(total.background.mean, 3),
            "object_pixels": total.object.pixels, "background_pixels": total.background.pixels}


def _detect_size(G: int) -> int:
    """The side generated images are upscaled to for the detector: a multiple of G, at least 256."""
    return G * math.ceil(DETECT_MIN_SIZE / G)


def _finite(obj):
    """obj with NaN and inf floats as None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="render folder the segmenter trains on")
    ap.add_argument("--heldout", type=Path, required=True, help="render folder made with another --seed")
    ap.add_argument("--model", help="synthesize --model (a run folder or model.pt); default: synthesize's default")
    ap.add_argument("--trajectories", type=int, default=16, help="first N held-out trajectories")
    ap.add_argument("--steps", type=int, default=50, help="synthesize --steps")
    ap.add_argument("--guidance", type=float, default=7.5, help="synthesize --guidance")
    ap.add_argument("--seed", type=int, default=0, help="synthesize --seed and the segmenter's seed")
    ap.add_argument("--device", help="synthesize --device (default: synthesize's)")
    ap.add_argument("--seg-steps", type=int, default=400, help="segmenter training steps (of --seg-batch images)")
    ap.add_argument("--seg-batch", type=int, default=32)
    ap.add_argument("--seg-size", type=int, default=128, help="largest segmenter input side (it runs at min(G, this))")
    ap.add_argument("--seg-device", default="cpu")
    ap.add_argument("--train-trajectories", type=int, default=1000, help="first N TRAIN trajectories for the segmenter (0: all)")
    ap.add_argument("--no-video", action="store_true", help="skip the --video run (no video consistency)")
    ap.add_argument("--generated", type=Path, help="score this synthesize output instead of running synthesize")
    ap.add_argument("--generated-video", type=Path, help="with --generated: the --video output to score")
    ap.add_argument("--skip-detect", action="store_true", help="no keypoint measures (no .venv-detect needed)")
    ap.add_argument("--work", type=Path, help="keep the subset and synthesize outputs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=Path("bench_results/bench_hoidiff.json"))
    args = ap.parse_args()

    if args.generated_video and not args.generated:
        raise SystemExit("--generated-video needs --generated (the output without --video)")
    if args.trajectories < 1:
        raise SystemExit("--trajectories must be at least 1")
    if args.heldout.resolve() == args.train.resolve():
        raise SystemExit("--train and --heldout are the same folder: render a held-out folder with another --seed")
    detector = None
    if not args.skip_detect:
        from hoitool.hand.detect import detector_check

        detector, problem = detector_check()
        if problem:
            raise SystemExit(f"{problem} (or pass --skip-detect)")

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_hoidiff_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run(args, work, detector)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    from hoitool.utils.io import write_json

    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, _finite(results))
    print(f"wrote {args.json}" + (f" (synthesize outputs kept in {args.work})" if args.work else ""))


def run(args, work: Path, detector: str | None) -> dict:
    trajs = subset_renders(args.heldout, work / "heldout", args.trajectories)
    data = load_heldout(trajs)
    T, F, R = data.rgb.shape[:3]
    n_images = T * F
    print(f"held-out: {T} trajectories x {F} frames at {R} px from {args.heldout}")

    # ---- generate (timed) or take given outputs
    outputs: dict[str, Path] = {}
    speed: dict = {}
    if args.generated:
        outputs["generated"] = args.generated
        if args.generated_video:
            outputs["generated_video"] = args.generated_video
    else:
        if T > 1:
            one = work / "heldout_one"
            subset_renders(args.heldout, one, 1)
            first = synthesize(one, work / "synth_one", args, video=False)
        main_run = synthesize(work / "heldout", work / "synth", args, video=False)
        outputs["generated"] = work / "synth"
        speed = {"images": n_images, "seconds": main_run["seconds"], "seconds_per_image": round(main_run["seconds"] / n_images, 4),
                 "command": main_run["command"]}
        if T > 1:
            marginal = (main_run["seconds"] - first["seconds"]) / (n_images - F)
            speed.update({"one_trajectory_seconds": first["seconds"], "seconds_per_image_marginal": round(marginal, 4),
                          "load_overhead_seconds": round(first["seconds"] - F * marginal, 3)})
            if marginal <= 0:
                speed["note"] = ("the one-trajectory run took as long as the full run (a busy machine, or too few images): "
                                 "the overhead / marginal split is timing noise")
        if not args.no_video:
            v = synthesize(work / "heldout", work / "synth_video", args, video=True)
            outputs["generated_video"] = work / "synth_video"
            speed["video"] = {"seconds": v["seconds"], "seconds_per_image": round(v["seconds"] / n_images, 4), "command": v["command"]}
    gen = {k: load_generated(p, data) for k, p in outputs.items()}
    G = next(iter(gen.values())).shape[2]
    for k, g in gen.items():
        if g.shape[2] != G:
            raise SystemExit(f"{k}: images of {g.shape[2]} px, not {G} like the others")
    S = min(G, args.seg_size)
    print(f"generated images: {G} px; segmenter at {S} px")

    # ---- segmenter
    t0 = time.perf_counter()
    x, y = load_train(args.train, S, args.train_trajectories)
    print(f"segmenter data: {len(x)} images from {args.train} ({time.perf_counter() - t0:.0f} s)")
    net, seg_log = train_segmenter(x, y, args.seg_steps, args.seg_batch, args.seed, args.seg_device)
    del x, y
    target = np.stack([_resize(m, S, nearest=True) for m in data.labels.reshape(-1, R, R)])
    real_small = np.stack([_resize(im, G) for im in data.rgb.reshape(-1, R, R, 3)]).reshape(T, F, G, G, 3)
    sources = {"real": real_small, **gen}
    preds = {k: segment(net, v.reshape(-1, G, G, 3), S, args.seg_device) for k, v in sources.items()}
    segmentation = {"segmenter": {**seg_log, "size": S, "width": SEG_WIDTH}, **{k: _iou_report(p, target) for k, p in preds.items()}}

    # ---- contact on grasp frames
    last = np.arange(T) * F + (F - 1)
    truth_touch = regions_touch(data.labels[:, -1] == HAND, data.labels[:, -1] == OBJECT, CONTACT_RADIUS_PX)
    contact = {"substitute": f"segmenter hand and object regions within {CONTACT_RADIUS_PX} px (8-neighbourhood) at {S} px; "
                             f"reference: the grasp frame's condition segmentation at {R} px",
               "grasp_frames": T, "condition_contacts": int(truth_touch.sum())}
    for k, p in preds.items():
        touch = regions_touch(p[last] == HAND, p[last] == OBJECT, CONTACT_RADIUS_PX)
        contact[k] = asdict(contact_recall(truth_touch, touch))

    # ---- keypoints
    if args.skip_detect:
        keypoints = {"skipped": "--skip-detect"}
    else:
        keypoints = {"detector": detector, "upscaled_to": _detect_size(G), "real_full_upscaled_to": _detect_size(R),
                     "alphas": list(ALPHAS)}
        for k, ims in {"real_full": data.rgb, **sources}.items():
            kp, found = _detect(ims, data.sides, R)
            keypoints[k] = _pck_report(kp, found, data.keypoints, data.in_view)

    # ---- temporal consistency
    temporal = {k: _consistency(v, data) for k, v in {"real_full": data.rgb, **sources}.items()}

    results = {
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "renders": {"train": str(args.train), "heldout": str(args.heldout), "trajectories": T, "frames": F,
                    "stems": data.stems, "ids": data.ids, "render_size": R, "generated_size": G},
        "outputs": {k: str(p) for k, p in outputs.items()},
        "speed": speed, "segmentation": segmentation, "contact": contact, "keypoints": keypoints, "temporal": temporal,
    }
    _print_summary(results)
    return results


def _print_summary(r: dict) -> None:
    sp = r["speed"]
    if sp:
        line = f"speed: {sp['seconds_per_image']:.3f} s/image ({sp['images']} images in {sp['seconds']:.1f} s"
        if "load_overhead_seconds" in sp:
            line += f"; {sp['seconds_per_image_marginal']:.3f} s/image + {sp['load_overhead_seconds']:.1f} s load"
        line += ")"
        if "video" in sp:
            line += f"; --video {sp['video']['seconds_per_image']:.3f} s/image"
        print(line)
    seg = r["segmentation"]
    for k in [k for k in seg if k != "segmenter"]:
        iou = seg[k]["iou"]
        print(f"segmentation {k:16s} mIoU {_fmt(seg[k]['miou'])}  (" + ", ".join(f"{c} {_fmt(v)}" for c, v in iou.items()) + ")")
    c = r["contact"]
    for k in [k for k in c if isinstance(c[k], dict)]:
        print(f"contact      {k:16s} recall {_fmt(c[k]['recall'])}  ({c[k]['hits']} of {c[k]['positives']} condition contacts kept; "
              f"{c[k]['test_contacts']} of {c[k]['frames']} grasp frames segmented as touching)")
    kp = r["keypoints"]
    if "skipped" in kp:
        print(f"keypoints    skipped ({kp['skipped']})")
    for k in [k for k in kp if isinstance(kp[k], dict)]:
        print(f"keypoints    {k:16s} detected {_fmt(kp[k]['detection_rate'])}  " + "  ".join(
            f"PCK@{a} {_fmt(kp[k][f'pck@{a}']['detected'])} ({_fmt(kp[k][f'pck@{a}']['all'])} with misses)" for a in ALPHAS))
    for k, v in r["temporal"].items():
        print(f"temporal     {k:16s} |dRGB| object {_fmt(v['object'])}  background {_fmt(v['background'])}  "
              f"({v['object_pixels']} / {v['background_pixels']} pixels)")


if __name__ == "__main__":
    main()
