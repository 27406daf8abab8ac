"""Image folders: listing, class folders, bad files, errors, and the worker-process batch stream."""

import os

import numpy as np
import pytest
import torch

from gankit.data import FolderBatches, open_dataset
from gankit.data.decode import decode_file
from gankit.data.folder import FolderDataset, scan_folder
from gankit.errors import UserError
from tests.data_writers import mixed_folder, noise, save_image, solid

CPU = torch.device("cpu")


def colour_folder(root, n: int, size: int = 10) -> list[int]:
    """``n`` solid grey images ``k.png`` whose grey level 10 * (k + 1) tells which file a pixel came from."""
    for k in range(n):
        save_image(root / f"{k:03d}.png", solid(size + 2, size, 10 * (k + 1)))
    return [10 * (k + 1) for k in range(n)]


def test_listing_is_deep_sorted_case_insensitive_and_skips_hidden(tmp_path, capsys):
    names = ["b.JPG", "a/z.Png", "a/b/c/deep.tiff", "a/b/x.jpeg", "c.bmp", "A.webp", "d/e.TIF"]
    for i, name in enumerate(names):
        save_image(tmp_path / name, noise(12, 12, seed=i))
    save_image(tmp_path / ".hidden" / "h.png", noise(12, 12))
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01junk")
    index = scan_folder(tmp_path, size=8)
    # sorted part by part in code point order: "A.webp" < "a/..." < "b.JPG" < ...
    assert index.files == ["A.webp", "a/b/c/deep.tiff", "a/b/x.jpeg", "a/z.Png", "b.JPG", "c.bmp", "d/e.TIF"]
    assert index.labels is None and index.skipped == []
    err = capsys.readouterr().err
    assert "warning" not in err and "7 images" in err
    assert scan_folder(tmp_path, size=8, quiet=True).files == index.files  # deterministic


def test_class_folders_give_sorted_class_ids(tmp_path):
    for cls, grey in (("zebra", 200), ("cat", 50), ("dog", 120)):
        for i in range(2):
            save_image(tmp_path / cls / ("nested" if i else "") / f"{i}.png", solid(10, 10, grey))
    (tmp_path / "README.txt").write_text("class folders")  # a stray file at the top is skipped, not a class
    index = scan_folder(tmp_path, size=8, labels=True, quiet=True)
    assert index.classes == ["cat", "dog", "zebra"]
    assert index.files == ["cat/0.png", "cat/nested/1.png", "dog/0.png", "dog/nested/1.png", "zebra/0.png",
                           "zebra/nested/1.png"]  # fmt: skip
    assert index.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # the batches pair every image with its own class
    batches = FolderBatches(FolderDataset(index, 8, 1), batch_size=12, seed=0, device=CPU)
    x, y = batches.next()
    grey = {0: 50, 1: 120, 2: 200}
    expected = torch.tensor([grey[int(c)] / 127.5 - 1 for c in y])
    torch.testing.assert_close(x[:, 0, 4, 4], expected)


def test_bad_files_are_skipped_with_a_warning_naming_each(tmp_path, capsys):
    files = mixed_folder(tmp_path, size=16)
    index = scan_folder(tmp_path, size=16)
    assert index.files == files["good"]
    assert [p for p, _ in index.skipped] == files["bad"]
    reasons = dict(index.skipped)
    assert "truncated" in reasons["cut.jpg"] and reasons["empty.jpg"] == "zero-byte file"
    assert "not an image" in reasons["fake.png"] and ".txt" in reasons["notes.txt"]
    err = capsys.readouterr().err.splitlines()
    for name in files["bad"]:
        assert sum(name in line and "skipped" in line for line in err) == 1
    assert any("7 images" in line and "skipped 4 bad files" in line for line in err)


def test_under_torchrun_only_rank_0_warns(tmp_path, capsys, monkeypatch):
    files = mixed_folder(tmp_path, size=16)
    monkeypatch.setenv("RANK", "1")
    index = scan_folder(tmp_path, size=16)
    assert [p for p, _ in index.skipped] == files["bad"]  # the same files are skipped ...
    assert capsys.readouterr().err == ""  # ... but only rank 0 says so
    monkeypatch.setenv("RANK", "0")
    scan_folder(tmp_path, size=16)
    assert "skipped 4 bad files" in capsys.readouterr().err


def test_strict_makes_the_first_bad_file_an_error(tmp_path):
    mixed_folder(tmp_path, size=16)
    with pytest.raises(UserError, match=r"cut\.jpg: corrupt or truncated.*drop --strict") as info:
        scan_folder(tmp_path, size=16, strict=True)
    assert "\n" not in str(info.value)


def test_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="does not exist; check the path"):
        scan_folder(tmp_path / "nope", size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is empty; put the training images"):
        scan_folder(tmp_path / "empty", size=8)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="holds 1 files but no images"):
        scan_folder(tmp_path / "docs", size=8)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="none of the 1 image files"):
        scan_folder(broken, size=8, quiet=True)


def test_class_folder_errors(tmp_path):
    save_image(tmp_path / "cat" / "a.png", solid(8, 8, 1))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "bad.png").write_bytes(b"")  # only a broken file: no usable images
    with pytest.raises(UserError, match=r"class folder .*dog has no usable images; add images"):
        scan_folder(tmp_path, size=8, labels=True, quiet=True)
    flat = tmp_path / "flat"
    save_image(flat / "a.png", solid(8, 8, 1))
    with pytest.raises(UserError, match="need one sub-folder per class"):
        scan_folder(flat, size=8, labels=True)
    save_image(flat / "sub" / "b.png", solid(8, 8, 1))
    with pytest.raises(UserError, match=r"a\.png is not inside one"):
        scan_folder(flat, size=8, labels=True)


def test_smaller_images_are_upscaled_with_a_warning_or_refused_when_strict(tmp_path, capsys):
    save_image(tmp_path / "big.png", solid(20, 20, 30))
    save_image(tmp_path / "small.png", solid(6, 9, 90))
    index = scan_folder(tmp_path, size=16)
    assert index.files == ["big.png", "small.png"] and index.upscaled == ["small.png"]
    assert "upscaling" in capsys.readouterr().err
    out = FolderDataset(index, 16, 1).decode(1)
    assert out.shape == (1, 16, 16) and np.all(out == 90)
    with pytest.raises(UserError, match=r"small\.png is 9x6, smaller than the model's 16x16; remove it"):
        scan_folder(tmp_path, size=16, strict=True)


def test_batches_are_the_decoded_images_and_workers_change_nothing(tmp_path):
    for k in range(7):
        save_image(tmp_path / f"{k}.jpg", noise(14, 12, seed=k), quality=90)
    index = scan_folder(tmp_path, size=8, quiet=True)
    ds = FolderDataset(index, 8, 3)
    inline = FolderBatches(ds, batch_size=3, seed=5, device=CPU, num_workers=0)
    pooled = FolderBatches(ds, batch_size=3, seed=5, device=CPU, num_workers=1)
    order = torch.Generator().manual_seed(5)
    first = torch.randperm(7, generator=order)[:3]  # epoch 0's permutation (InfiniteSampler's rule)
    for step in range(5):  # crosses an epoch boundary
        a, ya = inline.next()
        b, yb = pooled.next()
        assert a.dtype == torch.float32 and a.shape == (3, 3, 8, 8) and ya is None and yb is None
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        if step == 0:
            want = np.stack([decode_file(tmp_path / f"{int(i)}.jpg", 8, 3) for i in first])
            torch.testing.assert_close(a, torch.from_numpy(want).float() / 127.5 - 1, rtol=0, atol=0)
    assert a.min() >= -1 and a.max() <= 1
    pooled.close()


def test_resume_continues_the_same_sequence_despite_prefetch(tmp_path):
    colour_folder(tmp_path, 9)
    ds = FolderDataset(scan_folder(tmp_path, size=8, quiet=True), 8, 1)
    a = FolderBatches(ds, batch_size=4, seed=1, device=CPU, num_workers=1, prefetch=4)
    for _ in range(3):
        a.next()
    state = a.state_dict()  # workers have decoded batches ahead; the state is of what was consumed
    assert state["sampler"]["epoch"] == 1 and state["sampler"]["index"] == 3  # 12 images of 9: one epoch + 3
    expected = [a.next()[0] for _ in range(4)]
    b = FolderBatches(ds, batch_size=4, seed=1, device=CPU, num_workers=1)
    b.load_state_dict(state)
    for want in expected:
        torch.testing.assert_close(b.next()[0], want, rtol=0, atol=0)
    # loading into a stream that already ran also rewinds it
    a.load_state_dict(state)
    torch.testing.assert_close(a.next()[0], expected[0], rtol=0, atol=0)
    a.close()
    b.close()


def test_ranks_see_disjoint_shards(tmp_path):
    greys = colour_folder(tmp_path, 8)
    ds = FolderDataset(scan_folder(tmp_path, size=8, quiet=True), 8, 1)
    seen = []
    for rank in (0, 1):
        x, _ = FolderBatches(ds, batch_size=4, seed=0, device=CPU, rank=rank, world_size=2).next()
        seen.append({round(float((v + 1) * 127.5)) for v in x[:, 0, 0, 0]})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(greys)


def test_a_file_that_fails_later_is_replaced_and_reported(tmp_path, capsys):
    colour_folder(tmp_path, 4)
    index = scan_folder(tmp_path, size=8, quiet=True)
    (tmp_path / "001.png").unlink()  # gone between the listing and the decoding
    ds = FolderDataset(index, 8, 1)
    batches = FolderBatches(ds, batch_size=8, seed=0, device=CPU)
    x, _ = batches.next()  # two epochs of 4: image 1 is replaced by image 2 each time
    greys = sorted(round(float((v + 1) * 127.5)) for v in x[:, 0, 0, 0])
    assert greys == [10, 10, 30, 30, 30, 30, 40, 40]
    assert list(batches.failed) == [str(tmp_path / "001.png")]
    assert capsys.readouterr().err.count("001.png") == 1  # warned once
    strict = FolderBatches(ds, batch_size=8, seed=0, device=CPU, strict=True)
    with pytest.raises(UserError, match=r"001\.png: disappeared.*drop --strict"):
        strict.next()


def test_open_dataset_auto_detects_a_folder(tmp_path):
    colour_folder(tmp_path, 3)
    src = open_dataset("auto", str(tmp_path), image_size=8, channels=3, num_workers=0)
    assert src.kind == "folder" and len(src) == 3 and src.classes is None
    x, y = src.batches(batch_size=2, seed=0, device=CPU).next()
    assert x.shape == (2, 3, 8, 8) and y is None
    with pytest.raises(UserError, match="needs a path: pass --data"):
        open_dataset("folder", None, image_size=8, channels=3)
    with pytest.raises(UserError, match="--labels subdirs is for image folders"):
        open_dataset("digits", None, image_size=8, channels=1, labels="subdirs")


def test_a_folder_that_vanished_is_a_one_line_error_even_from_a_worker(tmp_path):
    colour_folder(tmp_path, 2)
    ds = FolderDataset(scan_folder(tmp_path, size=8, quiet=True), 8, 1)
    for f in tmp_path.glob("*.png"):
        f.unlink()
    batches = FolderBatches(ds, batch_size=2, seed=0, device=CPU, num_workers=1)
    with pytest.raises(UserError, match="none of the images under .* can be decoded any more") as info:
        batches.next()
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    batches.close()


def test_bad_data_settings_are_user_errors(tmp_path):
    colour_folder(tmp_path, 1)
    with pytest.raises(UserError, match="data.num_workers must be an integer >= 0"):
        open_dataset("folder", str(tmp_path), image_size=8, channels=1, num_workers=-1)
    with pytest.raises(UserError, match="--labels 'classes' is unknown; use subdirs"):
        open_dataset("folder", str(tmp_path), image_size=8, channels=1, labels="classes")


# ------------------------------------------------------------------------------------------- symbolic links


def test_folder_links_are_never_followed_so_a_loop_or_a_way_out_reads_nothing_outside(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    save_image(outside / "other_run.png", noise(12, 12, seed=9))
    data = tmp_path / "data"
    save_image(data / "a" / "0.png", noise(12, 12, seed=1))
    save_image(data / "b.png", noise(12, 12, seed=2))
    (data / "a" / "loop").symlink_to("..")  # a/loop -> data itself
    (data / "up").symlink_to("..", target_is_directory=True)  # -> tmp_path: the parent and its other folders
    (data / "out").symlink_to(outside)
    (data / "alias").symlink_to(data / "a")  # a folder inside, already read where it is
    index = scan_folder(data, size=8)
    assert index.files == ["a/0.png", "b.png"] and index.skipped == []
    err = capsys.readouterr().err
    for link in ("a/loop", "up", "out", "alias"):
        assert f"left out {data / link}: a link to the folder" in err
    assert "other_run" not in err and "2 images" in err
    assert scan_folder(data, size=8, strict=True, quiet=True).files == index.files  # not errors, even strict
    # a folder that holds nothing but a link says so in its one-line error
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "out").symlink_to(outside)
    with pytest.raises(UserError, match=r"is empty.*out is a link to the folder .*elsewhere, not followed"):
        scan_folder(lonely, size=8)


def test_file_links_are_followed_and_one_file_counts_once(tmp_path, capsys):
    outside = tmp_path / "library"
    save_image(outside / "linked.png", noise(12, 12, seed=3))
    data = tmp_path / "data"
    real = save_image(data / "real.png", noise(12, 12, seed=4))
    (data / "x_link_to_real.png").symlink_to(real)
    (data / "sub").mkdir()
    (data / "sub" / "again.png").symlink_to("../real.png")
    (data / "from_outside.png").symlink_to(outside / "linked.png")  # followed: people link images in
    (data / "hard.png").hardlink_to(outside / "linked.png")  # the same file as from_outside.png
    index = scan_folder(data, size=8)
    # sorted part by part; a file reached twice is kept at its first path in that order
    assert index.files == ["from_outside.png", "real.png"]
    err = capsys.readouterr().err
    assert f"left out {data / 'hard.png'}: the same file as from_outside.png, counted once" in err
    assert f"left out {data / 'sub/again.png'}: the same file as real.png, counted once" in err
    assert f"left out {data / 'x_link_to_real.png'}: the same file as real.png, counted once" in err
    decoded = FolderDataset(index, 8, 3)
    np.testing.assert_array_equal(decoded.decode(0), decode_file(str(outside / "linked.png"), 8, 3))


def test_broken_links_and_special_files_are_bad_files(tmp_path, capsys):
    save_image(tmp_path / "good.png", noise(12, 12))
    (tmp_path / "broken.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "pipe.png")  # reading it would block forever
    index = scan_folder(tmp_path, size=8)
    assert index.files == ["good.png"]
    assert index.skipped == [("broken.png", f"a broken link to {tmp_path / 'gone.png'}"),
                             ("pipe.png", "not a regular file")]
    with pytest.raises(UserError, match=r"broken\.png: a broken link to .*gone\.png; remove or replace it"):
        scan_folder(tmp_path, size=8, strict=True)


def test_class_folders_that_are_links_are_no_classes(tmp_path):
    outside = tmp_path / "other"
    save_image(outside / "x.png", solid(10, 10, 9))
    data = tmp_path / "data"
    for cls in ("cat", "dog"):
        save_image(data / cls / "0.png", solid(10, 10, 50))
    (data / "zebra").symlink_to(outside)
    index = scan_folder(data, size=8, labels=True, quiet=True)
    assert index.classes == ["cat", "dog"] and index.files == ["cat/0.png", "dog/0.png"]
