"""``gankit sample``: images from a generator into a grid PNG, an ``.npz``, or a folder of PNGs.

Samples are made and written in batches, so memory does not grow with ``num``: a folder gets its files as they
are made and an ``.npz`` is streamed to disk (refused up front when it would not fit on the disk). A grid is one
picture, so it is capped at :data:`MAX_GRID_IMAGES`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from gankit import interrupts, log
from gankit.api import load_generator
from gankit.apps.onnx import OnnxGenerator, is_onnx_file
from gankit.apps.outputs import check_free_space, claim_outputs, save_npz, stream_npz, targets_for
from gankit.errors import ParameterError
from gankit.images import save_grid, save_images
from gankit.io import RunDir
from gankit.models.base import Generator

MAX_GRID_IMAGES = 10_000


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """Which samples: ``num`` images with class ``class_id`` (all of them), or cycling through the classes
    (``balanced``), or uniform random classes; latents seeded with ``seed`` (optionally with the truncation trick
    of :meth:`~gankit.models.base.Generator.sample_latents`), made ``batch_size`` at a time. Samples do not depend
    on ``batch_size``."""

    num: int
    class_id: int | None = None
    balanced: bool = False
    seed: int = 0
    truncation: float | None = None
    batch_size: int = 256

    def check(self, generator: Generator) -> None:
        if self.num < 1:
            raise ParameterError("num", f"must be >= 1, got {self.num}")
        generator.check_class_id(self.class_id)
        if self.balanced and not generator.num_classes:
            raise ParameterError("balanced", "is not for this generator: it is unconditional (drop it)")


def open_generator(source: str | Path, *, ema: bool = True, device: str = "auto") -> Generator:
    """The generator ``gankit sample`` runs: an ONNX file of ``gankit export --format onnx`` with onnxruntime on the
    CPU (:class:`~gankit.apps.onnx.OnnxGenerator`: the same latents, labels and images as its PyTorch model), or
    any source of :func:`gankit.load_generator`. Options only a PyTorch model has are refused for an ONNX file."""
    if not is_onnx_file(source):
        return load_generator(source, ema=ema, device=device)
    if not ema:
        raise ParameterError("no_ema", f"needs a PyTorch checkpoint: {source} holds the one generator it was "
                                       "exported with (gankit export --no-ema exports the raw one)")  # fmt: skip
    if device not in ("auto", "cpu"):
        raise ParameterError("device", f"{device} needs a PyTorch checkpoint: {source} runs on the CPU with "
                                       "onnxruntime")  # fmt: skip
    return OnnxGenerator(source)


def label_chunks(generator: Generator, spec: SampleSpec) -> Iterator[torch.Tensor]:
    """The labels of the samples, ``batch_size`` at a time: int64, -1 when the model is unconditional; random
    classes come from a generator seeded with ``seed + 1``."""
    spec.check(generator)
    g = torch.Generator().manual_seed(spec.seed + 1)
    for start in range(0, spec.num, spec.batch_size):
        n = min(spec.batch_size, spec.num - start)
        if spec.balanced:
            yield (torch.arange(start, start + n) % generator.num_classes).long()
            continue
        labels = generator.class_labels(n, class_id=spec.class_id, generator=g)
        yield torch.full((n,), -1, dtype=torch.long) if labels is None else labels


def sample_chunks(generator: Generator, spec: SampleSpec) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images (n, C, H, W) float32 on the CPU, labels (n,) int64)``, ``batch_size`` samples at a time."""
    g = torch.Generator().manual_seed(spec.seed)
    for labels in label_chunks(generator, spec):
        y = labels if generator.num_classes else None
        yield generator.sample(len(labels), labels=y, generator=g, truncation=spec.truncation).float().cpu(), labels


def write_samples(
    generator: Generator,
    out: str | Path,
    spec: SampleSpec,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    class_names: list[str] | None = None,
) -> list[Path]:
    """Write the samples of ``spec`` to ``out`` (``OUT.png`` grid, ``OUT.npz``, a folder ``OUT/`` of PNGs, or a bare
    ``OUT`` for both a grid and an ``.npz``); returns what was written. Nothing is written when a target would
    replace an existing file (unless ``overwrite``), the grid would be too large or the ``.npz`` too big for the
    disk. ``class_names`` (one per class, e.g. :func:`run_class_names`) label the rows of a balanced grid."""
    spec.check(generator)
    num = spec.num
    out_str = str(out)
    out = Path(out)
    chunks = sample_chunks(generator, spec)
    if out_str.endswith(("/", "\\")) or out.is_dir():
        with claim_outputs([out], overwrite=True, folders=True):  # writable, one writer; numbered PNGs next
            _refuse_numbered_pngs(out, overwrite)
            _write_folder(out, chunks, num, progress)
        return [out]
    targets = targets_for(out)
    with claim_outputs(targets.values(), overwrite=overwrite):
        _write_targets(generator, spec, targets, chunks, progress, class_names)
    return list(targets.values())


def write_projected(generator: Generator, out: str | Path, projection, *, overwrite: bool = False) -> list[Path]:
    """The images of a ``gankit project`` file (:class:`~gankit.apps.project.ProjectionFile`, checked against
    ``generator``'s weights first) rendered as it renders them, written as :func:`write_samples` writes: ``OUT.png``,
    ``OUT.npz`` (images, labels, latents), a folder ``OUT/`` of PNGs, or both files for a bare ``OUT``."""
    projection.check_model(generator)
    out_str, out = str(out), Path(out)
    with torch.no_grad():
        images = torch.cat([projection.render(generator, i).float().cpu() for i in range(len(projection))])
    if out_str.endswith(("/", "\\")) or out.is_dir():
        with claim_outputs([out], overwrite=True, folders=True):
            _refuse_numbered_pngs(out, overwrite)
            _write_folder(out, iter([(images, projection.classes)]), len(images), False)
        return [out]
    targets = targets_for(out)
    with claim_outputs(targets.values(), overwrite=overwrite):
        if "npz" in targets:
            save_npz(targets["npz"], images=images.numpy(), labels=projection.classes.numpy().astype(np.int64),
                     latents=projection.latents.float().numpy())
        if "png" in targets:
            save_grid(images, targets["png"], int(np.ceil(np.sqrt(len(images)))))
    return list(targets.values())


def run_class_names(source: str | Path) -> list[str] | None:
    """The class names in ``classes.json`` of the run ``source`` belongs to (the run folder, its
    ``generator.safetensors`` or a checkpoint in its ``checkpoints/``); None for other sources, a run without
    labelled data, or a ``classes.json`` that cannot be read (the grid then shows class ids)."""
    p = Path(source)
    roots = [p] if p.is_dir() else [p.parent] + ([p.parent.parent] if p.parent.name == RunDir.CHECKPOINTS else [])
    for root in roots:
        run = RunDir(root)
        if not (run.is_run() and run.classes.is_file()):
            continue
        try:
            names = json.loads(run.classes.read_text(encoding="utf-8")).get("classes")
        except (OSError, ValueError, AttributeError):
            names = None
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return names
        log.warn(f"{run.classes} holds no list of class names; the grid rows show class ids")
        return None
    return None


def _write_folder(out: Path, chunks: Iterator[tuple[torch.Tensor, torch.Tensor]], num: int, progress) -> None:
    """Numbered PNGs into ``out``, batch by batch. Interrupted or failed, the PNGs this call made are removed, so
    the folder never holds a silently incomplete set (the one line says so)."""
    made: list[Path] = []
    try:
        with log.progress(num, desc="sampling", unit="img", enabled=progress) as bar:
            for start, (images, _) in _counted(chunks):
                names = [out / f"{start + i:06d}.png" for i in range(len(images))]
                made += [p for p in names if not p.exists()]  # before writing: a batch can stop midway
                save_images(images, out, start=start)
                bar.update(len(images))
    except BaseException as exc:
        written = [path for path in made if path.exists()]
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, KeyboardInterrupt):
            raise interrupts.note(exc, f"removed the {len(written)} PNGs written so far into {out}") from None
        raise


def _write_targets(
    generator: Generator, spec: SampleSpec, targets: dict[str, Path], chunks, progress, class_names=None
) -> None:
    num = spec.num
    if "png" in targets and num > MAX_GRID_IMAGES:
        raise ParameterError(
            "num", f"{num} images are too many for one grid picture (at most {MAX_GRID_IMAGES}); "
            "write them into a folder (--out DIR/) or an .npz"
        )
    shape = (num, generator.channels, generator.image_size, generator.image_size)
    if "npz" in targets:
        check_free_space(targets["npz"], 4 * math.prod(shape) + 8 * num)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # for the grid only (at most MAX_GRID_IMAGES)

    def image_arrays() -> Iterator[np.ndarray]:
        with log.progress(num, desc="sampling", unit="img", enabled=progress) as bar:
            for images, labels in chunks:
                if "png" in targets:
                    kept.append((images, labels))
                bar.update(len(images))
                yield images.numpy()

    if "npz" in targets:
        labels = (y.numpy() for y in label_chunks(generator, spec))
        stream_npz(targets["npz"], [("labels", np.dtype(np.int64), (num,), labels),
                                    ("images", np.dtype(np.float32), shape, image_arrays())])
    else:
        for _ in image_arrays():
            pass
    if "png" in targets:
        images, labels = torch.cat([x for x, _ in kept]), torch.cat([y for _, y in kept])
        k = generator.num_classes
        if spec.balanced and num % k == 0:  # one row per class
            order = torch.argsort(labels, stable=True)
            named = class_names is not None and len(class_names) == k  # else the class ids
            rows = [str(name) for name in class_names] if named else [str(c) for c in range(k)]
            save_grid(images[order], targets["png"], num // k, row_labels=rows)
        else:
            save_grid(images, targets["png"], int(np.ceil(np.sqrt(num))))


def _counted(chunks: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[int, tuple]]:
    start = 0
    for images, labels in chunks:
        yield start, (images, labels)
        start += len(images)


def _refuse_numbered_pngs(folder: Path, overwrite: bool) -> None:
    """A folder target gets ``000000.png``, ``000001.png``, ...: refuse if it already holds such files."""
    if overwrite or not folder.is_dir():
        return
    taken = next((p for p in folder.iterdir() if re.fullmatch(r"\d{6,}\.png", p.name)), None)
    if taken is not None:
        raise ParameterError(
            "out", f"{taken} already exists (the folder holds numbered samples); choose another folder or add "
            "--overwrite to replace them"
        )
