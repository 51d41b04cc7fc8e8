"""Where pool files live, and keeping them consistent with the database.

Files are named by random tokens, never by item id, origin or source name.
`pool_files` ties the files written inside it to the rows written after them:
if writing the rows fails or the transaction rolls back, the files go too, so a
failed import leaves neither rows nor files behind.
"""

import os
import secrets
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.conf import settings

_local = threading.local()


def pool_root() -> Path:
    return Path(settings.POOL_ROOT)


def masters_dir() -> Path:
    return pool_root() / "masters"


def renditions_dir() -> Path:
    return pool_root() / "renditions"


def new_token() -> str:
    return secrets.token_hex(16)


@contextmanager
def pool_files():
    """A scope whose pool files (see `register_written`) are removed again if it raises.

    Write the files first and open the database transaction inside, for the rows only: on
    SQLite a transaction holds the write lock, which readers' answer saves wait for.
    """
    written: list[Path] = []
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(written)
    try:
        yield
    except BaseException:
        for path in reversed(written):
            remove_path(path)
        raise
    finally:
        stack.pop()


def register_written(path: Path) -> None:
    """Record a new pool file or folder with every enclosing `pool_files` scope."""
    for written in getattr(_local, "stack", []):
        written.append(Path(path))


def remove_path(path: Path) -> None:
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def save_master(codes: np.ndarray) -> str:
    """Write a master array atomically; returns its name relative to the masters folder."""
    directory = masters_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{new_token()}.npy"
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".npy", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.ascontiguousarray(codes, dtype=np.uint16))
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    register_written(directory / name)
    return name


def load_master(name: str) -> np.ndarray:
    return np.load(masters_dir() / name, mmap_mode="r")
