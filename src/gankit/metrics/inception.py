"""The FID Inception-v3 in plain PyTorch, module for module like the standard weights file.

The network is the TensorFlow Inception-v3 graph of 2015-12-05 that every published FID, KID and Inception
score used, as converted to PyTorch by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``) and
torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``; the same tensors). Its module names match those
files, so they load with ``torch.load(weights_only=True)`` and strict key checking. It differs from
torchvision's ImageNet Inception-v3 the way the TF graph does: average pools ignore padded zeros, the last
block's pooling branch uses a max pool, and the classifier has 1008 outputs.

Input: ``(B, 3, H, W)`` float pixel values in [0, 255] (uint8 levels). They are resized to 299x299 with
TensorFlow 1.x's bilinear resize (no half-pixel offset, not the same as ``F.interpolate``), scaled to [-1, 1]
and give ``(B, 2048)`` pool features and ``(B, 1008)`` logits.

Weights come from ``--inception-weights PATH``, ``GANKIT_INCEPTION_WEIGHTS``, or the torch hub cache (they are
downloaded there, with the sha256 prefix in the file name checked, when the machine is online).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import UserError
from gankit.io import file_sha256

INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_LOGITS = 1008
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
WEIGHTS_FILE_NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV = "GANKIT_INCEPTION_WEIGHTS"


# --------------------------------------------------------------------------------------------- resize


def _tf_axis(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``lo``, ``hi`` and float32 weight of ``hi`` for TF1 bilinear (align_corners=False) along one
    axis. Positions are float32 throughout, as in TF's kernel and torch-fidelity: float64 positions land up to
    1.3e-2 levels away on a 0-255 image."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)  # TF: float(in_size) / out_size
    src = torch.arange(out_size, dtype=torch.float32, device=device) * scale.to(device)  # TF1: no half-pixel centres
    floor = src.floor()
    lo = floor.long().clamp(0, in_size - 1)
    hi = (lo + 1).clamp_max(in_size - 1)  # TF: min(ceil(src), in - 1); equal wherever the weight is not 0
    return lo, hi, src - floor


def resize_bilinear_tf(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """TensorFlow 1.x ``tf.image.resize_bilinear(align_corners=False)`` of ``(B, C, H, W)`` to ``(B, C, size, size)``.

    Output pixel ``i`` samples the input at ``i * H / size`` (TF1 has no half-pixel offset), which is what the
    FID reference implementation fed the Inception graph. For float32 input the result is bit for bit TF's: the
    same float32 positions and weights, and TF's order of operations (along x in the two rows, then along y).
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float (B, C, H, W) tensor, got {tuple(x.shape)} {x.dtype}")
    ylo, yhi, wy = _tf_axis(x.shape[2], size, x.device)
    xlo, xhi, wx = _tf_axis(x.shape[3], size, x.device)
    wy = wy.to(x.dtype).view(1, 1, size, 1)
    wx = wx.to(x.dtype).view(1, 1, 1, size)
    top_rows, bottom_rows = x.index_select(2, ylo), x.index_select(2, yhi)
    top_left, top_right = top_rows.index_select(3, xlo), top_rows.index_select(3, xhi)
    top = top_left + (top_right - top_left) * wx
    del top_left, top_right
    bottom_left, bottom_right = bottom_rows.index_select(3, xlo), bottom_rows.index_select(3, xhi)
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return top + (bottom - top) * wy


# -------------------------------------------------------------------------------------------- network


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU; the unit every Inception block is built from."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TF's 3x3 average pool with SAME padding divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pool branches -> ``64 + 64 + 96 + pool_features`` channels."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: strided 3x3, strided double 3x3 and max pool -> ``384 + 96 + in`` channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions -> 768 channels."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = layer(d)
        d = self.branch7x7dbl_5(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction -> ``320 + 192 + in`` channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches -> 2048 channels. ``max_pool`` for the graph's last block."""

    def __init__(self, in_channels: int, max_pool: bool = False) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        # The TF graph's last block pools with a max pool (the paper and torchvision use an average pool).
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: ``(B, 3, H, W)`` in [0, 255] -> ``(features (B, 2048), logits (B, 1008))``.

    23,850,960 parameters in 566 state-dict entries named as in ``pt_inception-2015-12-05-6726825d.pth``.
    ``forward(x, unbiased_logits=True)`` omits the classifier bias, as the Inception score's reference code and
    torch-fidelity's ``logits_unbiased`` do.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(NUM_FEATURES, NUM_LOGITS)

    def forward(self, x: torch.Tensor, unbiased_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, 3, H, W)`` pixel values in [0, 255] -> ``(B, 2048)`` pool features, ``(B, 1008)`` logits."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got {tuple(x.shape)}")
        x = resize_bilinear_tf(x.float(), INPUT_SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        features = x.mean(dim=(2, 3))
        logits = features @ self.fc.weight.T if unbiased_logits else self.fc(features)
        return features, logits


# -------------------------------------------------------------------------------------------- weights


def _missing_weights_message() -> str:
    return (
        f"the FID Inception weights are not available (offline?): download {WEIGHTS_URL} and pass "
        f"--inception-weights FILE or set {WEIGHTS_ENV}=FILE"
    )


def find_inception_weights(path: str | Path | None = None, *, download: bool = True) -> Path:
    """The weights file: ``path``, else ``$GANKIT_INCEPTION_WEIGHTS``, else the torch hub cache (downloading
    into it when ``download`` and online; torch hub checks the sha256 prefix in the file name).

    Raises :class:`UserError` with the one-line fix when none of those gives a file.
    """
    chosen = path or os.environ.get(WEIGHTS_ENV) or None
    if chosen:
        p = Path(chosen).expanduser()
        if not p.is_file():
            source = "--inception-weights" if path else WEIGHTS_ENV
            raise UserError(f"{source} {str(p)!r} does not exist; download {WEIGHTS_URL} and point to it")
        return p
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for name in WEIGHTS_FILE_NAMES:
        if (hub / name).is_file():
            return hub / name
    if not download:
        raise UserError(_missing_weights_message())
    try:
        torch.hub.load_state_dict_from_url(
            WEIGHTS_URL, model_dir=str(hub), map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except Exception as exc:  # offline, proxy, hash mismatch: all end in the same instruction
        raise UserError(f"{_missing_weights_message()} ({type(exc).__name__})") from None
    return hub / WEIGHTS_FILE_NAMES[0]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from ``.pth``/``.pt`` (``weights_only=True``: no code runs) or ``.safetensors``."""
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise UserError(f"{p} is not a readable weights file ({type(exc).__name__}: {first}); re-download it") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{p} does not hold a state dict; give the FID Inception weights ({WEIGHTS_FILE_NAMES[0]})")
    return state


def load_inception(path: str | Path | None = None, *, download: bool = True) -> tuple[FIDInceptionV3, Path, str]:
    """``(eval-mode network with frozen weights, weights file, its sha256)``.

    Keys and shapes are checked strictly; a file for another network is a one-line :class:`UserError`.
    """
    p = find_inception_weights(path, download=download)
    state = read_state_dict(p)
    net = FIDInceptionV3()
    own = net.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked"):
            continue  # absent from converted files; not used in eval mode
        if key not in state:
            raise UserError(f"{p} is not the FID Inception-v3 weights: {key!r} is missing; use {WEIGHTS_FILE_NAMES[0]}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"{p} is not the FID Inception-v3 weights: {key!r} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)}"
            )
    extra = sorted(k for k in state if k not in own)
    if extra:
        raise UserError(f"{p} is not the FID Inception-v3 weights: unexpected tensor {extra[0]!r}")
    net.load_state_dict(state, strict=False)
    return net.eval().requires_grad_(False), p, file_sha256(p)
