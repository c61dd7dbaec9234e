"""``scripts/evaluate.py``'s glue: a model path and a data set in, a COCO report out."""

from ssd_tf.data.kinds import default_split, read_dataset
from ssd_tf.evaluation import coco_metric
from ssd_tf.inference.detector import Detector


def evaluate_model_from(model_path, kind, data_dir=None, split=None, classes=None, batch_size=8, seed=0,
                        synthetic_images=64, score_threshold=0.25):
    """Evaluate a run folder / .keras / SavedModel / .tflite / .onnx on a data set read by kind (voc, coco,
    tfrecord, synthetic).

    VOC classes default to the model's own; the data set must have the model's class count.
    The built-in set: ``split`` (default "val") of the run with ``seed`` and ``synthetic_images``,
    the images that run validated on. ``score_threshold``: the confusion matrix's. Returns (report,
    dataset).
    """
    detector = Detector.load(model_path, score_threshold=0.05)
    classes = list(classes) if classes else list(detector.class_names[1:]) if detector.class_names else None
    split = split or default_split(kind, "val")
    dataset = read_dataset(kind, data_dir, split, classes, synthetic_images=synthetic_images, seed=seed)
    if detector.num_classes is not None and dataset.num_classes != detector.num_classes:
        raise ValueError(f"{model_path} has {detector.num_classes - 1} classes, {dataset.name} has "
                         f"{dataset.num_classes - 1}: evaluate on the data the model was trained for")
    report = coco_metric.evaluate_model(detector, dataset, batch_size, score_threshold=score_threshold, progress=True)
    return report, dataset
