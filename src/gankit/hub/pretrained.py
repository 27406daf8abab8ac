"""Pretrained folders (:class:`~gankit.hub.layout.PretrainedDir`, the layout of
``huggingface_hub.PyTorchModelHubMixin``): writing one from a generator, a run or a checkpoint
(:func:`save_pretrained`), and reading its generator and discriminator back.

The folder holds ``model.safetensors`` (the EMA generator's state dict), a flat ``config.json`` (the model config
fields with ``family``, plus ``gankit_version`` and the sampling convention), ``README.md`` (the model card),
``samples.png`` and optionally ``discriminator/``. So a mixin class whose ``__init__(**config)`` builds the gankit
config (:func:`model_config_from_pretrained`) loads gankit's folders, and gankit loads the mixin's. Saving and
reading local folders never import ``huggingface_hub``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from gankit.device import select_device
from gankit.errors import ParameterError, UserError
from gankit.hub.card import (
    METRICS,
    evaluation_section,
    generator_card,
    model_index,
    pretrained_config,
    run_dataset,
    training_section,
)
from gankit.hub.layout import PretrainedDir
from gankit.hub.remote import DISCRIMINATOR_FILES, first_line, resolve_pretrained
from gankit.images import grid_image, png_bytes
from gankit.io import SPECTRAL_NORM_FOLDED, RunDir, atomic_write, load_checkpoint
from gankit.models.base import Discriminator, Generator, ModelConfig
from gankit.models.registry import FAMILIES, model_config_from_dict

# ---------------------------------------------------------------------------------------- loading


def model_config_from_pretrained(config: dict[str, Any], source: object = "config.json") -> ModelConfig:
    """The family's model config from a pretrained ``config.json`` dict: the sampling and provenance keys
    (:attr:`PretrainedDir.META_KEYS`) are set aside, every other key must be a field of the family. A
    PyTorchModelHubMixin class over a gankit generator calls it from ``__init__(**config)``."""
    fields = {k: v for k, v in config.items() if k not in PretrainedDir.META_KEYS}
    if "family" not in fields:
        raise UserError(
            f"{source} has no 'family' (one of {', '.join(FAMILIES)}): gankit cannot tell which model it holds"
        )
    try:
        return model_config_from_dict(fields)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None


def generator_from_pretrained(folder: str | os.PathLike) -> Generator:
    """The eval-mode generator of a pretrained folder, weights loaded strictly (a missing, extra or reshaped
    tensor is a one-line error naming it); spectral norm folded first when ``config.json`` says it was."""
    pre = PretrainedDir(folder)
    config, state = pre.read()
    model = model_config_from_pretrained(config, pre.config)
    folded = config.get(SPECTRAL_NORM_FOLDED) is True
    return Generator.from_state(model, state, source=pre.weights, folded=folded).eval().requires_grad_(False)


def load_discriminator(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Discriminator:
    """The eval-mode discriminator of a pretrained folder or Hub repo id (its ``discriminator/`` subfolder,
    written by ``save_pretrained(..., include_discriminator=True)``), loaded strictly."""
    root = resolve_pretrained(
        source, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir, files=DISCRIMINATOR_FILES
    )
    if root is None:
        raise UserError(f"{source} is neither a pretrained folder nor a Hub repo id (user/name)")
    pre = PretrainedDir(root).discriminator
    if not pre.root.is_dir():
        raise UserError(f"{root} has no discriminator/; save it with include_discriminator=True")
    config, state = pre.read()
    model = model_config_from_pretrained(config, pre.config)
    discriminator = Discriminator.from_state(model, state, source=pre.weights)
    return discriminator.to(select_device(device)).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------- saving


@dataclasses.dataclass
class _Source:
    """What save_pretrained publishes: the generator, and what a run tells about it."""

    generator: Generator
    name: str
    discriminator: Discriminator | None = None
    config: dict[str, Any] | None = None  # the run config (checkpoint["config"])
    step: int | None = None
    images_seen: int | None = None
    evaluation: dict[str, Any] | None = None


def _open_source(source, *, best: bool, include_discriminator: bool, evaluation) -> _Source:
    if isinstance(source, Generator):
        if include_discriminator:
            raise ParameterError("include_discriminator", "needs a run folder or checkpoint: a generator has no D")
        if best:
            raise ParameterError("best", "needs a run folder: pass the run, not a generator")
        return _Source(source, source.config.family, evaluation=_read_evaluation(evaluation))
    path = Path(source)
    if path.is_dir():
        run = RunDir(path)
        if not run.is_run():
            raise UserError(f"{path} is not a gankit run folder (no config.yaml or checkpoints/)")
        ckpt_path = run.best_checkpoint if best else run.last_checkpoint
        if not ckpt_path.is_file():
            why = "no best checkpoint (train with training.eval_every)" if best else "no checkpoints/last.pt"
            raise UserError(f"{path} has {why}; for an export, pass gankit.load_generator(PATH) instead")
        name = path.resolve().name
    elif path.suffix == ".pt":
        if best:
            raise ParameterError("best", "needs a run folder, not a checkpoint file")
        ckpt_path, run, name = path, None, path.stem
        if path.parent.name == RunDir.CHECKPOINTS and RunDir(path.parent.parent).is_run():
            run, name = RunDir(path.parent.parent), path.resolve().parent.parent.name
    elif not path.exists():
        raise UserError(f"{path} does not exist; give a run folder or a .pt checkpoint")
    else:
        raise UserError(
            f"{path}: save_pretrained takes a generator, a run folder or a .pt checkpoint; for other sources "
            "pass gankit.load_generator(PATH)"
        )
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt["config"].get("model"), dict):
        raise UserError(f"{ckpt_path} holds no model config; give a checkpoint written by gankit train")
    model = model_config_from_dict(ckpt["config"]["model"])
    generator = Generator.from_state(model, _weights(ckpt, "G_ema", ckpt_path), source=f"{ckpt_path} [G_ema]")
    discriminator = None
    if include_discriminator:
        discriminator = Discriminator.from_state(model, _weights(ckpt, "D", ckpt_path), source=f"{ckpt_path} [D]")
    step = int(ckpt.get("step", 0))
    if evaluation is not None:
        found = _read_evaluation(evaluation)
    else:
        found = _find_evaluation(run, ckpt_path, step) if run is not None else None
    return _Source(generator.eval(), name, discriminator, ckpt["config"], step, ckpt.get("images_seen"), found)


def _weights(ckpt: dict[str, Any], key: str, path: Path) -> dict[str, torch.Tensor]:
    """The state dict ``ckpt[key]``, or a one-line :class:`UserError` when the checkpoint lacks it."""
    state = ckpt.get(key)
    if not isinstance(state, dict):
        raise UserError(f"{path} holds no {key} weights (damaged, or not written by gankit train); give a "
                        "checkpoint written by gankit train")
    return state


def _read_evaluation(path) -> dict[str, Any] | None:
    """A metrics JSON: ``gankit evaluate``'s (``{"metrics": {...}, ...}``) or ``checkpoints/best.json``."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError("evaluation", f"{path} is not a readable metrics JSON ({first_line(exc)})") from None
    found = _evaluation_of(data, str(path))
    if found is None:
        raise ParameterError("evaluation", f"{path} holds no metrics; give the JSON of gankit evaluate")
    return found


def _evaluation_of(data: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("metrics"), dict):  # gankit evaluate
        features = data.get("features") if isinstance(data.get("features"), dict) else {}
        values, num, feature_name = data["metrics"], data.get("num_generated"), features.get("name")
    else:  # checkpoints/best.json: the values at the top level
        values, num, feature_name = data, data.get("num"), data.get("features")
    metrics = {
        k: float(values[k]) for k in METRICS
        if isinstance(values.get(k), (int, float)) and not isinstance(values.get(k), bool) and math.isfinite(values[k])
    }  # fmt: skip
    if not metrics:
        return None
    return {"metrics": metrics, "num": num, "features": feature_name, "source": where}


def _find_evaluation(run: RunDir, ckpt_path: Path, step: int) -> dict[str, Any] | None:
    """The evaluation of the published weights, if the run has one: ``checkpoints/best.json`` when its step is the
    published step, else the newest ``gankit evaluate`` JSON in the run folder written after the checkpoint
    (and naming this run, where the path it names can be found)."""
    if run.best_json.is_file():
        try:
            data = json.loads(run.best_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("step") == step:
            return _evaluation_of(data, f"evaluation during training at step {step} (checkpoints/best.json)")
    written = ckpt_path.stat().st_mtime
    mine = {p.resolve() for p in (run.root, ckpt_path, run.generator)}
    for candidate in sorted(run.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if candidate.stat().st_mtime < written:
            break  # older than the weights: it scored something else
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("ema") is not True or not isinstance(data.get("checkpoint"), str):
            continue
        named = Path(data["checkpoint"])
        if named.exists() and named.resolve() not in mine:
            continue
        found = _evaluation_of(data, f"gankit evaluate ({candidate.name})")
        if found is not None:
            return found
    return None


def _sample_grid(generator: Generator) -> tuple[bytes, str]:
    """A seeded sample grid as PNG bytes (one class per row for a conditional model) and its caption."""
    size = generator.image_size
    n, ncol = (64, 8) if size <= 64 else (16, 4) if size <= 256 else (4, 2)  # a grid of at most ~2k pixels
    k = generator.num_classes
    labels = (torch.arange(n) // ncol) % k if k else None
    rows = [str(int(c)) for c in labels[::ncol]] if labels is not None else None
    training = generator.training
    generator.eval()  # train mode would move BatchNorm statistics and spectral-norm vectors of the caller's model
    try:
        images = generator.sample(n, labels=labels, generator=torch.Generator().manual_seed(0))
    finally:
        generator.train(training)
    png = png_bytes(grid_image(images.float().cpu(), ncol, row_labels=rows))
    per_row = ", one class per row, class ids on the left" if k else ""
    clamp = "" if generator.output_range() else ", clamped to [-1, 1] for display"
    return png, f"{n} samples of the generator (latents seeded with 0{per_row}{clamp})."


def sample_grid_png(generator: Generator) -> tuple[bytes, str]:
    """The seeded sample grid of a pretrained folder's ``samples.png`` (PNG bytes) and its caption."""
    return _sample_grid(generator)


def save_pretrained(
    source: Generator | str | os.PathLike,
    folder: str | os.PathLike,
    *,
    overwrite: bool = False,
    include_discriminator: bool = False,
    best: bool = False,
    repo_id: str | None = None,
    license: str | None = None,  # noqa: A002 - the model card's key
    datasets: list[str] | None = None,
    evaluation: str | os.PathLike | None = None,
) -> Path:
    """Write ``source`` as a pretrained folder (:class:`gankit.io.PretrainedDir`) and return it.

    ``source`` is a generator, a run folder (its ``checkpoints/last.pt``, or ``best.pt`` with ``best``) or a
    ``.pt`` checkpoint; a run publishes its EMA generator. The folder gets ``model.safetensors``, the flat
    ``config.json``, ``samples.png`` (a seeded grid) and ``README.md``: a model card with front matter
    (``library_name: gankit``, ``pipeline_tag``, ``tags``, ``license`` (default ``other``), ``datasets`` (given,
    or the run's when it is on the Hub) and a ``model-index`` of the evaluation), the samples, the training
    recipe, the evaluation and how to load it (as ``repo_id`` when given). The evaluation is ``evaluation`` (a
    ``gankit evaluate`` JSON), else the run's own when it scored the published weights: ``checkpoints/best.json``
    of the published step, or a ``gankit evaluate`` JSON in the run folder newer than the checkpoint.
    ``include_discriminator`` adds ``discriminator/``. A non-empty ``folder`` is refused unless ``overwrite``
    (which replaces gankit's files there, and only those).
    """
    src = _open_source(source, best=best, include_discriminator=include_discriminator, evaluation=evaluation)
    PretrainedDir(folder).prepare(overwrite)  # refuse a used folder before the work of sampling
    dataset = run_dataset(src.config)
    if datasets is None:
        datasets = [dataset[0]] if dataset and dataset[0] else []
    front: dict[str, Any] = {"license": license or "other"}
    if datasets:
        front["datasets"] = list(datasets)
    if src.evaluation:
        front["model-index"] = model_index(repo_id or Path(folder).name, src.evaluation, dataset)
    png, caption = _sample_grid(src.generator)
    sections = []
    if src.config is not None:
        sections.append(training_section(src.config, src.step, src.images_seen))
    if src.evaluation:
        sections.append(evaluation_section(src.evaluation))
    files = [f"- `{PretrainedDir.WEIGHTS}`: the generator's weights (safetensors)",
             f"- `{PretrainedDir.CONFIG}`: its model config and sampling convention",
             f"- `{PretrainedDir.SAMPLES}`: the sample grid above"]
    if src.discriminator is not None:
        files.append(f"- `{PretrainedDir.DISCRIMINATOR}/`: the discriminator (`gankit.hub.load_discriminator`)")
    if license is None:
        files.append("\nLicense: not stated by the author (`other`); check the terms of the training data.")
    sections.append("## Files\n\n" + "\n".join(files))
    grid = f"![samples]({PretrainedDir.SAMPLES})\n\n{caption}"
    card = generator_card(src.generator, repo_id, front_matter=front, intro=(grid,), sections=tuple(sections))
    pre = write_pretrained(src.generator, folder, overwrite=overwrite, card=card)
    atomic_write(pre.samples, png)
    if src.discriminator is not None:
        pre.discriminator.write(src.discriminator.state_dict(), pretrained_config(src.discriminator))
    return pre.root


def write_pretrained(
    generator: Generator, folder: str | os.PathLike, *, overwrite: bool = False, card: str | None = None
) -> PretrainedDir:
    """The bare pretrained folder of ``generator``: ``model.safetensors`` (its state dict), the flat
    ``config.json`` (:func:`~gankit.hub.card.pretrained_config`) and ``README.md`` (``card``, by default
    :func:`~gankit.hub.card.generator_card`). A non-empty ``folder`` is refused unless ``overwrite``."""
    out = PretrainedDir(folder)
    out.prepare(overwrite)
    out.write(generator.state_dict(), pretrained_config(generator))
    atomic_write(out.card, generator_card(generator) if card is None else card)
    return out



__all__ = ["generator_from_pretrained", "load_discriminator", "model_config_from_pretrained", "save_pretrained",
           "write_pretrained"]
