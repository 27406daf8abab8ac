"""The files of a pretrained folder, named in one place: :class:`PretrainedDir`."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from gankit.errors import DamagedFile, UserError
from gankit.io import SPECTRAL_NORM_FOLDED, read_safetensors, save_safetensors, write_json

# safetensors metadata of model.safetensors: what huggingface_hub (save_model) and transformers write and check
PRETRAINED_WEIGHTS_METADATA = {"format": "pt"}


@dataclasses.dataclass(frozen=True)
class PretrainedDir:
    """The files of a pretrained folder, named in one place: the layout ``huggingface_hub.PyTorchModelHubMixin``
    writes and reads, so either side loads the other's folders::

        model.safetensors                 the (EMA) generator's state dict, plain tensor names
        config.json                       flat: the model config fields (with "family") + META_KEYS
        README.md                         the model card (YAML front matter + Markdown)
        samples.png                       a sample grid of the generator
        discriminator/model.safetensors   optional: the discriminator's state dict
        discriminator/config.json         its model config fields + gankit_version
    """

    root: Path

    WEIGHTS = "model.safetensors"
    CONFIG = "config.json"
    CARD = "README.md"
    SAMPLES = "samples.png"
    DISCRIMINATOR = "discriminator"
    # what gankit writes, so what overwrite=True removes (and nothing else of the folder)
    ARTEFACTS = (WEIGHTS, CONFIG, CARD, SAMPLES, DISCRIMINATOR)
    # config.json keys that are not model config fields: the sampling convention and provenance
    META_KEYS = (
        "gankit_version", "latent", "truncation", "data_range", "output_range", "eval_mode", SPECTRAL_NORM_FOLDED,
    )  # fmt: skip

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def weights(self) -> Path:
        return self.root / self.WEIGHTS

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def card(self) -> Path:
        return self.root / self.CARD

    @property
    def samples(self) -> Path:
        return self.root / self.SAMPLES

    @property
    def discriminator(self) -> PretrainedDir:
        return PretrainedDir(self.root / self.DISCRIMINATOR)

    def is_pretrained(self) -> bool:
        """True when the folder holds a pretrained model (its weights or its config.json)."""
        return self.weights.is_file() or self.config.is_file()

    def prepare(self, overwrite: bool = False) -> Path:
        """Make the folder ready for writing: created when missing; a non-empty one is refused unless
        ``overwrite``, which removes gankit's files (:attr:`ARTEFACTS`) first, so no stale file (an older
        discriminator, a sample grid) stays beside the new weights. Other files are left alone."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root} is a file; give a folder for the pretrained model")
        if self.root.is_dir() and any(self.root.iterdir()):
            if not overwrite:
                raise UserError(f"{self.root} is not empty; choose a new folder or pass overwrite=True to replace it")
            for name in self.ARTEFACTS:
                target = self.root / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def write(self, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
        """``state`` as model.safetensors and ``config`` as config.json (atomically, each)."""
        save_safetensors(self.weights, state, dict(PRETRAINED_WEIGHTS_METADATA))
        write_json(self.config, config)
        return self.root

    def read(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(config.json as a dict, state dict)``; a missing or unreadable file is a one-line :class:`UserError`."""
        for path in (self.config, self.weights):
            if not path.is_file():
                raise UserError(f"{self.root} has no {path.name}; a pretrained folder holds {self.WEIGHTS} and "
                                f"{self.CONFIG} (gankit.save_pretrained writes both)")
        try:
            config = json.loads(self.config.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise DamagedFile(f"{self.config} is not readable JSON ({str(exc)[:120]})") from None
        if not isinstance(config, dict):
            raise UserError(f"{self.config} must hold a JSON object of model settings")
        state, _ = read_safetensors(self.weights)
        return config, state


__all__ = ["PRETRAINED_WEIGHTS_METADATA", "PretrainedDir"]
