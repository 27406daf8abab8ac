"""hubconf.py: the seed tutorial's Torch Hub calls against gankit, offline, with local zoo-format weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import gankit
from gankit.apps.torchhub import ZooPGAN
from gankit.errors import UserError
from tests.compat.test_pgan_zoo import build_zoo_file, reference_forward
from tests.tiny import pgan_config

REPO_DIR = str(Path(__file__).resolve().parents[2])
DEPTHS = (16, 12, 8)


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory) -> Path:
    return build_zoo_file(tmp_path_factory.mktemp("hub") / "pgan.pth", depths=DEPTHS, alpha=0.0, noise_dim=12)


def test_torch_hub_load_local_runs_the_tutorial(zoo_file):
    model = torch.hub.load(REPO_DIR, "PGAN", source="local", weights=str(zoo_file), pretrained=True, useGPU=False)
    assert isinstance(model, ZooPGAN)
    num_images = 4
    torch.manual_seed(0)
    noise, labels = model.buildNoiseData(num_images)
    assert noise.shape == (4, 12) and labels is None
    with torch.no_grad():
        generated_images = model.test(noise)
    assert generated_images.shape == (4, 3, 16, 16) and generated_images.device.type == "cpu"
    # test() runs netG (the hub example's call) and never clamps
    ckpt = gankit.compat.read_pgan_zoo(zoo_file)
    torch.testing.assert_close(
        generated_images.double(), reference_forward(ckpt.netG, noise, DEPTHS, 0.0), atol=1e-4, rtol=0
    )
    assert generated_images.abs().max() > 1.0
    grid = generated_images.clamp(min=-1, max=1)  # the tutorial clamps only to display
    assert grid.min() >= -1 and grid.max() <= 1
    avg = model.test(noise, getAvG=True)
    torch.testing.assert_close(avg.double(), reference_forward(ckpt.avgG, noise, DEPTHS, 0.0), atol=1e-4, rtol=0)
    netG = model.getNetG()
    torch.testing.assert_close(netG(noise), generated_images)
    assert netG.getOutputSize() == model.getSize() == (16, 16)


def test_tutorial_lerp_walk(zoo_file):
    import hubconf

    model = hubconf.PGAN(pretrained=True, model_name="celebAHQ-512", useGPU=False, weights=str(zoo_file))
    torch.manual_seed(1)
    noise, _ = model.buildNoiseData(2)
    z1, z2 = noise[0], noise[1]
    frames = []
    for lam in np.arange(0, 1, 0.25):  # the tutorial: z = (1 - lam) * z1 + lam * z2 for lam in [0, 1)
        z = (1 - lam) * z1 + lam * z2
        frames.append(model.test(z.unsqueeze(0).float()))
    walk = torch.cat(frames)
    assert walk.shape == (4, 3, 16, 16)
    torch.testing.assert_close(walk[0], model.test(noise[:1])[0])
    steps = (walk[1:] - walk[:-1]).flatten(1).norm(dim=1)
    assert (steps > 0).all()  # every point renders a different image
    from gankit.apps.interpolate import latent_walks, lerp, walk_positions

    zs = lerp(noise[:1], noise[1:], walk_positions(4, endpoint=False))[0]  # gankit's walk: the same latents
    torch.testing.assert_close(zs, torch.stack([(1 - t) * z1 + t * z2 for t in np.arange(0, 1, 0.25)]).float())
    walks = latent_walks(model.generator(ema=False), rows=2, steps=5, seed=3)
    assert walks.images.shape == (2, 5, 3, 16, 16)


def test_conditional_noise_carries_labels(tmp_path):
    path = build_zoo_file(tmp_path / "dtd.pth", depths=(8, 8), classes=["a", "b", "c"], noise_dim=6)
    import hubconf

    model = hubconf.PGAN(weights=str(path))
    noise, labels = model.buildNoiseData(5)
    assert noise.shape == (5, 9) and labels.shape == (5, 1) and labels.dtype == torch.float32
    torch.testing.assert_close(noise[:, 6:], torch.nn.functional.one_hot(labels[:, 0].long(), 3).float())
    noise, labels = model.buildNoiseData(2, inputLabels=torch.tensor([[2], [0]]))
    assert labels[:, 0].tolist() == [2.0, 0.0] and noise[:, 6:].argmax(1).tolist() == [2, 0]
    assert model.test(noise).shape == (2, 3, 8, 8) and model.classes == ["a", "b", "c"]
    G = model.generator()
    z = noise[:, :6]
    torch.testing.assert_close(G(z, torch.tensor([2, 0])), model.test(noise, getAvG=True))


def test_pretrained_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    import hubconf

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match="celebaHQ16_december_s7_i96000-9c72988c.pth .*no network"):
        hubconf.PGAN(pretrained=True, model_name="celebAHQ-512", useGPU=False)
    with pytest.raises(UserError, match="no network"):
        hubconf.pgan(model_name="DTD")
    untrained = hubconf.PGAN(pretrained=False)
    assert untrained.getSize() == (4, 4) and untrained.test(untrained.buildNoiseData(2)[0]).shape == (2, 3, 4, 4)


def test_native_entry_points(zoo_file, tmp_path):
    import hubconf

    G = hubconf.pgan(weights=str(zoo_file))
    assert G.image_size == 16 and not G.training
    torch.testing.assert_close(G(torch.zeros(1, 12) + 1), gankit.load_generator(zoo_file)(torch.ones(1, 12)))
    with pytest.raises(UserError, match="holds a pgan generator, not sagan; use hub entry 'pgan'"):
        hubconf.sagan(weights=str(zoo_file))
    with pytest.raises(UserError, match="pass weights=PATH"):
        hubconf.sngan()
    # A gankit PGAN export behind the zoo-style PGAN object
    from gankit.models.pgan import ProgressiveGenerator

    cfg = pgan_config(image_size=8, z_dim=4, depths=(8, 4), steps_per_scale=(2, 2), fade_steps=1, fade_every=32)
    native = ProgressiveGenerator(cfg, scale=1)
    native.set_alpha(0.5)
    export = native.save_export(tmp_path / "generator.safetensors")
    model = hubconf.PGAN(weights=str(export))
    noise, _ = model.buildNoiseData(3)
    torch.testing.assert_close(model.test(noise), native(noise))
    assert model.config.depthOtherScales == [4] and model.config.alpha == 0.5
