"""``gankit prepare``'s cache: exact round trip, recorded metadata, no image reads at training time, errors."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.config import DataConfig
from gankit.data import open_cache, open_dataset, prepare_cache, read_header
from gankit.data.cache import is_cache_file
from gankit.data.decode import decode_file
from gankit.data.loader import open_training_data
from gankit.errors import UserError
from gankit.io import is_temporary_name
from tests.data_writers import mixed_folder, noise, save_image, snapshot, write_mnist
from tests.tiny import sagan_config

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


def test_prepare_names_its_own_split_flag_and_the_splits_there(tmp_path):
    rng = np.random.default_rng(0)
    write_mnist(tmp_path / "mnist", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.arange(4))
    before = snapshot(tmp_path)
    for split in ("test", "all"):
        with pytest.raises(UserError) as info:
            prepare_cache(tmp_path / "mnist", tmp_path / "m.gkc", size=16, split=split, progress=False)
        where = tmp_path / "mnist"
        assert str(info.value) == f"--split {split}: {where} holds no {split} split of mnist; give --split train"
        assert "data.split" not in str(info.value)
    with pytest.raises(UserError, match="--split 'val' is not one of train, test, all"):
        prepare_cache(tmp_path / "mnist", tmp_path / "m.gkc", size=16, split="val", progress=False)
    assert snapshot(tmp_path) == before
    write_mnist(tmp_path / "mnist", rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), np.arange(2), prefix="t10k")
    assert prepare_cache(tmp_path / "mnist", tmp_path / "m.gkc", size=16, split="all", progress=False)["count"] == 6


def test_a_cache_of_another_size_suggests_only_a_size_the_model_can_have(tmp_path):
    data = photo_folder(tmp_path / "photos", 2)
    for size in (7, 32):
        prepare_cache(data, tmp_path / f"c{size}.gkc", size=size, workers=0, progress=False)
    model = sagan_config(num_classes=0, channels=3)  # 16x16, attention at 8x8
    fix = "run gankit prepare --size 16 again"
    with pytest.raises(UserError) as info:
        open_training_data(DataConfig(dataset="cache", path=str(tmp_path / "c7.gkc")), model)
    assert str(info.value).endswith(f"but the model is 16x16; {fix}")  # 7 is no SAGAN size: never suggested
    with pytest.raises(UserError) as info:
        open_training_data(DataConfig(dataset="cache", path=str(tmp_path / "c32.gkc")), model)
    assert str(info.value).endswith(f"{fix}, or set --set model.image_size=32")
    with pytest.raises(UserError) as info:  # no model to check against (evaluation): only preparing again
        open_dataset("cache", str(tmp_path / "c32.gkc"), image_size=16, channels=3)
    assert str(info.value).endswith(fix)


# ------------------------------------------------------------------------------ bounded memory, killed runs

PREPARE_KILLED_AFTER_ONE_CHUNK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import gankit.data.prepare as prepare
    decode = prepare._decode_in_order
    def slow(*args, **kwargs):  # a slow disk: after the first chunk is written, say so and take a long time
        for i, chunk in enumerate(decode(*args, **kwargs)):
            yield chunk
            if i == 0:
                Path(sys.argv[1]).write_text("one chunk written")
            time.sleep(30)
    prepare._decode_in_order = slow
    from gankit.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def grey_folder(root, n: int):
    for k in range(n):
        save_image(root / f"{k:04d}.png", noise(12, 12, seed=k, channels=1))
    return root


def test_prepare_writes_each_chunk_before_decoding_the_next(tmp_path, monkeypatch):
    import gankit.data.prepare as prepare

    data = grey_folder(tmp_path / "data", 200)
    out = tmp_path / "c.gkc"
    decode, sizes = prepare._decode_in_order, []

    def watched(*args, **kwargs):
        for chunk in decode(*args, **kwargs):
            (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".c.gkc.")]
            sizes.append(tmp.stat().st_size)  # what reached the file before this chunk was handed over
            yield chunk

    monkeypatch.setattr(prepare, "_decode_in_order", watched)
    prepare_cache(data, out, size=32, channels=3, workers=0, progress=False)
    chunk_bytes = 64 * 3 * 32 * 32
    assert len(sizes) == 4
    for k, size in enumerate(sizes):  # chunk k arrives when k chunks are in the file (less one write buffer)
        assert size >= k * chunk_bytes - 65536, (k, size)
    assert read_header(out)["count"] == 200


def test_mnist_is_resized_a_chunk_at_a_time(tmp_path, monkeypatch):
    import gankit.data.prepare as prepare

    x = np.random.default_rng(1).integers(0, 256, (250, 28, 28), dtype=np.uint8)
    write_mnist(tmp_path / "mnist", x, np.arange(250) % 10)
    fit, seen = prepare.fit_arrays, []
    monkeypatch.setattr(prepare, "CHUNK", 100)
    monkeypatch.setattr(prepare, "fit_arrays", lambda a, s, c: seen.append(len(a)) or fit(a, s, c))
    prepare_cache(tmp_path / "mnist", tmp_path / "m.gkc", size=16, channels=1, progress=False)
    assert seen == [100, 100, 50]
    images, _, _ = open_cache(tmp_path / "m.gkc")
    np.testing.assert_array_equal(images, fit(x[:, None], 16, 1))


@pytest.mark.slow
def test_a_killed_prepare_leaves_no_cache_and_the_rerun_cleans_up(tmp_path, capsys):
    data = grey_folder(tmp_path / "data", 200)
    out = tmp_path / "c.gkc"
    driver, marker = tmp_path / "slow_prepare.py", tmp_path / "marker"
    driver.write_text(PREPARE_KILLED_AFTER_ONE_CHUNK)
    foreign = tmp_path / ".other.gkc.abcdefgh.tmp"  # another file's temporary, and the user's own .tmp file
    foreign.write_bytes(b"x")
    mine = tmp_path / ".c.gkc.notes.tmp"
    mine.write_bytes(b"x")
    argv = ["prepare", "--data", str(data), "--out", str(out), "--size", "32", "--workers", "0", "--no-progress"]
    proc = subprocess.Popen([sys.executable, str(driver), str(marker), *argv], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None and time.time() < deadline, "prepare never wrote its first chunk"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    (partial,) = [p for p in tmp_path.iterdir() if is_temporary_name(p.name, out.name)]
    assert not out.exists() and partial.stat().st_size > 64 * 3 * 32 * 32  # a chunk went in, no header yet
    assert not is_cache_file(partial)
    capsys.readouterr()
    train = ["train", "--preset", "sagan-digits", "--steps", "1", "--device", "cpu", "--no-progress",
             "--out", str(tmp_path / "run")]
    for bad in (["--data", str(out)], ["--data", str(partial), "--dataset", "cache"]):
        assert main([*train, *bad]) == 2  # nothing reads the leftover as a cache
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(argv) == 0
    assert f"removed {partial}" in capsys.readouterr().err
    assert not partial.exists() and foreign.exists() and mine.exists()
    assert read_header(out)["count"] == 200
