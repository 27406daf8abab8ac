"""Torch Hub entry points of gankit.

``PGAN`` is a drop-in for facebookresearch/pytorch_GAN_zoo's hub model (which no longer constructs on
PyTorch 2.x): the tutorial's code runs unchanged against gankit::

    model = torch.hub.load(REPO, "PGAN", model_name="celebAHQ-512", pretrained=True, useGPU=False)
    noise, _ = model.buildNoiseData(4)
    with torch.no_grad():
        images = model.test(noise)          # (4, 3, 512, 512), raw generator outputs

    model = torch.hub.load(REPO_DIR, "PGAN", source="local", weights="celebaHQ16_december_s7_i96000-9c72988c.pth")

gankit-native entry points return ready generators (``G(z)``, ``G(z, y)``, ``G.sample(n)``):

- ``gankit(repo_id_or_path, revision=None, *, ema=True, device="cpu", local_files_only=False, cache_dir=None)``:
  any gankit model: a Hugging Face Hub repo id ``user/name`` (pushed with ``gankit push``; read from the Hub
  cache, else downloaded; needs ``pip install 'gankit[hub]'``), a pretrained folder, a run folder, a checkpoint
  or a safetensors export::

      G = torch.hub.load(REPO, "gankit", "user/sagan-digits")              # latest revision (main)
      G = torch.hub.load(REPO, "gankit", "user/sagan-digits", revision="v1")
      images = G.sample(16)

- ``pgan(weights=None, model_name=...)``, ``sagan(weights=PATH)``, ``sngan(weights=PATH)``: one family each;
  ``weights`` is any source ``gankit`` takes or (for PGAN) a pytorch_GAN_zoo ``.pth`` file.
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "yaml", "safetensors"]

try:  # a clone that was not pip-installed: use its src/ tree
    import gankit as _gankit  # (the entry point ``gankit`` below takes the plain name)
except ImportError:  # pragma: no cover - depends on how the repository was obtained
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    import gankit as _gankit


def PGAN(  # noqa: N802 - the zoo's entry-point name
    pretrained: bool = True,
    model_name: str = "celebAHQ-512",
    useGPU: bool = False,  # noqa: N803 - the zoo's argument name
    weights: str | None = None,
    *,
    check_hash: bool = True,
    progress: bool = True,
):
    """pytorch_GAN_zoo's pretrained Progressive GAN with its ``buildNoiseData(n)``, ``test(noise, getAvG=False,
    toCPU=True)`` and ``getNetG()``.

    ``weights=PATH`` loads a local file (a zoo ``.pth`` or a gankit PGAN run); otherwise the public file of
    ``model_name`` (``celebAHQ-256``, ``celebAHQ-512``, ``celeba``, ``DTD``) is downloaded once into the Torch Hub
    cache with its sha256 prefix checked (``check_hash``). ``pretrained=False`` gives an untrained 4x4 model.
    """
    from gankit.apps.torchhub import load_hub_pgan

    return load_hub_pgan(
        pretrained=pretrained,
        model_name=model_name,
        use_gpu=useGPU,
        weights=weights,
        check_hash=check_hash,
        progress=progress,
    )


def _native(family: str, weights: str | None, ema: bool, device: str):
    from gankit.errors import UserError

    if weights is None:
        raise UserError(f"no public gankit {family} weights are published yet; pass weights=PATH or a Hub repo id")
    generator = _gankit.load_generator(weights, ema=ema, device=device)
    found = generator.config.family
    if found != family:
        raise UserError(f"{weights} holds a {found} generator, not {family}; use hub entry {found!r}")
    return generator


def gankit(
    repo_id_or_path: str,
    revision: str | None = None,
    *,
    ema: bool = True,
    device: str = "cpu",
    local_files_only: bool = False,
    cache_dir: str | None = None,
):
    """A ready generator of any family from a Hub repo id ``user/name`` (at ``revision``: branch, tag or commit)
    or a local pretrained folder, run folder, checkpoint or export; see ``gankit.load_generator``.
    ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` use the Hub cache only."""
    return _gankit.load_generator(repo_id_or_path, ema=ema, device=device, revision=revision,
                                  local_files_only=local_files_only, cache_dir=cache_dir)


def pgan(
    weights: str | None = None,
    *,
    model_name: str = "celebAHQ-512",
    ema: bool = True,
    device: str = "cpu",
    check_hash: bool = True,
):
    """A ready Progressive GAN generator: ``weights`` (gankit run / checkpoint / export, or a zoo ``.pth``), else
    the public pytorch_GAN_zoo file of ``model_name``; ``ema`` picks the averaged generator (the zoo's avgG)."""
    if weights is None:
        from gankit.compat.pgan_zoo import download_pgan_zoo

        weights = str(download_pgan_zoo(model_name, check_hash=check_hash))
    return _native("pgan", weights, ema, device)


def sagan(weights: str | None = None, *, ema: bool = True, device: str = "cpu"):
    """A ready SAGAN generator from a gankit run folder, checkpoint, export, pretrained folder or Hub repo id."""
    return _native("sagan", weights, ema, device)


def sngan(weights: str | None = None, *, ema: bool = True, device: str = "cpu"):
    """A ready SN-GAN generator from a gankit run folder, checkpoint, export, pretrained folder or Hub repo
    id."""
    return _native("sngan", weights, ema, device)
