"""BigGAN-PyTorch import: the source's own eval-mode images and D logits (tests/fixtures/biggan_pytorch, made by
its code) reproduced to 1e-5, every tensor consumed, unsafe and damaged files refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.nn.utils import parametrize

from gankit.compat.biggan_pytorch import import_biggan_pytorch, is_biggan_pytorch_source
from gankit.errors import UserError
from gankit.models.biggan import BigGANDiscriminator, BigGANGenerator

FIXTURES = Path(__file__).parents[1] / "fixtures" / "biggan_pytorch"


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["c32", "i128"])
@pytest.mark.parametrize("ema", [False, True])
def test_images_and_logits_match_the_source(name, ema):
    ref = load_file(FIXTURES / name / "reference.safetensors")
    imported = import_biggan_pytorch(FIXTURES / name, ema=ema)
    G, D = imported.generator, imported.discriminator
    assert isinstance(G, BigGANGenerator) and isinstance(D, BigGANDiscriminator) and not G.training
    with torch.no_grad():
        images = G(ref["z"], ref["y"])
        close(images, ref["images_G_ema" if ema else "images_G"])
        close(G(ref["z"], ref["y"]), images)  # eval mode leaves the stored u alone: the same images again
        close(D(ref["x"], ref["y"]), ref["logits"])
        close(D(ref["images_G"], ref["y"]), ref["logits_fake"])
    assert imported.source == "biggan-pytorch" and imported.license == "MIT"
    assert [Path(f).name for f in imported.source_files] == ["G_ema.pth" if ema else "G.pth", "D.pth"]
    assert "97.35" in imported.notes["reported"] and imported.notes["run_name"] == f"fixture_{name}"


def test_the_architecture_is_read_from_the_tensors():
    c32 = import_biggan_pytorch(FIXTURES / "c32", ema=True).generator.config
    # CIFAR layout: per-layer class embeddings, no hierarchy, attention after G block 1 and every D block
    assert (c32.image_size, c32.z_dim, c32.shared_dim, c32.hierarchical) == (32, 20, 0, False)
    assert c32.g_attention_blocks == (1,) and c32.d_attention_blocks == (0, 1, 2, 3) and c32.sn_eps == 1e-8
    i128 = import_biggan_pytorch(FIXTURES / "i128", ema=True).generator.config
    shape = (i128.image_size, i128.z_dim, i128.shared_dim, i128.hierarchical, i128.num_classes)
    assert shape == (128, 24, 16, True, 10)
    assert i128.g_widths() == [64, 64, 32, 16, 8, 4] and i128.d_widths() == [8, 16, 32, 64, 128, 128]
    assert i128.g_attention_blocks == (3,) and i128.d_attention_blocks == (0,) and i128.sn_variant == "biggan"


def test_pytorch_spectral_norm_rule_would_not_reproduce_the_source():
    # The fixture exercises the rule: sigma = u^T W v of the stored u and v = normalize(u W), without the eval-mode
    # iteration (PyTorch's way), gives other images.
    ref = load_file(FIXTURES / "i128" / "reference.safetensors")
    G = import_biggan_pytorch(FIXTURES / "i128", ema=True).generator
    with torch.no_grad():
        for module in list(G.modules()):
            if parametrize.is_parametrized(module, "weight"):
                w = module.parametrizations.weight.original.detach().clone()
                u = module.parametrizations.weight[0].u
                sigma = (u @ w.reshape(w.shape[0], -1)).norm()  # u^T W v with v = normalize(u W)
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
                module.weight.copy_(w / sigma)
        assert (G(ref["z"], ref["y"]) - ref["images_G_ema"]).abs().max() > 1e-3


def test_a_generator_file_and_the_files_beside_it(tmp_path):
    imported = import_biggan_pytorch(FIXTURES / "c32" / "G_ema.pth", ema=True)
    assert imported.discriminator is not None and Path(imported.source_files[1]).name == "D.pth"
    only_g = tmp_path / "only"
    only_g.mkdir()
    shutil.copy(FIXTURES / "c32" / "G.pth", only_g / "G.pth")
    alone = import_biggan_pytorch(only_g, ema=False)
    assert alone.discriminator is None and alone.source_files == [str(only_g / "G.pth")]
    with pytest.raises(UserError, match=r"has no G_ema.pth \(it has G.pth\); give G.pth \(drop --ema\)"):
        import_biggan_pytorch(only_g, ema=True)
    with pytest.raises(UserError, match="is a discriminator"):
        import_biggan_pytorch(FIXTURES / "c32" / "D.pth", ema=True)
    with pytest.raises(UserError, match="is the non-EMA generator"):
        import_biggan_pytorch(FIXTURES / "c32" / "G.pth", ema=True)
    with pytest.raises(UserError, match="does not exist"):
        import_biggan_pytorch(tmp_path / "nowhere", ema=True)
    assert is_biggan_pytorch_source(FIXTURES / "c32") and is_biggan_pytorch_source(FIXTURES / "c32" / "G.pth")
    assert not is_biggan_pytorch_source(FIXTURES / "c32" / "D.pth") and not is_biggan_pytorch_source(tmp_path)


def _folder_with(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "G_ema.pth") -> Path:
    folder = tmp_path / "weights"
    folder.mkdir(parents=True)
    torch.save(state, folder / name)
    return folder


def test_every_tensor_is_consumed_or_the_import_names_the_keys(tmp_path):
    state = torch.load(FIXTURES / "i128" / "G_ema.pth", weights_only=True)
    extra = {**state, "blocks.0.0.bn1.extra": torch.zeros(3)}
    del extra["blocks.2.0.conv2.u0"]
    folder = _folder_with(tmp_path, extra)
    with pytest.raises(UserError) as info:
        import_biggan_pytorch(folder, ema=True)
    message = str(info.value)
    assert "\n" not in message and "G_ema.pth does not match the architecture read from its tensors" in message
    assert "unexpected 'blocks.0.0.bn1.extra'" in message and "missing 'blocks.2.0.conv2.u0'" in message
    d = torch.load(FIXTURES / "i128" / "D.pth", weights_only=True)
    torch.save({k: v for k, v in d.items() if k != "embed.sv0"}, folder / "D.pth")
    torch.save(state, folder / "G_ema.pth")
    with pytest.raises(UserError, match=r"D.pth does not match .*: missing 'embed.sv0'$"):
        import_biggan_pytorch(folder, ema=True)


def test_wrong_shapes_and_foreign_state_dicts_are_one_line(tmp_path):
    state = torch.load(FIXTURES / "c32" / "G.pth", weights_only=True)
    state["blocks.1.1.gamma"] = torch.zeros(2)
    folder = _folder_with(tmp_path, state, "G.pth")
    with pytest.raises(UserError, match=r"tensor 'blocks.1.1.gamma' has shape \(2,\), .* needs \(\)"):
        import_biggan_pytorch(folder, ema=False)
    other = _folder_with(tmp_path / "x", {"weight": torch.zeros(2)}, "G.pth")
    with pytest.raises(UserError, match="is not a BigGAN-PyTorch generator"):
        import_biggan_pytorch(other, ema=False)
    listed = _folder_with(tmp_path / "y", [torch.zeros(2)], "G.pth")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="expected a state dict of tensors, got list"):
        import_biggan_pytorch(listed, ema=False)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_carrying_code_is_refused(tmp_path, capsys):
    folder = _folder_with(tmp_path, {"linear.weight": torch.zeros(2), "hook": _Payload()})  # type: ignore[dict-item]
    refused = r"G_ema.pth holds objects other than tensors and plain data \(print\): refused for safety"
    with pytest.raises(UserError, match=refused):
        import_biggan_pytorch(folder, ema=True)
    assert "must never run" not in capsys.readouterr().out


def test_a_truncated_file_is_one_line(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    data = (FIXTURES / "c32" / "G_ema.pth").read_bytes()
    (folder / "G_ema.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="G_ema.pth is truncated or corrupt") as info:
        import_biggan_pytorch(folder, ema=True)
    assert "\n" not in str(info.value)
