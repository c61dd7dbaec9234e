"""The scripts' argument parsing: one vocabulary, every default in ``--help``, one-line errors.

Stdlib only: a script parses and checks its arguments before TensorFlow loads.

The vocabulary, the same in every script:

=====================  ==========================================================================
``--model``            a trained model: run folder, .keras, .weights.h5, SavedModel, .tflite, .onnx
``--dataset``          the data set's kind (synthetic, voc, coco, yolo, tfrecord); default synthetic
``--data-dir``         the folder data are read from (a data set, or a folder of images)
``--split``            one split name; ``--splits`` several, the first for training, the second for
                       validation (YOLO: a third for test)
``--classes``          class names, comma-separated
``--output``           the new folder a command writes into (never an existing file)
``--precision``        float32, float16, bfloat16 (export: float32 or the model's own)
``--score-threshold``  detections below this score are left out
``--seed``             the random seed
``--quiet``            no progress display
reference              NVIDIA's SSD300 v1.1 in PyTorch, which the benchmarks compare against
=====================  ==========================================================================
"""

import argparse
import math
import sys

DATASETS = ("synthetic", "voc", "coco", "yolo", "tfrecord")  # ssd_tf.data.kinds.KINDS (test-checked)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and ``(default: X)`` after every option that has one and
    does not say it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or action.required:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes are one ``error:`` line and exit status 2 (no usage block)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parser(doc):
    """A script's parser: ``doc`` (its module docstring) as the description."""
    return ArgumentParser(description=doc)


def _number(kind, test, what):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    convert.__name__ = what  # argparse names the type in some messages
    return convert


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "0 or more")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "0 or more")
fraction = _number(float, lambda v: 0 <= v <= 1, "between 0 and 1")
momentum = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
class_count = _number(int, lambda v: v >= 2, "2 or more (background and at least one class)")


def split_list(text):
    """``--splits`` "train, val" -> ["train", "val"]."""
    names = [s.strip() for s in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty split name (comma-separated names, e.g. train,val)")
    return names


def add_data(p, default="synthetic", splits="split", what="the data set"):
    """--dataset, --data-dir, --split or --splits, --classes."""
    p.add_argument("--dataset", choices=DATASETS, default=default,
                   help=f"the kind of {what}: synthetic (the built-in set), voc, coco, yolo, or tfrecord "
                        "(shards from scripts/convert.py or the TF Object Detection API)")
    p.add_argument("--data-dir", help="VOC: the VOC20xx folder; COCO: the folder with annotations/ and the image "
                                      "folders; YOLO: the folder holding data.yaml; tfrecord: a converted folder "
                                      "(not for synthetic)")
    if splits == "split":
        p.add_argument("--split", help="default: VOC and YOLO val, COCO val2017, tfrecord val, synthetic val")
    else:
        p.add_argument("--splits", type=split_list,
                       help="comma-separated split names, the first for training, the second for validation "
                            "(default: VOC and YOLO train,val; COCO train2017,val2017)")
    p.add_argument("--classes", help="VOC class names, comma-separated (default: the 20 VOC classes, or the "
                                     "model's); YOLO and COCO name their classes themselves")


def add_quiet(p):
    p.add_argument("--quiet", action="store_true",
                   help="no progress display (on a terminal a bar, else a line per 10 %%)")
