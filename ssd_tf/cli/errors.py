"""What the command lines share: a user error is one line on stderr and exit status 2.

User errors: a bad option combination, a missing data folder, a model path that isn't a model, an
unknown class name, an existing output. They reach the scripts as ValueError, FileNotFoundError or
FileExistsError (argparse's own errors exit 2 as well).

The library's errors speak Python: they name a parameter as ``init_from=``, ``resume=True`` or
``backbone_layout='keras'``. ``fail`` shows them as the flags a command-line user typed
(``--init-from``, ``--resume``, ``--backbone-layout keras``); a script whose flag has another name
than the parameter says so in ``flags``.
"""

import contextlib
import re
import sys

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
# name= (a Python parameter), with an optional True or a quoted one-word value.
_PARAMETER = re.compile(r"(?<![\w.-])([a-z][a-z0-9]*(?:_[a-z0-9]+)*)=(True\b|'([\w.-]+)')?")


def as_flags(message, flags=None):
    """``message`` with each ``name=`` parameter written as its flag: ``--name`` (underscores as
    dashes) or ``flags[name]``; ``name=True`` -> ``--name``; ``name='word'`` -> ``--name word``;
    ``name=value`` -> ``--name value``."""
    flags = flags or {}

    def flag(match):
        name, value, word = match.groups()
        text = flags.get(name, "--" + name.replace("_", "-"))
        if value == "True":
            return text
        if word is not None:
            return f"{text} {word}"
        following = message[match.end():match.end() + 1]
        return text + (" " if following and not following.isspace() and following not in ",.;:)]" else "")

    return _PARAMETER.sub(flag, message)


def fail(message, flags=None):
    """Print ``error: message`` (its first line, parameters as flags) to stderr and exit with status 2."""
    text = str(message).strip()
    print(f"error: {as_flags(text.splitlines()[0], flags) if text else message}", file=sys.stderr)
    raise SystemExit(2)


@contextlib.contextmanager
def user_errors(*more, flags=None):
    """Turn USER_ERRORS (and ``more`` exception types) raised inside into ``fail``; ``flags`` maps a
    parameter to its flag where the names differ."""
    try:
        yield
    except USER_ERRORS + tuple(more) as err:
        fail(err, flags)
