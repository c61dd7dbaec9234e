"""Output paths: the one rule for not overwriting a user's files (stdlib only, shared by every layer)."""

import pathlib


def refuse_existing(path, hint):
    """FileExistsError naming ``path`` (and ``hint``: what to do) when it exists and is not an empty folder."""
    path = pathlib.Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists; not overwriting it ({hint})")
