"""The data set inspection: default-box coverage against known answers, and the script's output."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_data
from helpers import ENV, ROOT
from ssd_tf.core import anchors
from ssd_tf.data.detection_set import DetectionSet
from ssd_tf.data.inspection import best_default_iou, inspect, size_bands


def _square(centre_px, side_px):
    """Normalised xyxy of a square at ``centre_px`` (x = y) with ``side_px`` at 300x300."""
    c, h = centre_px / 300, side_px / 600
    return [c - h, c - h, c + h, c + h]


# Level 0 (38x38, step 8) has cells centred at 4 + 8k px and a 21 px square default box. A square
# of side s < 21 on a cell centre lies inside that box: IoU s^2 / 21^2, and no other default box
# (the 2:1 boxes of the same area, the larger squares, the neighbours 8 px away) overlaps it more.
KNOWN = [
    (_square(44, 4), 16 / 441),
    (_square(44, 10), 100 / 441),
    (_square(44, 15), 225 / 441),
    # Level 5's box (1x1 map): a 261 px square centred on the image. Exactly a default box.
    (_square(150, 261), 1.0),
]


def test_best_iou_of_hand_made_boxes():
    boxes = np.array([b for b, _ in KNOWN], np.float32)
    np.testing.assert_allclose(best_default_iou(boxes), [v for _, v in KNOWN], atol=2e-5)
    # Any default box itself (clipped in cx, cy, w, h as the reference does) has best IoU 1.
    defaults = anchors.default_boxes()[::97]
    xyxy = np.concatenate([defaults[:, :2] - defaults[:, 2:] / 2, defaults[:, :2] + defaults[:, 2:] / 2], 1)
    np.testing.assert_allclose(best_default_iou(xyxy), 1.0, atol=1e-5)


def _set(boxes, labels, names=("background", "small", "big")):
    return DetectionSet(sources=["x.jpg"], boxes=[np.array(boxes, np.float32)], labels=[np.array(labels, np.int32)],
                        difficult=[np.zeros(len(labels), bool)], image_ids=[0], sizes=[(300, 300)],
                        class_names=names, category_ids=tuple(range(len(names))))


def test_coverage_shares_per_class_and_size_band_and_the_warning():
    # "small": 4, 10 and 15 px squares (best IoU 0.036, 0.227, 0.510); "big": the 261 px square.
    s = _set([b for b, _ in KNOWN], [1, 1, 1, 2])
    report = inspect([s], ["train"])
    small, big = report["classes"]["small"], report["classes"]["big"]
    assert small["boxes"] == 3 and small["below_0.5"] == pytest.approx(2 / 3) and small["below_0.3"] == \
        pytest.approx(2 / 3)
    assert small["median_side_px"] == pytest.approx(10, abs=1e-3)
    assert small["median_side_px_below_0.5"] == pytest.approx(7, abs=1e-3)
    assert big["below_0.5"] == 0 and big["median_best_iou"] == pytest.approx(1, abs=1e-5)
    assert report["coverage"]["below_0.5"] == pytest.approx(0.5)
    bands = report["size_bands"]
    assert list(bands) == [label for label, _, _ in size_bands()]
    assert bands["<21 px"]["boxes"] == 3 and bands["<21 px"]["below_0.5"] == pytest.approx(2 / 3)
    assert bands[">=261 px"]["boxes"] == 1 and bands[">=261 px"]["below_0.5"] == 0
    assert report["splits"]["train"] == {"images": 1, "boxes": 4, "images_without_boxes": 0, "skipped": {},
                                         "skipped_total": 0}
    assert report["warnings"] == ["67% of 'small' boxes have no default box at IoU >= 0.5 (median side 7 px at "
                                  "300x300); consider a larger input or other default-box scales"]


def test_inspect_data_script_on_raccoon(tmp_path):
    root = shared_data("raccoon", "VOC2007")
    out = tmp_path / "look"
    result = subprocess.run([sys.executable, "scripts/inspect_data.py", "--dataset", "voc", "--data-dir", str(root),
                             "--classes", "raccoon", "--output", str(out)], cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "train: 160 images, 175 boxes" in result.stdout and "val: 40 images, 42 boxes" in result.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert stats["classes"]["raccoon"]["boxes"] == 217 and stats["warnings"] == []
    for name in ("class_counts", "box_sizes", "aspect_ratios", "coverage", "samples"):
        assert (out / f"{name}.png").stat().st_size > 5_000, name
    again = subprocess.run([sys.executable, "scripts/inspect_data.py", "--dataset", "voc", "--data-dir", str(root),
                            "--classes", "raccoon", "--output", str(out)], cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith(f"error: {out} already exists")
