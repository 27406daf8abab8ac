"""``gankit bench``: time a preset's training iteration and compare it with the device's own matmul peak.

Prints img/s, ms per iteration, peak memory, the iteration's model FLOPs (``torch.utils.flop_counter`` over one
iteration run with the reference attention formulation, so the fused kernel's zero padding is not counted as
useful work, and with the ResNet blocks' resampling in its two-step form, so the work is the network's as
defined), the achieved FLOP/s of that work, and the dense matmul FLOP/s of the precision measured in the same run.
The fraction of that peak divides the FLOPs the kernels evaluate (fewer where :mod:`gankit.nn.resample` folds the
resampling into the convolutions; counted over a second iteration) per second by it: the distance to the limit is
one ratio, and it cannot pass 100% by counting work that was never done.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from gankit.apps.outputs import claim_outputs
from gankit.config import resolve_config
from gankit.data import TensorBatches
from gankit.device import select_device
from gankit.io import write_json
from gankit.nn.attention import reference_attention
from gankit.nn.resample import two_step_resampling
from gankit.training import Trainer

_aten = torch.ops.aten


def _attention_flops(q_shape, k_shape, v_shape) -> int:
    b, h, lq, d = q_shape
    lk, dv = k_shape[-2], v_shape[-1]
    return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv  # Q K^T, then P V


try:  # PyTorch's counter knows the CUDA attention kernels but not the fused CPU one gankit uses

    @register_flop_formula(_aten._scaled_dot_product_flash_attention_for_cpu)
    def _sdpa_cpu_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return _attention_flops(query, key, value)

    @register_flop_formula(_aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _sdpa_cpu_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        # the backward recomputes Q K^T and does four more matmuls of the same sizes: 2.5x the forward
        return 5 * _attention_flops(query, key, value) // 2

except (AttributeError, RuntimeError, ValueError):  # already registered (module reloaded) or op missing
    pass


_PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(
    device: torch.device, n: int | None = None, repeats: int = 5, dtype: torch.dtype = torch.float32
) -> float:
    """The device's dense ``dtype`` matmul throughput (best of ``repeats``), measured now."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's peak RSS


def synthetic_trainer(preset: str, *, batch_size: int | None = None, device: str = "auto",
                      sets: list[str] | None = None):
    """A :class:`~gankit.training.Trainer` for ``preset`` fed random images (and labels) of the model's shape,
    writing into a temporary folder: what a benchmark times, with no dataset needed."""
    training: dict[str, Any] = {"device": device, "tensorboard": False}
    if batch_size is not None:
        training["batch_size"] = batch_size
    no_data = {"dataset": "digits", "path": None, "labels": None}  # the data section goes unused: batches are given
    cfg = resolve_config(preset, overrides={"training": training, "data": no_data}, sets=sets)
    dev = select_device(device)
    m, t = cfg.model, cfg.training
    n = max(t.batch_size, 64)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, m.channels, m.image_size, m.image_size, generator=g) * 2 - 1  # type: ignore[attr-defined]
    labels = torch.randint(m.num_classes, (n,), generator=g) if m.num_classes else None  # type: ignore[attr-defined]
    batches = TensorBatches(images, labels, batch_size=t.batch_size, seed=0, device=dev)
    # The folder lives as long as the trainer: TemporaryDirectory removes it when collected or at exit.
    scratch = tempfile.TemporaryDirectory(prefix="gankit-bench-")
    trainer = Trainer(cfg, scratch.name, progress=False, batches=batches)
    trainer.scratch_dir = scratch  # type: ignore[attr-defined]
    return trainer


def bench_preset(
    preset: str,
    *,
    batch_size: int | None = None,
    iters: int = 5,
    warmup: int = 3,
    device: str = "auto",
    sets: list[str] | None = None,
    amp: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Time ``iters`` training iterations of ``preset`` on synthetic data (after ``warmup``) with ``clock``;
    ``ms_per_iter`` and everything derived from it use the median iteration.

    ``amp`` sets ``training.amp`` (``off``, ``bf16``, ...; default: the preset's). The peak the iteration is
    compared with is the matmul peak of the precision it runs in, measured in the same run."""
    if amp is not None:
        sets = [*(sets or []), f"training.amp={amp}"]
    trainer = synthetic_trainer(preset, batch_size=batch_size, device=device, sets=sets)
    dev, t = trainer.device, trainer.cfg.training

    # the work as the network defines it: attention and the folded resampling in their plain formulations
    with reference_attention(), two_step_resampling(), FlopCounterMode(display=False) as counter:
        trainer.gan.train_step()
    flops = counter.get_total_flops()
    # what the kernels evaluate (the folded convolutions do fewer multiply-adds): the rate against the peak
    with reference_attention(), FlopCounterMode(display=False) as counter:
        trainer.gan.train_step()
    evaluated = counter.get_total_flops()
    for _ in range(max(0, warmup - 2)):
        trainer.gan.train_step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    # Each iteration on its own clock, and the median reported: one iteration slowed by the host (a busy
    # neighbour, a page-fault storm) would move a mean, and the peak it is compared with is a best-of too.
    times = []
    for _ in range(iters):
        t0 = clock()
        trainer.gan.train_step()
        _sync(dev)
        times.append(clock() - t0)
    seconds = statistics.median(times)
    precision = trainer.gan.amp_dtype or torch.float32
    peak = matmul_flops_per_s(dev, dtype=precision)
    images_per_iter = t.batch_size * t.n_critic
    return {
        "preset": preset,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
        "batch_size": t.batch_size,
        "iters": iters,
        "img_per_s": images_per_iter / seconds,
        "ms_per_iter": 1000 * seconds,
        "ms_per_iter_mean": 1000 * statistics.fmean(times),
        "ms_per_iter_range": [1000 * min(times), 1000 * max(times)],
        "peak_memory_mb": _peak_memory_mb(dev),
        "flops_per_iter": flops,
        "evaluated_flops_per_iter": evaluated,
        "achieved_flops_per_s": flops / seconds,
        "precision": _PRECISION_NAMES[precision],
        "matmul_flops_per_s": peak,
        "fraction_of_matmul_peak": evaluated / seconds / peak,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def run_bench(preset: str, *, json_out: str | None = None, overwrite: bool = False, **options: Any) -> dict[str, Any]:
    """``gankit bench``: :func:`bench_preset` with ``options``, the numbers also written to ``json_out``."""
    with claim_outputs([json_out] if json_out else [], overwrite=overwrite, param="json"):
        report = bench_preset(preset, **options)
        if json_out:
            write_json(json_out, report)
    return report


def format_report(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"gankit bench: {r['preset']} on {r['device']} (torch {r['torch']}, {r['threads']} threads), "
            f"batch {r['batch_size']}, {r['iters']} timed iterations",
            f"  img/s                 {r['img_per_s']:.1f}",
            f"  ms / iteration        {r['ms_per_iter']:.1f} (median of {r['iters']}; "
            f"{r['ms_per_iter_range'][0]:.1f}-{r['ms_per_iter_range'][1]:.1f})",
            f"  peak memory           {r['peak_memory_mb']:.0f} MB",
            f"  FLOPs / iteration     {r['flops_per_iter'] / 1e9:.1f} GFLOP{_evaluated_note(r)}",
            f"  achieved              {r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s",
            f"  precision             {r['precision']}",
            f"  device matmul peak    {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s ({r['precision']}, measured now)",
            f"  fraction of peak      {100 * r['fraction_of_matmul_peak']:.0f}%",
        ]
    )


def _evaluated_note(r: dict[str, Any]) -> str:
    """Where the kernels evaluate fewer FLOPs than the network defines: how many (the fraction of peak uses them)."""
    if r["evaluated_flops_per_iter"] == r["flops_per_iter"]:
        return ""
    return f" ({r['evaluated_flops_per_iter'] / 1e9:.1f} evaluated: resampling folded into the convolutions)"
