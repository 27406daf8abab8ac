"""Choosing the device a job runs on."""

from __future__ import annotations

import torch

from gankit.errors import ParameterError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks cuda, then mps, then cpu; an explicit device that is not there is a clear error."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParameterError("device", f"{name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", f"{name} asked for a GPU but CUDA is not available here; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ParameterError("device", f"{name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not _mps_available():
        raise ParameterError("device", "mps is not available here; use cpu or auto")
    return device
