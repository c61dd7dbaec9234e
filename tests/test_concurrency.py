"""One Detector shared by a server's threads: concurrent calls return exactly what sequential calls
return, for every model form, on real photos of mixed sizes."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import shared_data
from ssd_tf.data.images import load_image
from ssd_tf.inference.detector import Detector

FORMS = ["run", "saved_model", "tflite", "int8", "onnx"]


def _photos():
    """8 raccoon photos at their own sizes (from about 200 to 650 pixels a side), and two of them
    cropped to other sizes: 10 distinct shapes."""
    images = [load_image(p) for p in sorted(shared_data("raccoon", "VOC2007", "JPEGImages").glob("*.jpg"))[:8]]
    images += [images[0][:201, :257], images[1][17:, 5:]]
    assert len({i.shape for i in images}) >= 8
    return images


def _calls(images):
    """The calls a server might make: one image, or a list of two of different sizes."""
    return [[images[i]] for i in range(len(images))] + [[images[i], images[(i + 3) % len(images)]]
                                                      for i in range(0, len(images), 2)]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in ("boxes", "scores", "class_ids"):
            np.testing.assert_array_equal(x[key], y[key])
        assert x["class_names"] == y["class_names"]


@pytest.mark.slow  # the session's trained model and its exports
@pytest.mark.parametrize("form", FORMS)
def test_concurrent_calls_return_what_sequential_calls_return(models, form):
    detector = Detector.load(models[form])
    calls = _calls(_photos())
    sequential = [detector.detect(call) for call in calls]
    assert sum(len(r["scores"]) for result in sequential for r in result) > 0
    # 4 threads, every call made twice, in an order that mixes sizes in flight.
    order = [k % len(calls) for k in range(2 * len(calls))]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda k: detector.detect(calls[k]), order))
    for k, result in zip(order, concurrent):
        _same(result, sequential[k])
