"""One training step of the ResNet families with the folded resampling convolutions (gankit.nn.resample) equals,
to float32 rounding, the step with the two-step blocks they replaced (written out here as the reference: nearest
x2 then conv3x3, conv3x3 then avg-pool, the shortcut's 1x1 conv after the upsampling / before the pooling as
before)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gankit.models import biggan as biggan_module
from gankit.models import blocks
from gankit.models.sngan import SNGANConfig
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import TINY_MODELS, family_config, model_run, seeded_batches, sngan_config


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def g_res_block_two_step(self, x, y):
    h = _up(F.relu(self.norm1(x, y)))
    h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
    return h + self.shortcut(_up(x))


def d_res_block_two_step(self, x):
    h = x if self.optimized else F.relu(x)
    if self.shortcut_relu and not self.optimized:
        x = h
    h = self.conv2(F.relu(self.conv1(h)))
    if self.downsample:
        h = F.avg_pool2d(h, 2)
    if self.optimized:
        return h + self.shortcut(F.avg_pool2d(x, 2))
    sc = x if self.shortcut is None else self.shortcut(x)
    return h + (F.avg_pool2d(sc, 2) if self.downsample else sc)


def biggan_g_block_two_step(self, x, c):
    h = _up(torch.relu(self.bn1(x, c)))
    h = self.conv2(torch.relu(self.bn2(self.conv1(h), c)))
    return h + self.conv_sc(_up(x))


def biggan_d_block_two_step(self, x):
    pool = (lambda t: F.avg_pool2d(t, 2)) if self.downsample else (lambda t: t)
    h = torch.relu(x) if self.preactivation else x
    if self.relu_shortcut:
        x = h
    h = pool(self.conv2(torch.relu(self.conv1(h))))
    if self.conv_sc is None:
        return h + x
    return h + (pool(self.conv_sc(x)) if self.preactivation else self.conv_sc(pool(x)))


TWO_STEP = [
    (blocks.GResBlock, g_res_block_two_step),
    (blocks.DResBlock, d_res_block_two_step),
    (biggan_module.GBlock, biggan_g_block_two_step),
    (biggan_module.DBlock, biggan_d_block_two_step),
]

MODELS = {
    "sngan-proj": lambda: SNGANConfig.from_dict(TINY_MODELS["sngan-proj"]),
    "sngan-studiogan": lambda: sngan_config("resnet", resnet_layout="studiogan", image_size=32, channels=3,
                                            num_classes=3, g_conv_dim=8, d_conv_dim=8, d_shortcut_relu=True),
    "biggan": lambda: family_config("biggan", num_classes=3),
}  # fmt: skip


def one_step(tmp_path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The stats of one step (2 D steps, 1 G step) and every gradient its optimizers stepped with."""
    cfg = model_run(MODELS[name](), loss="hinge", steps=1, n_critic=2)
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path), progress=False, batches=seeded_batches(cfg, 16))
    gan, grads = trainer.gan, {}
    for net, optimizer, module in (("d", gan.opt_d, gan.D), ("g", gan.opt_g, gan.G)):
        step, calls = optimizer.step, [0]

        def recording_step(*args, _step=step, _net=net, _module=module, _calls=calls, **kwargs):
            _calls[0] += 1
            for key, p in _module.named_parameters():
                if p.grad is not None:
                    grads[f"{_net}{_calls[0]}.{key}"] = p.grad.detach().clone()
            return _step(*args, **kwargs)

        optimizer.step = recording_step
    return {k: v.detach().clone() for k, v in gan.train_step().items()}, grads


@pytest.mark.parametrize("name", list(MODELS))
def test_one_step_equals_the_two_step_blocks_to_float32_rounding(tmp_path, monkeypatch, name):
    folded_stats, folded_grads = one_step(tmp_path / "folded", name)
    for cls, forward in TWO_STEP:
        monkeypatch.setattr(cls, "forward", forward)
    stats, grads = one_step(tmp_path / "two_step", name)
    assert float(stats["skipped"]) == 0 and set(folded_stats) == set(stats)
    for key, value in stats.items():
        torch.testing.assert_close(folded_stats[key], value, rtol=1e-5, atol=1e-6)
    assert set(folded_grads) == set(grads)
    assert any(k.startswith("d2.") for k in grads) and any(k.startswith("g1.") for k in grads)
    nets = {key.split(".")[0] for key in grads}
    net_scale = {n: max(v.abs().max().item() for k, v in grads.items() if k.startswith(n + ".")) for n in nets}
    for key, value in grads.items():
        # relative to the tensor, or for a gradient that is 0 in exact arithmetic (the biases of G's convolutions,
        # all in front of a batch norm) float noise in both forms, far below the net's gradients
        atol = 1e-4 * value.abs().max().item() + 1e-5 * net_scale[key.split(".")[0]]
        torch.testing.assert_close(folded_grads[key], value, rtol=0, atol=atol, msg=key)
