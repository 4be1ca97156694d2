"""Issue 13's model options: the continuous autoencoder, v-prediction with min-SNR weights, the
text in the timestep embedding; and that models saved before the options still load as they were."""

import dataclasses

import numpy as np
import pytest
import torch

from hoitool.models.unet3d import UNet3D, UNetConfig, unet_from_dict
from hoitool.models.vqvae import VQVAE, VQVAEConfig, vqvae_from_dict
from hoitool.prior.model import ScheduleConfig, loss_weights, schedule_from_dict, train_scheduler


def test_continuous_autoencoder_decodes_the_latent_as_is():
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(channels=8, bottleneck="continuous", latent_l2=0.5)).eval()
    assert vq.quantizer is None
    grid = torch.rand(2, 1, 64, 64, 64) * 2 - 1
    out = vq(grid)
    z = vq.encode(grid)
    assert torch.allclose(out.z, z)
    assert torch.allclose(out.recon, vq.decoder(z)) and torch.allclose(vq.decode_latent(z), out.recon)
    assert out.vq_loss.item() == pytest.approx(0.5 * z.square().mean().item(), rel=1e-5)


def test_a_saved_autoencoder_without_the_option_is_a_codebook_one():
    old = {k: v for k, v in dataclasses.asdict(VQVAEConfig(channels=8, codebook_size=16)).items() if k not in ("bottleneck", "latent_l2")}
    vq = vqvae_from_dict(old)
    assert vq.config.bottleneck == "vq" and vq.quantizer is not None
    with pytest.raises(ValueError, match="bottleneck"):
        VQVAE(VQVAEConfig(bottleneck="kl"))


def test_a_saved_denoiser_without_text_in_the_embedding_has_no_such_layer():
    old = {k: v for k, v in dataclasses.asdict(UNetConfig(channels=8, context_dim=16)).items() if k != "text_in_embedding"}
    assert unet_from_dict(old).text_embed is None
    assert UNet3D(UNetConfig(channels=8, context_dim=16)).text_embed is not None
    assert schedule_from_dict({"num_train_timesteps": 1000}).prediction_type == "epsilon"


def test_text_in_the_embedding_makes_the_output_depend_on_the_prompt_in_every_block():
    torch.manual_seed(0)
    unet = UNet3D(UNetConfig(channels=8, channel_mult=(1, 2), attention_levels=(), context_dim=16, dropout=0.0)).eval()
    for p in unet.parameters():  # zero-initialised output and residual layers would hide the path
        torch.nn.init.normal_(p, std=0.1)
    # no attention at any level, and the middle transformer's cross-attention off: only the embedding carries the text
    unet.mid[1] = torch.nn.Identity()
    x, t = torch.randn(1, 23, 8, 8, 8), torch.tensor([500])
    a = unet(x, t, torch.randn(1, 1, 16))
    b = unet(x, t, torch.randn(1, 1, 16))
    assert (a - b).abs().max() > 1e-3


def test_min_snr_weights_are_the_formula_and_cap_at_one():
    sched = train_scheduler(ScheduleConfig())
    t = torch.tensor([0, 10, 100, 500, 999])
    ab = sched.alphas_cumprod[t].double()
    snr = ab / (1 - ab)
    w_eps = loss_weights(sched, t, "epsilon", 5.0).double()
    w_v = loss_weights(sched, t, "v_prediction", 5.0).double()
    assert torch.allclose(w_eps, snr.clamp(max=5) / snr, rtol=1e-5)
    assert torch.allclose(w_v, snr.clamp(max=5) / (snr + 1), rtol=1e-5)
    assert (w_eps <= 1 + 1e-6).all() and (w_v <= 1).all()
    assert torch.equal(loss_weights(sched, t, "epsilon", None), torch.ones(5))


def test_a_v_predicting_prior_hands_ddim_the_exact_noise():
    """With the true v of a known x0 and noise, guided_eps returns the noise, so sampling and the
    likelihood score read v-models like noise models."""
    from hoitool.prior.model import GridNormaliser, InteractionPrior

    sched_cfg = ScheduleConfig(prediction_type="v_prediction")
    sched = train_scheduler(sched_cfg)
    x0, noise = torch.randn(3, 23, 4, 4, 4), torch.randn(3, 23, 4, 4, 4)
    t = torch.tensor([5, 400, 990])
    xt = sched.add_noise(x0, noise, t)
    v = sched.get_velocity(x0, noise, t)

    class Oracle(torch.nn.Module):
        config = UNetConfig(channels=8, context_dim=384)

        def forward(self, x, tt, ctx):
            return torch.cat([v] * (x.shape[0] // 3))

    prior = InteractionPrior(Oracle(), VQVAE(VQVAEConfig(channels=4)), GridNormaliser(np.zeros(3), np.ones(3)), sched_cfg)
    ctx = torch.zeros(3, 1, 384)
    for g in (1.0, 4.0):
        assert torch.allclose(prior.guided_eps(xt, t, ctx, ctx, g), noise, atol=1e-4)
