"""scripts/bench_refinenet.py on a tiny prepared folder with an untrained network (which leaves the
hands where they are): rows, figures and the JSON, and a model of another hand refused."""

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from hoitool.hand.model import hand_fingerprint
from hoitool.hand.subset import even_subset
from hoitool.refine import RefineConfig, RefineNet
from hoitool.refine.data import Perturbation

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_refinenet.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_refinenet", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model(path: Path, hand, hand_sha: str | None = None) -> Path:
    cfg = RefineConfig(surface_points=16, width=16, depth=1)
    net = RefineNet(cfg, torch.as_tensor(even_subset(hand, 16)))
    torch.save({"kind": "refinenet", "step": 0, "state_dict": net.state_dict(), "config": asdict(cfg),
                "perturbation": asdict(Perturbation(0.1, 0.05, 0.005)), "data": "elsewhere", "hand": hand.source,
                "hand_sha": hand_sha or hand_fingerprint(hand)}, path)
    return path


def _run(monkeypatch, *argv) -> int:
    monkeypatch.setattr(sys, "argv", ["bench_refinenet.py", *map(str, argv)])
    return _bench().main()


def test_untrained_network_rows_and_json(tiny_prepared, tmp_path, monkeypatch, right_hand):
    model = _model(tmp_path / "model.pt", right_hand)
    out = tmp_path / "bench.json"
    rc = _run(monkeypatch, "--model", model, "--heldout", tiny_prepared, "--records", 2, "--perturbations", 2,
              "--device", "cpu", "--out", out)
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["perturbation"] == {"articulation": 0.1, "rotation": 0.05, "translation_m": 0.005}
    assert r["perturbation_as_in_training"] and len(r["records"]) == 2 and r["iterations"] == 3
    t = r["table"]
    assert list(t) == ["ground truth", "perturbed", "iteration 1", "iteration 2", "iteration 3"]
    assert t["ground truth"]["hands"] == 2 and t["perturbed"]["hands"] == 4
    assert t["ground truth"]["mpjpe_mm"] == 0 and t["ground truth"]["vertex_mm"] == 0
    assert t["perturbed"]["mpjpe_mm"] > 1 and t["perturbed"]["vertex_mm"] > 1
    for k in ("mpjpe_mm", "vertex_mm", "max_depth_mm", "intersection_cm3", "contact_ratio", "fingers_in_contact"):
        assert t["iteration 3"][k] == pytest.approx(t["perturbed"][k], abs=1e-4)  # the zero head: no change
    assert t["iteration 3"]["better"] == 0.0 and r["seconds_per_hand"] > 0


def test_noise_options_and_another_hand(tiny_prepared, tmp_path, monkeypatch, right_hand, capsys):
    out = tmp_path / "bench.json"
    rc = _run(monkeypatch, "--model", _model(tmp_path / "m.pt", right_hand), "--heldout", tiny_prepared, "--records", 1,
              "--perturbations", 1, "--translation-noise", 0, "--rotation-noise", 0, "--articulation-noise", 0,
              "--device", "cpu", "--out", out)
    r = json.loads(out.read_text())
    assert rc == 0 and not r["perturbation_as_in_training"] and r["table"]["perturbed"]["vertex_mm"] < 1e-3
    rc = _run(monkeypatch, "--model", _model(tmp_path / "other.pt", right_hand, "0123456789abcdef"), "--heldout",
              tiny_prepared, "--records", 1, "--device", "cpu", "--out", out)
    assert rc == 2 and "same hand" in capsys.readouterr().err
