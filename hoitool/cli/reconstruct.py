"""`hoitool reconstruct IMAGE`: hand and object from one photograph."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from hoitool.cli.common import progress_bar, setup_logging, summary, user_errors

#: The most frames one clip reconstruction takes (every frame is rendered at each mask iteration).
MAX_CLIP_FRAMES = 300
CLIP_KEYPOINT_HELP = ("a JSON list with one entry per frame (21 points, or null when the hand is not seen), "
                     "{\"frames\": {\"<frame number or stem>\": 21 points}}, a folder of OpenPose JSON files, or a (T, 21, 2|3) .npy.")
from hoitool.data.image_inputs import TWO_HAND_KEYPOINT_HELP  # noqa: E402 - numpy only

KEYPOINT_HELP = ("21 hand keypoints in OpenPose order, image pixels: JSON (a list of 21 pairs u, v or triples u, v, "
                 "confidence; an object with that list under 'keypoints'; or an OpenPose result), .npy, .txt or .csv.")


def reconstruct(
    image: Path = typer.Argument(..., help="A photograph of one hand holding an object (.jpg, .png ...), or a clip: a video "
                                           "(.mp4 .mov .avi .webm .mkv .gif) or a folder of frames."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: recon_<input name>)."),
    object_mesh: Optional[Path] = typer.Option(None, "--object-mesh", help="The object's template or CAD mesh (metres unless --scale)."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Use the library template of this category instead of --object-mesh."),
    shape: str = typer.Option("template", "--shape", help="Image with --category: the object's shape from the category's library "
                                                          "template, or drawn from the G-HOP prior (--model) for the fitted hand, "
                                                          "the best of --shape-samples by object mask IoU."),
    shape_samples: Optional[int] = typer.Option(None, "--shape-samples", min=1, help="Image, --shape prior: object shapes drawn from the "
                                                                                      "prior (default 8)."),
    shape_steps: Optional[int] = typer.Option(None, "--shape-steps", min=1, help="Image, --shape prior: DDIM steps per drawn shape "
                                                                                  "(default 50)."),
    shape_keep: Optional[int] = typer.Option(None, "--shape-keep", min=1, help="Image, --shape prior: run the stages for this many of the "
                                                                                "best-matching shapes and keep the best result (default 1)."),
    hand_mask: Optional[Path] = typer.Option(None, "--hand-mask", "--hand-masks",
                                             help="Mask of the visible hand (white = hand), the image's size; for a clip, a folder "
                                                  "with one mask per frame (matched by file stem or frame number)."),
    object_mask: Optional[Path] = typer.Option(None, "--object-mask", "--object-masks", help="Mask(s) of the visible object, as --hand-mask."),
    keypoints: Optional[Path] = typer.Option(None, "--keypoints", "-k", help=escape(KEYPOINT_HELP + " For a clip: " + CLIP_KEYPOINT_HELP
                                                    + " With --two-hands: " + TWO_HAND_KEYPOINT_HELP)),
    two_hands: bool = typer.Option(False, "--two-hands", help="Reconstruct both hands (no object) from one image's keypoints of both "
                                                              "hands (--keypoints), with the two-hand diffusion prior as a regulariser."),
    detect: bool = typer.Option(False, "--detect", help="Detect the 2D hand keypoints with the offline MediaPipe detector (`make setup-detect`)."),
    sam_checkpoint: Optional[Path] = typer.Option(None, "--sam-checkpoint", help="Segment Anything checkpoint (local .pth) to make the masks not given as files "
                                                  "(a clip: prompted on its first frame, then each frame by the previous mask's box)."),
    hand_box: Optional[str] = typer.Option(None, "--hand-box", help="SAM box prompt for the hand: x0,y0,x1,y1 pixels (default: the keypoints' box)."),
    object_box: Optional[str] = typer.Option(None, "--object-box", help="Box around the object: x0,y0,x1,y1 pixels. A photo without "
                                             "--object-mask or SAM: the object and hand masks are made here with GrabCut (no weights); "
                                             "with --sam-checkpoint: SAM's prompt (a clip: on its first frame)."),
    object_point: Optional[list[str]] = typer.Option(None, "--object-point", help="A pixel on the object: u,v (repeatable); SAM's point "
                                                     "prompt, or definitely object for GrabCut."),
    focal: Optional[float] = typer.Option(None, "--focal", help="Focal length in pixels (default: a 50 degree field of view across the longer side)."),
    side: str = typer.Option("right", "--side", help="right or left hand."),
    method: str = typer.Option("easyhoi", "--method", help="Image: easyhoi (contact alignment + refinement) or cao (joint optimisation)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply --object-mesh coordinates by this to get metres."),
    rotations: int = typer.Option(1000, "--rotations", min=1, help="Image: object rotations scored in the pose search."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Image: object pose hypotheses refined; the best is kept."),
    refine_steps: int = typer.Option(150, "--refine-steps", min=0, help="Image: refinement (or joint optimisation) iterations."),
    refinenet: str = typer.Option("none", "--refinenet", help="Image: Cao et al.'s refinement network (their step 4) after the last "
                                                              "stage: default (the shipped one), or a run folder / model.pt of hoitool "
                                                              "train refinenet. Fewer intersections, less accurate hands (README)."),
    frames: Optional[str] = typer.Option(None, "--frames", help="Clip: the frames to use, A:B:STEP (0-based, B excluded), e.g. 0:64:2."),
    no_prior: bool = typer.Option(False, "--no-prior", help="Clip / --two-hands: no score distillation from the prior (the ablation)."),
    prior_model: Optional[Path] = typer.Option(None, "--model", help="Clip or --shape prior: G-HOP prior; --two-hands: two-hand model "
                                                                     "(run folder or .pt; default: the shipped one)."),
    steps: int = typer.Option(200, "--steps", min=0, help="Clip: object iterations (alternating masks and prior); --two-hands: "
                                                          "joint refinement steps."),
    max_side: int = typer.Option(960, "--max-side", min=64, help="Clip: frames larger than this (pixels, longer side) are shrunk "
                                                                  "on loading; masks, keypoints and --focal refer to the original size."),
    video_format: str = typer.Option("mp4", "--video-format", help="Clip: mp4 or gif for the overlay and turntable."),
    save_stages: bool = typer.Option(False, "--save-stages", help="Also write every stage's meshes, parameters and renders under stages/."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Reconstruct the hand and the object from one image (EasyHOI's stages, or Cao et al.'s joint losses with
    --method cao), or from a clip (per-frame hand fits smoothed over time, one object shape with a pose per frame
    relative to the hand, guided by the G-HOP prior). Needs the object's shape (--object-mesh or --category), hand
    and object masks (files, --sam-checkpoint, or for a photo --object-box: GrabCut from the box and the fitted hand)
    and the 2D hand keypoints (--keypoints or --detect). Writes meshes in the camera frame, params.json, the masks used
    and renders (overlay and side view; for a clip, overlay and turntable videos)."""
    import numpy as np

    from hoitool.errors import InputError
    from hoitool.data import image_inputs as ii
    from hoitool.pipelines.image_recon import ReconstructConfig
    from hoitool.train.loop import resolve_device

    setup_logging(verbose)
    with user_errors():
        from hoitool.data.video_inputs import is_video_input

        if two_hands:
            unused = {"--object-mesh": object_mesh, "--category": category, "--hand-mask": hand_mask, "--object-mask": object_mask,
                      "--detect": detect or None, "--sam-checkpoint": sam_checkpoint, "--hand-box": hand_box,
                      "--object-box": object_box, "--object-point": object_point or None, "--frames": frames,
                      "--side": None if side == "right" else side, "--method": None if method == "easyhoi" else method,
                      "--scale": None if scale == 1.0 else scale, "--rotations": None if rotations == 1000 else rotations,
                      "--top-k": None if top_k == 3 else top_k, "--refine-steps": None if refine_steps == 150 else refine_steps,
                      "--refinenet": None if refinenet == "none" else refinenet, "--max-side": None if max_side == 960 else max_side,
                      "--video-format": None if video_format == "mp4" else video_format,
                      "--shape": None if shape == "template" else shape,
                      "--shape-samples": shape_samples, "--shape-steps": shape_steps, "--shape-keep": shape_keep}
            given = [k for k, v in unused.items() if v is not None]
            if given:
                one = len(given) == 1
                raise InputError(f"{', '.join(given)} {'does' if one else 'do'} not apply to --two-hands (both hands from "
                                 f"keypoints alone, no object): leave {'it' if one else 'them'} out")
            if is_video_input(image):
                raise InputError(f"--two-hands reconstructs one image, and {image} is a clip: pass a photo (.jpg, .png)")
            return reconstruct_two_hands_cmd(image, out=out, keypoints=keypoints, focal=focal, no_prior=no_prior,
                                             model=prior_model, steps=steps, save_stages=save_stages, seed=seed, device=device)
        if shape not in ("template", "prior"):
            raise InputError(f"--shape must be template or prior, got {shape!r}")
        if shape != "prior":  # they would be ignored
            given = [k for k, v in (("--shape-samples", shape_samples), ("--shape-steps", shape_steps), ("--shape-keep", shape_keep))
                     if v is not None]
            if given:
                raise InputError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --shape prior (a photo with "
                                 f"--category): add --shape prior, or leave {'it' if len(given) == 1 else 'them'} out")
        if is_video_input(image):
            if shape != "template":
                raise InputError("--shape prior applies to a photo; a clip's object shape is already guided by the prior")
            if hand_box is not None:
                raise InputError("--hand-box applies to a photo; in a clip the hand's SAM boxes come from its keypoints")
            if refinenet != "none":
                raise InputError("--refinenet applies to a photo; a clip's hands are refined by the prior")
            return reconstruct_clip_cmd(image, out=out, object_mesh=object_mesh, category=category, hand_masks=hand_mask,
                                        object_masks=object_mask, keypoints=keypoints, detect=detect, sam_checkpoint=sam_checkpoint,
                                        object_box=object_box, object_point=object_point, focal=focal, side=side, scale=scale,
                                        frames=frames, no_prior=no_prior, prior_model=prior_model, steps=steps, max_side=max_side,
                                        video_format=video_format, save_stages=save_stages, seed=seed, device=device)
        if frames is not None:
            raise InputError(f"--frames applies to a clip (a video or a folder of frames), and {image} is an image")
        if side not in ("right", "left"):
            raise InputError(f"--side must be right or left, got {side!r}")
        if method not in ("easyhoi", "cao"):
            raise InputError(f"--method must be easyhoi or cao, got {method!r}")
        if (object_mesh is None) == (category is None):
            raise InputError("give the object's shape: --object-mesh PATH (a template or CAD model) or --category NAME "
                             "(a template from hoitool's object library), not both")
        if focal is not None and not (np.isfinite(focal) and focal > 0):
            raise InputError(f"--focal must be a positive number of pixels, got {focal}")
        net = load_image_refinenet(refinenet, resolve_device(device))  # a bad model is refused before the detector
        prior = None
        if shape == "prior":
            if category is None:
                raise InputError("--shape prior draws the object for --category NAME: give the category (not --object-mesh)")
            if side != "right":
                raise InputError("--shape prior needs a right hand (the prior's grids are of right hands): use --shape template")
            from hoitool.hand.model import HandModel
            from hoitool.prior.checkpoint import load_prior
            from hoitool.prior.shape import check_shape_prior, prior_category

            prior = load_prior(prior_model, device=resolve_device(device))
            check_shape_prior(prior, HandModel("right"))  # trained with this hand model, on grids of its field
            category = prior_category(prior, category)  # an unknown name is refused before the detector and the masks run
        elif category is not None:  # a name without a template is refused before the detector and the masks run
            from hoitool.data.templates import category_template

            category_template(category)
        elif not object_mesh.is_file():
            raise InputError(f"mesh file not found: {object_mesh}")
        out = out or Path(f"recon_{image.stem}")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
        img = ii.load_image(image)
        shape = img.shape[:2]
        if keypoints is not None and detect:
            raise InputError("give --keypoints FILE or --detect, not both")
        if keypoints is None and not detect:
            raise InputError("no hand keypoints: pass --keypoints FILE (21 points, OpenPose order) or --detect")
        from hoitool.pipelines.segment import parse_box, parse_point

        obox = ii.check_box(parse_box(object_box, "--object-box"), shape, "--object-box") if object_box else None
        hbox = ii.check_box(parse_box(hand_box, "--hand-box"), shape, "--hand-box") if hand_box else None
        opoints = [ii.check_point(parse_point(p), shape, "--object-point") for p in object_point or []]
        masks = {}
        for what, path in (("hand", hand_mask), ("object", object_mask)):
            if path is not None:
                masks[what] = ii.load_mask(path, shape, what)
        missing = [w for w in ("hand", "object") if w not in masks]
        if detect:
            from hoitool.hand.detect import detect_keypoints

            uv, conf = (a[0] for a in detect_keypoints([img], side))
            if not (conf > 0).any():
                raise InputError(f"the detector found no {side} hand in {image}: pass --keypoints FILE, or check --side")
        else:
            uv, conf = ii.load_keypoints(keypoints, side)
        ii.check_keypoints_in_image(uv, conf, shape, str(keypoints or "the detector's keypoints"))
        if missing and sam_checkpoint is None:
            if hbox is not None:
                raise InputError("--hand-box is SAM's prompt for the hand (with --sam-checkpoint); without SAM the hand mask "
                                 "comes from the hand fitted to the keypoints: leave it out")
            if "object" in missing and obox is None:
                raise InputError("no object mask: pass --object-box X0,Y0,X1,Y1 around the object (segmented here with GrabCut, "
                                 "no weights needed), --object-mask FILE, or --sam-checkpoint PATH with a prompt")
        elif "object" in missing and obox is None and not opoints:
            raise InputError("SAM needs a prompt for the object: --object-box x0,y0,x1,y1 or --object-point u,v")
        sources = {"keypoints": "detected" if detect else "given", "hand_mask": "given", "object_mask": "given",
                   "focal": "given" if focal is not None else "default"}
        hand_params = None
        if missing and sam_checkpoint is not None:
            from hoitool.pipelines.segment import SamSegmenter

            sam = SamSegmenter(sam_checkpoint, device=resolve_device(device))
            sam.set_image(img)
            for what in missing:
                if what == "hand":
                    m = sam.segment(box=hbox if hbox is not None else ii.keypoint_box(uv, conf, shape))
                else:
                    m = sam.segment(box=obox, points=opoints)
                masks[what] = ii.check_mask(m, shape, what, "from SAM")
                sources[f"{what}_mask"] = "sam"
            if "object" in missing:  # SAM keeps the fingers on the object: remove the hand, from SAM or a file
                masks["object"] = masks["object"] & ~masks["hand"]
                ii.check_mask(masks["object"], shape, "object", "from SAM (minus the hand)")
        elif missing:
            from hoitool.geometry.camera import Camera
            from hoitool.hand.model import HandModel
            from hoitool.pipelines.grabcut import derive_masks

            H, W = shape
            try:
                derived = derive_masks(img, Camera.default(W, H, focal), HandModel(side), uv, conf, obox, masks.get("hand"),
                                       masks.get("object"), opoints)
            except ValueError as e:
                raise InputError(f"cannot derive the masks of {image}: {e}; draw --object-box around the object only, or "
                                 "pass --object-mask FILE") from None
            hand_params = derived.hand_params
            for what in missing:
                m = derived.hand if what == "hand" else derived.object
                if not m.any():
                    hint = ("draw --object-box tightly around the object" if what == "object"
                            else "check the keypoints and --side")
                    raise InputError(f"GrabCut found no {what} in {image}: {hint}, or pass --{what}-mask FILE")
                masks[what] = ii.check_mask(m, shape, what, "from GrabCut")
                sources[f"{what}_mask"] = "derived-grabcut"
        run_reconstruction(img, masks["hand"], masks["object"], uv, conf, out, object_mesh=object_mesh, category=category,
                           scale=scale, focal=focal, save_stages=save_stages,
                           cfg=ReconstructConfig(method=method, side=side, rotations=rotations, top_k=top_k,
                                                 refine_steps=refine_steps, seed=seed, device=str(resolve_device(device))),
                           source=str(image), sources=sources, hand_params=hand_params,
                           prior=prior, shape_samples=shape_samples or 8, shape_steps=shape_steps or 50, shape_keep=shape_keep or 1,
                           refinenet=net,
                           object_box=obox if sources["object_mask"] != "given" else None,  # a box not used is not shown
                           files={"keypoints": keypoints, "hand_mask": hand_mask, "object_mask": object_mask},
                           prompts={"object_points": [[float(v) for v in p] for p in opoints] if opoints else None,
                                    "hand_box": None if hbox is None else [float(v) for v in hbox]})


def load_image_refinenet(choice: str, device) -> tuple | None:
    """The refinement network `--refinenet` names for a photo: none, default (the shipped one),
    or a run folder / model.pt; with the model file's info. A model of another kind, or trained
    with another hand model, is refused."""
    if choice == "none":
        return None
    from hoitool.hand.model import HandModel
    from hoitool.refine.model import load_refinenet
    from hoitool.refine.scene import check_refinenet_hand

    net, info = load_refinenet(None if choice == "default" else Path(choice), device)
    check_refinenet_hand(info, HandModel("right"))
    return net, info


def run_reconstruction(img, hand_mask, object_mask, uv, conf, out: Path, *, object_mesh, category, scale, focal, save_stages,
                       cfg, source: str, sources: dict | None = None, hand_params=None, object_box=None,
                       files: dict | None = None, prompts: dict | None = None, prior=None, shape_samples: int = 8,
                       shape_steps: int = 50, shape_keep: int = 1, refinenet=None) -> None:
    """Load the object, run the pipeline with a progress bar, write the outputs atomically.

    sources: where each input came from (keypoints detected/given; hand and object masks
    given/sam/derived-grabcut; focal given/default), recorded in params.json and the closing panel;
    hand_params: the hand already fitted to the keypoints (for the GrabCut masks), reused as stage 1;
    prior: draw the object's shape for `category` from this G-HOP prior (the `shape_keep` best of
    `shape_samples` by object mask IoU, for the hand of stage 1, each run through the stages, the
    best result kept) instead of the category's library template;
    refinenet: (network, model file info) of load_image_refinenet, applied after the last stage."""
    import time

    import numpy as np

    from hoitool.data.grasps import staged_folder
    from hoitool.utils.config import save_config
    from hoitool.data.templates import category_template
    from hoitool.errors import InputError
    from hoitool.geometry.camera import Camera
    from hoitool.geometry.mesh import load_mesh
    from hoitool.hand.model import HandModel
    from hoitool.data.image_inputs import ImageInputs
    from hoitool.pipelines.image_recon import reconstruct_image
    from hoitool.pipelines.image_report import write_outputs

    if focal is not None and not (np.isfinite(focal) and focal > 0):
        raise InputError(f"--focal must be a positive number of pixels, got {focal}")
    H, W = img.shape[:2]
    camera = Camera.default(W, H, focal)
    inputs = ImageInputs(img, hand_mask, object_mask, uv, conf)
    hand = HandModel(cfg.side)
    t0 = time.time()
    shape_info = {"source": "template"}
    if object_mesh is not None:
        mesh, _ = load_mesh(object_mesh, scale=scale)
        template, name = True, str(object_mesh)
        shape_info = {"source": "mesh"}
    elif prior is not None:
        from hoitool.pipelines.image_recon import prior_object_shapes
        from hoitool.prior.shape import ShapeConfig

        shape_cfg = ShapeConfig(samples=shape_samples, steps=shape_steps, seed=cfg.seed)
        with progress_bar(f"drawing {shape_samples} {category} shapes from the prior") as bar:
            drawn = prior_object_shapes(inputs, camera, prior, category, shape_cfg, cfg, hand, hand_params, keep=shape_keep,
                                        progress=bar)
        name, template, hand_params = category, False, drawn.hand_params
        shape_info = {"source": "prior", "prior": str(getattr(prior, "source", "")), "samples": shape_samples,
                      "ddim_steps": shape_steps, "guidance": shape_cfg.guidance, "kept": drawn.index,
                      "mask_iou": [round(float(v), 4) for v in drawn.iou], "drawing_seconds": round(time.time() - t0, 2),
                      "pose_search_start": "the prior's placement, besides the random rotations"}
    else:
        mesh, name = category_template(category)
        template = False
    with progress_bar("reconstructing") as bar:
        order = {"hand": 0, "object": 1, "contact": 2, "refine": 3, "refinenet": 4}
        per = 400 + 100 * (refinenet is not None)

        def tick(stage, done, total, shape=0, shapes=1):
            bar(shape * per + order[stage] * 100 + int(100 * done / max(total, 1)), per * shapes)

        if prior is not None:  # each kept shape through the stages, from the prior's placement; the best result wins
            from hoitool.pipelines.image_recon import reconstruct_with_shapes

            result, best, scores = reconstruct_with_shapes(
                inputs, drawn, camera, cfg, hand, refinenet[0] if refinenet else None,
                progress=lambda i, *a: tick(*a, shape=i, shapes=len(drawn.meshes)))
            mesh = drawn.meshes[best]
            shape_info.update({"chosen_sample": drawn.index[best], "kept_scores": [round(v, 4) for v in scores]})
        else:
            result = reconstruct_image(inputs, mesh, camera, cfg, template=template, hand=hand, progress=tick, hand_params=hand_params,
                                       refinenet=refinenet[0] if refinenet else None)
    final = result.final
    if not all(np.isfinite(v) for v in final.metrics.values()):
        raise InputError("the reconstruction diverged (NaN): check that the masks and keypoints belong to this image")
    sources = sources or {}
    inputs_used = {**sources, "focal_px": round(camera.fx, 3),
                   "object_box": None if object_box is None else [round(float(v), 2) for v in object_box],
                   "files": {k: str(v) for k, v in (files or {}).items() if v is not None},
                   **{k: v for k, v in (prompts or {}).items() if v is not None}}
    if "derived-grabcut" in sources.values():
        from hoitool.pipelines.grabcut import GrabCutConfig
        from hoitool.utils.config import to_dict

        inputs_used["grabcut"] = to_dict(GrabCutConfig())
    extra = {"image": source, "object_mesh": name, "template": "metric mesh" if template else f"category {name}",
             "shape": shape_info,
             "method": cfg.method, "refinenet": refinenet[1]["path"] if refinenet else None, "seconds": round(time.time() - t0, 2), "inputs": inputs_used}
    with staged_folder(out) as tmp:
        written = write_outputs(tmp, result, hand, img, extra, save_stages, masks=(hand_mask, object_mask), box=object_box)
        save_config(cfg, tmp / "config.yaml")
    m = final.metrics
    said = [f"keypoints {sources['keypoints']}"] if "keypoints" in sources else []
    said += [f"{w} mask {sources[f'{w}_mask']}" for w in ("hand", "object") if f"{w}_mask" in sources]
    said.append(f"focal {sources.get('focal', 'given' if focal is not None else 'default')} ({camera.fx:.0f} px)")
    summary("hoitool reconstruct", [out / p.relative_to(tmp) for p in written] + [out / "config.yaml"], [
        "inputs: " + " · ".join(said),
        f"{extra['template']}{' (prior shape, sample ' + str(shape_info['chosen_sample']) + ')' if shape_info['source'] == 'prior' else ''}"
        f" · method {cfg.method}{' + refinement network' if refinenet else ''} · {extra['seconds']:.1f} s",
        f"hand mask IoU {m['hand_iou']:.2f} · object mask IoU {m['object_iou']:.2f} · keypoint error {m['keypoint_error_px']:.1f} px",
        f"max penetration {m['max_penetration_mm']:.1f} mm · hand-object gap {m['min_distance_mm']:.1f} mm",
    ])


def reconstruct_clip_cmd(path: Path, *, out, object_mesh, category, hand_masks, object_masks, keypoints, detect, sam_checkpoint,
                         object_box, object_point, focal, side, scale, frames, no_prior, prior_model, steps, max_side, video_format,
                         save_stages, seed, device) -> None:
    """`hoitool reconstruct CLIP`: validate the clip's inputs, run the video pipeline, write the outputs atomically."""
    import time

    import numpy as np

    from hoitool.data import video_inputs as vi
    from hoitool.data.grasps import staged_folder
    from hoitool.data.templates import category_template
    from hoitool.errors import InputError
    from hoitool.geometry.camera import Camera
    from hoitool.geometry.mesh import load_mesh
    from hoitool.hand.model import HandModel
    from hoitool.pipelines.video_recon import ClipInputs, VideoConfig, reconstruct_clip
    from hoitool.pipelines.video_report import write_outputs
    from hoitool.train.loop import resolve_device
    from hoitool.utils.config import save_config

    if side not in ("right", "left"):
        raise InputError(f"--side must be right or left, got {side!r}")
    if video_format not in ("mp4", "gif"):
        raise InputError(f"--video-format must be mp4 or gif, got {video_format!r}")
    if (object_mesh is None) == (category is None):
        raise InputError("give the object's shape: --object-mesh PATH (a template or CAD model) or --category NAME "
                         "(a template from hoitool's object library; its name also prompts the prior), not both")
    if focal is not None and not (np.isfinite(focal) and focal > 0):
        raise InputError(f"--focal must be a positive number of pixels, got {focal}")
    if keypoints is not None and detect:
        raise InputError("give --keypoints FILE or --detect, not both")
    if keypoints is None and not detect:
        raise InputError("no hand keypoints: pass --keypoints FILE (21 points per frame, OpenPose order) or --detect")
    out = out or Path(f"recon_{path.stem}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
    clip = vi.load_clip(path, frames, max_side=max_side)
    T, H, W = clip.frames.shape[:3]
    if object_box is not None:  # SAM's prompt on the first frame, in pixels of the original frames
        from hoitool.data.image_inputs import check_box
        from hoitool.pipelines.segment import parse_box

        check_box(parse_box(object_box, "--object-box"), clip.original_size[::-1], "--object-box")
    if T > MAX_CLIP_FRAMES:
        step = -(-T // MAX_CLIP_FRAMES)
        raise InputError(f"{T} frames selected: at most {MAX_CLIP_FRAMES} per run (the object stage renders every frame); "
                         f"pick fewer with --frames START:STOP:STEP, e.g. --frames ::{step}")
    if detect:
        from hoitool.hand.detect import detect_keypoints

        uv, conf = detect_keypoints(list(clip.frames), side, video=True)
        if not (conf > 0).any():
            raise InputError(f"the detector found no {side} hand in any frame of {path}: pass --keypoints FILE, or check --side")
    else:
        uv, conf = vi.load_clip_keypoints(keypoints, clip, side)
    masks = {}
    for what, folder in (("hand", hand_masks), ("object", object_masks)):
        if folder is not None:
            masks[what] = vi.load_mask_folder(folder, clip, what)
    missing = [w for w in ("hand", "object") if w not in masks]
    if missing:
        if sam_checkpoint is None:
            raise InputError(f"no {' or '.join(missing)} masks: pass --{missing[0]}-masks FOLDER, or --sam-checkpoint PATH "
                             "with a prompt on the first frame (--object-box / --object-point; the hand's boxes come from the keypoints)")
        masks.update(_sam_clip_masks(clip, uv, conf, missing, masks, sam_checkpoint, object_box, object_point, resolve_device(device)))
    if not masks["object"].any():
        raise InputError("the object mask is empty on every frame: check --object-masks or the SAM prompt")
    if object_mesh is not None:
        mesh, _ = load_mesh(object_mesh, scale=scale)
        template, name = True, str(object_mesh)
        cat = category or object_mesh.stem
    else:
        mesh, name = category_template(category)
        template, cat = False, category
    prior = None
    if not no_prior:
        from hoitool.prior.checkpoint import load_prior

        prior = load_prior(prior_model, device=resolve_device(device))
    Wo, Ho = clip.original_size
    camera = Camera.default(W, H, None if focal is None else focal * W / Wo)  # --focal refers to the original frames
    cfg = VideoConfig(side=side, use_prior=not no_prior, steps=steps, seed=seed, device=str(resolve_device(device)))
    inputs = ClipInputs(clip.frames, masks["hand"], masks["object"], np.nan_to_num(uv), conf)
    hand = HandModel(side)
    t0 = time.time()
    with progress_bar(f"reconstructing {T} frames") as bar:
        order = {"hand": 0, "init": 1, "object": 2}

        def tick(stage, done, total):
            bar(order[stage] * 100 + int(100 * done / max(total, 1)), 300)

        try:
            result = reconstruct_clip(inputs, mesh, camera, cat, cfg, template=template, hand=hand, prior=prior, progress=tick)
        except (ValueError, FloatingPointError) as e:
            raise InputError(f"the clip reconstruction failed: {e}") from None
    m = result.final.metrics
    if not all(np.isfinite(v) for v in m.values()):
        raise InputError("the reconstruction diverged (NaN): check that the masks and keypoints belong to this clip")
    seconds = round(time.time() - t0, 2)
    extra = {"input": str(path), "frames_used": len(clip.indices), "frame_indices": list(clip.indices),
             "frame_size": [W, H], "original_frame_size": [Wo, Ho], "object_mesh": name,
             "template": "metric mesh" if template else f"category {name}", "prior": None if no_prior else str(prior.source),
             "seconds": seconds, "seconds_per_stage": {k: round(v.seconds, 2) for k, v in result.stages.items()}}
    with staged_folder(out) as tmp:
        files = write_outputs(tmp, result, hand, clip.frames, clip.indices, clip.stems, clip.fps, extra, save_stages, video_format)
        save_config(cfg, tmp / "config.yaml")
    summary("hoitool reconstruct (clip)", [out / p.relative_to(tmp) for p in files] + [out / "config.yaml"], [
        f"{T} frames · {extra['template']} · prior {'off' if no_prior else 'on'} · {seconds:.1f} s "
        f"(" + ", ".join(f"{k} {v:.0f} s" for k, v in extra["seconds_per_stage"].items()) + ")",
        f"object mask IoU {m['object_iou']:.2f} · max penetration {m['max_penetration_mm']:.1f} mm · "
        f"hand-object gap {m['min_distance_mm']:.1f} mm · object scale {m['scale']:.2f} x template",
    ])


def _sam_clip_masks(clip, uv, conf, missing, given, checkpoint, object_box, object_point, device) -> dict:
    """Masks from SAM, frame by frame: the hand prompted by its keypoints' box (or the previous hand mask's box),
    the object by the user's prompt on the first frame and then by the previous object mask's box."""
    import numpy as np

    from hoitool.data import image_inputs as ii
    from hoitool.errors import InputError
    from hoitool.pipelines.segment import SamSegmenter, parse_box, parse_point

    if "object" in missing and object_box is None and not object_point:
        raise InputError("SAM needs a prompt for the object on the first frame: --object-box x0,y0,x1,y1 or --object-point u,v")
    sam = SamSegmenter(checkpoint, device=device)
    T, H, W = clip.frames.shape[:3]
    out = {w: np.zeros((T, H, W), bool) for w in missing}
    prev = {}
    with progress_bar(f"segmenting {T} frames with SAM") as bar:
        for t in range(T):
            sam.set_image(clip.frames[t])
            for what in missing:
                if what == "hand":
                    if (conf[t] > 0).sum() >= ii.MIN_KEYPOINTS:
                        box = ii.keypoint_box(uv[t], conf[t], (H, W))
                    elif "hand" in prev:
                        box = prev["hand"]
                    else:
                        continue
                    m = sam.segment(box=box)
                else:
                    if t == 0:  # the prompts are in pixels of the original frames
                        sx, sy = clip.scale
                        m = sam.segment(box=parse_box(object_box, "--object-box") * [sx, sy, sx, sy] if object_box else None,
                                        points=[parse_point(p) * [sx, sy] for p in object_point or []])
                    elif "object" in prev:
                        m = sam.segment(box=prev["object"])
                    else:
                        continue
                if m.any():
                    ys, xs = np.nonzero(m)
                    pad = 0.1 * max(np.ptp(xs), np.ptp(ys), 4)
                    prev[what] = np.array([xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad])
                out[what][t] = m
            if "object" in out:  # SAM keeps the fingers on the object: remove the hand
                out["object"][t] &= ~(out["hand"][t] if "hand" in out else given["hand"][t])
            bar(t + 1, T)
    return out


def reconstruct_two_hands_cmd(image: Path, *, out, keypoints, focal, no_prior, model, steps, save_stages, seed, device) -> None:
    """`hoitool reconstruct IMAGE --two-hands`: validate, fit both hands, write the outputs atomically."""
    import time

    import numpy as np

    from hoitool.data import image_inputs as ii
    from hoitool.data.grasps import staged_folder
    from hoitool.errors import InputError
    from hoitool.geometry.camera import Camera
    from hoitool.hand.model import HandModel
    from hoitool.pipelines.twohand_recon import TwoHandReconConfig, reconstruct_two_hands
    from hoitool.pipelines.twohand_report import write_outputs
    from hoitool.train.loop import resolve_device
    from hoitool.utils.config import save_config, to_dict

    if keypoints is None:
        raise InputError("--two-hands needs --keypoints FILE with both hands: " + ii.TWO_HAND_KEYPOINT_HELP)
    if focal is not None and not (np.isfinite(focal) and focal > 0):
        raise InputError(f"--focal must be a positive number of pixels, got {focal}")
    if no_prior and model is not None:
        raise InputError("--model names the two-hand prior, which --no-prior turns off: give one of them")
    out = out or Path(f"recon_{image.stem}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
    img = ii.load_image(image)
    H, W = img.shape[:2]
    uv, conf = ii.load_two_hand_keypoints(keypoints)
    for i, s in enumerate(("right", "left")):
        ii.check_keypoints_in_image(uv[i], conf[i], (H, W), f"{keypoints} ({s} hand)")
    dev = resolve_device(device)
    cfg = TwoHandReconConfig(steps=steps, use_prior=not no_prior, seed=seed, device=str(dev))
    prior = None
    if not no_prior:
        from hoitool.twohands.checkpoint import load_twohand_model

        prior = load_twohand_model(model, dev)
    camera = Camera.default(W, H, focal)
    hands = {s: HandModel(s) for s in ("right", "left")}
    t0 = time.time()
    with progress_bar("reconstructing two hands") as bar:
        order = {"single": 0, "joint": 1}

        def tick(stage, done, total):
            bar(order[stage] * 100 + int(100 * done / max(total, 1)), 200)

        result = reconstruct_two_hands(cfg, img, uv, conf, camera, model=prior, progress=tick, hands=hands)
    seconds = round(time.time() - t0, 2)
    extra = {"image": str(image), "keypoints": str(keypoints), "seconds": seconds}
    with staged_folder(out) as tmp:
        files = write_outputs(tmp, result, hands, img, extra, save_stages)
        save_config({**to_dict(cfg), "model_file": result.prior}, tmp / "config.yaml")
    px = result.reprojection_px
    summary("hoitool reconstruct (two hands)", [out / p.relative_to(tmp) for p in files] + [out / "config.yaml"], [
        f"prior {'off' if no_prior else result.prior} · {cfg.steps} joint steps · {seconds:.1f} s",
        f"keypoint error right {px['right']:.1f} px · left {px['left']:.1f} px · "
        f"penetration term {result.final.losses['penetration']:.3g}",
    ])
