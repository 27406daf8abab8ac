"""The object pytorch_GAN_zoo's Torch Hub ``PGAN`` returned, rebuilt on gankit's networks.

The seed tutorial's calls run unchanged::

    model = torch.hub.load(REPO, "PGAN", model_name="celebAHQ-512", pretrained=True, useGPU=False)
    noise, _ = model.buildNoiseData(4)          # (4, 512) N(0, I); G pixel-normalises it
    with torch.no_grad():
        images = model.test(noise)              # (4, 3, 512, 512), raw (unclamped) generator outputs

``test(noise)`` runs ``netG`` as the zoo's hub example does; ``test(noise, getAvG=True)`` runs the file's
averaged generator ``avgG`` (on the zoo's ``hub`` branch that call returned netG's images, because its
loader overwrote avgG; on ``main`` and here it is the stored average). ``getNetG()`` returns the loaded netG as
a module taking the zoo's raw input; the zoo's own ``getNetG()`` built a fresh, untrained network instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankit import log
from gankit.api import load_generator
from gankit.compat.pgan_zoo import (
    ZooBaseConfig,
    class_names,
    download_pgan_zoo,
    generator_from_state,
    is_pgan_zoo_file,
    read_pgan_zoo,
    untrained_zoo_generator,
    zoo_default_config,
)
from gankit.errors import UserError
from gankit.models.pgan import ProgressiveGenerator


class ZooGNet(nn.Module):
    """A gankit :class:`ProgressiveGenerator` behind the zoo's ``GNet`` call: ``forward(x)`` takes the raw
    input ``(N, noiseVectorDim + categoryVectorDim[, 1, 1])`` (class one-hots appended) -> ``(N, C, R, R)``."""

    def __init__(self, generator: ProgressiveGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesize(x)

    def getOutputSize(self) -> tuple[int, int]:
        side = self.generator.image_size
        return side, side


class ZooPGAN:
    """``buildNoiseData``, ``test``, ``getNetG`` and friends of the zoo's ``ProgressiveGAN`` (inference only)."""

    def __init__(
        self,
        netG: ProgressiveGenerator,
        avgG: ProgressiveGenerator | None,
        config: ZooBaseConfig,
        device: torch.device,
        classes: list[str] | None = None,
    ) -> None:
        self.device = device
        self.config = config
        self.classes = classes
        self.netG = ZooGNet(netG).to(device).eval().requires_grad_(False)
        self.avgG = ZooGNet(avgG).to(device).eval().requires_grad_(False) if avgG is not None else None
        self.useGPU = device.type == "cuda"

    # ------------------------------------------------------------------------------------------- the zoo's API

    def buildNoiseData(
        self, n_samples: int, inputLabels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(noise (n, noiseVectorDim [+ C]), labels)``: N(0, I) latents on the model's device; conditional
        models append a one-hot class (random, or ``inputLabels`` ``(n,)`` / ``(n, 1)``) and return the class
        ids as the zoo did, float ``(n, 1)``; unconditional ones return ``None``."""
        g = self.netG.generator
        z = torch.randn(n_samples, g.z_dim).to(self.device)
        if g.num_classes == 0:
            if inputLabels is not None:
                raise UserError("this PGAN is unconditional: buildNoiseData takes no labels")
            return z, None
        labels = (
            torch.randint(g.num_classes, (n_samples,))
            if inputLabels is None
            else torch.as_tensor(inputLabels).reshape(n_samples, -1)[:, 0].long().cpu()
        )
        if labels.min() < 0 or labels.max() >= g.num_classes:
            raise UserError(f"class ids must be in 0..{g.num_classes - 1}")
        one_hot = F.one_hot(labels, g.num_classes).float().to(self.device)
        return torch.cat([z, one_hot], dim=1), labels.float().view(n_samples, 1).to(self.device)

    @torch.no_grad()
    def test(self, input: torch.Tensor, getAvG: bool = False, toCPU: bool = True) -> torch.Tensor:
        """Images ``(N, C, R, R)`` for the raw noise ``input`` (``(N, D)``, ``(N, D, 1, 1)`` or one ``(D,)``);
        never clamped. ``getAvG`` uses the averaged generator (netG when the file has none)."""
        x = input.to(self.device)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        net = self.avgG if getAvG and self.avgG is not None else self.netG
        out = net(x)
        return out.cpu() if toCPU else out

    def getNetG(self) -> ZooGNet:
        return self.netG

    def getOriginalG(self) -> ZooGNet:
        return self.netG

    def getOriginalAvgG(self) -> ZooGNet:
        return self.avgG if self.avgG is not None else self.netG

    def getSize(self) -> tuple[int, int]:
        return self.netG.getOutputSize()

    # ------------------------------------------------------------------------------------------- gankit's API

    def generator(self, ema: bool = True) -> ProgressiveGenerator:
        """The gankit generator (``G(z, y)``, ``G.sample(n)``): avgG with ``ema`` (if present), else netG."""
        net = self.avgG if ema and self.avgG is not None else self.netG
        return net.generator


def _device(use_gpu: bool) -> torch.device:
    if use_gpu and not torch.cuda.is_available():
        log.warn("useGPU=True but CUDA is not available: running on the CPU")
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def _from_zoo_file(path: Path, device: torch.device) -> ZooPGAN:
    ckpt = read_pgan_zoo(path)
    net_g = generator_from_state(ckpt.config, ckpt.netG, f"{path} [netG]")
    avg_g = generator_from_state(ckpt.config, ckpt.avgG, f"{path} [avgG]") if ckpt.avgG is not None else None
    return ZooPGAN(net_g, avg_g, ckpt.config, device, class_names(ckpt.config))


def _from_gankit_file(path: Path, device: torch.device) -> ZooPGAN:
    avg_g = load_generator(path, ema=True)
    if not isinstance(avg_g, ProgressiveGenerator):
        raise UserError(f"{path} holds a {avg_g.config.family} generator; PGAN needs a Progressive GAN file")
    net_g = avg_g if path.suffix == ".safetensors" else load_generator(path, ema=False)
    cfg = avg_g.config
    classes = [str(c) for c in range(cfg.num_classes)] or None
    config = ZooBaseConfig(
        depthScale0=cfg.depths[0],
        depthOtherScales=list(cfg.depths[1 : avg_g.scale + 1]),
        noiseVectorDim=cfg.z_dim,
        categoryVectorDim=cfg.num_classes,
        latentVectorDim=cfg.z_dim + cfg.num_classes,
        dimOutput=cfg.channels,
        alpha=1.0 - float(avg_g.alpha),
        attribKeysOrder={"Main": {"order": 0, "values": classes}} if classes else None,
    )
    return ZooPGAN(net_g, avg_g, config, device, classes)  # type: ignore[arg-type]


def load_hub_pgan(
    *,
    pretrained: bool = True,
    model_name: str | None = None,
    use_gpu: bool = False,
    weights: str | Path | None = None,
    check_hash: bool = True,
    progress: bool = True,
) -> ZooPGAN:
    """What ``hubconf.PGAN`` returns: a local ``weights`` file (zoo ``.pth`` or a gankit PGAN run / checkpoint /
    export), else the public file of ``model_name`` (downloaded once), else (``pretrained=False``) an untrained
    4x4 model with the zoo's default config."""
    device = _device(use_gpu)
    if weights is not None:
        path = Path(weights)
        if not path.exists():
            raise UserError(f"weights={str(path)!r} does not exist")
        return (
            _from_zoo_file(path, device)
            if path.is_file() and is_pgan_zoo_file(path)
            else _from_gankit_file(path, device)
        )
    if not pretrained:
        return ZooPGAN(untrained_zoo_generator(), None, zoo_default_config(), device)
    return _from_zoo_file(download_pgan_zoo(model_name, check_hash=check_hash, progress=progress), device)


__all__ = ["ZooGNet", "ZooPGAN", "load_hub_pgan"]
