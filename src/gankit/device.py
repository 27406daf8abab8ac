"""Choosing the device a job runs on."""

from __future__ import annotations

import torch

from gankit.errors import ParameterError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


# the device types gankit runs on; torch knows more (xla, meta, xpu, ...) that gankit's jobs cannot use
DEVICE_TYPES = ("cpu", "cuda", "mps")
DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks cuda, then mps, then cpu; an explicit device that is not there, or of a type gankit
    does not run on (``xla``, ``meta``, ...), is a clear error."""
    if isinstance(name, torch.device):
        if name.type not in DEVICE_TYPES:
            raise ParameterError("device", f"{name.type!r} is not a device gankit runs on; use {DEVICE_NAMES}")
        return name
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ParameterError("device", f"{name!r} is not a device name; use {DEVICE_NAMES}") from None
    if device.type not in DEVICE_TYPES or (device.type == "cpu" and device.index not in (None, 0)):
        raise ParameterError("device", f"{name!r} is not a device gankit runs on; use {DEVICE_NAMES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", f"{name} asked for a GPU but CUDA is not available here; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ParameterError("device", f"{name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not _mps_available():
        raise ParameterError("device", "mps is not available here; use cpu or auto")
    return device


# gankit's measured choice for training.amp=auto on CPUs with native bf16: see README "Mixed precision on the CPU".
CPU_AUTO_BF16 = False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware, as PyTorch reports it: CUDA's ``is_bf16_supported``; on the
    CPU the AVX512-BF16 or AMX instructions (without them bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                       "_is_amx_tile_supported"))
    return False


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The dtype ``training.amp`` runs G's and D's forward passes in on ``device`` (None: float32).

    CUDA: ``auto`` is bf16 where supported, else fp16. CPU: ``bf16`` on request; ``auto`` picks bf16 only where the
    CPU has native bf16 *and* :data:`CPU_AUTO_BF16` says measurements showed unchanged training quality; fp16 is
    CUDA-only. Other devices train in float32.
    """
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    if device.type == "cpu":
        if amp == "fp16":
            raise ParameterError("amp", "fp16 needs a CUDA GPU; on the CPU use bf16 (or off)")
        if amp == "bf16" or (amp == "auto" and CPU_AUTO_BF16 and native_bf16(device)):
            return torch.bfloat16
    return None


def is_channels_last(t: torch.Tensor) -> bool:
    """Whether a 4-d tensor ``t`` is laid out channels_last (NHWC) and not also plain contiguous (a 1x1 map or
    one channel is both, and then counts as contiguous)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
