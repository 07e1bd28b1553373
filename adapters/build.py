"""Trajectories -> one dataset: labels from p_hop, features from structure functions.

For every input file (one temperature each):

1. open it (:func:`adapters.readers.open_trajectory`), find its temperature
   (command line first, else the file), map its species onto the structure
   configuration's species, check it has enough frames;
2. resolve the label windows into frames with the file's frame interval
   (:meth:`adapters.dynamics.DynamicsConfig.resolve`: windows may be given in time);
3. stream the frames once: unwrap them (:class:`adapters.trajectory.Unwrapper`),
   feed them to :class:`adapters.dynamics.HopLabeller`, keep the stored
   positions of sampled frames until their labels are known;
4. at each labelled frame, compute the structure functions of the **natural
   population** (every centre particle, or a seeded subsample of them) and of every
   soft or hard centre particle, on the **wrapped** positions of that frame
   (:class:`adapters.structure.StructureFunctions`; neighbours are every species and
   every periodic image within the cutoff).

Centres are the particles of the ``centre_species`` (default: every species). Each
sample carries its natural label R (p_hop > p_c), its training role (soft, hard,
neither) and whether it belongs to the natural population (``Dataset.natural``).

All files are checked (readable, temperature, species, frame count) before any frame
is processed, and nothing is written here: the caller writes the returned
:class:`~diag.dataset.Dataset`.

Groups: ``group = file_index * 10**9 + frame`` (one group per file and sampled
frame; samples of one frame are correlated and must stay together).

Where the structure functions run (``scheduler``): in this process (serial); on local
workers (``processes``): with the compiled (numba) kernel, which releases the GIL, these are
threads of this process, fed while the next frames are read (no worker start-up, no second
load of the kernels, no copies of the frames), otherwise worker processes; or on a dask
cluster. The dataset does not depend on it (``docs/scale.md``).

Memory per file: the p_hop buffer (``chunk + W`` unwrapped frames, see
:mod:`adapters.dynamics`), the stored positions of the few sampled frames
waiting for their labels (at most ``(chunk + W) / every + 1`` frames), O(N)
label state and the growing feature matrix of the samples
(``n_samples * n_features * 4`` bytes), and on local threads at most two labelled
frames per thread waiting for their structure functions. One frame of the file is read at
a time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from diag.errors import DataError, GlassDiagError, InsufficientDataError, UsageError
from diag.resources import check_memory

from .config import FeaturesConfig
from .dynamics import DynamicsConfig, HopLabeller, check_enough_frames
from .trajectory import FRAME_COPIES, Trajectory, Unwrapper

GROUP_STRIDE = 10**9
GENERATOR = "glass-diag features"

#: ``progress(file_index, path, frames_done, n_frames)``
ProgressCallback = Callable[[int, str, int, int], None]


@dataclass
class _FileSamples:
    features: list = field(default_factory=list)
    label: list = field(default_factory=list)
    role: list = field(default_factory=list)
    natural: list = field(default_factory=list)
    p_hop: list = field(default_factory=list)
    group: list = field(default_factory=list)
    species: list = field(default_factory=list)
    particle: list = field(default_factory=list)
    n_sampled: int = 0


def species_type_map(
    traj: Trajectory,
    structure_species: Sequence[str],
    species_map: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[np.ndarray, dict[str, str]]:
    """Map the trajectory's species onto the structure configuration's species.

    Rules, for the species that particles actually have: an explicit
    ``species_map`` entry wins; else the same name; else, when the file only has
    bare integer species (LAMMPS ``type``, H5MD integer ``species``) and none of
    them is a structure species name, integer ``k`` maps to structure species
    ``k - base`` (base 1 for LAMMPS, 0 for H5MD).

    Returns
    -------
    type_map : ndarray (len(traj.species),), int64
        Structure species id of every file species id (-1 for unused ones).
    mapping : dict
        File species name -> structure species name, for the record.

    ``source`` (the configuration file) is named in the error for a map
    entry that points to an unknown structure species.
    """
    target = [str(s) for s in structure_species]
    smap = dict(species_map or {})
    used = [int(k) for k in np.unique(traj.types)]
    names = [traj.species[k] for k in used]
    for name, to in smap.items():
        if to not in target:
            raise UsageError(
                f"input.species_map maps '{name}' to '{to}', which is not a structure species "
                f"({', '.join(target)})",
                source,
            )
    base = traj.numeric_species_base
    numeric = (
        base is not None
        and not any(n in target or n in smap for n in names)
        and all(_is_int(n) for n in names)
        and all(0 <= int(n) - base < len(target) for n in names)
    )
    type_map = np.full(len(traj.species), -1, dtype=np.int64)
    mapping: dict[str, str] = {}
    for k, name in zip(used, names):
        if name in smap:
            to = smap[name]
        elif name in target:
            to = name
        elif numeric:
            to = target[int(name) - base]
        else:
            raise DataError(
                f"unknown species '{name}' (structure species: {', '.join(target)}; "
                "map it with input.species_map in the config)",
                traj.path,
            )
        type_map[k] = target.index(to)
        mapping[name] = to
    return type_map, mapping


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def streaming_bytes(n_particles: int, dimensions: int, dcfg: DynamicsConfig) -> float:
    """Peak bytes of the frame stream of one file (docs/adapters.md, *Memory*).

    The p_hop buffer (twice ``chunk + W`` unwrapped frames while a block is
    evaluated), the positions of sampled frames waiting for their labels, and a
    few frames in flight in the reader and the unwrapping.
    """
    chunk = max(dcfg.window, 8)
    frames = 2 * (chunk + dcfg.window) + ((chunk + dcfg.window) // dcfg.every + 1) + FRAME_COPIES
    return float(frames) * n_particles * dimensions * 8


def _engine_box(box):
    """The box as the structure-function engine takes it: freud's (Lx, Ly, Lz, xy, xz, yz) or lengths."""
    params = getattr(box, "freud_params", None)
    return tuple(params()) if callable(params) else tuple(box.lengths)


def _peek_frame_interval(traj: Trajectory) -> float | None:
    """Time between frames from the first two frames (None when the frames carry no times).

    Needed before streaming, to turn label windows given in time into frames; the reader
    checks during the stream that every interval is the same.
    """
    if traj.frame_interval_time is not None:
        return float(traj.frame_interval_time)
    if traj.n_frames < 2:
        return None
    it = iter(traj)
    try:
        t0, t1 = next(it).time, next(it).time
    except StopIteration:  # pragma: no cover - n_frames >= 2
        return None
    finally:
        it.close()
    if t0 is None or t1 is None or not float(t1) > float(t0):
        return None
    return float(t1) - float(t0)


def _peek_first_frame(traj: Trajectory):
    it = iter(traj)
    try:
        return next(it)
    except StopIteration:  # pragma: no cover - Trajectory refuses empty files
        raise DataError("the trajectory has no frames", traj.path) from None
    finally:
        it.close()


@dataclass
class _Prepared:
    traj: Trajectory
    temperature: float
    temperature_source: str
    type_map: np.ndarray
    mapping: dict[str, str]
    dynamics: DynamicsConfig


def build_dataset(
    paths: Sequence[str | os.PathLike],
    *,
    temperatures: Sequence[float] | None = None,
    config: FeaturesConfig | None = None,
    fmt: str | None = None,
    progress: ProgressCallback | None = None,
    scheduler=None,
):
    """Label rearrangements and compute structure functions for several trajectories.

    Parameters
    ----------
    paths : sequence of path-like
        Trajectory files, one temperature each.
    temperatures : sequence of float, optional
        One per file, in order; overrides temperatures found in the files.
        Without it every file must carry its temperature.
    config : FeaturesConfig, optional
        Structure, dynamics and input settings (defaults: Kob-Andersen grid,
        :class:`~adapters.dynamics.DynamicsConfig` defaults).
    fmt : str, optional
        Force a format for every file (``"h5md"``, ``"gsd"``, ``"lammps"``,
        ``"xyz"``); default: detect per file.
    progress : callable, optional
        ``progress(file_index, path, frames_done, n_frames)`` after each frame.
    scheduler : diag.parallel.Scheduler, optional
        Where the structure functions of the labelled frames are computed (the tasks; the
        frames are read and labelled here, in order). None: in this process. The dataset
        does not depend on it (``docs/scale.md``).

    Returns
    -------
    diag.dataset.Dataset
        Validated, not written.

    Raises
    ------
    UsageError
        Bad request: temperature count, bad values, unknown format.
    DataError
        Unusable file (message names it): unreadable, truncated, bad box,
        unknown species, missing temperature, too few frames, ...
    InsufficientDataError
        No particle could be labelled at any sampled frame.
    """
    from diag import __version__
    from diag.dataset import Dataset

    from .readers import open_trajectory
    from .structure import StructureFunctions

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise UsageError("no trajectory files given")
    config = config or FeaturesConfig()
    scfg = config.structure_config()
    dcfg: DynamicsConfig = config.dynamics
    if temperatures is not None:
        temperatures = [float(t) for t in temperatures]
        if len(temperatures) != len(paths):
            raise UsageError(
                f"--temperature got {len(temperatures)} value(s) for {len(paths)} file(s); give one per file, in order"
            )
        for t in temperatures:
            if not np.isfinite(t) or t <= 0:
                raise UsageError(f"--temperature values must be positive, got {t:g}")

    centres = list(config.centre_species) if config.centre_species else list(scfg.species)
    unknown = [c for c in centres if c not in scfg.species]
    if unknown:
        raise UsageError(
            f"--species {unknown[0]}: not a species of the structure configuration ({', '.join(scfg.species)})",
            config.source,
        )
    centre_ids = np.array([list(scfg.species).index(c) for c in centres], dtype=np.int64)
    prepared: list[_Prepared] = []
    opened: list[Trajectory] = []
    threads: _LocalThreads | None = None
    try:
        # ------------------------------------------------ check every input first
        for i, path in enumerate(paths):
            traj = open_trajectory(path, fmt, h5md_group=config.h5md_group)
            opened.append(traj)
            if temperatures is not None:
                T, src = temperatures[i], "command line (--temperature)"
                if traj.temperature is not None:
                    src += f"; file says {traj.temperature:g} ({traj.temperature_source})"
            elif traj.temperature is not None:
                T, src = traj.temperature, traj.temperature_source or "file"
                if not np.isfinite(T) or T <= 0:
                    raise DataError(f"temperature in the file is {T:g}; it must be positive", path)
            else:
                note = getattr(traj, "temperature_note", None)
                raise DataError(
                    "no temperature in the file; give one per file with --temperature" + (f" ({note})" if note else ""),
                    path,
                )
            type_map, mapping = species_type_map(traj, scfg.species, config.species_map, config.source)
            fdyn = dcfg.resolve(_peek_frame_interval(traj), path)
            check_enough_frames(traj.n_frames, fdyn, path)
            check_memory(
                streaming_bytes(traj.n_particles, traj.dimensions, fdyn),
                f"streaming {traj.n_particles} particles through the p_hop window",
                path,
            )
            if not np.isin(centre_ids, type_map[np.unique(traj.types)]).any():
                raise DataError(
                    f"no particle of the centre species {', '.join(centres)} in the file", path
                )
            prepared.append(_Prepared(traj, float(T), src, type_map, mapping, fdyn))

        # ---------------------------------------------------------- process
        from diag.parallel import as_scheduler

        engine = StructureFunctions(scfg)
        n_feat = int(scfg.n_features)
        parts: list[_FileSamples] = []
        file_records = []
        sched = as_scheduler(scheduler)
        frames_total = sum(len(p.dynamics.sampled_frames(p.traj.n_frames)) for p in prepared)
        threads = _LocalThreads.for_run(sched, engine)
        for i, prep in enumerate(prepared):
            samples, record = _process(i, prep, engine, n_feat, scfg, prep.dynamics, progress, sched, frames_total,
                                       centre_ids, threads)
            parts.append(samples)
            file_records.append(record)
    finally:
        if threads is not None:
            threads.close()
        for traj in opened:
            traj.close()

    n_total = sum(len(x) for p in parts for x in p.label)
    n_roles = sum(int((x >= 0).sum()) for p in parts for x in p.role)
    if n_total == 0 or n_roles == 0:
        n_frames = sum(p.n_sampled for p in parts)
        raise InsufficientDataError(
            f"no centre particle was labelled soft or hard at any of the {n_frames} sampled frames "
            f"(p_c {dcfg.p_c:g}, p_hard {dcfg.p_hard:g}, persistence {prepared[0].dynamics.persistence} frames, "
            f"hard rule {dcfg.hard_side})",
            paths[0] if len(paths) == 1 else None,
        )

    def cat(name, dtype):
        arrays = [a for p in parts for a in getattr(p, name)]
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype)

    features = np.concatenate([a for p in parts for a in p.features], axis=0).astype(np.float32, copy=False)
    temps = np.concatenate(
        [np.full(sum(len(x) for x in p.label), prep.temperature) for p, prep in zip(parts, prepared)]
    )
    dyn_conv = [p.dynamics.conventions() for p in prepared]
    # one record; a setting that differs between files (e.g. a window in time over different frame
    # intervals) is the list of its per-file values, in file order
    dyn_record = {k: (v if all(d[k] == v for d in dyn_conv) else [d[k] for d in dyn_conv])
                  for k, v in dyn_conv[0].items()}
    conventions: dict[str, Any] = {
        "structure": scfg.conventions(),
        "dynamics": dyn_record,
        "species_names": list(scfg.species),
        "centre_species": centres,
        "population": "natural: every centre particle at the sampled frames"
        + ("" if dcfg.natural_fraction == 1 else f" (a seeded subsample, fraction {dcfg.natural_fraction:g})")
        + "; training set: soft and hard centre particles (role)",
        "group": f"file_index * {GROUP_STRIDE} + frame index (one group per file and sampled frame)",
        "positions": "structure functions on wrapped positions; p_hop on unwrapped positions",
        "temperatures": [prep.temperature for prep in prepared],
        "trajectories": file_records,
    }
    provenance: dict[str, Any] = {
        "generator": GENERATOR,
        "version": __version__,
        "inputs": [
            {"file": prep.traj.path, "size": os.path.getsize(prep.traj.path), "format": prep.traj.format}
            for prep in prepared
        ],
        "config": config.to_dict(),
        "config_file": config.source,
    }
    ds = Dataset(
        features=features,
        label=cat("label", np.int8),
        role=cat("role", np.int8),
        natural=cat("natural", np.int8),
        temperature=temps,
        group=cat("group", np.int64),
        feature_names=list(scfg.feature_names()),
        feature_families=list(scfg.feature_families()),
        feature_params=list(scfg.feature_params()),
        p_hop=cat("p_hop", np.float32),
        species=cat("species", np.int32),
        particle=cat("particle", np.int64),
        conventions=conventions,
        provenance=provenance,
    )
    return ds.validate()


@dataclass(frozen=True)
class _EngineSpec:
    """How to rebuild the caller's structure-function engine in a worker (picklable)."""

    config: Any
    chunk_size: int
    n_threads: int
    neighbours: str
    kernel: str

    @classmethod
    def of(cls, engine) -> "_EngineSpec":
        return cls(engine.config, int(getattr(engine, "chunk_size", 256)), int(getattr(engine, "n_threads", 1)),
                   str(getattr(engine, "neighbours", "cells")), str(getattr(engine, "kernel_", "auto")))

    def build(self):
        from .structure import StructureFunctions

        return StructureFunctions(self.config, self.chunk_size, n_threads=self.n_threads,
                                  neighbours=self.neighbours, kernel=self.kernel)


class _EngineRef:
    """The caller's engine in this process; pickled (for a worker), a recipe for a fresh engine per task."""

    def __init__(self, engine=None, spec: _EngineSpec | None = None):
        self.engine, self.spec = engine, spec

    def get(self):
        return self.engine if self.engine is not None else self.spec.build()

    def __reduce__(self):
        return (_EngineRef, (None, self.spec if self.spec is not None else _EngineSpec.of(self.engine)))


def _frame_task(shared, job) -> np.ndarray:
    """Structure functions of the labelled particles of one frame (a task of feature extraction).

    Returns the ``(len(particles), n_features)`` float32 rows in the order of ``particles``.
    """
    ref, types, path, n_feat = shared
    frame, box, pts, particles = job
    engine = ref.get()
    try:
        res = engine.compute(box, pts, types, query_indices=particles)
    except GlassDiagError as exc:
        if exc.path is not None:
            raise
        raise type(exc)(f"frame {frame}: structure functions: {exc.message}", path) from None
    feats = np.asarray(res.features)
    qi = getattr(res, "query_indices", None)
    if qi is not None and not np.array_equal(np.asarray(qi), particles):
        where = {int(q): j for j, q in enumerate(np.asarray(qi))}
        feats = feats[[where[int(p)] for p in particles]]
    if feats.shape != (particles.size, n_feat):
        raise RuntimeError(
            f"structure functions returned shape {feats.shape}, expected ({particles.size}, {n_feat})"
        )
    return feats.astype(np.float32, copy=False)


class _LocalThreads:
    """Local workers as threads of this process, for the compiled (numba) kernel.

    The numba kernels release the GIL, so threads compute frames in parallel as processes
    would, without their costs: starting them and importing numpy and numba again (2-4 s
    for two), loading the compiled kernels again in each (about 1 s of CPU each), and
    pickling every frame to them and its rows back. Frames are submitted as soon as they are
    labelled, so reading, unwrapping and labelling the next frames (this thread) overlap
    with their structure functions. Each thread has its own engine (``compute`` keeps its
    result on the engine); the rows are the same as in this process, bit for bit.
    """

    def __init__(self, engine, n_threads: int):
        from concurrent.futures import ThreadPoolExecutor

        self.n_threads = int(n_threads)
        self.spec = _EngineSpec.of(engine)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="glass-diag-features")

    @classmethod
    def for_run(cls, sched, engine) -> "_LocalThreads | None":
        """Threads for a local ``processes`` scheduler with the numba kernel; else None (the scheduler)."""
        if sched.kind == "processes" and sched.n_workers > 1 and getattr(engine, "kernel_", "") == "numba":
            return cls(engine, sched.n_workers)
        return None

    @property
    def max_in_flight(self) -> int:
        """Frames submitted and not yet collected (bounds the memory of waiting frames)."""
        return 2 * self.n_threads

    def _engine(self):
        eng = getattr(self._local, "engine", None)
        if eng is None:
            eng = self._local.engine = self.spec.build()
        return eng

    def _run(self, shared, job):
        _, types, path, n_feat = shared
        return _frame_task((_EngineRef(self._engine()), types, path, n_feat), job)

    def submit(self, shared, job):
        return self._pool.submit(self._run, shared, job)

    def close(self) -> None:
        # frames not started are dropped (an error or an interrupt: nothing is written)
        self._pool.shutdown(wait=True, cancel_futures=True)


def _process(file_index, prep: _Prepared, engine, n_feat, scfg, dcfg: DynamicsConfig, progress, sched=None,
             frames_total=None, centre_ids=None, threads: _LocalThreads | None = None):
    from diag.parallel import as_scheduler

    sched = as_scheduler(sched)
    traj = prep.traj
    path = traj.path
    n = traj.n_particles
    h = dcfg.half
    last_sampled = dcfg.last_frame(traj.n_frames)
    types = prep.type_map[traj.types]
    is_centre = np.isin(types, centre_ids) if centre_ids is not None else np.ones(n, dtype=bool)
    labeller = HopLabeller(n, dcfg)
    unwrap = Unwrapper(traj.unwrap_method, path, traj.particle_ids)
    pending: dict[int, tuple] = {}
    out = _FileSamples()
    n_soft = n_hard = 0
    # labelled frames wait here until a batch of them is computed (by the scheduler's workers);
    # their rows are appended in frame order whatever the schedule
    shared = (_EngineRef(engine), types, path, n_feat)
    batch = 1 if not sched.parallel or threads is not None else int(min(max(8, 4 * sched.n_workers), 256))
    waiting: list[tuple] = []
    in_flight: deque = deque()  # (labels, future) on the local threads, in frame order
    t_start, n_tasks = time.perf_counter(), 0

    def collect(fl, feats):
        nonlocal n_soft, n_hard
        out.features.append(feats)
        out.label.append(fl.label)
        out.role.append(fl.role)
        out.natural.append(fl.natural)
        out.p_hop.append(fl.p_hop)
        out.group.append(np.full(fl.particles.size, file_index * GROUP_STRIDE + fl.frame, dtype=np.int64))
        out.species.append(types[fl.particles].astype(np.int32))
        out.particle.append(traj.particle_ids[fl.particles])
        n_soft += fl.n_soft
        n_hard += fl.n_hard

    def drain(keep: int):
        while len(in_flight) > keep:
            fl, fut = in_flight.popleft()
            collect(fl, fut.result())

    def flush():
        nonlocal n_tasks
        if not waiting:
            return
        jobs = [(fl.frame, lengths, pts, fl.particles) for fl, lengths, pts in waiting]
        n_tasks += len(jobs)
        if threads is not None:
            for (fl, _, _), job in zip(waiting, jobs):
                in_flight.append((fl, threads.submit(shared, job)))
            drain(threads.max_in_flight)
            waiting.clear()
            return
        if sched.parallel:
            rows = sched.map(_frame_task, jobs, shared=shared, key=("features", id(engine)), total=frames_total)
        else:
            rows = [_frame_task(shared, job) for job in jobs]
        for (fl, _, _), feats in zip(waiting, rows):
            collect(fl, feats)
        waiting.clear()

    def handle(labels):
        for fl in labels:
            box, pos = pending.pop(fl.frame)
            out.n_sampled += 1
            if not np.isfinite(fl.p_hop).all():
                raise DataError(
                    f"frame {fl.frame}: p_hop is not finite (positions too large for floating point?)", path
                )
            natural = is_centre.copy()
            if dcfg.natural_fraction < 1:
                # seeded per file and frame: the subsample does not depend on the schedule
                rng = np.random.default_rng([dcfg.natural_seed, file_index, fl.frame])
                natural &= rng.random(n) < dcfg.natural_fraction
            keep = natural | (is_centre & (fl.role >= 0))
            fl = fl.select(keep)
            fl.natural = natural[keep].astype(np.int8)
            if fl.particles.size == 0:
                continue
            pts = box.centred(pos)
            if pts.shape[1] == 2:
                pts = np.column_stack([pts, np.zeros(n)])
            waiting.append((fl, _engine_box(box), pts))
            if len(waiting) >= batch:
                flush()

    try:
        for frame in traj:
            with np.errstate(over="ignore", invalid="ignore"):  # non-finite p_hop is an error in handle()
                u = unwrap(frame)
                if dcfg.is_sampled(frame.index) and frame.index <= last_sampled:
                    pending[frame.index] = (frame.box, frame.positions)
                labels = labeller.push(u)
            handle(labels)
            if progress is not None:
                progress(file_index, path, frame.index + 1, traj.n_frames)
        with np.errstate(over="ignore", invalid="ignore"):
            labels = labeller.finish()
        handle(labels)
        flush()
    except Exception:
        # an error of a frame still on the threads came first (the serial order): report it
        drain(0)
        raise
    drain(0)
    if threads is not None and n_tasks:
        sched.log.append((("features", id(engine)), n_tasks, "threads", time.perf_counter() - t_start))

    dt_steps, dt_time = traj.frame_interval_steps, traj.frame_interval_time
    record = {
        "file": path,
        "format": traj.format,
        "temperature": prep.temperature,
        "temperature_source": prep.temperature_source,
        "n_frames": traj.n_frames,
        "n_particles": n,
        "dimensions": traj.dimensions,
        "species_map": prep.mapping,
        "unwrap": traj.unwrap_method,
        "frame_interval_steps": dt_steps,
        "frame_interval_time": dt_time,
        "window_frames": dcfg.window,
        "persistence_frames": dcfg.persistence,
        "every_frames": dcfg.every,
        "window_steps": None if dt_steps is None else dt_steps * dcfg.window,
        "window_time": None if dt_time is None else dt_time * dcfg.window,
        "n_sampled_frames": out.n_sampled,
        "n_natural": int(sum(int(a.sum()) for a in out.natural)),
        "n_natural_rearranging": int(sum(int((r[m == 1]).sum()) for r, m in zip(out.label, out.natural))),
        "n_soft": n_soft,
        "n_hard": n_hard,
        "max_p_hop": labeller.max_p_hop,
    }
    if traj.unwrap_method == "minimum-image":
        record["max_step_fraction"] = unwrap.max_step_fraction
    if traj.metadata:
        record["reader"] = traj.metadata
    return out, record
