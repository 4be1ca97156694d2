import logging

import numpy as np
import pytest
import trimesh

from hoitool.errors import InputError
from hoitool.geometry.mesh import load_mesh


def _write(tmp_path, mesh, name="m.obj"):
    p = tmp_path / name
    mesh.export(p)
    return p


def test_loads_valid_mesh(tmp_path):
    p = _write(tmp_path, trimesh.creation.box((0.05, 0.08, 0.1)))
    m, rep = load_mesh(p)
    assert rep.watertight and m.volume == pytest.approx(0.05 * 0.08 * 0.1, rel=1e-6)


def test_inverted_mesh_is_turned_outward(tmp_path):
    box = trimesh.creation.box((0.05, 0.05, 0.05))
    box.invert()
    m, rep = load_mesh(_write(tmp_path, box))
    assert m.volume > 0 and rep.repaired


def test_millimetres_suggest_scale(tmp_path):
    p = _write(tmp_path, trimesh.creation.box((50.0, 80.0, 100.0)))
    with pytest.raises(InputError, match=r"millimetres: pass --scale 0\.001"):
        load_mesh(p)
    with pytest.raises(InputError, match=r"centimetres: pass --scale 0\.01"):
        load_mesh(_write(tmp_path, trimesh.creation.box((5.0, 8.0, 10.0)), "cm.obj"))
    m, _ = load_mesh(p, scale=0.001)
    assert np.allclose(m.extents, [0.05, 0.08, 0.1])


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_mesh(tmp_path / "nope.obj")
    (tmp_path / "empty.obj").write_text("")
    with pytest.raises(InputError, match="empty"):
        load_mesh(tmp_path / "empty.obj")
    (tmp_path / "junk.ply").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(InputError):
        load_mesh(tmp_path / "junk.ply")


def test_nan_vertices(tmp_path):
    p = tmp_path / "nan.obj"
    p.write_text("v 0 0 0\nv nan 0 0\nv 0 0.05 0\nv 0 0 0.05\nf 1 2 3\nf 1 3 4\nf 1 4 2\nf 2 4 3\n")
    with pytest.raises(InputError, match="NaN"):
        load_mesh(p)


def test_non_watertight_warns_but_loads(tmp_path, caplog):
    box = trimesh.creation.box((0.05, 0.05, 0.05))
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-2], process=False)
    with caplog.at_level(logging.WARNING):
        m, rep = load_mesh(_write(tmp_path, open_box))
    assert not rep.watertight
    assert "not watertight" in caplog.text
