"""gankit: train, sample, evaluate and share attention-based and progressive GANs in PyTorch.

The public functions are re-exported lazily (PEP 562): ``import gankit`` costs nothing until one is used, and
each is the function itself, with its own signature and documentation:

- :func:`gankit.load_generator` (:mod:`gankit.api`): any run folder, checkpoint, export, pretrained folder, zoo
  file or Hub repo id -> a ready generator.
- :func:`gankit.save_pretrained` (:mod:`gankit.hub`): a generator, run or checkpoint -> a pretrained folder.
- :func:`gankit.load_discriminator`, :func:`gankit.push_to_hub` (:mod:`gankit.hub`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gankit.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "load_generator": "gankit.api",
    "save_pretrained": "gankit.hub",
    "load_discriminator": "gankit.hub",
    "push_to_hub": "gankit.hub",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from gankit.api import load_generator
    from gankit.hub import load_discriminator, push_to_hub, save_pretrained


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gankit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", "load_discriminator", "load_generator", "push_to_hub", "save_pretrained"]
