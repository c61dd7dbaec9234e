"""Export for TF Serving, prediction CLI and evaluation CLI on real images."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from conftest import built_once, shared_data
from helpers import one_box_model
from ssd_tf.inference import loading
from ssd_tf.cli.evaluate import evaluate_model_from
from ssd_tf.cli.export import export_saved_model_from
from ssd_tf.export.saved_model import next_version
from ssd_tf.training.callbacks import COCOEvaluation
from ssd_tf.inference.detector import Detector
from ssd_tf.data.resize import resize_image

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
CLASSES = ("background", "raccoon")


@pytest.fixture(scope="module")
def raccoon_images():
    folder = shared_data("raccoon", "VOC2007", "JPEGImages")
    # Differently sized real images, one grayscale (raccoon-150).
    return [folder / name for name in ("raccoon-1.jpg", "raccoon-150.jpg", "raccoon-20.jpg")]


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory):
    """A run-like folder: a random-init 2-class model whose heads favour 'raccoon' a little,
    so detections exist, saved as final.keras with its classes.json. Built once per session."""
    def build(folder):
        keras.utils.set_random_seed(0)  # the same model whatever ran before
        model = ssd_tf.build_ssd300(num_classes=2)
        conv = model.get_layer("conf3_conv")
        kernel, bias = conv.get_weights()
        bias = bias.reshape(-1, 2)
        bias[:, 1] += 3.0  # raccoon logit up on the 5x5 map: confident, well-spread boxes
        conv.set_weights([kernel, bias.reshape(-1)])
        model.save(folder / "final.keras")
        loading.write_classes(folder / "classes.json", CLASSES)
    return built_once(tmp_path_factory, "raccoon-run", build)


@pytest.fixture(scope="session")
def exported(run_folder, tmp_path_factory):
    root = built_once(tmp_path_factory, "raccoon-saved-models",
                      lambda root: export_saved_model_from(run_folder, root / "raccoon", model_name="raccoon"))
    path = root / "raccoon" / "1"
    assert (path / "saved_model.pb").is_file()
    return path


def _keras_detections(model, image_bytes):
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    out = ssd_tf.decode_detections(model(resize_image(image[None]), training=False))
    n = int(out["num_detections"][0])
    return out["boxes"][0, :n].numpy(), out["scores"][0, :n].numpy(), out["classes"][0, :n].numpy()


def test_saved_model_layout_and_single_copy_of_variables(exported, run_folder):
    assert (exported / "saved_model.pb").is_file() and (exported / "variables").is_dir()
    assert json.loads((exported / "assets.extra" / "classes.json").read_text())["class_names"] == list(CLASSES)
    size = sum(p.stat().st_size for p in (exported / "variables").iterdir())
    params = loading.load_keras_model(run_folder).count_params()
    assert params * 4 < size < params * 4 * 1.2  # float32, stored once (twice would be 2x)
    assert next_version(exported.parent) == 2


@pytest.mark.slow
def test_fresh_process_detections_equal_keras(exported, run_folder, raccoon_images, tmp_path):
    code = """
import sys, json, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = [open(p, "rb").read() for p in sys.argv[3:]]
out = loaded.signatures["serving_default"](image_bytes=tf.constant(data))
np.savez(sys.argv[2], **{k: v.numpy() for k, v in out.items()})
"""
    result = subprocess.run([sys.executable, "-c", code, str(exported), str(tmp_path / "out.npz"),
                             *map(str, raccoon_images)], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    model = loading.load_keras_model(run_folder)
    for i, path in enumerate(raccoon_images):
        boxes, scores, classes = _keras_detections(model, path.read_bytes())
        n = int(served["num_detections"][i])
        assert n == len(scores) > 0
        # Detections whose scores tie to the last digits may come in either order: compare them
        # sorted by class and box.
        def by_box(b, c):
            return np.lexsort((*np.round(b, 3).T[::-1], c))
        ours = by_box(boxes, classes)
        theirs = by_box(served["detection_boxes"][i, :n], served["detection_classes"][i, :n])
        np.testing.assert_allclose(served["detection_scores"][i, :n][theirs], scores[ours], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(served["detection_boxes"][i, :n][theirs], boxes[ours], atol=1e-4)
        np.testing.assert_array_equal(served["detection_classes"][i, :n][theirs], classes[ours])


@pytest.mark.slow
def test_saved_model_cli_show_and_run(exported, raccoon_images, tmp_path):
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    show = subprocess.run([str(cli), "show", "--dir", str(exported), "--all"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['serve_images']", "image_bytes",
                 "detection_boxes", "num_detections", "DT_UINT8", "DT_STRING"):
        assert text in show.stdout
    image = tf.io.decode_image(raccoon_images[0].read_bytes(), channels=3).numpy()[None]
    np.save(tmp_path / "images.npy", image)
    run = subprocess.run([str(cli), "run", "--dir", str(exported), "--tag_set", "serve", "--signature_def",
                          "serve_images", "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir",
                          str(tmp_path / "cli")], env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    served = tf.saved_model.load(str(exported)).signatures["serve_images"](images=tf.constant(image))
    np.testing.assert_allclose(np.load(tmp_path / "cli" / "detection_scores.npy"), served["detection_scores"],
                               rtol=1e-5)


def test_wrong_inputs_give_clear_errors(exported):
    sig = tf.saved_model.load(str(exported)).signatures
    cases = [
        ("serving_default", {"image_bytes": tf.constant([b"not an image"])}, "not a JPEG, PNG"),
        # Empty and short strings (under the 12 bytes the format check reads) get the same message.
        ("serving_default", {"image_bytes": tf.constant([b""])}, "not a JPEG, PNG"),
        ("serving_default", {"image_bytes": tf.constant([b"\xff\xd8"])}, "not a JPEG, PNG"),
        ("serving_default", {"image_bytes": tf.constant([b"RIFF1234"])}, "not a JPEG, PNG"),
        ("serving_default", {"image_bytes": tf.constant([[b"x"]])}, "must be a 1-D batch"),
        ("serve_images", {"images": tf.zeros([1, 20, 20, 4], tf.uint8)}, r"images must be uint8 \[batch"),
        ("serve_images", {"images": tf.zeros([1, 20, 20, 3], tf.float32)}, "expected to be a uint8 tensor"),
        ("serve_images", {"images": tf.zeros([20, 20, 3], tf.uint8)}, "must be 4-dimensional"),
    ]
    for name, kwargs, message in cases:
        with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=message):
            sig[name](**kwargs)


@pytest.mark.slow
def test_predict_cli_writes_drawn_images_and_pixel_json(run_folder, raccoon_images, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in raccoon_images:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "scripts/predict.py", "--model", str(run_folder), str(folder),
                           "--output", str(out), "--score-threshold", "0.2"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((out / "detections.json").read_text())
    assert [pathlib.Path(i["file"]).name for i in payload["images"]] == sorted(p.name for p in raccoon_images)
    assert len(payload["skipped"]) == 1 and "broken.jpg" in payload["skipped"][0] and "skipped 1" in proc.stdout
    for entry in payload["images"]:
        drawn = tf.io.decode_image((out / pathlib.Path(entry["drawn"]).name).read_bytes()).numpy()
        assert drawn.shape[:2] == (entry["height"], entry["width"])
        assert entry["detections"]
        for det in entry["detections"]:
            x0, y0, x1, y1 = det["box_pixels"]
            assert 0 <= x0 < x1 <= entry["width"] and 0 <= y0 < y1 <= entry["height"]
            assert det["class_name"] == "raccoon" and det["class_id"] == 1 and det["score"] >= 0.2
        original = tf.io.decode_image(pathlib.Path(entry["file"]).read_bytes(), channels=3).numpy()
        assert np.abs(drawn.astype(int) - original).max() > 100  # boxes were drawn


@pytest.mark.slow
def test_callback_evaluate_cli_and_saved_model_agree(run_folder, exported, capsys, monkeypatch, tmp_path):
    """The ways a model gets scored agree: the training callback (Keras, batches of 8) and
    evaluate.py on the SavedModel (the serving graph, one image at a time), all 12 COCO stats.

    Their detections are equal up to float32 rounding, which differs with batch size and CPU
    (about 1e-6 in scores). Rounding can reorder two detections only where their scores lie
    within it, and that moves AP only when one is a true positive and the other not: by at most
    1 / (ground truths x 101 recall points) per swap at one IoU threshold, 4.5e-4 here (the first
    20 validation images, 22 raccoons: half the split, for half the time). This model's scores
    are the adverse case, densely near-tied (asserted: most neighbouring scores within 1e-5), so
    a handful of swaps may happen: tolerance 2e-3 per stat.
    """
    sys.path.insert(0, str(ROOT / "scripts"))
    import evaluate as evaluate_cli

    from ssd_tf import data

    from ssd_tf.evaluation import coco_metric as evaluation

    source = shared_data("raccoon", "VOC2007")
    voc = tmp_path / "VOC2007"  # the raccoon set with a 20-image val split
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name in ("Annotations", "JPEGImages"):
        (voc / name).symlink_to(source / name)
    ids = (source / "ImageSets" / "Main" / "val.txt").read_text().split()[:20]
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n".join(ids) + "\n")
    val = data.read_voc(voc, "val", class_names=("raccoon",))
    assert len(val) == 20 and sum(len(labels) for labels in val.labels) == 22
    model = loading.load_keras_model(run_folder)
    logs, reports, results = {}, [], []
    callback = COCOEvaluation(val, every=1)
    callback.set_model(model)
    with monkeypatch.context() as spy:  # the callback's own report and detections, kept to compare
        def keep(found, fn):
            return lambda *args, **kwargs: found.append(fn(*args, **kwargs)) or found[-1]
        spy.setattr(evaluation, "evaluate_model", keep(reports, evaluation.evaluate_model))
        spy.setattr(evaluation, "predict_coco_results", keep(results, evaluation.predict_coco_results))
        callback.on_epoch_end(0, logs)
    assert len(reports) == len(results) == 1
    keras_stats = reports[0]["stats"]
    capsys.readouterr()
    report_path = tmp_path / "saved-model-evaluation" / "report.json"
    evaluate_cli.main(["--model", str(exported), "--dataset", "voc", "--split", "val", "--output",
                       str(report_path.parent), "--data-dir", str(voc)])
    out = capsys.readouterr().out
    assert "raccoon" in out and f"{len(val)} images, 2000 detections" in out  # 100 in each image
    saved_model_stats = json.loads(report_path.read_text())["stats"]
    assert keras_stats["AP50"] > 0.01  # it finds raccoons: agreement means something
    assert (logs["val_mAP"], logs["val_AP50"]) == (keras_stats["AP"], keras_stats["AP50"])
    assert len(saved_model_stats) == len(keras_stats) == 12
    for name, value in keras_stats.items():
        assert saved_model_stats[name] == pytest.approx(value, abs=2e-3), name
    # The adverse case: scores tied to within rounding (0.62 of neighbours measured), as a confident
    # detector's saturate.
    scores = np.sort([r["score"] for r in results[0]])
    assert len(scores) == 2000 and np.mean(np.diff(scores) < 1e-5) > 0.3


def _truncated_copy(path, target):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(target).write_bytes(data[: len(data) // 2])
    return pathlib.Path(target)


@pytest.mark.slow
def test_loaders_never_return_unloaded_weights(run_folder, tmp_path):
    """Every way of naming a model raises, naming the file, when its weights don't fit."""
    import keras


    model = loading.load_keras_model(run_folder)  # 2 classes
    three = ("background", "a", "b")

    # A weights file of a 2-class model beside a classes.json of 3 classes.
    other = tmp_path / "other_classes"
    other.mkdir()
    model.save_weights(other / "m.weights.h5")
    loading.write_classes(other / "classes.json", three)
    with pytest.raises(ValueError, match=r"m\.weights\.h5: weights do not fit an SSD300 with 3 classes"):
        loading.load_keras_model(other / "m.weights.h5")
    # Partial files.
    partial = _truncated_copy(other / "m.weights.h5", tmp_path / "partial.weights.h5")
    with pytest.raises(ValueError, match="partial.weights.h5"):
        loading.load_keras_model(partial, num_classes=2)
    with pytest.raises(ValueError, match="partial.keras"):
        loading.load_keras_model(_truncated_copy(run_folder / "final.keras", tmp_path / "partial.keras"))
    # A .keras file of another model.
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
    small.save(tmp_path / "small.keras")
    with pytest.raises(ValueError, match="small.keras: not an SSD300 model"):
        loading.load_keras_model(tmp_path / "small.keras")

    # Run folders without final.keras: a fit run's backup of another class count ...
    backup_run = tmp_path / "backup_run"
    (backup_run / "checkpoints").mkdir(parents=True)
    model.save_weights(backup_run / "checkpoints" / "latest.weights.h5")
    loading.write_classes(backup_run / "classes.json", three)
    with pytest.raises(ValueError, match="latest.weights.h5: weights do not fit"):
        loading.load_keras_model(backup_run)
    # ... a multi-worker run's tf.train checkpoint of another model, and of another class count.
    foreign_run = tmp_path / "foreign_run"
    tf.train.Checkpoint(model=small).save(str(foreign_run / "checkpoints" / "ckpt"))
    loading.write_classes(foreign_run / "classes.json", CLASSES)
    classes_run = tmp_path / "classes_run"
    tf.train.Checkpoint(model=model).save(str(classes_run / "checkpoints" / "ckpt"))
    loading.write_classes(classes_run / "classes.json", three)
    for run, message in ((foreign_run, "not bound to checkpointed values"), (classes_run, "incompatible tensor")):
        with pytest.raises(ValueError, match=f"ckpt-1: checkpoint does not fit the model.*{message}"):
            loading.load_keras_model(run)
    # The same checkpoint with the right class count loads, equal to the model saved.
    loading.write_classes(classes_run / "classes.json", CLASSES)
    restored = loading.load_keras_model(classes_run)
    for a, b in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    loading.write_classes(classes_run / "classes.json", three)

    # Export, prediction and evaluation refuse them too: they load through load_keras_model, which
    # refuses each kind above, so each is tried on one kind (each try builds an SSD300).
    with pytest.raises(ValueError, match="latest.weights.h5: weights do not fit"):
        export_saved_model_from(backup_run, tmp_path / "saved_models" / "bad")
    with pytest.raises(ValueError, match="ckpt-1: checkpoint does not fit"):
        Detector.load(foreign_run)
    with pytest.raises(ValueError, match="ckpt-1: checkpoint does not fit"):
        evaluate_model_from(classes_run, "synthetic")
    assert not (tmp_path / "saved_models").exists()


def test_training_run_predictions_are_drawn_at_each_images_own_size(tmp_path):
    from PIL import Image

    from ssd_tf import data

    from ssd_tf.core import anchors

    from ssd_tf.core import boxes

    from ssd_tf.inference import prediction

    from ssd_tf.inference import drawing as visualize

    val_set = data.make_synthetic(3, seed=5)  # 320x240 images held as JPEG bytes
    slot = 8728  # a model sure of class 1 in this default box, in every image
    model = one_box_model(slot, num_classes=4)
    paths = prediction.draw_set_predictions(model, val_set, tmp_path / "predictions", count=2)
    assert [p.name for p in paths] == ["image-0.jpg", "image-1.jpg"]
    box = boxes.cxcywh_to_xyxy(anchors.default_boxes(anchors.SSD300)[slot]).numpy() * [320, 240, 320, 240]
    colour = np.array(visualize.class_colour(1))
    for path in paths:
        drawn = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert drawn.shape == (240, 320, 3)
        # The box's left edge is drawn in class 1's colour (the median down a stretch of it: JPEG
        # blurs the colour of a 2-pixel line).
        y, x = int((box[1] + box[3]) / 2), int(round(box[0]))
        edge = np.median(drawn[y - 20:y + 20, x], axis=0)
        assert np.abs(edge - colour).max() < 60, (edge, colour)
        assert np.abs(np.median(drawn[y - 20:y + 20, x + 40], axis=0) - colour).max() > 60  # inside: the image
    # Above every score, nothing is drawn: the same pixels are the image's own.
    [path] = prediction.draw_set_predictions(model, val_set, tmp_path / "none", count=1, min_score=1.01)
    drawn = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(np.median(drawn[y - 20:y + 20, x], axis=0) - colour).max() > 60
