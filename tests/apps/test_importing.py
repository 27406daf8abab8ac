"""``gankit import``: StudioGAN and BigGAN-PyTorch checkpoints become pretrained folders that the other commands and
``gankit.load_generator`` read unchanged; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import gankit
from gankit.cli import main
from gankit.hub import load_discriminator

FIXTURES = Path(__file__).parents[1] / "fixtures"
STUDIOGAN = FIXTURES / "studiogan" / "studiogan_official_ckpt"
REF = load_file(str(FIXTURES / "studiogan" / "reference.safetensors"))


def test_import_studiogan_writes_a_pretrained_folder_that_samples(tmp_path: Path, capsys) -> None:
    out = tmp_path / "imported"
    run = STUDIOGAN / "CIFAR10-SAGAN-tiny"
    assert main(["import", "studiogan", str(run), "--out", str(out), "--ema"]) == 0
    assert "imported studiogan sngan generator and its discriminator" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "discriminator", "model.safetensors",
                                                    "samples.png"]  # fmt: skip
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "mit" and "studiogan" in front["tags"]
    assert "PyTorch-StudioGAN" in card and "model=G_ema-best-weights-step=2.pth" in card and "10.35" in card
    # the folder's generator is the best G_ema, as StudioGAN computes it
    G = gankit.load_generator(out)
    p = "CIFAR10-SAGAN-tiny/best"
    with torch.no_grad():
        torch.testing.assert_close(G(REF[f"{p}/z"], REF[f"{p}/y"]), REF[f"{p}/G_ema"], atol=1e-5, rtol=0)
        D = load_discriminator(out)
        torch.testing.assert_close(D(REF[f"{p}/x"], REF[f"{p}/y"]), REF[f"{p}/D_x"], atol=1e-5, rtol=1e-6)
    assert json.loads((out / "config.json").read_text())["resnet_layout"] == "studiogan"
    grid = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(out), "--num", "4", "--class-id", "3", "--out", str(grid)]) == 0
    assert Image.open(grid).size[0] >= 32


def test_import_biggan_pytorch(tmp_path: Path) -> None:
    out = tmp_path / "bg"
    assert main(["import", "biggan-pytorch", str(FIXTURES / "biggan_pytorch" / "c32"), "--out", str(out)]) == 0
    assert (out / "discriminator" / "model.safetensors").is_file()
    assert gankit.load_generator(out).config.family == "biggan"
    assert "BigGAN-PyTorch" in (out / "README.md").read_text()
    # projection (with the imported discriminator's features) and directions work on the imported model
    G = gankit.load_generator(out)
    with torch.no_grad():
        target = G(G.sample_latents(1, generator=torch.Generator().manual_seed(0)), torch.tensor([2]))[0]
    pixels = ((target.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(tmp_path / "t.png")
    assert main(["project", "--checkpoint", str(out), str(tmp_path / "t.png"), "--out", str(tmp_path / "p"),
                 "--steps", "4", "--restarts", "1", "--loss", "dfeat", "--no-progress"]) == 0
    assert (tmp_path / "p.safetensors").is_file() and (tmp_path / "p.png").is_file()
    assert main(["directions", "--checkpoint", str(out), "--method", "sefa", "--num", "3",
                 "--out", str(tmp_path / "d.safetensors")]) == 0
    assert main(["interpolate", "--checkpoint", str(out), "--latents", str(tmp_path / "p.safetensors"),
                 "--direction", str(tmp_path / "d.safetensors"), "--steps", "3", "--out", str(tmp_path / "e.npz")]) == 0


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, capsys) -> None:
    run = STUDIOGAN / "CIFAR10-SNGAN-tiny"
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("x")
    assert main(["import", "studiogan", str(run), "--out", str(used)]) == 2
    assert "not empty" in capsys.readouterr().err and sorted(p.name for p in used.iterdir()) == ["keep.txt"]
    assert main(["import", "studiogan", str(run), "--out", str(used), "--overwrite"]) == 0
    assert (used / "keep.txt").is_file() and (used / "model.safetensors").is_file()
    capsys.readouterr()
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    g = next(broken.glob("model=G-*"))
    g.write_bytes(g.read_bytes()[:1000])
    cases = [["import", "studiogan", str(broken)], ["import", "studiogan", str(run), "--ema"],
             ["import", "biggan-pytorch", str(run)], ["import", "studiogan", str(tmp_path / "missing")]]  # fmt: skip
    for argv in cases:
        out = tmp_path / "new"
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gankit: error:") and "\n" not in err, err
        assert not out.exists()


def test_push_uploads_an_imported_folder_as_it_is(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.test_hub import FakeHub

    out = tmp_path / "imported"
    assert main(["import", "studiogan", str(STUDIOGAN / "CIFAR10-SNGAN-tiny"), "--out", str(out)]) == 0
    fake = FakeHub(monkeypatch)
    argv = ["push", str(out), "--repo-id", "user/sngan-studiogan", "--token", "hf_fake", "--include-discriminator"]
    assert main(argv) == 0
    assert [name for name, _ in fake.calls] == ["create_repo", "upload_folder"]
    assert sorted(fake.files) == ["README.md", "config.json", "discriminator/config.json",
                                  "discriminator/model.safetensors", "model.safetensors", "samples.png"]  # fmt: skip
    assert fake.files["model.safetensors"] == (out / "model.safetensors").read_bytes()
    card = fake.files["README.md"].decode()
    assert 'gankit.load_generator("user/sngan-studiogan")' in card and "PyTorch-StudioGAN" in card
    assert main([*argv[:6], "--license", "mit"]) == 2
    assert "--license is for run folders" in capsys.readouterr().err
