"""Generators as ONNX files: ``gankit export --format onnx`` writes them, ``gankit sample`` runs them.

The file (:func:`export_onnx`) holds a generator's eval-mode forward pass with spectral norm folded and a
Progressive GAN's fade fixed at its current alpha (:meth:`gankit.models.base.Generator.traceable`), exported
with PyTorch's ``torch.export``-based exporter:

- inputs ``z`` ``(B, z_dim)`` float32 and, for a class-conditional model, ``class_id`` ``(B,)`` int64;
- output ``images`` ``(B, C, H, W)`` float32: what ``G(z, y)`` returns, so in [-1, 1] for every generator with a
  final tanh and the raw outputs of a Progressive GAN without one (``gankit sample`` writes those unclamped to an
  ``.npz`` too, and clamps for pictures), as the ``output_range`` metadata says;
- ``B`` fixed at export (``batch_size``), or any batch with ``dynamic_batch``;
- metadata (``metadata_props``): :data:`META_FORMAT`, the gankit version, the opset, the model config (JSON),
  the image size (and a growing model's fade ``alpha``), the batch, whether it holds the EMA generator, the output
  range and the verified difference.

An export is checked before it is written: onnxruntime runs it on a seeded batch (at 1, 2 and 5 too
when the batch is dynamic) against PyTorch, and a difference above :func:`tolerance` is refused, as is a model the
exporter cannot trace; then nothing is written. :class:`OnnxGenerator` runs a file with onnxruntime behind the
:class:`~gankit.models.base.Generator` interface, so ``G.sample`` draws latents and labels exactly as for the
PyTorch model: one seed, the same images.

The ``onnx`` extra (``onnx``, ``onnxruntime``, ``onnxscript``) is needed to export; running needs onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from gankit.errors import ParameterError, UserError
from gankit.models.base import Generator
from gankit.models.registry import model_config_from_dict
from gankit.nn import fold_spectral_norm
from gankit.version import __version__

ONNX_EXTRA = 'pip install "gankit[onnx]"'
META_FORMAT = ("gankit_format", "generator")  # the metadata entry that marks a gankit generator export
MIN_OPSET = 18  # the lowest opset the torch.export-based exporter writes without a version conversion
BASE_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| allowed for images in [-1, 1]
CHECK_SEED = 0


def require_onnx(what: str, *modules: str) -> None:
    """A one-line :class:`UserError` naming the extra when one of ``modules`` (default: all three) is missing."""
    for name in modules or ("onnx", "onnxruntime", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise UserError(f"{what} needs the onnx extra ({name} is not installed): {ONNX_EXTRA}") from None


def is_onnx_file(source: str | os.PathLike) -> bool:
    """Whether ``source`` names an ONNX file (by its suffix; it need not exist)."""
    return Path(source).suffix.lower() == ".onnx"


def tolerance(reference: torch.Tensor) -> float:
    """The largest accepted ``max |onnxruntime - PyTorch|`` for PyTorch outputs ``reference``: ``1e-4`` for
    images in [-1, 1], scaled by their largest magnitude when it is above 1 (unbounded PGAN outputs)."""
    return BASE_TOLERANCE * max(1.0, float(reference.abs().max()))


class _Exported(nn.Module):
    """``(z, class_id) -> images``: the generator with the input and output names of the file."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, class_id: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, class_id)


def check_batch(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError("batch_size", f"must be an integer >= 1, got {value!r}")
    return value


def check_opset(opset: int | None) -> int | None:
    """``opset`` (None: the exporter's default) within ``MIN_OPSET`` .. the newest the installed onnx knows."""
    if opset is None:
        return None
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ParameterError("opset", f"must be an ONNX opset from {MIN_OPSET} to {newest}, got {opset!r}")
    return opset


def check_inputs(generator: Generator, batch: int) -> tuple[torch.Tensor, ...]:
    """A seeded example batch: latents drawn as gankit draws them, classes cycling through the classes."""
    z = generator.sample_latents(batch, torch.Generator().manual_seed(CHECK_SEED))
    labels = generator.class_labels(batch, balanced=True) if generator.num_classes else None
    return (z,) if labels is None else (z, labels)


def _family(generator: Generator) -> str:
    return f"{generator.config.family} generator ({type(generator).__name__})"


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress prints, warnings and log lines kept off the terminal (its errors still raise)."""
    sink = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def onnx_model(generator: Generator, *, batch_size: int = 1, dynamic_batch: bool = False, opset: int | None = None):
    """The ``onnx.ModelProto`` of ``generator`` (in eval mode, spectral norm folded in place, a growing model's
    fade fixed): inputs ``z`` (and ``class_id``), output ``images``, the batch ``batch_size`` or dynamic. A model
    the exporter cannot trace is a one-line :class:`UserError` naming its family and the exporter's reason."""
    generator = generator.cpu().eval().requires_grad_(False)
    fold_spectral_norm(generator)
    # torch.export takes a traced size of 1 for a constant: a dynamic batch is traced at 2 or more
    example = check_inputs(generator, max(check_batch(batch_size), 2 if dynamic_batch else 1))
    names = ["z", "class_id"][: len(example)]
    dynamic = [{0: torch.export.Dim("batch")}] * len(example) if dynamic_batch else None
    try:
        with _quiet_exporter(), generator.traceable():
            program = torch.onnx.export(
                _Exported(generator), example, dynamo=True, input_names=names, output_names=["images"],
                opset_version=opset, dynamic_shapes=tuple(dynamic) if dynamic else None, verbose=False,
            )  # fmt: skip
        return program.model_proto
    except Exception as exc:  # the exporter's failures have many types; the message says which model failed
        raise UserError(f"cannot export the {_family(generator)} to ONNX: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of an exporter's failure in one line: its type and first line, without colours."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def _session(model: bytes | str | os.PathLike):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model if isinstance(model, bytes) else os.fspath(model), options,
                                providers=["CPUExecutionProvider"])  # fmt: skip


def _run(session, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    feed = {arg.name: x.cpu().numpy() for arg, x in zip(session.get_inputs(), inputs, strict=True)}
    return torch.from_numpy(session.run(["images"], feed)[0])


def references(generator: Generator, batches: list[int]) -> list[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
    """``(inputs, G(*inputs))`` of a seeded batch (:func:`check_inputs`) of each size in ``batches``, in eval
    mode: what an export is checked against, taken before spectral norm is folded."""
    generator.eval()
    with torch.no_grad():
        return [(inputs, generator(*inputs)) for inputs in (check_inputs(generator, b) for b in batches)]


def verify(
    generator: Generator, model: bytes, cases: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]]
) -> float:
    """``max |onnxruntime - PyTorch|`` over ``cases`` (:func:`references`); a one-line :class:`UserError` when
    onnxruntime cannot run the file or a case differs by more than :func:`tolerance`."""
    try:
        session = _session(model)
    except Exception as exc:
        raise UserError(f"onnxruntime cannot load the ONNX export of the {_family(generator)}: {exc}") from None
    worst = 0.0
    for inputs, reference in cases:
        batch = len(inputs[0])
        try:
            got = _run(session, inputs)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"onnxruntime cannot run the ONNX export of the {_family(generator)}: {first}") from None
        if got.shape != reference.shape:
            raise UserError(f"the ONNX export of the {_family(generator)} gives images of shape {tuple(got.shape)}, "
                            f"PyTorch {tuple(reference.shape)}")  # fmt: skip
        diff = float((got - reference).abs().max())
        if not diff <= tolerance(reference):  # NaN fails too
            raise UserError(
                f"the ONNX export of the {_family(generator)} differs from PyTorch by {diff:.2e} at batch {batch} "
                f"(tolerance {tolerance(reference):.1e}); not written"
            )
        worst = max(worst, diff)
    return worst


def export_onnx(
    generator: Generator,
    *,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[bytes, float, list[int], int]:
    """``generator`` as the bytes of a verified ONNX file, the max difference to PyTorch, the batch sizes it was
    checked at (``batch_size``; with ``dynamic_batch`` also 1, 2 and 5) and the opset. ``metadata`` adds
    ``metadata_props`` entries. Spectral norm is folded into ``generator`` in place."""
    require_onnx("gankit export --format onnx")
    check_batch(batch_size)
    opset = check_opset(opset)
    batches = sorted({1, 2, 5, batch_size}) if dynamic_batch else [batch_size]
    cases = references(generator.cpu(), batches)  # before folding: the export must equal the model as it was
    model = onnx_model(generator, batch_size=batch_size, dynamic_batch=dynamic_batch, opset=opset)
    used_opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    output_range = generator.output_range()
    meta = {
        META_FORMAT[0]: META_FORMAT[1],
        "gankit_version": __version__,
        "opset": str(used_opset),
        "config": json.dumps(generator.config.to_dict(), sort_keys=True),
        "image_size": str(generator.image_size),
        "batch": "dynamic" if dynamic_batch else str(batch_size),
        "output_range": json.dumps(output_range) if output_range else "unbounded",
        "spectral_norm_folded": "true",
        **({"alpha": f"{float(generator.alpha):.6g}"} if getattr(generator, "grows_progressively", False) else {}),
        **(metadata or {}),
    }
    model.metadata_props.clear()
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    diff = verify(generator, model.SerializeToString(), cases)
    entry = model.metadata_props.add()
    entry.key, entry.value = "max_abs_diff", f"{diff:.3e}"
    return model.SerializeToString(), diff, batches, used_opset


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file ``path`` (onnxruntime only)."""
    require_onnx("running an ONNX file", "onnxruntime")
    return dict(_session(path).get_modelmeta().custom_metadata_map)


class OnnxGenerator(Generator):
    """An ONNX file of ``gankit export --format onnx`` behind the generator interface, run with onnxruntime on
    the CPU: ``G(z (B, z_dim), y (B,) | None) -> (B, C, H, W)`` float32, and ``G.sample``, ``G.class_labels``,
    ``G.sample_latents`` as for the PyTorch generator (the same seed gives the same latents, labels and, to
    float tolerance, images). A file with a fixed batch runs any batch in chunks of it (the last one padded)."""

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
        require_onnx(f"running {path.name}", "onnxruntime")
        try:
            session = _session(path)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{path} cannot be read as an ONNX file: {first[:300]}") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        if meta.get(META_FORMAT[0]) != META_FORMAT[1] or "config" not in meta:
            raise UserError(f"{path} is no gankit generator export (its metadata has no gankit config); "
                            "gankit runs the ONNX files of `gankit export --format onnx`")  # fmt: skip
        try:
            config = model_config_from_dict(json.loads(meta["config"]))
            image_size, batch = int(meta["image_size"]), meta["batch"]
            fixed = None if batch == "dynamic" else int(batch)
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{path} has damaged gankit metadata ({exc})") from None
        super().__init__(config)
        self.path, self.metadata, self.session = path, meta, session
        self.fixed_batch, self._image_size = fixed, image_size
        expected = ["z", "class_id"][: 2 if config.num_classes else 1]
        if [arg.name for arg in session.get_inputs()] != expected:
            raise UserError(f"{path} has inputs {[a.name for a in session.get_inputs()]}, expected {expected}")

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def output_range(self) -> list[float] | None:
        value = self.metadata.get("output_range", "unbounded")
        return None if value == "unbounded" else json.loads(value)

    def spectral_norm_folded(self) -> bool:
        return True

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        inputs = (z.float(),) if y is None else (z.float(), y.long())
        step = self.fixed_batch or len(z)
        outs = []
        for start in range(0, len(z), max(step, 1)):
            chunk = [x[start : start + step] for x in inputs]
            n = len(chunk[0])
            if n < step:  # a fixed-batch file: pad with the chunk's first sample, keep the first n images
                chunk = [torch.cat([x, x[:1].expand(step - n, *x.shape[1:])]) for x in chunk]
            outs.append(_run(self.session, tuple(chunk))[:n])
        if not outs:
            return torch.zeros(0, self.channels, self.image_size, self.image_size)
        return torch.cat(outs)

    def extra_repr(self) -> str:
        return f"{self.path}, batch={self.fixed_batch or 'dynamic'}"


__all__ = [
    "META_FORMAT",
    "ONNX_EXTRA",
    "OnnxGenerator",
    "export_onnx",
    "is_onnx_file",
    "onnx_model",
    "read_metadata",
    "require_onnx",
    "tolerance",
    "verify",
]
