"""Which model form a path holds, told from the file system alone (no TensorFlow), so that a
command line can refuse a wrong ``--model`` at once, listing every form it takes."""

import pathlib

# form -> how a message names it
FORMS = {
    "run": "a run folder", "keras": "a .keras file", "weights": "a .weights.h5 file",
    "saved_model": "a SavedModel folder", "tflite": "a .tflite file", "onnx": "an .onnx file",
}
KERAS_FORMS = ("run", "keras", "weights")  # what the Keras loader (export, --init-from) takes


def model_form(path):
    """"run", "keras", "weights", "saved_model", "tflite", "onnx", or None for anything else."""
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        if (path / "final.keras").is_file() or (path / "checkpoints").is_dir():
            return "run"
        return None
    if path.name.endswith(".weights.h5"):
        return "weights"
    return {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix.lower())


def describe_forms(forms):
    names = [FORMS[f] for f in forms]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def check_model_path(path, forms=tuple(FORMS)):
    """Raise FileNotFoundError when ``path`` does not exist, ValueError when it holds no model of
    ``forms``; each names the path and the forms taken."""
    path = pathlib.Path(path)
    expected = describe_forms(forms)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected {expected})")
    form = model_form(path)
    if form is None:
        what = "a folder without final.keras, checkpoints/ or saved_model.pb" if path.is_dir() else "not a model file"
        raise ValueError(f"{path}: {what} (expected {expected})")
    if form not in forms:
        raise ValueError(f"{path} is {FORMS[form]}, which this does not take (expected {expected})")
    return form
