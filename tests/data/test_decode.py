"""One image file -> the model's uint8 (C, S, S): geometry, modes, EXIF orientation, and the file checks."""

import numpy as np
import pytest
from PIL import Image

from gankit.data.decode import BadImage, check_file, decode_file, fit_arrays, resized_size
from tests.data_writers import noise, png_rgb16, save_image, solid, truncate


def rows_image(h: int, w: int) -> np.ndarray:
    """Grey image whose row r has value 10 * r (so a crop's offset can be read back)."""
    return (np.arange(h, dtype=np.uint8)[:, None] * 10).repeat(w, axis=1)


def test_resized_size_is_torchvision_resize_of_the_shorter_side():
    assert resized_size(178, 218, 64) == (64, 78)  # CelebA: int(64 * 218 / 178) = 78
    assert resized_size(218, 178, 64) == (78, 64)
    assert resized_size(30, 40, 64) == (64, 85)  # upscaling keeps the same rule


def test_center_crop_offsets_follow_torchvision_rounding(tmp_path):
    # 16 wide x 24 tall at size 16: no resize, rows 4..19 kept
    out = decode_file(save_image(tmp_path / "a.png", rows_image(24, 16)), 16, 1)
    assert out.shape == (1, 16, 16) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], np.arange(4, 20) * 10)
    # 16 x 21: offset (21 - 16) / 2 = 2.5 rounds to 2 (Python's round, as torchvision's CenterCrop)
    out = decode_file(save_image(tmp_path / "b.png", rows_image(21, 16)), 16, 1)
    np.testing.assert_array_equal(out[0, :, 5], np.arange(2, 18) * 10)
    # landscape: columns are cropped instead
    out = decode_file(save_image(tmp_path / "c.png", rows_image(24, 16).T.copy()), 16, 1)
    np.testing.assert_array_equal(out[0, 3, :], np.arange(4, 20) * 10)


def test_downscale_keeps_solid_regions_exact(tmp_path):
    # 32 wide x 48 tall, top half red, bottom half blue -> resized to 16 x 24, rows 4..19 kept
    img = np.concatenate([solid(24, 32, (255, 0, 0)), solid(24, 32, (0, 0, 255))])
    out = decode_file(save_image(tmp_path / "rb.png", img), 16, 3)
    assert out.shape == (3, 16, 16)
    np.testing.assert_array_equal(out[:, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[:, 5, 9], [255, 0, 0])  # resized row 9 is still above the edge
    np.testing.assert_array_equal(out[:, 15, 15], [0, 0, 255])
    assert 0 < out[0, 8, 0] < 255 or 0 < out[0, 7, 0] < 255  # the edge at resized row 12 is blended (antialiased)


def test_grey_and_rgb_convert_to_the_model_channels(tmp_path):
    grey = decode_file(save_image(tmp_path / "g.png", rows_image(16, 16)), 16, 3)
    assert grey.shape == (3, 16, 16)
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[0], grey[2])
    assert grey[0, 7, 3] == 70
    red = decode_file(save_image(tmp_path / "r.png", solid(16, 16, (255, 0, 0))), 16, 1)
    assert red.shape == (1, 16, 16) and np.all(red == 76)  # ITU-R 601 luma: 0.299 * 255


def test_rgba_is_composited_on_white(tmp_path):
    img = np.zeros((16, 16, 4), np.uint8)
    img[:, :8] = (255, 0, 0, 0)  # fully transparent red -> white
    img[:, 8:12] = (0, 0, 255, 255)  # opaque blue
    img[:, 12:] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    out = decode_file(save_image(tmp_path / "a.png", img), 16, 3)
    np.testing.assert_array_equal(out[:, 0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[:, 0, 9], [0, 0, 255])
    assert np.all(np.abs(out[:, 0, 14].astype(int) - 127) <= 1)


def test_palette_and_transparent_palette(tmp_path):
    p = Image.new("P", (16, 16), 1)
    p.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    p.paste(0, (0, 0, 16, 4))
    path = tmp_path / "p.png"
    p.save(path, transparency=0)  # index 0 is transparent
    out = decode_file(path, 16, 3)
    np.testing.assert_array_equal(out[:, 0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[:, 10, 10], [0, 200, 0])
    path = tmp_path / "p.bmp"
    p.save(path)  # a palette BMP has no transparency
    assert Image.open(path).mode == "P"
    out = decode_file(path, 16, 3)
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0])  # no transparency: the palette colour itself


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    a = np.zeros((16, 16), np.uint16)
    a[0, :] = 65535
    a[1, :] = 257 * 100
    a[2, :] = 256  # 0.996 of a level: rounds to 1
    out = decode_file(save_image(tmp_path / "d.png", a), 16, 1)
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")  # really a 16-bit file
    assert out[0, 0, 0] == 255 and out[0, 1, 0] == 100 and out[0, 2, 0] == 1 and out[0, 3, 0] == 0


def test_16_bit_rgb(tmp_path):
    a = np.zeros((16, 16, 3), np.uint16)
    a[...] = (65535, 0x8000, 0)
    out = decode_file(png_rgb16(tmp_path / "rgb16.png", a), 16, 3)
    np.testing.assert_array_equal(out[:, 5, 5], [255, 128, 0])


def test_exif_orientation_is_applied(tmp_path):
    # stored 32 wide x 48 tall: top half red, bottom half blue; orientation 6 shows it rotated 90 degrees
    # clockwise, 48 wide x 32 tall with blue on the left and red on the right
    img = np.concatenate([solid(24, 32, (255, 0, 0)), solid(24, 32, (0, 0, 255))])
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save_image(tmp_path / "phone.jpg", img, exif=exif, quality=95)
    out = decode_file(path, 32, 3).astype(int)
    assert out.shape == (3, 32, 32)
    assert out[2, 16, 3] > 200 and out[0, 16, 3] < 60  # left: blue
    assert out[0, 16, 28] > 200 and out[2, 16, 28] < 60  # right: red
    # the same file without the tag would be red on top
    plain = decode_file(save_image(tmp_path / "plain.jpg", img, quality=95), 32, 3).astype(int)
    assert plain[0, 2, 16] > 200 and plain[2, 29, 16] > 200


def test_small_images_are_upscaled(tmp_path):
    out = decode_file(save_image(tmp_path / "s.png", solid(6, 8, (10, 20, 30))), 16, 3)
    assert out.shape == (3, 16, 16)
    assert np.all(out[0] == 10) and np.all(out[1] == 20) and np.all(out[2] == 30)


def test_check_file_tells_good_from_bad(tmp_path):
    good = save_image(tmp_path / "good.jpg", noise(40, 30), quality=90)
    assert check_file(good) == (30, 40)
    png = save_image(tmp_path / "good.png", noise(20, 10))
    assert check_file(png) == (10, 20)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    cut_jpg = truncate(good, tmp_path / "cut.jpg", 0.6)
    cut_png = truncate(png, tmp_path / "cut.png", 0.6)
    with pytest.raises(BadImage, match="zero-byte"):
        check_file(tmp_path / "zero.jpg")
    with pytest.raises(BadImage, match="not an image"):
        check_file(tmp_path / "text.png")
    for cut in (cut_jpg, cut_png):
        with pytest.raises(BadImage, match="truncated"):
            check_file(cut)
    # bytes appended after a JPEG's end marker (some cameras do this) are not damage
    trailer = tmp_path / "trailer.jpg"
    trailer.write_bytes(good.read_bytes() + b"\x00" * 100 + b"vendor data")
    assert check_file(trailer) == (30, 40)
    assert decode_file(trailer, 16, 3).shape == (3, 16, 16)


def test_fit_arrays():
    x = np.stack([rows_image(24, 24)[None]] * 2)  # (2, 1, 24, 24), row r = 10 r
    assert fit_arrays(x, 24, 1) is x
    three = fit_arrays(x, 24, 3)
    assert three.shape == (2, 3, 24, 24) and np.array_equal(three[:, 2], x[:, 0])
    small = fit_arrays(x, 12, 1)
    assert small.shape == (2, 1, 12, 12)
    # downscale by 2 with a symmetric filter: inner output row i averages a ramp around 2i + 0.5 -> 20 i + 5
    np.testing.assert_allclose(small[0, 0, 1:-1, 0], np.arange(1, 11) * 20 + 5, atol=1)
