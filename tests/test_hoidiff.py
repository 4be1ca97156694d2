"""HOIDiffusion's image model: condition encoders, anchor attention, training on a tiny Stable Diffusion
folder and on the default model, synthesis with labels, bad inputs."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.hoidiff.data import RenderFrames, parse_conditions, prompt_for
from hoitool.hoidiff.model import CONDITIONS, TRAINED_ON_BASE, HoiDiffModel, adapter_layout, default_config
from hoitool.hoidiff.video import AnchorAttnProcessor, anchor_attention

runner = CliRunner()
SMALL = ["--channels", "16,16,32,32", "--text-tokens", "2"]


# -- fixtures: a hand-made render folder, a tiny SD folder, two trained runs --------------------------------------


def _make_renders(root: Path, size: int = 40, stems=("000", "001", "002"), cats=("mug", "bowl"), seed: int = 0) -> Path:
    """The files `hoitool render` writes (random images, a rectangle per condition map, minimal labels)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i, cat in enumerate(cats):
        tid = f"{i:06d}"
        d = root / "trajectories" / tid
        d.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / "background.png")
        for k, s in enumerate(stems):
            for name in ("normals", "segmentation", "skeleton"):
                a = np.zeros((size, size, 3), np.uint8)
                a[size // 4 + 2 * k: size // 2 + 2 * k, size // 4: 3 * size // 4] = rng.integers(1, 255, 3, dtype=np.uint8)
                Image.fromarray(a).save(d / f"{s}_{name}.png")
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{s}_rgb.png")
            Image.fromarray(np.zeros((size, size), np.uint16)).save(d / f"{s}_depth.png")
            (d / f"{s}_labels.json").write_text(json.dumps({"keypoints_2d_px": [[k + 0.5, i + 0.25]] * 21, "cTo": np.eye(4).tolist(),
                                                            "intrinsics": {"fx": 100.0, "fy": 100.0, "cx": size / 2, "cy": size / 2}}))
        lines.append(json.dumps({"id": tid, "dir": f"trajectories/{tid}", "category": cat, "stems": list(stems), "background": "background.png"}))
    (root / "index.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    return _make_renders(tmp_path_factory.mktemp("hoidiff") / "renders")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from hoitool.hoidiff.sdfolder import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("hoidiff") / "sd")


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base_run(renders, tiny_sd, tmp_path_factory):
    before = _digest(tiny_sd)
    run = tmp_path_factory.mktemp("hoidiff") / "run_base"
    res = runner.invoke(app, ["train", "hoidiff", "--data", str(renders), "--out", str(run), "--base", str(tiny_sd), "--steps", "3",
                              "--batch-size", "2", "--lr", "1e-3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert _digest(tiny_sd) == before  # the base folder is only read
    return run


@pytest.fixture(scope="module")
def default_run(renders, tmp_path_factory):
    run = tmp_path_factory.mktemp("hoidiff") / "run_default"
    res = runner.invoke(app, ["train", "hoidiff", "--data", str(renders), "--out", str(run), "--steps", "3", "--batch-size", "2",
                              "--device", "cpu", *SMALL])
    assert res.exit_code == 0, res.output
    return run


def _cond(B, R, seed, names=CONDITIONS):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in names:
        c = torch.zeros(B, 3, R, R)
        c[:, :, R // 4:R // 2, R // 4:3 * R // 4] = torch.rand(B, 3, 1, 1, generator=g)
        out[n] = c
    return out


# -- condition encoders -------------------------------------------------------------------------------------------


def test_encoder_features_of_several_conditions_are_the_sum_of_each_alone():
    torch.manual_seed(0)
    m = HoiDiffModel(default_config(channels=(16, 16, 32, 32), resolution=32, text_tokens=2)).eval()
    c = _cond(2, 32, 1)
    with torch.no_grad():
        zero = m.adapter_features({n: torch.zeros(2, 3, 32, 32) for n in CONDITIONS})
        assert all(f.abs().max() == 0 for f in zero)  # empty conditions give exactly nothing
        sk = m.adapter_features({"skeleton": c["skeleton"]})
        no = m.adapter_features({"normals": c["normals"]})
        both = m.adapter_features({"skeleton": c["skeleton"], "normals": c["normals"]})
        padded = m.adapter_features({"skeleton": c["skeleton"], "normals": c["normals"], "segmentation": torch.zeros(2, 3, 32, 32)})
    for a, b, ab, abz in zip(sk, no, both, padded):
        assert torch.allclose(ab, a + b, atol=1e-6)
        assert torch.equal(ab, abz)  # a condition left out == its zero image
        assert (a - ab).abs().max() > 1e-3 and (b - ab).abs().max() > 1e-3
    # the features have the shapes diffusers adds them at (one per UNet down block)
    channels, strides = adapter_layout(m.cfg.unet, m.cfg.latent_scale)
    assert [tuple(f.shape[1:]) for f in both] == [(c_, 32 // s, 32 // s) for c_, s in zip(channels, strides)]


def test_conditions_change_the_unet_output_and_empty_ones_do_not():
    torch.manual_seed(0)
    m = HoiDiffModel(default_config(channels=(16, 16, 32, 32), resolution=32, text_tokens=2)).eval()
    for enc in m.adapters.values():  # trained-like weights: the random init is small but not zero
        for p in enc.parameters():
            p.data.mul_(3.0)
    x, t, text = torch.randn(2, 3, 32, 32), torch.tensor([10, 500]), torch.randn(2, 384)
    with torch.no_grad():
        plain = m.denoise(x, t, text, None)
        empty = m(x, t, text, {n: torch.zeros(2, 3, 32, 32) for n in CONDITIONS})
        steered = m(x, t, text, _cond(2, 32, 2))
        other = m(x, t, text, _cond(2, 32, 3))
    assert torch.equal(plain, empty)
    assert (steered - plain).abs().mean() > 1e-3 and (steered - other).abs().mean() > 1e-4


def test_base_model_learns_only_encoders_and_decoder_half(tiny_sd):
    from hoitool.hoidiff.sdfolder import load_sd
    from hoitool.hoidiff.train import HoiDiffOptions, model_config

    sd = load_sd(tiny_sd)
    cfg = model_config(HoiDiffOptions(base=str(tiny_sd)))
    assert cfg.resolution == 32 and cfg.latent_scale == 2 and cfg.text == "clip"
    m = HoiDiffModel(cfg, sd.unet)
    keys = list(m.state_dict())
    assert keys and all(k.startswith(TRAINED_ON_BASE) for k in keys)
    assert any(k.startswith("unet.up_blocks.") for k in keys) and any(k.startswith("adapters.normals.") for k in keys)
    frozen = {k: v.clone() for k, v in m.named_parameters() if not m.is_trained(k)}
    assert any(k.startswith("unet.down_blocks.") for k in frozen) and any(k.startswith("unet.mid_block.") for k in frozen)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    text = torch.randn(2, 77, 32)
    m(torch.randn(2, 4, 16, 16), torch.tensor([5, 900]), text, _cond(2, 32, 4)).square().mean().backward()
    opt.step()
    assert all(torch.equal(v, dict(m.named_parameters())[k]) for k, v in frozen.items())
    assert all(not torch.equal(v, m.state_dict()[k]) for k, v in before.items() if k.endswith("weight"))
    # the state dict round-trips onto a fresh model on the same base
    m2 = HoiDiffModel(cfg, load_sd(tiny_sd).unet)
    m2.load_state_dict(m.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    with pytest.raises(RuntimeError):
        m2.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("adapters.")})


# -- anchor attention ---------------------------------------------------------------------------------------------


def _attn():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


def _plain(attn, h):
    from diffusers.models.attention_processor import AttnProcessor2_0

    return AttnProcessor2_0()(attn, h)


def _reference_anchor_attention(attn, h, frames, anchor):
    """Frame by frame and head by head: softmax(q [k_own; k_anchor]^T / sqrt(d)) [v_own; v_anchor]."""
    out = torch.empty_like(h)
    heads = attn.heads
    for b in range(len(h)):
        a = (b // frames) * frames + anchor
        kv_in = torch.cat([h[b], h[a]])
        q, k, v = attn.to_q(h[b]), attn.to_k(kv_in), attn.to_v(kv_in)
        d = q.shape[-1] // heads
        rows = []
        for j in range(heads):
            qj, kj, vj = (z[:, j * d:(j + 1) * d] for z in (q, k, v))
            rows.append(torch.softmax(qj @ kj.T / d ** 0.5, dim=-1) @ vj)
        out[b] = attn.to_out[0](torch.cat(rows, dim=-1))
    return out


def test_anchor_attention_matches_a_slow_reference():
    attn, F_ = _attn(), 3
    h = torch.randn(2 * F_, 7, 16)
    with torch.no_grad():
        assert torch.allclose(AnchorAttnProcessor(F_)(attn, h), _reference_anchor_attention(attn, h, F_, 1), atol=1e-5)
        assert torch.allclose(AnchorAttnProcessor(F_, anchor=2)(attn, h), _reference_anchor_attention(attn, h, F_, 2), atol=1e-5)


def test_anchor_frame_and_identical_frames_get_plain_self_attention():
    attn, F_ = _attn(), 5
    h = torch.randn(2 * F_, 12, 16)  # two groups (the guidance halves) of 5 frames
    proc = AnchorAttnProcessor(F_)
    assert proc.anchor == 2
    with torch.no_grad():
        out, ref = proc(attn, h), _plain(attn, h)
        for g in range(2):
            a = g * F_ + proc.anchor
            assert torch.allclose(out[a], ref[a], atol=1e-5)
        assert (out - ref).abs().max() > 1e-3  # the other frames do see the anchor
        same = h[:1].expand(F_, -1, -1).contiguous()
        assert torch.allclose(proc(attn, same), _plain(attn, same), atol=1e-5)


def test_anchor_attention_ignores_frame_order_and_the_other_group():
    attn, F_ = _attn(), 4
    h = torch.randn(2 * F_, 10, 16)
    proc = AnchorAttnProcessor(F_, anchor=1)
    with torch.no_grad():
        out = proc(attn, h)
        perm = torch.tensor([3, 1, 0, 2, 4, 5, 7, 6])  # anchors (1 and 5) stay; other frames move within their group
        assert torch.allclose(proc(attn, h[perm]), out[perm], atol=1e-5)
        h2 = h.clone()
        h2[F_:] = torch.randn(F_, 10, 16)  # a different conditional half leaves the unconditional half alone
        assert torch.allclose(proc(attn, h2)[:F_], out[:F_], atol=1e-6)
        # a frame sees only itself and its anchor: changing another non-anchor frame changes nothing for it
        h3 = h.clone()
        h3[3] = torch.randn(10, 16)
        assert torch.allclose(proc(attn, h3)[0], out[0], atol=1e-6)


def test_anchor_attention_in_the_unet(tiny_sd):
    """Through a whole UNet: only self-attention is swapped (and restored after); the anchor frame's
    output is the plain UNet's, the other frames' are not, and identical frames change nothing."""
    from hoitool.hoidiff.sdfolder import load_sd

    unet = load_sd(tiny_sd).unet
    before = dict(unet.attn_processors)
    torch.manual_seed(0)
    x, text = torch.randn(3, 4, 16, 16), torch.randn(1, 77, 32).expand(3, -1, -1)
    same = x[:1].expand(3, -1, -1, -1).contiguous()
    with torch.no_grad():
        plain, plain_same = unet(x, 10, text).sample, unet(same, 10, text).sample
        with anchor_attention(unet, frames=3):
            now = unet.attn_processors
            assert all(isinstance(p, AnchorAttnProcessor) == n.endswith("attn1.processor") for n, p in now.items())
            assert any(n.endswith("attn1.processor") for n in now)
            video, video_same = unet(x, 10, text).sample, unet(same, 10, text).sample
    assert dict(unet.attn_processors) == before
    assert torch.allclose(video[1], plain[1], atol=1e-5)
    assert (video[0] - plain[0]).abs().max() > 1e-4 and (video[2] - plain[2]).abs().max() > 1e-4
    assert torch.allclose(video_same, plain_same, atol=1e-5)


# -- data ---------------------------------------------------------------------------------------------------------


def test_prompts_and_condition_names():
    assert prompt_for("mug") == "A hand is grasping a mug"
    assert prompt_for("mug", "on the beach") == "A hand is grasping a mug, on the beach"
    assert prompt_for("mug", "a red {category} in the snow") == "a red mug in the snow"
    assert parse_conditions("segmentation, skeleton") == ["skeleton", "segmentation"]
    from hoitool.errors import InputError

    with pytest.raises(InputError, match="unknown condition 'depth'"):
        parse_conditions("skeleton,depth")


def test_frames_and_background_batches(renders):
    fr = RenderFrames(renders, 32, ["skeleton", "normals", "segmentation"])
    assert len(fr) == 6
    b = fr.batch([0, 4])
    assert b.images.shape == (2, 3, 32, 32) and -1 <= b.images.min() and b.images.max() <= 1
    assert b.prompts == ["A hand is grasping a mug", "A hand is grasping a bowl"]
    assert all(c.shape == (2, 3, 32, 32) and c.max() > 0 and c.min() >= 0 for c in b.conditions.values())
    bg = fr.batch([0, 4], background=True)
    assert all(c.abs().max() == 0 for c in bg.conditions.values())
    src = np.array(Image.open(renders / "trajectories" / "000001" / "background.png").resize((32, 32), Image.BILINEAR))
    assert torch.allclose(bg.images[1], torch.from_numpy(src).permute(2, 0, 1).float() / 127.5 - 1)


def test_background_steps_are_about_a_tenth_and_agree_across_processes():
    from hoitool.hoidiff.train import background_step

    share = np.mean([background_step(0, s, 0.1) for s in range(2000)])
    assert 0.08 < share < 0.12
    assert [background_step(3, s, 0.1) for s in range(50)] == [background_step(3, s, 0.1) for s in range(50)]
    assert not any(background_step(0, s, 0.0) for s in range(100))


# -- commands -----------------------------------------------------------------------------------------------------


def test_train_base_writes_only_encoders_and_decoder_half(base_run, tiny_sd):
    from hoitool.hoidiff.sdfolder import load_sd
    from hoitool.utils.modelfile import read_model

    d = read_model(base_run, "hoidiff")
    assert d["config"]["base"] == str(tiny_sd.resolve())
    sd = d["state_dict"]
    assert sd and all(k.startswith(TRAINED_ON_BASE) for k in sd)
    base = {f"unet.{k}": v for k, v in load_sd(tiny_sd).unet.state_dict().items()}
    decoder = [k for k in sd if k.startswith("unet.")]
    assert decoder and set(decoder) == {k for k in base if k.startswith(TRAINED_ON_BASE)}
    assert sum(not torch.equal(sd[k].float(), base[k]) for k in decoder) > len(decoder) // 2  # the decoder half learned
    ck = torch.load(base_run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert set(ck["model"]) == set(sd)  # no base weight in the checkpoint either


def test_synthesize_on_base_writes_an_image_and_the_labels_per_frame(base_run, renders, tmp_path):
    out = tmp_path / "images"
    res = runner.invoke(app, ["synthesize", str(renders), "--model", str(base_run), "--out", str(out), "--steps", "2",
                              "--device", "cpu", "--prompt", "on the grass", "--negative", "blurry"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in recs] == ["A hand is grasping a mug, on the grass", "A hand is grasping a bowl, on the grass"]
    for r in recs:
        for s in r["stems"]:
            img = np.asarray(Image.open(out / r["dir"] / f"{s}_image.png"))
            assert img.shape == (40, 40, 3) and img.std() > 0  # at the rendered frame's size
            assert (out / r["dir"] / f"{s}_labels.json").read_bytes() == (renders / r["dir"] / f"{s}_labels.json").read_bytes()
    assert (out / "contact_sheet.png").is_file() and (out / "config.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the staging folder is gone


def test_a_moved_base_is_named_and_can_be_passed(base_run, renders, tiny_sd, tmp_path):
    d = torch.load(base_run / "model.pt", map_location="cpu", weights_only=False)
    d["config"]["base"] = str(tmp_path / "gone")
    torch.save(d, tmp_path / "model.pt")
    args = ["synthesize", str(renders), "--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "o"), "--steps", "1",
            "--limit", "1", "--device", "cpu"]
    _one_line_error(runner.invoke(app, args), "gone", "--base")
    assert not (tmp_path / "o").exists()
    res = runner.invoke(app, args + ["--base", str(tiny_sd)])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o" / "trajectories" / "000000").glob("*_image.png"))) == 3


def test_default_model_trains_and_synthesizes_per_frame_seeded_images(default_run, renders, tmp_path):
    import shutil

    from hoitool.hoidiff.sample import load_hoidiff
    from hoitool.pipelines.synthesize import SynthesizeConfig, synthesize
    from hoitool.utils.modelfile import read_model

    d = read_model(default_run, "hoidiff")
    assert d["config"]["base"] is None and "A hand is grasping a mug" in d["prompts"]
    hd = load_hoidiff(default_run)
    # the second trajectory alone (a render folder listing only it) gives the same images as in the full run
    alone = tmp_path / "alone"
    shutil.copytree(renders, alone)
    (alone / "index.jsonl").write_text((renders / "index.jsonl").read_text().splitlines()[1] + "\n")
    a = synthesize(SynthesizeConfig(str(renders), str(tmp_path / "a"), steps=2, guidance=3.0), model=hd)
    b = synthesize(SynthesizeConfig(str(alone), str(tmp_path / "b"), steps=2, guidance=3.0), model=hd)
    assert a.images == 6 and b.images == 3
    for s in ("000", "001", "002"):
        ia = np.asarray(Image.open(tmp_path / "a" / "trajectories" / "000001" / f"{s}_image.png")).astype(int)
        ib = np.asarray(Image.open(tmp_path / "b" / "trajectories" / "000001" / f"{s}_image.png")).astype(int)
        assert np.abs(ia - ib).max() <= 1
    # frames sampled alone equal the same frames sampled together
    cond = {n: torch.rand(3, 3, 64, 64) for n in CONDITIONS}
    noise = hd.initial_noise(0, [("x", 0), ("x", 1), ("x", 2)])
    together = hd.sample(cond, ["A hand is grasping a mug"] * 3, [""] * 3, noise, steps=2)
    one = hd.sample({n: c[1:2] for n, c in cond.items()}, ["A hand is grasping a mug"], [""], noise[1:2], steps=2)
    assert torch.allclose(together[1:2], one, atol=1e-4)


def test_guidance_against_a_one_step_reference(default_run):
    """One DDIM step by hand: eps = eps(negative) + w (eps(prompt) - eps(negative)), the condition
    features in both branches; w = 1 ignores the negative prompt."""
    from hoitool.hoidiff.sample import load_hoidiff
    from hoitool.hoidiff.train import noise_scheduler

    hd = load_hoidiff(default_run)
    g = torch.Generator().manual_seed(5)
    cond = {n: torch.rand(2, 3, 64, 64, generator=g) for n in CONDITIONS}
    noise = hd.initial_noise(1, [("y", 0), ("y", 1)])
    pos, neg = ["A hand is grasping a mug"] * 2, ["blurry, extra fingers"] * 2
    got = hd.sample(cond, pos, neg, noise, steps=1, guidance=4.0)
    sch = noise_scheduler(hd.cfg.schedule, "ddim")
    sch.set_timesteps(1)
    t = sch.timesteps[0]
    with torch.no_grad():
        f = hd.model.adapter_features(cond)
        u = hd.model.denoise(noise, t.expand(2), hd.text.encode(neg), f)
        c = hd.model.denoise(noise, t.expand(2), hd.text.encode(pos), f)
    want = sch.step(u + 4.0 * (c - u), t, noise).prev_sample.clamp(-1, 1)
    assert torch.allclose(got, want, atol=1e-4)
    plain = hd.sample(cond, pos, neg, noise, steps=1, guidance=1.0)
    assert torch.allclose(plain, hd.sample(cond, pos, [""] * 2, noise, steps=1, guidance=1.0))
    assert (plain - got).abs().max() > 1e-4


def test_synthesize_video_and_a_subset_of_conditions(default_run, renders, tmp_path):
    res = runner.invoke(app, ["synthesize", str(renders), "--model", str(default_run), "--out", str(tmp_path / "v"), "--steps", "2",
                              "--video", "--conditions", "skeleton,segmentation", "--limit", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "v" / "trajectories" / "000000").iterdir()) == \
        ["000_image.png", "000_labels.json", "001_image.png", "001_labels.json", "002_image.png", "002_labels.json"]
    import yaml

    cfg = yaml.safe_load((tmp_path / "v" / "config.yaml").read_text())
    assert cfg["video"] is True and cfg["conditions"] == ["skeleton", "segmentation"]
    # the anchor (the middle frame, 001) attends to itself twice: plain self-attention, the same image
    # as without --video; the other frames attend to it too, so they change
    res = runner.invoke(app, ["synthesize", str(renders), "--model", str(default_run), "--out", str(tmp_path / "nv"), "--steps", "2",
                              "--conditions", "skeleton,segmentation", "--limit", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    def img(folder, stem):
        return np.asarray(Image.open(tmp_path / folder / "trajectories" / "000000" / f"{stem}_image.png")).astype(int)

    changed = {s: int((img("v", s) != img("nv", s)).sum()) for s in ("000", "001", "002")}
    assert np.abs(img("v", "001") - img("nv", "001")).max() <= 1
    assert changed["000"] > 10 * changed["001"] + 10 and changed["002"] > 10 * changed["001"] + 10, changed


def _one_line_error(res, *words):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for w in words:
        assert w in lines[0], res.output


def test_bad_inputs_are_one_line_and_leave_nothing(renders, tiny_sd, default_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    not_renders = tmp_path / "empty"
    not_renders.mkdir()
    _one_line_error(runner.invoke(app, ["train", "hoidiff", "--data", str(not_renders), "--out", str(out), "--steps", "1"]), "render folder")
    broken = tmp_path / "sd_broken"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / "unet")
    _one_line_error(runner.invoke(app, ["train", "hoidiff", "--data", str(renders), "--out", str(out), "--base", str(broken)]), "unet/")
    (broken / "unet").mkdir()
    (broken / "unet" / "config.json").write_text("{}")
    _one_line_error(runner.invoke(app, ["train", "hoidiff", "--data", str(renders), "--out", str(out), "--base", str(broken)]), "weights")
    _one_line_error(runner.invoke(app, ["train", "hoidiff", "--data", str(renders), "--out", str(out), "--conditions", "skeleton,depth"]), "depth")
    _one_line_error(runner.invoke(app, ["synthesize", str(renders), "--out", str(out), "--model", str(default_run), "--conditions", "edges"]), "edges")
    _one_line_error(runner.invoke(app, ["synthesize", str(not_renders), "--out", str(out), "--model", str(default_run)]), "render folder")
    other = tmp_path / "other.pt"
    torch.save({"kind": "twohands", "state_dict": {}}, other)
    _one_line_error(runner.invoke(app, ["synthesize", str(renders), "--out", str(out), "--model", str(other)]), "not hoidiff")
    partial = tmp_path / "partial"
    shutil.copytree(renders, partial)
    (partial / "trajectories" / "000001" / "002_normals.png").unlink()
    _one_line_error(runner.invoke(app, ["synthesize", str(partial), "--out", str(out), "--model", str(default_run)]), "002_normals.png")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
