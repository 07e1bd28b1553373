"""Atomic outputs: write to a temporary file in the destination folder, then rename.

An interrupted run (exception, Ctrl-C, SIGTERM through the CLI) leaves no partial file,
and an existing file is only ever replaced whole.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DataError, UsageError


def check_output_path(path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Validate an output path before any work is done; returns it as a Path.

    Raises
    ------
    UsageError
        The path is a directory, its folder does not exist, or it exists and
        ``overwrite`` is False.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError("output path is a directory", str(path))
    if path.exists() and not path.is_file():
        # a device or pipe would be replaced by a regular file on rename
        raise UsageError("output path exists and is not a regular file", str(path))
    if path.exists() and not overwrite:
        raise UsageError("output file exists (use --force to replace it)", str(path))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError("output folder does not exist", str(path))
    return path


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary file name; on success it is renamed onto ``path``.

    The temporary file gets the permissions a plain ``open()`` would give (mkstemp's
    are 0600). On any exception, including KeyboardInterrupt, it is removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
        os.close(fd)
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, read-only folder, ...: one line, not a traceback
        raise DataError(f"cannot write output ({exc.strerror or exc})", str(path)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
