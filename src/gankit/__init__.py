"""gankit: train, sample, evaluate and share attention-based and progressive GANs in PyTorch."""

from gankit.version import __version__


def load_generator(path, ema: bool = True, device="cpu", *, revision=None, local_files_only=False, cache_dir=None):
    """Load a ready, eval-mode generator from a run folder, checkpoint, safetensors export, pretrained folder or
    Hugging Face Hub repo id ``user/name``.

    See :func:`gankit.api.load_generator`.
    """
    from gankit.api import load_generator as _load

    return _load(path, ema=ema, device=device, revision=revision, local_files_only=local_files_only,
                 cache_dir=cache_dir)


def save_pretrained(
    source,
    folder,
    *,
    overwrite: bool = False,
    include_discriminator: bool = False,
    best: bool = False,
    repo_id=None,
    license=None,  # noqa: A002 - the model card's key
    datasets=None,
    evaluation=None,
):
    """Write a generator, run folder or ``.pt`` checkpoint as a pretrained folder (the Hugging Face Hub layout:
    ``model.safetensors``, ``config.json``, model card, sample grid; ``discriminator/`` with
    ``include_discriminator``) that :func:`load_generator` and ``huggingface_hub.PyTorchModelHubMixin`` read.

    See :func:`gankit.hub.save_pretrained`.
    """
    from gankit.hub import save_pretrained as _save

    return _save(source, folder, overwrite=overwrite, include_discriminator=include_discriminator, best=best,
                 repo_id=repo_id, license=license, datasets=datasets, evaluation=evaluation)


__all__ = ["__version__", "load_generator", "save_pretrained"]
