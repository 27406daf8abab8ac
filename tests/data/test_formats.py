"""MNIST's IDX files and CIFAR-10's binary batches, written byte by byte, and detection from --data."""

import numpy as np
import pytest
import torch

from gankit.data import detect_dataset, open_dataset
from gankit.data.cifar import CIFAR10_CLASSES, load_cifar10
from gankit.data.mnist import load_mnist, read_idx
from gankit.errors import UserError
from tests.data_writers import save_image, solid, write_cifar_batch, write_idx, write_mnist

CPU = torch.device("cpu")


def mnist_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def cifar_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def test_idx_round_trip_plain_and_gzip(tmp_path):
    x, y = mnist_arrays(12)
    write_mnist(tmp_path, x, y)
    xt, yt = mnist_arrays(5, seed=1)
    write_mnist(tmp_path, xt, yt, prefix="t10k", gz=True)
    assert detect_dataset(tmp_path) == "mnist"
    images, labels = load_mnist(tmp_path)
    assert images.shape == (12, 1, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 0], x)
    np.testing.assert_array_equal(labels, y)
    images, labels = load_mnist(tmp_path, "test")  # the gzipped pair
    np.testing.assert_array_equal(images[:, 0], xt)
    images, labels = load_mnist(tmp_path, "all")
    assert len(images) == 17 and labels.tolist() == y.tolist() + yt.tolist()


def test_mnist_layouts_found(tmp_path):
    x, y = mnist_arrays(3)
    write_mnist(tmp_path / "MNIST" / "raw", x, y, gz=True)  # the layout other tools download to
    assert detect_dataset(tmp_path) == "mnist"
    np.testing.assert_array_equal(load_mnist(tmp_path)[0][:, 0], x)
    # --data pointing at the images file itself
    f = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    assert detect_dataset(f) == "mnist"
    np.testing.assert_array_equal(load_mnist(f)[1], y)
    with pytest.raises(UserError, match="no t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "test")


def test_idx_header_that_lies_about_its_size_is_an_error(tmp_path):
    x, y = mnist_arrays(5)
    bad = write_idx(tmp_path / "train-images-idx3-ubyte", x, dims=(6, 28, 28))
    write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    lie = r"header says 6x28x28 \(4704 bytes of data\) but the file holds 3920 bytes"
    with pytest.raises(UserError, match=lie) as e:
        read_idx(bad)
    assert "download it again" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="header says"):
        open_dataset("mnist", str(tmp_path), image_size=28, channels=1)
    # labels that do not match the images
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:4])
    with pytest.raises(UserError, match="holds 4 labels for the 5 images"):
        load_mnist(tmp_path)
    # a cut gzip stream and a file that is not IDX at all
    gz = tmp_path / "g" / "train-images-idx3-ubyte.gz"
    write_idx(gz, x)
    gz.write_bytes(gz.read_bytes()[:50])
    with pytest.raises(UserError, match="download the file again"):
        read_idx(gz)
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 zip, not idx")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


def test_mnist_for_the_model_size_and_channels(tmp_path):
    x, y = mnist_arrays(10)
    x[:, :, :] = 200
    write_mnist(tmp_path, x, y)
    native = open_dataset("auto", str(tmp_path), image_size=28, channels=1)
    assert native.kind == "mnist" and native.classes == [str(i) for i in range(10)] and len(native) == 10
    xb, yb = native.batches(batch_size=10, seed=0, device=CPU).next()
    assert sorted(yb.tolist()) == list(range(10))
    assert torch.all(xb == 200 / 127.5 - 1)
    resized = open_dataset("mnist", str(tmp_path), image_size=16, channels=3, labels="none")
    xb, yb = resized.batches(batch_size=4, seed=0, device=CPU).next()
    assert xb.shape == (4, 3, 16, 16) and yb is None and torch.all(xb == 200 / 127.5 - 1)


def test_cifar10_binary_layout_and_splits(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    x1, y1 = cifar_arrays(4)
    x1[0, 0], x1[0, 1], x1[0, 2] = 10, 20, 30  # image 0: R, G and B planes
    x1[0, 0, 3, 5] = 99  # one red pixel at row 3, column 5
    x2, y2 = cifar_arrays(3, seed=1)
    write_cifar_batch(folder / "data_batch_2.bin", x2, y2)
    write_cifar_batch(folder / "data_batch_1.bin", x1, y1)
    assert detect_dataset(tmp_path) == "cifar10" and detect_dataset(folder) == "cifar10"
    images, labels = load_cifar10(tmp_path)
    assert images.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(images[:4], x1)  # batch 1 before batch 2
    np.testing.assert_array_equal(labels, np.concatenate([y1, y2]))
    assert images[0, :, 0, 0].tolist() == [10, 20, 30] and images[0, 0, 3, 5] == 99 and images[0, 0, 5, 3] == 10
    with pytest.raises(UserError, match="no test_batch.bin"):  # the test batch is optional
        load_cifar10(tmp_path, "test")
    xt, yt = cifar_arrays(2, seed=2)
    write_cifar_batch(folder / "test_batch.bin", xt, yt)
    np.testing.assert_array_equal(load_cifar10(tmp_path, "test")[0], xt)
    assert len(load_cifar10(tmp_path, "all")[0]) == 9
    src = open_dataset("auto", str(tmp_path), image_size=32, channels=3)
    assert src.kind == "cifar10" and src.classes == list(CIFAR10_CLASSES) and len(src) == 7
    (folder / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    assert open_dataset("cifar10", str(folder), image_size=32, channels=3).classes == [f"c{i}" for i in range(10)]


def test_cifar10_damaged_files_are_errors(tmp_path):
    x, y = cifar_arrays(2)
    f = write_cifar_batch(tmp_path / "data_batch_1.bin", x, y)
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(UserError, match="not a whole number of 3073-byte CIFAR-10 records"):
        load_cifar10(tmp_path)
    write_cifar_batch(f, x, np.array([3, 42]))
    with pytest.raises(UserError, match="has label 42"):
        load_cifar10(tmp_path)


def test_detection_and_path_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist; check the path"):
        detect_dataset(tmp_path / "missing")
    with pytest.raises(UserError, match="does not exist"):
        open_dataset("auto", str(tmp_path / "missing"), image_size=8, channels=1)
    (tmp_path / "thing.dat").write_bytes(b"12345")
    with pytest.raises(UserError, match="file gankit does not recognise"):
        detect_dataset(tmp_path / "thing.dat")
    save_image(tmp_path / "imgs" / "a.png", solid(8, 8, 1))
    assert detect_dataset(tmp_path / "imgs") == "folder"
    with pytest.raises(UserError, match="no train-images-idx3-ubyte"):
        open_dataset("mnist", str(tmp_path / "imgs"), image_size=8, channels=1)
    with pytest.raises(UserError, match="no CIFAR-10 data_batch"):
        open_dataset("cifar10", str(tmp_path / "imgs"), image_size=8, channels=1)
    with pytest.raises(UserError, match="data.dataset 'imagenet' is unknown"):
        open_dataset("imagenet", str(tmp_path), image_size=8, channels=1)
