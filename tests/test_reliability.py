"""Resume, caches and stop signals decided by contents, not by names or positions (issue 12).

Each test names the defect it guards against; "before" is what the code did without the fix.
"""

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
import yaml
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.errors import HoiError, InputError
from hoitool.models.vqvae import VQVAEConfig
from hoitool.train import loop
from hoitool.train.loop import TrainConfig, load_checkpoint, train
from hoitool.train.tasks import VQVAETask
from hoitool.utils import signals

TINY_VQ = VQVAEConfig(channels=4, codebook_size=16)
runner = CliRunner()


def _cfg(out, steps, **kw):
    kw = {"checkpoint_every": 2, "log_every": 1, "batch_size": 2, "lr": 1e-3, "warmup": 2, "device": "cpu",
          "schedule": "constant", **kw}
    return TrainConfig(out=str(out), steps=steps, **kw)


def _steps(run):
    return [json.loads(x)["step"] for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


# -- resume ------------------------------------------------------------------------------------
def test_resume_path_seeds_a_fresh_run_once_then_the_run_continues_itself(tiny_prepared, tmp_path):
    """Before: with --resume PATH every call restarted from PATH at step 0 (steps 1-4 twice)."""
    task = VQVAETask(tiny_prepared, TINY_VQ)
    train(task, _cfg(tmp_path / "a", 2))
    first = train(task, _cfg(tmp_path / "b", 4, resume=str(tmp_path / "a" / "checkpoints" / "last.pt")))
    assert first.resumed_from == 0 and first.step == 4
    second = train(task, _cfg(tmp_path / "b", 6, resume=str(tmp_path / "a" / "checkpoints" / "last.pt")))
    assert second.resumed_from == 4 and second.step == 6 and len(second.losses) == 2
    assert _steps(tmp_path / "b") == [1, 2, 3, 4, 5, 6]
    # the seed's weights were used: a run folder, a checkpoint and a model.pt all seed the same way
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    for src in (tmp_path / "a", tmp_path / "a" / "model.pt"):
        r = train(task, _cfg(tmp_path / f"c{src.name}", 1, resume=str(src), lr=0.0))
        c = load_checkpoint(r.run / "checkpoints" / "last.pt")
        key = "encoder.conv_in.weight"
        want = a["ema"][key] if src.name == "model.pt" else a["model"][key]
        assert torch.equal(c["model"][key], want)


def test_resume_messages(tiny_prepared, tmp_path):
    """Before: a folder gave 'unreadable (IsADirectoryError)', a model.pt 'is a None checkpoint',
    --out FILE a raw FileExistsError."""
    task = VQVAETask(tiny_prepared, TINY_VQ)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="without checkpoints/last.pt or model.pt"):
        train(task, _cfg(tmp_path / "x", 1, resume=str(tmp_path / "empty")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        train(task, _cfg(tmp_path / "file", 1))


def test_metrics_are_trimmed_to_the_checkpoint_on_resume(tiny_prepared, tmp_path):
    """Before: metrics.jsonl kept steps 3-4 twice after a crash between checkpoints."""
    task = VQVAETask(tiny_prepared, TINY_VQ)

    def crash(step, total, entry):
        if step == 3:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        train(task, _cfg(tmp_path / "r", 6), crash)
    assert _steps(tmp_path / "r") == [1, 2, 3] and load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 2
    train(task, _cfg(tmp_path / "r", 5))
    assert _steps(tmp_path / "r") == [1, 2, 3, 4, 5]


def test_stop_signal_is_taken_at_a_step_boundary_and_the_run_resumes_exactly(tiny_prepared, tmp_path):
    """Before: SIGTERM killed the run (no checkpoint), and Ctrl-C inside a step could save
    updated weights with the old step. Now the step finishes, the checkpoint is saved, and
    resuming gives the same losses as a run that was never stopped."""
    task = VQVAETask(tiny_prepared, TINY_VQ)
    full = train(task, _cfg(tmp_path / "full", 6))

    def kill(step, total, entry):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-run; handled at the next boundary

    with pytest.raises(signals.Interrupted) as e:
        train(task, _cfg(tmp_path / "r", 6, checkpoint_every=100), kill)
    assert e.value.signum == signal.SIGTERM and signals.exit_code(e.value) == 143
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3
    rest = train(task, _cfg(tmp_path / "r", 6, checkpoint_every=100))
    assert rest.resumed_from == 3
    assert np.allclose(full.losses[3:], rest.losses, rtol=1e-5, atol=1e-7)
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signals._raise)  # handlers restored


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt here even when the suite runs as a background job (a shell
    starts those with SIGINT ignored, and Python keeps it so)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_right_after_the_optimiser_step_does_not_apply_a_batch_twice(tiny_prepared, tmp_path, monkeypatch, sigint_raises):
    """Before: Ctrl-C between opt.step() and step += 1 saved updated weights with the old step,
    so the resumed run applied that batch again (its losses left the uninterrupted curve)."""
    task = VQVAETask(tiny_prepared, TINY_VQ)
    full = train(task, _cfg(tmp_path / "full", 6))
    calls = [0]

    class InterruptedAdamW(torch.optim.AdamW):
        def step(self, *a, **k):
            out = super().step(*a, **k)
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # lands right after the update of step 3
            return out

    monkeypatch.setattr(loop.torch.optim, "AdamW", InterruptedAdamW)
    with pytest.raises(KeyboardInterrupt):
        train(task, _cfg(tmp_path / "r", 6, checkpoint_every=100))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3
    rest = train(task, _cfg(tmp_path / "r", 6, checkpoint_every=100))
    assert np.allclose(full.losses[3:], rest.losses, rtol=1e-5, atol=1e-7), (full.losses, rest.losses)


def test_read_model_takes_the_newer_of_model_pt_and_last_pt(tiny_prepared, tmp_path, sigint_raises):
    """Before: model.pt (step 2) won over a newer checkpoints/last.pt (step 3)."""
    from hoitool.prior.checkpoint import read_model

    task = VQVAETask(tiny_prepared, TINY_VQ)
    train(task, _cfg(tmp_path / "r", 2))

    def stop(step, total, entry):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(task, _cfg(tmp_path / "r", 8, checkpoint_every=100), stop)
    assert torch.load(tmp_path / "r" / "model.pt", weights_only=False)["step"] == 2
    d = read_model(tmp_path / "r", "vqvae")
    assert d["step"] == 3 and d["path"].endswith("last.pt")


# -- multi-process logic ------------------------------------------------------------------------
def test_device_and_backend_choice(monkeypatch):
    """Before: the backend followed torch.cuda.is_available(), not --device, and --device cuda put
    every torchrun process on cuda:0."""
    assert loop.backend_for(torch.device("cpu")) == "gloo"
    assert loop.backend_for(torch.device("cuda", 1)) == "nccl"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert loop.resolve_device("cuda") == torch.device("cuda", 2)
    assert loop.resolve_device("auto") == torch.device("cuda", 2)
    assert loop.resolve_device("cpu") == torch.device("cpu")  # CPU training on a GPU machine: gloo
    with pytest.raises(InputError, match="one GPU"):
        loop.resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA device"):
        loop.resolve_device("cuda")


_NAN_SCRIPT = """
import sys, torch
from torch import nn
from hoitool.errors import HoiError
from hoitool.train.loop import TrainConfig, train

class Task:
    name = "toy"
    def config(self): return {"model": {}}
    def build(self, device): return nn.Linear(2, 1)
    def size(self): return 8
    def loss(self, model, idx, keys, device):
        import torch.distributed as dist
        y = model(torch.ones(len(idx), 2)).mean()
        return (y * float("nan") if dist.get_rank() == 1 and keys[0][1] == 2 else y ** 2), {}
    def export(self, model): return {}

try:
    train(Task(), TrainConfig(out=sys.argv[1], steps=6, batch_size=2, device="cpu", checkpoint_every=100))
except HoiError as e:
    import os
    os.write(1, f"error: {e}\\n".encode())  # one write: the two ranks' lines must not interleave (print writes pieces)
    sys.exit(2)
"""


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_with_the_same_line(tmp_path):
    """Before: rank 1 printed the error, rank 0 died with gloo 'Connection closed by peer'."""
    script = tmp_path / "nan_run.py"
    script.write_text(_NAN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                        str(script), str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert out.count("error: loss is") == 2, out[-3000:]
    # torchrun's launcher reports the failed workers with its own traceback; the workers have none
    assert "Connection closed" not in out and "hoitool/train/loop.py" not in out, out[-3000:]


_ENCODE_SCRIPT = """
import sys
from pathlib import Path
import numpy as np, torch, torch.distributed as dist
from hoitool.models.unet3d import UNetConfig
from hoitool.train import tasks
from hoitool.train.loop import init_distributed

calls = []
original = tasks.GHOPTask._encode
def spy(self, *a, **k):
    calls.append(1)
    return original(self, *a, **k)
tasks.GHOPTask._encode = spy
init_distributed(torch.device("cpu"))
t = tasks.GHOPTask(sys.argv[1], None, UNetConfig(channels=8), tasks.PriorOptions(copies=1), cache=Path(sys.argv[2]), encode=False)
t.encode()
import os
os.write(1, f"rank {dist.get_rank()} encoded {len(calls)} {type(t.latents).__name__} {float(np.abs(np.asarray(t.latents)).sum()):.4f}\\n".encode())
"""


@pytest.mark.slow
def test_rank_zero_alone_encodes_the_latent_cache(tiny_prepared, tmp_path):
    """Before: every rank encoded the dataset and renamed its own file onto latents.pt."""
    script = tmp_path / "enc.py"
    script.write_text(_ENCODE_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
                        str(script), str(tiny_prepared), str(tmp_path / "latents")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = sorted(x for x in r.stdout.splitlines() if x.startswith("rank "))
    assert len(lines) == 2, r.stdout
    (_, r0, _, n0, kind0, s0), (_, r1, _, n1, kind1, s1) = (x.split() for x in lines)
    assert (r0, n0, r1, n1) == ("0", "1", "1", "0")  # rank 0 encoded, rank 1 read its cache
    assert kind0 == kind1 == "memmap" and s0 == s1


# -- the prior's latent cache ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_vqvaes(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("vq")
    task = VQVAETask(tiny_prepared, TINY_VQ)
    train(task, _cfg(root / "vq1", 2))
    train(task, _cfg(root / "vq2", 2, seed=1))
    return root / "vq1", root / "vq2"


def test_latent_cache_follows_the_vqvae_weights_not_its_path(tiny_prepared, two_vqvaes, tmp_path):
    """Before: the cache key was the VQ-VAE's path, so retraining it in place kept stale latents."""
    import shutil

    from hoitool.models.unet3d import UNetConfig
    from hoitool.train.tasks import GHOPTask, PriorOptions

    vq = tmp_path / "vq"
    shutil.copytree(two_vqvaes[0], vq)
    opts = PriorOptions(copies=1)
    a = GHOPTask(tiny_prepared, vq, UNetConfig(channels=8), opts, cache=tmp_path / "latents")
    assert isinstance(a.latents, np.memmap)
    first = np.array(a.latents)
    shutil.rmtree(vq)
    shutil.copytree(two_vqvaes[1], vq)  # the same path, other weights
    b = GHOPTask(tiny_prepared, vq, UNetConfig(channels=8), opts, cache=tmp_path / "latents")
    fresh = GHOPTask(tiny_prepared, two_vqvaes[1], UNetConfig(channels=8), opts, cache=None)
    assert not np.allclose(first, np.array(b.latents))
    np.testing.assert_allclose(np.array(b.latents), np.array(fresh.latents), atol=1e-6)
    # the prior's resume check includes the VQ-VAE: a run started with vq1 refuses vq2
    run = tmp_path / "prior"
    train(a, _cfg(run, 1, batch_size=2))
    with pytest.raises(InputError, match=r"other model options \(vqvae_sha256 differ\)"):
        train(b, _cfg(run, 2))


def test_streamed_normaliser_equals_the_in_memory_one():
    """The cache is read in chunks (never whole); the statistics are the same as in memory."""
    from hoitool.prior.model import GridNormaliser

    g = torch.Generator().manual_seed(0)
    z = torch.randn(70, 3, 16, 16, 16, generator=g) * 2 + 0.5
    f = (torch.rand(70, 20, 16, 16, 16, generator=g) * 0.12).half()
    one, many = GridNormaliser.fit(z, f, chunk=1000), GridNormaliser.fit(z.numpy(), f.numpy(), chunk=16)
    u = one.unit(z, f.float())  # the reference: plain mean / std over everything
    np.testing.assert_allclose(one.template[0], u.mean(0), atol=1e-5)
    np.testing.assert_allclose(one.spread[0], u.std(0).clamp_min(0.05), atol=1e-5)
    two = np.stack([z.numpy(), z.numpy() * 0], 1)  # copy 0 of two: a strided view, as the cache's
    strided = GridNormaliser.fit(two[:, 0], f.numpy(), chunk=16)
    for k, v in one.state().items():
        np.testing.assert_allclose(np.asarray(v), np.asarray(many.state()[k]), atol=1e-6)
        np.testing.assert_allclose(np.asarray(v), np.asarray(strided.state()[k]), atol=1e-6)


def test_prepared_folder_records_its_hand_and_a_mismatch_is_refused(tiny_prepared, tmp_path):
    """Before: shards' grids could come from MANO and the prior's hand fields from the open hand."""
    import shutil

    from hoitool.train.tasks import prepared_hand

    cfg = yaml.safe_load((tiny_prepared / "config.yaml").read_text())
    assert cfg["hand"]["source"].startswith("open hand") and cfg["hand"]["mano_dir"] is None
    assert prepared_hand(tiny_prepared).source == cfg["hand"]["source"]
    other = tmp_path / "data"
    shutil.copytree(tiny_prepared, other)
    cfg["hand"].update(source="MANO (elsewhere)", fingerprint="0123456789abcdef")
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match="pass the --mano-dir"):
        prepared_hand(other)


# -- prepare-data ---------------------------------------------------------------------------------
def _manifest(tiny_prepared, path: Path, n: int, **changes):
    lines = (tiny_prepared / "manifest.jsonl").read_text().splitlines()[:n]
    recs = []
    for line in lines:
        d = json.loads(line)
        d["object_mesh"] = str((tiny_prepared / d["object_mesh"]).resolve())
        d.update(changes)
        recs.append(json.dumps(d))
    path.write_text("\n".join(recs) + "\n")
    return path


def _prep(*args):
    return runner.invoke(app, ["prepare-data", "--workers", "1", "--no-preview", *map(str, args)])


def test_changed_manifest_is_redone_not_ignored(tiny_prepared, tmp_path):
    """Before: 2 records appended to a 2-record manifest gave '(1 already done)' and an index
    of 2; the same manifest by absolute path was refused."""
    m = _manifest(tiny_prepared, tmp_path / "man.jsonl", 2)
    out = tmp_path / "out"
    r = _prep("--manifest", m, "--out", out)
    assert r.exit_code == 0, r.output
    assert len((out / "index.jsonl").read_text().splitlines()) == 2
    _manifest(tiny_prepared, m, 4)
    r = _prep("--manifest", m, "--out", out)
    assert r.exit_code == 0, r.output
    index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == 4 and len({e["id"] for e in index}) == 4
    cwd = os.getcwd()
    try:  # the same manifest by a relative path: resumed, nothing redone
        os.chdir(tmp_path)
        r = _prep("--manifest", "man.jsonl", "--out", out)
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0 and "(1 already done)" in r.output, r.output


def test_reordered_manifest_and_edited_mesh_are_redone(tiny_prepared, tmp_path):
    """Records in another order give the index in that order; a mesh rewritten with the same
    size and time (cp -p, rsync -a) is still told apart by its contents."""
    import shutil

    m = _manifest(tiny_prepared, tmp_path / "man.jsonl", 4)
    out = tmp_path / "out"
    assert _prep("--manifest", m, "--out", out).exit_code == 0
    lines = m.read_text().splitlines()
    m.write_text("\n".join(lines[::-1]) + "\n")
    r = _prep("--manifest", m, "--out", out)
    assert r.exit_code == 0 and "(0 already done)" in r.output, r.output
    ids = [json.loads(x)["id"] for x in (out / "index.jsonl").read_text().splitlines()]
    assert ids == [json.loads(x)["id"] for x in lines[::-1]]
    # a mesh edited in place, with its size and modification time put back
    mesh_path = Path(json.loads(lines[0])["object_mesh"])
    copy = tmp_path / "meshes" / mesh_path.name
    copy.parent.mkdir()
    shutil.copy2(mesh_path, copy)
    d = [json.loads(x) for x in lines[::-1]]
    for x in d:
        x["object_mesh"] = str(copy) if Path(x["object_mesh"]) == mesh_path else x["object_mesh"]
    m.write_text("\n".join(json.dumps(x) for x in d) + "\n")
    assert _prep("--manifest", m, "--out", out).exit_code == 0
    st = copy.stat()
    text = copy.read_text()
    copy.write_text(text.replace("v ", "v  ", 1)[:-1])  # other contents, same length
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert copy.stat().st_size == st.st_size
    r = _prep("--manifest", m, "--out", out)
    assert r.exit_code == 0 and "(0 already done)" in r.output, r.output


def test_records_that_touch_nothing_are_reported(tiny_prepared, tmp_path):
    m = _manifest(tiny_prepared, tmp_path / "man.jsonl", 2)
    lines = m.read_text().splitlines()
    d = json.loads(lines[1])
    d["transl"] = [d["transl"][0] + 0.12, d["transl"][1], d["transl"][2]]  # 12 cm off: near, but not touching
    lines[1] = json.dumps(d)
    m.write_text("\n".join(lines) + "\n")
    r = _prep("--manifest", m, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["touching_nothing"] == [f"{m}:2"]
    assert "1 record(s) touch nothing" in r.output


def test_manifest_checks_name_the_line(tiny_prepared, tmp_path):
    """Before: transl in millimetres, an empty category and scale true were accepted, and a missing
    mesh failed only after other objects' SDFs were computed."""
    cases = {
        "mm": ({"transl": [30.0, 0.0, 20.0]}, "more than 0.3 m from the object"),
        "cat": ({"category": ""}, "category is empty"),
        "scale": ({"scale": True}, "scale must be a positive number, got true"),
        "missing": ({}, "object mesh not found"),
    }
    for name, (change, msg) in cases.items():
        m = _manifest(tiny_prepared, tmp_path / f"{name}.jsonl", 2)
        lines = m.read_text().splitlines()
        d = json.loads(lines[1])
        d.update(change)
        if name == "missing":
            d["object_mesh"] = str(tmp_path / "nowhere.obj")
        lines[1] = json.dumps(d)
        m.write_text("\n".join(lines) + "\n")
        out = tmp_path / f"out-{name}"
        r = _prep("--manifest", m, "--out", out)
        assert r.exit_code == 2, (name, r.output)
        assert msg in r.output and f"{name}.jsonl:2" in r.output.replace("\n", ""), (name, r.output)
        assert not (out / "index.jsonl").exists()
        if name == "missing":
            assert not list(out.glob("objects/*.npz"))  # checked before any work


def test_options_of_the_other_mode_are_refused(tiny_prepared, tmp_path):
    m = _manifest(tiny_prepared, tmp_path / "m.jsonl", 1)
    r = _prep("--manifest", m, "--out", tmp_path / "a", "--seed", "3", "--categories", "mug")
    assert r.exit_code == 2 and "--seed, --categories apply to --synthetic only" in r.output, r.output
    r = _prep("--synthetic", "2", "--out", tmp_path / "b", "--scale", "0.001")
    assert r.exit_code == 2 and "--scale applies to --manifest" in r.output, r.output


def test_bad_mano_dir_is_one_line_with_workers(tmp_path):
    """Before: with --workers 2 an 88-line BrokenProcessPool traceback, exit 1."""
    (tmp_path / "mano").mkdir()
    r = runner.invoke(app, ["prepare-data", "--synthetic", "64", "--out", str(tmp_path / "o"), "--workers", "2",
                            "--mano-dir", str(tmp_path / "mano")])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 3, r.output


def test_manifest_folder_moves_with_its_meshes(tiny_prepared, tmp_path):
    """Before: shards stored absolute mesh paths, so a moved dataset lost its meshes."""
    import shutil

    from hoitool.data.prepared import load_record

    ds = tmp_path / "dataset"
    (ds / "meshes").mkdir(parents=True)
    lines = []
    for line in (tiny_prepared / "manifest.jsonl").read_text().splitlines()[:2]:
        d = json.loads(line)
        src = tiny_prepared / d["object_mesh"]
        shutil.copy(src, ds / "meshes" / src.name)
        d["object_mesh"] = f"meshes/{src.name}"
        lines.append(json.dumps(d))
    (ds / "man.jsonl").write_text("\n".join(lines) + "\n")
    r = _prep("--manifest", ds / "man.jsonl", "--out", ds / "prepared")
    assert r.exit_code == 0, r.output
    moved = tmp_path / "elsewhere"
    shutil.move(str(ds), str(moved))
    rec = load_record(moved / "prepared", 0)
    assert Path(rec.object_mesh).is_file() and str(moved) in rec.object_mesh


def test_planner_acceptance_counts_every_grasp_that_passed(tmp_path, monkeypatch):
    """Before: acceptance was counted after keeping the n asked for (6 % reported for 17 %)."""
    from hoitool.data import prepare as prep
    from hoitool.data.synthetic.planner import GraspPlanner

    seen = []
    original = GraspPlanner.plan

    def spy(self, *a, **k):
        gb = original(self, *a, **k)
        seen.append((gb.passed, gb.params.batch_size, gb.candidates))
        return gb

    monkeypatch.setattr(GraspPlanner, "plan", spy)
    res = prep.prepare(prep.PrepareConfig(out=tmp_path / "o", synthetic=1, categories=["box"], grasps_per_object=1,
                                          workers=1, preview=False))
    passed, kept, cand = map(sum, zip(*seen))
    st = res.stats["planner"]
    assert kept == 1 and passed > kept, seen  # a box passes more than the one grasp asked for
    assert (st["accepted"], st["kept"], st["candidates"]) == (passed, kept, cand)
    assert st["acceptance_rate"] == pytest.approx(passed / cand)


def test_sample_refuses_a_folder_with_leftovers(tmp_path):
    """Before: only samples.npz was checked, so a leftover 007/ showed up among new samples."""
    (tmp_path / "out" / "007").mkdir(parents=True)
    r = runner.invoke(app, ["sample", "mug", "--n", "2", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "not empty" in r.output, r.output


# -- signals in the commands -------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


@pytest.mark.slow
def test_sigterm_stops_prepare_data_and_its_workers(tmp_path):
    """Before: the spawn workers were left orphaned (parent pid 1, ~440 MB each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hoitool", "prepare-data", "--synthetic", "64", "--workers", "2",
                             "--out", str(tmp_path / "o"), "--no-preview"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 120
    kids = []
    while time.time() < deadline and len(kids) < 2:
        time.sleep(0.5)
        kids = [k for k in _children(proc.pid) if "spawn" in Path(f"/proc/{k}/cmdline").read_text(errors="ignore")] if proc.poll() is None else []
    assert len(kids) >= 2, "the workers never started"
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM)" in err
    time.sleep(2)
    alive = [k for k in kids if Path(f"/proc/{k}").exists() and "Z" not in (Path(f"/proc/{k}/stat").read_text().split()[2:3] or ["Z"])]
    assert not alive, f"workers still running: {alive}"
    assert not (tmp_path / "o" / "index.jsonl").exists()


@pytest.mark.slow
def test_sigterm_during_training_saves_the_step(tiny_prepared, tmp_path):
    """Before: SIGTERM lost everything since the last periodic checkpoint (rc 143, no file)."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hoitool", "train", "vqvae", "--data", str(tiny_prepared), "--out", str(run),
                             "--steps", "100000", "--batch-size", "2", "--checkpoint-every", "100000", "--log-every", "1",
                             "--channels", "4", "--codebook-size", "16", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.exists() and len(m.read_text().splitlines()) >= 3:
            break
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM)" in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] >= 3
    assert _steps(run)[-1] >= state["step"]
