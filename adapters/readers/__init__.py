"""Trajectory readers: one module per file format, all returning a Trajectory.

The reader protocol
-------------------
A reader is any object (usually a module) with

``NAME``
    Short format name used by ``--format`` (``"lammps"``).
``EXTENSIONS``
    Tuple of lower-case file suffixes it claims (``(".dump", ".lammpstrj")``).
``sniff(head: bytes) -> bool``
    True when the first bytes of a file (up to 4 KiB) look like this format.
``open(path: str, **options) -> adapters.trajectory.Trajectory``
    Read the header (and whatever is needed to count the frames) and return a
    :class:`~adapters.trajectory.Trajectory` whose ``frames()`` callable yields
    :class:`~adapters.trajectory.Frame` objects lazily. Unknown keyword
    options must be ignored. Problems with the file raise
    :class:`diag.errors.DataError` with a one-line message and the path.

Register a new reader with :func:`register_reader`; :func:`open_trajectory`
then dispatches to it by ``fmt``, by content (``sniff``) or by extension.

Compressed text
---------------
A reader with ``TEXT = True`` (LAMMPS dumps, extended XYZ) reads gzip, bzip2
and xz files transparently, recognised by their magic bytes whatever the
name (``dump custom/gz`` output, or ``.gz``/``.bz2``/``.xz`` after the run).
Such readers open files with :func:`open_text` / :func:`open_binary` and
stream them; ``sniff`` sees the decompressed head. A compressed binary file
(H5MD, GSD) is refused with a message saying to decompress it.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import io
import lzma
import os
import stat
import struct
import sys
import zlib
from typing import Any

from diag.errors import DataError, UsageError

_BUILTIN = {
    "h5md": "adapters.readers.h5md",
    "gsd": "adapters.readers.gsd",
    "lammps": "adapters.readers.lammps",
    "xyz": "adapters.readers.xyz",
}
_REGISTRY: dict[str, Any] = {}

#: Names accepted by ``--format`` (besides ``auto``), built-in formats first.
FORMATS = tuple(_BUILTIN)


def register_reader(reader: Any) -> None:
    """Add (or replace) a reader following the protocol in this module's docstring."""
    for attr in ("NAME", "EXTENSIONS", "sniff", "open"):
        if not hasattr(reader, attr):
            raise TypeError(f"a reader needs attribute '{attr}'")
    _REGISTRY[reader.NAME] = reader


def available_formats() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY]))


def get_reader(name: str):
    """The reader registered under ``name``; :class:`UsageError` if unknown."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        mod = importlib.import_module(_BUILTIN[name])
        _REGISTRY[name] = mod
        return mod
    raise UsageError(f"unknown trajectory format '{name}' (known: {', '.join(available_formats())})")


#: magic bytes of the compressed formats read transparently
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
#: file-name suffixes of compressed files, stripped before matching a reader's extensions
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".lzma")


def compression(path: str) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"`` (by magic bytes), or None for an uncompressed file."""
    with open(path, "rb") as f:
        magic = f.read(6)
    for sig, name in _COMPRESSED:
        if magic.startswith(sig):
            return name
    return None


class _Decompressing(io.RawIOBase):
    """A decompressing stream whose errors are one-line DataErrors naming the file."""

    def __init__(self, inner, kind: str, path: str):
        self._inner, self._kind, self._path = inner, kind, path

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            return self._inner.readinto(b)
        except (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
            text = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise DataError(
                f"cannot decompress the {self._kind} stream ({text}); truncated or damaged compressed file?",
                self._path,
            ) from None

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_binary(path: str):
    """The file's bytes, decompressed on the fly when it is gzip, bzip2 or xz; a binary stream."""
    kind = compression(path)
    if kind is None:
        return open(path, "rb")
    opener = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}[kind]
    return io.BufferedReader(_Decompressing(opener(path, "rb"), kind, path), buffer_size=1 << 20)


def open_text(path: str):
    """The file as text (UTF-8, undecodable bytes replaced, universal newlines), decompressed if needed."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace")


def _head(path: str, n: int = 4096) -> bytes:
    with open_binary(path) as f:
        return f.read(n)


def check_readable(path: str) -> None:
    """Raise :class:`DataError` for a missing, non-regular or unreadable file."""
    if not os.path.exists(path):
        raise DataError("no such file", path)
    if os.path.isdir(path):
        raise DataError("is a directory, expected a trajectory file", path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # pragma: no cover - a race with the exists() above
        raise DataError(f"cannot read ({exc.strerror})", path) from None
    if not stat.S_ISREG(mode):
        # a FIFO, a device or a socket: reading it could block forever or never end
        raise DataError("is not a regular file (a pipe, device or socket?); expected a trajectory file", path)
    if not os.access(path, os.R_OK):
        raise DataError("file is not readable (permission denied)", path)
    if os.path.getsize(path) == 0:
        raise DataError("file is empty", path)


#: exceptions a reader may let slip on a damaged file; :func:`open_trajectory` and
#: :meth:`adapters.trajectory.Trajectory.__iter__` turn them into one-line DataErrors
DATA_EXCEPTIONS = (
    OSError,
    ValueError,  # includes UnicodeDecodeError
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    RuntimeError,  # h5py and gsd report damaged files this way
    EOFError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
)

#: marks messages from that safety net (the fuzz tests require readers to do better)
READER_FAILURE = "reader failure"


def reader_failure(exc: BaseException, path: str, where: str = "") -> DataError:
    """A :class:`DataError` for an exception a reader did not handle itself."""
    text = str(exc).splitlines()[0][:140] if str(exc) else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return DataError(f"{where}cannot read the file ({READER_FAILURE}: {detail}); damaged or unsupported file?", path)


def detect_format(path: str) -> str:
    """Guess the format of ``path``: by content first, then by extension."""
    check_readable(path)
    try:
        head = _head(path)
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from None
    names = available_formats()
    for name in names:
        try:
            if get_reader(name).sniff(head):
                return name
        except Exception:  # a sniffer must never decide the outcome by crashing
            continue
    ext = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if ext.endswith(suffix):
            ext = ext[: -len(suffix)]
    for name in names:
        if any(ext.endswith(e) for e in get_reader(name).EXTENSIONS):
            return name
    raise DataError(
        f"cannot tell the trajectory format from the name or the content; use --format "
        f"({'|'.join(names)})",
        path,
    )


def open_trajectory(path, fmt: str | None = None, **options):
    """Open a trajectory file with the right reader.

    Parameters
    ----------
    path : path-like
    fmt : str, optional
        A format name (see :data:`FORMATS`); ``None`` or ``"auto"`` detects it.
    **options
        Passed to the reader (e.g. ``h5md_group``); readers ignore the ones they
        do not know.

    Returns
    -------
    adapters.trajectory.Trajectory
    """
    path = os.fspath(path)
    check_readable(path)
    name = detect_format(path) if fmt in (None, "auto") else fmt
    reader = get_reader(name)
    kind = compression(path)
    if kind is not None and not getattr(reader, "TEXT", False):
        raise DataError(
            f"is a {kind}-compressed file; {name} files must be decompressed first (only text trajectories, "
            "LAMMPS dumps and extended XYZ, are read compressed)",
            path,
        )
    try:
        return reader.open(path, **options)
    except DATA_EXCEPTIONS as exc:
        raise reader_failure(exc, path) from None


# ------------------------------------------------ helpers for the text readers
_CHUNK = 1 << 24


def count_token(path: str, token: bytes) -> int:
    """Occurrences of ``token`` in a file (decompressed), read in 16 MiB chunks."""
    n = 0
    keep = len(token) - 1
    tail = b""
    with open_binary(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            buf = tail + chunk
            n += buf.count(token)
            # keep the last len-1 bytes: a token cut by the chunk edge is then
            # counted in the next buffer; no whole token fits in them.
            tail = buf[-keep:] if keep else b""
    return n


def count_lines(path: str) -> int:
    """Number of lines up to the last non-blank one (trailing blank lines ignored; decompressed)."""
    newlines = 0
    tail = b""
    with open_binary(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            tail = (tail + chunk)[-65536:]
    stripped = tail.rstrip()
    if not stripped:
        return 0  # (only blank lines in the last 64 KiB: rare; the caller's frame check reports it)
    trailing = tail[len(stripped):]
    return newlines - trailing.count(b"\n") + 1


def parse_columns(lines: list[str], usecols, path: str, frame: int, what: str = "atom") -> "np.ndarray":
    """Float columns of whitespace-separated lines, shape (len(lines), len(usecols))."""
    import numpy as np

    try:
        arr = np.loadtxt(lines, usecols=usecols, dtype=np.float64, ndmin=2, comments=None)
    except (ValueError, IndexError, OverflowError, TypeError) as exc:
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(f"frame {frame}: malformed {what} lines ({msg})", path) from None
    if arr.shape != (len(lines), len(usecols)):
        raise DataError(f"frame {frame}: malformed {what} lines (expected {len(usecols)} columns)", path)
    return arr


def check_count(n: int, path: str, frame: int, what: str = "atoms") -> int:
    """A particle count read from a text header: 1 <= n <= sys.maxsize."""
    if n <= 0:
        raise DataError(f"frame {frame}: number of {what} is {n}", path)
    if n > sys.maxsize:
        raise DataError(f"frame {frame}: number of {what} {n} is absurdly large (damaged file?)", path)
    return n


def int_columns(a, what: str, path: str, frame: int) -> "np.ndarray":
    """Float columns that must hold integers (ids, types, images), as int64."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a) & (np.abs(a) < 2.0**62)
    if not ok.all():
        bad = a[~ok].ravel()[0]
        raise DataError(f"frame {frame}: {what} must be integers, got {bad:g}", path)
    r = np.rint(a)
    if (r != a).any():
        bad = a[r != a].ravel()[0]
        raise DataError(f"frame {frame}: {what} must be integers, got {bad:g}", path)
    return r.astype(np.int64)


def check_complete(lines: list[str], n: int, path: str, frame: int, what: str = "atom") -> None:
    """The ``n`` lines of a frame were all read, and the last one is complete.

    A last line without a newline (the end of the file) is accepted as
    complete when it has as many fields as the other lines of the frame, its
    last field is a number, and, when every other line prints that column
    with the same number of decimals (a fixed format such as ``%.8f``), it
    has that many too. Otherwise the file was cut inside it (truncated). A
    cut inside the last number of a column printed with varying digits
    (``%g``, shortest round-trip) cannot be told from a complete file.
    """
    if len(lines) < n:
        raise DataError(
            f"frame {frame}: file ends after {len(lines)} of {n} {what} lines (truncated file?)", path
        )
    if n and not lines[-1].endswith("\n"):
        last = lines[-1].split()
        ok = n >= 2 and bool(last)
        if ok:
            fields = [ln.split() for ln in lines[:-1]]
            ok = all(len(f) == len(last) for f in fields)
        if ok:
            try:
                float(last[-1])
            except ValueError:
                ok = False
        if ok:
            decimals = {_decimals(f[-1]) for f in fields}
            ok = len(decimals) > 1 or _decimals(last[-1]) in decimals
        if not ok:
            raise DataError(f"frame {frame}: last line is incomplete (truncated file?)", path)


def _decimals(token: str) -> int:
    """Digits after the decimal point of a printed number (-1 without a point)."""
    mantissa = token.lower().split("e", 1)[0]
    return len(mantissa) - mantissa.index(".") - 1 if "." in mantissa else -1
