"""The ``gankit`` command line: ``train``, ``sample``, ``presets``.

Every mistake a user can fix is a :class:`~gankit.errors.UserError`: one line on stderr naming the problem
and the fix, exit status 2, no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from gankit.errors import UserError
from gankit.version import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other user error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gankit", description="Train, sample and share SAGAN / SN-GAN / Progressive GANs.")
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a GAN from a preset or config file")
    t.add_argument("--preset", help="preset name (see `gankit presets`)")
    t.add_argument("--config", help="YAML file merged over the preset")
    t.add_argument("--data", help="dataset path (the built-in digits need none)")
    t.add_argument("--out", help="run folder (default: runs/<preset>-NNN)")
    t.add_argument("--steps", type=_positive_int, help="total training steps (G updates)")
    t.add_argument("--batch-size", type=_positive_int, help="images per D / G step")
    t.add_argument("--seed", type=int, help="random seed")
    t.add_argument("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    t.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set training.g_lr=2e-4 (repeatable)",
    )
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="generate images from a trained generator")
    s.add_argument("--checkpoint", required=True, help="run folder, .pt checkpoint or .safetensors export")
    s.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    group = s.add_mutually_exclusive_group()
    group.add_argument("--class-id", type=int, help="class of every image (conditional models)")
    group.add_argument("--balanced", action="store_true", help="cycle through all classes")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--truncation", type=float, help="truncate latents to [-T, T]")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    s.add_argument("--batch-size", type=_positive_int, default=256, help="images per forward pass")
    s.add_argument(
        "--out",
        required=True,
        help="OUT.png (grid), OUT.npz (arrays), a folder (one PNG per image), or OUT for both .png and .npz",
    )

    sub.add_parser("presets", help="list the presets with one-line descriptions")
    return parser


# ------------------------------------------------------------------------------------------------ train


def _default_out(preset: str | None) -> Path:
    base = Path("runs")
    stem = preset or "run"
    n = 0
    while (base / f"{stem}-{n:03d}").exists():
        n += 1
    return base / f"{stem}-{n:03d}"


def cmd_train(args: argparse.Namespace) -> int:
    from gankit.config import resolve_config
    from gankit.training import Trainer, TrainingInterrupted, prepare_run_dir

    progress = False if args.no_progress else None
    if args.resume:
        if args.preset or args.config or args.set:
            raise UserError("--resume continues a run with its own config; drop --preset / --config / --set")
        trainer = Trainer.resume(args.resume, steps=args.steps, progress=progress)
        print(f"gankit: resuming {args.resume} at step {trainer.step} of {trainer.cfg.training.steps}")
    else:
        overrides: dict = {"training": {}, "data": {}}
        for flag, key in (
            ("steps", "steps"),
            ("batch_size", "batch_size"),
            ("seed", "seed"),
            ("device", "device"),
            ("checkpoint_every", "checkpoint_every"),
        ):
            if getattr(args, flag) is not None:
                overrides["training"][key] = getattr(args, flag)
        if args.data is not None:
            overrides["data"]["path"] = args.data
        cfg = resolve_config(args.preset, args.config, overrides, args.set)
        if args.print_config:
            print(cfg.to_yaml(), end="")
            return 0
        out = Path(args.out) if args.out else _default_out(cfg.preset)
        trainer = Trainer(cfg, prepare_run_dir(out, overwrite=args.overwrite), progress=progress)
        print(
            f"gankit: training {cfg.preset or cfg.model.family} on {trainer.device} for {cfg.training.steps} "
            f"steps into {out}"
        )

    def on_term(signum, frame):  # SIGTERM behaves like Ctrl-C: save a checkpoint, then exit
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        trainer.fit()
    except TrainingInterrupted as exc:
        print(f"gankit: {exc}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    run = trainer.run_dir
    print(
        f"gankit: done at step {trainer.step}. Run folder {run}: samples/, metrics.csv, loss.png, "
        f"checkpoints/last.pt, generator.safetensors"
    )
    return 0


# ------------------------------------------------------------------------------------------------ sample


def sample_images(
    generator, num: int, *, class_id: int | None, balanced: bool, seed: int, truncation: float | None, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, H, W) float32 in [-1, 1] on CPU, labels (N,) int64, -1 when unconditional)``."""
    if num < 1:
        raise UserError(f"--num must be >= 1, got {num}")
    k = generator.num_classes
    if k == 0 and (class_id is not None or balanced):
        raise UserError("this generator is unconditional: drop --class-id / --balanced")
    if class_id is not None and not 0 <= class_id < k:
        raise UserError(f"--class-id {class_id} is out of range: this generator has classes 0..{k - 1}")
    if k == 0:
        labels = torch.full((num,), -1, dtype=torch.long)
    elif class_id is not None:
        labels = torch.full((num,), class_id, dtype=torch.long)
    elif balanced:
        labels = torch.arange(num) % k
    else:
        labels = torch.randint(k, (num,), generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        y = labels[start : start + n] if k else None
        chunks.append(generator.sample(n, labels=y, generator=g, truncation=truncation).float().cpu())
    return torch.cat(chunks), labels


def cmd_sample(args: argparse.Namespace) -> int:
    from gankit.api import load_generator
    from gankit.images import save_grid, save_images

    generator = load_generator(args.checkpoint, ema=not args.no_ema, device=args.device)
    images, labels = sample_images(
        generator,
        args.num,
        class_id=args.class_id,
        balanced=args.balanced,
        seed=args.seed,
        truncation=args.truncation,
        batch_size=args.batch_size,
    )
    out = Path(args.out)
    written: list[str] = []
    if out.suffix.lower() == ".npz":
        targets = {"npz": out}
    elif out.suffix.lower() == ".png":
        targets = {"png": out}
    elif args.out.endswith(("/", "\\")) or out.is_dir():
        save_images(images, out)
        print(f"gankit: wrote {len(images)} PNGs into {out}")
        return 0
    else:
        targets = {"png": out.with_name(out.name + ".png"), "npz": out.with_name(out.name + ".npz")}
    if "png" in targets:
        k = generator.num_classes
        if args.balanced and k and args.num % k == 0:  # show one row per class
            order = torch.argsort(labels, stable=True)
            save_grid(images[order], targets["png"], args.num // k, row_labels=[str(c) for c in range(k)])
        else:
            save_grid(images, targets["png"], int(np.ceil(np.sqrt(len(images)))))
        written.append(str(targets["png"]))
    if "npz" in targets:
        targets["npz"].parent.mkdir(parents=True, exist_ok=True)
        np.savez(targets["npz"], images=images.numpy().astype(np.float32), labels=labels.numpy().astype(np.int64))
        written.append(str(targets["npz"]))
    print(f"gankit: wrote {' and '.join(written)}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from gankit.config import preset_descriptions

    descriptions = preset_descriptions()
    width = max(len(n) for n in descriptions)
    for name, text in descriptions.items():
        first = text.split(". ")[0].rstrip(".")
        print(f"{name:<{width}}  {first}")
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "presets": cmd_presets}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 2
