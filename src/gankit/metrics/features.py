"""Feature extractors: ``--features inception|digits|FILE``.

Every extractor maps generator-style images ``(B, C, H, W)`` float in [-1, 1] to ``(features (B, d), logits
(B, k) or None)`` and carries what the metrics JSON records: a name, the feature size, the sha256 of its
weights and a note on what the numbers compare with.

- ``inception``: the FID Inception-v3 (:mod:`gankit.metrics.inception`). Images are quantised to 8-bit levels
  (as if saved to PNG), grayscale is repeated to RGB, then TF-resized to 299x299. 2048 features; the
  Inception score uses the 1008 logits without the bias, as the reference code did.
- ``digits`` (alias ``classifier``): a small CNN trained on the real training split of the labelled dataset
  being evaluated (:mod:`gankit.metrics.classifier`).
- ``FILE``: a TorchScript module (``.pt``/``.pth``/``.torchscript``; loading TorchScript runs its code, so only
  use files you trust) taking ``(B, C, H, W)`` in [-1, 1] and returning ``(B, d)`` features or a
  ``(features, logits)`` tuple; or a ``.safetensors`` file with a config, either in its metadata
  (``{"format": "gankit-features", "config": "{...}"}``, as gankit's cached classifiers are written) or in a
  ``FILE.json`` beside it. Config ``architecture`` is ``gankit-classifier`` (with ``num_classes``,
  ``input_size``, ``widths``) or ``inception-v3-fid``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit.errors import UserError
from gankit.io import file_sha256, read_safetensors
from gankit.metrics.classifier import ARCHITECTURE as CLASSIFIER_ARCHITECTURE
from gankit.metrics.classifier import FEATURES_FORMAT, build_from_config, cached_classifier
from gankit.metrics.inception import WEIGHTS_SHA256_PREFIX, FIDInceptionV3, load_inception

INCEPTION_ARCHITECTURE = "inception-v3-fid"
FEATURE_CHOICES = ("auto", "inception", "digits", "classifier")

NOTE_INCEPTION = (
    "FID Inception-v3 (2015-12-05 weights) with the TF-compatible bilinear resize to 299x299: features identical "
    "to torch-fidelity and the TF reference on the same reference data and sample counts; pytorch-fid differs "
    "slightly (its resize and scaling move features by 0.5-1.4%)"
)
NOTE_INCEPTION_OTHER = (
    "Inception-v3 with weights whose sha256 does not start with {prefix}: not the standard FID weights, so "
    "values are not comparable with published FID / KID / IS"
)
NOTE_CLASSIFIER = (
    "features of gankit's small classifier trained on the reference training split: comparable only with "
    "gankit evaluations that used the same classifier file (same sha256), never with Inception FIDs"
)
NOTE_USER = "user-supplied feature network: comparable only with evaluations that used the same file (same sha256)"


class FeatureExtractor(nn.Module):
    """``images (B, C, H, W)`` in [-1, 1] -> ``(features (B, num_features), logits (B, num_logits) or None)``."""

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str,
        num_features: int,
        num_logits: int | None,
        sha256: str | None,
        note: str,
        path: str | None = None,
        prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.net = net.eval()
        for param in self.net.parameters():  # (ScriptModules have no requires_grad_)
            param.requires_grad_(False)
        self.name, self.num_features, self.num_logits = name, num_features, num_logits
        self.sha256, self.note, self.path = sha256, note, path
        self._prepare = prepare

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self._prepare(images) if self._prepare is not None else images
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            features, logits = out[0], (out[1] if len(out) > 1 else None)
        else:
            features, logits = out, None
        if features.dim() != 2 or features.shape[0] != images.shape[0]:
            raise UserError(
                f"feature network {self.name} returned shape {tuple(features.shape)}; it must return (B, d) features"
            )
        if self.num_features < 0:  # a TorchScript module says its sizes only when run
            self.num_features = int(features.shape[1])
            self.num_logits = int(logits.shape[1]) if logits is not None else None
        return features.float(), (logits.float() if logits is not None else None)

    def describe(self) -> dict[str, Any]:
        """What the metrics JSON records about the extractor."""
        return {
            "name": self.name,
            "num_features": self.num_features,
            "num_logits": self.num_logits,
            "weights": self.path,
            "weights_sha256": self.sha256,
        }


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` in [-1, 1] -> ``(B, 3, H, W)`` 8-bit levels in [0, 255] (as float)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise UserError(f"the Inception features need 1 or 3 image channels, got {x.shape[1]}")
    return x


class _UnbiasedInception(nn.Module):
    def __init__(self, net: FIDInceptionV3) -> None:
        super().__init__()
        self.inception = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inception(x, unbiased_logits=True)


def inception_extractor(net: FIDInceptionV3, path: str | None, sha256: str | None) -> FeatureExtractor:
    standard = sha256 is not None and sha256.startswith(WEIGHTS_SHA256_PREFIX)
    return FeatureExtractor(
        _UnbiasedInception(net),
        name="inception",
        num_features=2048,
        num_logits=1008,
        sha256=sha256,
        note=NOTE_INCEPTION if standard else NOTE_INCEPTION_OTHER.format(prefix=WEIGHTS_SHA256_PREFIX),
        path=path,
        prepare=inception_input,
    )


def classifier_extractor(model: nn.Module, path: Path, *, name: str, note: str) -> FeatureExtractor:
    return FeatureExtractor(
        model,
        name=name,
        num_features=model.num_features,
        num_logits=model.num_classes,
        sha256=file_sha256(path),
        note=note,
        path=str(path),
    )


# ---------------------------------------------------------------------------------------- user files


def read_features_file(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state dict)`` of a safetensors feature network; config from metadata or ``FILE.json``."""
    p = Path(path)
    state, metadata = read_safetensors(p)
    config: Any = None
    if metadata.get("format") == FEATURES_FORMAT and "config" in metadata:
        config = json.loads(metadata["config"])
    else:
        for side in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
            if side.is_file():
                try:
                    config = json.loads(side.read_text())
                except json.JSONDecodeError as exc:
                    raise UserError(f"{side} is not valid JSON ({exc.msg}, line {exc.lineno}); fix it") from None
                break
    if not isinstance(config, dict) or "architecture" not in config:
        raise UserError(
            f'{p} has no feature-network config: put {{"architecture": ...}} in {p.name}.json beside it '
            f"({CLASSIFIER_ARCHITECTURE} or {INCEPTION_ARCHITECTURE})"
        )
    return config, state


def file_extractor(path: str | Path) -> FeatureExtractor:
    """A user's TorchScript module or safetensors+config feature network (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"--features {str(p)!r}: no such file; give inception, digits, or a .pt/.safetensors file")
    sha = file_sha256(p)
    if p.suffix == ".safetensors":
        config, state = read_features_file(p)
        arch = config["architecture"]
        if arch == CLASSIFIER_ARCHITECTURE:
            model = build_from_config(config, state, str(p))
            return classifier_extractor(model, p, name=f"file:{p.name}", note=NOTE_USER)
        if arch == INCEPTION_ARCHITECTURE:
            net, _, _ = load_inception(p)
            return inception_extractor(net, str(p), sha)
        raise UserError(
            f"{p}: unknown feature architecture {arch!r}; use {CLASSIFIER_ARCHITECTURE} or {INCEPTION_ARCHITECTURE}"
        )
    try:
        module = torch.jit.load(str(p), map_location="cpu")
    except (RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise UserError(
            f"{p} is not a TorchScript module ({first}); save one with torch.jit.save or use .safetensors + config"
        ) from None
    return FeatureExtractor(
        module, name=f"file:{p.name}", num_features=-1, num_logits=None, sha256=sha, note=NOTE_USER, path=str(p)
    )


# ------------------------------------------------------------------------------------------- selection


def build_extractor(
    spec: str,
    *,
    dataset_key: str,
    image_size: int,
    train_data: Callable[[], tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    heldout_data: Callable[[], tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    inception_weights: str | None = None,
    device: torch.device | str = "cpu",
) -> FeatureExtractor:
    """The extractor for ``spec`` (``auto``: the classifier for the built-in digits, Inception otherwise).

    ``train_data`` / ``heldout_data`` give the labelled splits the classifier trains and is checked on.
    """
    if spec == "auto":
        spec = "digits" if dataset_key == "digits" else "inception"
    if spec == "inception":
        net, path, sha = load_inception(inception_weights)
        extractor = inception_extractor(net, str(path), sha)
    elif spec in ("digits", "classifier"):
        if train_data is None:
            raise UserError(
                "--features digits needs a labelled dataset (digits, MNIST, CIFAR-10); use --features inception"
            )
        model, path = cached_classifier(dataset_key, image_size, train_data, heldout=heldout_data)
        extractor = classifier_extractor(model, path, name="digits-classifier", note=NOTE_CLASSIFIER)
    elif spec.endswith((".pt", ".pth", ".torchscript", ".ts", ".safetensors")) or Path(spec).exists():
        extractor = file_extractor(spec)
    else:
        raise UserError(f"--features {spec!r}: use inception, digits, or a path to a .pt / .safetensors file")
    return extractor.to(device)
