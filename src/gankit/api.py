"""``load_generator``: any stored generator -> a ready, eval-mode generator.

The formats gankit reads are one table, :data:`FORMATS`: each row says how to recognise a source and which small
reader builds its generator (every reader ends in :meth:`gankit.models.base.Generator.from_state`, the one way a
generator is built from stored weights). The first row that recognises a source reads it. A new format is one
reader and one row.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch

from gankit.compat.biggan_pytorch import is_biggan_pytorch_source, load_biggan_pytorch_generator
from gankit.compat.pgan_zoo import is_pgan_zoo_file, load_pgan_zoo_generator
from gankit.compat.studiogan import is_studiogan_file, is_studiogan_folder, load_studiogan_generator
from gankit.device import select_device
from gankit.errors import ParameterError, UserError
from gankit.hub import PretrainedDir, generator_from_pretrained, is_repo_id, resolve_pretrained
from gankit.hub.remote import is_hub_source, not_a_repo_id
from gankit.io import SPECTRAL_NORM_FOLDED, RunDir, load_checkpoint, read_generator_export
from gankit.models.base import Generator
from gankit.models.registry import model_config_from_dict


@dataclasses.dataclass(frozen=True)
class LoadRequest:
    """What a caller asked for besides the source: the EMA or the raw generator, and for Hub repo ids the
    revision and cache settings."""

    ema: bool = True
    revision: str | None = None
    local_files_only: bool = False
    cache_dir: str | os.PathLike | None = None


@dataclasses.dataclass(frozen=True)
class Format:
    """One row of :data:`FORMATS`: ``matches(path)`` recognises the source, ``read(path, request)`` builds it."""

    name: str
    matches: Callable[[Path], bool]
    read: Callable[[Path, LoadRequest], Generator]


def _local_only(path: Path, request: LoadRequest) -> None:
    if request.revision is not None:
        raise ParameterError("revision", f"is for Hub repo ids; {path} is a local path")


def _single_generator(path: Path, request: LoadRequest, what: str) -> None:
    if not request.ema:
        raise UserError(f"{path} {what}")


# --------------------------------------------------------------------------------------------- readers


def read_pretrained_folder(path: Path, request: LoadRequest) -> Generator:
    """A pretrained folder (``gankit.save_pretrained``, or a ``PyTorchModelHubMixin`` one)."""
    _local_only(path, request)
    _single_generator(path, request, "is a pretrained folder: it holds one generator (the EMA); use the run "
                                     "folder or a checkpoint for --no-ema")
    return generator_from_pretrained(path)


def read_checkpoint(path: Path, request: LoadRequest) -> Generator:
    """A gankit checkpoint (``.pt``): its ``G_ema``, or ``G`` for ``ema=False``."""
    _local_only(path, request)
    ckpt = load_checkpoint(path)
    try:
        model = model_config_from_dict(ckpt["config"]["model"])
    except (KeyError, TypeError):
        raise UserError(f"{path} holds no model config; give a checkpoint written by gankit train") from None
    key = "G_ema" if request.ema else "G"
    state = ckpt.get(key)
    if not isinstance(state, dict):
        has_ema = key == "G" and isinstance(ckpt.get("G_ema"), dict)
        fix = "drop --no-ema to load its G_ema" if has_ema else "give a checkpoint written by gankit train"
        raise UserError(f"{path} holds no {key} weights (damaged, or not written by gankit train); {fix}")
    return Generator.from_state(model, state, source=path)


def read_export(path: Path, request: LoadRequest) -> Generator:
    """A safetensors export (``generator.safetensors``, ``gankit export``), spectral norm folded when its metadata
    says so."""
    _local_only(path, request)
    _single_generator(path, request, "holds only the EMA generator; use a checkpoint (.pt or the run folder) for "
                                     "--no-ema")
    config, state, metadata = read_generator_export(path)
    folded = metadata.get(SPECTRAL_NORM_FOLDED) == "true"
    return Generator.from_state(model_config_from_dict(config), state, source=path, folded=folded)


def read_run_folder(path: Path, request: LoadRequest) -> Generator:
    """A run folder: its ``checkpoints/last.pt``, or ``generator.safetensors`` when that is all it has."""
    source = RunDir(path).generator_source()
    if source is None:
        raise UserError(f"{path} holds no checkpoints/last.pt or generator.safetensors; is it a gankit run folder?")
    return (read_export if source.suffix == ".safetensors" else read_checkpoint)(source, request)


def read_pgan_zoo(path: Path, request: LoadRequest) -> Generator:
    """A pytorch_GAN_zoo PGAN file (``.pth``), converted: ``avgG`` for ``ema=True``, else ``netG``."""
    _local_only(path, request)
    return load_pgan_zoo_generator(path, ema=request.ema)


def read_biggan_pytorch(path: Path, request: LoadRequest) -> Generator:
    """A BigGAN-PyTorch ``G_ema.pth`` / ``G.pth`` or its weights folder (``G_ema.pth`` for ``ema=True``),
    converted exactly (:mod:`gankit.compat.biggan_pytorch`)."""
    _local_only(path, request)
    return load_biggan_pytorch_generator(path, ema=request.ema)


def read_studiogan(path: Path, request: LoadRequest) -> Generator:
    """A PyTorch-StudioGAN checkpoint file (``model=G-best-weights-step=N.pth``, ...) or run folder, converted
    exactly (:mod:`gankit.compat.studiogan`): its G_ema when the checkpoint has one and ``ema=True``, else G."""
    _local_only(path, request)
    return load_studiogan_generator(path, ema=request.ema)


def _is_studiogan(path: Path) -> bool:
    return is_studiogan_file(path) or is_studiogan_folder(path)


def read_hub_repo(path: Path, request: LoadRequest) -> Generator:
    """A Hub repo id ``user/name``: the pretrained folder from the Hub cache, else downloaded."""
    text = path.as_posix()
    folder = resolve_pretrained(text, revision=request.revision, local_files_only=request.local_files_only,
                                cache_dir=request.cache_dir)
    assert folder is not None  # a repo id always resolves to a folder or raises
    return read_pretrained_folder(folder, dataclasses.replace(request, revision=None))


def _is_pretrained_folder(path: Path) -> bool:
    return path.is_dir() and PretrainedDir(path).is_pretrained()


# Tried in order; the first row that recognises the source reads it.
FORMATS: tuple[Format, ...] = (
    Format("pretrained folder", _is_pretrained_folder, read_pretrained_folder),
    Format("BigGAN-PyTorch weights", is_biggan_pytorch_source, read_biggan_pytorch),
    Format("StudioGAN checkpoint", _is_studiogan, read_studiogan),
    Format("run folder", Path.is_dir, read_run_folder),
    Format("safetensors export", lambda p: p.is_file() and p.suffix == ".safetensors", read_export),
    Format("pytorch_GAN_zoo PGAN file", lambda p: p.is_file() and is_pgan_zoo_file(p), read_pgan_zoo),
    Format("checkpoint", Path.is_file, read_checkpoint),
    # a missing path that reads user/name, unless it is local by its look (./x, /x, ~) or its first component
    # exists here (runs/dmeo when runs/ is a folder): find_format keeps the leading ./ that Path drops
    Format("Hub repo id", lambda p: is_hub_source(str(p)), read_hub_repo),
)
SOURCES = ("a run folder, a .pt checkpoint, a .safetensors export, a pretrained folder or a Hub repo id "
           "(user/name)")


def find_format(path: str | os.PathLike) -> Format:
    """The row of :data:`FORMATS` that reads ``path``; a one-line :class:`UserError` when none does."""
    text, p = os.fspath(path), Path(path)
    note = "" if p.exists() else not_a_repo_id(text)  # Path("./user/name") reads "user/name": look at the text
    for fmt in FORMATS:
        if fmt.matches(p) and not (note and fmt.read is read_hub_repo):
            return fmt
    if note:
        raise UserError(f"{text} does not exist{note}; give {SOURCES}")
    raise UserError(f"{p} does not exist; give {SOURCES}")


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
    pretrained folder (``gankit.save_pretrained``, or a ``PyTorchModelHubMixin`` one), a pytorch_GAN_zoo PGAN file
    (``.pth``) or a Hub repo id ``user/name`` (the formats of :data:`FORMATS`).

    ``ema=True`` takes the EMA weights (what samples and exports use); ``ema=False`` the raw trained G
    (checkpoints only; a zoo file's ``netG`` instead of its averaged ``avgG``). The result is callable as ``G(z)`` /
    ``G(z, y)`` and has ``.z_dim``, ``.num_classes`` and ``.sample(n, labels=None, generator=None)``. Exports
    written with spectral norm folded are loaded into a model whose spectral norm is folded too.

    A local path is looked at first; a repo id (a path that does not exist and reads ``user/name``, unless it
    starts with ``./``, ``../``, ``/`` or ``~`` or its first component exists here: ``runs/dmeo`` with a ``runs/``
    folder is a mistyped path, never a Hub request) is then read from the Hub cache or downloaded (the
    ``gankit[hub]`` extra), at ``revision`` (branch, tag or commit; default main). ``HF_HUB_OFFLINE=1`` or
    ``local_files_only`` allow the cache only; ``cache_dir`` replaces the Hub cache folder (default:
    ``HF_HUB_CACHE``). Weights always load strictly.
    """
    dev = select_device(device)
    p = Path(path)
    if revision is not None and not p.exists() and not is_repo_id(p.as_posix()):
        raise ParameterError("revision", f"is for Hub repo ids (user/name); {os.fspath(path)!r} is none")
    if p.suffix.lower() == ".onnx" and p.is_file():  # gankit sample runs it (gankit.apps.onnx); nothing here can
        raise UserError(f"{p} is an ONNX export: this needs a PyTorch checkpoint (a run folder, a .pt checkpoint, "
                        f"a .safetensors export or a pretrained folder); gankit sample --checkpoint {p} runs it")
    generator = find_format(path).read(p, LoadRequest(ema, revision, local_files_only, cache_dir))
    return generator.to(dev).eval().requires_grad_(False)


__all__ = ["FORMATS", "Format", "LoadRequest", "find_format", "load_generator"]
