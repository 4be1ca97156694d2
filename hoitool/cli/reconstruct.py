"""`hoitool reconstruct IMAGE`: hand and object from one photograph."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import progress_bar, setup_logging, summary, user_errors

KEYPOINT_HELP = ("21 hand keypoints in OpenPose order, image pixels: JSON (a list of 21 pairs u, v or triples u, v, "
                 "confidence; an object with that list under 'keypoints'; or an OpenPose result), .npy, .txt or .csv.")


def reconstruct(
    image: Path = typer.Argument(..., help="Photograph of one hand holding an object (.jpg, .png ...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: recon_<image name>)."),
    object_mesh: Optional[Path] = typer.Option(None, "--object-mesh", help="The object's template or CAD mesh (metres unless --scale)."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Use the library template of this category instead of --object-mesh."),
    hand_mask: Optional[Path] = typer.Option(None, "--hand-mask", help="Mask image of the visible hand (white = hand), the image's size."),
    object_mask: Optional[Path] = typer.Option(None, "--object-mask", help="Mask image of the visible object (white = object)."),
    keypoints: Optional[Path] = typer.Option(None, "--keypoints", "-k", help=KEYPOINT_HELP),
    sam_checkpoint: Optional[Path] = typer.Option(None, "--sam-checkpoint", help="Segment Anything checkpoint (local .pth) to make the masks not given as files."),
    hand_box: Optional[str] = typer.Option(None, "--hand-box", help="SAM box prompt for the hand: x0,y0,x1,y1 pixels (default: the keypoints' box)."),
    object_box: Optional[str] = typer.Option(None, "--object-box", help="SAM box prompt for the object: x0,y0,x1,y1 pixels."),
    object_point: Optional[list[str]] = typer.Option(None, "--object-point", help="SAM point prompt on the object: u,v pixels (repeatable)."),
    focal: Optional[float] = typer.Option(None, "--focal", help="Focal length in pixels (default: a 50 degree field of view across the longer side)."),
    side: str = typer.Option("right", "--side", help="right or left hand."),
    method: str = typer.Option("easyhoi", "--method", help="easyhoi (contact alignment + refinement) or cao (joint optimisation)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply --object-mesh coordinates by this to get metres."),
    rotations: int = typer.Option(1000, "--rotations", min=1, help="Object rotations scored in the pose search."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Object pose hypotheses refined; the best is kept."),
    refine_steps: int = typer.Option(150, "--refine-steps", min=0, help="Refinement (or joint optimisation) iterations."),
    save_stages: bool = typer.Option(False, "--save-stages", help="Also write every stage's meshes, parameters and renders under stages/."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Reconstruct the hand and the object from one image (EasyHOI's stages, or Cao et al.'s joint losses with
    --method cao). Needs the object's shape (--object-mesh or --category), hand and object masks (files or
    --sam-checkpoint) and the 2D hand keypoints (--keypoints). Writes meshes in the camera frame, params.json,
    overlay.png and side.png."""
    from hoitool.errors import InputError
    from hoitool.data import image_inputs as ii
    from hoitool.pipelines.image_recon import ReconstructConfig
    from hoitool.train.loop import resolve_device

    setup_logging(verbose)
    with user_errors():
        if side not in ("right", "left"):
            raise InputError(f"--side must be right or left, got {side!r}")
        if method not in ("easyhoi", "cao"):
            raise InputError(f"--method must be easyhoi or cao, got {method!r}")
        if (object_mesh is None) == (category is None):
            raise InputError("give the object's shape: --object-mesh PATH (a template or CAD model) or --category NAME "
                             "(a template from hoitool's object library), not both")
        out = out or Path(f"recon_{image.stem}")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
        img = ii.load_image(image)
        shape = img.shape[:2]
        if keypoints is None:
            raise InputError("no hand keypoints: pass --keypoints FILE (21 points, OpenPose order)")
        uv, conf = ii.load_keypoints(keypoints, side)
        ii.check_keypoints_in_image(uv, conf, shape, str(keypoints))
        masks = {}
        for what, path in (("hand", hand_mask), ("object", object_mask)):
            if path is not None:
                masks[what] = ii.load_mask(path, shape, what)
        missing = [w for w in ("hand", "object") if w not in masks]
        if missing:
            if sam_checkpoint is None:
                raise InputError(f"no {' or '.join(missing)} mask: pass --{missing[0]}-mask FILE, or --sam-checkpoint PATH "
                                 "with a prompt (--object-box / --object-point; the hand's box comes from the keypoints)")
            from hoitool.pipelines.segment import SamSegmenter, parse_box, parse_point

            sam = SamSegmenter(sam_checkpoint, device=resolve_device(device))
            sam.set_image(img)
            for what in missing:
                if what == "hand":
                    box = parse_box(hand_box, "--hand-box") if hand_box else ii.keypoint_box(uv, conf, shape)
                    m = sam.segment(box=box)
                else:
                    if object_box is None and not object_point:
                        raise InputError("SAM needs a prompt for the object: --object-box x0,y0,x1,y1 or --object-point u,v")
                    m = sam.segment(box=parse_box(object_box, "--object-box") if object_box else None,
                                    points=[parse_point(p) for p in object_point or []])
                masks[what] = ii.check_mask(m, shape, what, "from SAM")
            if "object" in missing:  # SAM keeps the fingers on the object: remove the hand, from SAM or a file
                masks["object"] = masks["object"] & ~masks["hand"]
                ii.check_mask(masks["object"], shape, "object", "from SAM (minus the hand)")
        run_reconstruction(img, masks["hand"], masks["object"], uv, conf, out, object_mesh=object_mesh, category=category,
                           scale=scale, focal=focal, save_stages=save_stages,
                           cfg=ReconstructConfig(method=method, side=side, rotations=rotations, top_k=top_k,
                                                 refine_steps=refine_steps, seed=seed, device=str(resolve_device(device))),
                           source=str(image))


def run_reconstruction(img, hand_mask, object_mask, uv, conf, out: Path, *, object_mesh, category, scale, focal, save_stages,
                       cfg, source: str) -> None:
    """Load the object, run the pipeline with a progress bar, write the outputs atomically."""
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
    if object_mesh is not None:
        mesh, _ = load_mesh(object_mesh, scale=scale)
        template, name = True, str(object_mesh)
    else:
        mesh, name = category_template(category)
        template = False
    H, W = img.shape[:2]
    camera = Camera.default(W, H, focal)
    inputs = ImageInputs(img, hand_mask, object_mask, uv, conf)
    hand = HandModel(cfg.side)
    t0 = time.time()
    with progress_bar("reconstructing") as bar:
        order = {"hand": 0, "object": 1, "contact": 2, "refine": 3}

        def tick(stage, done, total):
            bar(order[stage] * 100 + int(100 * done / max(total, 1)), 400)

        result = reconstruct_image(inputs, mesh, camera, cfg, template=template, hand=hand, progress=tick)
    final = result.final
    if not all(np.isfinite(v) for v in final.metrics.values()):
        raise InputError("the reconstruction diverged (NaN): check that the masks and keypoints belong to this image")
    extra = {"image": source, "object_mesh": name, "template": "metric mesh" if template else f"category {name}",
             "method": cfg.method, "seconds": round(time.time() - t0, 2)}
    with staged_folder(out) as tmp:
        files = write_outputs(tmp, result, hand, img, extra, save_stages)
        save_config(cfg, tmp / "config.yaml")
    m = final.metrics
    summary("hoitool reconstruct", [out / p.relative_to(tmp) for p in files] + [out / "config.yaml"], [
        f"{extra['template']} · method {cfg.method} · {extra['seconds']:.1f} s",
        f"hand mask IoU {m['hand_iou']:.2f} · object mask IoU {m['object_iou']:.2f} · keypoint error {m['keypoint_error_px']:.1f} px",
        f"max penetration {m['max_penetration_mm']:.1f} mm · hand-object gap {m['min_distance_mm']:.1f} mm",
    ])
