"""Records written by the TF Object Detection API's tools: labels are category ids (COCO: 1-90),
mapped to the model's classes through a label map, or refused before training."""

import io

import numpy as np
import pytest
from PIL import Image

from ssd_tf import data
from ssd_tf.training.config import TrainConfig
from ssd_tf.core.classes import write_classes
from ssd_tf.data import tfrecord

LABEL_MAP = """
item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
}
item {
  name: "/m/0bt9lr"
  id: 18
  display_name: "dog"
}
item { id: 88 name: 'teddy bear' }
"""


def _write_records(folder, labels_per_image, name="train"):
    """OD API style records: no conversion metadata; labels as given (category ids)."""
    import tensorflow as tf
    folder.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / f"{name}.tfrecord-00000-of-00001")) as writer:
        for i, labels in enumerate(labels_per_image):
            buffer = io.BytesIO()
            Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(buffer, "JPEG")
            boxes = [[0.1 + 0.1 * k, 0.1, 0.5 + 0.1 * k, 0.7] for k in range(len(labels))]
            writer.write(tfrecord.encode_example(buffer.getvalue(), "jpeg", 60, 80, f"image{i}.jpg", f"image{i}.jpg",
                                                 boxes, labels, np.zeros(len(labels)),
                                                 {k: str(k) for k in range(100)}))


def test_label_map_maps_category_ids_to_the_model_classes(tmp_path):
    folder = tmp_path / "records"
    _write_records(folder, [[18], [88, 1], [18, 88]])
    (folder / "label_map.pbtxt").write_text(LABEL_MAP)
    records = data.read_tfrecords(folder, "train")
    assert records.class_names == ("background", "person", "dog", "teddy bear")
    assert records.category_ids == (0, 1, 18, 88)
    batches = list(data.train_dataset(records, 3, augment_images=False, shuffle=False))
    y_true = batches[0][1].numpy()
    # Every image's matched default boxes carry the model's class ids: dog 2, teddy bear 3, person 1.
    assert [sorted(set(np.unique(y[:, 4]).astype(int)) - {0}) for y in y_true] == [[2], [1, 3], [2, 3]]


def test_classes_json_with_category_ids_maps_them_too(tmp_path):
    folder = tmp_path / "records"
    _write_records(folder, [[18], [88]])
    write_classes(folder / "classes.json", ("background", "dog", "teddy bear"), (0, 18, 88))
    records = data.read_tfrecords(folder, "train")
    y_true = next(iter(data.train_dataset(records, 2, augment_images=False, shuffle=False)))[1].numpy()
    assert [sorted(set(np.unique(y[:, 4]).astype(int)) - {0}) for y in y_true] == [[1], [2]]


def test_a_label_the_map_does_not_list_is_refused_before_training(tmp_path):
    folder = tmp_path / "records"
    _write_records(folder, [[18], [18, 91]])
    (folder / "label_map.pbtxt").write_text(LABEL_MAP)
    with pytest.raises(ValueError, match=r"train\.tfrecord-00000-of-00001: record image1\.jpg: label 91 is not "
                                         r"a class id of .*label_map\.pbtxt"):
        data.read_tfrecords(folder, "train")
    # Contiguous classes (category ids 0..C-1) and COCO's ids in the records: refused the same way.
    other = tmp_path / "contiguous"
    _write_records(other, [[1], [18]])
    write_classes(other / "classes.json", ("background", "person", "bicycle"))
    with pytest.raises(ValueError, match=r"record image1\.jpg: label 18 is not a class id of .*classes\.json"):
        from ssd_tf.training import run as training
        training.train(TrainConfig(dataset="tfrecord", data_dir=str(other), val_split="", epochs=1,
                                   output=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_label_map_parse_errors_name_the_file(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_text("item { name: 'x' }")
    with pytest.raises(ValueError, match=r"label_map\.pbtxt: item 1 has no id"):
        tfrecord.read_label_map(path)
