"""Where independent tasks run: in this process, in local processes, or on a dask cluster.

A tiny API over joblib (always installed with scikit-learn) and, optionally, dask.distributed::

    from diag.parallel import Scheduler

    with Scheduler.from_spec("processes") as sched:          # or "serial", "tcp://host:8786"
        results = sched.map(fit_one, tasks, shared=big_arrays)  # fit_one(big_arrays, task)

- ``serial``: every task in this process, in order (also what ``scheduler=None`` means in
  every library function).
- ``processes`` (``processes:N``): N local worker processes (default: the usable cores)
  through joblib's loky backend; numpy arrays larger than 1 MB in the arguments are
  memory-mapped, not copied. No cluster needed; this is the CLI default.
- ``tcp://host:port`` (any ``scheme://`` address of a dask scheduler): a
  ``distributed.Client`` connected to it, used through joblib's dask backend; the
  ``shared`` object is scattered to every worker once per :meth:`Scheduler.map`.

Results come back in the order of the tasks, whatever the schedule. Task functions must be
module-level (picklable) and must not depend on the order in which tasks run: every random
draw inside a task is seeded from the task itself (e.g. ``SeedSequence([seed, index])``),
never from a generator shared between tasks, so any scheduler gives the same results as the
serial run, bit for bit.

Small jobs stay in this process (local processes only): while the worker processes are not
running, the first task of a map is run here and timed, and the other tasks go to the pool
only when the time they would take here, times the fraction a pool saves (``1 - 1/N``),
exceeds the cost of starting the workers (``START_SECONDS``). Once the workers run, every
map goes to them. The decision of a ``key`` is remembered, so a stream of small maps (the
frames of a trajectory) is decided once. A dask cluster was asked for explicitly and always
gets the tasks. See ``docs/scale.md``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Sequence

from .errors import GlassDiagError, UsageError

__all__ = [
    "Scheduler", "SchedulerError", "as_scheduler", "dask_available", "DASK_MISSING", "SPEC_HELP",
    "START_SECONDS",
]

#: message when a dask address is given without dask.distributed installed
DASK_MISSING = "a dask scheduler address needs dask.distributed: pip install 'glass-diag[dask]'"
#: accepted ``--scheduler`` values, for help texts and errors
SPEC_HELP = "serial, processes (local processes; processes:N for N of them) or a dask address tcp://HOST:PORT"
#: estimated cost of starting local worker processes (spawn + importing numpy/scipy/sklearn/diag;
#: measured 3.5-4 s for 2 workers on a 2-core machine)
START_SECONDS = 4.0
#: seconds to wait for a dask scheduler to answer
CONNECT_TIMEOUT = 5.0

_NOTHING = object()


class SchedulerError(GlassDiagError):
    """The requested scheduler cannot be used (unreachable address, no workers)."""

    exit_code = 1


def dask_available() -> bool:
    """True when ``dask.distributed`` can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):  # pragma: no cover
        return False


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- the task wrapper


class _Shared:
    """Holds the ``shared`` argument of a map: one weak-referenceable object that joblib's dask
    backend scatters (broadcast) once, and that loky pickles once per batch of tasks (its large
    numpy arrays memory-mapped)."""

    __slots__ = ("value", "__weakref__")

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return (_Shared, (self.value,))


def _run_task(fn: Callable, shared, task, threads: int | None):
    """Run one task in a worker, with the BLAS threads the serial run would use."""
    if threads is None:
        return fn(task) if shared is None else fn(shared.value, task)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return fn(task) if shared is None else fn(shared.value, task)


# --------------------------------------------------------------------------- the scheduler


class Scheduler:
    """Runs independent tasks and returns their results in order (see the module docstring).

    Parameters
    ----------
    kind : {"serial", "processes", "dask"}
    n_workers : int
        Local processes, or the cluster's worker threads (dask: read from the cluster).
    address : str, optional
        The dask scheduler address (kind "dask").
    threads : int or None
        BLAS threads of each task in a worker (None: leave the worker's setting). The CLI
        passes its ``--threads`` (default 1), so that workers compute exactly as the serial run.
    client : distributed.Client, optional
        An existing client to use (kind "dask"); it is not closed by :meth:`close`.

    Use :meth:`from_spec` rather than the constructor, and the scheduler as a context
    manager: it owns the pool or client it created and releases it on exit.
    """

    def __init__(self, kind: str = "serial", n_workers: int = 1, *, address: str | None = None,
                 threads: int | None = 1, client=None):
        if kind not in ("serial", "processes", "dask"):
            raise UsageError(f"unknown scheduler kind {kind!r}")
        self.kind = kind
        self.n_workers = max(1, int(n_workers))
        self.address = address
        self.threads = threads
        self._client = client
        self._own_client = False
        self._pool_started = False
        self._decisions: dict[Any, bool] = {}
        #: (key, n_tasks, where, seconds) of every map, for benchmarks and the docs
        self.log: list[tuple[Any, int, str, float]] = []

    # ------------------------------------------------------------------ construction
    @classmethod
    def serial(cls) -> "Scheduler":
        return cls("serial", 1)

    @classmethod
    def from_spec(cls, spec: str | None = "processes", n_workers: int | None = None, *,
                  threads: int | None = 1, timeout: float = CONNECT_TIMEOUT) -> "Scheduler":
        """A scheduler from its ``--scheduler`` text.

        Parameters
        ----------
        spec : str or None
            ``"serial"``, ``"processes"`` (``"processes:N"``), or a dask scheduler address
            ``"tcp://host:port"``; None means ``"processes"``.
        n_workers : int, optional
            Local processes (default: the usable cores); ignored for serial and dask.
        threads : int or None
            BLAS threads per task in the workers.
        timeout : float
            Seconds to wait for a dask scheduler before giving up.

        Raises
        ------
        UsageError
            Unknown spec, or a dask address without dask installed.
        SchedulerError
            The dask scheduler does not answer at that address.
        """
        text = "processes" if spec is None else str(spec).strip()
        if text == "serial":
            return cls("serial", 1, threads=threads)
        if text in ("processes", "local") or text.startswith("processes:"):
            n = n_workers
            if text.startswith("processes:"):
                try:
                    n = int(text.split(":", 1)[1])
                except ValueError:
                    n = 0
                if n < 1:
                    raise UsageError(f"--scheduler {text}: the number of processes must be a positive integer")
            n = usable_cores() if n is None else int(n)
            if n <= 1:
                return cls("serial", 1, threads=threads)
            return cls("processes", n, threads=threads)
        if "://" in text:
            return cls._connect(text, threads=threads, timeout=timeout)
        raise UsageError(f"--scheduler {text}: expected {SPEC_HELP}")

    @classmethod
    def from_client(cls, client, *, threads: int | None = 1) -> "Scheduler":
        """Use an existing ``distributed.Client`` (not closed by :meth:`close`)."""
        s = cls("dask", _client_cores(client) or 1, address=str(getattr(client.scheduler, "address", "")),
                threads=threads, client=client)
        return s

    @classmethod
    def _connect(cls, address: str, *, threads, timeout: float) -> "Scheduler":
        if not dask_available():
            raise UsageError(DASK_MISSING)
        _preflight(address, timeout)
        import threading

        from distributed import Client

        box: dict[str, Any] = {}

        def attempt():  # in a thread: a listener that never answers the handshake would block for ever
            try:
                box["client"] = Client(address, timeout=timeout, set_as_default=False)
            except BaseException as exc:  # noqa: BLE001 - reported below, in this thread
                box["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]

        th = threading.Thread(target=attempt, name="glass-diag-dask-connect", daemon=True)
        th.start()
        th.join(2 * timeout)
        if th.is_alive():
            raise SchedulerError(f"no dask scheduler answered within {2 * timeout:g} s", address)
        if "error" in box:
            raise SchedulerError(f"cannot connect to a dask scheduler ({box['error']})", address)
        s = cls("dask", _client_cores(box["client"]) or 1, address=address, threads=threads, client=box["client"])
        s._own_client = True
        return s

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "Scheduler":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(kill=exc_type is not None)
        return False

    def close(self, kill: bool = False) -> None:
        """Release what this scheduler created: the local processes it started, its client.

        ``kill``: end the local workers at once (after an error or an interrupt) instead of
        letting them finish.
        """
        if self._pool_started and self.kind == "processes":
            from joblib.externals.loky import reusable_executor

            try:
                ex = getattr(reusable_executor, "_executor", None)  # the pool joblib started, if any
                if ex is not None:
                    ex.shutdown(wait=not kill, kill_workers=kill)
            except Exception:  # pragma: no cover - best effort at exit
                pass
            self._pool_started = False
        if self._own_client and self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                self._own_client = False

    # ------------------------------------------------------------------ properties
    @property
    def parallel(self) -> bool:
        """False for the serial scheduler."""
        return self.kind != "serial"

    @property
    def client(self):
        """The ``distributed.Client`` (kind "dask"), else None."""
        return self._client

    def describe(self) -> str:
        if self.kind == "serial":
            return "serial (this process)"
        if self.kind == "processes":
            return f"{self.n_workers} local processes"
        n = _client_cores(self._client) if self._client is not None else self.n_workers
        return f"dask scheduler {self.address} ({n} worker threads)"

    def __repr__(self) -> str:
        return f"Scheduler({self.describe()})"

    def __reduce__(self):
        # a scheduler that travels to a worker (inside options) runs that worker's tasks there
        return (_serial_scheduler, ())

    # ------------------------------------------------------------------ map
    def map(self, fn: Callable, tasks: Iterable, shared: Any = _NOTHING, *, key: Any = None,
            total: int | None = None, done: Callable[[int, int], None] | None = None) -> list:
        """``[fn(shared, t) for t in tasks]`` (or ``fn(t)`` without ``shared``), possibly in parallel.

        Parameters
        ----------
        fn : callable
            A module-level function (it is pickled by reference).
        tasks : iterable
            Small, picklable task descriptions (indices, seeds, a few arrays).
        shared : object, optional
            Data common to every task (arrays, the held-out set, the dataset): sent once per
            worker (dask: scattered to every worker; local processes: large arrays
            memory-mapped) instead of once per task.
        key : hashable, optional
            Names a stream of maps that share one serial-or-parallel decision (local
            processes; default: each map decides for itself).
        total : int, optional
            Tasks expected in the whole stream of ``key`` (for that decision).
        done : callable, optional
            ``done(n_done, n_tasks)`` as results arrive (in order), for progress displays.

        Returns
        -------
        list, in the order of ``tasks``.
        """
        tasks = list(tasks)
        wrapped = None if shared is _NOTHING else _Shared(shared)
        t0 = time.perf_counter()
        n = len(tasks)
        out: list = []

        def here(items):
            for t in items:
                out.append(_call_here(fn, wrapped, t))
                if done is not None:
                    done(len(out), n)

        if not tasks:
            return out
        if self.kind == "serial" or (self.kind == "processes" and n == 1 and key not in self._decisions):
            here(tasks)
            self._record(key, n, "here", t0)
            return out
        if self.kind == "processes" and not self._pool_started:
            decided = self._decisions.get(key) if key is not None else None
            if decided is None:
                t1 = time.perf_counter()
                here(tasks[:1])
                dt = time.perf_counter() - t1
                n_rest = (n if total is None else max(int(total), n)) - 1
                decided = self._worth_it(dt * n_rest)
                if key is not None:
                    self._decisions[key] = decided
            if not decided:
                here(tasks[len(out):])
                self._record(key, n, "here", t0)
                return out
        for r in self._run_pool(fn, wrapped, tasks[len(out):]):
            out.append(r)
            if done is not None:
                done(len(out), n)
        self._record(key, n, self.kind, t0)
        return out

    def _worth_it(self, serial_seconds: float) -> bool:
        """Do the remaining tasks save more on the pool than starting it costs?"""
        return serial_seconds * (1.0 - 1.0 / self.n_workers) > START_SECONDS

    def _run_pool(self, fn, wrapped, tasks: Sequence):
        """Results of the tasks on the pool or cluster, yielded in task order as they arrive."""
        from joblib import Parallel, delayed, parallel_config

        if not tasks:
            return
        calls = (delayed(_run_task)(fn, wrapped, t, self.threads) for t in tasks)
        if self.kind == "processes":
            self._pool_started = True
            with parallel_config(backend="loky", n_jobs=self.n_workers, inner_max_num_threads=self.threads):
                yield from Parallel(batch_size=1, return_as="generator")(calls)
            return
        scatter = [wrapped] if wrapped is not None else None
        with parallel_config(backend="dask", client=self._client, scatter=scatter, wait_for_workers_timeout=60):
            yield from Parallel(n_jobs=-1, batch_size=1, return_as="generator")(calls)

    def _record(self, key, n, where, t0) -> None:
        self.log.append((key, n, where, time.perf_counter() - t0))


def _preflight(address: str, timeout: float) -> None:
    """Fail fast, in one line, when nothing listens at a ``tcp://host:port`` address."""
    import socket

    scheme, _, loc = address.partition("://")
    if scheme != "tcp":
        return
    host, sep, port = loc.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UsageError("expected a dask scheduler address tcp://HOST:PORT", address)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except socket.timeout:
        raise SchedulerError(f"cannot connect to a dask scheduler (no answer within {timeout:g} s)", address) from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise SchedulerError(f"cannot connect to a dask scheduler ({why})", address) from None


def _call_here(fn, wrapped, task):
    return fn(task) if wrapped is None else fn(wrapped.value, task)


def _client_cores(client) -> int:
    try:
        return int(sum(client.ncores().values()))
    except Exception:  # pragma: no cover - a client that went away
        return 0


_SERIAL = Scheduler("serial", 1, threads=None)


def _serial_scheduler() -> Scheduler:
    return _SERIAL


def as_scheduler(scheduler: "Scheduler | str | None") -> Scheduler:
    """None -> the serial scheduler; a spec string -> :meth:`Scheduler.from_spec`; else itself."""
    if scheduler is None:
        return _SERIAL
    if isinstance(scheduler, Scheduler):
        return scheduler
    if isinstance(scheduler, str):
        if "://" in scheduler:  # a client must be closed: the caller owns it
            raise UsageError("connect to a dask scheduler with `with Scheduler.from_spec(address) as s:` and pass s")
        return Scheduler.from_spec(scheduler)
    raise UsageError(f"scheduler must be None, a Scheduler or a spec string, got {type(scheduler).__name__}")
