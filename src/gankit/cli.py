"""The ``gankit`` command line: ``train``, ``sample``, ``interpolate``, ``presets``, ``export``, ``attention``,
``evaluate``.

Every mistake a user can fix is a :class:`~gankit.errors.UserError`: one line on stderr naming the problem
and the fix, exit status 2, no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from gankit.errors import UserError, refuse_overwrite
from gankit.version import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


DATASET_CHOICES = ("folder", "mnist", "cifar10", "digits", "cache")  # gankit.data.DATASETS less "auto"


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
    t.add_argument(
        "--data",
        help="image folder, MNIST IDX folder, CIFAR-10 .bin folder or `gankit prepare` cache (format detected; "
        "the built-in digits need none)",
    )
    t.add_argument("--dataset", choices=DATASET_CHOICES, help="data format, instead of detecting it from --data")
    t.add_argument(
        "--labels",
        choices=("subdirs", "none"),
        help="subdirs: one sub-folder per class (default for conditional models); writes classes.json",
    )
    t.add_argument("--strict", action="store_true", help="stop at the first bad image file instead of skipping it")
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
    t.add_argument("--nproc", type=_positive_int,
                   help="train data-parallel on N processes of this machine (launches torchrun for you)")

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
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")

    sub.add_parser("presets", help="list the presets with one-line descriptions")

    b = sub.add_parser("bench", help="time a preset's training iteration against the device's matmul peak")
    b.add_argument("--preset", required=True, help="preset name (see `gankit presets`)")
    b.add_argument("--batch-size", type=_positive_int, help="images per D / G step (default: the preset's)")
    b.add_argument("--iters", type=_positive_int, default=5, help="timed iterations after warm-up (default 5)")
    b.add_argument("--warmup", type=_positive_int, default=2, help="untimed iterations first (default 2)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    b.add_argument("--json", help="also write the numbers to this JSON file")
    b.add_argument("--overwrite", action="store_true", help="replace an existing --json file")

    p = sub.add_parser("prepare", help="decode a dataset once into a fast memory-mapped cache file")
    p.add_argument("--data", required=True, help="image folder, MNIST IDX folder or CIFAR-10 .bin folder")
    p.add_argument("--size", required=True, type=_positive_int, help="image size S of the model (S x S)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1 (greyscale) or 3 (RGB, default)")
    p.add_argument("--labels", choices=("subdirs",), help="store class labels from one sub-folder per class")
    p.add_argument("--out", required=True, help="cache file to write (outside the data folder)")
    p.add_argument("--dataset", choices=("folder", "mnist", "cifar10"), help="data format (default: detected)")
    p.add_argument("--split", default="train", choices=("train", "test", "all"), help="MNIST / CIFAR-10 split")
    p.add_argument("--workers", type=int, help="decoding processes (default: one per core but one)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad image file instead of skipping it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="write a run's generator to safetensors (optionally with spectral norm folded)")
    e.add_argument("run", metavar="RUN", help="run folder, .pt checkpoint or .safetensors export")
    e.add_argument("--out", required=True, help="FILE.safetensors to write")
    e.add_argument(
        "--fold-sn",
        action="store_true",
        help="fold spectral norm into plain weights (same eval outputs, no u/v vectors; for deployment)",
    )
    e.add_argument("--no-ema", action="store_true", help="export the raw generator instead of its EMA")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    a = sub.add_parser("attention", help="draw the attention-map figure of a SAGAN generator")
    a.add_argument("--checkpoint", required=True, help="run folder, .pt checkpoint or .safetensors export")
    a.add_argument("--layer", help="one attention layer, e.g. attention.16 (default: all of G's)")
    a.add_argument("--queries", type=_positive_int, default=4, help="query points per layer (default 4)")
    a.add_argument("--class-id", type=int, help="class of the generated image (conditional models)")
    a.add_argument("--seed", type=int, default=0, help="random seed of the latent (default 0)")
    a.add_argument("--out", required=True, help="FIG.png to write")
    a.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    w = sub.add_parser("interpolate", help="latent walks: one row per walk between two seeded latents")
    w.add_argument("--checkpoint", required=True, help="run folder, .pt checkpoint, .safetensors export or zoo .pth")
    w.add_argument("--steps", type=_positive_int, default=8, help="images per walk, both endpoints included (8)")
    w.add_argument("--rows", type=_positive_int, default=4, help="number of walks (default 4)")
    w.add_argument("--mode", choices=("lerp", "slerp"), default="lerp", help="linear or spherical (default lerp)")
    w.add_argument("--class-id", type=int, help="class of every walk (conditional models; default: one per row)")
    w.add_argument("--seed", type=int, default=0, help="random seed of the endpoints (default 0)")
    w.add_argument("--truncation", type=float, help="truncate the endpoint latents to [-T, T]")
    w.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA")
    w.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    w.add_argument(
        "--out",
        required=True,
        help="STRIP.png (grid, clamped to [-1, 1] for display), FILE.npz (raw images, latents), or OUT for both",
    )
    w.add_argument("--overwrite", action="store_true", help="replace existing output files")

    v = sub.add_parser("evaluate", help="FID, KID, IS, precision/recall, density/coverage of a generator")
    v.add_argument("--checkpoint", required=True, help="run folder, .pt checkpoint, .safetensors export or .npz")
    v.add_argument("--data", required=True, help="real data: digits, or a dataset path (folder, MNIST, CIFAR-10)")
    v.add_argument("--num", type=_positive_int, default=10000, help="generated images (default 10000)")
    v.add_argument(
        "--features",
        default="auto",
        help="inception, digits (small classifier for small grayscale data) or FILE (TorchScript, .safetensors); "
        "default: digits for --data digits, inception otherwise",
    )
    v.add_argument("--metrics", help="comma-separated subset of fid,kid,is,pr,dc (default: all)")
    v.add_argument("--batch-size", type=_positive_int, default=250, help="images per forward pass (default 250)")
    v.add_argument("--seed", type=int, default=0, help="random seed of latents and subsets (default 0)")
    v.add_argument("--inception-weights", help="pt_inception-2015-12-05-6726825d.pth (or GANKIT_INCEPTION_WEIGHTS)")
    v.add_argument("--no-ema", action="store_true", help="evaluate the raw generator instead of its EMA")
    v.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.add_argument("--out", required=True, help="METRICS.json to write")
    v.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return parser


# ------------------------------------------------------------------------------------------------ train


def _default_out(preset: str | None) -> Path:
    base = Path("runs")
    stem = preset or "run"
    n = 0
    while (base / f"{stem}-{n:03d}").exists():
        n += 1
    return base / f"{stem}-{n:03d}"


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Single process, or under torchrun (``--nproc N`` starts it): every rank runs this."""
    from gankit.training import distributed
    from gankit.training.run import select_device

    if args.nproc and args.nproc > 1 and not distributed.launched_by_torchrun():
        return distributed.launch(args.nproc, _without_nproc(args.argv))
    try:
        if distributed.launched_by_torchrun():
            distributed.init_distributed(select_device(args.device or "auto"))
        return _train(args)
    finally:
        distributed.cleanup()  # destroy_process_group on every exit path


def _train(args: argparse.Namespace) -> int:
    from gankit.config import resolve_config
    from gankit.training import Trainer, TrainingInterrupted, distributed, new_run_dir

    main_rank = distributed.current().is_main
    say = print if main_rank else (lambda *a, **k: None)

    progress = False if args.no_progress else None
    if args.resume:
        if args.preset or args.config or args.set:
            raise UserError("--resume continues a run with its own config; drop --preset / --config / --set")
        trainer = Trainer.resume(args.resume, steps=args.steps, progress=progress)
        say(f"gankit: resuming {args.resume} at step {trainer.step} of {trainer.cfg.training.steps}")
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
            overrides["data"]["dataset"] = "auto"  # --data names the data; its format is read from the path
        if args.dataset is not None:
            overrides["data"]["dataset"] = args.dataset
        if args.labels is not None:
            overrides["data"]["labels"] = args.labels
        if args.strict:
            overrides["data"]["strict"] = True
        cfg = resolve_config(args.preset, args.config, overrides, args.set)
        if args.print_config:
            print(cfg.to_yaml(), end="")
            return 0
        out = Path(args.out) if args.out else _default_out(cfg.preset)
        # Rank 0 alone creates (or refuses) the run folder; the others wait for it. Should the setup fail (bad
        # data, say), the folder goes back to how it was: an --overwrite'n run is not lost to a typo.
        setup = new_run_dir(out, overwrite=args.overwrite) if main_rank else contextlib.nullcontext()
        with setup:
            distributed.barrier()
            trainer = Trainer(cfg, out, progress=progress)
        say(
            f"gankit: training {cfg.preset or cfg.model.family} on {trainer.device} for {cfg.training.steps} "
            f"steps into {out}"
        )

    def on_term(signum, frame):  # SIGTERM behaves like Ctrl-C: save a checkpoint, then exit
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        trainer.fit()
    except TrainingInterrupted as exc:
        say(f"gankit: {exc}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    run = trainer.run_dir
    say(
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

    out = Path(args.out)
    folder = args.out.endswith(("/", "\\")) or out.is_dir()
    if out.suffix.lower() in (".npz", ".png"):
        targets = {out.suffix.lower()[1:]: out}
    elif folder:
        targets = {}
        refuse_overwrite((out / f"{i:06d}.png" for i in range(max(args.num, 0))), args.overwrite)
    else:
        targets = {"png": out.with_name(out.name + ".png"), "npz": out.with_name(out.name + ".npz")}
    refuse_overwrite(targets.values(), args.overwrite)
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
    written: list[str] = []
    if folder and not targets:
        save_images(images, out)
        print(f"gankit: wrote {len(images)} PNGs into {out}")
        return 0
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


def cmd_export(args: argparse.Namespace) -> int:
    from gankit.export import export_generator
    from gankit.training.checkpoint import SPECTRAL_NORM_FOLDED, read_generator_export

    refuse_overwrite([args.out], args.overwrite)
    path = export_generator(args.run, args.out, fold_sn=args.fold_sn, ema=not args.no_ema)
    folded = read_generator_export(path)[2].get(SPECTRAL_NORM_FOLDED) == "true"
    what = "spectral norm folded" if folded else "no spectral norm in G to fold" if args.fold_sn else "as trained"
    print(f"gankit: wrote {path} ({'raw' if args.no_ema else 'EMA'} generator, {what})")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from gankit.api import load_generator
    from gankit.attention_figure import attention_figure

    refuse_overwrite([args.out], args.overwrite)
    generator = load_generator(args.checkpoint)
    heatmaps = attention_figure(
        generator, args.out, layer=args.layer, queries=args.queries, class_id=args.class_id, seed=args.seed
    )
    print(f"gankit: wrote {args.out} ({len(heatmaps)} attention layer(s): {', '.join(heatmaps)})")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from gankit.api import load_generator
    from gankit.images import save_grid
    from gankit.interpolate import latent_walks

    if args.steps < 2:
        raise UserError(f"--steps must be >= 2 for a walk between two latents, got {args.steps}")
    out = Path(args.out)
    suffix = out.suffix.lower()
    targets = (
        {suffix[1:]: out}
        if suffix in (".png", ".npz")
        else {"png": out.with_name(out.name + ".png"), "npz": out.with_name(out.name + ".npz")}
    )
    refuse_overwrite(targets.values(), args.overwrite)
    generator = load_generator(args.checkpoint, ema=not args.no_ema, device=args.device)
    walk = latent_walks(
        generator,
        rows=args.rows,
        steps=args.steps,
        mode=args.mode,
        seed=args.seed,
        class_id=args.class_id,
        truncation=args.truncation,
    )
    if "png" in targets:
        labels = [str(int(c)) for c in walk.labels] if generator.num_classes else None
        save_grid(walk.images.flatten(0, 1), targets["png"], args.steps, row_labels=labels)
    if "npz" in targets:
        targets["npz"].parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            targets["npz"],
            images=walk.images.numpy().astype(np.float32),  # (rows, steps, C, H, W), raw: never clamped
            latents=walk.latents.numpy().astype(np.float32),
            positions=walk.positions.numpy(),
            labels=walk.labels.numpy().astype(np.int64),
        )
    print(f"gankit: wrote {' and '.join(str(p) for p in targets.values())} ({args.rows} {args.mode} walks)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from gankit.data import prepare_cache

    header = prepare_cache(
        args.data,
        args.out,
        size=args.size,
        channels=args.channels,
        labels=args.labels == "subdirs",
        dataset=args.dataset,
        split=args.split,
        strict=args.strict,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
    )
    classes = f", {len(header['classes'])} classes" if header["classes"] else ""
    print(f"gankit: cache {args.out}: {header['count']} images{classes}; train with --data {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gankit.metrics.evaluate import run_evaluate

    return run_evaluate(args)


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from gankit.bench import bench_preset, format_report

    if args.json:
        refuse_overwrite([args.json], args.overwrite, flag="--json")
    report = bench_preset(args.preset, batch_size=args.batch_size, iters=args.iters, warmup=args.warmup,
                          device=args.device, sets=args.set)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


COMMANDS = {
    "bench": cmd_bench,
    "evaluate": cmd_evaluate,
    "prepare": cmd_prepare,
    "train": cmd_train,
    "sample": cmd_sample,
    "presets": cmd_presets,
    "export": cmd_export,
    "attention": cmd_attention,
    "interpolate": cmd_interpolate,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
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
