"""What an importer of a foreign toolkit's checkpoint hands back: gankit networks plus where they came from.

Every converter in :mod:`gankit.compat` (StudioGAN, BigGAN-PyTorch) ends in an :class:`ImportedModel`; the
``gankit import`` command turns it into a normal pretrained folder (``model.safetensors``, ``config.json``, a
model card naming the source, its license and its reported FID, and ``discriminator/`` when the source has one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gankit.models.base import Discriminator, Generator


@dataclass
class ImportedModel:
    """A foreign checkpoint converted to gankit.

    ``generator`` holds the weights asked for (the EMA generator when the user chose ``--ema`` and the source has
    one); ``discriminator`` is ``None`` when the source ships none. ``source`` is the importer's name as the
    command spells it (``"studiogan"``, ``"biggan-pytorch"``), ``source_files`` the files read, ``license`` the
    source's license (an SPDX id where one exists), ``notes`` free key/value facts for the model card (run name,
    step, the source's reported FID and where it was reported)."""

    generator: Generator
    discriminator: Discriminator | None
    source: str
    source_files: list[str]
    license: str
    notes: dict[str, str] = field(default_factory=dict)


__all__ = ["ImportedModel"]
