"""Names a package imports on first use (PEP 562), so that importing it loads no TensorFlow."""

import importlib
import importlib.util


def exports(package, table):
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``): ``table`` maps a public
    name to the module holding it (absolute, or relative to ``package``); any other attribute is
    looked up as a submodule. Each name is imported once, then kept in the package's namespace."""
    namespace = importlib.import_module(package).__dict__

    def module_of(name):
        return table[name] if table[name].startswith("ssd_tf.") else f"{package}.{table[name]}"

    def __getattr__(name):
        if name in table:
            value = getattr(importlib.import_module(module_of(name)), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
