"""A look at a data set before training: ``stats.json``, pictures and a short summary (the work of
scripts/inspect_data.py). The numbers come from ``ssd_tf.data.inspection``.

Pictures: boxes per class, box sides and aspect ratios against SSD300's default boxes, each box's
best IoU with a default box (overall and per size band), and sample images with their ground truth.
"""

import io
import json
import pathlib

import numpy as np

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.data.inspection import THRESHOLDS, box_table, inspect
from ssd_tf.evaluation.plots import _figure, _save
from ssd_tf.inference.drawing import draw_detections
from ssd_tf.paths import refuse_existing


def class_counts(report, path):
    """Boxes per class, as horizontal bars."""
    names = list(report["classes"])
    counts = [report["classes"][n]["boxes"] for n in names]
    fig = _figure(8, max(3, 0.25 * len(names) + 1.5))
    ax = fig.add_subplot()
    ax.barh(range(len(names)), counts, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8 if len(names) > 20 else 10)
    ax.invert_yaxis()
    ax.set(xlabel="boxes", title=f"Boxes per class ({sum(counts)} in all)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _marked_log_histogram(values, bins, marks, mark_text, colour, path, xlabel, title):
    """A histogram on a log x axis, with dashed red lines (labelled ``mark_text(mark)``) at ``marks``."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    if len(values):
        ax.hist(values, bins=bins, color=colour, alpha=0.8)
    ax.set_xscale("log")
    for mark in marks:
        ax.axvline(mark, color="tab:red", lw=1, ls="--")
        ax.text(mark, 1.0, f" {mark_text(mark)}", transform=ax.get_xaxis_transform(), rotation=90, va="top",
                fontsize=8, color="tab:red")
    ax.set(xlabel=xlabel, ylabel="boxes", title=title)
    return _save(fig, path)


def box_sizes(table, report, path):
    """Histogram of box sides at the input size (log scale), the six feature maps' scales marked."""
    sides = table["side_px"][table["side_px"] > 0]
    bins = np.geomspace(max(1.0, sides.min() * 0.9), max(sides.max() * 1.1, 2.0), 40) if len(sides) else None
    size = report["input_size"]
    return _marked_log_histogram(sides, bins, report["scales_px"], lambda scale: f"{scale} px", "tab:blue", path,
                                 f"box side sqrt(w x h), pixels at {size}x{size}",
                                 "Box sizes against the default-box scales of the six feature maps")


def aspect_ratios(table, report, path):
    """Histogram of box aspect ratios (w / h at the input, log scale), the default boxes' ratios marked."""
    aspect = table["aspect"][table["aspect"] > 0]
    bins = np.geomspace(min(aspect.min(), 0.2) * 0.9, max(aspect.max(), 5) * 1.1, 40) if len(aspect) else None
    return _marked_log_histogram(aspect, bins, report["aspect_ratios"], lambda ratio: f"{ratio:.2g}", "tab:green",
                                 path, "aspect ratio w / h at the input",
                                 "Box aspect ratios against the default boxes' ratios")


def coverage(table, report, path):
    """Left: each box's best IoU with a default box. Right: the share below 0.5 and 0.3 per size band."""
    fig = _figure(11, 4.5)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.2))
    left.hist(table["best_iou"], bins=np.linspace(0, 1, 41), color="tab:blue", alpha=0.8)
    for t in THRESHOLDS:
        left.axvline(t, color="tab:red", lw=1, ls="--")
    overall = report["coverage"]
    left.set(xlabel="best IoU with a default box", ylabel="boxes", xlim=(0, 1),
             title=f"Default-box coverage: {overall['below_0.5']:.0%} of boxes below 0.5")
    bands = [b for b in report["size_bands"] if report["size_bands"][b]["boxes"]]
    x = np.arange(len(bands))
    for offset, t, colour in ((-0.2, 0.5, "tab:orange"), (0.2, 0.3, "tab:red")):
        shares = [report["size_bands"][b][f"below_{t}"] for b in bands]
        right.bar(x + offset, shares, width=0.4, color=colour, label=f"best IoU < {t}")
    right.set_xticks(x, [f"{b}\n({report['size_bands'][b]['boxes']})" for b in bands], fontsize=8)
    right.set(ylim=(0, 1), ylabel="share of boxes", title="Boxes without a good default box, by side")
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def samples(detection_set, path, count=6, seed=0):
    """A grid of ``count`` images (chosen with ``seed``) with their ground truth drawn."""
    from PIL import Image

    from ssd_tf.data.images import load_image

    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(detection_set), size=min(count, len(detection_set)), replace=False))
    columns = min(3, max(1, len(picks)))
    rows = max(1, -(-len(picks) // columns))
    fig = _figure(4 * columns, 3.6 * rows)
    for n, i in enumerate(picks):
        source = detection_set.sources[i]
        image = load_image(source) if isinstance(source, str) else np.asarray(
            Image.open(io.BytesIO(source)).convert("RGB"))
        h, w = image.shape[:2]
        drawn = draw_detections(image, detection_set.boxes[i] * np.array([w, h, w, h]), detection_set.labels[i],
                                None, detection_set.class_names)
        ax = fig.add_subplot(rows, columns, n + 1)
        ax.imshow(drawn)
        count = len(detection_set.labels[i])
        ax.set_title(f"{pathlib.Path(detection_set.describe(i)).name} ({count} box{'' if count == 1 else 'es'})",
                     fontsize=9)
        ax.axis("off")
    return _save(fig, path)


def inspect_data(detection_sets, splits, output, sample_images=6, seed=0, spec=anchors_lib.SSD300):
    """Write ``stats.json`` and the pictures of ``detection_sets`` (one per split name in ``splits``)
    into the new folder ``output``. Returns (report, [paths])."""
    output = pathlib.Path(output)
    refuse_existing(output, "choose a new output folder")
    table = box_table(detection_sets, spec)
    report = inspect(detection_sets, splits, spec, table)
    output.mkdir(parents=True, exist_ok=True)
    stats = output / "stats.json"
    stats.write_text(json.dumps(report, indent=1) + "\n")
    paths = [stats, class_counts(report, output / "class_counts.png"),
             box_sizes(table, report, output / "box_sizes.png"),
             aspect_ratios(table, report, output / "aspect_ratios.png"),
             coverage(table, report, output / "coverage.png")]
    first = next((s for s in detection_sets if len(s)), None)
    if first is not None and sample_images:
        paths.append(samples(first, output / "samples.png", sample_images, seed))
    return report, paths


def summary(report):
    """Lines for a terminal: per split, the coverage, the worst size bands and the warnings."""
    lines = []
    for split, row in report["splits"].items():
        lines.append(f"{split}: {row['images']} images, {row['boxes']} boxes, {row['images_without_boxes']} images "
                     f"without boxes, {row['skipped_total']} items skipped")
    overall = report["coverage"]
    if overall["boxes"]:
        lines.append(f"default-box coverage: {overall['below_0.5']:.1%} of {overall['boxes']} boxes have no default "
                     f"box at IoU >= 0.5, {overall['below_0.3']:.1%} none at 0.3 (median best IoU "
                     f"{overall['median_best_iou']:.2f})")
        width = max(len(n) for n in report["classes"])
        for name, row in report["classes"].items():
            if row["boxes"]:
                lines.append(f"  {name:<{width}}  {row['boxes']:6d} boxes, median side {row['median_side_px']:5.0f} px,"
                             f" {row['below_0.5']:6.1%} below 0.5, {row['below_0.3']:6.1%} below 0.3")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines

