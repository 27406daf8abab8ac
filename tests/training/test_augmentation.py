"""Data-efficient training in the loop: what D sees is augmented in both steps, ADA's p is trained and resumed
bit-exactly, LeCam enters the D loss, and ``data.max_images`` trains on a seeded class-balanced subset."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.config import RunConfig, resolve_config
from gankit.data import open_training_data
from gankit.data.loader import balanced_subset
from gankit.errors import UserError
from gankit.io import load_checkpoint
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import FAMILY_FIELDS, augmentation_run, seeded_batches, tiny_sets

TINY = tiny_sets(batch_size=8, tensorboard=False, log_every=1)


class SpyD(torch.nn.Module):
    """Wraps D and records every batch it is called on."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x, y=None):
        self.seen.append(x.detach().clone())
        return self.inner(x) if y is None else self.inner(x, y)


@pytest.mark.parametrize("augment", ["diffaugment", "ada"])
@pytest.mark.parametrize("loss", ["hinge", "ns", "wgan-gp"])
@pytest.mark.parametrize("family", list(FAMILY_FIELDS))
def test_every_family_and_loss_trains_with_augmentation(tmp_path, family, loss, augment):
    cfg = augmentation_run(family, 3 if family == "sagan" else 0, loss, augment)
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False, batches=seeded_batches(cfg, 8))
    if augment == "ada":
        trainer.gan.augment.controller.p = 1.0  # every op on: the augmented batch surely differs from the input
    g0 = copy.deepcopy(trainer.gan.G.state_dict())
    stats = trainer.gan.train_step()
    assert float(stats["skipped"]) == 0 and all(torch.isfinite(v).all() for v in stats.values())
    assert any(not torch.equal(v, trainer.gan.G.state_dict()[k]) for k, v in g0.items() if v.is_floating_point())


def test_d_sees_augmented_reals_and_fakes_and_g_learns_through_the_augmentation(tmp_path):
    cfg = augmentation_run("sagan", 3, "hinge", "diffaugment", augment_policy="translation,cutout")
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False, batches=seeded_batches(cfg, 8))
    spy = SpyD(trainer.gan.D)
    trainer.gan.D = spy
    real = trainer.batches.images  # the whole (8-image) dataset: every real batch comes from it
    trainer.gan.train_step()
    d_real, d_fake, g_fake = spy.seen  # D step: reals, fakes; G step: fakes
    # cutout (8x8 of 16x16, its centre anywhere, clipped at the edges) zeroes at least a 4x4 corner of every image
    for seen in (d_real, d_fake, g_fake):
        assert ((seen == 0).flatten(1).float().mean(1) >= 16 / 256).all()
    assert not any(torch.equal(x, r) for x in d_real for r in real), "no real image reaches D unaugmented"
    # gradients reach G through the augmentation (a detaching augmentation would leave G without any)
    grads = [p.grad for p in trainer.gan.G.parameters()]
    assert all(g is not None for g in grads) and trainer.gan.G.to_image.weight.grad.abs().sum() > 0


def test_ada_p_moves_by_the_formula_and_is_logged(tmp_path):
    cfg = augmentation_run("dcgan", 0, "hinge", "ada", ada_interval=2, ada_kimg=0.016, ada_target=0.6, steps=6)
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False, batches=seeded_batches(cfg, 8))
    observed: list[float] = []
    real_observe = trainer.gan.augment.observe
    trainer.gan.augment.observe = lambda logits: (observed.append(float(torch.sign(logits).mean())),
                                              real_observe(logits))[1]  # fmt: skip
    ps = []
    for _ in range(6):
        trainer.gan.train_step()
        ps.append(trainer.gan.augment.p)
    step = 4 * 2 / (0.016 * 1000)  # batch 4 x interval 2 real images over ada_kimg * 1000: 0.5 per update
    expected, p = [], 0.0
    for i in range(6):
        if i % 2 == 1:  # an update after every second step, from that interval's mean sign
            r_t = np.mean(observed[i - 1: i + 1])
            p = min(max(p + np.sign(r_t - 0.6) * step, 0.0), 1.0)
        expected.append(p)
    assert ps == pytest.approx(expected)
    trainer.fit()
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "ada_p" in header and "ada_r_t" in header


def test_an_ada_run_resumes_bit_exact_p_included(tmp_path):
    cfg = augmentation_run("sagan", 3, "hinge", "ada", steps=6, ada_interval=1, ada_kimg=0.01, lecam_weight=0.3,
                     lecam_start=2, checkpoint_every=3)
    whole = Trainer(cfg, prepare_run_dir(tmp_path / "whole"), progress=False, batches=seeded_batches(cfg, 8))
    whole.fit()
    assert whole.gan.augment.p > 0  # p did move
    half_cfg = RunConfig.from_dict({**cfg.to_dict(), "training": {**cfg.to_dict()["training"], "steps": 3}})
    half = Trainer(half_cfg, prepare_run_dir(tmp_path / "half"), progress=False, batches=seeded_batches(cfg, 8))
    half.fit()
    state = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")
    assert state["augment"]["p"] == half.gan.augment.p and state["lecam"]["ema_real"] is not None
    resumed_cfg = RunConfig.from_dict(state["config"] | {"training": {**state["config"]["training"], "steps": 6}})
    resumed = Trainer(resumed_cfg, tmp_path / "half", progress=False, batches=seeded_batches(cfg, 8), state=state)
    assert resumed.gan.augment.p == half.gan.augment.p
    resumed.fit()
    assert resumed.gan.augment.p == whole.gan.augment.p and resumed.gan.augment.r_t == whole.gan.augment.r_t
    for key, value in whole.gan.G.state_dict().items():
        assert torch.equal(value, resumed.gan.G.state_dict()[key]), key
    assert resumed.gan.loss.lecam.state_dict() == whole.gan.loss.lecam.state_dict()


def test_lecam_enters_the_d_loss_with_its_weight():
    from gankit.augment import LeCam
    from gankit.losses import AdversarialLoss

    critic = torch.nn.Linear(4, 1)
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    plain = AdversarialLoss("hinge").discriminator_loss(lambda x: critic(x).flatten(), real, fake)[0]
    lecam = LeCam(decay=0.9, start_step=0)
    loss, stats = AdversarialLoss("hinge", lecam_weight=0.3, lecam=lecam).discriminator_loss(
        lambda x: critic(x).flatten(), real, fake, step=1)
    r, f = critic(real).flatten(), critic(fake).flatten()
    # first update: the EMAs are this batch's means
    reg = torch.relu(r - f.mean()).pow(2).mean() + torch.relu(r.mean() - f).pow(2).mean()
    torch.testing.assert_close(stats["lecam"], reg.detach())
    torch.testing.assert_close(loss, plain + 0.3 * reg)


def test_balanced_subset_is_seeded_and_even():
    labels = np.repeat(np.arange(4), [50, 50, 50, 3])  # class 3 has only 3 images
    a, b = balanced_subset(labels, 153, 40, 0), balanced_subset(labels, 153, 40, 0)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 40 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, balanced_subset(labels, 153, 40, 1))
    assert np.bincount(labels[a]).tolist() == [13, 12, 12, 3] or sorted(np.bincount(labels[a]).tolist()) == [3, 12,
                                                                                                             12, 13]
    assert len(balanced_subset(None, 10, 4, 0)) == 4


def test_max_images_trains_on_a_recorded_subset(tmp_path):
    out = tmp_path / "run"
    sets = [*TINY, "data.max_images=30", "training.augment=diffaugment"]
    assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "2", "--no-progress",
                 *sum((["--set", s] for s in sets), [])]) == 0  # fmt: skip
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["config"]["data"]["max_images"] == 30 and state["data"]["sampler"]["size"] == 30
    assert "max_images: 30" in (out / "config.yaml").read_text()
    cfg = resolve_config("sagan-digits", sets=["data.max_images=30", "training.batch_size=8"])
    source = open_training_data(cfg.data, cfg.model)
    assert np.bincount(source.tensors[1].numpy()).tolist() == [3] * 10


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["training.augment=diffaug"], "training.augment 'diffaug' is unknown (did you mean 'diffaugment'?); "
                                       "choose one of: none, diffaugment, ada"),
        (["training.augment_policy=color,zoom"], "valid ops: color, translation, cutout"),
        (["training.ada_target=1"], "training.ada_target must be a number in (0, 1)"),
        (["training.ada_target=0"], "training.ada_target must be a number in (0, 1)"),
        (["training.lecam_weight=-0.1"], "training.lecam_weight must be a number >= 0"),
        (["data.max_images=5000"], "data.max_images 5000 is more than the 1198 images"),
        (["data.max_images=10"], "data.max_images (10) is below training.batch_size (64)"),
    ],
)
def test_bad_augmentation_settings_are_one_line_and_write_nothing(tmp_path, capsys, sets, message):
    out = tmp_path / "run"
    code = main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "1", "--no-progress",
                 *sum((["--set", s] for s in sets), [])])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not out.exists()
    with pytest.raises(UserError):
        resolve_config("sagan-digits", sets=sets) if "5000" not in sets[0] else open_training_data(
            resolve_config("sagan-digits", sets=sets).data, resolve_config("sagan-digits", sets=sets).model)
