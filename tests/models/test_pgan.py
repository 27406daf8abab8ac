"""Progressive GAN: layers, growing networks, fade-in, the schedule, progressive training and mid-fade resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import gankit
from gankit.config import resolve_config
from gankit.errors import UserError
from gankit.io import load_checkpoint
from gankit.models import build_discriminator, build_generator, model_config_from_dict
from gankit.models.pgan import PGANConfig, ProgressiveDiscriminator, ProgressiveGenerator
from gankit.nn import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm
from gankit.training import Trainer, prepare_run_dir
from gankit.training.schedules import ProgressiveSchedule, fade_real_images


def tiny_cfg(**kw) -> PGANConfig:
    base = dict(
        image_size=16, channels=1, z_dim=8, depths=(8, 8, 4), steps_per_scale=(3, 6, 4), fade_steps=4, fade_every=1
    )
    return PGANConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------ layers


def test_equalized_layers_scale_at_run_time_in_both_conventions():
    torch.manual_seed(0)
    conv = EqualizedConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 6, 6)
    c = math.sqrt(2 / (3 * 3 * 3))
    assert conv.scale == pytest.approx(c) and conv.weight.std().item() == pytest.approx(1.0, abs=0.3)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * c, conv.bias, padding=1))
    conv.scale_bias = True  # the zoo's convention: the scale multiplies the bias too
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1) * c)
    lin = EqualizedLinear(4, 2, gain=1.0, scale_bias=True)
    with torch.no_grad():
        lin.bias.fill_(1.0)
    v = torch.randn(3, 4)
    torch.testing.assert_close(lin(v), (v @ lin.weight.T + 1.0) * 0.5)


def test_pixel_norm_and_minibatch_stddev():
    x = torch.randn(8, 6, 4, 4)
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(8, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(PixelNorm()(3 * x), y)  # scale invariant: G(k z) = G(z)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 7, 4, 4)
    torch.testing.assert_close(out[:, :6], x)
    for rows in (slice(0, 4), slice(4, 8)):  # consecutive samples form a group
        expected = (x[rows].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[rows, 6], expected.expand(4, 4, 4))
    unbiased = MinibatchStdDev(group_size=4, unbiased=True)(x)
    torch.testing.assert_close(unbiased[:4, 6, 0, 0], ((x[:4].var(dim=0) + 1e-8).sqrt().mean()).expand(4))
    odd = MinibatchStdDev(group_size=4)(x[:6])  # 6 is not divisible by 4: one group of 6 (the zoo's rule)
    torch.testing.assert_close(odd[:, 6, 0, 0], ((x[:6].var(0, unbiased=False) + 1e-8).sqrt().mean()).expand(6))
    assert MinibatchStdDev()(x[:1])[:, 6].abs().max() == 0


# ------------------------------------------------------------------------------------------ networks


def test_generator_and_discriminator_grow_one_scale_at_a_time():
    cfg = tiny_cfg(num_classes=3)
    G, D = ProgressiveGenerator(cfg), ProgressiveDiscriminator(cfg)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    for scale, size in enumerate((4, 8, 16)):
        if scale:
            before = {k: v.clone() for k, v in G.state_dict().items() if k != "alpha"}
            G.grow()
            D.grow()
            assert float(G.alpha) == 0.0 and float(D.alpha) == 0.0  # a new scale starts invisible
            for k, v in before.items():  # growing keeps every trained weight
                assert torch.equal(G.state_dict()[k], v)
        assert G.scale == D.scale == scale and G.image_size == D.image_size == size
        images = G(z, y)
        assert images.shape == (4, 1, size, size)
        assert D(images, y).shape == (4,)
    with pytest.raises(ValueError, match="final scale"):
        G.grow()
    with pytest.raises(ValueError, match="takes \\(B, 1, 16, 16\\)"):
        D(torch.randn(2, 1, 8, 8), y[:2])


def test_fade_in_blends_old_and_new_paths():
    torch.manual_seed(0)
    G = ProgressiveGenerator(tiny_cfg(), scale=1)
    D = ProgressiveDiscriminator(tiny_cfg(), scale=1)
    with torch.no_grad():
        for p in (*G.to_rgb.parameters(), *D.from_rgb.parameters()):
            p.normal_()
    z = torch.randn(3, 8)
    G.set_alpha(1.0)
    new = G(z)
    G.set_alpha(0.0)
    old = G(z)  # alpha 0: exactly the previous scale's image, nearest-upsampled
    torch.testing.assert_close(old[..., 0::2, 0::2], old[..., 1::2, 1::2])
    G4 = ProgressiveGenerator(tiny_cfg())
    G4.load_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith(("blocks.", "to_rgb.1"))})
    torch.testing.assert_close(old, F.interpolate(G4(z), scale_factor=2.0, mode="nearest"))
    G.set_alpha(0.3)
    torch.testing.assert_close(G(z), 0.3 * new + 0.7 * old)
    x = torch.randn(3, 1, 8, 8)
    D4 = ProgressiveDiscriminator(tiny_cfg())
    D4.load_state_dict({k: v for k, v in D.state_dict().items() if not k.startswith(("blocks.", "from_rgb.1"))})
    D.set_alpha(0.0)  # alpha 0: the previous scale's D on the average-pooled image
    torch.testing.assert_close(D(x), D4(F.avg_pool2d(x, 2)))
    h_old = F.leaky_relu(D.from_rgb[0](F.avg_pool2d(x, 2)), 0.2)
    h_new = D.blocks[0](F.leaky_relu(D.from_rgb[1](x), 0.2))  # two convs, then 2x2 average pooling
    h = D.mbstd(0.3 * h_new + 0.7 * h_old)
    h = F.leaky_relu(D.final_linear(F.leaky_relu(D.final_conv(h), 0.2).flatten(1)), 0.2)
    D.set_alpha(0.3)
    torch.testing.assert_close(D(x), D.decision(h).squeeze(1))


def test_state_dict_round_trip_at_any_scale_and_alpha():
    G = ProgressiveGenerator(tiny_cfg(), scale=2)
    G.set_alpha(0.6)
    fresh = build_generator(tiny_cfg())  # built at 4x4: loading grows it to the saved scale
    fresh.load_state_dict(G.state_dict())
    z = torch.randn(2, 8)
    assert fresh.scale == 2 and float(fresh.alpha) == pytest.approx(0.6)
    torch.testing.assert_close(fresh(z), G(z))
    fresh.set_scale(0)
    assert fresh.image_size == 4 and len(fresh.to_rgb) == 1
    assert isinstance(build_discriminator(tiny_cfg()), ProgressiveDiscriminator)


def test_config_validation_is_specific():
    cfg = model_config_from_dict({"family": "pgan", **tiny_cfg().to_dict()})
    assert cfg == tiny_cfg() and cfg.num_scales == 3
    with pytest.raises(UserError, match=r"model.depths must hold 3 positive integers, one per scale \(4, 8, 16\)"):
        tiny_cfg(depths=(8, 8)).validate()
    with pytest.raises(UserError, match="fade_steps \\(7\\) is longer"):
        tiny_cfg(fade_steps=7).validate()
    with pytest.raises(UserError, match="batch_per_scale must hold 3"):
        ProgressiveGenerator(tiny_cfg(batch_per_scale=(4, 4)))
    with pytest.raises(UserError, match="unknown model key 'depth' .*did you mean 'depths'"):
        model_config_from_dict({"family": "pgan", "depth": [1]})


# ------------------------------------------------------------------------------------------ schedule


def test_schedule_scales_alpha_and_batch_sizes():
    s = ProgressiveSchedule((3, 6, 4), fade_steps=4, batch_per_scale=(8, 6, 4))
    phases = [s.at(i) for i in range(15)]
    assert [p.scale for p in phases] == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert [p.alpha for p in phases] == [1, 1, 1, 0, 0.25, 0.5, 0.75, 1, 1, 0, 0.25, 0.5, 0.75, 1, 1]
    assert [p.batch_size for p in phases[::3]] == [8, 6, 6, 4, 4]
    assert phases[9].resolution == 16 and s.total_steps == 13


def test_zoo_default_fade_is_600_jumps_every_32_steps():
    cfg = PGANConfig()  # the zoo's celebaHQ recipe
    s = ProgressiveSchedule.from_model_config(cfg, 16)
    start = s.starts[1]
    assert start == 48000 and s.at(start).alpha == 0.0
    assert s.at(start + 31).alpha == 0.0 and s.at(start + 32).alpha == pytest.approx(1 / 600)
    assert s.at(start + 32 * 300 + 5).alpha == pytest.approx(0.5)  # zoo alpha 1 - 300/600
    assert s.at(start + 19200).alpha == 1.0 and s.at(start + 19199).alpha == pytest.approx(599 / 600)


def test_reals_are_downscaled_and_faded_like_the_generator():
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(fade_real_images(x, 16, 1.0), x)
    x8 = F.avg_pool2d(x, 2)
    torch.testing.assert_close(fade_real_images(x, 8, 1.0), x8)
    low = F.interpolate(F.avg_pool2d(x8, 2), scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(fade_real_images(x, 8, 0.25), 0.25 * x8 + 0.75 * low)
    torch.testing.assert_close(fade_real_images(x, 4, 0.5), F.avg_pool2d(x, 4))  # nothing to fade at 4x4


# ------------------------------------------------------------------------------------------ training


def tiny_run(steps: int, **model):
    overrides = {
        "model": {"z_dim": 8, "depths": [8, 8, 4], "steps_per_scale": [3, 6, 4], "fade_steps": 4, **model},
        "training": {
            "steps": steps,
            "batch_size": 8,
            "log_every": 1,
            "sample_every": 5,
            "checkpoint_every": 5,
            "device": "cpu",
            "tensorboard": False,
        },
    }
    return resolve_config("pgan-digits", overrides=overrides)


def test_presets_resolve():
    digits = resolve_config("pgan-digits")
    assert digits.model.image_size == 16 and digits.model.depths == (64, 64, 32)
    assert (digits.training.loss, digits.training.drift, digits.training.g_lr) == ("wgan-gp", 0.001, 1e-3)
    assert digits.training.g_betas == (0.0, 0.99) and digits.training.ema_decay == 0.999
    hq = resolve_config("pgan-celebahq")
    assert hq.model.num_scales == 9 and hq.model.batch_per_scale[-2:] == (12, 8)
    assert hq.training.steps == sum(hq.model.steps_per_scale) == 920_000


def test_progressive_training_grows_and_resumes_mid_fade_bit_exact(tmp_path):
    one = prepare_run_dir(tmp_path / "one")
    t1 = Trainer(tiny_run(11, batch_per_scale=[8, 6, 4]), one, progress=False)
    seen = []
    while t1.step < 11:
        t1.train_step()
        seen.append((t1.G.scale, float(t1.G.alpha), t1.batches.batch_size))
    assert seen[3:6] == [(1, 0.0, 6), (1, 0.25, 6), (1, 0.5, 6)] and seen[-1] == (2, 0.25, 4)
    assert t1.ema.model.scale == t1.D.scale == 2 and float(t1.ema.model.alpha) == 0.25
    assert t1.save_samples().is_file()

    # The same run stopped after step 5 (scale 1, alpha 0.25, mid-fade) and resumed.
    two = prepare_run_dir(tmp_path / "two")
    Trainer(tiny_run(5, batch_per_scale=[8, 6, 4]), two, progress=False).fit()
    state = load_checkpoint(two / "checkpoints" / "last.pt")
    assert state["progress"] == {"scale": 1, "alpha": 0.25}
    t2 = Trainer.resume(two, steps=11, progress=False)
    assert (t2.step, t2.G.scale, t2.D.scale, t2.ema.model.scale) == (5, 1, 1, 1)
    assert float(t2.G.alpha) == float(t2.D.alpha) == float(t2.ema.model.alpha) == 0.25
    t2.train_step()
    assert (t2.G.scale, float(t2.G.alpha)) == (1, 0.5)  # the fade goes on where it stopped
    while t2.step < 11:
        t2.train_step()
    # D saw 3 batches of 8, 6 of 6 and 2 of 4 (n_critic 1): the per-scale batch sizes count, also across resume
    assert t1.images_seen == t2.images_seen == 3 * 8 + 6 * 6 + 2 * 4
    rows = (two / "metrics.csv").read_text().splitlines()
    kimg = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows[1:]}
    assert kimg[3] == 0.024 and kimg[5] == (24 + 12) / 1000
    for a, b in ((t1.G, t2.G), (t1.D, t2.D), (t1.ema.model, t2.ema.model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def test_fit_logs_growth_and_exports_a_loadable_generator(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    Trainer(tiny_run(10), run, progress=False).fit()
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    res, alpha = header.index("resolution"), header.index("alpha")
    by_step = {int(r.split(",")[0]): r.split(",") for r in rows[1:]}
    assert float(by_step[3][res]) == 4 and float(by_step[5][res]) == 8 and float(by_step[5][alpha]) == 0.25
    assert float(by_step[10][res]) == 16 and float(by_step[10][alpha]) == 0.0
    for path in (run, run / "generator.safetensors"):
        G = gankit.load_generator(path)
        assert G.image_size == 16 and float(G.alpha) == 0.0
    raw = gankit.load_generator(run, ema=False)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert torch.equal(raw.to_rgb[2].weight, state["G"]["to_rgb.2.weight"])
    z = torch.randn(3, 8)
    assert G(z, torch.tensor([1, 2, 3])).shape == (3, 1, 16, 16)


def test_rollback_to_an_earlier_scale_shrinks_the_networks(tmp_path):
    # steps 0 | 1, 2, 3 | 4, 5: alphas 1 | 0, 0.5, 1 | 0, 0.5
    cfg = tiny_run(6, steps_per_scale=[1, 3, 2], fade_steps=2)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False)
    while trainer.step < 3:
        trainer.train_step()
    early = copy.deepcopy(trainer.state_dict())  # after step 2: scale 1, alpha 0.5
    assert early["progress"] == {"scale": 1, "alpha": 0.5}
    while trainer.step < 6:
        trainer.train_step()
    assert (trainer.G.scale, float(trainer.G.alpha)) == (2, 0.5)
    trainer.load_state_dict(early)  # what the NaN guard's rollback does
    assert (trainer.step, trainer.G.scale, trainer.D.scale, trainer.ema.model.scale) == (3, 1, 1, 1)
    assert float(trainer.G.alpha) == 0.5
    trainer.train_step()
    assert trainer.G.image_size == 8 and float(trainer.G.alpha) == 1.0
