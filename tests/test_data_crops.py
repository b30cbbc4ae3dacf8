"""Face crops: box problems, the margin clipped at the photograph, lossless crops of lossless
photographs, JPEG crops within a stated tolerance, and where a crop's path points."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_lightning.data.crops import Cropper, box_problem, crop_box
from fer_lightning.data.formats import Sample
from fer_lightning.errors import ConfigError


def test_a_box_must_have_an_area_and_lie_inside_its_image():
    assert box_problem((0, 0, 10, 20), 20, 10) is None
    for empty in ((0, 0, 0, 5), (0, 0, 5, -1)):
        assert box_problem(empty, 20, 10) == "empty_box"
    for outside in ((-1, 0, 5, 5), (0, -1, 5, 5), (6, 0, 5, 5), (0, 16, 5, 5)):
        assert box_problem(outside, 20, 10) == "box_outside_image"


def test_the_margin_is_a_fraction_of_the_box_on_each_side_clipped_at_the_image():
    assert crop_box((10, 20, 40, 20), 0.0, 100, 100) == (slice(20, 40), slice(10, 50))
    assert crop_box((10, 20, 40, 20), 0.25, 100, 100) == (slice(15, 45), slice(0, 60))
    assert crop_box((60, 80, 40, 20), 0.5, 100, 100) == (slice(70, 100), slice(40, 100))


def photograph(root: Path, name: str) -> np.ndarray:
    """A smooth 96x80 BGR photograph written under ``root``; its pixels as written."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (80, 96), interpolation=cv2.INTER_CUBIC)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.imread(str(root / name))


def test_a_lossless_photograph_gives_its_exact_pixels_and_a_jpeg_one_a_close_jpeg(tmp_path):
    root = tmp_path / "ds"
    cropper = Cropper(root / ".fer_cache" / "crops")
    for suffix in (".png", ".jpg"):
        pixels = photograph(root, f"photos/a{suffix}")
        sample = Sample(1, f"sub/a{suffix[1:]}", f"photos/a{suffix}", 3, box=(8, 16, 48, 40))
        cut = cropper.cut(root, sample)
        assert cut.box is None and not cut.problems
        assert cut.image == f".fer_cache/crops/val_set/sub/a{suffix[1:]}{suffix}"  # under root
        crop = cv2.imread(str(root / cut.image)).astype(int)
        difference = np.abs(crop - pixels[16:56, 8:56])
        if suffix == ".png":
            assert not difference.any()
        else:  # re-encoded at quality 90: 1.75 levels of 255 on average, 12 at most, here
            assert difference.mean() < 2.5 and difference.max() <= 16


def test_a_crop_outside_the_root_is_indexed_by_its_absolute_path(tmp_path):
    root = tmp_path / "ds"
    photograph(root, "a.png")
    cut = Cropper(tmp_path / "elsewhere").cut(root, Sample(0, "a", "a.png", box=(0, 0, 8, 8)))
    assert cut.image == str(tmp_path / "elsewhere" / "train_set" / "a.png")
    assert cv2.imread(cut.image).shape == (8, 8, 3)


def test_a_photograph_or_box_problem_leaves_the_sample_without_an_image(tmp_path):
    root = tmp_path / "ds"
    photograph(root, "a.png")
    (root / "empty.png").write_bytes(b"")
    cropper = Cropper(tmp_path / "crops")
    for image, box, kind in (
        ("a.png", (70, 0, 20, 20), "box_outside_image"),
        ("a.png", (0, 0, 20, 0), "empty_box"),
        ("empty.png", (0, 0, 8, 8), "empty_file"),
        ("missing.png", (0, 0, 8, 8), "unreadable_file"),
    ):
        cut = cropper.cut(root, Sample(0, "a", image, box=box))
        assert (cut.image, cut.problems) == (None, (kind,)), image
    assert not (tmp_path / "crops").exists()


@pytest.mark.parametrize("margin", [-0.1, 1.5, True, "0.1"])
def test_a_margin_outside_0_to_1_is_a_config_error(tmp_path, margin):
    with pytest.raises(ConfigError, match=r"^data\.crop_margin must be between 0 and 1, got "):
        Cropper(tmp_path, margin)
