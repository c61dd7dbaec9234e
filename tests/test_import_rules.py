"""The house rules for imports: each subpackage of ssd_tf is a layer and imports only from the
layers below it, there are no import circles, and the library never needs torch."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ssd_tf"
# The layers, lowest first. A module may import from its own layer and those before it, never
# from one after it, at any depth (imports inside functions count too).
LAYERS = ("core", "modeling", "data", "inference", "evaluation", "training", "export", "cli")
# Top-level modules every layer may use: they import nothing of ssd_tf's layers (standard library only).
SHARED = ("ssd_tf.lazy", "ssd_tf.cpu_kernels", "ssd_tf.progress", "ssd_tf.paths")


def _imports(path):
    """Every module a file imports, at any depth (``from ssd_tf import x`` counts as ssd_tf.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _lazy_exports(package, path):
    """The modules a package's ``_EXPORTS`` table (names imported on first use) hands out: edges of
    the graph as real as a static import."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            names = {ast.literal_eval(v) for v in node.value.values}
            return {n if n.startswith("ssd_tf.") else f"{package}.{n}" for n in names}
    return set()


def _modules():
    """Dotted module name -> path, for every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _layer(name):
    """The layer a dotted ssd_tf name belongs to, or None for the top level."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_folder_is_a_layer_and_the_top_holds_few_modules():
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(LAYERS), folders
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    # Everything else has its layer's room.
    assert top == ["__init__", "cpu_kernels", "keras_classes", "lazy", "paths", "progress"], top


def test_each_layer_imports_only_from_itself_and_the_layers_below():
    offenders = []
    for name, path in _modules().items():
        if name == "ssd_tf":  # the package gathers the public names of every layer for users
            continue
        layer = _layer(name)
        rank = LAYERS.index(layer) if layer else -1
        for imported in _imports(path) | _lazy_exports(name, path):
            if not imported.startswith("ssd_tf") or imported.startswith(SHARED):
                continue
            target = _layer(imported)
            if target is None and imported not in ("ssd_tf", "ssd_tf.__version__"):  # e.g. ssd_tf.build_ssd300
                offenders.append(f"{name} imports {imported}: inside the library, import from its layer")
            elif target is not None and LAYERS.index(target) > rank:
                offenders.append(f"{name} ({layer or 'top'}) imports {imported} ({target}, a layer above)")
    assert offenders == [], offenders


def test_the_rule_sees_an_upward_import(tmp_path):
    """The check above on a module that imports upward inside a function (as a mutation would)."""
    path = tmp_path / "augment.py"
    path.write_text("def f():\n    from ssd_tf.inference.detector import Detector\n    return Detector\n")
    upward = {n for n in _imports(path) if _layer(n) and LAYERS.index(_layer(n)) > LAYERS.index("data")}
    assert upward == {"ssd_tf.inference.detector", "ssd_tf.inference.detector.Detector"}


def test_torch_is_imported_only_where_pytorch_files_are_read():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if any(n.split(".")[0] == "torch" for n in _imports(p)))
    # torch_weights reads .pt/.pth files, importing torch inside its functions. The reference design's
    # PyTorch code (parity tests, the benchmarks' reference side) lives outside the package.
    assert users == ["modeling/torch_weights.py"], users


def test_no_benchmark_or_test_code_in_the_package():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if any(n.split(".")[0] in ("benchmarks", "tests", "reference") for n in _imports(p)))
    assert users == [], users


def _module_graph():
    """ssd_tf module -> the ssd_tf modules it imports (at any depth). The top-level package, which
    gathers the public names for users, is left out: nothing inside imports it; so is a module's own
    package (``from ssd_tf.data import augment`` inside ``ssd_tf.data`` names a sibling)."""
    modules = _modules()
    return {name: {n for n in _imports(path) | _lazy_exports(name, path) if n in modules and n not in (name, "ssd_tf")
                   and not name.startswith(n + ".")}
            for name, path in modules.items() if name != "ssd_tf"}


def test_no_import_circles_anywhere_in_the_package():
    graph = _module_graph()
    assert "ssd_tf.training.loop" in graph
    assert "ssd_tf.data.pipeline" in graph["ssd_tf.training.run"] | graph["ssd_tf.data"]
    circles = set()

    def visit(node, path):
        for nxt in graph.get(node, ()):
            if nxt in path:
                circles.add(tuple(path[path.index(nxt):]) + (nxt,))
            elif len(path) < 12:
                visit(nxt, path + [nxt])
    for start in graph:
        visit(start, [start])
    assert not circles, sorted(circles)[:5]


def test_each_layer_declares_its_public_names_and_they_resolve():
    """Every subpackage lists its public names in ``__all__``, each importable through it."""
    import importlib

    unresolved = []
    for layer in LAYERS:
        package = importlib.import_module(f"ssd_tf.{layer}")
        assert package.__all__, layer
        unresolved += [f"ssd_tf.{layer}.{name}" for name in package.__all__ if not hasattr(package, name)]
    assert not unresolved, unresolved
