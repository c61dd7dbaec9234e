"""What the command lines share: a user error is one line on stderr and exit status 2.

User errors: a bad option combination, a missing data folder, a model path that isn't a model, an
unknown class name, an existing output. They reach the scripts as ValueError, FileNotFoundError or
FileExistsError (argparse's own errors exit 2 as well)."""

import contextlib
import sys

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


def fail(message):
    """Print ``error: message`` (its first line) to stderr and exit with status 2."""
    print(f"error: {str(message).strip().splitlines()[0] if str(message).strip() else message}", file=sys.stderr)
    raise SystemExit(2)


@contextlib.contextmanager
def user_errors(*more):
    """Turn USER_ERRORS (and ``more`` exception types) raised inside into ``fail``."""
    try:
        yield
    except USER_ERRORS + tuple(more) as err:
        fail(err)
