"""classes.json: a model's or a converted data set's class names 0..C-1 and category ids."""

import json
import pathlib

CLASSES_FILE = "classes.json"


def write_classes(path, class_names, category_ids=None):
    """Write ``classes.json``: names of classes 0..C-1 and their data set category ids."""
    payload = {"class_names": list(class_names),
               "category_ids": list(category_ids) if category_ids is not None else list(range(len(class_names)))}
    pathlib.Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def read_classes(folder):
    """(class_names, category_ids) from ``folder/classes.json``, or (None, None)."""
    path = pathlib.Path(folder) / CLASSES_FILE
    if not path.is_file():
        return None, None
    payload = json.loads(path.read_text())
    return tuple(payload["class_names"]), tuple(payload["category_ids"])


def generic_names(num_classes):
    """Names for a model that came without them: background, class_1 ... class_{C-1}."""
    return ("background",) + tuple(f"class_{i}" for i in range(1, int(num_classes)))
