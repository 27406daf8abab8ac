"""PyTorch-StudioGAN checkpoints (POSTECH-CVLab/PyTorch-StudioGAN, MIT): read safely, convert to gankit.

A StudioGAN run folder (``checkpoints/<run>/``; the official ones are on the Hub in ``Mingguksky/PyTorch-StudioGAN``,
folder ``studiogan_official_ckpt/<run>/``) holds ``model={G,G_ema,D}-{best,current}-weights-step=N.pth``, each
``torch.save`` of a dict with ``state_dict`` (the network's), ``optimizer``, and in D's file the run's facts
(``seed``, ``run_name``, ``step``, ``best_step``, ``best_fid``, ...). Files are read with
``torch.load(weights_only=True)``: only tensors, numbers, strings and containers come out, a pickle that names
anything else (code) is refused before it is built.

``src/models/resnet.py`` (StudioGAN's SNGAN and SAGAN) converts to gankit's SN-GAN family with
``resnet_layout: studiogan``; its architecture (image size, widths, z size, classes, spectral norm, where the
attention blocks sit) is read from the tensors' names and shapes, a StudioGAN YAML config (``--config``) is
checked against them. ``src/models/big_resnet.py`` (BigGAN) goes to :mod:`gankit.compat.studiogan_biggan`.
Conditional batch norm ``BN(x) (1 + W_gain onehot(y)) + W_bias onehot(y)`` becomes gankit's per-class gain and
bias tables ``1 + W_gain^T`` and ``W_bias^T``, StudioGAN's spectral norm on ``W_gain`` / ``W_bias`` folded in
with its stored ``u``, ``v`` (exactly what its eval mode computes); every other spectrally normalised layer keeps
its ``weight_orig``, ``u`` and ``v`` as gankit's spectral-norm parametrization. Every tensor of the file must be
used: an unknown or a missing one stops the import naming them.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gankit.compat.imported import ImportedModel
from gankit.errors import UserError
from gankit.models.base import Discriminator, Generator
from gankit.models.sngan import SNGANConfig, SNGANDiscriminator, SNGANGenerator

FILE_PATTERN = re.compile(r"^model=(G|G_ema|D)-(best|current)-weights-step=(\d+)\.pth$")
LICENSE = "MIT"
SUPPORTED = "StudioGAN's resnet (SNGAN, SAGAN) and big_resnet (BigGAN) generators and discriminators"
STUDIOGAN_BN_EPS = 1e-4
STUDIOGAN_SN_EPS = 1e-6
# FIDs StudioGAN reports for its official runs (README "Benchmark", docs/figures/StudioGAN_Benchmark_.png, read at
# commit 947b35e; TensorFlow InceptionV3; CIFAR10 32 px, Baby / Papa / Grandpa ImageNet 64 px, ImageNet 128 px with
# the "-256" configs), by (dataset, method). The D file's best_fid is the FID its own training measured.
REPORTED_FID = {
    ("CIFAR10", "SNGAN"): 9.01, ("CIFAR10", "SAGAN"): 10.35, ("CIFAR10", "BigGAN"): 4.16,
    ("Baby_ImageNet", "SNGAN"): 36.31, ("Baby_ImageNet", "SAGAN"): 42.10, ("Baby_ImageNet", "BigGAN"): 18.64,
    ("Papa_ImageNet", "SNGAN"): 41.06, ("Papa_ImageNet", "SAGAN"): 51.55, ("Papa_ImageNet", "BigGAN"): 24.99,
    ("Grandpa_ImageNet", "SNGAN"): 41.74, ("Grandpa_ImageNet", "SAGAN"): 50.02, ("Grandpa_ImageNet", "BigGAN"): 24.40,
    ("ImageNet", "SNGAN"): 31.49, ("ImageNet", "BigGAN"): 20.57,
}  # fmt: skip
REPORTED_SOURCE = "StudioGAN benchmark, TensorFlow InceptionV3"


def reported_fid(*names: str) -> str:
    """The FID StudioGAN reports for the run whose folder / run names are ``names`` (dataset and method found in
    them, e.g. ``CIFAR10-SAGAN-train-...``), or where to look when they name no benchmarked run."""
    text = " ".join(names).lower()
    dataset = next((d for d in ("Baby_ImageNet", "Papa_ImageNet", "Grandpa_ImageNet", "CIFAR10")
                    if d.lower() in text or d.split("_")[0].lower() in text), None)  # fmt: skip
    if dataset is None and "imagenet" in text:
        dataset = "ImageNet"
    method = next((m for m in ("SNGAN", "SAGAN", "BigGAN") if m.lower() in text), None)
    fid = REPORTED_FID.get((dataset, method)) if dataset and method else None
    if fid is None:
        return "not found for this run name; see StudioGAN's README, Benchmark"
    return f"{fid} ({REPORTED_SOURCE}, {dataset} {method})"


# ----------------------------------------------------------------------------------------------- reading


def is_studiogan_file(path: str | Path) -> bool:
    """True when ``path`` is named like a StudioGAN checkpoint (``model=G-best-weights-step=N.pth`` ...)."""
    return Path(path).is_file() and FILE_PATTERN.match(Path(path).name) is not None


def is_studiogan_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding StudioGAN checkpoint files."""
    path = Path(path)
    return path.is_dir() and any(FILE_PATTERN.match(p.name) for p in path.iterdir())


@dataclass
class StudioGANFiles:
    """The files of one checkpoint of a run: ``G`` (always), ``G_ema`` and ``D`` when present."""

    when: str
    step: int
    paths: dict[str, Path] = field(default_factory=dict)


def find_files(path: str | Path, when: str | None = None) -> StudioGANFiles:
    """The G / G_ema / D files of ``path``: a run folder (``best`` by default when it has a best checkpoint,
    else ``current``; ``when`` picks) or one file (its own best/current and step, with the sibling files of the
    same checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a StudioGAN run folder or a model=G-...-weights-step=N.pth file")
    if when not in (None, "best", "current"):
        raise UserError(f"when must be 'best' or 'current', got {when!r}")
    if path.is_file():
        match = FILE_PATTERN.match(path.name)
        if match is None:
            raise UserError(
                f"{path.name} is not named like a StudioGAN checkpoint (model=G-best-weights-step=N.pth, "
                "model=G_ema-..., model=D-...); rename it or give its run folder"
            )
        folder, when = path.parent, match.group(2)
    else:
        folder = path
    found: dict[str, dict[str, tuple[int, Path]]] = {"best": {}, "current": {}}
    for p in sorted(folder.iterdir()):
        m = FILE_PATTERN.match(p.name)
        if m:
            found[m.group(2)][m.group(1)] = (int(m.group(3)), p)
    if when is None:
        when = "best" if "G" in found["best"] else "current"
    files = found[when]
    if path.is_file():
        role = FILE_PATTERN.match(path.name).group(1)  # type: ignore[union-attr]
        files[role] = (int(FILE_PATTERN.match(path.name).group(3)), path)  # type: ignore[union-attr]
    if "G" not in files and "G_ema" not in files:
        raise UserError(f"{folder} holds no StudioGAN generator file (model=G-{when}-weights-step=N.pth)")
    steps = {step for step, _ in files.values()}
    if len(steps) > 1:
        raise UserError(f"{folder}: the {when} files are of different steps ({sorted(steps)}); keep one checkpoint")
    return StudioGANFiles(when, steps.pop(), {role: p for role, (_, p) in files.items()})


def read_studiogan_file(path: Path) -> dict[str, Any]:
    """A StudioGAN file's dict, read with ``weights_only=True``; a pickle carrying code, a truncated file or a
    file without ``state_dict`` is a one-line :class:`UserError`."""
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is truncated or corrupt (not a complete torch archive)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise UserError(
            f"{path} holds objects other than tensors and plain data{what}: refused for safety (it could run code)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is truncated or corrupt ({reason})") from None
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise UserError(f"{path} is not a StudioGAN checkpoint (no 'state_dict')")
    state = data["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UserError(f"{path}: its state_dict holds entries that are not named tensors")
    data["state_dict"] = {k.removeprefix("module."): v for k, v in state.items()}
    return data


def backbone_of(state: dict[str, torch.Tensor]) -> str:
    """Which StudioGAN backbone a generator state dict is: ``resnet`` or ``big_resnet``; any other (deep_conv,
    the deep BigGANs, StyleGAN2/3, the InfoGAN heads) is a one-line :class:`UserError` naming what is supported.

    big_resnet's G has the shared class embedding ``shared`` (conditional) or batch norms conditioned on the
    latent chunk that also feeds ``linear0`` (unconditional); resnet's has neither."""
    keys = set(state)
    if any(k.startswith(("mapping.", "synthesis.")) for k in keys):
        guess = "a StyleGAN2/3"
    elif any(".conv2d3." in k for k in keys):
        guess = "a BigGAN-Deep (big_resnet_deep)"
    elif any(k.startswith(("deconv", "conv4.", "bn0.")) for k in keys):
        guess = "a deep_conv (DCGAN)"
    elif any(k.startswith(("info_", "linear_mi", "embedding_mi", "linear2.")) for k in keys):
        guess = "a model with an auxiliary classifier or InfoGAN head (not SNGAN / SAGAN / BigGAN)"
    elif "shared.weight" in keys:
        return "big_resnet"
    elif "linear0.bias" in keys and any(k.startswith("blocks.0.0.") for k in keys):
        stem, gain = _weight(state, "linear0"), _weight(state, "blocks.0.0.bn1.gain")
        if stem is not None and gain is not None and gain.shape[1] == stem.shape[1]:
            return "big_resnet"  # unconditional BigGAN: its batch norms read the latent chunk linear0 reads
        return "resnet"
    else:
        guess = "an unknown"
    raise UserError(f"this StudioGAN file holds {guess} model; gankit imports {SUPPORTED}")


# ----------------------------------------------------------------------------------------------- converting

_SN_SUFFIXES = {
    "parametrizations.weight.original": "weight_orig",
    "parametrizations.weight.0._u": "weight_u",
    "parametrizations.weight.0._v": "weight_v",
}


def _sn_effective(state: dict[str, torch.Tensor], prefix: str, used: set[str], missing: list[str]) -> torch.Tensor:
    """The eval-mode weight of StudioGAN layer ``prefix``: ``weight_orig / (u . W v)`` (torch's spectral norm in
    eval mode: stored u, v, no iteration) when it has spectral norm, else ``weight``."""
    if f"{prefix}.weight_orig" in state:
        names = [f"{prefix}.weight_orig", f"{prefix}.weight_u", f"{prefix}.weight_v"]
        absent = [n for n in names if n not in state]
        if absent:
            missing.extend(absent)
            return torch.zeros(())
        used.update(names)
        w, u, v = (state[n] for n in names)
        sigma = torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v))
        return w / sigma
    name = f"{prefix}.weight"
    if name not in state:
        missing.append(name)
        return torch.zeros(())
    used.add(name)
    return state[name]


def _module_map(cfg: SNGANConfig, net: str) -> dict[str, str]:
    """gankit module prefix -> StudioGAN module prefix for ``net`` ``"G"`` or ``"D"`` (attention blocks take their
    own entries in StudioGAN's ``blocks`` list)."""
    out: dict[str, str] = {}
    blocks = cfg.g_resnet_widths() if net == "G" else cfg.d_resnet_widths()
    attention = cfg.g_attention_blocks if net == "G" else cfg.d_attention_blocks
    index = 0
    for n in range(len(blocks)):
        src = f"blocks.{index}.0"
        if net == "G":
            for i in (1, 2):
                out[f"blocks.{n}.norm{i}.norm"] = f"{src}.bn{i}"
            out[f"blocks.{n}.conv1"], out[f"blocks.{n}.conv2"] = f"{src}.conv2d1", f"{src}.conv2d2"
            out[f"blocks.{n}.shortcut"] = f"{src}.conv2d0"
        else:
            out[f"blocks.{n}.conv1"], out[f"blocks.{n}.conv2"] = f"{src}.conv2d1", f"{src}.conv2d2"
            out[f"blocks.{n}.shortcut"] = f"{src}.conv2d0"
        index += 1
        if n + 1 in attention:
            src = f"blocks.{index}.0"
            out[f"attention.{n + 1}"] = src
            for ours, theirs in (("query", "theta"), ("key", "phi"), ("value", "g"), ("out", "attn")):
                out[f"attention.{n + 1}.{ours}"] = f"{src}.conv1x1_{theirs}"
            index += 1
    if net == "G":
        out.update({"stem": "linear0", "out_norm.norm": "bn4", "to_image": "conv2d5"})
    else:
        out.update({"to_logit": "linear1", "embed": "embedding"})
    return out


def convert_state(
    cfg: SNGANConfig, net: str, state: dict[str, torch.Tensor], source: object
) -> dict[str, torch.Tensor]:
    """StudioGAN resnet ``state`` of ``net`` (``"G"`` / ``"D"``) as the state dict of gankit's network for
    ``cfg``. Every tensor of ``state`` must be used and every one the network needs found: otherwise a one-line
    :class:`UserError` naming the unexpected and the missing StudioGAN keys."""
    network = SNGANGenerator(cfg) if net == "G" else SNGANDiscriminator(cfg)
    modules = _module_map(cfg, net)
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}
    conditional = cfg.num_classes > 0
    for key, target in network.state_dict().items():
        ours = max((m for m in modules if key.startswith(m + ".")), key=len, default=None)
        if ours is None:
            raise AssertionError(f"no StudioGAN name for {key}")  # a bug here, not the file's
        rest = key[len(ours) + 1 :]
        if (
            conditional
            and re.fullmatch(r"blocks\.\d+\.norm[12]\.norm", ours)
            and rest in ("gain.weight", "bias.weight")
        ):
            # a conditional batch norm's per-class table: StudioGAN's (spectrally normalised) linear map of onehot(y)
            part = rest.split(".")[0]
            weight = _sn_effective(state, f"{modules[ours]}.{part}", used, missing)
            if weight.dim() == 2:
                out[key] = weight.t().contiguous() + (1.0 if part == "gain" else 0.0)
            continue
        for suffix, theirs in _SN_SUFFIXES.items():
            if rest.endswith(suffix):
                rest = rest[: -len(suffix)] + theirs
                break
        name = f"{modules[ours]}.{'sigma' if rest == 'gamma' else rest}"
        if name not in state:
            missing.append(name)
            continue
        used.add(name)
        value = state[name]
        out[key] = value.reshape(target.shape) if rest == "gamma" and value.numel() == 1 else value
    unexpected = sorted(set(state) - used)
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected {_names(unexpected)}")
        if missing:
            parts.append(f"missing {_names(missing)}")
        raise UserError(f"{source} does not match StudioGAN's resnet {net} it looks like: {'; '.join(parts)}")
    return out


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# ----------------------------------------------------------------------------------------- architecture


def _weight(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    return state.get(f"{prefix}.weight_orig", state.get(f"{prefix}.weight"))


def _studiogan_blocks(state: dict[str, torch.Tensor]) -> tuple[list[int], list[int]]:
    """Indices of StudioGAN's ``blocks`` list that are residual blocks, and the residual-block numbers (1-based)
    followed by an attention block."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.0\.", k))})
    residual, attention = [], []
    for i in indices:
        if f"blocks.{i}.0.sigma" in state:
            attention.append(len(residual))
        else:
            residual.append(i)
    return residual, attention


def infer_config(
    g_state: dict[str, torch.Tensor] | None, d_state: dict[str, torch.Tensor] | None, source: object
) -> dict[str, Any]:
    """The gankit SN-GAN config fields of a StudioGAN resnet G and/or D, read from tensor names and shapes."""
    fields: dict[str, Any] = dict(
        arch="resnet", resnet_layout="studiogan", bn_eps=STUDIOGAN_BN_EPS, sn_eps=STUDIOGAN_SN_EPS,
        out_norm_conditional=False, d_shortcut_relu=True, d_spectral_norm=True, embedding_spectral_norm=True,
        init="xavier",
    )  # fmt: skip
    if g_state is not None:
        stem = _weight(g_state, "linear0")
        last = _weight(g_state, "conv2d5")
        if stem is None or last is None:
            raise UserError(f"{source}: a StudioGAN resnet G has linear0 and conv2d5; this file lacks them")
        residual, attention = _studiogan_blocks(g_state)
        size = 4 * 2 ** len(residual)
        if not residual or size not in (32, 64, 128, 256, 512):
            raise UserError(f"{source}: {len(residual)} generator blocks; StudioGAN's resnet has 3 to 7")
        out = int(last.shape[1])
        gain = _weight(g_state, f"blocks.{residual[0]}.0.bn1.gain")
        fields.update(
            image_size=size, z_dim=int(stem.shape[1]), channels=int(last.shape[0]),
            g_conv_dim=out // 4 if size == 32 else out, g_spectral_norm="linear0.weight_orig" in g_state,
            g_attention_blocks=tuple(b for b in attention), num_classes=int(gain.shape[1]) if gain is not None else 0,
        )  # fmt: skip
        fields["g_last_spectral_norm"] = fields["g_spectral_norm"]
    if d_state is not None:
        residual, attention = _studiogan_blocks(d_state)
        first = _weight(d_state, f"blocks.{residual[0]}.0.conv2d1") if residual else None
        if first is None or _weight(d_state, "linear1") is None:
            raise UserError(f"{source}: a StudioGAN resnet D has blocks and linear1; this file lacks them")
        if "linear1.weight_orig" not in d_state:
            raise UserError(
                f"{source}: this StudioGAN discriminator has no spectral norm (apply_d_sn: False, batch norm in D); "
                "gankit imports the spectrally normalised D of StudioGAN's SNGAN and SAGAN"
            )
        outputs = int(_weight(d_state, "linear1").shape[0])  # type: ignore[union-attr]
        if outputs != 1:
            raise UserError(
                f"{source}: D's linear1 has {outputs} outputs (MH / MD conditioning); gankit imports StudioGAN's "
                "PD (projection) and unconditional D"
            )
        size = {4: 32, 5: 64, 6: 128, 7: 256, 8: 512}.get(len(residual))
        if size is None:
            raise UserError(f"{source}: {len(residual)} discriminator blocks; StudioGAN's resnet has 4 to 8")
        width = int(first.shape[0])
        embed = _weight(d_state, "embedding")
        d_fields = dict(
            image_size=size, channels=int(first.shape[1]), d_conv_dim=width // 2 if size == 32 else width,
            d_attention_blocks=tuple(attention), num_classes=int(embed.shape[0]) if embed is not None else 0,
        )  # fmt: skip
        for key in ("image_size", "channels", "num_classes"):
            if g_state is not None and fields[key] != d_fields[key]:
                raise UserError(
                    f"{source}: G and D disagree on {key} (G {fields[key]}, D {d_fields[key]}); "
                    "are they files of one run?"
                )
        fields.update(d_fields)
    if "d_conv_dim" not in fields:
        fields["d_conv_dim"] = fields["g_conv_dim"]  # StudioGAN's default has both 64
    return fields


_YAML_KEYS = {  # StudioGAN YAML (section, key) -> gankit field, with how to convert its value
    ("DATA", "img_size"): "image_size",
    ("DATA", "num_classes"): "num_classes",
    ("MODEL", "z_dim"): "z_dim",
    ("MODEL", "g_conv_dim"): "g_conv_dim",
    ("MODEL", "d_conv_dim"): "d_conv_dim",
    ("MODEL", "apply_g_sn"): "g_spectral_norm",
    ("MODEL", "attn_g_loc"): "g_attention_blocks",
    ("MODEL", "attn_d_loc"): "d_attention_blocks",
}


def read_config(path: str | Path) -> dict[str, Any]:
    """The keys gankit needs from a StudioGAN YAML config (``yaml.safe_load``): its backbone, conditioning and
    the architecture fields, as gankit field names (attention locations as tuples, () without attention)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path} cannot be read as YAML ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("MODEL", {}), dict):
        raise UserError(f"--config {path} is not a StudioGAN config (sections DATA, MODEL, ...)")
    model, dataset = data.get("MODEL") or {}, data.get("DATA") or {}
    out: dict[str, Any] = {}
    if "backbone" in model:
        out["backbone"] = model["backbone"]
    for cond in ("g_cond_mtd", "d_cond_mtd"):
        if cond in model:
            out[cond] = model[cond]
    attention = bool(model.get("apply_attn", False))
    for (section, key), name in _YAML_KEYS.items():
        values = dataset if section == "DATA" else model
        if key not in values:
            continue
        value = values[key]
        if name.endswith("attention_blocks"):
            value = tuple(int(v) for v in value if v != "N/A") if attention and isinstance(value, list) else ()
        out[name] = value
    if model.get("g_shared_dim", "N/A") != "N/A":
        out["g_shared_dim"] = model["g_shared_dim"]  # big_resnet's shared embedding
    if "apply_attn" in model and not attention:
        out["g_attention_blocks"] = out["d_attention_blocks"] = ()
    if out.get("g_cond_mtd") == "W/O":
        out["num_classes"] = 0
    return out


def _apply_config(fields: dict[str, Any], config: dict[str, Any], has_d: bool, source: object) -> dict[str, Any]:
    """``fields`` with the YAML's values; a value the tensors contradict is a one-line error."""
    for cond, allowed in (("g_cond_mtd", ("cBN", "W/O")), ("d_cond_mtd", ("PD", "W/O"))):
        if cond in config and config[cond] not in allowed:
            raise UserError(f"--config has MODEL.{cond} {config[cond]!r}; gankit imports {' and '.join(allowed)}")
    out = dict(fields)
    for name, value in config.items():
        if name in ("backbone", "g_cond_mtd", "d_cond_mtd", "g_shared_dim"):
            continue
        if name.startswith("d_") and not has_d:
            out[name] = value  # no D tensors to check it against: the YAML says what a fresh D is
            continue
        if name in fields and fields[name] != value:
            raise UserError(f"--config says {name} {value!r} but {source} holds a model with {name} {fields[name]!r}")
        out[name] = value
    return out


# ----------------------------------------------------------------------------------------------- importing


def _notes(files: StudioGANFiles, d_data: dict[str, Any] | None) -> dict[str, str]:
    notes = {"checkpoint": f"{files.when}, step {files.step}"}
    if d_data is not None:
        for key in ("run_name", "step", "best_step", "best_fid"):
            value = d_data.get(key)
            if isinstance(value, (str, int)) or isinstance(value, float) and math.isfinite(value):
                notes[key] = str(value)
    names = [files.paths["G" if "G" in files.paths else "G_ema"].parent.name]
    if "run_name" in notes:
        names.append(notes["run_name"])
    notes["reported FID"] = reported_fid(*names)
    return notes


def import_studiogan(
    path: str | Path, *, ema: bool = False, config: str | Path | None = None, when: str | None = None
) -> ImportedModel:
    """Convert a StudioGAN checkpoint (a run folder or one of its files) to gankit networks.

    ``ema``: the generator is ``G_ema`` (an error when the checkpoint has none), else ``G``. ``when``: ``best``
    (the default when the folder has a best checkpoint: the one StudioGAN reports) or ``current``. ``config``: a
    StudioGAN YAML config whose architecture keys are checked against (and complete) what the tensors say.
    The discriminator comes along when the checkpoint has a D file.
    """
    files = find_files(path, when)
    role = "G_ema" if ema else "G"
    if role not in files.paths:
        has = ", ".join(sorted(files.paths))
        hint = " (the run kept no EMA generator: leave out --ema)" if ema else " (use --ema for G_ema)"
        raise UserError(f"the StudioGAN {files.when} checkpoint of {path} has no {role} file (it has {has}){hint}")
    g_path = files.paths[role]
    g_data = read_studiogan_file(g_path)
    d_path = files.paths.get("D")
    d_data = read_studiogan_file(d_path) if d_path is not None else None
    g_state = g_data["state_dict"]
    d_state = d_data["state_dict"] if d_data is not None else None
    hints = read_config(config) if config is not None else {}
    backbone = backbone_of(g_state)
    if hints.get("backbone", backbone) != backbone:
        raise UserError(f"--config says MODEL.backbone {hints['backbone']!r} but {g_path} holds a {backbone} model")
    generator: Generator
    discriminator: Discriminator | None
    if backbone == "big_resnet":
        from gankit.compat.studiogan_biggan import convert_big_resnet

        generator, discriminator = convert_big_resnet(g_state, d_state, hints=hints)
    else:
        fields = infer_config(g_state, d_state, g_path)
        fields = _apply_config(fields, hints, d_state is not None, g_path)
        try:
            cfg = SNGANConfig(**fields)
            cfg.validate()
        except UserError as exc:
            raise UserError(
                f"{g_path}: the architecture read from its tensors is not one gankit builds ({exc})"
            ) from None
        generator = Generator.from_state(cfg, convert_state(cfg, "G", g_state, g_path), source=g_path)
        discriminator = None
        if d_state is not None:
            discriminator = Discriminator.from_state(cfg, convert_state(cfg, "D", d_state, d_path), source=d_path)
    sources = [str(g_path)] + ([str(d_path)] if d_path is not None else [])
    return ImportedModel(
        generator=generator.eval(),
        discriminator=discriminator.eval() if discriminator is not None else None,
        source="studiogan",
        source_files=sources,
        license=LICENSE,
        notes=_notes(files, d_data),
    )


def load_studiogan_generator(path: str | Path, *, ema: bool = True) -> Generator:
    """The eval-mode generator of a StudioGAN run folder (its ``G_ema`` when the checkpoint has one and ``ema``,
    else ``G``) or file (the generator that file holds; ``ema=False`` on a ``G_ema`` file takes its ``G``): what
    ``gankit.load_generator`` returns for these files."""
    path = Path(path)
    match = FILE_PATTERN.match(path.name) if path.is_file() else None
    if match is not None and match.group(1) == "D":
        raise UserError(f"{path} is a discriminator; give the run folder or a model=G-... / model=G_ema-... file")
    if match is not None:
        use_ema = match.group(1) == "G_ema" and ema
    else:
        use_ema = ema and "G_ema" in find_files(path).paths
    return import_studiogan(path, ema=use_ema).generator.requires_grad_(False)


__all__ = [
    "LICENSE",
    "StudioGANFiles",
    "backbone_of",
    "convert_state",
    "find_files",
    "import_studiogan",
    "infer_config",
    "is_studiogan_file",
    "is_studiogan_folder",
    "load_studiogan_generator",
    "read_config",
    "read_studiogan_file",
]
