"""The text of a pretrained folder: its flat ``config.json`` (:func:`pretrained_config`) and its model card
(``README.md``: YAML front matter and Markdown, :func:`generator_card`, with the training and evaluation sections
of a run).

The card is written by plain formatting (no Jinja, no YAML library); the Hub and ``yaml.safe_load`` read it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from gankit.io import SPECTRAL_NORM_FOLDED
from gankit.models.base import Discriminator, Generator
from gankit.version import __version__

# data.dataset of a run -> (Hub dataset id or None, display name)
_DATASETS = {
    "mnist": ("ylecun/mnist", "MNIST"),
    "cifar10": ("uoft-cs/cifar10", "CIFAR-10"),
    "digits": (None, "scikit-learn digits"),
    "folder": (None, "image folder"),
    "cache": (None, "gankit prepare cache"),
}
METRICS = {  # evaluation key -> model-index metric name
    "fid": "FID", "kid": "KID", "is": "IS", "precision": "Precision", "recall": "Recall", "density": "Density",
    "coverage": "Coverage",
}  # fmt: skip
# training settings that are plumbing, not the recipe: left out of the card
_PLUMBING = {
    "device", "tensorboard", "sample_every", "log_every", "checkpoint_every", "keep_checkpoints", "nan_patience",
    "nan_lr_factor", "max_rollbacks", "eval_every", "eval_num", "eval_features", "compile", "channels_last",
}  # fmt: skip


# --------------------------------------------------------------------------------------------- config.json


def pretrained_config(network: Generator | Discriminator) -> dict[str, Any]:
    """The flat ``config.json`` of a pretrained folder: the model config fields (``family`` included) and
    ``gankit_version``; for a generator also its sampling convention (the other keys of
    :attr:`~gankit.hub.layout.PretrainedDir.META_KEYS`): latents ``z ~ N(0, I)`` of shape ``(z_dim,)``, no
    truncation, training images scaled to ``data_range``, outputs bounded to ``output_range`` (None: unbounded),
    evaluated in eval mode (BatchNorm running statistics), and whether spectral norm is folded into the weights."""
    config = {**network.config.to_dict(), "gankit_version": __version__}
    if isinstance(network, Generator):
        config.update({
            "latent": "normal",
            "truncation": None,
            "data_range": [-1.0, 1.0],
            "output_range": network.output_range(),
            "eval_mode": True,
            SPECTRAL_NORM_FOLDED: network.spectral_norm_folded(),
        })  # fmt: skip
    return config


# -------------------------------------------------------------------------------------------- model card


_PLAIN_SCALAR = re.compile(r"[A-Za-z_][\w.\-/]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}  # plain words YAML reads as non-strings


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, str) and _PLAIN_SCALAR.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
        text = repr(value)  # YAML 1.1 readers take 1e-05 for a string: the mantissa needs a dot
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return json.dumps(value)  # JSON scalars are valid YAML flow scalars (quoted strings, numbers, true, null)


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{key}:", *_yaml_lines(item, indent + 1)]
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
        return lines
    lines = []
    for item in value:  # a list: "- " takes the place of the item's first indentation
        sub = _yaml_lines(item, indent + 1) if isinstance(item, (dict, list)) and item else [_yaml_scalar(item)]
        lines += [f"{pad}- {sub[0].lstrip()}", *sub[1:]]
    return lines


def model_card(front_matter: dict[str, Any], body: str) -> str:
    """A model card: ``front_matter`` (plain data) as a YAML block between ``---`` lines, then the Markdown
    ``body``. Written by plain formatting (no Jinja, no YAML library); the Hub and ``yaml.safe_load`` read it."""
    return "---\n" + "\n".join(_yaml_lines(front_matter, 0)) + "\n---\n\n" + body.strip() + "\n"


def generator_card(
    generator: Generator,
    repo_id: str | None = None,
    *,
    front_matter: dict[str, Any] | None = None,
    intro: tuple[str, ...] = (),
    sections: tuple[str, ...] = (),
) -> str:
    """The README.md of a pretrained folder: YAML front matter (``library_name``, ``pipeline_tag``, ``tags``,
    then ``front_matter``) and Markdown: what the model is, ``intro`` (e.g. the sample grid), how to load it
    (from ``repo_id``, or a placeholder), its sampling convention, then ``sections`` (training, evaluation)."""
    cfg, k, channels = generator.config, generator.num_classes, generator.channels
    kind = f"class-conditional ({k} classes)" if k else "unconditional"
    size = generator.image_size  # a growing model's current resolution: the one its weights produce
    front: dict[str, Any] = {
        "library_name": "gankit",
        "pipeline_tag": "unconditional-image-generation",
        "tags": ["gan", cfg.family, "pytorch", "class-conditional" if k else "unconditional"],
        **(front_matter or {}),
    }
    name = repo_id or "user/name"
    labels = f"torch.arange(16) % {k}" if k else "None"
    bounded = generator.output_range()
    outputs = "in [-1, 1] (final tanh)" if bounded else "unbounded (no final tanh; clamp to [-1, 1])"
    body = [
        f"# {repo_id or cfg.family + ' generator'}",
        f"A {kind} {cfg.family} generator of {size}x{size} images with {channels} channel(s), made with gankit.",
        *intro,
        "## Use\n\n```python\nimport torch\nimport gankit\n\n"
        f'G = gankit.load_generator("{name}")  # or the path of this folder\n'
        f"images = G.sample(16, labels={labels}, generator=torch.Generator().manual_seed(0))\n"
        f"# images: (16, {channels}, {size}, {size}) float tensor\n```\n\n"
        f"On the command line: `gankit sample --checkpoint {name} --num 64 --out samples.png`.",
        "## Sampling convention\n\n"
        f"- latents: `z ~ N(0, I)` of shape `(B, {generator.z_dim})` (`G.sample_latents`), not truncated\n"
        + (f"- labels: class ids `0..{k - 1}` of shape `(B,)`: `G(z, y)`\n" if k else "- no labels: `G(z)`\n")
        + f"- outputs: `(B, {channels}, {size}, {size})`, {outputs}; training images were scaled to "
        "[-1, 1], so pixel values are `(x + 1) * 127.5`\n"
        "- eval mode: BatchNorm uses its running statistics (`gankit.load_generator` returns G in eval mode)\n"
        "- `config.json` holds the model config and this convention, `model.safetensors` the weights: the "
        "layout of `huggingface_hub.PyTorchModelHubMixin`",
        *sections,
    ]
    return model_card(front, "\n\n".join(body))


def run_dataset(config: dict[str, Any] | None) -> tuple[str | None, str] | None:
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


def training_section(config: dict[str, Any] | None, step: int | None, images_seen: int | None) -> str:
    cfg = config or {}
    lines = ["## Training", "", "The weights are the generator's exponential moving average (EMA), the one "
             "gankit samples and evaluates.", "", "| setting | value |", "|---|---|"]
    rows: list[tuple[str, Any]] = [("preset", cfg.get("preset") or "none (own config)")]
    dataset = run_dataset(cfg)
    if dataset:
        rows.append(("data", dataset[1] + (f" (`{dataset[0]}`)" if dataset[0] else "")))
    rows.append(("steps trained", step))
    if images_seen:
        rows.append(("images seen", images_seen))
    training = cfg.get("training") or {}
    rows += [(f"training.{k}", v) for k, v in training.items() if k not in _PLUMBING and v is not None]
    lines += [f"| {k} | {_value(v)} |" for k, v in rows]
    description = str(cfg.get("description") or "").strip()
    if description:
        lines += ["", description]
    lines += ["", "`config.json` holds the model part of the run's config."]
    return "\n".join(lines)


def evaluation_section(evaluation: dict[str, Any]) -> str:
    lines = ["## Evaluation", "", "| metric | value |", "|---|---|"]
    lines += [f"| {METRICS[k]} | {v:.6g} |" for k, v in evaluation["metrics"].items()]
    how = [f"from {evaluation['source']}"]
    if evaluation.get("num"):
        how.append(f"{evaluation['num']} generated images")
    if evaluation.get("features"):
        how.append(f"features: {evaluation['features']}")
    lines += ["", "Measured " + ", ".join(how) + ". Scores computed with other feature networks, image counts "
              "or reference sets are not comparable."]
    return "\n".join(lines)


def model_index(name: str, evaluation: dict[str, Any], dataset: tuple[str | None, str] | None) -> list:
    features = evaluation.get("features")
    suffix = f" ({features} features)" if features and features != "inception" else ""
    hub_id, display = dataset if dataset else (None, "unknown")
    return [{
        "name": name,
        "results": [{
            "task": {"type": "unconditional-image-generation", "name": "Image generation"},
            "dataset": {"name": display, "type": hub_id or display.replace(" ", "-")},
            "metrics": [
                {"type": k, "value": v, "name": METRICS[k] + suffix, "verified": False}
                for k, v in evaluation["metrics"].items()
            ],
        }],
    }]  # fmt: skip



__all__ = ["generator_card", "model_card", "pretrained_config", "run_dataset", "training_section",
           "evaluation_section", "model_index"]
