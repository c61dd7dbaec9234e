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
            "scripts/convert.py", "scripts/import_nvidia.py", "benchmarks/__main__.py"} <= scripts
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
