"""Pictures of an evaluation report and of a training run: PR curves, confusion matrices, F1 and
precision against the score threshold, and the run's curves from history.csv. PNGs, drawn with
matplotlib's object API (no pyplot, no display), laid out for 1 to 80 classes."""

import csv
import pathlib

import numpy as np

from ssd_tf.evaluation.confusion import row_normalised

_NAMED_CURVES = 20  # more classes than this: thin grey curves, the mean in the legend


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def pr_curves(report, path):
    """Precision against recall at IoU 0.5, one curve per class (AP50 in the legend) and their mean."""
    curves, per_class = report["curves"], report["per_class"]
    recall = np.array(curves["recall"])
    names = [n for n in curves["precision"] if per_class.get(n, {}).get("gt_count", 1)]
    fig = _figure(8, 6)
    ax = fig.add_subplot()
    many = len(names) > _NAMED_CURVES
    for name in names:
        label = None if many else f"{name} {per_class[name]['AP50']:.3f}"
        ax.plot(recall, curves["precision"][name], lw=0.6 if many else 1.2, color="0.7" if many else None,
                label=label)
    if names:
        mean = np.mean([curves["precision"][n] for n in names], axis=0)
        ax.plot(recall, mean, lw=3, color="tab:blue", label=f"all classes, mAP@0.5 {report['stats']['AP50']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision-recall at IoU 0.5" + (f" ({len(names)} classes in grey)" if many else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8 if len(names) > 8 else 10)
    return _save(fig, path)


def confusion(report, path, normalised=False):
    """The confusion matrix: true class down, predicted class across, background first."""
    cm = report["confusion_matrix"]
    matrix = np.array(cm["matrix"], float)
    values = row_normalised(matrix) if normalised else matrix
    names = cm["classes"]
    n = len(names)
    side = min(max(5.0, 0.32 * n + 3), 30)
    fig = _figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalised else max(values.max(), 1))
    fig.colorbar(image, ax=ax, shrink=0.8)
    font = 10 if n <= 10 else 8 if n <= 25 else 5 if n <= 50 else 4
    ax.set_xticks(range(n), names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), names, fontsize=font)
    ax.set(xlabel="predicted", ylabel="true")
    if n <= 30:  # numbers in the cells while they fit
        for i in range(n):
            for j in range(n):
                if values[i, j]:
                    text = f"{values[i, j]:.2f}" if normalised else f"{int(values[i, j])}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=max(font - 2, 4),
                            color="white" if values[i, j] > 0.6 * values.max() else "black")
    kind = "normalised by row (the true class's share)" if normalised else "counts"
    ax.set_title(f"Confusion matrix, {kind}\nIoU {cm['iou_threshold']:g}, score >= {cm['score_threshold']:g}",
                 fontsize=11)
    return _save(fig, path)


def f1_curve(report, path):
    """F1, precision and recall (means over the classes) against the score threshold; the best-F1
    threshold marked."""
    best = report["best_f1"]
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    t = best["thresholds"]
    ax.plot(t, best["f1_curve"], lw=2.5, label="F1")
    ax.plot(t, best["precision_curve"], lw=1.2, label="precision")
    ax.plot(t, best["recall_curve"], lw=1.2, label="recall")
    ax.axvline(best["threshold"], color="0.3", ls="--", lw=1)
    ax.annotate(f"best F1 {best['f1']:.3f} at score {best['threshold']:.2f}", (best["threshold"], best["f1"]),
                xytext=(8, 8), textcoords="offset points")
    ax.set(xlabel="score threshold", ylabel="mean over classes", xlim=(0, 1), ylim=(0, 1.01),
           title="F1, precision and recall against the score threshold (IoU 0.5)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def training_curves(history_csv, path):
    """A run's losses, learning rate and validation mAP / AP50 per epoch, from its history.csv."""
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{history_csv}: no epochs recorded")

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):  # "NA" (epochs without validation), empty
            return np.nan

    def column(name):
        return [number(r.get(name)) for r in rows]
    epochs = [int(float(r.get("epoch", k))) + 1 for k, r in enumerate(rows)]
    fig = _figure(12, 4)
    losses, rate, metrics = fig.subplots(1, 3)
    for name in ("loss", "loc_loss", "cls_loss", "val_loss"):
        if name in rows[0]:
            losses.plot(epochs, column(name), marker="o", ms=3, label=name)
    losses.set(xlabel="epoch", title="losses")
    losses.legend()
    if "learning_rate" in rows[0]:
        rate.plot(epochs, column("learning_rate"), marker="o", ms=3)
    rate.set(xlabel="epoch", title="learning rate")
    for name in ("val_mAP", "val_AP50"):
        if name in rows[0]:
            values = column(name)
            metrics.plot([e for e, v in zip(epochs, values) if not np.isnan(v)], [v for v in values if not np.isnan(v)],
                         marker="o", ms=4, label=name)
    metrics.set(xlabel="epoch", ylim=(0, 1), title="validation")
    if metrics.lines:
        metrics.legend()
    for ax in (losses, rate, metrics):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_png(report, normalised=False):
    """The confusion matrix picture as PNG bytes (for TensorBoard)."""
    import io

    buffer = io.BytesIO()
    confusion(report, buffer, normalised)
    return buffer.getvalue()


def write_report_plots(report, folder):
    """All four pictures of an evaluation report into ``folder``. Returns their paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [pr_curves(report, folder / "pr_curves.png"),
            confusion(report, folder / "confusion_matrix.png"),
            confusion(report, folder / "confusion_matrix_normalized.png", normalised=True),
            f1_curve(report, folder / "f1_curve.png")]


def _save(fig, path):
    """Save as PNG to a path (returned as a Path) or a file object."""
    if hasattr(path, "write"):
        fig.savefig(path, format="png")
        return path
    path = pathlib.Path(path)
    fig.savefig(path)
    return path
