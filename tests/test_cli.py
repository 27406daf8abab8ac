import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit.cli import main
from tests.tiny import TINY_SETS


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        run_cli(
            "train",
            "--preset",
            "sagan-digits",
            "--out",
            str(out),
            "--steps",
            "4",
            "--checkpoint-every",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            *TINY_SETS,
        )
        == 0
    )
    return out


def test_train_writes_the_documented_run_folder(trained_run):
    for name in (
        "config.yaml",
        "checkpoints/last.pt",
        "checkpoints/step_0000002.pt",
        "checkpoints/step_0000004.pt",
        "samples/step_0000004.png",
        "metrics.csv",
        "loss.png",
        "generator.safetensors",
    ):
        assert (trained_run / name).is_file(), name
    cfg = (trained_run / "config.yaml").read_text()
    assert "g_conv_dim: 8" in cfg and "steps: 4" in cfg and "preset: sagan-digits" in cfg
    grid = Image.open(trained_run / "samples/step_0000004.png")
    assert grid.width > 300 and grid.height > 300  # 10 rows x 10 columns, enlarged to be readable


def test_sample_npz_png_and_folder(trained_run, tmp_path):
    out = tmp_path / "s"
    assert (
        run_cli(
            "sample",
            "--checkpoint",
            str(trained_run),
            "--num",
            "20",
            "--balanced",
            "--seed",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
        )
        == 0
    )
    data = np.load(str(out) + ".npz")
    assert data["images"].shape == (20, 1, 16, 16) and data["images"].dtype == np.float32
    assert data["labels"].dtype == np.int64 and data["labels"].tolist() == [i % 10 for i in range(20)]
    assert data["images"].min() >= -1 and data["images"].max() <= 1
    assert Image.open(str(out) + ".png").size[0] > 0
    # same seed, same images; class id fixes labels
    assert (
        run_cli(
            "sample",
            "--checkpoint",
            str(trained_run),
            "--num",
            "20",
            "--balanced",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "again.npz"),
            "--device",
            "cpu",
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "again.npz")["images"], data["images"])
    assert (
        run_cli(
            "sample",
            "--checkpoint",
            str(trained_run),
            "--num",
            "5",
            "--class-id",
            "7",
            "--out",
            str(tmp_path / "seven.npz"),
            "--device",
            "cpu",
        )
        == 0
    )
    assert np.load(tmp_path / "seven.npz")["labels"].tolist() == [7] * 5
    folder = tmp_path / "pngs"
    folder.mkdir()
    assert (
        run_cli("sample", "--checkpoint", str(trained_run), "--num", "3", "--out", str(folder), "--device", "cpu") == 0
    )
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert Image.open(folder / "000000.png").size == (16, 16)


def test_sample_bad_inputs_are_one_line_errors(trained_run, tmp_path, capsys):
    assert run_cli("sample", "--checkpoint", str(trained_run), "--num", "0", "--out", str(tmp_path / "x")) == 2
    assert "--num must be >= 1" in capsys.readouterr().err
    assert run_cli("sample", "--checkpoint", str(trained_run), "--class-id", "10", "--out", str(tmp_path / "x")) == 2
    assert "out of range" in capsys.readouterr().err
    assert run_cli("sample", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x")) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, out, written",
    [
        (["sample", "--num", "4"], "grid.png", ["grid.png"]),
        (["sample", "--num", "4"], "both", ["both.png", "both.npz"]),
        (["sample", "--num", "3"], "pngs/", ["pngs/000002.png"]),
        (["interpolate", "--steps", "3", "--rows", "2"], "walk", ["walk.png", "walk.npz"]),
        (["attention"], "fig.png", ["fig.png"]),
        (["export"], "g.safetensors", ["g.safetensors"]),
    ],
)
def test_outputs_never_replace_existing_files_without_overwrite(trained_run, tmp_path, capsys, command, out, written):
    source = [str(trained_run)] if command[0] == "export" else ["--checkpoint", str(trained_run)]
    args = [command[0], *source, *command[1:], "--out", str(tmp_path / out)]
    for name in written:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"the user's file")
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--overwrite" in err and "\n" not in err
    assert all((tmp_path / name).read_bytes() == b"the user's file" for name in written)
    assert run_cli(*args, "--overwrite") == 0
    assert all((tmp_path / name).read_bytes() != b"the user's file" for name in written)


def test_train_refuses_existing_run_and_resumes(trained_run, capsys):
    before = (trained_run / "checkpoints/last.pt").read_bytes()
    assert run_cli("train", "--preset", "sagan-digits", "--out", str(trained_run), "--steps", "2", *TINY_SETS) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (trained_run / "checkpoints/last.pt").read_bytes() == before
    assert run_cli("train", "--resume", str(trained_run), "--steps", "6", "--no-progress") == 0
    assert (trained_run / "checkpoints/step_0000006.pt").is_file()


@pytest.mark.parametrize(
    ("gpus", "device", "message"),
    [
        (0, "cuda", "--device cuda asked for a GPU but CUDA is not available here"),
        (2, "cuda:7", "--device cuda:7: only 2 CUDA device(s) here"),
        (0, "tpu", "--device 'tpu' is not a device name"),
    ],
)
def test_unavailable_devices_are_one_line_errors(gpus, device, message, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert run_cli("train", "--preset", "sagan-digits", "--out", str(tmp_path / "r"), "--device", device) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gankit: error: {message}" or (err.startswith(f"gankit: error: {message}") and "\n" not in err)
    assert not (tmp_path / "r").exists()


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "gankit", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and gankit.__version__ in result.stdout
