"""``load_generator``: any gankit run folder, checkpoint or safetensors export -> a ready generator."""

from __future__ import annotations

from pathlib import Path

import torch

from gankit.device import select_device
from gankit.errors import UserError
from gankit.io import SPECTRAL_NORM_FOLDED, RunDir, load_checkpoint, read_generator_export
from gankit.models.base import Generator
from gankit.models.registry import build_generator, model_config_from_dict
from gankit.nn import fold_spectral_norm


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A run folder means its ``checkpoints/last.pt`` (or ``generator.safetensors`` when that is all it has)."""
    p = Path(path)
    if p.is_dir():
        source = RunDir(p).generator_source()
        if source is None:
            raise UserError(f"{p} holds no checkpoints/last.pt or generator.safetensors; is it a gankit run folder?")
        return source
    if not p.exists():
        raise UserError(f"{p} does not exist; give a run folder, a .pt checkpoint or a .safetensors export")
    return p


def generator_from_state(config: dict, state: dict[str, torch.Tensor], source: object, *, folded: bool = False):
    """A generator built from its model ``config`` dict with ``state`` loaded strictly (``folded``: spectral norm
    already folded into the weights, as ``gankit export --fold-sn`` writes them)."""
    generator = build_generator(model_config_from_dict(config))
    if folded:
        fold_spectral_norm(generator.eval())
    generator.load_weights(state, source)
    return generator


def load_generator(path: str | Path, ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """Load an eval-mode generator from a run folder, a checkpoint (``.pt``) or an export (``.safetensors``).

    ``ema=True`` takes the EMA weights (what samples and exports use); ``ema=False`` the raw trained G
    (checkpoints only). The result is callable as ``G(z)`` / ``G(z, y)`` and has ``.z_dim``,
    ``.num_classes`` and ``.sample(n, labels=None, generator=None)``. Exports written with spectral norm folded
    (metadata ``spectral_norm_folded: "true"``) are loaded into a model whose spectral norm is folded too.
    pytorch_GAN_zoo PGAN files (``.pth``) are recognised and converted: ``ema=True`` gives their averaged
    generator ``avgG``, ``ema=False`` their ``netG``.
    """
    dev = select_device(device)
    p = resolve_checkpoint_path(path)
    if p.suffix == ".safetensors":
        if not ema:
            raise UserError(f"{p} holds only the EMA generator; use a checkpoint (.pt or the run folder) for --no-ema")
        config, state, metadata = read_generator_export(p)
        generator = generator_from_state(config, state, p, folded=metadata.get(SPECTRAL_NORM_FOLDED) == "true")
    else:
        from gankit.compat.pgan_zoo import is_pgan_zoo_file, load_pgan_zoo_generator

        if is_pgan_zoo_file(p):  # a pytorch_GAN_zoo PGAN .pth, converted (read with weights_only)
            generator = load_pgan_zoo_generator(p, ema=ema)
        else:
            ckpt = load_checkpoint(p)
            generator = generator_from_state(ckpt["config"]["model"], ckpt["G_ema" if ema else "G"], p)
    return generator.to(dev).eval().requires_grad_(False)
