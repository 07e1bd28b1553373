"""Memory estimates made before loading, so a too-large input gets a clear error, not the OOM killer."""

from __future__ import annotations

import os

from .errors import DataError

#: peak working memory of an audit as a multiple of the feature matrix (the matrix, its
#: held-out and training copies, and the softness solver's working set)
AUDIT_MEMORY_FACTOR = 3.0


def available_memory() -> int | None:
    """Bytes of memory available to this process (Linux MemAvailable, else sysconf), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_bytes: float, what: str, path: str | None = None, available: int | None = None) -> None:
    """Raise :class:`DataError` when ``n_bytes`` will not fit in the memory available.

    Parameters
    ----------
    n_bytes : float
        Estimated peak bytes needed.
    what : str
        What needs it, for the message.
    available : int, optional
        Override of the available memory (for tests); default: measured.
    """
    avail = available_memory() if available is None else available
    if avail is not None and n_bytes > avail:
        raise DataError(
            f"{what} needs about {n_bytes / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB of memory is available; "
            "use fewer samples or features (e.g. write a smaller dataset)",
            path,
        )


#: features larger than this are read lazily from the file by default (``docs/memory.md``);
#: the environment variable ``GLASS_DIAG_LAZY_BYTES`` overrides it (0: always lazy)
LAZY_FEATURE_BYTES = 2 << 30

#: peak bytes per sample of an audit whose features stay in the file: the per-sample arrays
#: (label, role, natural, temperature, group, energy), the held-out indices, softness and the
#: per-temperature copies made by the logistic fits. With LAZY_FIXED_BYTES a conservative
#: bound: 3.2 GiB estimated at 10^7 x 166, 1.75 GiB measured (bench/audit_memory.py)
LAZY_BYTES_PER_SAMPLE = 120

#: fixed working set of a lazy audit besides the per-sample arrays: the blocks being read,
#: the training set and the selection subsample (bounded by diag.audit.SELECTION_MAX_NATURAL)
LAZY_FIXED_BYTES = 2 << 30


def lazy_threshold() -> int:
    """Feature bytes above which :func:`diag.dataset.read_dataset` leaves the features in the file."""
    raw = os.environ.get("GLASS_DIAG_LAZY_BYTES")
    if raw is None or not raw.strip():
        return LAZY_FEATURE_BYTES
    try:
        val = int(float(raw))
    except ValueError:
        from .errors import UsageError

        raise UsageError(f"GLASS_DIAG_LAZY_BYTES must be a number of bytes, got {raw!r}") from None
    return max(0, val)


def features_lazy(n: int, d: int, available: int | None = None) -> bool:
    """Whether ``n x d`` float32 features should stay in the file (read in row blocks).

    Lazy when they exceed :func:`lazy_threshold` bytes, or when loading them for an audit
    (``AUDIT_MEMORY_FACTOR`` times their size) would not fit in the memory available.
    """
    nbytes = 4.0 * n * d
    if nbytes > lazy_threshold():
        return True
    avail = available_memory() if available is None else available
    return avail is not None and AUDIT_MEMORY_FACTOR * nbytes > avail


def lazy_audit_bytes(n: int, d: int) -> float:
    """Estimated peak bytes of an audit of ``n`` samples whose ``d`` features stay in the file."""
    return LAZY_BYTES_PER_SAMPLE * float(n) + LAZY_FIXED_BYTES
