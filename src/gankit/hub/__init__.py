"""The Hugging Face Hub: pretrained folders (the ``PyTorchModelHubMixin`` layout), Hub repo ids (the cache, then
the network) and pushing.

- :mod:`gankit.hub.layout`: :class:`PretrainedDir`, the file names of a pretrained folder.
- :mod:`gankit.hub.card`: ``config.json`` and the model card.
- :mod:`gankit.hub.remote`: repo ids, the Hub cache and downloads (``huggingface_hub``, the extra ``gankit[hub]``).
- :mod:`gankit.hub.pretrained`: :func:`save_pretrained` and reading a folder's generator and discriminator.
- :mod:`gankit.hub.push`: :func:`push_to_hub`.

The model layer and :mod:`gankit.io` know nothing of the Hub; this package builds on them.
"""

from gankit.hub.card import generator_card, model_card, pretrained_config
from gankit.hub.layout import PretrainedDir
from gankit.hub.pretrained import (
    generator_from_pretrained,
    load_discriminator,
    model_config_from_pretrained,
    save_pretrained,
    write_pretrained,
)
from gankit.hub.push import Pushed, push_to_hub
from gankit.hub.remote import HUB_EXTRA, is_repo_id, offline_mode, require_hub, resolve_pretrained

__all__ = [
    "HUB_EXTRA",
    "PretrainedDir",
    "Pushed",
    "generator_card",
    "generator_from_pretrained",
    "is_repo_id",
    "load_discriminator",
    "model_card",
    "model_config_from_pretrained",
    "offline_mode",
    "pretrained_config",
    "push_to_hub",
    "require_hub",
    "resolve_pretrained",
    "save_pretrained",
    "write_pretrained",
]
