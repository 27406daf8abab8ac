"""``load_generator``: any gankit run folder, checkpoint or safetensors export -> a ready generator."""

from __future__ import annotations

from pathlib import Path

import torch

from gankit.errors import UserError
from gankit.models.base import Generator, check_state_matches
from gankit.models.registry import build_generator, model_config_from_dict
from gankit.nn import fold_spectral_norm
from gankit.training.checkpoint import SPECTRAL_NORM_FOLDED, load_checkpoint, read_generator_export
from gankit.training.run import select_device


def _load_weights(generator: Generator, state: dict[str, torch.Tensor], source: Path) -> None:
    check_state_matches(generator, state, source)
    generator.load_state_dict(state)


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A run folder means its ``checkpoints/last.pt`` (or ``generator.safetensors`` when that is all it has)."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "checkpoints" / "last.pt", p / "generator.safetensors"):
            if candidate.is_file():
                return candidate
        raise UserError(f"{p} holds no checkpoints/last.pt or generator.safetensors; is it a gankit run folder?")
    if not p.exists():
        raise UserError(f"{p} does not exist; give a run folder, a .pt checkpoint or a .safetensors export")
    return p


def _is_pgan_zoo_file(path: Path) -> bool:
    from gankit.compat.pgan_zoo import is_pgan_zoo_file

    return is_pgan_zoo_file(path)


def load_generator(path: str | Path, ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """Load an eval-mode generator from a run folder, a checkpoint (``.pt``) or an export (``.safetensors``).

    ``ema=True`` takes the EMA weights (what samples and exports use); ``ema=False`` the raw trained G
    (checkpoints only). The result is callable as ``G(z)`` / ``G(z, y)`` and has ``.z_dim``,
    ``.num_classes`` and ``.sample(n, labels=None, generator=None)``. Exports written with spectral norm folded
    (metadata ``spectral_norm_folded: "true"``) are loaded into a model whose spectral norm is folded too.
    pytorch_GAN_zoo PGAN files (``.pth``) are recognised and converted: ``ema=True`` gives their averaged
    generator ``avgG``, ``ema=False`` their ``netG``.
    """
    dev = select_device(str(device)) if not isinstance(device, torch.device) else device
    p = resolve_checkpoint_path(path)
    if p.suffix == ".safetensors":
        if not ema:
            raise UserError(f"{p} holds only the EMA generator; use a checkpoint (.pt or the run folder) for --no-ema")
        config, state, metadata = read_generator_export(p)
    elif _is_pgan_zoo_file(p):  # a pytorch_GAN_zoo PGAN .pth: converted by gankit.compat (weights_only)
        from gankit.compat.pgan_zoo import load_pgan_zoo_generator

        return load_pgan_zoo_generator(p, ema=ema).to(dev).eval().requires_grad_(False)
    else:
        ckpt = load_checkpoint(p)
        config = ckpt["config"]["model"]
        state = ckpt["G_ema" if ema else "G"]
        metadata = {}
    generator = build_generator(model_config_from_dict(config))
    if metadata.get(SPECTRAL_NORM_FOLDED) == "true":  # `gankit export --fold-sn`: plain weights, no u / v
        fold_spectral_norm(generator.eval())
    if hasattr(generator, "adapt_to_state_dict"):  # progressive models: grow to the scale the file was saved at
        generator.adapt_to_state_dict(state)
    _load_weights(generator, state, p)
    return generator.to(dev).eval().requires_grad_(False)
