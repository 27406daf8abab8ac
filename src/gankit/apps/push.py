"""``gankit push``: a run's EMA generator to the Hugging Face Hub, as a pretrained folder in one commit.

The folder is built by :func:`gankit.hub.save_pretrained` in a temporary directory (weights, config.json, model
card, sample grid, optionally the discriminator) and uploaded by :func:`gankit.hub.push_to_hub`.
"""

from __future__ import annotations

import os
from pathlib import Path

from gankit.errors import UserError
from gankit.hub import Pushed, push_to_hub
from gankit.io import RunDir


def push(
    run: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    include_discriminator: bool = False,
    best: bool = False,
    license: str | None = None,  # noqa: A002 - the model card's key
) -> Pushed:
    """Push the run folder (or ``.pt`` checkpoint) ``run`` to ``repo_id``; see :func:`gankit.hub.push_to_hub`.
    ``run`` is checked first, so a mistyped path is reported before anything about tokens or the network."""
    path = Path(run)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a run folder (gankit train --out)")
    if path.is_dir() and not RunDir(path).is_run():
        raise UserError(f"{path} is not a gankit run folder (no config.yaml or checkpoints/)")
    if path.is_file() and path.suffix != ".pt":
        raise UserError(f"{path} is not a run folder or a .pt checkpoint")
    return push_to_hub(path, repo_id, private=private, revision=revision, token=token, commit_message=commit_message,
                       include_discriminator=include_discriminator, best=best, license=license)


__all__ = ["push"]
