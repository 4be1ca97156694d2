"""hoitool on real scans: the YCB objects in ../shared/external (never committed; skipped when absent)."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

YCB = Path(__file__).resolve().parents[2] / "shared" / "external" / "objects" / "ycb"
pytestmark = pytest.mark.skipif(not YCB.is_dir(), reason="../shared/external/objects/ycb is not present on this machine")


def _path(name):
    return YCB / name / "textured_simple_reoriented.obj"


@pytest.mark.parametrize("name", ["YcbMustardBottle", "YcbMasterChefCan", "YcbScissors"])
def test_scans_load_and_sign_correctly(name):
    from hoitool.geometry.grid import canonical_sdf
    from hoitool.geometry.mesh import load_mesh
    from hoitool.geometry.sdf import grid_points, winding_number

    mesh, report = load_mesh(_path(name))
    assert report.watertight and 0.05 < report.extent_m < 0.25
    grid, uTo = canonical_sdf(mesh, res=32, truncation_m=0.02)
    mu = mesh.copy()
    mu.apply_transform(uTo)
    pts = grid_points(32).reshape(-1, 3)
    inside = winding_number(mu, pts) > 0.5
    far = np.abs(grid.reshape(-1)) > 2.0 / 31  # more than a voxel from the surface
    assert far.sum() > 1000
    assert np.array_equal(grid.reshape(-1)[far] < 0, inside[far])


@pytest.mark.slow
def test_plan_on_a_scan_and_prepare_it_from_a_manifest(tmp_path, right_hand):
    from hoitool.cli.main import app
    from hoitool.data.prepared import load_record
    from hoitool.data.records import HOIRecord, write_manifest
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.geometry.grid import SDFVolume, canonical_sdf
    from hoitool.geometry.mesh import load_mesh

    mesh, _ = load_mesh(_path("YcbMustardBottle"))
    gb = GraspPlanner(right_hand).plan(mesh, SDFVolume(*canonical_sdf(mesh)), n=2, seed=0, key="mustard", max_candidates=128)
    assert gb.params.batch_size >= 1, gb.rejected
    p = gb.params.numpy()
    recs = [HOIRecord(str(_path("YcbMustardBottle")), "YcbMustardBottle", "right", *(p[k][i] for k in ("global_orient", "hand_pose", "betas", "transl")),
                      id=f"mustard-{i}", source="planner") for i in range(gb.params.batch_size)]
    write_manifest(tmp_path / "ycb.jsonl", recs)
    r = CliRunner().invoke(app, ["prepare-data", "--manifest", str(tmp_path / "ycb.jsonl"), "--out", str(tmp_path / "prep"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    rec = load_record(tmp_path / "prep", 0)
    assert rec.category == "bottle"
    assert rec.quality["penetration_mm"] <= 5.0 and rec.quality["fingers_in_contact"][0]
    assert (rec.object_grid < 0).sum() > 100  # the bottle is in the hand-centric grid
    assert json.loads((tmp_path / "prep" / "stats.json").read_text())["records"] == gb.params.batch_size
