"""The training loop: batch order, resume, atomic checkpoints, DDP on CPU (gloo)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hoitool.models.vqvae import VQVAEConfig
from hoitool.train import loop
from hoitool.train.loop import TrainConfig, global_batch, learning_rate, load_checkpoint, train
from hoitool.train.tasks import VQVAETask

TINY_VQ = VQVAEConfig(channels=4, codebook_size=16)
TINY_ARGS = ["--channels", "4", "--codebook-size", "16", "--device", "cpu"]


def test_global_batch_covers_each_epoch_once():
    n, B = 10, 4
    seen = np.concatenate([global_batch(0, s, B, n) for s in range(5)])  # 20 = two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])
    assert np.array_equal(global_batch(0, 3, B, n), global_batch(0, 3, B, n))


def test_learning_rate_warmup_and_cosine():
    cfg = TrainConfig(lr=1.0, warmup=10, steps=110)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9) == pytest.approx(1.0)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 60) == pytest.approx(0.55)
    assert learning_rate(cfg, 110) == pytest.approx(0.1)


def _cfg(out, steps, **kw):
    return TrainConfig(out=str(out), steps=steps, batch_size=2, lr=1e-3, warmup=2, checkpoint_every=2, log_every=1, device="cpu", **kw)


def test_resumed_run_continues_the_same_curve(tiny_prepared, tmp_path):
    task = VQVAETask(tiny_prepared, TINY_VQ)
    full = train(task, _cfg(tmp_path / "full", 6, schedule="constant"))  # the cosine schedule depends on --steps
    first = train(task, _cfg(tmp_path / "split", 4, schedule="constant"))
    second = train(task, _cfg(tmp_path / "split", 6, schedule="constant"))
    assert first.step == 4 and second.resumed_from == 4 and second.step == 6
    assert np.allclose(first.losses + second.losses, full.losses, rtol=1e-5, atol=1e-7)
    model = torch.load(tmp_path / "split" / "model.pt", weights_only=False)
    assert model["kind"] == "vqvae" and model["step"] == 6
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]


def test_failed_checkpoint_write_keeps_the_previous_one(tiny_prepared, tmp_path, monkeypatch):
    task = VQVAETask(tiny_prepared, TINY_VQ)
    train(task, _cfg(tmp_path / "run", 2))
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(loop.torch, "save", dying_save)
    with pytest.raises(OSError):
        train(task, _cfg(tmp_path / "run", 4))
    monkeypatch.setattr(loop.torch, "save", real_save)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert not list((tmp_path / "run" / "checkpoints").glob("*.part"))


def test_other_model_options_are_refused_on_resume(tiny_prepared, tmp_path):
    from hoitool.errors import InputError

    train(VQVAETask(tiny_prepared, TINY_VQ), _cfg(tmp_path / "run", 2))
    with pytest.raises(InputError, match="other model options"):
        train(VQVAETask(tiny_prepared, VQVAEConfig(channels=8, codebook_size=16)), _cfg(tmp_path / "run", 4))
    with pytest.raises(InputError, match="already holds a run"):
        train(VQVAETask(tiny_prepared, TINY_VQ), _cfg(tmp_path / "run", 4, resume="never"))


def _cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *[str(a) for a in args]], capture_output=True, text=True, env=env, timeout=600, **kw)


def _losses(run):
    return [json.loads(x)["loss"] for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(tiny_prepared, tmp_path):
    common = ["train", "vqvae", "--data", tiny_prepared, "--steps", "4", "--batch-size", "4", "--log-every", "1", *TINY_ARGS]
    one = _cli("hoitool", *common, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    two = _cli("torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "hoitool", *common,
               "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 4
    assert np.allclose(a, b, rtol=1e-4), (a, b)
    assert yaml_world(tmp_path / "two") == 2


def yaml_world(run):
    import yaml

    return yaml.safe_load((Path(run) / "config.yaml").read_text())["world_size"]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tiny_prepared, tmp_path):
    run = tmp_path / "run"
    args = ["hoitool", "train", "vqvae", "--data", tiny_prepared, "--out", run, "--steps", "10000", "--batch-size", "2",
            "--checkpoint-every", "2", *TINY_ARGS]
    proc = subprocess.Popen([sys.executable, "-m", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if ckpt.exists() and load_checkpoint(ckpt)["step"] >= 4:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)  # no chance to clean up
    finally:
        proc.wait()
    step = load_checkpoint(ckpt)["step"]  # readable whatever moment the kill came
    assert step >= 4 and step % 2 == 0
    r = _cli(*args[:-len(TINY_ARGS) - 4], "--steps", str(step + 2), "--batch-size", "2", "--checkpoint-every", "2", *TINY_ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed at {step}" in r.stdout
    assert load_checkpoint(ckpt)["step"] == step + 2
