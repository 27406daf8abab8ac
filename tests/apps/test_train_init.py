"""``gankit train --init-from DIR``: a new run starting from a pretrained folder (here an imported StudioGAN SAGAN):
its first weights are the folder's, it trains, and mismatches are one line with nothing written."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.apps import train as app
from gankit.apps.importing import import_model
from gankit.cli import main
from gankit.hub.layout import PretrainedDir

RUN = Path(__file__).parents[1] / "fixtures" / "studiogan" / "studiogan_official_ckpt" / "CIFAR10-SAGAN-tiny"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_model("studiogan", RUN, tmp_path_factory.mktemp("imp") / "sagan").folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of the imported model's size and classes: 10 class folders of 32x32 RGB images."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for c in range(10):
        (root / f"c{c}").mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_init_from_starts_with_the_folders_weights_and_trains(imported: Path, data: Path, tmp_path: Path) -> None:
    _, g_state = PretrainedDir(imported).read()
    _, d_state = PretrainedDir(imported).discriminator.read()
    training = {"steps": 2, "batch_size": 4, "device": "cpu"}
    overrides = {"data": {"dataset": "auto", "path": str(data)}, "training": training}
    with contextlib.ExitStack() as held:
        trainer = app.start(preset=None, overrides=overrides, out=tmp_path / "run", held=held,
                            init_from=imported, progress=False)  # fmt: skip
        gan = trainer.gan
        assert gan.step == 0
        assert _same(gan.G.state_dict(), g_state) and _same(gan.ema.model.state_dict(), g_state)
        assert _same(gan.D.state_dict(), d_state)
        trainer.fit()
    assert trainer.step == 2
    assert not torch.equal(gan.G.state_dict()["to_image.bias"], g_state["to_image.bias"])  # it trained
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_without_discriminator_d_starts_fresh_and_says_so(imported: Path, data: Path, tmp_path: Path, capsys) -> None:
    only_g = tmp_path / "only_g"
    shutil.copytree(imported, only_g)
    shutil.rmtree(only_g / "discriminator")
    argv = ["train", "--init-from", str(only_g), "--data", str(data), "--steps", "1", "--batch-size", "2",
            "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert "no discriminator/: D starts fresh" in capsys.readouterr().err


def test_a_different_model_config_is_one_line_and_writes_nothing(imported: Path, data: Path, tmp_path: Path,
                                                                  capsys) -> None:  # fmt: skip
    out = tmp_path / "run"
    argv = ["train", "--init-from", str(imported), "--preset", "sngan-cifar10-resnet", "--data", str(data),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "differs from the folder's" in err and "model.d_conv_dim: run 128, folder 8" in err and "\n" not in err
    assert not out.exists()
    assert main(["train", "--init-from", str(imported), "--set", "model.z_dim=64", "--data", str(data),
                 "--out", str(out)]) == 2  # fmt: skip
    assert "model.z_dim: run 64, folder 32" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--init-from", str(tmp_path), "--data", str(data), "--out", str(out)]) == 2
    assert "is not a pretrained folder" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--init-from", str(imported), "--resume", str(tmp_path)]) == 2
    assert "--init-from starts a new run" in capsys.readouterr().err
