"""bf16 mixed precision on the CPU: autocast engaged only when asked, what stays float32, the blocked attention kernel
under bf16, no NaN in the digits presets, and resume equal to an uninterrupted bf16 run."""

from __future__ import annotations

import math

import pytest
import torch

from gankit import device as gdevice
from gankit.cli import main
from gankit.config import resolve_config
from gankit.errors import UserError
from gankit.nn import SelfAttention2d, has_spectral_norm
from gankit.nn import attention as attention_module
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import sagan_digits_run, seeded_batches


def conv_output_dtypes(trainer: Trainer) -> set[torch.dtype]:
    """Dtypes of every convolution output of D and G during one training step."""
    seen: set[torch.dtype] = set()
    convs = [m for net in (trainer.gan.G, trainer.gan.D) for m in net.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]  # fmt: skip
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype)) for m in convs]
    try:
        trainer.gan.train_step()
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize(("amp", "expected"), [("bf16", {torch.bfloat16}), ("off", {torch.float32}),
                                               ("auto", {torch.float32})])  # fmt: skip
def test_autocast_engaged_only_when_asked(tmp_path, amp, expected):
    cfg = sagan_digits_run(steps=4, checkpoint_every=2, amp=amp)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "r"), progress=False, batches=seeded_batches(cfg, 16))
    assert conv_output_dtypes(trainer) == expected
    # whatever runs in bf16, the weights, their EMA and the optimizer state stay float32
    assert all(p.dtype == torch.float32 for p in [*trainer.gan.G.parameters(), *trainer.gan.ema.model.parameters()])
    assert all(v.dtype == torch.float32 for s in trainer.gan.opt_d.state.values() for v in s.values() if v.dim())


def test_auto_picks_bf16_only_with_native_support_and_the_measured_switch(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(gdevice, "CPU_AUTO_BF16", True)
    monkeypatch.setattr(gdevice, "native_bf16", lambda device: True)
    assert gdevice.autocast_dtype(cpu, "auto") == torch.bfloat16
    monkeypatch.setattr(gdevice, "native_bf16", lambda device: False)
    assert gdevice.autocast_dtype(cpu, "auto") is None
    assert gdevice.autocast_dtype(cpu, "bf16") == torch.bfloat16 and gdevice.autocast_dtype(cpu, "off") is None
    with pytest.raises(UserError, match="amp fp16 needs a CUDA GPU"):
        gdevice.autocast_dtype(cpu, "fp16")


def test_native_bf16_reads_what_pytorch_reports(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert gdevice.native_bf16(torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not gdevice.native_bf16(torch.device("cpu"))


def test_fp16_on_the_cpu_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "sagan-digits", "--device", "cpu", "--set", "training.amp=fp16",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err == "gankit: error: --amp fp16 needs a CUDA GPU; on the CPU use bf16 (or off)" or (
        "fp16 needs a CUDA GPU" in err and "\n" not in err)
    assert not out.exists()


def test_losses_penalty_and_spectral_norm_stay_float32(tmp_path):
    cfg = sagan_digits_run(steps=4, checkpoint_every=2, amp="bf16", loss="wgan-gp")
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "r"), progress=False, batches=seeded_batches(cfg, 16))
    stats = trainer.gan.train_step()
    assert stats["d_loss"].dtype == torch.float32 and stats["gp"].dtype == torch.float32 and stats["gp"] > 0
    sn = [m for m in trainer.gan.D.modules() if has_spectral_norm(m)]
    u = sn[0].parametrizations.weight[0]._u
    assert u.dtype == torch.float32


def test_bf16_attention_takes_the_blocked_kernel_with_bounded_blocks(monkeypatch):
    """Under bf16 on the CPU the attention runs block by block (faster than the CPU flash kernel in bf16): never
    the N x N math fallback, no energy block above the budget, and the same output as the float32 module."""
    monkeypatch.setattr(attention_module, "BLOCK_ENERGIES", 4096)  # 16 query rows of the 256 keys at a time
    torch.manual_seed(0)
    block = SelfAttention2d(64)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    with torch.profiler.profile(record_shapes=True) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
        out.float().square().sum().backward()
    events = prof.key_averages(group_by_input_shape=True)
    names = {e.key for e in events}
    assert not any("scaled_dot_product" in n for n in names)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # every softmax (forward and backward) sees one block of energies: 16 query rows x 256 keys
    softmaxes = [e for e in events if e.key in ("aten::_softmax", "aten::_softmax_backward_data")]
    # 32 blocks (2 samples x 16 row blocks): the forward, the backward's recomputation, the softmax backward
    assert sum(e.count for e in softmaxes) == 3 * 32
    assert {math.prod(e.input_shapes[0]) for e in softmaxes} == {4096}
    with torch.no_grad():
        expected = block(x)
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("preset", ["sagan-digits", "pgan-digits", "dcgan-digits"])
def test_fifty_bf16_steps_of_every_digits_preset_stay_finite(tmp_path, preset):
    overrides = {"training": {"amp": "bf16", "device": "cpu", "tensorboard": False, "steps": 50}}
    cfg = resolve_config(preset, overrides=overrides)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "r"), progress=False)
    for _ in range(50):
        stats = trainer.gan.train_step()
        assert float(stats["skipped"]) == 0 and all(torch.isfinite(v).all() for v in stats.values())
    assert all(torch.isfinite(p).all() for p in trainer.gan.G.parameters())


def test_bf16_resume_equals_an_uninterrupted_bf16_run(tmp_path):
    cfg = sagan_digits_run(steps=4, checkpoint_every=2, amp="bf16")
    whole = Trainer(cfg, prepare_run_dir(tmp_path / "whole"), progress=False, batches=seeded_batches(cfg, 16))
    whole.fit()
    half_cfg = sagan_digits_run(steps=2, checkpoint_every=2, amp="bf16")
    half = Trainer(half_cfg, prepare_run_dir(tmp_path / "half"), progress=False, batches=seeded_batches(cfg, 16))
    half.fit()
    from gankit.io import load_checkpoint

    state = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")
    resumed = Trainer(cfg, tmp_path / "half", progress=False, batches=seeded_batches(cfg, 16), state=state)
    resumed.fit()
    for key, value in whole.gan.G.state_dict().items():
        assert torch.equal(value, resumed.gan.G.state_dict()[key]), key
    for key, value in whole.gan.ema.model.state_dict().items():
        assert torch.equal(value, resumed.gan.ema.model.state_dict()[key]), key
