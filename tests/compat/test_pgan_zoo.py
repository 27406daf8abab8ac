"""pytorch_GAN_zoo PGAN files: built here in exactly their format, loaded by gankit, checked against a reference
forward written from the zoo's layout rules (as gankit.compat.pgan_zoo states them), at 1e-4 in float32 on the CPU."""

from __future__ import annotations

import contextlib
import math
import sys
import types
import urllib.error
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gankit
from gankit.cli import main as cli_main
from gankit.compat import pgan_zoo
from gankit.compat.pgan_zoo import ZooModel, download_pgan_zoo, is_pgan_zoo_file, read_pgan_zoo
from gankit.errors import UserError
from gankit.models.pgan import ProgressiveGenerator

# ------------------------------------------------------------------------------------------ building zoo files

ZOO_ATTRIBUTES = (  # BaseConfig's attributes, in the order the zoo sets them
    "depthScale0",
    "initBiasToZero",
    "leakyReluLeak",
    "depthOtherScales",
    "perChannelNormalization",
    "alpha",
    "miniBatchStdDev",
    "equalizedlR",
    "noiseVectorDim",
    "dimOutput",
    "learningRate",
    "attribKeysOrder",
    "categoryVectorDim",
    "weightConditionG",
    "weightConditionD",
    "GDPP",
    "latentVectorDim",
    "lossCriterion",
    "lambdaGP",
    "epsilonD",
    "logisticGradReal",
)


@contextlib.contextmanager
def zoo_config_module():
    """A throw-away ``models.utils.config`` module holding a ``BaseConfig`` class, so pickling writes the zoo's
    global name exactly as their files carry it."""
    names = ("models", "models.utils", "models.utils.config")
    saved = {n: sys.modules.get(n) for n in names}
    pkg, utils, config = (types.ModuleType(n) for n in names)
    config.BaseConfig = type("BaseConfig", (), {"__module__": "models.utils.config"})
    pkg.utils, utils.config = utils, config
    sys.modules.update(dict(zip(names, (pkg, utils, config), strict=True)))
    try:
        yield config.BaseConfig
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def zoo_generator_state(depths, latent_dim, channels, g: torch.Generator, legacy: bool) -> OrderedDict:
    """netG / avgG tensors with the zoo's keys and shapes (scaleLayers first, as their state_dict orders them)."""
    mod = "" if legacy else "module."
    state: OrderedDict = OrderedDict()

    def put(name, *shape):
        state[f"{name}.{mod}weight"] = torch.randn(*shape, generator=g)
        state[f"{name}.{mod}bias"] = 0.3 * torch.randn(shape[0], generator=g)  # non-zero: bias scaling matters

    for i in range(len(depths) - 1):
        put(f"scaleLayers.{i}.0", depths[i + 1], depths[i], 3, 3)
        put(f"scaleLayers.{i}.1", depths[i + 1], depths[i + 1], 3, 3)
    for k, d in enumerate(depths):
        put(f"toRGBLayers.{k}", channels, d, 1, 1)
    put("formatLayer", 16 * depths[0], latent_dim)
    put("groupScale0.0", depths[0], depths[0], 3, 3)
    return state


def zoo_discriminator_state(depths, channels, decision, g: torch.Generator, legacy: bool) -> OrderedDict:
    mod = "" if legacy else "module."
    state: OrderedDict = OrderedDict()

    def put(name, *shape):
        state[f"{name}.{mod}weight"] = torch.randn(*shape, generator=g)
        state[f"{name}.{mod}bias"] = torch.zeros(shape[0])

    for i in range(len(depths) - 1):
        put(f"scaleLayers.{i}.0", depths[i + 1], depths[i + 1], 3, 3)
        put(f"scaleLayers.{i}.1", depths[i], depths[i + 1], 3, 3)
    for k, d in enumerate(depths):
        put(f"fromRGBLayers.{k}", d, channels, 1, 1)
    put("decisionLayer", decision, depths[0])
    put("groupScaleZero.0", depths[0], depths[0] + 1, 3, 3)
    put("groupScaleZero.1", depths[0], 16 * depths[0])
    return state


def build_zoo_file(
    path: Path,
    *,
    depths=(16, 16, 8, 8),
    alpha: float = 0.0,
    noise_dim: int = 12,
    classes: list[str] | None = None,
    channels: int = 3,
    legacy: bool = False,
    with_avg: bool = True,
    seed: int = 0,
    zip_format: bool = True,
) -> Path:
    """A ``torch.save({"config", "netG", "netD", "avgG"})`` file laid out as the zoo writes it."""
    g = torch.Generator().manual_seed(seed)
    n_cls = len(classes) if classes else 0
    latent = noise_dim + n_cls
    values = {
        "depthScale0": depths[0],
        "initBiasToZero": True,
        "leakyReluLeak": 0.2,
        "depthOtherScales": list(depths[1:]),
        "perChannelNormalization": True,
        "alpha": alpha,
        "miniBatchStdDev": True,
        "equalizedlR": True,
        "noiseVectorDim": noise_dim,
        "dimOutput": channels,
        "learningRate": 0.001,
        "attribKeysOrder": {"Main": {"order": 0, "values": list(classes)}} if classes else None,
        "categoryVectorDim": n_cls,
        "weightConditionG": 1.0 if classes else 0.0,
        "weightConditionD": 1.0 if classes else 0.0,
        "GDPP": False,
        "latentVectorDim": latent,
        "lossCriterion": "WGANGP",
        "lambdaGP": 10.0,
        "epsilonD": 0.001,
        "logisticGradReal": 0.0,
    }
    with zoo_config_module() as base_config:
        config = base_config()
        for name in ZOO_ATTRIBUTES:
            setattr(config, name, values[name])
        state = {
            "config": config,
            "netG": zoo_generator_state(depths, latent, channels, g, legacy),
            "netD": zoo_discriminator_state(depths, channels, 1 + n_cls, g, legacy),
        }
        if with_avg:
            state["avgG"] = zoo_generator_state(depths, latent, channels, g, legacy)
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    return path


# ------------------------------------------------------------------------------------------ reference forward


def reference_forward(state: dict, x: torch.Tensor, depths, alpha_zoo: float) -> torch.Tensor:
    """The zoo's GNet written out from the documented rules, in float64: ``x`` is the raw input (N, latent)."""
    w = {k.replace(".module.", "."): v.double() for k, v in state.items()}

    def he(weight):  # c = sqrt(2 / fan_in), fan_in = prod(weight.shape[1:]), gain sqrt(2) everywhere
        return math.sqrt(2.0 / np.prod(weight.shape[1:]))

    def conv(name, t, pad):  # the scale multiplies the whole output: the bias is scaled too
        return F.conv2d(t, w[name + ".weight"], w[name + ".bias"], padding=pad) * he(w[name + ".weight"])

    def pn(t):
        return t * torch.rsqrt((t**2).mean(dim=1, keepdim=True) + 1e-8)

    def up(t):
        return t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    x = pn(x.double())  # the latent is pixel-normalised
    x = F.linear(x, w["formatLayer.weight"], w["formatLayer.bias"]) * he(w["formatLayer.weight"])
    x = pn(lrelu(x).view(x.shape[0], depths[0], 4, 4))
    x = pn(lrelu(conv("groupScale0.0", x, 1)))
    features = [x]
    for i in range(len(depths) - 1):
        x = up(x)
        x = pn(lrelu(conv(f"scaleLayers.{i}.0", x, 1)))
        x = pn(lrelu(conv(f"scaleLayers.{i}.1", x, 1)))
        features.append(x)
    n = len(depths)
    out = conv(f"toRGBLayers.{n - 1}", features[-1], 0)  # toRGB: no activation, output not bounded
    if alpha_zoo > 0 and n > 1:  # the zoo's alpha weighs the *old* path
        old = up(conv(f"toRGBLayers.{n - 2}", features[-2], 0))
        out = alpha_zoo * old + (1 - alpha_zoo) * out
    return out


def _raw_state(path: Path, which: str) -> dict:
    return read_pgan_zoo(path).avgG if which == "avgG" else read_pgan_zoo(path).netG  # type: ignore[return-value]


# ------------------------------------------------------------- every scale count, alpha, key layout and generator

DEPTHS_BY_SCALES = {1: (16,), 2: (16, 12), 3: (16, 12, 8), 4: (16, 16, 8, 8)}


@pytest.mark.parametrize("scales", [1, 2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.37, 1.0])
@pytest.mark.parametrize("legacy", [False, True], ids=["module-keys", "legacy-keys"])
@pytest.mark.parametrize("ema", [True, False], ids=["avgG", "netG"])
def test_zoo_generator_matches_reference(tmp_path, scales, alpha, legacy, ema):
    depths = DEPTHS_BY_SCALES[scales]
    path = build_zoo_file(tmp_path / "zoo.pth", depths=depths, alpha=alpha, legacy=legacy, seed=scales)
    assert is_pgan_zoo_file(path)
    G = gankit.load_generator(path, ema=ema)
    assert isinstance(G, ProgressiveGenerator)
    assert G.image_size == 4 * 2 ** (scales - 1) and G.z_dim == 12 and G.num_classes == 0
    expected_alpha = 1.0 - alpha if scales > 1 else 1.0  # gankit's alpha is the new path's weight
    assert float(G.alpha) == pytest.approx(expected_alpha)
    z = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    out = G(z)
    ref = reference_forward(_raw_state(path, "avgG" if ema else "netG"), z, depths, alpha)
    assert out.shape == ref.shape == (5, 3, G.image_size, G.image_size)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=0)
    assert ref.abs().max() > 0.5  # a real signal, not a degenerate all-zero comparison
    other = reference_forward(_raw_state(path, "netG" if ema else "avgG"), z, depths, alpha)
    assert (out.double() - other).abs().max() > 1e-2  # avgG and netG really are different generators


def test_intermediate_alpha_really_blends_both_paths(tmp_path):
    depths = (16, 12, 8)
    path = build_zoo_file(tmp_path / "zoo.pth", depths=depths, alpha=0.37)
    state = _raw_state(path, "avgG")
    z = torch.randn(3, 12, generator=torch.Generator().manual_seed(2))
    out = gankit.load_generator(path)(z).double()
    fully_grown, only_old = reference_forward(state, z, depths, 0.0), reference_forward(state, z, depths, 1.0)
    torch.testing.assert_close(out, 0.37 * only_old + 0.63 * fully_grown, atol=1e-4, rtol=0)
    assert (fully_grown - only_old).abs().max() > 0.1


def test_conditional_dtd_style_model(tmp_path):
    classes = [f"texture_{i:02d}" for i in range(47)]  # DTD: one image-folder attribute with 47 classes
    depths = (16, 12, 8)
    path = build_zoo_file(tmp_path / "dtd.pth", depths=depths, classes=classes, alpha=0.25, noise_dim=10)
    ckpt = read_pgan_zoo(path)
    assert ckpt.netG["formatLayer.module.weight"].shape == (256, 57)
    assert pgan_zoo.class_names(ckpt.config) == classes
    for ema in (True, False):
        G = gankit.load_generator(path, ema=ema)
        assert (G.z_dim, G.num_classes, G.image_size) == (10, 47, 16)
        z = torch.randn(4, 10, generator=torch.Generator().manual_seed(3))
        y = torch.tensor([0, 5, 46, 5])
        raw = torch.cat([z, F.one_hot(y, 47).float()], dim=1)  # the zoo's input: latent, then the one-hot class
        ref = reference_forward(ckpt.avgG if ema else ckpt.netG, raw, depths, 0.25)
        torch.testing.assert_close(G(z, y).double(), ref, atol=1e-4, rtol=0)
        torch.testing.assert_close(G.synthesize(raw.view(4, 57, 1, 1)).double(), ref, atol=1e-4, rtol=0)
    images = G.sample(3, labels=7, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 3, 16, 16)


def test_legacy_serialization_and_grayscale(tmp_path):
    """Files from 2019 predate torch's zip format: the legacy format loads under weights_only too."""
    path = build_zoo_file(tmp_path / "old.pth", depths=(8, 8), channels=1, legacy=True, zip_format=False, alpha=0.5)
    assert not __import__("zipfile").is_zipfile(path) and is_pgan_zoo_file(path)
    G = gankit.load_generator(path, ema=False)
    z = torch.randn(2, 12, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        G(z).double(), reference_forward(_raw_state(path, "netG"), z, (8, 8), 0.5), atol=1e-4, rtol=0
    )
    assert G(z).shape == (2, 1, 8, 8)


def test_celebahq512_layout_and_size():
    """The celebAHQ-512 configuration (the zoo's published file): 8 scales, 48 tensors, 23,079,800 parameters."""
    cfg, alpha = pgan_zoo.pgan_config_from_zoo(
        pgan_zoo.ZooBaseConfig(
            depthScale0=512,
            depthOtherScales=[512, 512, 512, 256, 128, 64, 32],
            alpha=0,
            noiseVectorDim=512,
            miniBatchStdDev=True,
        ),
        {"formatLayer.module.weight": torch.empty(8192, 512)},
        "celebAHQ-512",
    )
    with torch.device("meta"):
        G = ProgressiveGenerator(cfg, scale=cfg.num_scales - 1)
    params = {k: tuple(v.shape) for k, v in G.state_dict().items() if k != "alpha"}
    assert len(params) == 48 and sum(int(np.prod(s)) for s in params.values()) == 23_079_800
    assert (cfg.image_size, alpha) == (512, 1.0)
    for zoo_key, shape in (
        ("formatLayer.module.weight", (8192, 512)),
        ("scaleLayers.6.0.module.weight", (32, 64, 3, 3)),
        ("toRGBLayers.7.module.weight", (3, 32, 1, 1)),
        ("groupScale0.0.module.bias", (512,)),
        ("scaleLayers.3.1.weight", (256, 256, 3, 3)),  # legacy style
    ):
        assert params[pgan_zoo.zoo_generator_key(zoo_key)] == shape, zoo_key


# ------------------------------------------------------------------------------------------ safety and errors


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_file_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = build_zoo_file(tmp_path / "zoo.pth", depths=(8,))
    with zoo_config_module():
        state = torch.load(path, weights_only=False)  # a trusted file of our own, to tamper with
        torch.save({**state, "tmp": _Evil(marker)}, path)
    assert is_pgan_zoo_file(path)
    with pytest.raises(UserError, match="refused for safety"):
        gankit.load_generator(path)
    assert not marker.exists()


def test_mismatched_or_incomplete_files_fail_clearly(tmp_path):
    path = build_zoo_file(tmp_path / "zoo.pth", depths=(8, 8))
    with zoo_config_module():
        state = torch.load(path, weights_only=False)  # a trusted file of our own, to tamper with
        config = state["config"]
        del state["avgG"]["toRGBLayers.1.module.bias"]
        torch.save({**state, "config": config}, tmp_path / "missing.pth")
        torch.save({"config": config, "netG": state["netG"]}, tmp_path / "no_avg.pth")
        config.depthOtherScales = [16]
        torch.save({**state, "config": config}, tmp_path / "shape.pth")
    with pytest.raises(UserError, match="to_rgb.1.bias' is missing"):
        gankit.load_generator(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="blocks.0.conv1.weight' has shape"):
        gankit.load_generator(tmp_path / "shape.pth", ema=False)
    with pytest.raises(UserError, match="no averaged generator"):
        gankit.load_generator(tmp_path / "no_avg.pth")
    assert gankit.load_generator(tmp_path / "no_avg.pth", ema=False).image_size == 8


def test_cli_sample_works_on_zoo_files(tmp_path):
    path = build_zoo_file(tmp_path / "zoo.pth", depths=(16, 12, 8), alpha=0.0)
    assert (
        cli_main(
            ["sample", "--checkpoint", str(path), "--num", "4", "--device", "cpu", "--out", str(tmp_path / "s.npz")]
        )
        == 0
    )
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (4, 3, 16, 16)
    G = gankit.load_generator(path)
    expected = G.sample(4, generator=torch.Generator().manual_seed(0))  # the CLI's default seed
    np.testing.assert_allclose(images, expected.numpy(), atol=1e-5)
    assert np.abs(images).max() > 1.0  # raw, unbounded outputs: never clamped in the arrays


# ------------------------------------------------------------------------------------------ downloads


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_download_without_network_says_so(hub_dir, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(
        UserError, match=r"cannot download the pretrained PGAN 'celebAHQ-512'.*no network\?.*weights=PATH"
    ):
        download_pgan_zoo("celebAHQ-512", progress=False)
    with pytest.raises(UserError, match="unknown pretrained PGAN 'celebahq-512' \\(did you mean 'celebAHQ-512'\\?\\)"):
        download_pgan_zoo("celebahq-512")
    assert not list(hub_dir.rglob("*.partial"))


def test_download_checks_the_hash_prefix(tmp_path, hub_dir, monkeypatch):
    payload = build_zoo_file(tmp_path / "src.pth", depths=(8, 8)).read_bytes()
    digest = __import__("hashlib").sha256(payload).hexdigest()

    def fake_download(url, dst, hash_prefix=None, progress=True):
        assert hash_prefix is None  # gankit checks the hash itself, keeping a failed file for inspection
        Path(dst).write_bytes(payload)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    good = ZooModel("good", f"https://example.invalid/PGAN/good_s1-{digest[:8]}.pth", 8)
    bad = ZooModel("bad", "https://example.invalid/PGAN/bad_s1-00000000.pth", 8)
    monkeypatch.setattr(pgan_zoo, "ZOO_MODELS", {"good": good, "bad": bad})
    path = download_pgan_zoo("good", progress=False)
    assert path == hub_dir / "checkpoints" / good.filename and path.read_bytes() == payload
    assert gankit.load_generator(path).image_size == 8
    with pytest.raises(UserError, match=f"has sha256 {digest[:16]}.*not the 00000000"):
        download_pgan_zoo("bad", progress=False)
    assert (hub_dir / "checkpoints" / (bad.filename + ".unverified")).is_file()
    assert not (hub_dir / "checkpoints" / bad.filename).exists()
    assert download_pgan_zoo("bad", check_hash=False, progress=False).is_file()


def test_public_model_table():
    assert set(pgan_zoo.ZOO_MODELS) == {"celebAHQ-256", "celebAHQ-512", "DTD", "celeba"}
    m = pgan_zoo.ZOO_MODELS["celebAHQ-512"]
    assert m.hash_prefix == "9c72988c" and m.filename == "celebaHQ16_december_s7_i96000-9c72988c.pth"
    assert pgan_zoo.ZOO_MODELS["DTD"].hash_prefix == "04efa39f"
