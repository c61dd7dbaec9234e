"""Progress on long commands: a bar with a count and an ETA on a terminal, a plain line per 10 %
elsewhere, nothing with --quiet."""

import io
import os
import pty
import subprocess
import sys

import pytest

from conftest import ROOT
from ssd_tf import progress


@pytest.fixture(autouse=True)
def _not_quiet():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def test_a_log_gets_a_line_per_tenth():
    out = io.StringIO()
    with progress.Progress(50, "detecting", stream=out, terminal=False) as bar:
        for _ in range(50):
            bar.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("detecting: 5/50 images (10%)") and "ETA" in lines[0]
    assert lines[-1].startswith("detecting: 50/50 images (100%)") and "\r" not in out.getvalue()


def test_a_terminal_gets_one_bar_redrawn_in_place():
    out = io.StringIO()
    with progress.Progress(3, "predicting", stream=out, terminal=True) as bar:
        for _ in range(3):
            bar.update()
            bar._shown = 0  # redraw every step here (it redraws at most 5 times a second)
    text = out.getvalue()
    assert text.count("\r") >= 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[########################] predicting: 3/3 images (100%)" in text and "ETA 0:00" in text


def test_quiet_silences_every_display():
    out = io.StringIO()
    progress.set_quiet()
    with progress.Progress(4, "x", stream=out, terminal=True) as bar:
        bar.update(4)
    assert out.getvalue() == ""


def test_every_long_command_takes_quiet():
    import importlib.util

    for name in ("evaluate", "predict", "convert", "export", "import_nvidia"):
        spec = importlib.util.spec_from_file_location(f"quiet_{name}", ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert any(a.dest == "quiet" for a in module.build_parser()._actions), name


@pytest.mark.slow  # runs predict.py twice in fresh processes
def test_predict_shows_progress_on_a_terminal_and_plain_lines_in_a_log(tmp_path):
    import ssd_tf
    from PIL import Image

    ssd_tf.build_ssd300(num_classes=3).save(tmp_path / "model.keras")
    for k in range(10):
        Image.new("RGB", (64, 48), (k * 20, 0, 0)).save(tmp_path / f"{k}.png")
    command = [sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(tmp_path / "model.keras"),
               str(tmp_path), "--output"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    logged = subprocess.run(command + [str(tmp_path / "a")], capture_output=True, text=True, timeout=300, env=env)
    assert logged.returncode == 0, logged.stderr[-2000:]
    lines = [line for line in logged.stderr.splitlines() if line.startswith("predicting: ")]
    assert len(lines) == 10 and lines[-1].startswith("predicting: 10/10 images (100%)")
    # On a terminal: the bar, redrawn in place.
    main, secondary = pty.openpty()
    proc = subprocess.Popen(command + [str(tmp_path / "c")], stdout=subprocess.DEVNULL, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0
    text = seen.decode(errors="replace")
    assert "\rpredicting: 10/10 images (100%)" in text or "] predicting: 10/10 images (100%)" in text, text[-500:]
