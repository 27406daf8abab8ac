"""``gankit export``: a trained generator as one safetensors file, optionally with spectral norm folded.

The file holds the generator's tensors and, in its metadata, the model config (JSON) plus:

- ``spectral_norm_folded``: ``"true"`` when every spectral-norm parametrization was replaced by its effective
  weight ``W / sigma(W)`` (computed in eval mode, with the power-iteration vectors ``u``, ``v`` frozen). The
  folded generator is a plain network with the same eval-mode outputs and no ``u`` / ``v`` buffers, ready for
  deployment, as the seed's ``remove_spectral_norm`` advice intends. :func:`gankit.load_generator` reads
  both forms.
- ``ema``: ``"true"`` for the EMA generator (the default), ``"false"`` for the raw trained one.
"""

from __future__ import annotations

from pathlib import Path

from gankit.api import load_generator
from gankit.apps.outputs import claim_outputs
from gankit.errors import ParameterError
from gankit.io import SPECTRAL_NORM_FOLDED
from gankit.nn import fold_spectral_norm


def export_generator(
    source: str | Path, out: str | Path, *, fold_sn: bool = False, ema: bool = True, overwrite: bool = False
) -> tuple[Path, bool]:
    """Write the generator of ``source`` (run folder, ``.pt`` checkpoint or ``.safetensors`` export) to ``out``.

    ``fold_sn`` folds spectral norm into plain weights (eval mode: the same outputs, no u/v vectors);
    ``ema=False`` takes the raw generator of a checkpoint instead of its EMA. Returns the written path and whether
    the file's spectral norm is folded.
    """
    out = Path(out)
    if out.is_dir():
        raise ParameterError("out", f"{out} is a folder; give a file name ending in .safetensors")
    if out.suffix != ".safetensors":
        raise ParameterError("out", f"{out}: the export is a safetensors file; give a name ending in .safetensors")
    with claim_outputs([out], overwrite=overwrite):
        generator = load_generator(source, ema=ema).cpu()
        if fold_sn:
            fold_spectral_norm(generator.eval())
        folded = generator.spectral_norm_folded()  # (a source may already be folded)
        meta = {SPECTRAL_NORM_FOLDED: "true" if folded else "false", "ema": "true" if ema else "false"}
        return generator.save_export(out, **meta), folded


__all__ = ["export_generator"]
