"""Where one SAGAN-64 training iteration spends its time: ``torch.profiler`` over gankit's ``train_step``
(``sagan-celeba64`` shapes, random data), the top ops by self time.

    python benchmarks/profile_step.py                       # batch 64, fp32 and bf16
    python benchmarks/profile_step.py --batch-size 16 --amp off --top 15
    python benchmarks/profile_step.py --amp bf16 --shapes      # + the top ops split by input shape
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from gankit.apps.bench import synthetic_trainer


def top_ops(batch_size: int, amp: str, top: int, iters: int, shapes: bool = False) -> tuple[str, float]:
    """Markdown table of the ``top`` ops by self time per iteration (split by input shapes with ``shapes``)."""
    trainer = synthetic_trainer("sagan-celeba64", batch_size=batch_size, device="cpu", sets=[f"training.amp={amp}"])
    for _ in range(3):  # warm-up: early iterations still fault in fresh pages, which would be blamed on fills
        trainer.gan.train_step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=shapes) as prof:
        for _ in range(iters):
            trainer.gan.train_step()
    events = prof.key_averages(group_by_input_shape=shapes)
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    head = "| op | input shapes | self ms / iter | share | calls / iter |" if shapes else \
        "| op | self ms / iter | share | calls / iter |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for e in rows:
        shape = f" {_short_shapes(e.input_shapes)} |" if shapes else ""
        lines.append(f"| `{e.key}` |{shape} {e.self_cpu_time_total / 1000 / iters:.0f} | "
                     f"{100 * e.self_cpu_time_total / total:.1f}% | {e.count // iters} |")
    return "\n".join(lines), total / 1000 / iters


def _short_shapes(input_shapes: list) -> str:
    """The non-empty input shapes of an op, e.g. ``[64,512,8,8] [64,256,4,4] [512,256,4,4]``."""
    return " ".join("[" + ",".join(map(str, s)) + "]" for s in input_shapes if s) or "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--amp", nargs="+", default=["off", "bf16"])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--shapes", action="store_true", help="split the ops by their input shapes")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for amp in args.amp:
        table, total_ms = top_ops(args.batch_size, amp, args.top, args.iters, args.shapes)
        print(f"\n### amp={amp}: {total_ms:.0f} ms of op self time per iteration\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
