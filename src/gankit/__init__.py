"""gankit: train, sample, evaluate and share attention-based and progressive GANs in PyTorch."""

from gankit.version import __version__


def load_generator(path, ema: bool = True, device="cpu"):
    """Load a ready, eval-mode generator from a run folder, checkpoint or safetensors export.

    See :func:`gankit.api.load_generator`.
    """
    from gankit.api import load_generator as _load

    return _load(path, ema=ema, device=device)


__all__ = ["__version__", "load_generator"]
