"""`gankit export --format onnx` and `gankit sample` of an .onnx file: onnxruntime against eager PyTorch for every
tiny model of tests/tiny.py (every family, conditional or not, both attention variants, PGAN at each scale and
mid-fade), dynamic and fixed batches, the metadata, the same samples as the PyTorch model, and the refusals."""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from gankit.apps import onnx as gankit_onnx
from gankit.apps.onnx import OnnxGenerator, export_onnx
from gankit.cli import main
from gankit.models import SAGANGenerator
from gankit.models.base import Generator
from gankit.models.registry import build_generator, model_config_from_dict
from gankit.version import __version__
from tests.tiny import TINY_MODELS, VARIANTS, family_config, grown

TOL = 1e-4
BATCHES = (1, 2, 5)


def lively(G: Generator, seed: int = 0) -> Generator:
    """``G`` in eval mode with weights that make every part of it matter, as after training: attention gammas
    0.5 (they start at 0), batch-norm statistics and every bias / gain / 1-D parameter moved off their initial
    values (a conditional batch norm then depends on the class)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
            elif p.dim() <= 1 or ".gain" in name or ".bias" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in G.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)
    return G.eval().requires_grad_(False)


def _variant(family: str, k: int, **changes) -> Generator:
    return grown(build_generator(family_config(family, num_classes=k, **changes)))


def _pgan(scale: int, alpha: float, k: int = 0) -> Generator:
    G = build_generator(family_config("pgan", num_classes=k))
    G.set_scale(scale)
    G.set_alpha(alpha)
    return G


# name -> builder: every family of tests/tiny.py (new ones join through VARIANTS and TINY_MODELS), the other
# attention variant, and a Progressive GAN at each scale, mid-fade (the grown one is in VARIANTS)
MODELS = {
    **{f"{family}-{k}": (lambda family=family, k=k: _variant(family, k)) for family, k in VARIANTS},
    **{f"tiny-{name}": (lambda m=m: build_generator(model_config_from_dict(m))) for name, m in TINY_MODELS.items()},
    "sagan-biggan-attention-3": lambda: _variant("sagan", 3, attention_variant="biggan"),
    "pgan-scale0": lambda: _pgan(0, 1.0),
    "pgan-scale1": lambda: _pgan(1, 1.0),
    "pgan-scale1-fade0.3": lambda: _pgan(1, 0.3),
    "pgan-3-scale2-fade0.6": lambda: _pgan(2, 0.6, k=3),
}
_EXPORTS: dict[tuple, tuple[Generator, bytes]] = {}


def exported(name: str, **options) -> tuple[Generator, bytes]:
    """``(the eager model as it was, with spectral norm; the bytes of its ONNX export)``, made once per module."""
    key = (name, *sorted(options.items()))
    if key not in _EXPORTS:
        torch.manual_seed(0)
        G = lively(MODELS[name]())
        original = copy.deepcopy(G)
        data, diff, _, _ = export_onnx(G, **options)
        assert diff <= TOL
        _EXPORTS[key] = original, data
    return _EXPORTS[key]


def _inputs(G: Generator, n: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g)
    return (z, torch.randint(G.num_classes, (n,), generator=g)) if G.num_classes else (z,)


def _ort(data: bytes, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["images"], dict(zip(["z", "class_id"], (x.numpy() for x in inputs), strict=False)))[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_dynamic_export_equals_eager_at_batch_1_2_5(name):
    G, data = exported(name, dynamic_batch=True)
    model = onnx.load_model_from_string(data)
    assert [i.name for i in model.graph.input] == (["z", "class_id"] if G.num_classes else ["z"])
    assert [o.name for o in model.graph.output] == ["images"]
    assert not any("parametrizations" in t.name for t in model.graph.initializer)  # spectral norm folded
    for n in BATCHES:
        inputs = _inputs(G, n)
        with torch.no_grad():
            want = G(*inputs).numpy()
        got = _ort(data, inputs)
        assert got.shape == want.shape == (n, G.channels, G.image_size, G.image_size)
        assert np.abs(got - want).max() <= TOL, (name, n)
    if G.num_classes:  # the class is an input that matters
        z = _inputs(G, 1)[0].expand(2, -1)
        two = _ort(data, (z, torch.tensor([0, 1])))
        assert np.abs(two[0] - two[1]).max() > 1e-3


def test_every_family_and_scale_is_covered():
    families = {family for family, _ in VARIANTS}
    assert {"sagan", "sngan", "dcgan", "pgan"} <= families
    assert {m["arch"] for m in TINY_MODELS.values() if "arch" in m} >= {"mnist", "cnn", "resnet"}
    pgan_scales = {MODELS[n]().scale for n in MODELS if n.startswith("pgan")}
    assert pgan_scales == {0, 1, 2}


def test_static_batch_refuses_another_batch_and_the_runner_chunks(tmp_path):
    G, data = exported("sngan-3", batch_size=2)
    shape = onnx.load_model_from_string(data).graph.input[0].type.tensor_type.shape
    assert [d.dim_value for d in shape.dim] == [2, G.z_dim]
    with pytest.raises(Exception, match="(?i)dimension"):  # onnxruntime refuses a batch of 5
        _ort(data, _inputs(G, 5))
    path = tmp_path / "g.onnx"
    path.write_bytes(data)
    runner = OnnxGenerator(path)
    assert runner.fixed_batch == 2
    for n in (1, 5):  # the runner feeds batches of 2, the last one padded
        inputs = _inputs(G, n, seed=n)
        with torch.no_grad():
            want = G(*inputs)
        assert (runner(*inputs) - want).abs().max() <= TOL


def test_pgan_fade_is_resolved_and_eager_numerics_are_unchanged():
    G = lively(_pgan(2, 0.6))
    z = _inputs(G, 3)[0]
    with torch.no_grad():
        before = G(z)
        with G.traceable():
            inside = G(z)
    assert torch.equal(before, inside)
    # a plain torch.onnx.export (no traceable context) works too: the fade is a tensor op on the alpha buffer
    G.set_alpha(1.0)
    with torch.no_grad():
        want = G(z).numpy()
    direct = torch.onnx.export(G, (z,), dynamo=True, input_names=["z"], output_names=["images"], verbose=False)
    direct = direct.model_proto.SerializeToString()
    assert np.abs(_ort(direct, (z,)) - want).max() <= TOL
    # gankit's export fixes the fade: a grown model has no blend, hence one 1x1 conv (the old to_rgb) fewer
    data, _, _, _ = export_onnx(copy.deepcopy(G))
    convs = [sum(node.op_type == "Conv" for node in onnx.load_model_from_string(d).graph.node) for d in (direct, data)]
    assert convs[1] == convs[0] - 1
    assert np.abs(_ort(data, (z[:1],)) - want[:1]).max() <= TOL


# ------------------------------------------------------------------------------------------ the commands


@pytest.fixture(scope="module")
def sagan_export(tmp_path_factory):
    """A lively 3-class SAGAN as a safetensors export (what `gankit export` reads like any source)."""
    torch.manual_seed(0)
    G = lively(_variant("sagan", 3))
    path = tmp_path_factory.mktemp("onnx") / "g.safetensors"
    G.save_export(path)
    return path


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_cli_export_writes_metadata_and_sample_matches_pytorch(sagan_export, tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert main(["export", str(sagan_export), "--format", "onnx", "--out", str(out), "--dynamic-batch",
                 "--opset", "18"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and "max |onnxruntime - PyTorch| = " in line and "opset 18" in line
    model = onnx.load(str(out))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {18}
    meta = {p.key: p.value for p in model.metadata_props}
    G = gankit_load(sagan_export)
    assert meta["gankit_version"] == __version__ and meta["opset"] == "18" and meta["batch"] == "dynamic"
    assert json.loads(meta["config"]) == G.config.to_dict() and meta["ema"] == "true"
    assert float(meta["max_abs_diff"]) <= TOL and meta["output_range"] == "[-1.0, 1.0]"

    for extra in (["--balanced"], ["--class-id", "2"], []):
        npz = {}
        for source, name in ((out, "onnx"), (sagan_export, "torch")):
            target = tmp_path / f"{name}{len(extra)}.npz"
            args = ["sample", "--checkpoint", str(source), "--num", "7", "--seed", "5", "--out", str(target)]
            assert main([*args, "--device", "cpu", "--no-progress", *extra]) == 0
            npz[name] = np.load(target)
        assert np.array_equal(npz["onnx"]["labels"], npz["torch"]["labels"])
        assert np.abs(npz["onnx"]["images"] - npz["torch"]["images"]).max() <= TOL
    assert set(npz["onnx"]["labels"].tolist()) != {2}  # random classes in the last round
    grids = []
    for source, name in ((out, "onnx"), (sagan_export, "torch")):
        png = tmp_path / f"{name}.png"
        assert main(["sample", "--checkpoint", str(source), "--num", "4", "--truncation", "0.7", "--out", str(png),
                     "--no-progress"]) == 0  # fmt: skip
        grids.append(np.asarray(Image.open(png), dtype=np.int16))
    assert grids[0].shape == grids[1].shape and np.abs(grids[0] - grids[1]).max() <= 1


def gankit_load(path):
    from gankit.api import load_generator

    return load_generator(path)


def test_sample_api_draws_the_latents_gankit_draws(sagan_export, tmp_path):
    G = gankit_load(sagan_export)
    path = tmp_path / "g.onnx"
    path.write_bytes(export_onnx(copy.deepcopy(G), dynamic_batch=True)[0])
    runner = OnnxGenerator(path)
    assert (runner.z_dim, runner.num_classes, runner.image_size, runner.channels) == (8, 3, 16, 1)
    a = G.sample(6, generator=torch.Generator().manual_seed(3), truncation=0.5)
    b = runner.sample(6, generator=torch.Generator().manual_seed(3), truncation=0.5)
    assert (a - b).abs().max() <= TOL
    assert (G.sample(3, labels=1, generator=torch.Generator().manual_seed(4))
            - runner.sample(3, labels=1, generator=torch.Generator().manual_seed(4))).abs().max() <= TOL  # fmt: skip


def test_refusals_are_one_line_and_write_nothing(sagan_export, tmp_path, capsys, monkeypatch):
    out = tmp_path / "g.onnx"
    export = ["export", str(sagan_export), "--format", "onnx", "--out", str(out)]

    # a model the exporter cannot trace: a Python branch on a tensor's value
    forward = SAGANGenerator.forward

    def untraceable(self, z, y=None):
        return forward(self, z, y) if float(z.sum()) < 1e30 else z

    with monkeypatch.context() as m:
        m.setattr(SAGANGenerator, "forward", untraceable)
        assert main(export) == 2
    line = _one_line(capsys)
    assert line.startswith("gankit: error: cannot export the sagan generator (SAGANGenerator) to ONNX: "), line
    assert not out.exists() and list(tmp_path.iterdir()) == []

    # an export that onnxruntime runs differently from PyTorch
    run = gankit_onnx._run
    monkeypatch.setattr(gankit_onnx, "_run", lambda session, inputs: run(session, inputs) + 0.01)
    assert main(export) == 2
    assert "differs from PyTorch by 1.00e-02 at batch 1" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(gankit_onnx, "_run", run)

    # the extra missing
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(export) == 2
    assert 'pip install "gankit[onnx]"' in _one_line(capsys)
    monkeypatch.delitem(sys.modules, "onnxscript")

    # options: the suffix, the opset, ONNX flags without --format onnx
    for args, words in (
        ([*export[:-1], str(tmp_path / "g.safetensors")], "ending in .onnx"),
        ([*export, "--opset", "12"], "--opset must be an ONNX opset from 18"),
        (["export", str(sagan_export), "--out", str(tmp_path / "g.safetensors"), "--dynamic-batch"], "--format onnx"),
    ):
        assert main(args) == 2
        assert words in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []

    # an existing file is kept without --overwrite, replaced with it
    out.write_bytes(b"keep")
    assert main(export) == 2
    assert "exists" in _one_line(capsys) and out.read_bytes() == b"keep"
    assert main([*export, "--overwrite"]) == 0
    assert onnx.load(str(out)).graph.output[0].name == "images"
    capsys.readouterr()

    # what only a PyTorch model has
    sample = ["sample", "--checkpoint", str(out), "--num", "2", "--out", str(tmp_path / "s.png")]
    for args, words in (([*sample, "--no-ema"], "--no-ema needs a PyTorch checkpoint"),
                        ([*sample, "--device", "cuda"], "--device cuda needs a PyTorch checkpoint"),
                        (["interpolate", "--checkpoint", str(out), "--out", str(tmp_path / "i.png")],
                         "needs a PyTorch checkpoint")):  # fmt: skip
        assert main(args) == 2
        assert words in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_sample_refuses_foreign_and_damaged_onnx_files(tmp_path, capsys):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x08\x07garbage")
    plain = tmp_path / "plain.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(plain))
    for path, words in ((damaged, "cannot be read as an ONNX file"), (plain, "is no gankit generator export"),
                        (tmp_path / "missing.onnx", "does not exist")):  # fmt: skip
        assert main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "s.png")]) == 2
        assert words in _one_line(capsys)
    assert not (tmp_path / "s.png").exists()


def test_imported_biggan_pytorch_exports_to_the_source_images(tmp_path, capsys):
    """A model imported from a foreign checkpoint (BigGAN-PyTorch's ImageNet-128 layout: hierarchical z, shared
    class embedding, attention, its own power-iteration rule for spectral norm) exports and gives the images its
    source code made (tests/fixtures/biggan_pytorch; the 32 px one exports alike, left out for time)."""
    name = "i128"
    from safetensors.torch import load_file

    folder = Path(__file__).parents[1] / "fixtures" / "biggan_pytorch" / name
    ref = load_file(folder / "reference.safetensors")
    out = tmp_path / "g.onnx"
    assert main(["export", str(folder), "--format", "onnx", "--out", str(out), "--dynamic-batch"]) == 0
    assert "biggan generator" in capsys.readouterr().out
    got = _ort(out.read_bytes(), (ref["z"], ref["y"]))
    assert np.abs(got - ref["images_G_ema"].numpy()).max() <= TOL
