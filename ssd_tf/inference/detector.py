"""``Detector``: a model, its resizing, decoding and class names, behind one call.

    detector = Detector.load("runs/RUN")      # or .keras, a SavedModel folder, .tflite, .onnx
    [result] = detector.detect([image_uint8])  # any sizes; result["boxes_pixels"], ["class_names"], ...

A Keras model runs through ``ServingModule``'s graph functions, the ones export saves as the
SavedModel's signatures; a SavedModel through its ``serve_images`` signature; a ``.tflite`` file
through the interpreter; an ``.onnx`` file through ONNX Runtime. Evaluation, prediction and the
TensorBoard images callback all detect through this class.
"""

import pathlib

import numpy as np

from ssd_tf.core.classes import generic_names, read_classes
from ssd_tf.inference import loading
from ssd_tf.inference.model_files import check_model_path
from ssd_tf.inference.serving import ServingModule

KINDS = ("keras", "saved_model", "tflite", "onnx")


class Detector:
    """Detects objects with an SSD300 in any of its forms.

    Build it with ``Detector(keras_model, class_names, category_ids)`` or ``Detector.load(path)``.
    Thresholds apply to Keras models; a SavedModel or ``.tflite`` keeps those it was exported with.
    ``class_names`` [C] (index 0: background) and ``category_ids`` [C] are generic
    (``class_1``..., ids 0..C-1) when the model came without names; None only for a SavedModel
    exported without classes.json, whose class count is unknown (``name_of`` still answers).

    Threads: one Detector may be shared by a server's threads, whatever it loaded. Concurrent calls
    return exactly what the same calls return one after the other (TensorFlow's functions and ONNX
    Runtime's sessions take concurrent calls; a ``.tflite`` file runs on a pool of interpreters,
    one per call in flight).
    """

    def __init__(self, model, class_names=None, category_ids=None, score_threshold=0.05, iou_threshold=0.5,
                 max_detections=100):
        self.kind = "keras"
        self.path = None
        self.model = model
        self.num_classes = int(model.output_shape[-1]) - 4
        # Keep the module itself: a tf.function method holds only a weak reference to its instance.
        self._module = ServingModule(model, score_threshold, iou_threshold, max_detections)
        self._detect_batch = lambda images: _numpy(self._module.serve_images(images))
        self._set_classes(class_names, category_ids)

    @classmethod
    def load(cls, path, score_threshold=0.05, iou_threshold=0.5, max_detections=100, num_classes=None,
             num_threads=None, interpreters=None):
        """From a run folder, a ``.keras`` or ``.weights.h5`` file (classes.json beside it), a SavedModel
        folder (classes.json in ``assets.extra/``), or a ``.tflite`` or ``.onnx`` file (classes.json
        beside it). FileNotFoundError or ValueError naming the path and every form taken when it is
        none of these. ``num_threads`` (``.tflite``, ``.onnx``) and ``interpreters`` (``.tflite``)
        tune the runtime: see ``TFLiteRunner``."""
        path = pathlib.Path(path)
        check_model_path(path)
        if path.suffix in (".tflite", ".onnx"):
            # The runtimes are imported only when used.
            if path.suffix == ".tflite":
                from ssd_tf.inference.tflite_runner import TFLiteRunner
                runner = TFLiteRunner(path, num_threads, interpreters)
            else:
                from ssd_tf.inference.onnx_runner import ONNXRunner
                runner = ONNXRunner(path, num_threads)
            self = cls.__new__(cls)
            self.kind, self.path, self.model = path.suffix[1:], path, runner
            self.num_classes = None
            self._detect_batch = runner.detect_batch
            self._set_classes(*read_classes(path.parent))
            return self
        if loading.is_saved_model(path):
            import tensorflow as tf
            loaded = tf.saved_model.load(str(path))
            if "serve_images" not in loaded.signatures:
                raise ValueError(f"{path}: not an ssd-tf SavedModel (no serve_images signature)")
            self = cls.__new__(cls)
            self.kind, self.path, self.model = "saved_model", path, loaded
            self.num_classes = None
            serve = loaded.signatures["serve_images"]
            self._detect_batch = lambda images: _numpy(serve(images=tf.constant(images)))
            self._set_classes(*read_classes(path / "assets.extra"))
            return self
        model = loading.load_keras_model(path, num_classes)
        self = cls(model, *loading.classes_beside(path), score_threshold=score_threshold,
                   iou_threshold=iou_threshold, max_detections=max_detections)
        self.path = path
        return self

    def _set_classes(self, class_names, category_ids):
        if class_names is not None and self.num_classes is not None and len(class_names) != self.num_classes:
            class_names = category_ids = None  # names of another model: generic ones are honest
        if class_names is not None:
            self.num_classes = len(class_names)
        if class_names is None and self.num_classes is not None:
            class_names = generic_names(self.num_classes)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.category_ids = (tuple(int(i) for i in category_ids) if category_ids is not None
                             else tuple(range(len(class_names))) if class_names is not None else None)

    def name_of(self, class_id):
        """The name of class ``class_id``; ``class_<id>`` when the model has no names."""
        return self.class_names[class_id] if self.class_names is not None else f"class_{int(class_id)}"

    def category_of(self, class_id):
        """The data set category id of class ``class_id`` (the class id when the model has none)."""
        return self.category_ids[class_id] if self.category_ids is not None else int(class_id)

    @property
    def takes_resized(self):
        """Whether ``detect_resized`` runs (Keras models): evaluation batches resized images then."""
        return self.kind == "keras"

    def detect_resized(self, images):
        """Batched detections of float images [B, 300, 300, 3] (0..255), as the evaluation pipeline
        yields them; Keras models only. Numpy dict of ``boxes`` [B, K, 4] normalised xyxy, ``scores``
        [B, K], ``classes`` [B, K] (1..C-1; 0 in padding), ``num_detections`` [B]."""
        if not self.takes_resized:
            raise ValueError(f"detect_resized runs Keras models; this is a {self.kind} model: use detect_batch")
        return _numpy(self._module.detect(images))

    def detect_batch(self, images):
        """Batched detections of uint8 images [B, H, W, 3] of one size (resized inside); the same
        dict as ``detect_resized``."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [batch, height, width, 3]; got {images.dtype} {images.shape}")
        return self._detect_batch(images)

    def detect(self, images):
        """Detections for each of ``images`` (a list of uint8 [H, W, 3] arrays of any sizes, or one
        uint8 [B, H, W, 3] array). Returns one dict per image: ``boxes`` [K, 4] normalised xyxy,
        ``boxes_pixels`` [K, 4] xyxy in that image's pixels, ``scores`` [K], ``class_ids`` [K],
        ``class_names`` [K], ``category_ids`` [K]; best score first."""
        images = [np.asarray(i) for i in images]
        results = [None] * len(images)
        by_size = {}
        for index, image in enumerate(images):
            by_size.setdefault(image.shape, []).append(index)
        for shape, indices in by_size.items():
            out = self.detect_batch(np.stack([images[i] for i in indices]))
            for row, index in enumerate(indices):
                n = int(out["num_detections"][row])
                results[index] = self._result(out["boxes"][row, :n], out["scores"][row, :n], out["classes"][row, :n],
                                              shape[:2])
        return results

    def _result(self, boxes, scores, classes, size):
        height, width = size
        return {"boxes": boxes, "boxes_pixels": boxes * np.array([width, height, width, height], np.float32),
                "scores": scores, "class_ids": classes.astype(np.int32),
                "class_names": [self.name_of(int(c)) for c in classes],
                "category_ids": np.array([self.category_of(int(c)) for c in classes], np.int64)}


def _numpy(out):
    """ServingModule's output names -> decode_detections' names, as numpy."""
    names = {"detection_boxes": "boxes", "detection_scores": "scores", "detection_classes": "classes",
             "num_detections": "num_detections"}
    return {names.get(k, k): np.asarray(v) for k, v in out.items()}
