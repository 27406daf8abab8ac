"""``gankit prepare``'s cache: exact round trip, recorded metadata, no image reads at training time, errors."""

import numpy as np
import pytest
import torch

from gankit.data import open_cache, open_dataset, prepare_cache, read_header
from gankit.data.decode import decode_file
from gankit.errors import UserError
from tests.data_writers import mixed_folder, noise, save_image, snapshot, write_mnist

CPU = torch.device("cpu")


def photo_folder(root, n: int = 5):
    for k in range(n):
        save_image(root / ("cats" if k % 2 else "dogs") / f"{k}.jpg", noise(22, 18, seed=k), quality=90)
    return root


def test_cache_holds_exactly_the_decoded_images_and_its_metadata(tmp_path):
    data = photo_folder(tmp_path / "photos")
    before = snapshot(data)
    out = tmp_path / "photos16.gkc"
    header = prepare_cache(data, out, size=16, channels=3, labels=True, workers=0, progress=False)
    assert snapshot(data) == before  # nothing written under the data path
    assert not (tmp_path / "photos16.gkc.partial").exists()
    assert header == read_header(out)
    assert header["source"] == str(data.resolve()) and header["size"] == 16 and header["channels"] == 3
    assert header["count"] == 5 and header["skipped"] == 0 and header["classes"] == ["cats", "dogs"]
    assert header["images_offset"] % 4096 == 0
    images, labels, _ = open_cache(out)
    assert isinstance(images, np.memmap) and images.shape == (5, 3, 16, 16)
    files = ["cats/1.jpg", "cats/3.jpg", "dogs/0.jpg", "dogs/2.jpg", "dogs/4.jpg"]
    for i, f in enumerate(files):
        np.testing.assert_array_equal(images[i], decode_file(data / f, 16, 3))
    assert labels.tolist() == [0, 0, 1, 1, 1]


def test_parallel_prepare_equals_serial_and_skips_bad_files(tmp_path, capsys):
    data = tmp_path / "mixed"
    files = mixed_folder(data, size=16)
    h0 = prepare_cache(data, tmp_path / "a.gkc", size=16, workers=0, progress=False)
    h1 = prepare_cache(data, tmp_path / "b.gkc", size=16, workers=2, progress=False)
    assert h0["count"] == h1["count"] == len(files["good"]) and h0["skipped"] == 4
    assert (tmp_path / "a.gkc").read_bytes()[4096:] == (tmp_path / "b.gkc").read_bytes()[4096:]
    assert "skipped" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"cut\.jpg.*drop --strict"):
        prepare_cache(data, tmp_path / "c.gkc", size=16, strict=True, workers=0, progress=False)
    assert not (tmp_path / "c.gkc").exists() and not (tmp_path / "c.gkc.partial").exists()


def test_training_from_the_cache_reads_no_image_files(tmp_path, monkeypatch):
    data = photo_folder(tmp_path / "photos")
    out = tmp_path / "c.gkc"
    prepare_cache(data, out, size=16, workers=0, progress=False)
    expected = open_dataset("folder", str(data), image_size=16, channels=3, num_workers=0)
    want = expected.batches(batch_size=3, seed=7, device=CPU).next()[0]
    data.rename(tmp_path / "gone")  # the source is not needed any more

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image file was opened")

    monkeypatch.setattr("PIL.Image.open", no_decoding)
    src = open_dataset("auto", str(out), image_size=16, channels=3)
    assert src.kind == "cache" and len(src) == 5 and src.classes is None
    x, y = src.batches(batch_size=3, seed=7, device=CPU).next()
    torch.testing.assert_close(x, want, rtol=0, atol=0)  # same sampler order, same pixels as decoding
    assert y is None


def test_cache_of_the_wrong_size_or_channels_is_a_clear_error(tmp_path):
    data = photo_folder(tmp_path / "photos", 2)
    out = tmp_path / "c.gkc"
    prepare_cache(data, out, size=16, workers=0, progress=False)
    with pytest.raises(UserError, match=r"holds 16x16 images but the model is 32x32; run gankit prepare --size 32"):
        open_dataset("auto", str(out), image_size=32, channels=3)
    with pytest.raises(UserError, match="3-channel images but the model has 1; run gankit prepare --channels 1"):
        open_dataset("cache", str(out), image_size=16, channels=1)
    cut = tmp_path / "cut.gkc"
    cut.write_bytes(out.read_bytes()[:5000])
    with pytest.raises(UserError, match="is truncated"):
        open_dataset("cache", str(cut), image_size=16, channels=3)
    with pytest.raises(UserError, match="is not a gankit cache"):
        open_dataset("cache", str(data / "dogs" / "0.jpg"), image_size=16, channels=3)


def test_prepare_refuses_to_write_into_the_data_or_over_a_file(tmp_path):
    data = photo_folder(tmp_path / "photos", 2)
    with pytest.raises(UserError, match="inside the data folder"):
        prepare_cache(data, data / "cats" / "c.gkc", size=16, workers=0)
    (tmp_path / "taken.gkc").write_text("mine")
    with pytest.raises(UserError, match="already exists; choose another path or add --overwrite"):
        prepare_cache(data, tmp_path / "taken.gkc", size=16, workers=0)
    assert (tmp_path / "taken.gkc").read_text() == "mine"
    prepare_cache(data, tmp_path / "taken.gkc", size=16, workers=0, overwrite=True, progress=False)
    assert read_header(tmp_path / "taken.gkc")["count"] == 2


def test_mnist_to_cache_keeps_labels(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    y = np.array([3, 1, 4, 1, 5, 9], np.uint8)
    write_mnist(tmp_path / "mnist", x, y, gz=True)
    header = prepare_cache(tmp_path / "mnist", tmp_path / "m.gkc", size=28, channels=1, progress=False)
    assert header["dataset"] == "mnist" and header["classes"] == [str(i) for i in range(10)]
    images, labels, _ = open_cache(tmp_path / "m.gkc")
    np.testing.assert_array_equal(images[:, 0], x)
    assert labels.tolist() == y.tolist()
