"""`hoitool twohands` (generate two hands interacting) and `hoitool evaluate twohands`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import console, plain, progress_bar, setup_logging, summary, user_errors


def twohands(
    n: int = typer.Option(16, "--n", "-n", min=1, help="Number of two-hand samples."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist, or be empty)."),
    object_mesh: Optional[Path] = typer.Option(None, "--object", help="Object mesh the hands hold together (metres; see --scale)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply the object's coordinates by this (0.001 for millimetres)."),
    seed: int = typer.Option(0, "--seed", help="Sample i depends only on (seed, i)."),
    guidance: float = typer.Option(0.0, "--guidance", min=0.0, help="Classifier-free guidance on the second hand's relative pose (0: none; InterHandGen's 0.1 lowers the proximity ratio here)."),
    penetration_guidance: float = typer.Option(400.0, "--penetration-guidance", min=0.0, help="Anti-penetration guidance weight (w_k = w 0.9^(K-1-k))."),
    proximity_guidance: float = typer.Option(0.3, "--proximity-guidance", min=0.0, help="Pull on hands more than 1.5 cm apart, in the same steps as the penetration guidance (sphere energy; 0: none)."),
    penetration_energy: str = typer.Option("spheres", "--penetration-energy", help="spheres (the hands' skeleton spheres) or vertices (InterHandGen's nearest-vertex test; use with a weight near 7-50)."),
    no_penetration_guidance: bool = typer.Option(False, "--no-penetration-guidance", help="Turn anti-penetration guidance off."),
    steps: int = typer.Option(42, "--steps", min=1, max=1000, help="DDIM steps per hand."),
    model: Optional[Path] = typer.Option(None, "--model", help="Run folder or model.pt of hoitool train twohands (default: the shipped model)."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Samples denoised together."),
    meshes_max: int = typer.Option(100, "--meshes-max", min=0, help="Write per-sample meshes for the first this many (samples.npz holds all)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    no_sheet: bool = typer.Option(False, "--no-sheet", help="Do not render contact_sheet.png."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="MANO folder (default: the open hand; must match the model's training data)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Generate two hands interacting (InterHandGen): cascaded diffusion, right hand then left hand conditioned on it,
    with classifier-free and anti-penetration guidance; optionally holding an object together."""
    from hoitool.errors import InputError
    from hoitool.pipelines.twohands import TwoHandsConfig, generate_twohands
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
        if object_mesh is not None and not object_mesh.is_file():
            raise InputError(f"object mesh not found: {object_mesh}")
        if penetration_energy not in ("spheres", "vertices"):
            raise InputError(f"--penetration-energy must be spheres or vertices, got {penetration_energy!r}")
        if not (scale > 0):
            raise InputError(f"--scale must be a positive number, got {scale}")
        cfg = TwoHandsConfig(out=out, n=n, seed=seed, steps=steps, guidance=guidance,
                             penetration=0.0 if no_penetration_guidance else penetration_guidance, penetration_energy=penetration_energy,
                             proximity=proximity_guidance,
                             object_mesh=object_mesh, scale=scale, model=model, device=device, batch_size=batch_size,
                             meshes_max=meshes_max, sheet=not no_sheet, mano_dir=str(mano_dir) if mano_dir else None)
        if dry_run:
            console.print(plain(dump_yaml(cfg)))
            return
        # everything that can be wrong fails here, in one line, before any work
        from hoitool.hand.model import HandModel
        from hoitool.pipelines.twohands import check_hand, load_object
        from hoitool.train.loop import resolve_device
        from hoitool.twohands.checkpoint import load_twohand_model

        mdl = load_twohand_model(model, resolve_device(device))
        if guidance and mdl.joint:
            raise InputError(f"{mdl.source} is a joint (non-cascaded) model: it has no classifier-free guidance, pass --guidance 0")
        check_hand(mdl, HandModel("right", cfg.mano_dir))
        if object_mesh is not None:
            if not mdl.has_object:
                raise InputError(f"the model {mdl.source} was trained without objects: pass --model trained on data with bimanual grasps")
            load_object(object_mesh, scale)
        with progress_bar(f"sampling {n} two-hand interactions ({steps} DDIM steps per hand)") as update:
            res = generate_twohands(cfg, progress=update, model=mdl)
        import numpy as np

        lines = [f"model: {res.model}",
                 f"{n} samples in {res.sampling_seconds:.1f} s of sampling ({res.seconds:.1f} s in all)"]
        if res.penetration_cm3 is not None and len(res.penetration_cm3):
            k = len(res.penetration_cm3)
            lines.append(f"first {k}: penetration volume mean {np.mean(res.penetration_cm3):.2f} cm^3, "
                         f"hands within 2 cm in {int((res.distance_cm < 2).sum())} of {k}")
        summary("twohands", res.written, lines)


def evaluate_twohands_cmd(
    folder: Path = typer.Argument(..., help="A folder written by hoitool twohands."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Prepared two-hand folder to compare with (FHID, KHID, precision, recall)."),
    feature_model: Optional[Path] = typer.Option(None, "--feature-model", help="Feature network (default: the shipped one)."),
    physical_max: int = typer.Option(1000, "--physical-max", min=1, help="Penetration and contact on the first this many samples."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file (default: FOLDER/evaluation.json)."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="MANO folder the samples were made with (default: the open hand)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random pairs and subsets."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Penetration volume, proximity and contact ratios, diversity; with --reference: FHID, KHID, precision and recall."""
    from rich.table import Table

    from hoitool.twohands.evaluate import evaluate_twohands
    from hoitool.utils.io import write_json

    setup_logging(verbose)
    with user_errors():
        with progress_bar("measuring penetration and contact") as update:
            res = evaluate_twohands(folder, reference, feature_model, physical_max, mano_dir=str(mano_dir) if mano_dir else None,
                                    seed=seed, progress=update)
        path = out or (folder / "evaluation.json")
        write_json(path, res)
        t = Table(title=plain(f"{res['samples']} two-hand samples in {folder}"))
        t.add_column("metric")
        t.add_column("value", justify="right")
        rows = [("penetration volume, mean (cm^3)", res["penetration_volume_cm3"]["mean"]),
                ("penetration depth, mean (cm)", res["penetration_depth_cm"]["mean"]),
                ("proximity ratio (< 2 cm)", res["proximity_ratio"]), ("contact ratio (< 5 mm)", res["contact_ratio"])]
        for key, name in (("object_penetration_cm3", "hand-object penetration, mean (cm^3)"),):
            if key in res:
                rows.append((name, res[key]["mean"]))
        for key, name in (("object_contact_ratio", "hand-object contact ratio"), ("object_both_hands_contact_ratio", "both hands on the object"),
                          ("diversity", "diversity"), ("fhid", "FHID"), ("khid_x1000", "KHID (x1000)"),
                          ("precision", "precision (k = 5)"), ("recall", "recall (k = 5)")):
            if key in res:
                rows.append((name, res[key]))
        for name, v in rows:
            t.add_row(name, f"{v:.3f}")
        console.print(t)
        summary("evaluate twohands", [path])
