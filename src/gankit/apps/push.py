"""``gankit push``: a run's EMA generator to the Hugging Face Hub, as a pretrained folder in one commit.

The folder is built by :func:`gankit.hub.save_pretrained` in a temporary directory (weights, config.json, model
card, sample grid, optionally the discriminator) and uploaded by :func:`gankit.hub.push_to_hub`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gankit.errors import UserError
from gankit.hub import Pushed, push_to_hub
from gankit.hub.layout import PretrainedDir
from gankit.io import RunDir


def push(run: str | os.PathLike, repo_id: str, **options: Any) -> Pushed:
    """Push the run folder (or ``.pt`` checkpoint, or a pretrained folder as ``gankit import`` writes) ``run`` to
    ``repo_id``; ``options`` are those of
    :func:`gankit.hub.push_to_hub` (``private``, ``revision``, ``token``, ``commit_message``,
    ``include_discriminator``, ``best``, ``license``).
    ``run`` is checked first, so a mistyped path is reported before anything about tokens or the network."""
    path = Path(run)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a run folder (gankit train --out)")
    if path.is_dir() and not RunDir(path).is_run() and not PretrainedDir(path).is_pretrained():
        raise UserError(f"{path} is not a gankit run folder (no config.yaml or checkpoints/) or pretrained folder "
                        "(gankit import)")
    if path.is_file() and path.suffix != ".pt":
        raise UserError(f"{path} is not a run folder or a .pt checkpoint")
    return push_to_hub(path, repo_id, **options)


__all__ = ["push"]
