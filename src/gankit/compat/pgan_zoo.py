"""facebookresearch/pytorch_GAN_zoo PGAN checkpoints: read safely, convert to gankit, download the public files.

A zoo file is ``torch.save({"config": BaseConfig, "netG": ..., "netD": ..., "avgG": ...})`` where ``config`` is a
pickled ``models.utils.config.BaseConfig``. It is read with ``torch.load(weights_only=True)``: only tensors,
containers and one allow-listed stand-in class for that config (:class:`ZooBaseConfig`, plain attributes, no
code) can come out of the file; anything else is refused before it is built.

The conversion follows the zoo's layout rules (the layers themselves: :mod:`gankit.models.pgan`):
the network is built from ``config.depthScale0`` / ``config.depthOtherScales`` (never from a table), the
bias is scaled with the weight (``scale_bias``), toRGB has gain sqrt(2), the latent is pixel-normalised
(``perChannelNormalization``), the stored ``config.alpha`` (weight of the *old* path) becomes gankit's
``alpha = 1 - alpha_zoo``, and keys come as ``X.module.weight`` or legacy ``X.weight``. Unlike the zoo's own
loader, a missing or unknown tensor is an error, never a silently random layer.
"""

from __future__ import annotations

import pickle
import re
import urllib.error
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gankit.errors import UserError, did_you_mean
from gankit.io import file_sha256
from gankit.models.pgan import SQRT2, PGANConfig, ProgressiveGenerator, zoo_steps_per_scale

ZOO_CONFIG_GLOBAL = "models.utils.config.BaseConfig"


@dataclass(frozen=True)
class ZooModel:
    """A public pretrained file of the zoo's Torch Hub ``PGAN`` entry point."""

    name: str
    url: str
    resolution: int

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The sha256 prefix in the file name (``name-<prefix>.pth``), as ``torch.hub`` checks it."""
        match = re.search(r"-([a-f0-9]{6,})\.pth$", self.filename)
        return match.group(1) if match else ""


ZOO_MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("celebAHQ-256", "https://dl.fbaipublicfiles.com/gan_zoo/PGAN/celebaHQ_s6_i80000-6196db68.pth", 256),
        ZooModel(
            "celebAHQ-512",
            "https://dl.fbaipublicfiles.com/gan_zoo/PGAN/celebaHQ16_december_s7_i96000-9c72988c.pth",
            512,
        ),
        ZooModel("DTD", "https://dl.fbaipublicfiles.com/gan_zoo/PGAN/testDTD_s5_i96000-04efa39f.pth", 128),
        ZooModel("celeba", "https://dl.fbaipublicfiles.com/gan_zoo/PGAN/celebaCropped_s5_i83000-2b0acc76.pth", 128),
    )
}
DEFAULT_ZOO_MODEL = "celebAHQ-256"  # the zoo's default when pretrained=True and no model_name is given


class ZooBaseConfig:
    """Stand-in for the zoo's ``models.utils.config.BaseConfig``: a bag of plain attributes, nothing else.

    Allow-listed for ``torch.load(weights_only=True)`` under the zoo's global name; its only behaviour is to
    store a ``dict`` state with string keys.
    """

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state) from some picklers
            state = state[0]
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError("the zoo config's pickled state is not a dict of attributes")
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"BaseConfig({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


# Defaults of the zoo's ProgressiveGAN config for attributes an older file may lack.
_ZOO_DEFAULTS: dict[str, Any] = {
    "depthScale0": 512,
    "depthOtherScales": [],
    "leakyReluLeak": 0.2,
    "perChannelNormalization": True,
    "alpha": 0.0,
    "miniBatchStdDev": False,
    "equalizedlR": True,
    "dimOutput": 3,
    "attribKeysOrder": None,
    "categoryVectorDim": 0,
    "lossCriterion": "WGANGP",
}


def zoo_default_config() -> ZooBaseConfig:
    """The zoo's default ``ProgressiveGAN`` constructor config (4x4, latent 512), as an untrained hub model has."""
    return ZooBaseConfig(
        **{**_ZOO_DEFAULTS, "noiseVectorDim": 512, "latentVectorDim": 512, "initBiasToZero": True, "GDPP": False}
    )


def untrained_zoo_generator() -> ProgressiveGenerator:
    """A freshly initialised 4x4 generator with the zoo's default config and layer conventions."""
    state = {"formatLayer.module.weight": torch.empty(16 * 512, 512)}
    cfg, _ = pgan_config_from_zoo(zoo_default_config(), state, "the zoo's default config")
    return ProgressiveGenerator(cfg).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------- reading


def is_pgan_zoo_file(path: str | Path) -> bool:
    """True when ``path`` is a ``torch.save`` file whose pickle names the zoo's config class (read, not run)."""
    marker = b"models.utils.config"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                return bool(names) and marker in zf.read(names[0]) and b"BaseConfig" in zf.read(names[0])
        with open(path, "rb") as f:  # legacy (pre-1.6) format: the object pickle comes before the tensor data
            head = f.read(4 << 20)
        return marker in head and b"BaseConfig" in head
    except (OSError, zipfile.BadZipFile):
        return False


@dataclass
class ZooCheckpoint:
    """A zoo file's parts: ``config`` (plain attributes) and the ``netG`` / ``avgG`` / ``netD`` state dicts."""

    config: ZooBaseConfig
    netG: dict[str, torch.Tensor]
    avgG: dict[str, torch.Tensor] | None
    netD: dict[str, torch.Tensor] | None
    path: Path


def read_pgan_zoo(path: str | Path) -> ZooCheckpoint:
    """Load a zoo checkpoint with ``weights_only=True`` (the config through :class:`ZooBaseConfig`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give the path of a pytorch_GAN_zoo .pth file")
    try:
        with torch.serialization.safe_globals([(ZooBaseConfig, ZOO_CONFIG_GLOBAL)]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(
            f"{path} holds objects other than tensors and the zoo's config (refused for safety: it could run "
            f"code) ({first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path} is truncated or corrupt ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or "netG" not in state or not isinstance(state.get("config"), ZooBaseConfig):
        keys = list(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise UserError(f"{path} is not a pytorch_GAN_zoo checkpoint (expected config, netG, netD, avgG; got {keys})")
    return ZooCheckpoint(state["config"], dict(state["netG"]), _opt(state.get("avgG")), _opt(state.get("netD")), path)


def _opt(value: Any) -> dict[str, torch.Tensor] | None:
    return dict(value) if value is not None else None


# ----------------------------------------------------------------------------------------------- converting


def _attr(config: ZooBaseConfig, name: str) -> Any:
    return getattr(config, name, _ZOO_DEFAULTS.get(name))


def class_names(config: ZooBaseConfig) -> list[str] | None:
    """The class values of a conditional (single-attribute, e.g. DTD's image folders) model, or None."""
    order = _attr(config, "attribKeysOrder")
    if not order:
        return None
    if not isinstance(order, dict) or len(order) != 1:
        names = list(order) if isinstance(order, dict) else order
        raise UserError(
            f"this zoo model is conditioned on {len(names)} attributes ({names}); gankit loads unconditional and "
            "single-attribute (image-folder, e.g. DTD) models"
        )
    (entry,) = order.values()
    return [str(v) for v in entry["values"]]


def _canonical_key(key: str) -> str:
    """``X.module.weight`` and legacy ``X.weight`` -> ``X.weight`` (a DataParallel ``module.`` prefix dropped)."""
    if key.startswith("module."):
        key = key[len("module.") :]
    parts = key.split(".")
    if len(parts) >= 3 and parts[-2] == "module":
        parts = parts[:-2] + parts[-1:]
    return ".".join(parts)


_G_RULES = (
    (re.compile(r"^formatLayer\.(weight|bias)$"), r"input_layer.\1"),
    (re.compile(r"^groupScale0\.0\.(weight|bias)$"), r"initial_conv.\1"),
    (re.compile(r"^scaleLayers\.(\d+)\.([01])\.(weight|bias)$"), None),  # conv index 0/1 -> conv1/conv2
    (re.compile(r"^toRGBLayers\.(\d+)\.(weight|bias)$"), r"to_rgb.\1.\2"),
)


def zoo_generator_key(key: str) -> str | None:
    """The gankit :class:`~gankit.models.pgan.ProgressiveGenerator` name of a zoo ``netG`` / ``avgG`` key."""
    canonical = _canonical_key(key)
    for pattern, target in _G_RULES:
        match = pattern.match(canonical)
        if match and target is None:
            i, j, what = match.groups()
            return f"blocks.{i}.conv{int(j) + 1}.{what}"
        if match:
            return match.expand(target)  # type: ignore[arg-type]
    return None


def convert_generator_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename a zoo generator state dict to gankit's names (either key style); unknown or doubled keys fail."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = zoo_generator_key(key)
        if name is None:
            raise UserError(f"{source}: unexpected tensor {key!r} in the zoo generator (not a PGAN GNet key)")
        if name in out:
            raise UserError(f"{source}: tensor {key!r} appears twice (both the .module. and the legacy key style)")
        out[name] = value.detach().to(torch.float32)
    return out


def pgan_config_from_zoo(config: ZooBaseConfig, netG: dict[str, torch.Tensor], source: str) -> tuple[PGANConfig, float]:
    """``(gankit config, gankit alpha)`` for a zoo file, from its config and its generator's tensor shapes."""
    if not _attr(config, "equalizedlR"):
        raise UserError(f"{source} was trained without equalized learning rate; gankit loads equalized models only")
    d0 = int(_attr(config, "depthScale0"))
    depths = (d0, *(int(d) for d in _attr(config, "depthOtherScales") or []))
    names = class_names(config)
    num_classes = len(names) if names else 0
    weight = next((v for k, v in netG.items() if _canonical_key(k) == "formatLayer.weight"), None)
    if weight is None:
        raise UserError(f"{source}: the generator has no formatLayer weight; is it a PGAN file?")
    z_dim = int(weight.shape[1]) - num_classes
    noise_dim = getattr(config, "noiseVectorDim", None)
    if noise_dim is not None and int(noise_dim) != z_dim:
        raise UserError(
            f"{source}: config.noiseVectorDim is {noise_dim} but formatLayer takes {weight.shape[1]} inputs "
            f"with {num_classes} classes; the file is inconsistent"
        )
    if len(depths) > 9:
        raise UserError(f"{source} has {len(depths)} scales; PGAN goes up to 9 (1024x1024)")
    n = len(depths)
    cfg = PGANConfig(
        image_size=4 * 2 ** (n - 1),
        channels=int(_attr(config, "dimOutput")),
        z_dim=z_dim,
        num_classes=num_classes,
        depths=depths,
        leaky_slope=float(_attr(config, "leakyReluLeak")),
        normalize_latent=bool(_attr(config, "perChannelNormalization")),
        output_tanh=str(_attr(config, "lossCriterion")) in ("DCGAN", "MSE"),
        scale_bias=True,
        to_rgb_gain=SQRT2,
        mbstd_group=4 if _attr(config, "miniBatchStdDev") else 0,
        mbstd_unbiased=True,
        steps_per_scale=zoo_steps_per_scale(n),
    )
    cfg.validate()
    zoo_alpha = float(_attr(config, "alpha") or 0.0)
    if not 0.0 <= zoo_alpha <= 1.0:
        raise UserError(f"{source}: config.alpha is {zoo_alpha}, outside [0, 1]")
    # The zoo applies alpha only once a scale was added (setNewAlpha); at one scale there is nothing to fade.
    return cfg, (1.0 - zoo_alpha) if n > 1 else 1.0


def generator_from_state(config: ZooBaseConfig, state: dict[str, torch.Tensor], source: str) -> ProgressiveGenerator:
    """A gankit generator (eval mode, float32, CPU) holding a zoo ``netG`` / ``avgG`` state dict."""
    cfg, alpha = pgan_config_from_zoo(config, state, source)
    weights = convert_generator_state(state, source)
    hint = (f" (its config: depthScale0 {cfg.depths[0]}, depthOtherScales {list(cfg.depths[1:])}, "
            f"{cfg.num_scales} scales)")
    weights["alpha"] = torch.tensor(alpha)  # gankit's fade state, not one of the zoo's tensors
    generator = ProgressiveGenerator.from_state(cfg, weights, source=source, hint=hint)
    return generator.eval().requires_grad_(False)


def load_pgan_zoo_generator(path: str | Path, *, ema: bool = True) -> ProgressiveGenerator:
    """The generator of a zoo file: ``avgG`` (the smoothed one) with ``ema=True``, else ``netG``."""
    ckpt = read_pgan_zoo(path)
    if ema and ckpt.avgG is None:
        raise UserError(f"{path} holds no averaged generator (avgG); load its netG with ema=False (--no-ema)")
    key = "avgG" if ema else "netG"
    return generator_from_state(ckpt.config, ckpt.avgG if ema else ckpt.netG, f"{path} [{key}]")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- downloading


def zoo_model(name: str | None) -> ZooModel:
    name = name or DEFAULT_ZOO_MODEL
    if name not in ZOO_MODELS:
        raise UserError(
            f"unknown pretrained PGAN {name!r}{did_you_mean(name, list(ZOO_MODELS))}; known: {', '.join(ZOO_MODELS)}"
        )
    return ZOO_MODELS[name]


def download_pgan_zoo(name: str | None = None, *, check_hash: bool = True, progress: bool = True) -> Path:
    """The public file of ``name`` in the Torch Hub cache (``<torch.hub.get_dir()>/checkpoints``), downloaded
    once. With ``check_hash`` the file's sha256 must start with the hash in its name, as ``torch.hub`` checks it;
    a file that fails is kept as ``<name>.unverified`` (not used) and the error says so."""
    model = zoo_model(name)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    dst = folder / model.filename
    if dst.is_file():
        return dst
    folder.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    try:
        torch.hub.download_url_to_file(model.url, str(partial), hash_prefix=None, progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise UserError(
            f"cannot download the pretrained PGAN {model.name!r} from {model.url} ({reason}): no network? "
            f"Fetch that file elsewhere and pass weights=PATH (or put it at {dst})"
        ) from None
    if check_hash and model.hash_prefix:
        digest = file_sha256(partial)
        if not digest.startswith(model.hash_prefix):
            kept = dst.with_name(dst.name + ".unverified")
            partial.replace(kept)
            raise UserError(
                f"the downloaded {model.name} file has sha256 {digest[:16]}..., not the {model.hash_prefix} its "
                f"name promises; it was kept, unused, as {kept}. Load it only if you trust it (weights=PATH)"
            )
    partial.replace(dst)
    return dst


__all__ = [
    "DEFAULT_ZOO_MODEL",
    "ZOO_MODELS",
    "ZooBaseConfig",
    "ZooCheckpoint",
    "ZooModel",
    "class_names",
    "convert_generator_state",
    "download_pgan_zoo",
    "generator_from_state",
    "is_pgan_zoo_file",
    "load_pgan_zoo_generator",
    "pgan_config_from_zoo",
    "read_pgan_zoo",
    "untrained_zoo_generator",
    "zoo_default_config",
    "zoo_generator_key",
    "zoo_model",
]
