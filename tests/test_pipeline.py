import numpy as np
import pytest
import tensorflow as tf

import ssd_tf
from conftest import shared_data
from ssd_tf import data
from helpers import tiny_ssd

PY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def _graph_ops(dataset):
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node}
    for fn in graph.library.function:
        ops |= {node.op for node in fn.node_def}
    return ops


@pytest.fixture(scope="module")
def synthetic():
    return data.make_synthetic(12, seed=0)


def test_pipeline_functions_skip_autograph(synthetic, monkeypatch):
    """tf.data traces ssd_tf's pipeline functions as written (TF control flow only): AutoGraph's
    rewrite of them cost 1.8 s of each process's first pipelines (3.4 s against 1.6, Xeon AMX)."""
    import inspect

    from tensorflow.python.autograph.impl import api

    converted, real = [], api.converted_call

    def spy(f, *args, **kwargs):
        module = getattr(inspect.getmodule(f), "__name__", "")
        if module.startswith("ssd_tf"):
            converted.append(f"{module}.{getattr(f, '__name__', f)}")
        return real(f, *args, **kwargs)
    monkeypatch.setattr(api, "converted_call", spy)
    data.train_dataset(synthetic, 2, seed=0)
    data.train_dataset(synthetic, 2, augment_images=False, skip_empty=True)
    data.validation_dataset(synthetic, 2)
    data.eval_dataset(synthetic, 1, resize=False)
    assert not converted, sorted(set(converted))


def test_no_py_function_in_pipeline_graph(synthetic):
    ops = _graph_ops(data.train_dataset(synthetic, 4, seed=0))
    assert "DecodeImage" in ops and not ops & PY_OPS
    # The check itself can fail: a py_function shows up in the graph.
    leaky = tf.data.Dataset.range(2).map(lambda x: tf.py_function(lambda y: y, [x], tf.int64))
    assert _graph_ops(leaky) & PY_OPS


def test_batches_feed_the_model_contract(synthetic):
    images, y_true = next(iter(data.train_dataset(synthetic, 4, seed=0)))
    assert images.shape == (4, 300, 300, 3) and images.dtype == tf.float32
    assert y_true.shape == (4, 8732, 5) and y_true.dtype == tf.float32
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    labels = y_true[..., 4].numpy()
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and np.all((labels > 0).sum(axis=1) >= 1)


def test_seeded_pipeline_repeats_and_epochs_differ(synthetic):
    def epoch(ds):
        return [x.numpy() for x, _ in ds]
    ds1, ds2 = data.train_dataset(synthetic, 4, seed=5), data.train_dataset(synthetic, 4, seed=5)
    first, again = epoch(ds1), epoch(ds2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    second = epoch(ds1)  # next epoch of the same dataset: new order and augmentations
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))


def test_without_augmentation_targets_equal_direct_encoding(synthetic):
    images, y_true = next(iter(data.validation_dataset(synthetic, 2)))
    expected = ssd_tf.encode_y_true(synthetic.boxes[0], synthetic.labels[0]).numpy()
    np.testing.assert_allclose(y_true[0].numpy(), expected, atol=1e-6)


def test_eval_dataset_keeps_ids_and_sizes():
    s = data.read_voc(shared_data("voc2012_sample", "VOC2012"), "val")
    seen_ids, seen_sizes = [], []
    for images, info in data.eval_dataset(s, 8):
        assert images.shape[1:] == (300, 300, 3)
        seen_ids += info["image_id"].numpy().tolist()
        seen_sizes += info["size"].numpy().tolist()
    assert seen_ids == s.image_ids and seen_sizes == [list(x) for x in s.sizes]


def test_real_voc_pipeline_encodes_positives():
    s = data.read_voc(shared_data("raccoon", "VOC2007"), "val", class_names=("raccoon",))
    for _, y_true in data.train_dataset(s, 8, seed=0).take(2):
        assert np.all((y_true[..., 4].numpy() > 0).sum(axis=1) >= 1)


def test_datasets_have_known_length_for_keras(synthetic):
    assert int(data.train_dataset(synthetic, 5, seed=0).cardinality()) == 3  # 12 images, batch 5
    assert int(data.eval_dataset(synthetic, 4).cardinality()) == 3


def _png_set(folder, count, step):
    """A DetectionSet of ``count`` 20x30 grey PNGs in ``folder`` (image i at level step * i), one
    box each: files a test can overwrite after parsing."""
    from PIL import Image
    for i in range(count):
        Image.fromarray(np.full((20, 30, 3), step * i, np.uint8)).save(folder / f"{i}.png")
    return data.DetectionSet(
        sources=[str(folder / f"{i}.png") for i in range(count)],
        boxes=[np.array([[0.1, 0.1, 0.6, 0.6]], np.float32)] * count,
        labels=[np.array([1], np.int32)] * count, difficult=[np.zeros(1, bool)] * count,
        image_ids=list(range(count)), sizes=[(20, 30)] * count, class_names=("background", "x"), category_ids=(0, 1))


def test_image_unreadable_mid_epoch_is_skipped_and_named(tmp_path, capfd):
    s = _png_set(tmp_path, 3, step=60)
    (tmp_path / "1.png").write_bytes(b"overwritten after parsing")
    capfd.readouterr()
    batches = list(data.eval_dataset(s, 2))
    assert len(batches) == 2  # the declared length holds; the readable images keep their order
    assert [i for b in batches for i in b[1]["image_id"].numpy().tolist()] == [0, 2]
    err = capfd.readouterr().err
    assert f"skipped unreadable image(s) {tmp_path / '1.png'} - unreadable images so far in this pass: 1" in err
    assert str(tmp_path / "0.png") not in err
    # Training skips it the same way, keeps its known length, and counts again in the next pass.
    ds = data.train_dataset(s, 2, seed=0)
    assert int(ds.cardinality()) == 2
    sizes = [int(images.shape[0]) for images, y_true in ds.repeat(2)]
    assert len(sizes) == 4 and sum(sizes) == 4  # 2 batches a pass, 2 readable images in each
    assert capfd.readouterr().err.count("1.png") == 2


def test_resize_matches_the_references_pil_resize():
    from PIL import Image
    from ssd_tf.data.resize import resize_image
    image = np.asarray(Image.open(shared_data("raccoon", "VOC2007", "JPEGImages", "raccoon-1.jpg")).convert("RGB"))
    pil = np.asarray(Image.fromarray(image).resize((300, 300), Image.BILINEAR), np.float32)
    ours = resize_image(image).numpy()
    assert ours.shape == (300, 300, 3) and np.abs(ours - pil).mean() < 0.6  # without antialias: 1.4


def test_consecutive_and_trailing_unreadable_images_are_all_named(tmp_path, capfd):
    from PIL import Image
    n = 8
    for i in range(n):
        Image.fromarray(np.full((20, 30, 3), 20 * i, np.uint8)).save(tmp_path / f"{i}.png")
    s = data.DetectionSet(
        sources=[str(tmp_path / f"{i}.png") for i in range(n)],
        boxes=[np.array([[0.1, 0.1, 0.6, 0.6]], np.float32)] * n,
        labels=[np.array([1], np.int32)] * n, difficult=[np.zeros(1, bool)] * n, image_ids=list(range(n)),
        sizes=[(20, 30)] * n, class_names=("background", "x"), category_ids=(0, 1))
    for i in (2, 3, 6, 7):  # two in a row mid-pass, two at the very end of the pass
        (tmp_path / f"{i}.png").unlink()
    capfd.readouterr()
    ids = [i for _, info in data.eval_dataset(s, 3) for i in info["image_id"].numpy().tolist()]
    assert ids == [0, 1, 4, 5]
    err = capfd.readouterr().err
    assert f"{tmp_path / '2.png'}, {tmp_path / '3.png'} - unreadable images so far in this pass: 2" in err
    assert f"{tmp_path / '6.png'}, {tmp_path / '7.png'} - unreadable images so far in this pass: 4" in err


def test_decoding_only_the_crop_window_gives_the_same_pixels():
    """Training draws the crop first and decodes only its window (decode_and_crop_jpeg); the
    pixels equal decoding the whole image and cropping it, as the reference does."""
    from ssd_tf.data import augment, pipeline
    folder = shared_data("raccoon", "VOC2007", "JPEGImages")
    for k, name in enumerate(("raccoon-1.jpg", "raccoon-150.jpg", "raccoon-20.jpg")):  # 150 is grayscale
        path = str(folder / name)
        full = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        for crop in ([0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0], [0.33, 0.05, 0.64, 0.41]):
            crop = tf.constant(crop)
            element = {"source": tf.constant(path), "crop": crop}
            ours = pipeline._decode_crop(element, from_bytes=False)["image"].numpy()
            keep = tf.constant([True])
            expected, _, _ = augment.apply_crop(full, tf.constant([[0.4, 0.4, 0.6, 0.6]]), tf.constant([1]), crop, keep)
            assert ours.shape == expected.shape, (name, crop)
            np.testing.assert_array_equal(ours, expected.numpy())


def test_input_contexts_split_the_images_between_workers(synthetic):
    """Two input pipelines read disjoint halves whose union is the whole set, each batching its
    share of the global batch."""
    def rows(ds):  # one fingerprint per image: a sparse grid of its pixels
        return sorted(tuple(np.round(image[::37, ::37].ravel(), 2)) for batch, _ in ds for image in batch.numpy())

    whole = rows(data.train_dataset(synthetic, 4, augment_images=False, shuffle=False))
    parts = []
    for index in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        ds = data.train_dataset(synthetic, 4, augment_images=False, shuffle=False, input_context=ctx)
        assert all(int(images.shape[0]) <= 2 for images, _ in ds)  # per-replica batch: 4 / 2
        parts.append(rows(ds))
    assert len(parts[0]) == len(parts[1]) == len(whole) // 2
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == whole


def test_data_benchmark_reads_whole_epochs_from_one_repeated_pipeline():
    from benchmarks import measure as benchmark

    detection_set = data.make_synthetic(10, seed=4)
    result = benchmark.data_throughput(detection_set, batch_size=4, passes=2)
    assert result["ours_jpeg"]["images"] == 10  # one epoch: batches of 4, 4, 2; no image twice, none lost
    assert len(result["ours_jpeg"]["passes"]) == 2 and all(r > 0 for r in result["ours_jpeg"]["passes"])
    assert "ours_jpeg_vs_reference" not in result


def test_fewer_images_than_counted_are_reported_not_silently_padded(capfd):
    # A source that yields fewer elements than its recorded count (TFRecord shards whose count
    # file disagrees with them): the shortfall is warned about and counted like unreadable images.
    from ssd_tf.data import failed_images, pipeline

    elements = data.make_synthetic(3, seed=1).to_tf()
    capfd.readouterr()
    out = list(failed_images.decoded_in_order(elements, 5, True, "short", 1, lambda e: pipeline._decode(e, True)))
    assert [bool(e["ok"]) for e in out] == [True, True, True, False, False]
    assert "unreadable images so far in this pass: 2" in capfd.readouterr().err


def test_resize_takes_the_plain_kernel_only_where_it_equals_the_antialiased_one():
    from ssd_tf.data.resize import resize_image
    rng = np.random.default_rng(3)
    # Enlarging both ways (plain kernel), equal sizes, one way down, both down (the antialiased
    # kernel, run along rows: the same pixels); single and batched, XLA-free and in a graph.
    graph = tf.function(resize_image)
    for shape in [(120, 250, 3), (300, 300, 3), (200, 450, 3), (451, 260, 3), (375, 500, 3), (2, 90, 140, 3),
                  (3, 420, 333, 3), (1, 301, 300, 3)]:
        image = rng.integers(0, 256, shape).astype(np.uint8)
        expected = tf.image.resize(image.astype(np.float32), [300, 300], antialias=True).numpy()
        for got in (resize_image(image).numpy(), graph(tf.constant(image)).numpy()):
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=str(shape))
    # Shrinking, the plain kernel would alias (so the fast path must not take it).
    image = rng.integers(0, 256, (375, 500, 3)).astype(np.uint8)
    plain = tf.image.resize(image.astype(np.float32), [300, 300], antialias=False).numpy()
    assert np.abs(resize_image(image).numpy() - plain).max() > 10


def test_augmented_images_and_their_targets_stay_aligned(tmp_path):
    """Crop, resize, jitter and flip move pixels and boxes together: every positive default box's
    target, decoded, lies on the white object it was matched to, never on the black background."""
    from PIL import Image
    from ssd_tf.core import anchors
    from ssd_tf.core import encoding
    rng = np.random.default_rng(0)
    sources, boxes = [], []
    for i, (h, w) in enumerate([(150, 200), (420, 520)] * 8):  # enlarged and shrunk to 300
        x0, y0 = rng.uniform(0.03, 0.2), rng.uniform(0.05, 0.5)  # left of centre: a flip moves it
        box = np.array([x0, y0, x0 + rng.uniform(0.25, 0.4), y0 + rng.uniform(0.3, 0.45)], np.float32)
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[int(box[1] * h):int(box[3] * h), int(box[0] * w):int(box[2] * w)] = 255
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        sources.append(str(tmp_path / f"{i}.png"))
        boxes.append(box[None])
    s = data.DetectionSet(sources=sources, boxes=boxes, labels=[np.array([1], np.int32)] * 16,
                          difficult=[np.zeros(1, bool)] * 16, image_ids=list(range(16)),
                          sizes=[(150, 200), (420, 520)] * 8, class_names=("background", "x"), category_ids=(0, 1))
    priors = tf.constant(anchors.default_boxes(anchors.SSD300))
    checked, flipped = 0, 0
    for images, y_true in data.train_dataset(s, 8, seed=3).repeat(2):
        for image, target in zip(images.numpy(), y_true):
            positive = target[:, 4].numpy() > 0
            decoded = encoding.offsets_to_boxes(target[:, :4], priors).numpy()[positive]
            for box in np.unique(np.round(decoded, 3), axis=0):
                x0, y0, x1, y1 = np.clip(box, 0, 1) * 300
                inner = image[int(y0) + 3:int(np.ceil(y1)) - 3, int(x0) + 3:int(np.ceil(x1)) - 3].mean()
                left, right = image[:, :max(int(x0) - 4, 0)], image[:, int(np.ceil(x1)) + 4:]
                outer = np.concatenate([left.ravel(), right.ravel()])
                assert inner > 100 and (outer.size == 0 or outer.mean() < inner - 60), (box, inner, outer.mean())
                checked += 1
                flipped += (box[0] + box[2]) / 2 > 0.5  # the object started left of centre
    assert checked >= 30 and 0 < flipped < checked


def test_a_batch_whose_every_image_failed_is_skipped_and_counted(tmp_path, capfd):
    import keras
    from ssd_tf.training import loop
    s = _png_set(tmp_path, 6, step=40)
    for i in (2, 3):  # the whole second batch of 2
        (tmp_path / f"{i}.png").write_bytes(b"overwritten after parsing")
    capfd.readouterr()
    sizes = [int(x.shape[0]) for x, _ in data.train_dataset(s, 2, shuffle=False, drop_remainder=True, skip_empty=True)]
    assert sizes == [2, 2]
    skipped = "skipped a batch whose every image failed to decode (1 so far in this pass)"
    assert skipped in capfd.readouterr().err
    # The training loop over it takes no step on an empty batch (one would fail inside batch norm).
    keras.utils.set_random_seed(0)
    model = tiny_ssd(2)
    settings = loop.LoopSettings(epochs=1, steps_per_epoch=4, global_batch=2, checkpoint_dir=tmp_path / "ckpt",
                                 verbose=0)
    history = loop.fit(model, keras.optimizers.SGD(1e-3), tf.distribute.get_strategy(),
                       lambda ctx: data.train_dataset(s, 2, shuffle=False, drop_remainder=True, skip_empty=True,
                                                      input_context=ctx).repeat(), settings)
    assert np.isfinite(history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert skipped in capfd.readouterr().err


def _ks_distance(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    points = np.sort(np.concatenate([a, b]))
    cdf = lambda x: np.searchsorted(np.sort(x), points, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def _pixel_summaries(images):
    """[n, 300, 300, 3] 0..255 images of a red and a blue region -> [n, 8]: the median colour of
    each region's pixels (R > B, B > R; NaN where the crop left the region out), the red share,
    and which side the red is on (left-minus-right share). Every second pixel: enough for these."""
    rows = []
    for image in np.asarray(images, np.float32)[:, ::2, ::2]:
        red = image[..., 0] > image[..., 2]
        colours = [np.median(image[mask], axis=0) if mask.any() else np.full(3, np.nan) for mask in (red, ~red)]
        rows.append([*colours[0], *colours[1], red.mean(), red[:, :75].mean() - red[:, 75:].mean()])
    return np.array(rows)


@pytest.mark.slow
def test_the_pipelines_pixels_follow_the_references_training_transform(tmp_path):
    """End to end, pixels included: the production pipeline (batched draws, window decode, resize,
    jitter, flip) and the reference's transform chain (SSDCropping, Resize, ColorJitter, flip) turn one
    red-and-blue image into alike distributions of images.

    Geometry (the red share: crop; its side: flip): two-sample KS at alpha 1e-3. Colour: each
    region's median R, G, B spreads as widely as the reference's, within -10 % and +15 %. Not their
    location: PIL rounds to uint8 after each adjustment and quantises hue to 1/255 turn, which
    moves the dark channels by about 3 levels. Dropping contrast, saturation or hue narrows some
    spread to 0.85 of the reference's or less (measured); the factors' own ranges are
    test_augment's."""
    torch = pytest.importorskip("torch")
    import random

    from PIL import Image

    from reference import design as ref
    pixels = np.zeros((60, 80, 3), np.uint8)
    pixels[:, :40], pixels[:, 40:] = (200, 60, 40), (40, 120, 220)  # red left, blue right
    Image.fromarray(pixels).save(tmp_path / "two.png")
    n = 800
    s = data.DetectionSet(sources=[str(tmp_path / "two.png")] * n,
                          boxes=[np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)] * n,
                          labels=[np.array([1], np.int32)] * n, difficult=[np.zeros(1, bool)] * n,
                          image_ids=list(range(n)), sizes=[(60, 80)] * n, class_names=("background", "x"),
                          category_ids=(0, 1))
    # Rounded as the reference's uint8 PIL images are, so that ties in the medians fall alike.
    batches = [images.numpy() for images, _ in data.train_dataset(s, 100, seed=0)]
    ours = _pixel_summaries(np.round(np.concatenate(batches)))

    random.seed(0)
    torch.manual_seed(0)
    chain = ref.Compose([ref.SSDCropping(), ref.Resize(), ref.ColorJitter(), ref.ToTensor(),
                         ref.RandomHorizontalFlip()])
    image = Image.open(tmp_path / "two.png").convert("RGB")
    seeds = []
    for _ in range(n):
        target = {"boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "labels": torch.tensor([1]), "height_width": (60, 80)}
        seeds.append(chain(image, target)[0].permute(1, 2, 0).numpy() * 255)
    theirs = _pixel_summaries(seeds)
    assert ours.shape == theirs.shape == (n, 8)
    present = lambda x: x[~np.isnan(x)]  # noqa: E731
    assert all(min(len(present(a)), len(present(b))) > n / 2 for a, b in zip(ours.T, theirs.T))
    spread = np.nanstd(ours[:, :6], 0) / np.nanstd(theirs[:, :6], 0)
    assert np.all((spread > 0.9) & (spread < 1.15)), spread
    for a, b in zip(ours[:, 6:].T, theirs[:, 6:].T):
        assert _ks_distance(a, b) < 1.949 * np.sqrt(2 / n), _ks_distance(a, b)  # KS critical value, alpha 1e-3
