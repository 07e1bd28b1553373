"""Typed exceptions. Library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class GlassDiagError(Exception):
    """Base class of every error glass-diag raises on purpose.

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    path : str, optional
        The file the problem is in; it is put in front of the message.
    """

    exit_code = 1

    def __init__(self, message: str, path: str | None = None):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def __reduce__(self):
        # keep .path and .message when the error travels back from a worker process
        return (type(self), (self.message, self.path))


class DataError(GlassDiagError):
    """The input data is unusable (missing, corrupt, inconsistent, non-finite)."""

    exit_code = 1


class UsageError(GlassDiagError):
    """The request itself is wrong (bad option values, output clobbering an input)."""

    exit_code = 2


class InsufficientDataError(DataError):
    """The data is valid but too small or too one-sided for the requested analysis."""


class FitError(GlassDiagError):
    """A fit could not be carried out (e.g. the solver failed)."""
