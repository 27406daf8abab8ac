"""Progressive growing in training: the schedule, faded reals, training that grows and resumes mid-fade, rollback."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import gankit
from gankit.io import load_checkpoint
from gankit.models.pgan import PGANConfig
from gankit.training import Trainer, prepare_run_dir
from gankit.training.resume import resume_trainer
from gankit.training.schedules import ProgressiveSchedule, fade_real_images
from tests.tiny import pgan_digits_run

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


def test_progressive_training_grows_and_resumes_mid_fade_bit_exact(tmp_path):
    one = prepare_run_dir(tmp_path / "one")
    t1 = Trainer(pgan_digits_run(11, batch_per_scale=[8, 6, 4]), one, progress=False)
    seen = []
    while t1.step < 11:
        t1.gan.train_step()
        seen.append((t1.gan.G.scale, float(t1.gan.G.alpha), t1.batches.batch_size))
    assert seen[3:6] == [(1, 0.0, 6), (1, 0.25, 6), (1, 0.5, 6)] and seen[-1] == (2, 0.25, 4)
    assert t1.gan.ema.model.scale == t1.gan.D.scale == 2 and float(t1.gan.ema.model.alpha) == 0.25
    assert t1.save_samples().is_file()

    # The same run stopped after step 5 (scale 1, alpha 0.25, mid-fade) and resumed.
    two = prepare_run_dir(tmp_path / "two")
    Trainer(pgan_digits_run(5, batch_per_scale=[8, 6, 4]), two, progress=False).fit()
    state = load_checkpoint(two / "checkpoints" / "last.pt")
    assert state["progress"] == {"scale": 1, "alpha": 0.25}
    t2 = resume_trainer(two, steps=11, progress=False)
    assert (t2.step, t2.gan.G.scale, t2.gan.D.scale, t2.gan.ema.model.scale) == (5, 1, 1, 1)
    assert float(t2.gan.G.alpha) == float(t2.gan.D.alpha) == float(t2.gan.ema.model.alpha) == 0.25
    t2.gan.train_step()
    assert (t2.gan.G.scale, float(t2.gan.G.alpha)) == (1, 0.5)  # the fade goes on where it stopped
    while t2.step < 11:
        t2.gan.train_step()
    # D saw 3 batches of 8, 6 of 6 and 2 of 4 (n_critic 1): the per-scale batch sizes count, also across resume
    assert t1.gan.images_seen == t2.gan.images_seen == 3 * 8 + 6 * 6 + 2 * 4
    rows = (two / "metrics.csv").read_text().splitlines()
    kimg = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows[1:]}
    assert kimg[3] == 0.024 and kimg[5] == (24 + 12) / 1000
    for a, b in ((t1.gan.G, t2.gan.G), (t1.gan.D, t2.gan.D), (t1.gan.ema.model, t2.gan.ema.model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def test_fit_logs_growth_and_exports_a_loadable_generator(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    Trainer(pgan_digits_run(10), run, progress=False).fit()
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
    cfg = pgan_digits_run(6, steps_per_scale=[1, 3, 2], fade_steps=2)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False)
    while trainer.step < 3:
        trainer.gan.train_step()
    early = copy.deepcopy(trainer.state_dict())  # after step 2: scale 1, alpha 0.5
    assert early["progress"] == {"scale": 1, "alpha": 0.5}
    while trainer.step < 6:
        trainer.gan.train_step()
    assert (trainer.gan.G.scale, float(trainer.gan.G.alpha)) == (2, 0.5)
    trainer.load_state_dict(early)  # what the NaN guard's rollback does
    assert (trainer.step, trainer.gan.G.scale, trainer.gan.D.scale, trainer.gan.ema.model.scale) == (3, 1, 1, 1)
    assert float(trainer.gan.G.alpha) == 0.5
    trainer.gan.train_step()
    assert trainer.gan.G.image_size == 8 and float(trainer.gan.G.alpha) == 1.0
