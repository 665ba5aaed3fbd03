"""The one image reader: files (PNG, JPEG, gray, RGBA, 16-bit, EXIF, truncated), PIL, arrays."""
import io
import os
import pickle
import re
import warnings

import cv2
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluon_ssd.data.io import (BadImageError, TruncatedImageWarning, collect_truncated,
                               image_size, jpeg_truncated, list_images, read_image)


def noise(height=48, width=64, channels=3, seed=0):
    """Random uint8 pixels: JPEG scans of noise fill most of the file."""
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def jpeg_bytes(image, **save):
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG", **save)
    return out.getvalue()


def test_png_rgb_gray_rgba_files(tmp_path):
    rgb = noise()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[:, :, 1], "L").save(tmp_path / "gray.png")
    alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)  # PathLike
    np.testing.assert_array_equal(read_image(str(tmp_path / "gray.png")),
                                  np.repeat(rgb[:, :, 1:2], 3, axis=2))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)
    image = read_image(tmp_path / "rgb.png")
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)


def test_sixteen_bit_files_and_arrays_keep_the_high_byte(tmp_path):
    deep = np.array([[0, 255, 256, 40000, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    expected = np.repeat((deep >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), expected)
    np.testing.assert_array_equal(read_image(deep), expected)
    np.testing.assert_array_equal(read_image(Image.open(tmp_path / "deep.png")), expected)


def test_exif_orientation_is_applied_to_files_and_pil_images(tmp_path):
    ramp = np.add.outer(np.arange(30) * 6, np.arange(50) * 2)  # no symmetry, smooth for JPEG
    upright = np.stack([ramp, 255 - ramp, np.full_like(ramp, 90)], axis=2).astype(np.uint8)
    stored = np.rot90(upright, k=1)  # EXIF 6: the viewer turns the stored pixels 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "exif.jpg", exif=exif.tobytes(), quality=100)
    for source in (tmp_path / "exif.jpg", Image.open(tmp_path / "exif.jpg")):
        image = read_image(source)
        assert image.shape == (30, 50, 3)
        assert np.abs(image.astype(int) - upright).mean() < 8  # JPEG loss only
    assert image_size(tmp_path / "exif.jpg") == (30, 50)  # what read_image returns, too
    with pytest.raises(BadImageError, match="missing.jpg"):
        image_size(tmp_path / "missing.jpg")


def test_pil_images_arrays_and_ndarrays():
    rgb = noise(10, 12)
    for source in (Image.fromarray(rgb), Image.fromarray(rgb).convert("RGBA"), rgb,
                   np.concatenate([rgb, rgb[:, :, :1]], axis=2), mx.nd.array(rgb, dtype="uint8")):
        np.testing.assert_array_equal(read_image(source), rgb)
    gray = rgb[:, :, 0]
    for source in (gray, gray[:, :, None], Image.fromarray(gray, "L")):
        np.testing.assert_array_equal(read_image(source), np.repeat(gray[:, :, None], 3, axis=2))


def test_bad_inputs_are_value_errors_naming_the_problem(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        read_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4, 2\)"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="int"):
        read_image(3)
    with pytest.raises(ValueError, match="on_truncated"):
        read_image(noise(), on_truncated="ignore")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    for path in (corrupt, tmp_path / "missing.png", tmp_path / "empty.png"):
        if path.name == "empty.png":
            path.write_bytes(b"")
        with pytest.raises(BadImageError, match=path.name) as caught:
            read_image(path)
        assert isinstance(caught.value, OSError) and isinstance(caught.value, ValueError)
        assert caught.value.path == str(path)
    copy = pickle.loads(pickle.dumps(caught.value))  # as from a loader worker process
    assert (copy.path, copy.reason, str(copy)) == (str(path), caught.value.reason,
                                                   str(caught.value))


def test_truncated_jpeg_is_named_and_counted(tmp_path):
    data = jpeg_bytes(noise(120, 160))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:int(len(data) * 0.4)])
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    with pytest.warns(TruncatedImageWarning, match="cut.jpg") as caught:
        image = read_image(cut)
    assert image.shape == (120, 160, 3) and caught[0].message.path == str(cut)
    with pytest.raises(BadImageError, match="cut.jpg.*truncated"):
        read_image(cut, on_truncated="raise")
    with collect_truncated() as truncated:
        for path in (whole, cut, whole, cut):
            read_image(path)
    assert truncated == [str(cut), str(cut)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(whole)  # a complete file: no warning


def test_collect_truncated_lets_other_warnings_through():
    with pytest.warns(RuntimeWarning, match="other"):
        with collect_truncated() as truncated:
            warnings.warn("other", RuntimeWarning)
    assert truncated == []


def test_jpeg_truncation_follows_the_file_structure():
    photo = noise(64, 96)
    plain = jpeg_bytes(photo)
    progressive = jpeg_bytes(photo, progressive=True)
    ok, restarts = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    restarts = restarts.tobytes()
    thumb = jpeg_bytes(noise(8, 8, seed=1))  # an EXIF-style thumbnail carries its own end marker
    payload = b"Exif\0\0" + thumb
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    with_thumb = plain[:2] + app1 + plain[2:]
    for data in (plain, progressive, restarts, with_thumb):
        assert not jpeg_truncated(data)
        assert not jpeg_truncated(data + b"appended bytes after the image")
        for fraction in (0.01, 0.3, 0.6, 0.99):
            assert jpeg_truncated(data[:int(len(data) * fraction)])
        assert jpeg_truncated(data[:-2])  # only the end marker missing
    assert not jpeg_truncated(b"\x89PNG\r\n\x1a\n")


def test_list_images_expands_folders_sorted_and_counts_the_rest(tmp_path):
    for name in ("b.PNG", "a.jpg", "notes.txt", "c.jpeg", "d.bmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    images, skipped = list_images([tmp_path, "given.gif"])
    assert images == [str(tmp_path / n) for n in ("a.jpg", "b.PNG", "c.jpeg", "d.bmp")] + [
        "given.gif"]
    assert sorted(skipped) == [str(tmp_path / "notes.txt"), str(tmp_path / "sub")]
    assert list_images(tmp_path / "a.jpg") == ([str(tmp_path / "a.jpg")], [])


def test_unreadable_image_entries_are_images_that_fail_named_not_skipped(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(noise()))
    os.symlink("loop.jpg", tmp_path / "loop.jpg")  # a symbolic link to itself
    os.symlink("missing.png", tmp_path / "gone.png")  # a link to nothing
    (tmp_path / "folder.jpg").mkdir()  # a folder, whatever its name
    images, skipped = list_images(tmp_path)
    assert images == [str(tmp_path / n) for n in ("a.jpg", "gone.png", "loop.jpg")]
    assert skipped == [str(tmp_path / "folder.jpg")]
    with pytest.raises(BadImageError, match=re.escape(f"{tmp_path / 'loop.jpg'}: Too many "
                                                      "levels of symbolic links")):
        read_image(images[2])
    with pytest.raises(BadImageError, match=re.escape(f"{tmp_path / 'gone.png'}: No such file")):
        read_image(images[1])
