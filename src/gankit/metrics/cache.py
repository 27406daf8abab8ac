"""The user cache directory and the real-data feature cache.

``GANKIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gankit``, else ``~/.cache/gankit``. Real-data features
are stored per (dataset, split, size, channels, extractor weights, image count) under ``stats/``, so a second
evaluation against the same data does not run the feature network over the real images again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gankit import log
from gankit.errors import DamagedFile, UserError
from gankit.io import read_safetensors, save_safetensors

CACHE_ENV = "GANKIT_CACHE_DIR"


def cache_dir() -> Path:
    """gankit's cache folder (created on demand by writers). One this process cannot write to (a read-only
    ``GANKIT_CACHE_DIR``) is replaced by a folder in the temporary directory, with a one-line warning: a cache
    only saves time, so it never stops a command."""
    if os.environ.get(CACHE_ENV):
        chosen = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        chosen = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gankit"
    existing = chosen
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return chosen
    fallback = Path(tempfile.gettempdir()) / f"gankit-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    if chosen not in _WARNED:
        _WARNED.add(chosen)
        log.warn(f"cache folder {chosen} cannot be written; using {fallback} instead (set {CACHE_ENV} to choose)")
    return fallback


_WARNED: set[Path] = set()


def key_digest(key: dict[str, Any]) -> str:
    """A short stable hex digest of a JSON-able key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def cached_features(
    key: dict[str, Any], compute: Callable[[], dict[str, torch.Tensor]], *, use_cache: bool = True
) -> tuple[dict[str, torch.Tensor], bool]:
    """``({"features": (N, d), ...} float32, was_cached)``: from ``stats/<digest>.safetensors`` or computed and saved.

    ``compute()`` returns named tensors (features, optionally logits). ``key`` names everything they depend on;
    it is stored in the file's metadata and compared on load. A corrupt cache file is recomputed and replaced.
    """
    path = cache_dir() / "stats" / f"{key_digest(key)}.safetensors"
    meta_key = json.dumps(key, sort_keys=True)
    if use_cache and path.is_file():
        try:
            tensors, metadata = read_safetensors(path)
            if metadata.get("key") == meta_key:
                return tensors, True
        except DamagedFile:
            pass  # recomputed and replaced below
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in compute().items()}
    if use_cache:
        try:
            save_safetensors(path, tensors, {"key": meta_key})
        except (OSError, UserError):  # a read-only or full cache is not fatal: the result is still correct
            pass
    return tensors, False
