"""YOLO and COCO layouts, in and out: the YOLO reader, the converters, and other people's readers
(pycocotools, Roboflow's supervision) loading what we write."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import shared_data
from helpers import ENV, ROOT
from ssd_tf import data
from ssd_tf.data import conversion

RACCOON = ("raccoon",)


def _image(path, size=(100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)


@pytest.fixture
def yolo_set(tmp_path):
    """A hand-made YOLO set (images 100x50): good boxes, a polygon, an image without labels, bad lines."""
    root = tmp_path / "set"
    for name in ("a", "b", "c", "d"):
        _image(root / "images" / "train" / f"{name}.jpg")
    _image(root / "images" / "val" / "v.png")
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.1 0.2\n\n")
    (labels / "b.txt").write_text("1 0.1 0.1 0.3 0.1 0.3 0.5 0.2 0.6\n")  # polygon -> box [0.1, 0.1, 0.3, 0.6]
    # c.jpg has no label file: an image without boxes
    (labels / "d.txt").write_text("0 0.5 0.5 0.2\n"  # malformed: 4 numbers
                                  "cat 0.5 0.5 0.2 0.2\n"  # malformed: not a number
                                  "2 0.5 0.5 0.2 0.2\n"  # class out of range
                                  "0 0.9 0.5 0.4 0.2\n"  # xmax 1.1: outside [0, 1]
                                  "0 0.5 0.5 0 0.2\n"  # zero area
                                  "0 0.995 0.5 0.02 0.2\n")  # xmax 1.005: within tolerance, clipped
    (root / "labels" / "val").mkdir()
    (root / "labels" / "val" / "v.txt").write_text("1 0.5 0.5 1 1\n")
    (root / "data.yaml").write_text("# exported by a labelling tool\ntrain: images/train\nval: images/val\n"
                                    "nc: 2\nnames: {0: cat, 1: 'dog'}\n")
    return root


def test_yolo_reader_reads_boxes_polygons_and_skips_bad_lines(yolo_set):
    s = data.read_yolo(yolo_set, "train")
    assert s.class_names == ("background", "cat", "dog") and len(s) == 4
    by_name = {pathlib.Path(p).stem: i for i, p in enumerate(s.sources)}
    np.testing.assert_allclose(s.boxes[by_name["a"]], [[0.4, 0.3, 0.6, 0.7], [0.2, 0.65, 0.3, 0.85]], atol=1e-6)
    np.testing.assert_array_equal(s.labels[by_name["a"]], [1, 2])
    np.testing.assert_allclose(s.boxes[by_name["b"]], [[0.1, 0.1, 0.3, 0.6]], atol=1e-6)
    assert len(s.labels[by_name["c"]]) == 0 and s.sizes[by_name["c"]] == (50, 100)
    np.testing.assert_allclose(s.boxes[by_name["d"]], [[0.985, 0.4, 1.0, 0.6]], atol=1e-6)
    assert dict(s.report.counts) == {"malformed label lines": 2, "class ids out of range": 1,
                                     "coordinates outside [0, 1]": 1, "zero-area boxes": 1}
    assert all("d.txt: line" in m for m in s.report.messages)
    assert any("line 3: class 2 not in 0..1" in m for m in s.report.messages)
    # The yaml itself, a list of names, and a .txt list of images as the split.
    (yolo_set / "list.txt").write_text("./images/train/a.jpg\nimages/val/v.png\n")
    (yolo_set / "other.yaml").write_text("train: list.txt\nnames: [cat, dog]\n")
    listed = data.read_yolo(yolo_set / "other.yaml", "train")
    assert [pathlib.Path(p).name for p in listed.sources] == ["a.jpg", "v.png"] and listed.num_objects == 3


@pytest.mark.parametrize("yaml_text, message", [
    ("train: images/train\n", "missing names:"),
    ("train: images/train\nnames: {0: a, 2: b}\n", "ids must be 0..1"),
    ("names: [a]\nnc: 2\ntrain: images/train\n", "nc: 2 but names: lists 1"),
    ("names: [a, b]\ntrain: [images/train\n", "broken YAML"),
    ("names: [a, b]\ntrain: images/nowhere\n", "images/nowhere does not exist"),
    ("names: [a, b]\nval: images/val\n", "no train: entry"),
])
def test_yolo_reader_names_the_broken_yaml_field(yolo_set, yaml_text, message):
    (yolo_set / "data.yaml").write_text(yaml_text)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        data.read_yolo(yolo_set, "train")
    assert "data.yaml" in str(info.value)


def _pixel_boxes(s):
    """file name -> (boxes in pixels, float64, labels) of a DetectionSet."""
    out = {}
    for i in range(len(s)):
        h, w = s.sizes[i]
        out[os.path.basename(s.sources[i])] = (s.boxes[i].astype(np.float64) * [w, h, w, h], s.labels[i])
    return out


@pytest.fixture(scope="module")
def raccoon_twins(tmp_path_factory):
    """The raccoon VOC set, converted by convert.py to YOLO, and that YOLO set to COCO."""
    root = tmp_path_factory.mktemp("twins")
    voc = shared_data("raccoon", "VOC2007")
    conversion.convert("voc", voc, root / "yolo", classes=RACCOON, to="yolo", progress=False)
    conversion.convert("yolo", root / "yolo", root / "coco", to="coco", progress=False)
    return voc, root / "yolo", root / "coco"


def test_voc_to_yolo_to_coco_keeps_every_box_within_a_hundredth_of_a_pixel(raccoon_twins):
    voc, yolo, coco = raccoon_twins
    for split in ("train", "val"):
        original = _pixel_boxes(data.read_voc(voc, split, class_names=RACCOON))
        for kind, folder in (("yolo", yolo), ("coco", coco)):
            twin = _pixel_boxes(data.read_dataset(kind, folder, split))
            assert twin.keys() == original.keys(), (kind, split)
            for name, (boxes, labels) in original.items():
                assert len(boxes) == len(twin[name][0]), (kind, name)
                np.testing.assert_allclose(twin[name][0], boxes, atol=0.01, rtol=0, err_msg=f"{kind} {name}")
                np.testing.assert_array_equal(twin[name][1], labels)
    assert not os.path.islink(next((coco / "val").iterdir()))  # copy, the default


def test_symlinked_images_point_at_the_originals(raccoon_twins, tmp_path):
    voc, yolo, _ = raccoon_twins
    conversion.convert("yolo", yolo, tmp_path / "linked", splits=["val"], to="coco", images="symlink",
                       progress=False)
    linked = sorted((tmp_path / "linked" / "val").iterdir())
    assert len(linked) == 40 and all(p.is_symlink() for p in linked)
    assert all(p.resolve() == (yolo / "images" / "val" / p.name).resolve() for p in linked)
    assert _pixel_boxes(data.read_dataset("coco", tmp_path / "linked", "val")).keys() == \
        _pixel_boxes(data.read_voc(voc, "val", class_names=RACCOON)).keys()


def test_what_we_write_loads_in_pycocotools_and_supervision(raccoon_twins):
    """Other people's readers: pycocotools for the COCO file, Roboflow's supervision (as its users
    install it) for both layouts; same boxes as the VOC original."""
    import supervision as sv
    from pycocotools.coco import COCO

    voc, yolo, coco = raccoon_twins
    original = _pixel_boxes(data.read_voc(voc, "val", class_names=RACCOON))
    api = COCO(str(coco / "annotations" / "instances_val.json"))
    assert len(api.getImgIds()) == 40 and len(api.getAnnIds()) == 42 and api.loadCats(1)[0]["name"] == "raccoon"
    from_yolo = sv.DetectionDataset.from_yolo(str(yolo / "images" / "val"), str(yolo / "labels" / "val"),
                                              str(yolo / "data.yaml"))
    from_coco = sv.DetectionDataset.from_coco(str(coco / "val"), str(coco / "annotations" / "instances_val.json"))
    for loaded in (from_yolo, from_coco):
        assert loaded.classes == ["raccoon"] and len(loaded) == 40
        for path, _, detections in loaded:
            boxes, _ = original[os.path.basename(path)]
            # supervision rounds YOLO's normalised numbers to whole pixels
            np.testing.assert_allclose(np.sort(detections.xyxy, 0), np.sort(boxes, 0), atol=1.0)
            assert np.all(detections.class_id == 0)


def test_the_yolo_twin_scores_as_its_voc_original(raccoon_twins):
    """The 12 COCO stats of the same detections on the VOC set and on its YOLO and COCO twins."""
    from ssd_tf.evaluation import evaluate_detections

    voc, yolo, coco = raccoon_twins
    rng = np.random.default_rng(0)
    original = _pixel_boxes(data.read_voc(voc, "val", class_names=RACCOON))
    # Seeded detections per file: each true box jittered, some missed, plus a false one per image.
    made = {}
    for name, (boxes, _) in sorted(original.items()):
        jitter = boxes + rng.normal(0, 6, boxes.shape)
        keep = rng.random(len(boxes)) > 0.2
        false = np.array([[10, 10, 60, 60]], np.float64)
        made[name] = (np.concatenate([jitter[keep], false]), np.concatenate([rng.uniform(0.3, 1, keep.sum()), [0.5]]))
    reports = []
    for s in (data.read_voc(voc, "val", class_names=RACCOON), data.read_yolo(yolo, "val"),
              data.read_dataset("coco", coco, "val")):
        results = []
        for i in range(len(s)):
            boxes, scores = made[os.path.basename(s.sources[i])]
            for box, score in zip(boxes, scores):
                results.append({"image_id": int(s.image_ids[i]), "category_id": int(s.category_ids[1]),
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score)})
        reports.append(evaluate_detections(s, results))
    assert 0.2 < reports[0]["stats"]["AP50"] < 0.95  # a real score, not a degenerate one
    for twin in reports[1:]:
        for name, value in reports[0]["stats"].items():
            assert twin["stats"][name] == pytest.approx(value, abs=1e-9), name


def test_the_yolo_twin_trains_on_the_same_batches(raccoon_twins):
    """Training's input: the same images and encoded targets from the VOC set and its YOLO twin."""
    voc, yolo, _ = raccoon_twins
    voc_set = data.read_voc(voc, "train", class_names=RACCOON).subset(range(4))
    order = {os.path.basename(p): i for i, p in enumerate(data.read_yolo(yolo, "train").sources)}
    yolo_set = data.read_yolo(yolo, "train")
    yolo_set = yolo_set.subset([order[os.path.basename(p)] for p in voc_set.sources])
    a = next(iter(data.train_dataset(voc_set, 4, seed=0, augment_images=False)))
    b = next(iter(data.train_dataset(yolo_set, 4, seed=0, augment_images=False)))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_allclose(a[1].numpy(), b[1].numpy(), atol=1e-4)


def test_convert_never_writes_over_an_existing_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists"):
        conversion.convert("synthetic", None, out, to="yolo", progress=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_convert_script_writes_yolo_from_the_built_in_set(tmp_path):
    """The built-in set's images (bytes) become files; data.yaml reads back with the same boxes."""
    out = tmp_path / "yolo"
    result = subprocess.run([sys.executable, "scripts/convert.py", "--dataset", "synthetic", "--to", "yolo",
                             "--output", str(out), "--quiet"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train: 64 images" in result.stdout and "as yolo" in result.stdout
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config == {"train": "images/train", "val": "images/val", "nc": 3,
                      "names": dict(enumerate(data.read_dataset("synthetic").class_names[1:]))}
    ours, theirs = data.read_dataset("synthetic", split="val"), data.read_yolo(out, "val")
    assert len(theirs) == len(ours)
    for i in range(len(ours)):
        np.testing.assert_allclose(theirs.boxes[i], ours.boxes[i], atol=1e-6)
    json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_and_evaluate_scripts_run_on_a_yolo_set(raccoon_twins, tmp_path):
    """train.py and evaluate.py take --dataset yolo (here a yaml whose splits are .txt lists of 4
    images each): a one-step run validates on the YOLO val split, and evaluate.py scores the run on
    it exactly as the library scores the same images read from the VOC original."""
    from ssd_tf.evaluation import evaluate_model
    from ssd_tf.inference import Detector

    voc, yolo, _ = raccoon_twins
    names = {split: sorted(p.name for p in (yolo / "images" / split).iterdir())[:4] for split in ("train", "val")}
    for split, files in names.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{yolo}/images/{split}/{n}\n" for n in files))
    small = tmp_path / "small.yaml"
    small.write_text(f"path: {yolo}\ntrain: {tmp_path}/train.txt\nval: {tmp_path}/val.txt\nnames: [raccoon]\n")
    run = tmp_path / "run"

    def script(*args):
        result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    trained = script("scripts/train.py", "--dataset", "yolo", "--data-dir", small, "--backbone-weights", "none",
                     "--epochs", "1", "--batch-size", "2", "--precise-bn", "0", "--output", run)
    assert "validation: AP50" in trained.stdout
    assert json.loads((run / "config.json").read_text())["dataset"] == "yolo"
    evaluate_cli = importlib.util.module_from_spec(  # in this process: TensorFlow is loaded here already
        spec := importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py"))
    spec.loader.exec_module(evaluate_cli)
    evaluate_cli.main(["--model", str(run), "--dataset", "yolo", "--data-dir", str(small), "--split", "val",
                       "--output", str(tmp_path / "evaluation"), "--quiet"])
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    original = data.read_voc(voc, "val", class_names=RACCOON)
    picked = [i for i, p in enumerate(original.sources) if os.path.basename(p) in names["val"]]
    expected = evaluate_model(Detector.load(run), original.subset(picked))
    assert report["num_detections"] == expected["num_detections"] > 0
    for name, value in expected["stats"].items():
        assert report["stats"][name] == pytest.approx(value, abs=1e-6), name
