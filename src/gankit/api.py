"""``load_generator``: any gankit run folder, checkpoint, safetensors export, pretrained folder or Hub repo id ->
a ready generator."""

from __future__ import annotations

import os
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
        raise UserError(f"{p} does not exist; give a run folder, a .pt checkpoint, a .safetensors export, a "
                        "pretrained folder or a Hub repo id (user/name)")
    return p


def generator_from_state(config: dict, state: dict[str, torch.Tensor], source: object, *, folded: bool = False):
    """A generator built from its model ``config`` dict with ``state`` loaded strictly (``folded``: spectral norm
    already folded into the weights, as ``gankit export --fold-sn`` writes them)."""
    generator = build_generator(model_config_from_dict(config))
    if folded:
        fold_spectral_norm(generator.eval())
    generator.load_weights(state, source)
    return generator


def load_generator(
    path: str | os.PathLike,
    ema: bool = True,
    device: str | torch.device = "cpu",
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Generator:
    """Load an eval-mode generator from a run folder, a checkpoint (``.pt``), an export (``.safetensors``), a
    pretrained folder (``gankit.save_pretrained``, or a ``PyTorchModelHubMixin`` one) or a Hub repo id
    ``user/name``.

    ``ema=True`` takes the EMA weights (what samples and exports use); ``ema=False`` the raw trained G
    (checkpoints only). The result is callable as ``G(z)`` / ``G(z, y)`` and has ``.z_dim``,
    ``.num_classes`` and ``.sample(n, labels=None, generator=None)``. Exports written with spectral norm folded
    (metadata ``spectral_norm_folded: "true"``) are loaded into a model whose spectral norm is folded too.
    pytorch_GAN_zoo PGAN files (``.pth``) are recognised and converted: ``ema=True`` gives their averaged
    generator ``avgG``, ``ema=False`` their ``netG``.

    A local path is looked at first; a repo id (a path that does not exist and reads ``user/name``) is then read
    from the Hub cache or downloaded (the ``gankit[hub]`` extra), at ``revision`` (branch, tag or commit; default
    main). ``HF_HUB_OFFLINE=1`` or ``local_files_only`` allow the cache only; ``cache_dir`` replaces the Hub
    cache folder (default: ``HF_HUB_CACHE``). Weights always load strictly.
    """
    from gankit.hub import generator_from_pretrained, resolve_pretrained  # same layer; only needed here

    dev = select_device(device)
    folder = resolve_pretrained(path, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
    if folder is not None:
        if not ema:
            raise UserError(f"{path} is a pretrained folder: it holds one generator (the EMA); use the run folder "
                            "or a checkpoint for --no-ema")
        return generator_from_pretrained(folder).to(dev)
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
