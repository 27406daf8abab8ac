"""``gankit export``: a trained generator as one safetensors file, optionally with spectral norm folded.

The file holds the generator's tensors and, in its metadata, the model config (JSON) plus:

- ``spectral_norm_folded``: ``"true"`` when every spectral-norm parametrization was replaced by its effective
  weight ``W / sigma(W)`` (computed in eval mode, with the power-iteration vectors ``u``, ``v`` frozen). The
  folded generator is a plain network with the same eval-mode outputs and no ``u`` / ``v`` buffers, ready for
  deployment, as the seed's ``remove_spectral_norm`` advice intends. :func:`gankit.load_generator` reads
  both forms.
- ``ema``: ``"true"`` for the EMA generator (the default), ``"false"`` for the raw trained one.

:func:`export_onnx_file` writes an ONNX file instead (``--format onnx``; see :mod:`gankit.apps.onnx`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gankit.api import load_generator
from gankit.apps.onnx import check_batch, check_opset, export_onnx, require_onnx
from gankit.apps.outputs import claim_outputs
from gankit.errors import ParameterError
from gankit.io import SPECTRAL_NORM_FOLDED, atomic_write
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


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx_file` wrote: the file, the max ``|onnxruntime - PyTorch|`` and the batch sizes it
    was checked at, the opset, and the generator's family and image size."""

    path: Path
    max_diff: float
    batches: list[int]
    opset: int
    family: str
    image_size: int


def export_onnx_file(
    source: str | Path,
    out: str | Path,
    *,
    ema: bool = True,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    opset: int | None = None,
    overwrite: bool = False,
) -> OnnxExport:
    """Write the generator of ``source`` (any source :func:`gankit.load_generator` reads) to the ONNX file ``out``:
    inputs ``z`` ``(B, z_dim)`` (and ``class_id`` ``(B,)`` int64), output ``images`` ``(B, C, H, W)``, ``B`` fixed at
    ``batch_size`` or any with ``dynamic_batch``; spectral norm folded, a growing model's fade fixed. The file is
    checked with onnxruntime against PyTorch first; a model that cannot be exported or a difference above the
    tolerance is a one-line :class:`UserError` and nothing is written."""
    out = Path(out)
    if out.is_dir():
        raise ParameterError("out", f"{out} is a folder; give a file name ending in .onnx")
    if out.suffix.lower() != ".onnx":
        raise ParameterError("out", f"{out}: an ONNX export is a .onnx file; give a name ending in .onnx")
    require_onnx("gankit export --format onnx")
    check_batch(batch_size)
    check_opset(opset)
    with claim_outputs([out], overwrite=overwrite):
        generator = load_generator(source, ema=ema).cpu()
        data, diff, batches, opset_used = export_onnx(generator, batch_size=batch_size, dynamic_batch=dynamic_batch,
                                          opset=opset, metadata={"ema": "true" if ema else "false"})  # fmt: skip
        atomic_write(out, data)
    return OnnxExport(out, diff, batches, opset_used, generator.config.family, generator.image_size)


__all__ = ["OnnxExport", "export_generator", "export_onnx_file"]
