"""ajbrock/BigGAN-PyTorch checkpoints -> gankit ``biggan`` networks, reproducing the source's eval-mode outputs.

A BigGAN-PyTorch weights folder (``utils.save_weights``) holds ``G.pth``, ``G_ema.pth`` and ``D.pth``, each
``torch.save(net.state_dict())``, and ``state_dict.pth`` (the run state with its ``config``), besides optimiser
states. Every file is read with ``torch.load(weights_only=True)``. The architecture is read from the tensors'
names and shapes: the number of G blocks (so the resolution), the widths, the shared embedding and the
hierarchical latent (from the conditional batch norms' input size), the attention blocks (``blocks.K.1.*``); the
epsilons come from ``state_dict.pth``'s config when it is there (else the released model's, ``SN_eps 1e-6``,
``BN_eps 1e-5``). Its spectral norm (``u0``, ``sv0``: a power iteration on every forward, eval mode included) is
the ``biggan`` variant of the family's config; its batch norm's ``stored_mean`` / ``stored_var`` are the running
statistics (``--mybn``'s ``bn.stored_*`` too). Supported: ``G_param SN`` (the default), one singular value
(``num_G_SVs 1``), wide D; the released ImageNet 128 models are of this kind.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from gankit.compat.biggan_common import common_width, count_blocks, load_mapped, load_torch_file, tensor_dict
from gankit.compat.imported import ImportedModel
from gankit.errors import UserError
from gankit.models.biggan import D_DOWNSAMPLE, BigGANConfig, BigGANDiscriminator, BigGANGenerator

WHAT = "a BigGAN-PyTorch weights file (G.pth, G_ema.pth or D.pth) or the folder holding them"
NOTES = {
    "source_code": "https://github.com/ajbrock/BigGAN-PyTorch",
    "reported": "released ImageNet 128x128 model (BigGAN_ch96_bs256x8, taken just before collapse): TF Inception "
                "Score 97.35 +/- 1.79 (BigGAN-PyTorch README); the paper's BigGAN at 128x128: IS 166.5, FID 7.4 "
                "(TF-Hub model, Brock et al. 2019)",
}  # fmt: skip
_SN = {"u0": "parametrizations.weight.0.u", "sv0": "parametrizations.weight.0.sv"}
_ATTENTION = {"query": "theta", "key": "phi", "value": "g", "out": "o"}


def _sn_name(rest: str) -> str:
    """gankit's tail of a layer key (``conv1.parametrizations.weight.original``) -> the source's (``conv1.weight``)."""
    rest = rest.replace("parametrizations.weight.original", "weight")
    rest = rest.replace("parametrizations.weight.0.u", "u0").replace("parametrizations.weight.0.sv", "sv0")
    return rest


def generator_key(key: str, mybn: bool) -> str | None:
    """The source name of the gankit generator tensor ``key`` (None: the source has none)."""
    if key.endswith("num_batches_tracked"):
        return None
    bn = "bn.stored_" if mybn else "stored_"
    if m := re.match(r"blocks\.(\d+)\.(bn[12])\.bn\.running_(mean|var)$", key):
        return f"blocks.{m.group(1)}.0.{m.group(2)}.{bn}{m.group(3)}"
    if m := re.match(r"blocks\.(\d+)\.(.*)$", key):
        return f"blocks.{m.group(1)}.0.{_sn_name(m.group(2))}"
    if m := re.match(r"attention\.(\d+)\.(\w+)(\..*)?$", key):
        return _attention_key(m)
    if m := re.match(r"out_bn\.(weight|bias|running_mean|running_var)$", key):
        tail = {"weight": "gain", "bias": "bias", "running_mean": f"{bn}mean", "running_var": f"{bn}var"}[m.group(1)]
        return f"output_layer.0.{tail}"
    if key.startswith("to_image."):
        return "output_layer.2." + _sn_name(key[len("to_image.") :])
    return _sn_name(key)  # shared.weight, linear.*


def _attention_key(m: re.Match[str]) -> str:
    name, rest = m.group(2), m.group(3) or ""
    if name == "gamma":
        return f"blocks.{m.group(1)}.1.gamma"
    return f"blocks.{m.group(1)}.1.{_ATTENTION[name]}.{_sn_name(rest[1:])}"


def discriminator_key(key: str) -> str | None:
    """The source name of the gankit discriminator tensor ``key``."""
    if m := re.match(r"blocks\.(\d+)\.(.*)$", key):
        return f"blocks.{m.group(1)}.0.{_sn_name(m.group(2))}"
    if m := re.match(r"attention\.(\d+)\.(\w+)(\..*)?$", key):
        return _attention_key(m)
    return _sn_name(key)  # linear.*, embed.*


def _shape(state: dict[str, torch.Tensor], key: str, where: object) -> tuple[int, ...]:
    if key not in state:
        raise UserError(f"{where} is not a BigGAN-PyTorch generator/discriminator state dict (no {key!r})")
    return tuple(state[key].shape)


def generator_fields(g: dict[str, torch.Tensor], where: object) -> dict[str, Any]:
    """The :class:`BigGANConfig` fields of G read from its tensors."""
    blocks = count_blocks(g, r"blocks\.(\d+)\.0\.conv1\.weight$")
    if not blocks or blocks != list(range(len(blocks))):
        raise UserError(f"{where} is not a BigGAN-PyTorch generator (no blocks.K.0.conv1.weight for K = 0, 1, ...)")
    if "linear.u0" not in g:
        raise UserError(f"{where}: only generators with spectral norm (G_param SN, the default) are supported")
    n = len(blocks)
    widths = [_shape(g, "blocks.0.0.conv1.weight", where)[1]]
    widths += [_shape(g, f"blocks.{k}.0.conv1.weight", where)[0] for k in blocks]
    features, z_in = _shape(g, "linear.weight", where)
    if features != widths[0] * 16:
        raise UserError(f"{where}: linear.weight has {features} outputs, the first block needs {widths[0] * 16}")
    g_ch, mults = common_width(widths)
    gain = _shape(g, "blocks.0.0.bn1.gain.weight", where)
    fields: dict[str, Any] = dict(image_size=4 * 2**n, channels=_shape(g, "output_layer.2.weight", where)[0],
                                  g_ch=g_ch, g_ch_mults=mults, hierarchical=False, z_dim=z_in)  # fmt: skip
    if "shared.weight" in g:
        num_classes, shared_dim = _shape(g, "shared.weight", where)
        chunk = gain[1] - shared_dim
        if chunk < 0 or (chunk and chunk != z_in):
            raise UserError(f"{where}: the batch norms read {gain[1]} inputs, which is neither the shared embedding "
                            f"({shared_dim}) nor it plus the first linear's z chunk ({z_in})")  # fmt: skip
        fields.update(num_classes=num_classes, shared_dim=shared_dim)
        if chunk:
            fields.update(hierarchical=True, z_dim=z_in * (n + 1))
    else:  # per-layer class embeddings (no --G_shared)
        fields.update(num_classes=gain[0], shared_dim=0)
    fields["g_attention_blocks"] = tuple(count_blocks(g, r"blocks\.(\d+)\.1\.gamma$"))
    return fields


def discriminator_fields(d: dict[str, torch.Tensor], image_size: int, where: object) -> dict[str, Any]:
    """The :class:`BigGANConfig` fields of D read from its tensors (pooling from the source's table)."""
    blocks = count_blocks(d, r"blocks\.(\d+)\.0\.conv1\.weight$")
    if not blocks or blocks != list(range(len(blocks))):
        raise UserError(f"{where} is not a BigGAN-PyTorch discriminator (no blocks.K.0.conv1.weight)")
    table = D_DOWNSAMPLE[image_size]
    if len(blocks) != len(table):
        raise UserError(f"{where} has {len(blocks)} blocks; BigGAN-PyTorch's {image_size}x{image_size} D has "
                        f"{len(table)}")  # fmt: skip
    d_ch, mults = common_width([_shape(d, f"blocks.{k}.0.conv1.weight", where)[0] for k in blocks])
    return dict(d_ch=d_ch, d_ch_mults=mults, d_downsample=table,
                d_attention_blocks=tuple(count_blocks(d, r"blocks\.(\d+)\.1\.gamma$")))  # fmt: skip


def _run_config(folder: Path) -> dict[str, Any]:
    """``state_dict.pth``'s ``config`` (the run's arguments) when the folder has one, else {}."""
    path = folder / "state_dict.pth"
    if not path.is_file():
        return {}
    state = load_torch_file(path, "BigGAN-PyTorch's state_dict.pth")
    config = state.get("config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else {}


def config_from_states(
    g: dict[str, torch.Tensor], d: dict[str, torch.Tensor] | None, run: dict[str, Any], where: object
) -> BigGANConfig:
    """The gankit config of a BigGAN-PyTorch G (and D), ``run`` the source's run config (may be empty)."""
    fields = generator_fields(g, where)
    if d is not None:
        fields.update(discriminator_fields(d, fields["image_size"], where))
        if "embed.weight" in d and d["embed.weight"].shape[0] != fields["num_classes"]:
            raise UserError(f"{where}: D has {d['embed.weight'].shape[0]} classes, G {fields['num_classes']}")
    else:  # no D: a D of the source's table at G's widths, without attention (never built from these weights)
        fields.update(d_ch=fields["g_ch"], d_attention_blocks=())
    sn_eps = run.get("SN_eps", 1e-6)
    bn_eps = run.get("BN_eps", 1e-5)
    iterations = run.get("num_G_SV_itrs", 1)
    fields.update(sn_variant="biggan", sn_eps=float(sn_eps), bn_eps=float(bn_eps), out_bn_eps=1e-5,
                  sn_power_iterations=int(iterations), init="ortho")  # fmt: skip
    try:
        return BigGANConfig.from_dict(fields)
    except UserError as exc:
        raise UserError(f"{where}: the architecture read from its tensors is not one gankit builds ({exc})") from None


def convert_generator(g: dict[str, torch.Tensor], cfg: BigGANConfig, where: object) -> BigGANGenerator:
    """A gankit generator holding the BigGAN-PyTorch generator state ``g`` (every tensor consumed)."""
    mybn = "blocks.0.0.bn1.bn.stored_mean" in g
    G = BigGANGenerator(cfg)
    consumed = tuple(k for k in g if mybn and k.endswith("bn.accumulation_counter"))
    load_mapped(G, g, lambda key: generator_key(key, mybn), where=where, consumed=consumed)
    return G.eval()


def convert_discriminator(d: dict[str, torch.Tensor], cfg: BigGANConfig, where: object) -> BigGANDiscriminator:
    """A gankit discriminator holding the BigGAN-PyTorch discriminator state ``d``."""
    D = BigGANDiscriminator(cfg)
    load_mapped(D, d, discriminator_key, where=where)
    return D.eval()


def _files(path: Path, ema: bool) -> tuple[Path, Path | None]:
    """``(generator file, D.pth or None)`` for a folder or a file."""
    if path.is_dir():
        g = path / ("G_ema.pth" if ema else "G.pth")
        if not g.is_file():
            have = sorted(p.name for p in path.glob("*.pth"))
            other = "G.pth (drop --ema)" if ema and (path / "G.pth").is_file() else WHAT
            raise UserError(f"{path} has no {g.name} (it has {', '.join(have) or 'no .pth files'}); give {other}")
        d = path / "D.pth"
        return g, d if d.is_file() else None
    if not path.exists():
        raise UserError(f"{path} does not exist; give {WHAT}")
    if path.name.startswith("D"):
        raise UserError(f"{path} is a discriminator; give the folder, G.pth or G_ema.pth (D.pth is read beside it)")
    if ema and path.name == "G.pth":
        raise UserError(f"{path} is the non-EMA generator; give G_ema.pth or the folder for the EMA one")
    d = path.parent / "D.pth"
    return path, d if d.is_file() else None


def read_biggan_pytorch(path: Path, *, ema: bool) -> tuple[BigGANGenerator, BigGANDiscriminator | None, list[Path]]:
    """The gankit G (and D when ``D.pth`` is there) of a BigGAN-PyTorch weights folder or file; the files read."""
    path = Path(path)
    g_path, d_path = _files(path, ema)
    g = tensor_dict(load_torch_file(g_path, WHAT), g_path, WHAT)
    d = tensor_dict(load_torch_file(d_path, WHAT), d_path, WHAT) if d_path is not None else None
    run = _run_config(g_path.parent)
    cfg = config_from_states(g, d, run, g_path)
    G = convert_generator(g, cfg, g_path)
    D = convert_discriminator(d, cfg, d_path) if d is not None and d_path is not None else None
    files = [g_path] + ([d_path] if d_path is not None else [])
    return G, D, files


def import_biggan_pytorch(path: Path, *, ema: bool) -> ImportedModel:
    """A BigGAN-PyTorch checkpoint as an :class:`ImportedModel`: ``path`` is the weights folder (``G.pth``,
    ``G_ema.pth``, ``D.pth``) or one generator file (``D.pth`` beside it is read too); ``ema`` picks
    ``G_ema.pth``. Raises a one-line :class:`UserError` on anything it cannot convert exactly."""
    G, D, files = read_biggan_pytorch(Path(path), ema=ema)
    notes = dict(NOTES)
    notes["weights"] = files[0].name
    run = _run_config(files[0].parent)
    if run.get("experiment_name"):
        notes["run_name"] = str(run["experiment_name"])
    return ImportedModel(G, D, "biggan-pytorch", [str(f) for f in files], "MIT", notes)


def _names_biggan_tensors(path: Path) -> bool:
    """True when ``path`` is a torch archive whose pickle names BigGAN-PyTorch's tensors (read, not unpickled)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            head = zf.read(names[0]) if names else b""
    except (OSError, zipfile.BadZipFile):
        return False
    return b"linear.u0" in head and b"output_layer." in head


def is_biggan_pytorch_source(path: Path) -> bool:
    """True when ``path`` is a BigGAN-PyTorch ``G.pth`` / ``G_ema.pth``, or a folder holding one (and not a gankit
    run folder): what ``gankit.load_generator`` reads with :func:`load_biggan_pytorch_generator`."""
    path = Path(path)
    if path.is_dir():
        if (path / "checkpoints").is_dir() or (path / "generator.safetensors").is_file():
            return False
        return any(_names_biggan_tensors(path / name) for name in ("G_ema.pth", "G.pth") if (path / name).is_file())
    return path.is_file() and path.name in ("G.pth", "G_ema.pth") and _names_biggan_tensors(path)


def load_biggan_pytorch_generator(path: Path, *, ema: bool = True) -> BigGANGenerator:
    """The eval-mode gankit generator of a BigGAN-PyTorch ``G.pth`` / ``G_ema.pth``, or of a weights folder
    (``G_ema.pth`` when ``ema``, else ``G.pth``); what ``gankit.load_generator`` reads. No discriminator is read."""
    path = Path(path)
    if path.is_dir():
        path, _ = _files(path, ema)
    elif not ema and path.name == "G_ema.pth":
        raise UserError(f"{path} is the EMA generator; give G.pth (or the folder) for the raw one")
    g = tensor_dict(load_torch_file(path, WHAT), path, WHAT)
    cfg = config_from_states(g, None, _run_config(path.parent), path)
    return convert_generator(g, cfg, path)


__all__ = [
    "config_from_states",
    "convert_discriminator",
    "convert_generator",
    "import_biggan_pytorch",
    "is_biggan_pytorch_source",
    "load_biggan_pytorch_generator",
    "read_biggan_pytorch",
]
