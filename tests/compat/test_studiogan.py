"""StudioGAN import: the fixtures made by StudioGAN's own resnet.py (tests/fixtures/studiogan/README.md) reproduce
its eval-mode images and D logits; key coverage; refusals of unsupported, truncated and code-carrying files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gankit.compat.studiogan import backbone_of, find_files, import_studiogan, read_config, reported_fid
from gankit.errors import UserError
from gankit.models.sngan import SNGANConfig, SNGANDiscriminator, SNGANGenerator

FIXTURES = Path(__file__).parents[1] / "fixtures" / "studiogan"
RUNS = FIXTURES / "studiogan_official_ckpt"
REF = load_file(str(FIXTURES / "reference.safetensors"))
CASES = [(run.name, "current") for run in sorted(RUNS.iterdir())] + [("CIFAR10-SAGAN-tiny", "best")]


@pytest.mark.parametrize(("run", "when"), CASES)
def test_import_reproduces_studiogan_eval_outputs(run: str, when: str) -> None:
    p = f"{run}/{when}"
    z, y, x = REF[f"{p}/z"], REF[f"{p}/y"], REF[f"{p}/x"]
    roles = [False, True] if f"{p}/G_ema" in REF else [False]
    for ema in roles:
        imported = import_studiogan(RUNS / run, ema=ema, when=when)
        G, D = imported.generator, imported.discriminator
        assert D is not None and not G.training and not D.training
        labels = y if G.num_classes else None
        with torch.no_grad():
            images = G(z, labels)
            torch.testing.assert_close(images, REF[f"{p}/G_ema" if ema else f"{p}/G"], atol=1e-5, rtol=0)
            torch.testing.assert_close(D(REF[f"{p}/G"], labels), REF[f"{p}/D_fake"], atol=1e-5, rtol=1e-6)
            torch.testing.assert_close(D(x, labels), REF[f"{p}/D_x"], atol=1e-5, rtol=1e-6)
        assert imported.source == "studiogan" and imported.license == "MIT"
        assert imported.notes["run_name"] == run and imported.notes["best_fid"] == "123.456"


def test_architecture_read_from_tensors() -> None:
    cfg = import_studiogan(RUNS / "ImageNet-SAGAN-tiny").generator.config
    assert isinstance(cfg, SNGANConfig)
    assert (cfg.image_size, cfg.z_dim, cfg.num_classes, cfg.g_conv_dim, cfg.d_conv_dim) == (128, 16, 5, 4, 4)
    assert (cfg.g_attention_blocks, cfg.d_attention_blocks) == ((4,), (2,))
    assert cfg.g_spectral_norm and cfg.g_last_spectral_norm and cfg.resnet_layout == "studiogan"
    uncond = import_studiogan(RUNS / "CIFAR10-SNGAN-uncond-tiny").generator.config
    assert uncond.num_classes == 0 and not uncond.g_spectral_norm and uncond.g_attention_blocks == ()


def test_best_is_the_default_and_a_file_picks_its_own_checkpoint() -> None:
    folder = RUNS / "CIFAR10-SAGAN-tiny"
    assert find_files(folder).when == "best" and find_files(folder).step == 2
    assert find_files(folder, "current").step == 4
    one = find_files(folder / "model=G-current-weights-step=4.pth")
    assert one.when == "current" and sorted(one.paths) == ["D", "G", "G_ema"]
    assert find_files(RUNS / "CIFAR10-SNGAN-tiny").when == "current"  # no best checkpoint there


def test_config_yaml_is_checked_against_the_tensors(tmp_path: Path) -> None:
    run = RUNS / "Baby_ImageNet-SAGAN-tiny"
    good = FIXTURES / "configs" / "Baby_ImageNet-SAGAN-tiny.yaml"
    assert read_config(good)["g_attention_blocks"] == (3,)
    assert import_studiogan(run, config=good).generator.config.g_conv_dim == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("g_conv_dim: 4", "g_conv_dim: 64"))
    with pytest.raises(UserError, match=r"--config says g_conv_dim 64 .* g_conv_dim 4"):
        import_studiogan(run, config=bad)


def _copy_run(tmp_path: Path, run: str = "CIFAR10-SNGAN-tiny") -> Path:
    dest = tmp_path / run
    shutil.copytree(RUNS / run, dest)
    return dest


def _edit_state(path: Path, edit) -> None:
    data = torch.load(path, weights_only=True)
    edit(data["state_dict"])
    torch.save(data, path)


def test_extra_and_missing_tensors_are_named(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    g = next(run.glob("model=G-*"))
    _edit_state(g, lambda s: s.update({"extra.weight": torch.zeros(3)}))
    with pytest.raises(UserError, match=r"unexpected extra\.weight"):
        import_studiogan(run)
    _edit_state(g, lambda s: (s.pop("extra.weight"), s.pop("blocks.1.0.conv2d2.bias")))
    with pytest.raises(UserError, match=r"missing blocks\.1\.0\.conv2d2\.bias"):
        import_studiogan(run)
    d = next(run.glob("model=D-*"))
    _edit_state(g, lambda s: s.update({"blocks.1.0.conv2d2.bias": torch.zeros(32)}))
    _edit_state(d, lambda s: s.pop("embedding.weight_u"))
    with pytest.raises(UserError, match=r"missing embedding\.weight_u") as err:
        import_studiogan(run)
    assert "\n" not in str(err.value)


def test_unsupported_models_name_what_is_supported(tmp_path: Path) -> None:
    stylegan = {"mapping.fc0.weight": torch.zeros(4, 4), "synthesis.b4.conv1.weight": torch.zeros(4, 4, 3, 3)}
    dcgan = {
        "linear0.weight": torch.zeros(8, 4),
        "deconv0.weight": torch.zeros(8, 4, 4, 4),
        "bn0.weight": torch.zeros(4),
    }
    for n, (state, what) in enumerate(((stylegan, "StyleGAN2/3"), (dcgan, "deep_conv"))):
        with pytest.raises(UserError, match=rf"{what}.*gankit imports StudioGAN's resnet \(SNGAN, SAGAN\)"):
            backbone_of(state)
        folder = tmp_path / str(n)
        folder.mkdir()
        torch.save({"state_dict": state}, folder / "model=G-current-weights-step=1.pth")
        with pytest.raises(UserError, match="gankit imports") as err:
            import_studiogan(folder)
        assert "\n" not in str(err.value)


def test_truncated_file_is_one_line(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    g = next(run.glob("model=G-*"))
    g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated or corrupt") as err:
        import_studiogan(run)
    assert "\n" not in str(err.value)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_carrying_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _copy_run(tmp_path)
    d = next(run.glob("model=D-*"))
    data = torch.load(d, weights_only=True)
    data["topk"] = _Payload()
    torch.save(data, d)
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(UserError, match="refused for safety"):
        import_studiogan(run)
    assert not called


def test_ema_without_g_ema_and_non_studiogan_names_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no G_ema file"):
        import_studiogan(RUNS / "CIFAR10-SNGAN-tiny", ema=True)
    other = tmp_path / "weights.pth"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="not named like a StudioGAN checkpoint"):
        import_studiogan(other)


def test_studiogan_layout_attention_and_options_build_and_train() -> None:
    """The new SN-GAN options on their own: widths of StudioGAN's tables, attention where asked, one backward."""
    cfg = SNGANConfig(arch="resnet", resnet_layout="studiogan", image_size=64, channels=1, z_dim=8, num_classes=3,
                      g_conv_dim=4, d_conv_dim=4, g_attention_blocks=(3,), d_attention_blocks=(3,), bn_eps=1e-4,
                      sn_eps=1e-6, g_spectral_norm=True, g_last_spectral_norm=True, out_norm_conditional=False,
                      d_shortcut_relu=True)  # fmt: skip
    G, D = SNGANGenerator(cfg), SNGANDiscriminator(cfg)
    assert [b.conv1.out_channels for b in G.blocks] == [32, 16, 8, 4]
    assert [b.conv1.out_channels for b in D.blocks] == [4, 8, 16, 32, 64]
    assert list(G.attention) == ["3"] and G.attention["3"].variant == "biggan"
    assert G.blocks[0].norm1.norm.bn.eps == 1e-4 and not G.out_norm.conditional
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    images = G(z, y)
    assert images.shape == (2, 1, 64, 64)
    D(images, y).sum().backward()
    with pytest.raises(UserError, match="g_attention_blocks has 9"):
        SNGANConfig(arch="resnet", resnet_layout="studiogan", g_attention_blocks=(9,)).validate()


@pytest.mark.parametrize("folder", ["c32", "u32"])
def test_big_resnet_checkpoints_go_to_the_biggan_converter(folder: str) -> None:
    """StudioGAN's BigGAN (big_resnet) files: the same command, the biggan family (fixtures of that converter)."""
    root = FIXTURES.parent / "studiogan_biggan" / folder
    ref = load_file(str(root / "reference.safetensors"))
    for ema in (False, True):
        imported = import_studiogan(root, ema=ema)
        G, D = imported.generator, imported.discriminator
        assert G.config.family == "biggan" and D is not None
        y = ref["y"] if G.num_classes else None
        with torch.no_grad():
            torch.testing.assert_close(G(ref["z"], y), ref["images_G_ema" if ema else "images_G"], atol=1e-5, rtol=0)
            torch.testing.assert_close(D(ref["x"], y), ref["logits"], atol=1e-5, rtol=1e-6)


def test_reported_fid_is_found_from_the_run_names() -> None:
    assert reported_fid("CIFAR10-SAGAN-train-2021_01_01").startswith("10.35 (StudioGAN benchmark")
    assert reported_fid("studiogan_official_ckpt", "Baby_ImageNet-SNGAN-train").startswith("36.31")
    assert reported_fid("ImageNet-BigGAN-256-train").startswith("20.57")
    assert "not found" in reported_fid("my-own-run")
    notes = import_studiogan(RUNS / "CIFAR10-SAGAN-tiny").notes
    assert notes["reported FID"].startswith("10.35") and notes["checkpoint"] == "best, step 2"


def test_load_generator_reads_studiogan_files_and_folders() -> None:
    import gankit

    p = "CIFAR10-SAGAN-tiny"
    folder = gankit.load_generator(RUNS / p)  # best checkpoint, its G_ema
    raw = gankit.load_generator(RUNS / p / "model=G-current-weights-step=4.pth", ema=False)
    with torch.no_grad():
        torch.testing.assert_close(
            folder(REF[f"{p}/best/z"], REF[f"{p}/best/y"]), REF[f"{p}/best/G_ema"], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            raw(REF[f"{p}/current/z"], REF[f"{p}/current/y"]), REF[f"{p}/current/G"], atol=1e-5, rtol=0
        )
    assert not folder.training


def test_imported_generator_exports_and_loads_back(tmp_path: Path) -> None:
    """An imported SAGAN (attention, SN everywhere) round-trips through the safetensors export, folded or not."""
    import gankit
    from gankit.io import SPECTRAL_NORM_FOLDED
    from gankit.nn import fold_spectral_norm

    G = import_studiogan(RUNS / "Baby_ImageNet-SAGAN-tiny").generator
    z, y = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2, 4])
    with torch.no_grad():
        expected = G(z, y)
        G.save_export(tmp_path / "g.safetensors")
        torch.testing.assert_close(gankit.load_generator(tmp_path / "g.safetensors")(z, y), expected, atol=0, rtol=0)
        fold_spectral_norm(G)
        G.save_export(tmp_path / "folded.safetensors", **{SPECTRAL_NORM_FOLDED: "true"})
        folded = gankit.load_generator(tmp_path / "folded.safetensors")
        torch.testing.assert_close(folded(z, y), expected, atol=1e-5, rtol=0)


def test_unsupported_discriminators_are_one_line(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    d = next(run.glob("model=D-*"))
    original = d.read_bytes()

    def no_sn(s: dict) -> None:
        s["linear1.weight"] = s.pop("linear1.weight_orig")
        del s["linear1.weight_u"], s["linear1.weight_v"]

    def multi_head(s: dict) -> None:
        s["linear1.weight_orig"] = torch.zeros(11, s["linear1.weight_orig"].shape[1])

    def other_classes(s: dict) -> None:
        s["embedding.weight_orig"] = torch.zeros(7, s["embedding.weight_orig"].shape[1])

    for edit, message in ((no_sn, "has no spectral norm"), (multi_head, "11 outputs"),
                          (other_classes, "G and D disagree on num_classes")):  # fmt: skip
        d.write_bytes(original)
        _edit_state(d, edit)
        with pytest.raises(UserError, match=message) as err:
            import_studiogan(run)
        assert "\n" not in str(err.value)
