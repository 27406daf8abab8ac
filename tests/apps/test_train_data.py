"""End to end through the CLI: training from image folders (broken files included, class sub-folders), MNIST IDX
files, CIFAR-10 binary batches and a prepared cache, the data errors, and resuming a folder run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.api import load_generator
from gankit.apps.sample import run_class_names
from gankit.cli import main
from gankit.images import save_grid
from gankit.io import load_checkpoint
from gankit.training.checkpoints import SampleGrid
from tests.data_writers import mixed_folder, noise, save_image, snapshot, write_cifar_batch, write_mnist
from tests.tiny import CELEBA64_AT_16_SETS, SNGAN_WIDTH_SETS, TINY_SETS, WIDTH_SETS


def train(*args: str) -> int:
    return main(["train", "--no-progress", "--device", "cpu", *args])


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gankit: error")]
    assert len(err) == 1
    return err[0]


@pytest.mark.slow
def test_sagan_celeba64_on_a_folder_with_broken_files(tmp_path, capsys):
    data = tmp_path / "celeba"
    files = mixed_folder(data, size=64)
    before = snapshot(data)
    run = tmp_path / "run"
    assert train("--preset", "sagan-celeba64", "--data", str(data), "--steps", "2", "--batch-size", "4",
                 "--out", str(run), *WIDTH_SETS) == 0  # fmt: skip
    err = capsys.readouterr().err
    for name in files["bad"]:
        assert f"skipped {data / name}" in err
    assert "7 images" in err and "skipped 4 bad files" in err
    assert snapshot(data) == before  # the user's folder is byte-for-byte unchanged
    assert (run / "generator.safetensors").is_file() and not (run / "classes.json").exists()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["data"]["dataset"] == "folder" and state["config"]["data"]["path"] == str(data.resolve())
    assert state["data"]["sampler"]["epoch"] == 1 and state["data"]["sampler"]["index"] == 1  # 8 images of 7


def test_class_folders_train_a_conditional_model_and_write_classes_json(tmp_path, capsys):
    data = tmp_path / "pets"
    for k, name in enumerate(["zebra", "ant", "moose"]):
        for i in range(3):
            save_image(data / name / f"{i}.png", noise(20, 18, seed=10 * k + i))
    before = snapshot(data)
    run = tmp_path / "run"
    sets = ["--set", "model.num_classes=3", "--set", "model.channels=3", "--set", "training.tensorboard=false"]
    assert train("--preset", "sagan-digits", "--data", str(data), "--steps", "1", "--out", str(run),
                 "--labels", "subdirs", *TINY_SETS, *sets) == 0  # fmt: skip
    classes = json.loads((run / "classes.json").read_text())
    assert classes["classes"] == ["ant", "moose", "zebra"] and classes["num_classes"] == 3
    assert snapshot(data) == before
    capsys.readouterr()
    # the preset's 10 classes do not match the 3 folders
    assert train("--preset", "sagan-digits", "--data", str(data), "--steps", "1", "--out", str(tmp_path / "r2"),
                 *TINY_SETS, "--set", "model.channels=3") == 2  # fmt: skip
    assert "model.num_classes is 10 but the data has 3 classes" in one_line_error(capsys)
    # an unconditional model cannot use the labels asked for
    assert train("--preset", "sagan-celeba64", "--data", str(data), "--labels", "subdirs", "--steps", "1",
                 "--out", str(tmp_path / "r3"), *CELEBA64_AT_16_SETS) == 2  # fmt: skip
    assert "found 3 classes but the model is unconditional; add --set model.num_classes=3" in one_line_error(capsys)


def test_grids_of_a_class_folder_run_show_the_class_names(tmp_path, capsys):
    data = tmp_path / "pets"
    for k, name in enumerate(["zebra", "ant", "moose"]):
        for i in range(2):
            save_image(data / name / f"{i}.png", noise(20, 18, seed=10 * k + i))
    run = tmp_path / "run"
    sets = ["--set", "model.num_classes=3", "--set", "model.channels=3", "--set", "training.tensorboard=false"]
    assert train("--preset", "sagan-digits", "--data", str(data), "--steps", "1", "--out", str(run),
                 "--labels", "subdirs", *TINY_SETS, *sets) == 0  # fmt: skip
    names = ["ant", "moose", "zebra"]

    def pixels(png) -> np.ndarray:  # below the band of the title
        return np.asarray(Image.open(png).convert("RGB"))[24:]

    def drawn(rows: list[str] | None) -> np.ndarray:  # a one-column grid of three rows, labelled ``rows``
        path = tmp_path / "expected.png"
        save_grid(torch.zeros(3, 3, 16, 16), path, 1, row_labels=rows)
        return pixels(path)

    width = drawn(names).shape[1] - drawn(None).shape[1]  # the margin the labels are drawn in
    assert width > drawn(["0", "1", "2"]).shape[1] - drawn(None).shape[1]  # the names are wider than the ids
    expected = drawn(names)[:, :width]
    np.testing.assert_array_equal(pixels(run / "samples" / "step_0000001.png")[:, :width], expected)
    # gankit sample --balanced of the run folder, or of a checkpoint inside it, labels its rows the same way
    for source in (run, run / "checkpoints" / "last.pt"):
        out = tmp_path / f"{source.name}.png"
        assert main(["sample", "--checkpoint", str(source), "--balanced", "--num", "6", "--out", str(out),
                     "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
        np.testing.assert_array_equal(pixels(out)[:, :width], expected)
    assert run_class_names(run) == names and run_class_names(run / "generator.safetensors") == names
    assert run_class_names(data) is None and run_class_names(tmp_path / "user-name") is None
    G = load_generator(run)
    assert SampleGrid(G, 0, torch.device("cpu"), names).row_labels == names
    assert SampleGrid(G, 0, torch.device("cpu"), ["a", "b"]).row_labels == ["0", "1", "2"]  # not one per class


def test_sngan_mnist_preset_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    write_mnist(tmp_path / "mnist", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20) % 10, gz=True)
    run = tmp_path / "run"
    assert train("--preset", "sngan-mnist", "--data", str(tmp_path / "mnist"), "--steps", "2", "--batch-size", "4",
                 "--out", str(run), *SNGAN_WIDTH_SETS) == 0  # fmt: skip
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["data"]["dataset"] == "mnist" and state["data"]["sampler"]["index"] == 8


def test_sngan_cifar10_preset_reads_binary_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_batch(folder / "data_batch_1.bin", rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8),
                      np.arange(12) % 10)  # fmt: skip
    run = tmp_path / "run"
    assert train("--preset", "sngan-cifar10", "--data", str(tmp_path), "--steps", "1", "--batch-size", "2",
                 "--out", str(run), *SNGAN_WIDTH_SETS) == 0  # fmt: skip
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["data"]["dataset"] == "cifar10" and state["data"]["sampler"]["index"] == 10  # 5 D steps


def test_prepare_then_train_from_the_cache(tmp_path, capsys):
    data = tmp_path / "photos"
    for k in range(6):
        save_image(data / ("a" if k < 3 else "b") / f"{k}.jpg", noise(24, 20, seed=k), quality=90)
    before = snapshot(data)
    cache = tmp_path / "photos16.gkc"
    assert main(["prepare", "--data", str(data), "--size", "16", "--channels", "1", "--labels", "subdirs",
                 "--out", str(cache), "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    assert f"6 images, 2 classes; train with --data {cache}" in capsys.readouterr().out
    assert snapshot(data) == before
    run = tmp_path / "run"
    assert train("--preset", "sagan-digits", "--data", str(cache), "--steps", "1", "--out", str(run),
                 *TINY_SETS, "--set", "model.num_classes=2") == 0  # fmt: skip
    assert json.loads((run / "classes.json").read_text())["classes"] == ["a", "b"]
    capsys.readouterr()
    assert train("--preset", "sagan-celeba64", "--data", str(cache), "--steps", "1", "--out", str(tmp_path / "r")) == 2
    assert "holds 16x16 images but the model is 64x64; run gankit prepare --size 64" in one_line_error(capsys)


def test_data_errors_are_one_line(tmp_path, capsys):
    data = tmp_path / "mixed"
    mixed_folder(data, size=16)
    assert train("--preset", "sagan-celeba64", "--data", str(data), "--strict", "--out", str(tmp_path / "r1"),
                 *CELEBA64_AT_16_SETS) == 2  # fmt: skip
    assert f"{data / 'cut.jpg'}: corrupt or truncated image" in one_line_error(capsys)
    assert train("--preset", "sagan-celeba64", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2")) == 2
    assert "does not exist; check the path" in one_line_error(capsys)
    assert train("--preset", "sagan-celeba64", "--out", str(tmp_path / "r3")) == 2
    assert "needs a path: pass --data PATH" in one_line_error(capsys)
    r4 = str(tmp_path / "r4")
    assert train("--preset", "sagan-digits", "--data", str(data), "--dataset", "mnist", "--out", r4) == 2
    assert "no train-images-idx3-ubyte" in one_line_error(capsys)


def test_resuming_a_folder_run_continues_its_data_order(tmp_path):
    data = tmp_path / "photos"
    for k in range(5):
        save_image(data / f"{k}.jpg", noise(20, 20, seed=k), quality=90)
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--preset", "sagan-celeba64", "--data", str(data), "--checkpoint-every", "2", *CELEBA64_AT_16_SETS]
    assert train(*common, "--steps", "3", "--out", str(one)) == 0
    assert train(*common, "--steps", "2", "--out", str(two)) == 0
    assert main(["train", "--resume", str(two), "--steps", "3", "--no-progress"]) == 0
    a, b = load_checkpoint(one / "checkpoints/last.pt"), load_checkpoint(two / "checkpoints/last.pt")
    assert a["data"] == b["data"] and a["data"]["sampler"]["epoch"] == 4  # 24 images of 5: epoch 4, index 4
    for k in a["G"]:
        assert torch.equal(a["G"][k], b["G"][k]), k  # the same real batches in the same order


def test_sagan_folder64_small_trains_a_small_folder_with_ada(tmp_path):
    """The small-folder preset: 64x64 from a folder, ADA on D's inputs (its p and r_t logged and checkpointed)."""
    data = tmp_path / "few"
    for k in range(6):
        save_image(data / f"{k}.png", noise(70, 64, seed=k))
    run = tmp_path / "run"
    assert train("--preset", "sagan-folder64-small", "--data", str(data), "--steps", "2", "--batch-size", "4",
                 "--out", str(run), *WIDTH_SETS) == 0  # fmt: skip
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    model, training = state["config"]["model"], state["config"]["training"]
    assert (model["image_size"], model["channels"], training["augment"]) == (64, 3, "ada")
    assert state["augment"]["kind"] == "ada" and 0.0 <= state["augment"]["p"] <= 1.0
    assert "ada_p" in (run / "metrics.csv").read_text().splitlines()[0].split(",")
