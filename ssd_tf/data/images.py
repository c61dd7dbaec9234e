"""Image files: which files are images (without TensorFlow), and decoding one as training and serving
decode it."""

import pathlib

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def list_images(path):
    """An image file, or the image files of a folder (sorted, not recursive)."""
    path = pathlib.Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (an image or a folder of images)")
    return [path]


def load_image(path):
    """uint8 [H, W, 3] decoded by TensorFlow, as training and serving decode; ValueError naming bad files."""
    import tensorflow as tf  # here: listing image files (and IMAGE_SUFFIXES) loads no TensorFlow

    from ssd_tf.data.detection_set import check_image

    check_image(path, full=True)
    data = tf.io.read_file(str(path))
    return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8).numpy()
