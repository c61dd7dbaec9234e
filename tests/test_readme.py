"""Every script command in the README and docs/ parses as written: its options exist, take the
values shown, and go together (what argparse and the scripts' own checks can tell without data)."""

import importlib.util
import re
import shlex
import sys

import pytest

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands():
    """(document, command) for each ``python scripts/NAME.py ...`` and ``python -m benchmarks ...`` line,
    continuations joined; the benchmarks' command is named by its file, benchmarks/__main__.py."""
    found = []
    for path in DOCUMENTS:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for line in text.splitlines():
            match = re.search(r"python (scripts/\w+\.py|-m benchmarks)([^#`]*)", line)
            if match:
                script = "benchmarks/__main__.py" if match.group(1) == "-m benchmarks" else match.group(1)
                found.append((path.name, script + match.group(2).rstrip()))
    return found


COMMANDS = _commands()


def _parser(script):
    path = ROOT / script
    if path.parent.name == "scripts":  # python -m benchmarks imports as a package, from the root
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"readme_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_the_main_commands():
    scripts = {command.split()[0] for _, command in COMMANDS}
    assert {"scripts/train.py", "scripts/evaluate.py", "scripts/predict.py", "scripts/export.py",
            "scripts/convert.py", "scripts/import_nvidia.py", "scripts/inspect_data.py",
            "benchmarks/__main__.py"} <= scripts
    assert len(ROOT.joinpath("README.md").read_text()) < 12000


@pytest.mark.parametrize("document, command", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_command_parses_as_written(document, command):
    script, *args = shlex.split(command.replace("$PWD", "."))
    module = _parser(script)
    if "--help" in args:
        with pytest.raises(SystemExit) as exit_info:
            module.build_parser().parse_args(args)
        assert exit_info.value.code == 0
        return
    parsed = module.build_parser().parse_args(args)  # SystemExit(2) on an unknown option or a bad value
    if script.endswith("train.py") and not parsed.resume:
        module.config_from_args(parsed).resolved()  # the values go together (ValueError otherwise)


def test_api_reference_documents_every_public_name_of_inference_evaluation_and_export():
    import importlib

    api = (ROOT / "docs" / "api.md").read_text()
    missing = [f"{package}.{name}" for package in ("ssd_tf.inference", "ssd_tf.evaluation", "ssd_tf.export")
               for name in importlib.import_module(package).__all__ if f"`{name}" not in api]
    assert not missing, missing


def test_every_library_name_the_docs_give_exists():
    """Each ``ssd_tf.a.b`` in the README and docs/ names something importable: a renamed or moved
    name can't linger in the documentation."""
    import importlib

    current = [path.read_text().split("## Measurement history")[0] for path in DOCUMENTS + [ROOT / "CONTRIBUTING.md"]]
    names = {m for text in current for m in re.findall(r"(?<![\w/])ssd_tf(?:\.[A-Za-z_]\w*)+", text)}
    assert len(names) > 20
    missing = []
    for dotted in sorted(names):
        parts = dotted.split(".")
        obj = importlib.import_module("ssd_tf")
        for part in parts[1:]:
            try:
                obj = getattr(obj, part)
            except AttributeError:
                missing.append(dotted)
                break
    assert not missing, missing
