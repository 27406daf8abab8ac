"""``gankit import``: a foreign toolkit's checkpoint as a normal gankit pretrained folder.

``gankit import studiogan PATH --out DIR`` (PyTorch-StudioGAN's SNGAN, SAGAN and BigGAN run folders or files) and
``gankit import biggan-pytorch PATH --out DIR`` (ajbrock/BigGAN-PyTorch's ``G.pth`` / ``G_ema.pth`` / ``D.pth``)
convert through :mod:`gankit.compat` and write the folder :func:`gankit.hub.write_pretrained` writes
(``model.safetensors``, ``config.json``, ``README.md``, ``samples.png`` and ``discriminator/`` when the source has a
D). The model card names the source, its license, the files read and the FID the source reports. So ``gankit
sample --checkpoint DIR``, ``evaluate``, ``explore`` and ``train --init-from DIR`` read it like any other.

Everything is read and converted before anything is written; a failure while writing removes what was written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gankit.apps.outputs import claim_outputs
from gankit.compat.imported import ImportedModel
from gankit.errors import ParameterError, UserError
from gankit.hub.card import generator_card, pretrained_config
from gankit.hub.layout import PretrainedDir
from gankit.hub.pretrained import sample_grid_png, write_pretrained
from gankit.io import atomic_write

SOURCES = ("studiogan", "biggan-pytorch")
SOURCE_URLS = {
    "studiogan": "https://github.com/POSTECH-CVLab/PyTorch-StudioGAN",
    "biggan-pytorch": "https://github.com/ajbrock/BigGAN-PyTorch",
}


@dataclass
class ImportResult:
    """What ``gankit import`` made: the folder and the model it holds."""

    folder: Path
    model: ImportedModel


def convert(source: str, path: str | os.PathLike, *, ema: bool = False, config: str | os.PathLike | None = None
            ) -> ImportedModel:  # fmt: skip
    """The :class:`ImportedModel` of ``path`` read as ``source`` (one of :data:`SOURCES`)."""
    if source == "studiogan":
        from gankit.compat.studiogan import import_studiogan

        return import_studiogan(path, ema=ema, config=config)
    if source == "biggan-pytorch":
        if config is not None:
            raise ParameterError("config", "is for StudioGAN's YAML configs; BigGAN-PyTorch needs none")
        from gankit.compat.biggan_pytorch import import_biggan_pytorch

        return import_biggan_pytorch(Path(path), ema=ema)
    raise UserError(f"unknown source {source!r}; gankit imports {', '.join(SOURCES)}")


def model_card(model: ImportedModel, caption: str) -> str:
    """The pretrained folder's README.md: gankit's generator card with the source, its license, the files read,
    the source's facts (run, step, reported FID) and how the conversion was checked."""
    url = SOURCE_URLS.get(model.source, "")
    files = "\n".join(f"- `{Path(f).name}`" for f in model.source_files)
    notes = "\n".join(f"- {key}: {value}" for key, value in model.notes.items())
    source = (
        f"## Source\n\nImported with `gankit import {model.source}` from [{model.source}]({url}) "
        f"(license: {model.license}; the weights keep the terms their authors released them under).\n\n"
        f"Files read:\n\n{files}\n\n{notes}\n\n"
        "gankit's conversion of this source reproduces the source's own eval-mode images and discriminator logits "
        "to 1e-5 on its test files (made by the source's code on random weights); run `gankit evaluate` on this "
        "folder to check these weights' FID against the reported one."
    )
    what = ["- `model.safetensors`, `config.json`: the generator", "- `samples.png`: the sample grid above"]
    if model.discriminator is not None:
        what.append("- `discriminator/`: the discriminator (for `gankit train --init-from`)")
    front = {"license": model.license.lower(), "tags": ["gan", model.generator.config.family, "imported",
                                                         model.source]}  # fmt: skip
    grid = f"![samples]({PretrainedDir.SAMPLES})\n\n{caption}"
    return generator_card(model.generator, front_matter=front, intro=(grid,),
                          sections=(source, "## Files\n\n" + "\n".join(what)))  # fmt: skip


def import_model(
    source: str,
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ema: bool = False,
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Convert ``path`` (``source``'s checkpoint) and write it as the pretrained folder ``out``.

    ``out`` must be new or empty unless ``overwrite`` (which replaces gankit's files there). Nothing is written
    when reading or converting fails; a failure while writing removes what this call wrote."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ParameterError("out", f"{folder} is a file; give a folder for the imported model")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ParameterError("out", f"{folder} is not empty; choose a new folder or pass --overwrite to replace it")
    with claim_outputs([folder], overwrite=True, folders=True, param="out"):
        model = convert(source, path, ema=ema, config=config)
        png, caption = sample_grid_png(model.generator)
        card = model_card(model, caption)
        existed = folder.exists()
        try:
            pre = write_pretrained(model.generator, folder, overwrite=overwrite, card=card)
            atomic_write(pre.samples, png)
            if model.discriminator is not None:
                pre.discriminator.write(model.discriminator.state_dict(), pretrained_config(model.discriminator))
        except BaseException:
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for name in PretrainedDir.ARTEFACTS:
                    target = folder / name
                    shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
            raise
    return ImportResult(folder, model)


__all__ = ["SOURCES", "ImportResult", "convert", "import_model", "model_card"]
