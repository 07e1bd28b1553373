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
