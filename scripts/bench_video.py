"""Benchmark of video (clip) reconstruction on synthetic clips with 3D truth: G-HOP's Table 1.

Grasps of a held-out synthetic corpus (`hoitool prepare-data --synthetic 448 --seed 1`), the
same varied order as scripts/bench_reconstruct.py, are rendered as clips (a rigid grasp moving
in front of a fixed camera, `hoitool.data.synthetic.clips.make_clip`: noisy 2D keypoints, some
frames without keypoints, rendered visible masks). Each clip starts from the category's library
template (template=False: shape and scale free) and is reconstructed by:
- `prior`: `reconstruct_clip` with score distillation from the G-HOP prior;
- `noprior`: the same without the prior (the ablation);
- `perframe`: `reconstruct_image` (EasyHOI) on each evaluated frame independently.

Every `--eval-every`-th frame from 0 is evaluated (the same frames for every method) with
G-HOP's metrics:
- object shape: F-score at 5 / 10 mm and Chamfer distance (cm^2) after a similarity alignment
  (ICP from 10 rotations) of the predicted shape to the true one, each in its own object frame
  (5000 surface points each; per frame and averaged for `perframe`, whose shape is the
  template scaled by s);
- CD_h (cm^2): the object's points in the hand's frame (the predicted object in the predicted
  hand's frame vs the true object in the true hand's frame), no alignment, averaged over frames;
- hand: MPJPE (cm) of the 21 keypoints centred on the index MCP, and AUC of PCK over 0-5 cm.
The video methods are scored after both the `init` stage (the single-image placement of the
template on the key frame, carried to every frame by the hand) and the `object` stage.

The JSON (rewritten atomically after every clip) holds per-clip rows (per-frame values, times,
errors) and the summary (means over clips per method and stage; clips where prior beats
noprior on F10 and on CD_h); the markdown table is printed at the end.

    PYOPENGL_PLATFORM=egl python scripts/bench_video.py --heldout /work/data/heldout448 --clips 12 --frames 24 \
        --eval-every 6 --methods prior,noprior,perframe --out bench_results/bench_video.json
"""

from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reconstruct import pick_records  # noqa: E402

from hoitool.data.image_inputs import MIN_KEYPOINTS  # noqa: E402
from hoitool.data.synthetic.clips import SyntheticClip, make_clip  # noqa: E402
from hoitool.data.templates import category_template  # noqa: E402
from hoitool.geometry.mesh import load_mesh  # noqa: E402
from hoitool.hand.model import HandModel  # noqa: E402
from hoitool.metrics.recon_scene import EvalConfig, ReconScene, evaluate_scenes  # noqa: E402
from hoitool.pipelines.evaluate_recon import scene_from_clip_stage, scene_from_hand, scene_from_image_state  # noqa: E402
from hoitool.pipelines.image_recon import ReconstructConfig, reconstruct_image  # noqa: E402
from hoitool.pipelines.video_recon import ClipInputs, VideoConfig, reconstruct_clip  # noqa: E402

METHODS = ("prior", "noprior", "perframe")
VIDEO_STAGES = ("init", "object")
"""Stages of the video methods that are scored ("hand" has the same hand as both and no object fit)."""
METRICS = ("f5", "f10", "cd_cm2", "cd_h_cm2", "mpjpe_cm", "auc")
POINTS = 5000
"""Surface points per shape (G-HOP samples 10k; fewer keeps the alignment quick)."""
POINT_SEED = 0


# -- scoring: `hoitool evaluate reconstruction`'s figures (G-HOP's protocol) under this benchmark's names ----
EVAL = EvalConfig(align="similarity", points=POINTS, seed=POINT_SEED, interaction=False)


def clip_truth(hand: HandModel, clip: SyntheticClip, frames: list[int]) -> ReconScene:
    """The true scene on the evaluated frames."""
    return scene_from_hand(hand, clip.hand[frames], clip.mesh, clip.cTo[frames], meshes=False, frames=frames)


def renamed(m: dict) -> dict:
    """evaluate_scenes' figures under this benchmark's names (MPJPE in cm, as G-HOP's table)."""
    return {"f5": m["f5"], "f10": m["f10"], "cd_cm2": m["cd_cm2"], "scale": m["scale"], "cd_h_cm2": m["cd_h_cm2"],
            "mpjpe_cm": m["mpjpe_index_mcp_mm"] / 10, "auc": m["auc"]}


# -- video methods -------------------------------------------------------------------------------
def score_video_stage(hand: HandModel, stage, frames: list[int], truth: ReconScene) -> dict:
    """G-HOP metrics of one stage of `reconstruct_clip` on the evaluated frames."""
    res = evaluate_scenes(scene_from_clip_stage(hand, stage, frames), truth, EVAL)
    out = renamed(res.metrics)
    out["per_frame_cd_h_cm2"] = [float(r["cd_h_cm2"]) for r in res.per_frame]
    return out


def run_video(method: str, hand, clip: SyntheticClip, inputs: ClipInputs, template, frames, truth, cfg: VideoConfig, prior) -> dict:
    last = [None]

    def progress(stage, done, total):  # one line per stage start
        if stage != last[0]:
            last[0] = stage
            print(f"    {method}: {stage} ...", flush=True)

    t0 = time.perf_counter()
    res = reconstruct_clip(inputs, template, clip.camera, clip.category, cfg, template=False, hand=hand,
                           prior=prior if cfg.use_prior else None, progress=progress)
    seconds = time.perf_counter() - t0
    stages = {name: score_video_stage(hand, res.stages[name], frames, truth) for name in VIDEO_STAGES}
    for name in VIDEO_STAGES:
        stages[name]["fit"] = res.stages[name].metrics
    return {"seconds": seconds, "stage_seconds": {k: float(v.seconds) for k, v in res.stages.items()},
            "key_frame": int(res.key_frame), "stages": stages}


# -- per-frame baseline ------------------------------------------------------------------------
def run_perframe(hand, inputs: ClipInputs, camera, template, frames, truth: ReconScene, seed: int) -> dict:
    """Each evaluated frame reconstructed alone and scored as its own one-frame scene (its shape is
    the template scaled by that frame's s, in the template's frame)."""
    per_frame, skipped = {}, {}
    t0 = time.perf_counter()
    for j, t in enumerate(frames):
        if not inputs.object_masks[t].any():
            skipped[t] = "empty object mask"
            continue
        if (inputs.confidence[t] > 0).sum() < MIN_KEYPOINTS:
            skipped[t] = "no hand keypoints"
            continue
        try:
            res = reconstruct_image(inputs.frame(t), template, camera, ReconstructConfig(side="right", seed=seed), template=False, hand=hand)
            pred = scene_from_image_state(hand, res.final, template, in_camera=False)
            per_frame[t] = renamed(evaluate_scenes(pred, truth.select([j]), EVAL).metrics)
        except Exception as e:  # noqa: BLE001 - a failed frame is skipped, the reason kept
            skipped[t] = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    if not per_frame:
        raise RuntimeError(f"every evaluated frame failed: {skipped}")
    done = sorted(per_frame)
    # 21 keypoints on every frame: the frames' mean MPJPE and AUC are those of all their keypoints together
    row = {k: float(np.mean([per_frame[t][k] for t in done])) for k in ("f5", "f10", "cd_cm2", "cd_h_cm2", "scale", "mpjpe_cm", "auc")}
    row["per_frame"] = {str(t): {k: float(v) for k, v in per_frame[t].items() if k not in ("mpjpe_cm", "auc")} for t in done}
    return {"seconds": seconds, "frames_scored": len(done), "skipped": {str(k): v for k, v in skipped.items()},
            "stages": {"final": row}}


# -- summary and output --------------------------------------------------------------------------
def summarise(rows: list[dict], methods: list[str]) -> dict:
    table = []
    for m in methods:
        ok = [r["methods"][m] for r in rows if m in r["methods"] and "error" not in r["methods"][m]]
        # the method failed on the clip, or the clip itself could not be made
        failed = sum(1 for r in rows if "error" in r["methods"].get(m, {}) or ("error" in r and m not in r["methods"]))
        for stage in (VIDEO_STAGES if m != "perframe" else ("final",)):
            sel = [res["stages"][stage] for res in ok]
            entry = {"method": m, "stage": stage, "clips": len(sel), "failed": failed,
                     **{k: float(np.mean([s[k] for s in sel])) if sel else None for k in METRICS},
                     "method_seconds": float(np.mean([res["seconds"] for res in ok])) if ok else None}
            if m != "perframe":
                entry["stage_seconds"] = float(np.mean([res["stage_seconds"][stage] for res in ok])) if ok else None
                entry["hand_stage_seconds"] = float(np.mean([res["stage_seconds"]["hand"] for res in ok])) if ok else None
            table.append(entry)
    out = {"table": table}
    if {"prior", "noprior"} <= set(methods):
        pairs = [(r["methods"]["prior"]["stages"]["object"], r["methods"]["noprior"]["stages"]["object"]) for r in rows
                 if all(m in r["methods"] and "error" not in r["methods"][m] for m in ("prior", "noprior"))]
        out["prior_vs_noprior"] = {"clips": len(pairs), "stage": "object",
                                   "prior_better_f10": sum(p["f10"] > n["f10"] for p, n in pairs),
                                   "prior_better_cd_h": sum(p["cd_h_cm2"] < n["cd_h_cm2"] for p, n in pairs)}
    return out


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def markdown(summary: dict) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["| method | stage | clips | F5 ↑ | F10 ↑ | CD cm² ↓ | CD_h cm² ↓ | MPJPE cm ↓ | AUC ↑ | stage s | method s/clip |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["table"]:
        clips = f"{r['clips']} ({r['failed']} failed)" if r["failed"] else str(r["clips"])
        lines.append(f"| {r['method']} | {r['stage']} | {clips} | "
                     f"{f(r['f5'], '.3f')} | {f(r['f10'], '.3f')} | {f(r['cd_cm2'], '.2f')} | {f(r['cd_h_cm2'], '.2f')} | "
                     f"{f(r['mpjpe_cm'], '.2f')} | {f(r['auc'], '.3f')} | {f(r.get('stage_seconds'), '.0f')} | {f(r['method_seconds'], '.0f')} |")
    pv = summary.get("prior_vs_noprior")
    if pv:
        lines.append(f"\nprior beats noprior (object stage) on F10 in {pv['prior_better_f10']}/{pv['clips']} clips, "
                     f"on CD_h in {pv['prior_better_cd_h']}/{pv['clips']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, required=True, help="Held-out corpus (its manifest.jsonl).")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--eval-every", type=int, default=6, help="Evaluate frames 0, k, 2k, ...")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {','.join(METHODS)}.")
    ap.add_argument("--steps", type=int, default=None, help="Override VideoConfig.steps (object iterations).")
    ap.add_argument("--seed", type=int, default=0, help="Clip i is drawn with numpy seed seed + i.")
    ap.add_argument("--out", type=Path, default=Path("bench_results/bench_video.json"))
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}: use {','.join(METHODS)}")
    frames = list(range(0, args.frames, max(args.eval_every, 1)))

    hand = HandModel("right")
    prior = None
    if "prior" in methods:
        from hoitool.prior.checkpoint import load_prior

        prior = load_prior(None)
    steps = {} if args.steps is None else {"steps": args.steps}
    rows: list[dict] = []
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "eval_frames": frames, "points": POINTS,
            "video_config": dataclasses.asdict(VideoConfig(**steps)), "prior": getattr(prior, "source", None)}
    records = pick_records(args.heldout / "manifest.jsonl", args.clips)
    for i, rec in enumerate(records):
        row: dict = {"clip": i, "id": rec.id, "category": rec.category, "methods": {}}
        rows.append(row)
        t0 = time.perf_counter()
        try:
            mesh, _ = load_mesh(rec.object_mesh)
            clip = make_clip(hand, mesh, rec.hand_params(), rec.category, np.random.default_rng(args.seed + i), frames=args.frames)
            template = category_template(rec.category)[0]
            inputs = ClipInputs(clip.frames, clip.hand_masks, clip.object_masks, np.nan_to_num(clip.keypoints, nan=0.0), clip.confidence)
            truth = clip_truth(hand, clip, frames)
        except Exception as e:  # noqa: BLE001
            row["error"] = f"clip: {type(e).__name__}: {e}"
            print(f"{i + 1}/{len(records)} {rec.id}: {row['error']}", flush=True)
            write_json(args.out, {**meta, **summarise(rows, methods), "rows": rows})
            continue
        row["dropped_frames"] = [int(t) for t in clip.dropped]
        row["render_seconds"] = time.perf_counter() - t0
        print(f"{i + 1}/{len(records)} {rec.id} ({rec.category}): {args.frames} frames rendered in {row['render_seconds']:.0f}s", flush=True)
        for m in methods:
            t1 = time.perf_counter()
            try:
                if m == "perframe":
                    row["methods"][m] = run_perframe(hand, inputs, clip.camera, template, frames, truth, seed=i)
                else:
                    cfg = VideoConfig(side="right", use_prior=m == "prior", seed=i, **steps)
                    row["methods"][m] = run_video(m, hand, clip, inputs, template, frames, truth, cfg, prior)
            except Exception as e:  # noqa: BLE001 - a failed method is recorded, the benchmark goes on
                row["methods"][m] = {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t1,
                                     "traceback": traceback.format_exc(limit=4)}
            r = row["methods"][m]
            if "error" in r:
                print(f"  {m}: FAILED after {r['seconds']:.0f}s: {r['error']}", flush=True)
            else:
                last = r["stages"]["object" if m != "perframe" else "final"]
                extra = (f" (hand {r['stage_seconds']['hand']:.0f}s, init {r['stage_seconds']['init']:.0f}s, "
                         f"object {r['stage_seconds']['object']:.0f}s)" if m != "perframe" else
                         f" ({r['frames_scored']}/{len(frames)} frames)")
                print(f"  {m}: {r['seconds']:.0f}s{extra}  F10 {last['f10']:.3f}  CD {last['cd_cm2']:.2f}  "
                      f"CD_h {last['cd_h_cm2']:.2f}  MPJPE {last['mpjpe_cm']:.2f} cm", flush=True)
        row["seconds"] = time.perf_counter() - t0
        write_json(args.out, {**meta, **summarise(rows, methods), "rows": rows})
    summary = summarise(rows, methods)
    write_json(args.out, {**meta, **summary, "rows": rows})
    print()
    print(markdown(summary))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
