"""The Hugging Face Hub: pretrained folders, Hub repo ids (the cache, then the network) and pushing.

A pretrained folder (:class:`gankit.io.PretrainedDir`) has the layout ``huggingface_hub.PyTorchModelHubMixin``
writes and reads: ``model.safetensors`` (the EMA generator's state dict), a flat ``config.json`` (the model
config fields with ``family``, plus ``gankit_version`` and the sampling convention), ``README.md`` (the model
card), ``samples.png`` and optionally ``discriminator/``. So a mixin class whose ``__init__(**config)`` builds the
gankit config (:func:`model_config_from_pretrained`) loads gankit's folders, and gankit loads the mixin's.

``huggingface_hub`` is the optional extra ``gankit[hub]``. Saving and loading local folders never import it;
looking a repo id up in the Hub cache, downloading and pushing do, and without it they fail with one line
naming the extra.

Where a source is looked for: a local path first (a pretrained folder; anything else is left to
:func:`gankit.api.load_generator`), then, for a ``user/name`` repo id, the Hub cache and the network as
``huggingface_hub.hf_hub_download`` does it (online it checks that the cached revision is current; a commit hash
is served from the cache without a request). ``HF_HUB_OFFLINE=1`` (read when called, not only when
huggingface_hub was imported) or ``local_files_only=True`` allow the cache only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from gankit.device import select_device
from gankit.errors import ParameterError, UserError
from gankit.images import grid_image, png_bytes
from gankit.io import PretrainedDir, RunDir, atomic_write, load_checkpoint
from gankit.models.base import Discriminator, Generator, ModelConfig
from gankit.models.registry import FAMILIES, build_discriminator, build_generator, model_config_from_dict
from gankit.nn import fold_spectral_norm
from gankit.version import __version__

HUB_EXTRA = "pip install 'gankit[hub]'"
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a true environment variable
_NAME = re.compile(r"[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?")
# a missing file with one of these suffixes is a mistyped path, never a repo id
_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz", ".ckpt", ".bin", ".pkl", ".json", ".yaml", ".png")
# data.dataset of a run -> (Hub dataset id or None, display name)
_DATASETS = {
    "mnist": ("ylecun/mnist", "MNIST"),
    "cifar10": ("uoft-cs/cifar10", "CIFAR-10"),
    "digits": (None, "scikit-learn digits"),
    "folder": (None, "image folder"),
    "cache": (None, "gankit prepare cache"),
}
_METRICS = {  # evaluation key -> model-index metric name
    "fid": "FID", "kid": "KID", "is": "IS", "precision": "Precision", "recall": "Recall", "density": "Density",
    "coverage": "Coverage",
}  # fmt: skip
# training settings that are plumbing, not the recipe: left out of the card
_PLUMBING = {
    "device", "tensorboard", "sample_every", "log_every", "checkpoint_every", "keep_checkpoints", "nan_patience",
    "nan_lr_factor", "max_rollbacks", "eval_every", "eval_num", "eval_features", "compile", "channels_last",
}  # fmt: skip
_GENERATOR_FILES = (PretrainedDir.CONFIG, PretrainedDir.WEIGHTS)
_DISCRIMINATOR_FILES = tuple(f"{PretrainedDir.DISCRIMINATOR}/{name}" for name in _GENERATOR_FILES)


# ------------------------------------------------------------------------------------------ the extra


def require_hub(what: str):
    """The ``huggingface_hub`` module, or a one-line :class:`UserError`: ``{what} needs the hub extra: ...``."""
    try:
        import huggingface_hub
        import huggingface_hub.errors  # noqa: F401 - the exception types are read from it
    except ImportError:
        raise UserError(f"{what} needs the hub extra: {HUB_EXTRA}") from None
    return huggingface_hub


def offline_mode(hf) -> bool:
    """Whether the Hub may not be reached: huggingface_hub's own check, or ``HF_HUB_OFFLINE`` /
    ``TRANSFORMERS_OFFLINE`` as the environment says now (huggingface_hub reads them once, at import)."""
    now = any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(hf.is_offline_mode()) or now


def is_repo_id(text: str) -> bool:
    """``namespace/name`` as the Hub spells repo ids (letters, digits, ``-_.``, at most 96 characters, no ``--``
    or ``..``), and not a missing file name (``runs/x.pt``). Checked without huggingface_hub."""
    parts = text.split("/")
    if len(parts) != 2 or len(text) > 96 or "--" in text or ".." in text or text.endswith(".git"):
        return False
    return all(_NAME.fullmatch(part) for part in parts) and not text.lower().endswith(_FILE_SUFFIXES)


# -------------------------------------------------------------------------------------- resolving


def resolve_pretrained(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
    files: tuple[str, ...] = _GENERATOR_FILES,
) -> Path | None:
    """The local folder holding the pretrained files of ``source``: a pretrained folder itself, or the Hub cache
    snapshot of a ``user/name`` repo id with ``files`` in it (from the cache, else downloaded). None when
    ``source`` is another local path (a run folder, a file) or no repo id: :func:`gankit.api.load_generator`
    reads or refuses those.

    ``revision`` (a branch, tag or commit hash) is for repo ids only. ``cache_dir`` defaults to
    ``HF_HUB_CACHE`` (read now), else huggingface_hub's cache.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.exists():
        if revision is not None:
            raise ParameterError("revision", f"is for Hub repo ids; {text} is a local path")
        return path if path.is_dir() and PretrainedDir(path).is_pretrained() else None
    text = path.as_posix() if os.sep != "/" else text
    if not is_repo_id(text):
        if revision is not None:
            raise ParameterError("revision", f"is for Hub repo ids (user/name); {text!r} is none")
        return None
    hf = require_hub(f"{text} is no local path; loading it from the Hugging Face Hub")
    return _download(hf, text, files, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)


def _download(hf, repo_id: str, files: tuple[str, ...], *, revision, local_files_only, cache_dir) -> Path:
    from huggingface_hub import errors

    offline = offline_mode(hf)
    cache_only = local_files_only or offline
    if cache_dir is None:
        cache_dir = os.environ.get("HF_HUB_CACHE") or None
    where = repo_id + (f" (revision {revision})" if revision else "")
    paths = []
    for name in files:
        try:
            paths.append(
                hf.hf_hub_download(
                    repo_id, name, revision=revision, cache_dir=cache_dir, local_files_only=cache_only,
                    library_name="gankit", library_version=__version__,
                )  # fmt: skip
            )
        except errors.LocalEntryNotFoundError:
            what = where if name == PretrainedDir.CONFIG else f"{name} of {where}"
            if cache_only:
                why = "HF_HUB_OFFLINE=1 forbids" if offline else "local_files_only=True forbids"
                raise UserError(
                    f"{what} is not in the Hub cache and {why} downloading it; no local path has that name either: "
                    "download it once online, or give an existing folder"
                ) from None
            raise UserError(f"cannot reach the Hugging Face Hub and {what} is not in the Hub cache (nor a local "
                            "path)") from None
        except errors.GatedRepoError:
            raise UserError(f"{repo_id} is gated: accept its terms on the Hub, then log in (hf auth login)") from None
        except errors.RepositoryNotFoundError:
            raise UserError(
                f"{repo_id} is neither a local path nor a Hub model repository (a private one needs a login: "
                "hf auth login)"
            ) from None
        except errors.RevisionNotFoundError:
            raise UserError(f"{repo_id} has no revision {revision!r} on the Hub") from None
        except errors.EntryNotFoundError:
            hint = " (push it with --include-discriminator)" if name in _DISCRIMINATOR_FILES else ""
            raise UserError(f"{where} has no {name} on the Hub{hint}; is it a gankit model?") from None
        except errors.HfHubHTTPError as exc:
            raise UserError(f"the Hub refused {name} of {where}: {_first_line(exc)}") from None
        except (errors.HTTPError, errors.OfflineModeIsEnabled) as exc:
            raise UserError(f"cannot reach the Hugging Face Hub for {where}: {_first_line(exc)}") from None
    # files land in snapshots/<commit>/<name>: the snapshot folder is the pretrained folder
    return Path(paths[0]).parents[len(Path(files[0]).parts) - 1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


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
    generator = build_generator(model_config_from_pretrained(config, pre.config))
    if config.get("spectral_norm_folded") is True:
        fold_spectral_norm(generator.eval())
    generator.load_weights(state, pre.weights)
    return generator.eval().requires_grad_(False)


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
        source, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir, files=_DISCRIMINATOR_FILES
    )
    if root is None:
        raise UserError(f"{source} is neither a pretrained folder nor a Hub repo id (user/name)")
    pre = PretrainedDir(root).discriminator
    if not pre.root.is_dir():
        raise UserError(f"{root} has no discriminator/; save it with include_discriminator=True")
    config, state = pre.read()
    discriminator = build_discriminator(model_config_from_pretrained(config, pre.config))
    discriminator.load_weights(state, pre.weights)
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
    model = model_config_from_dict(ckpt["config"]["model"])
    generator = build_generator(model)
    generator.load_weights(ckpt["G_ema"], f"{ckpt_path} [G_ema]")
    discriminator = None
    if include_discriminator:
        discriminator = build_discriminator(model)
        discriminator.load_weights(ckpt["D"], f"{ckpt_path} [D]")
    step = int(ckpt.get("step", 0))
    if evaluation is not None:
        found = _read_evaluation(evaluation)
    else:
        found = _find_evaluation(run, ckpt_path, step) if run is not None else None
    return _Source(generator.eval(), name, discriminator, ckpt["config"], step, ckpt.get("images_seen"), found)


def _read_evaluation(path) -> dict[str, Any] | None:
    """A metrics JSON: ``gankit evaluate``'s (``{"metrics": {...}, ...}``) or ``checkpoints/best.json``."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError("evaluation", f"{path} is not a readable metrics JSON ({_first_line(exc)})") from None
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
        k: float(values[k]) for k in _METRICS
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


def _dataset(config: dict[str, Any] | None) -> tuple[str | None, str] | None:
    """``(Hub dataset id or None, display name)`` of a run's data."""
    data = (config or {}).get("data") or {}
    kind = data.get("dataset")
    if kind not in _DATASETS:
        return None
    hub_id, name = _DATASETS[kind]
    if kind == "folder" and data.get("path"):
        name = f"image folder {Path(str(data['path'])).name}"  # the folder's name only: no local paths in a card
    return hub_id, name


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_value(v)}" for k, v in value.items())
    return str(value)


def _training_section(src: _Source) -> str:
    cfg = src.config or {}
    lines = ["## Training", "", "The weights are the generator's exponential moving average (EMA), the one "
             "gankit samples and evaluates.", "", "| setting | value |", "|---|---|"]
    rows: list[tuple[str, Any]] = [("preset", cfg.get("preset") or "none (own config)")]
    dataset = _dataset(cfg)
    if dataset:
        rows.append(("data", dataset[1] + (f" (`{dataset[0]}`)" if dataset[0] else "")))
    rows.append(("steps trained", src.step))
    if src.images_seen:
        rows.append(("images seen", src.images_seen))
    training = cfg.get("training") or {}
    rows += [(f"training.{k}", v) for k, v in training.items() if k not in _PLUMBING and v is not None]
    lines += [f"| {k} | {_value(v)} |" for k, v in rows]
    description = str(cfg.get("description") or "").strip()
    if description:
        lines += ["", description]
    lines += ["", "`config.json` holds the model part of the run's config."]
    return "\n".join(lines)


def _evaluation_section(evaluation: dict[str, Any]) -> str:
    lines = ["## Evaluation", "", "| metric | value |", "|---|---|"]
    lines += [f"| {_METRICS[k]} | {v:.6g} |" for k, v in evaluation["metrics"].items()]
    how = [f"from {evaluation['source']}"]
    if evaluation.get("num"):
        how.append(f"{evaluation['num']} generated images")
    if evaluation.get("features"):
        how.append(f"features: {evaluation['features']}")
    lines += ["", "Measured " + ", ".join(how) + ". Scores computed with other feature networks, image counts "
              "or reference sets are not comparable."]
    return "\n".join(lines)


def _model_index(name: str, evaluation: dict[str, Any], dataset: tuple[str | None, str] | None) -> list:
    features = evaluation.get("features")
    suffix = f" ({features} features)" if features and features != "inception" else ""
    hub_id, display = dataset if dataset else (None, "unknown")
    return [{
        "name": name,
        "results": [{
            "task": {"type": "unconditional-image-generation", "name": "Image generation"},
            "dataset": {"name": display, "type": hub_id or display.replace(" ", "-")},
            "metrics": [
                {"type": k, "value": v, "name": _METRICS[k] + suffix, "verified": False}
                for k, v in evaluation["metrics"].items()
            ],
        }],
    }]  # fmt: skip


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
    dataset = _dataset(src.config)
    if datasets is None:
        datasets = [dataset[0]] if dataset and dataset[0] else []
    front: dict[str, Any] = {"license": license or "other"}
    if datasets:
        front["datasets"] = list(datasets)
    if src.evaluation:
        front["model-index"] = _model_index(repo_id or Path(folder).name, src.evaluation, dataset)
    png, caption = _sample_grid(src.generator)
    sections = []
    if src.config is not None:
        sections.append(_training_section(src))
    if src.evaluation:
        sections.append(_evaluation_section(src.evaluation))
    files = [f"- `{PretrainedDir.WEIGHTS}`: the generator's weights (safetensors)",
             f"- `{PretrainedDir.CONFIG}`: its model config and sampling convention",
             f"- `{PretrainedDir.SAMPLES}`: the sample grid above"]
    if src.discriminator is not None:
        files.append(f"- `{PretrainedDir.DISCRIMINATOR}/`: the discriminator (`gankit.hub.load_discriminator`)")
    if license is None:
        files.append("\nLicense: not stated by the author (`other`); check the terms of the training data.")
    sections.append("## Files\n\n" + "\n".join(files))
    grid = f"![samples]({PretrainedDir.SAMPLES})\n\n{caption}"
    card = src.generator.model_card(repo_id, front_matter=front, intro=(grid,), sections=tuple(sections))
    pre = PretrainedDir(src.generator.save_pretrained(folder, overwrite=overwrite, card=card))
    atomic_write(pre.samples, png)
    if src.discriminator is not None:
        pre.discriminator.write(src.discriminator.state_dict(), src.discriminator.pretrained_config())
    return pre.root


# ---------------------------------------------------------------------------------------- pushing


@dataclasses.dataclass(frozen=True)
class Pushed:
    """What :func:`push_to_hub` sent: the repository's URL, the commit's URL and the files (paths in the repo)."""

    repo_url: str
    commit_url: str | None
    files: tuple[str, ...]


def push_to_hub(
    source: Generator | str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    include_discriminator: bool = False,
    best: bool = False,
    license: str | None = None,  # noqa: A002 - the model card's key
) -> Pushed:
    """Upload ``source`` (see :func:`save_pretrained`) to the Hub model repository ``repo_id`` (``user/name``) as
    one commit: the pretrained folder is built in a temporary folder, the repository created when missing
    (``private`` only applies then), the branch ``revision`` created from main when missing, and the folder
    uploaded. ``token`` defaults to the saved one (``hf auth login``) or ``HF_TOKEN``."""
    hf = require_hub("pushing to the Hugging Face Hub")
    from huggingface_hub import errors

    if not is_repo_id(repo_id):
        raise ParameterError("repo_id", f"must be user/name or org/name (letters, digits, - _ .), got {repo_id!r}")
    if offline_mode(hf):
        raise UserError("pushing needs the network, but HF_HUB_OFFLINE=1 is set; unset it to push")
    token = token or hf.get_token()
    if not token:
        raise UserError("no Hugging Face token: log in with `hf auth login`, set HF_TOKEN or pass a token (--token)")
    with tempfile.TemporaryDirectory(prefix="gankit-push-") as tmp:
        folder = save_pretrained(source, Path(tmp) / "model", include_discriminator=include_discriminator,
                                 best=best, repo_id=repo_id, license=license)
        files = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))
        name = source.config.family if isinstance(source, Generator) else Path(source).name
        message = commit_message or f"Upload {name} with gankit {__version__}"
        api = hf.HfApi(token=token, library_name="gankit", library_version=__version__)
        try:
            url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
            if revision is not None:
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                                     commit_message=message)
        except errors.HfHubHTTPError as exc:
            raise UserError(f"the Hub refused the push to {repo_id}: {_first_line(exc)}") from None
        except (errors.HTTPError, OSError) as exc:  # no connection (httpx's errors, OfflineModeIsEnabled)
            raise UserError(f"cannot reach the Hugging Face Hub to push {repo_id}: {_first_line(exc)}") from None
    repo_url = str(url) + (f"/tree/{revision}" if revision else "")
    return Pushed(repo_url, getattr(info, "commit_url", None), files)


__all__ = [
    "HUB_EXTRA",
    "Pushed",
    "generator_from_pretrained",
    "is_repo_id",
    "load_discriminator",
    "model_config_from_pretrained",
    "offline_mode",
    "push_to_hub",
    "require_hub",
    "resolve_pretrained",
    "save_pretrained",
]
