"""Reading images: inspection names each fault (bombs by their header), RGB decoding, decoding
into a batch slot."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from fer_lightning.data import decode
from fer_lightning.data.decode import _MARK, decode_rgb, inspect_image, read_image_file
from tests.data_fixtures import jpeg_header_bomb, png_header_bomb, within, write_image


def test_inspect_image_names_each_fault(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    good = tmp_path / "good.jpg"
    good.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:-100])
    (tmp_path / "text.jpg").write_text("hello")
    gray = tmp_path / "gray.png"
    gray.write_bytes(cv2.imencode(".png", image[..., 0])[1].tobytes())
    (tmp_path / "cut.png").write_bytes(gray.read_bytes()[:-20])

    assert inspect_image(good) == (None, 40, 30, 3)
    assert inspect_image(gray) == (None, 40, 30, 1)
    assert inspect_image(tmp_path / "empty.jpg")[0] == "empty_file"
    assert inspect_image(tmp_path / "cut.jpg")[0] == "truncated_image"
    assert inspect_image(tmp_path / "cut.png")[0] == "truncated_image"
    assert inspect_image(tmp_path / "text.jpg")[0] == "unreadable_image"


def test_decode_is_rgb_and_resized(tmp_path):
    bgr = np.zeros((64, 64, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    for size in (64, 32, 16, 20):  # full, reduced by 2, reduced by 4, reduced then resized
        rgb = decode_rgb(str(path), size, stored_side=64)
        assert rgb.shape == (size, size, 3)
        assert rgb[..., 0].min() == 255 and rgb[..., 2].max() == 0
    assert decode_rgb(str(tmp_path / "missing.png"), 32, 64) is None


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_decode_into_a_batch_slot_equals_a_plain_decode(tmp_path, suffix):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    colour, grey = tmp_path / f"colour{suffix}", tmp_path / f"grey{suffix}"
    cv2.imwrite(str(colour), photo)
    cv2.imwrite(str(grey), photo[..., 0])
    batch = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    for size, path in [(32, colour), (32, grey), (16, colour), (12, colour)]:
        slot = np.zeros((size, size, 3), dtype=np.uint8) if size != 16 else batch[1]
        assert decode_rgb(str(path), size, 32, out=slot) is slot
        assert np.array_equal(slot, decode_rgb(str(path), size, 32)), (size, path.name)
    assert not batch[0].any()  # only its own slot written


def test_decode_into_a_slot_notices_files_that_do_not_decode(tmp_path):
    slot = np.full((8, 8, 3), 7, dtype=np.uint8)
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("missing.jpg", "text.jpg", "empty.jpg"):
        assert decode_rgb(str(tmp_path / name), 8, 8, out=slot) is None, name
    # An image whose last pixel happens to be the marker colour, and one that is not square.
    marked = np.full((8, 8, 3), 90, dtype=np.uint8)
    marked[-1, -1] = _MARK[::-1]  # BGR on disk
    cv2.imwrite(str(tmp_path / "marked.png"), marked)
    assert decode_rgb(str(tmp_path / "marked.png"), 8, 8, out=slot) is slot
    assert np.array_equal(slot, marked[..., ::-1])
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((8, 10, 3), 50, dtype=np.uint8))
    assert decode_rgb(str(tmp_path / "wide.png"), 8, 8, out=slot) is slot
    assert (slot == 50).all()


@pytest.mark.parametrize("bomb", [png_header_bomb, jpeg_header_bomb])
def test_a_decompression_bomb_is_refused_by_its_header_without_decoding(
    tmp_path, monkeypatch, bomb
):
    path = tmp_path / "bomb.img"
    path.write_bytes(bomb(30000, 30000))  # a few hundred bytes; OpenCV would allocate 2.7-5 GB
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *args: decoded.append(args))
    assert inspect_image(path) == ("too_many_pixels", 0, 0, 0)
    assert read_image_file(path) == ("too_many_pixels", b"")
    assert decoded == []
    path.write_bytes(bomb(9000, 9000))  # 81 megapixels: under the limit, left to the decoder
    assert read_image_file(path)[0] is None


def test_odd_entries_and_huge_files_are_kinds_not_errors(tmp_path, monkeypatch):
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    big = tmp_path / "big.jpg"
    write_image(big, np.random.default_rng(0))
    monkeypatch.setattr(decode, "MAX_IMAGE_BYTES", big.stat().st_size - 1)
    kinds = {
        name: within(10, lambda name=name: inspect_image(tmp_path / name)[0])
        for name in ("folder.jpg", "fifo.jpg", "dangling.jpg", "big.jpg")
    }
    assert kinds == {
        "folder.jpg": "not_a_regular_file",
        "fifo.jpg": "not_a_regular_file",
        "dangling.jpg": "broken_link",
        "big.jpg": "file_too_large",
    }
