"""``diag features``: trajectories in, one dataset file out.

The lead's :mod:`diag.cli` registers the subcommand::

    p = subparsers.add_parser("features", ...)
    adapters.cli.add_arguments(p)
    p.set_defaults(func=adapters.cli.run)

``run(args)`` returns the exit code and raises :class:`diag.errors.GlassDiagError`
subclasses for errors. Module imports are kept light: freud, gsd, h5py and rich
are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from diag.argtypes import nonneg_int as _nonneg_int, positive_float as _positive_float, positive_int as _positive_int
from diag.errors import UsageError

from .readers import available_formats


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add every ``diag features`` argument to a (sub)parser."""
    p.add_argument(
        "trajectories",
        nargs="+",
        metavar="TRAJ",
        help="trajectory files (H5MD, GSD, LAMMPS dump, extended XYZ), one temperature each",
    )
    p.add_argument("-o", "--output", required=True, metavar="DATA.h5", help="dataset file to write")
    p.add_argument(
        "--temperature",
        type=_positive_float,
        nargs="+",
        action="extend",
        metavar="T",
        default=None,
        help="temperature of each file, in order, placed after the files (overrides the files; "
        "required when a file has none)",
    )
    add_label_arguments(p)
    p.add_argument(
        "--species", nargs="+", metavar="NAME", default=None,
        help="centre species: the particles described as samples (default: every species; neighbours are always "
        "every species)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="JSON file with optional sections 'structure', 'dynamics', 'input' (see docs/adapters.md)",
    )
    p.add_argument(
        "--format",
        choices=("auto", *available_formats()),
        default="auto",
        help="trajectory format (default: detect from content and extension)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--scheduler", metavar="WHERE", default="processes",
        help="where the frames' structure functions are computed: serial, processes (default: local workers, "
        "threads in this process with the numba kernel, else processes; processes:N for N), or a dask scheduler "
        "address tcp://HOST:PORT (pip install 'glass-diag[dask]'); the dataset does not depend on it",
    )


def add_label_arguments(p) -> None:
    """The rearrangement-label options (windows in frames or in time), shared with ``diag audit``."""
    p.add_argument("--every", type=_positive_int, default=None, metavar="K",
                   help="frames between sampled frames (default: window + 1, so p_hop windows do not overlap)")
    p.add_argument("--window", type=_positive_int, default=None, metavar="W",
                   help="p_hop window t_R in frames, even (default: 10 time units when frames carry times, else 10)")
    p.add_argument("--window-time", type=_positive_float, default=None, metavar="TIME",
                   help="p_hop window t_R in the trajectory's time units (about 10 tau for Kob-Andersen)")
    p.add_argument("--persistence", type=_nonneg_int, default=None, metavar="P",
                   help="hard: p_hop < p_hard over the frames [t - P, t + P] (default P = window)")
    p.add_argument("--persistence-time", type=_positive_float, default=None, metavar="TIME",
                   help="the hard-label persistence in time units")
    p.add_argument("--hard-side", choices=("both", "before"), default=None,
                   help="hard rule quiet before and after the frame (both, default) or only before it")
    p.add_argument("--p-c", type=_positive_float, default=None, metavar="PC",
                   help="soft / natural R = 1 threshold on p_hop (default 0.2, length^2)")
    p.add_argument("--natural-fraction", type=_fraction, default=None, metavar="F",
                   help="keep a seeded fraction F of the natural population (large systems; soft and hard "
                   "particles are always kept; default 1)")


def _fraction(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return x


def config_from_args(args, species: list[str] | None = None):
    """The features configuration: the --config file, then the command-line overrides."""
    from .config import load_config

    if args.window is not None and args.window % 2:
        raise UsageError(f"--window must be an even number of frames, got {args.window}")
    if args.window is not None and args.window_time is not None:
        raise UsageError("give --window (frames) or --window-time (time), not both")
    if args.persistence is not None and args.persistence_time is not None:
        raise UsageError("give --persistence (frames) or --persistence-time (time), not both")
    return load_config(args.config).with_overrides(
        species=species, every=args.every, window=args.window, window_time=args.window_time,
        persistence=args.persistence, persistence_time=args.persistence_time, hard_side=args.hard_side,
        p_c=args.p_c, natural_fraction=args.natural_fraction,
    )


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:  # pragma: no cover
        return False


def check_output(output: str, inputs: list[str], force: bool) -> None:
    """Refuse to clobber an input, or an existing file without ``--force``."""
    for p in inputs:
        if p is not None and _same_file(output, p):
            raise UsageError(f"output would overwrite the input file {p}", output)
    if os.path.isdir(output):
        raise UsageError("output path is a directory", output)
    if os.path.exists(output) and not os.path.isfile(output):
        # a device, pipe or socket: renaming the finished file onto it would replace it
        raise UsageError("output path exists and is not a regular file", output)
    if os.path.exists(output) and not force:
        raise UsageError("output file exists (use --force to replace it)", output)
    folder = os.path.dirname(output) or "."
    if not os.path.isdir(folder):
        raise UsageError("output folder does not exist", output)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError("output folder is not writable (permission denied)", output)


class _Progress:
    """A rich progress bar on stderr, one task per file (no-op when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._tasks: dict[int, int] = {}

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("frames"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, file_index: int, path: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if file_index not in self._tasks:
            self._tasks[file_index] = self._bar.add_task(os.path.basename(path), total=total)
        self._bar.update(self._tasks[file_index], completed=done)


#: compiled extensions of the features path, imported up front (see :func:`_preload`). Not freud:
#: the features path does not use it (the structure functions have their own cell lists) and it
#: imports matplotlib.pyplot and scipy.ndimage (1.5-3 s here); ``neighbours="freud"`` imports it.
_PRELOAD = ("h5py", "gsd.hoomd", "numba", "adapters.structure", "adapters._structure_numba")


def _preload() -> None:
    """Import the compiled extensions of the features path with SIGINT / SIGTERM held.

    A KeyboardInterrupt raised while a C extension is being imported can abort the
    interpreter (seen with freud: a traceback and exit code -6), or make CPython exit by
    SIGINT after the CLI has handled the interrupt (exit -2 instead of 130). These imports
    otherwise happen in the middle of the run (the first structure-function engine imports the
    numba kernels); done here, a Ctrl-C that arrives meanwhile is acted on right after them.
    """
    import importlib

    from diag.dataset import held_interrupts

    with held_interrupts():
        for name in _PRELOAD:
            try:
                importlib.import_module(name)
            except Exception:  # optional (gsd, numba), or reported where it is needed (e.g. no numba cache dir)
                pass


class _RememberedInterrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt, and are remembered.

    Python runs a signal's handler in whatever Python code executes next; when that is a
    weakref callback or a ``__del__`` (h5py and numba run many), the KeyboardInterrupt is
    printed as "Exception ignored" and dropped, and the interrupted run would go on and
    publish its output. :meth:`check`, called before the output is written, raises it
    again. An ignored signal (a background job's SIGINT) stays ignored.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def check(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> bool:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def run(args: argparse.Namespace) -> int:
    """Run ``diag features``; returns 0, raises GlassDiagError subclasses on errors."""
    with _RememberedInterrupts() as interrupts:
        return _run(args, interrupts)


def _run(args: argparse.Namespace, interrupts: _RememberedInterrupts) -> int:
    from .build import build_dataset

    paths = [os.fspath(p) for p in args.trajectories]
    output = os.fspath(args.output)
    check_output(output, [*paths, args.config], args.force)
    config = config_from_args(args, species=args.species)
    _preload()  # after the quick checks of the request
    show = not args.quiet and sys.stderr.isatty()
    from diag.parallel import Scheduler

    with Scheduler.from_spec(getattr(args, "scheduler", "processes")) as sched, _Progress(show) as progress:
        ds = build_dataset(
            paths,
            temperatures=args.temperature,
            config=config,
            fmt=None if args.format == "auto" else args.format,
            progress=progress,
            scheduler=sched,
        )
    interrupts.check()  # an interrupt that Python dropped: publish nothing
    written = ds.write(output, overwrite=args.force)
    nat = ds.natural == 1
    n_frames = len(set(ds.group.tolist()))
    temps = ", ".join(f"{t:g}" for t in ds.temperatures)
    print(
        f"wrote {written}: {ds.n_samples} samples x {ds.n_features} features from {n_frames} frames of "
        f"{len(paths)} file(s) at T = {temps}; natural population {int(nat.sum())} ({int(ds.label[nat].sum())} "
        f"with R = 1), training set {int((ds.role == 1).sum())} soft, {int((ds.role == 0).sum())} hard"
    )
    return 0
