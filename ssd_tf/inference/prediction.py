"""Predict on image files: drawn images plus a JSON of detections in pixel coordinates."""

import json
import logging
import pathlib

import numpy as np
from PIL import Image

from ssd_tf.data import pipeline
from ssd_tf.data.detection_set import SkipReport
from ssd_tf.data.images import load_image
from ssd_tf.inference import drawing as visualize
from ssd_tf.inference.detector import Detector
from ssd_tf.progress import track

log = logging.getLogger("ssd_tf.inference.prediction")


def _names(detector, class_ids):
    """Names indexed by class id, generic where the detector has none."""
    return detector.class_names or [detector.name_of(i) for i in range(int(max(class_ids, default=0)) + 1)]


def predict_files(detector, inputs, output_dir, min_score=0.3, progress=False):
    """Run a ``Detector`` on image files; write drawn images and detections.json.

    Detections with score >= ``min_score`` are drawn and listed. Unreadable files are skipped with
    a warning and listed under "skipped". ``progress``: show it on stderr. Returns the JSON payload.
    ``output_dir`` is made when the first image has been read: when none can be, nothing is written.
    """
    output_dir = pathlib.Path(output_dir)
    report = SkipReport(held=True)  # shown once some image is read: when none is, the caller says so once
    images = []
    inputs = list(inputs)
    for path in track(inputs, len(inputs), "predicting") if progress else inputs:
        try:
            image = load_image(path)
        except ValueError as err:
            report.skip("unreadable images", str(err))
            continue
        height, width = image.shape[:2]
        [dets] = detector.detect([image])
        keep = dets["scores"] >= min_score
        drawn = visualize.draw_detections(image, dets["boxes_pixels"][keep], dets["class_ids"][keep],
                                          dets["scores"][keep], _names(detector, dets["class_ids"]))
        jpeg = path.suffix.lower() in (".jpg", ".jpeg")
        out_path = output_dir / (path.stem + (".jpg" if jpeg else ".png"))
        output_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn).save(out_path, **({"quality": 95} if jpeg else {}))
        images.append({
            "file": str(path), "drawn": str(out_path), "width": int(width), "height": int(height),
            "detections": [
                {"class_id": int(c), "class_name": name, "category_id": int(cat), "score": round(float(s), 5),
                 "box_pixels": [round(float(v), 2) for v in b]}
                for b, c, name, cat, s in zip(dets["boxes_pixels"][keep], dets["class_ids"][keep],
                                              np.array(dets["class_names"], object)[keep],
                                              dets["category_ids"][keep], dets["scores"][keep])
            ],
        })
    payload = {"model": str(detector.path), "min_score": min_score, "images": images,
               "skipped": report.messages, "box_format": "[xmin, ymin, xmax, ymax] in image pixels"}
    if images:
        report.release()
        (output_dir / "detections.json").write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def draw_set_predictions(model, detection_set, output_dir, count=4, min_score=0.3):
    """Draw the detections (score >= ``min_score``) of ``model`` (a Keras model or a ``Detector``)
    on the first ``count`` images of a DetectionSet or TFRecordSet, at their own size, into
    ``output_dir`` as JPEGs named after the image files (or ``image-<id>.jpg``). Returns the paths.

    The in-memory counterpart of ``predict_files``: a training run shows what its model finds."""
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {int(i): pathlib.Path(src).stem for i, src in zip(getattr(detection_set, "image_ids", []),
                                                              getattr(detection_set, "sources", []))
             if isinstance(src, str)}
    paths = []
    detector = model if isinstance(model, Detector) else Detector(model, detection_set.class_names)
    for image, info in pipeline.eval_dataset(detection_set, 1, resize=False).take(count):
        if not len(image):  # unreadable: named by the pipeline
            continue
        dets = detector.detect_batch(image.numpy())
        n = int(dets["num_detections"][0])
        drawn = visualize.draw_kept(image[0].numpy(), dets["boxes"][0, :n], dets["classes"][0, :n],
                                    dets["scores"][0, :n], detector.class_names, min_score)[0]
        image_id = int(info["image_id"][0].numpy())
        path = output_dir / f"{files.get(image_id, f'image-{image_id}')}.jpg"
        Image.fromarray(drawn).save(path, quality=92)
        paths.append(path)
    return paths
