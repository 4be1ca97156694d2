"""`hoitool evaluate reconstruction`: a `hoitool reconstruct` folder scored against a truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import console, plain, progress_bar, setup_logging, summary, user_errors

ALIGN_HELP = ("Alignment of the predicted object onto the true one before Chamfer and F-scores: none, translation-scale "
              "(EasyHOI: centring, then ICP of a uniform scale and a translation, camera frame), similarity (G-HOP: "
              "ICP of rotation, scale and translation from --rotations starts). Default: translation-scale for a "
              "photograph, similarity for a clip.")


def evaluate_reconstruction_cmd(
    pred: Path = typer.Argument(..., help="A folder written by hoitool reconstruct (a photograph's or a clip's, or one of its stages/)."),
    truth: Path = typer.Option(..., "--truth", help="Truth folder: object.obj + hand.json (photograph) or object.obj + truth.jsonl "
                               "(clip), metres, camera frame; or the hand.json / truth.jsonl file itself (README: Truth format)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file to write (default: PRED/metrics.json)."),
    align: Optional[str] = typer.Option(None, "--align", help=ALIGN_HELP),
    points: int = typer.Option(10000, "--points", min=100, help="Surface points sampled on each object (G-HOP: 10k)."),
    rotations: int = typer.Option(10, "--rotations", min=1, help="Initial rotations of the similarity alignment (G-HOP: 10)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply the truth object mesh's coordinates by this to get metres "
                                "(e.g. 0.001 for millimetres); poses and hand values are metres."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="MANO folder that poses the truth's hand parameters "
                                            "(default: $HOITOOL_MANO_DIR, else the open hand)."),
    no_interaction: bool = typer.Option(False, "--no-interaction", help="Skip intersection volume, depth and contact."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score a reconstruction against its truth: object Chamfer and F-scores, CD_h, hand MPJPE and AUC, intersection and
    contact.

    Object: Chamfer distance (mm, and G-HOP's squared cm^2) and F-score at 5 and 10 mm after --align, and the same where the object was placed (camera frame, no alignment); CD_h
    (cm^2, G-HOP): the objects' squared Chamfer with each object in its own hand's frame; hand: keypoint error (mm)
    root-aligned at the wrist, absolute, and centred on the index knuckle (G-HOP), AUC of PCK over 0-50 mm;
    interaction of the prediction: intersection volume (cm^3, 5 mm voxels), deepest penetration (cm), contact (a hand
    vertex within 5 mm). Clips: means over the frames the truth annotates. Writes metrics.json (per frame too)."""
    from rich.table import Table

    from hoitool.errors import InputError
    from hoitool.metrics.recon_scene import METRICS, EvalConfig
    from hoitool.metrics.reconstruction import ALIGN_MODES
    from hoitool.pipelines.evaluate_recon import evaluate_reconstruction, read_inputs
    from hoitool.utils.io import write_json

    setup_logging(verbose)
    with user_errors():
        if align is not None and align not in ALIGN_MODES:
            raise InputError(f"--align must be one of {', '.join(ALIGN_MODES)}, got {align!r}")
        path = out or (pred / "metrics.json")
        if path.is_dir():
            raise InputError(f"--out {path} is a folder: give a file name, e.g. {path / 'metrics.json'}")
        cfg = EvalConfig(align=align, points=points, rotations=rotations, interaction=not no_interaction)
        inputs = read_inputs(pred, truth, mano_dir=mano_dir, scale=scale)
        with progress_bar(f"evaluating {inputs.pred.num_frames} frame(s)") as update:
            rep = evaluate_reconstruction(inputs, cfg, progress=update)
        rep["settings"]["truth_scale"] = scale
        write_json(path, rep)
        m = rep["metrics"]
        t = Table(title=plain(f"{pred} vs {truth} ({len(rep['frames'])} frame{'s' if len(rep['frames']) > 1 else ''})"))
        for col, just in (("metric", "left"), ("value", "right"), ("unit", "left"), ("definition", "left")):
            t.add_column(col, justify=just)
        for k, (unit, text) in METRICS.items():
            if k in m:
                t.add_row(k, f"{m[k]:.3f}", unit, plain(text))
        console.print(t)
        s = rep["settings"]
        lines = [f"{rep['kind']} · {rep['side']} hand · align {s['align']} · {s['points']} points per object",
                 f"truth hand given as {rep['truth_hand']}; CD_h from {rep['cd_h_frame']}"
                 + (f"; hand model: {rep['hand_model']}" if rep["hand_model"] else "")]
        if rep["frames_not_predicted"]:
            miss = rep["frames_not_predicted"]
            lines.append(f"{len(miss)} truth frames are not in the prediction, skipped: {', '.join(map(str, miss[:8]))}"
                         + (" ..." if len(miss) > 8 else ""))
        summary("evaluate reconstruction", [path], lines)
