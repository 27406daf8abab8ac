"""The GPU check: everything gankit does fast on a CUDA device, in one short run that prints one table.

1. ``gankit bench`` of a SAGAN-64 iteration at batch 64 in fp32, bf16 and fp16 (channels_last, the default), and
   bf16 in NCHW and with torch.compile: img/s, ms/iteration, peak memory and the fraction of the matmul peak of
   that precision;
2. a 300-step ``sagan-celeba64`` training on synthetic data with ``training.amp=auto`` (losses finite, img/s);
3. ``torchrun --nproc_per_node=1`` training with NCCL (the distributed path, on one GPU);
4. FID-feature extraction speed: the FID Inception-v3 with random weights (the real ones need a download) on
   64x64 images resized to 299.

    bash benchmarks/gpu_check.sh                      # on the GPU machine (about 5 minutes on one H200)
    python benchmarks/gpu_check.py --device cpu --quick   # the same logic in seconds, as CI tests it

Every check runs even if an earlier one failed; its row then says what went wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BENCH_VARIANTS = [  # (label, gankit bench flags)
    ("fp32", ["--amp", "off"]),
    ("bf16", ["--amp", "bf16"]),
    ("fp16", ["--amp", "fp16"]),
    ("bf16, NCHW", ["--amp", "bf16", "--set", "training.channels_last=false"]),  # channels_last is the default
    ("bf16 + compile", ["--amp", "bf16", "--set", "training.compile=true"]),
]


def _env() -> dict[str, str]:
    """The child processes import this checkout's gankit (installed or not)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def bench_rows(device: str, quick: bool) -> list[tuple[str, str, str]]:
    rows = []
    size = ["--preset", "sagan-digits", "--batch-size", "2", "--iters", "1", "--warmup", "1",
            "--set", "model.g_conv_dim=8", "--set", "model.d_conv_dim=8"] if quick else [
        "--preset", "sagan-celeba64", "--batch-size", "64", "--iters", "20", "--warmup", "5"]  # fmt: skip
    variants = BENCH_VARIANTS[:2] if device == "cpu" else BENCH_VARIANTS  # fp16 and compile are for the GPU
    for label, flags in variants:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            args = ["bench", *size, "--device", device, *flags, "--json", str(out)]
            if quick:  # in this process: the logic is the same, without a second start of torch
                from gankit.cli import main as gankit

                if gankit(args) != 0:
                    rows.append((f"bench {label}", "failed", "gankit bench failed (its error is above)"))
                    continue
            else:  # a process of its own, so that its peak memory is its own
                proc = subprocess.run([sys.executable, "-m", "gankit", *args], capture_output=True, text=True,
                                      env=_env(), timeout=600)
                if proc.returncode != 0:
                    rows.append((f"bench {label}", "failed", _last_line(proc.stderr)))
                    continue
            r = json.loads(out.read_text())
        rows.append((
            f"bench {label}", f"batch {r['batch_size']}",
            f"{r['img_per_s']:.1f} img/s, {r['ms_per_iter']:.1f} ms/iter, {r['peak_memory_mb']:.0f} MB, "
            f"{100 * r['fraction_of_matmul_peak']:.0f}% of the {r['precision']} matmul peak "
            f"({r['matmul_flops_per_s'] / 1e12:.1f} TFLOP/s)",
        ))  # fmt: skip
    return rows


def training_row(device: str, quick: bool) -> tuple[str, str, str]:
    from gankit.apps.bench import synthetic_trainer

    steps = 3 if quick else 300
    preset, sets = ("sagan-digits", ["model.g_conv_dim=8", "model.d_conv_dim=8"]) if quick else ("sagan-celeba64", [])
    sets = [*sets, f"training.steps={steps}", "training.amp=auto", f"training.checkpoint_every={steps}",
            f"training.sample_every={steps}", "training.log_every=50"]
    trainer = synthetic_trainer(preset, batch_size=2 if quick else 64, device=device, sets=sets)
    t0 = time.perf_counter()
    trainer.fit()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    losses = [float(line.split(",")[2]) for line in trainer.run.metrics.read_text().splitlines()[1:]]
    finite = all(abs(v) < float("inf") for v in losses)
    images = trainer.gan.images_seen
    amp = str(trainer.gan.amp_dtype or torch.float32).replace("torch.", "")
    return (f"train {steps} steps", f"{preset}, amp auto ({amp})",
            f"{images / seconds:.0f} img/s, {seconds:.1f} s, losses {'finite' if finite else 'NOT finite'}")


def torchrun_row(device: str, quick: bool) -> tuple[str, str, str]:
    backend = "gloo" if device == "cpu" else "nccl"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "gankit",
               "train", "--preset", "sagan-digits", "--device", device, "--steps", "3" if quick else "50",
               "--out", str(Path(tmp) / "run"), "--no-progress", "--set", "training.tensorboard=false"]
        if quick:
            cmd += ["--set", "model.g_conv_dim=8", "--set", "model.d_conv_dim=8", "--set", "training.batch_size=4"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return ("torchrun, 1 process", backend, "failed: " + _last_line(proc.stderr))
    return ("torchrun, 1 process", backend, f"ok in {seconds:.1f} s (sagan-digits)")


def inception_row(device: str, quick: bool) -> tuple[str, str, str]:
    from gankit.metrics.features import inception_input
    from gankit.metrics.inception import FIDInceptionV3

    dev = torch.device(device)
    net = FIDInceptionV3().to(dev).eval()
    n, batch = (4, 2) if quick else (2048, 256)
    images = torch.rand(batch, 3, 64, 64, device=dev) * 2 - 1
    with torch.no_grad():
        net(inception_input(images))  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n // batch):
            features, _ = net(inception_input(images))
        if dev.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return ("FID features", f"Inception-v3 (random weights), {tuple(features.shape[1:])} per image",
            f"{n / seconds:.0f} img/s (64x64 resized to 299, batch {batch})")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _guarded(check: Callable[[], list], name: str) -> list[tuple[str, str, str]]:
    try:
        return check()
    except Exception as exc:  # one failed check must not hide the others
        traceback.print_exc()
        return [(name, "failed", f"{type(exc).__name__}: {str(exc)[:160]}")]


def run_checks(device: str, quick: bool) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    rows += _guarded(lambda: bench_rows(device, quick), "bench")
    rows += _guarded(lambda: [training_row(device, quick)], "train")
    rows += _guarded(lambda: [torchrun_row(device, quick)], "torchrun")
    rows += _guarded(lambda: [inception_row(device, quick)], "FID features")
    return rows


def format_table(rows: list[tuple[str, str, str]], device_name: str) -> str:
    lines = [f"GPU check on {device_name} (torch {torch.__version__})", "", "| check | setting | result |",
             "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the logic in seconds")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on the GPU machine (or --device cpu --quick)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    rows = run_checks(args.device, args.quick)
    print(format_table(rows, name))
    return 1 if any(b == "failed" or c.startswith("failed") for _, b, c in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    raise SystemExit(main())
