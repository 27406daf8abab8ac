"""StudioGAN big_resnet conversion: the source's own eval-mode images and D logits (tests/fixtures/studiogan_biggan,
made by its code, in its checkpoint file format) reproduced to 1e-5, the hints checked, every tensor consumed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gankit.compat.studiogan_biggan import convert_big_resnet, is_big_resnet_state
from gankit.errors import UserError
from gankit.models.biggan import BigGANDiscriminator, BigGANGenerator

FIXTURES = Path(__file__).parents[1] / "fixtures" / "studiogan_biggan"
RUNS = ["c32", "u32", "c64", "i128"]


def checkpoint(name: str, model: str) -> dict:
    """A fixture file as StudioGAN wrote it, read as any foreign file is: ``weights_only=True``."""
    (path,) = (FIXTURES / name).glob(f"model={model}-current-weights-step=*.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", RUNS)
@pytest.mark.parametrize("which", ["G", "G_ema"])
def test_images_and_logits_match_the_source(name, which):
    ref = load_file(FIXTURES / name / "reference.safetensors")
    d_ckpt = checkpoint(name, "D")
    assert d_ckpt["step"] == 3 and d_ckpt["run_name"].startswith(f"fixture-{name}")
    G, D = convert_big_resnet(checkpoint(name, which)["state_dict"], d_ckpt["state_dict"], hints={})
    assert isinstance(G, BigGANGenerator) and isinstance(D, BigGANDiscriminator) and not G.training
    y = ref["y"] if G.num_classes else None
    with torch.no_grad():
        torch.testing.assert_close(G(ref["z"], y), ref[f"images_{which}"], rtol=0, atol=1e-5)
        torch.testing.assert_close(D(ref["x"], y), ref["logits"], rtol=0, atol=1e-5)
        torch.testing.assert_close(D(ref["images_G"], y), ref["logits_fake"], rtol=0, atol=1e-5)


def test_the_architecture_is_read_from_the_tensors():
    g, d = checkpoint("i128", "G_ema")["state_dict"], checkpoint("i128", "D")["state_dict"]
    G, D = convert_big_resnet(g, d, hints={"img_size": 128, "num_classes": 10, "z_dim": 24, "g_shared_dim": 16})
    cfg = G.config
    assert (cfg.image_size, cfg.z_dim, cfg.num_classes, cfg.shared_dim, cfg.hierarchical) == (128, 24, 10, 16, True)
    assert cfg.g_attention_blocks == (3,) and cfg.d_attention_blocks == (0,)  # attn_g_loc [4], attn_d_loc [1]
    read = (cfg.sn_variant, cfg.sn_eps, cfg.bn_eps, cfg.out_bn_eps, cfg.d_relu_shortcut)
    assert read == ("torch", 1e-6, 1e-4, 1e-4, True)
    c64 = convert_big_resnet(checkpoint("c64", "G")["state_dict"], None, hints={})[0].config
    assert c64.g_widths() == [64, 32, 16, 8, 4]  # StudioGAN's 64 px table (not BigGAN-PyTorch's)
    uncond, no_d = convert_big_resnet(checkpoint("u32", "G")["state_dict"], None, hints={"num_classes": 10})
    assert uncond.num_classes == 0 and no_d is None and uncond.config.conditioning_dim() == 5


def test_is_big_resnet_state():
    for name in RUNS:
        assert is_big_resnet_state(checkpoint(name, "G")["state_dict"])
    sngan_like = {"linear0.weight_orig": torch.zeros(256, 128), "blocks.0.0.bn1.gain.weight_orig": torch.zeros(64, 10)}
    assert not is_big_resnet_state(sngan_like)  # resnet.py's batch norms read the one-hot class
    assert not is_big_resnet_state({"blocks.0.0.bn1.weight": torch.zeros(4)})


def test_hints_that_contradict_the_tensors_are_one_line():
    g = checkpoint("c32", "G")["state_dict"]
    with pytest.raises(UserError, match="the config says img_size 64, the weights have 32"):
        convert_big_resnet(g, None, hints={"img_size": 64})
    with pytest.raises(UserError, match="the config says z_dim 80, the weights have 20"):
        convert_big_resnet(g, None, hints={"z_dim": 80, "unknown_key": 1})


def test_every_tensor_is_consumed_or_the_conversion_names_the_keys():
    g = dict(checkpoint("c32", "G")["state_dict"])
    g["info_mix_linear.weight"] = torch.zeros(2, 2)  # an InfoGAN head: not converted
    del g["blocks.1.0.bn2.bn.num_batches_tracked"]
    with pytest.raises(UserError) as info:
        convert_big_resnet(g, None, hints={})
    message = str(info.value)
    assert "\n" not in message and message.startswith("the StudioGAN generator state dict does not match")
    assert "unexpected 'info_mix_linear.weight'" in message
    assert "missing 'blocks.1.0.bn2.bn.num_batches_tracked'" in message
    d = dict(checkpoint("c32", "D")["state_dict"])
    d["linear2.weight_orig"] = torch.zeros(10, 16)  # an AC / 2C head
    refused = r"discriminator state dict does not match .*: unexpected 'linear2.weight_orig'$"
    with pytest.raises(UserError, match=refused):
        convert_big_resnet(checkpoint("c32", "G")["state_dict"], d, hints={})


def test_mismatched_g_and_d_are_refused():
    g = checkpoint("c32", "G")["state_dict"]
    with pytest.raises(UserError, match="has no projection embedding but the generator is class-conditional"):
        convert_big_resnet(g, checkpoint("u32", "D")["state_dict"], hints={})
    with pytest.raises(UserError, match="is class-conditional .* but the generator is not"):
        convert_big_resnet(checkpoint("u32", "G")["state_dict"], checkpoint("c32", "D")["state_dict"], hints={})
    with pytest.raises(UserError, match="has 6 blocks; big_resnet's 32x32 D has 4"):
        convert_big_resnet(g, checkpoint("i128", "D")["state_dict"], hints={})
    bad = dict(g)
    bad["blocks.0.0.conv2d2.weight_orig"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(UserError, match=r"'blocks.0.0.conv2d2.weight_orig' has shape \(3, 3, 3, 3\)"):
        convert_big_resnet(bad, None, hints={})
