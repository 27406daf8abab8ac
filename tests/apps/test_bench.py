import json

import pytest
import torch

from gankit.apps import bench
from gankit.apps.bench import bench_preset, format_report
from gankit.cli import main
from gankit.models import SAGANGenerator
from gankit.nn.attention import reference_attention
from tests.tiny import sagan_config, tiny_sets

TINY = tiny_sets()
MEASURE_PEAK = bench.matmul_flops_per_s
PEAK = 2.5e11  # stands in for the 2048^3 matmul measurement (seconds of CPU) where a test does not test it


@pytest.fixture(autouse=True)
def _stub_matmul_peak(monkeypatch):
    monkeypatch.setattr(bench, "matmul_flops_per_s", lambda device, dtype=torch.float32: PEAK)


def test_reference_attention_context_gives_the_same_model_outputs():
    cfg = sagan_config(g_conv_dim=16, d_conv_dim=16, g_attention_resolutions=(4, 8), num_classes=0)
    torch.manual_seed(0)
    G = SAGANGenerator(cfg).eval()
    with torch.no_grad():
        for a in G.attention.values():
            a.gamma.fill_(0.5)
    z = torch.randn(3, 16)
    fast = G(z)
    with reference_attention():
        slow = G(z)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_bench_numbers_from_a_known_clock_and_peak():
    """4 timed iterations of 100, 125, 125 and 900 ms on the clock: the median 125 ms, batch 4 x n_critic 2 ->
    64 img/s (the one slow iteration moves the mean only); the fraction of the (stubbed) peak is the counted
    FLOPs over 0.125 s over the peak."""
    ticks = iter([100.0, 100.1, 200.0, 200.125, 300.0, 300.125, 400.0, 400.9])  # start and end of each
    r = bench_preset("sagan-digits", batch_size=4, iters=4, warmup=1, device="cpu",
                     sets=[*TINY, "training.n_critic=2"], clock=lambda: next(ticks))
    assert r["ms_per_iter"] == pytest.approx(125.0) and r["img_per_s"] == pytest.approx(64.0)
    assert r["ms_per_iter_mean"] == pytest.approx(312.5) and r["ms_per_iter_range"] == pytest.approx([100.0, 900.0])
    assert r["flops_per_iter"] > 0 and r["matmul_flops_per_s"] == PEAK
    assert r["fraction_of_matmul_peak"] == pytest.approx(r["flops_per_iter"] / 0.125 / PEAK)
    text = format_report(r)
    assert "ms / iteration        125.0 (median of 4; 100.0-900.0)" in text and "img/s                 64.0" in text
    assert r["precision"] == "fp32" and "(fp32, measured now)" in text


def test_bench_counts_the_network_flops_and_rates_the_evaluated_ones_against_the_peak():
    """A ResNet SN-GAN folds its resampling into its convolutions: the FLOPs per iteration are the network's (as
    the two-step blocks compute them), the fraction of the peak uses the fewer FLOPs evaluated."""
    ticks = iter([1.0, 1.5, 2.0, 2.5])
    sets = ["model.g_conv_dim=8", "model.d_conv_dim=8", "training.tensorboard=false"]
    r = bench_preset("sngan-cifar10-resnet", batch_size=2, iters=2, warmup=1, device="cpu", sets=sets,
                     clock=lambda: next(ticks))  # fmt: skip
    assert 0 < r["evaluated_flops_per_iter"] < r["flops_per_iter"]
    assert r["achieved_flops_per_s"] == pytest.approx(r["flops_per_iter"] / 0.5)
    assert r["fraction_of_matmul_peak"] == pytest.approx(r["evaluated_flops_per_iter"] / 0.5 / PEAK)
    assert f"({r['evaluated_flops_per_iter'] / 1e9:.1f} evaluated" in format_report(r)


def test_bench_compares_bf16_with_the_bf16_peak(monkeypatch):
    asked = []
    monkeypatch.setattr(bench, "matmul_flops_per_s", lambda device, dtype=torch.float32: asked.append(dtype) or PEAK)
    r = bench_preset("sagan-digits", batch_size=2, iters=1, warmup=1, device="cpu", sets=TINY, amp="bf16")
    assert r["precision"] == "bf16" and asked == [torch.bfloat16]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_peak_is_measured_on_the_device(dtype):
    flops = MEASURE_PEAK(torch.device("cpu"), n=256, repeats=2, dtype=dtype)  # the real measurement, small matrix
    assert 1e7 < flops < 1e15


def test_bench_counts_attention_flops_exactly():
    """The counted FLOPs grow by exactly the attention matmuls when attention is added to G."""
    def flops(attn: str) -> int:
        sets = [*TINY, f"model.g_attention_resolutions={attn}", "model.d_attention_resolutions=[]"]
        return bench_preset("sagan-digits", batch_size=2, iters=1, warmup=1, device="cpu", sets=sets)["flops_per_iter"]

    extra = flops("[8]") - flops("[]")
    # G at 8x8 has 8 channels: q, k with 1 channel, v with 8; N = 64. Per image and pass: QK^T 2*N*N*1,
    # PV 2*N*N*8, and three 1x1 convs 2*N*8*(1+1+8). G runs forward 2x per iteration (D-step fakes, G step)
    # and backward once; bmm backward costs 2x its forward (both operands' grads), conv backward the same.
    n, b = 64, 2
    per_pass = 2 * n * n * 1 + 2 * n * n * 8 + 2 * n * 8 * (1 + 1 + 8)
    # the first conv's input (h) needs a grad too, so every backward is 2x; the extra 1x1 convs do as well
    assert extra == b * per_pass * (2 + 2)


def test_bench_cli(capsys):
    assert main(["bench", "--preset", "sagan-digits", "--batch-size", "2", "--iters", "1", "--warmup", "1",
                 "--device", "cpu", *sum((["--set", s] for s in TINY), [])]) == 0
    out = capsys.readouterr().out
    assert "img/s" in out and "device matmul peak" in out


def test_synthetic_trainer_removes_its_scratch_folder():
    import gc
    from pathlib import Path

    from gankit.apps.bench import synthetic_trainer

    trainer = synthetic_trainer("sagan-digits", batch_size=2, device="cpu", sets=TINY)
    trainer.gan.train_step()
    folder = Path(trainer.scratch_dir.name)
    assert folder.is_dir() and folder.name.startswith("gankit-bench-")
    del trainer
    gc.collect()
    assert not folder.exists()


def test_bench_json_never_replaces_an_existing_file(tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text("earlier numbers")
    args = ["bench", "--preset", "sagan-digits", "--batch-size", "2", "--iters", "1", "--warmup", "1",
            "--device", "cpu", "--json", str(out), *sum((["--set", s] for s in TINY), [])]
    assert main(args) == 2
    assert "--json" in capsys.readouterr().err and out.read_text() == "earlier numbers"
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(out.read_text())["batch_size"] == 2
