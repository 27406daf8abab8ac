"""``gankit explore``: a local web page to explore any generator gankit loads (samples, latent walks, SAGAN
attention maps for a clicked pixel, and real images: uploaded, projected, edited along directions, walked). The
server needs the ``explore`` extra (starlette, uvicorn); :mod:`gankit.apps.explore.core` (parsing and rendering)
and :mod:`gankit.apps.explore.projection` do not.
"""

from __future__ import annotations

import importlib
from typing import Any

from gankit.apps.explore.core import Explorer, Limits
from gankit.errors import UserError

EXTRA_MESSAGE = "gankit explore needs the explore extra: pip install 'gankit[explore]'"


def require_extra(*modules: str) -> None:
    """Raise a one-line :class:`UserError` saying how to install the extra when one of ``modules`` is missing."""
    for name in modules or ("starlette", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise UserError(EXTRA_MESSAGE) from None


def create_app(generator, *, source: str = "", limits: Limits | None = None, allowed_hosts=None) -> Any:
    """The Starlette app of the explorer for one loaded generator (see :mod:`gankit.apps.explore.server`)."""
    require_extra("starlette")
    from gankit.apps.explore.server import create_app as _create_app

    return _create_app(generator, source=source, limits=limits, allowed_hosts=allowed_hosts)


def serve(checkpoint, *, host: str = "127.0.0.1", port: int = 8000, device: str = "auto", **kwargs: Any) -> int:
    """Load ``checkpoint`` and serve the explorer on ``host:port`` until interrupted; returns the exit status 0."""
    require_extra("starlette", "uvicorn")
    from gankit.apps.explore.server import serve as _serve

    return _serve(checkpoint, host=host, port=port, device=device, **kwargs)


__all__ = ["EXTRA_MESSAGE", "Explorer", "Limits", "create_app", "require_extra", "serve"]
