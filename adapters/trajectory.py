"""One trajectory object for every file format: boxes, frames, unwrapping.

A reader (see :mod:`adapters.readers`) turns a file into a :class:`Trajectory`:
the per-file metadata (particle count, dimension, species, temperature) plus a
function that yields :class:`Frame` objects one at a time, so a long trajectory
never has to fit in memory. :class:`Trajectory` checks every frame the same way
whatever the format (shapes, finite values, box, particles far outside the box,
constant frame interval) and :class:`Unwrapper` turns the stored positions into
unwrapped coordinates.

Conventions
-----------
* Boxes are orthorhombic and periodic in every direction, in 2D or 3D. A
  triclinic or non-periodic box is a :class:`~diag.errors.DataError`.
* A box is given by its edge lengths ``L`` and its lowest corner ``low``; the
  periodic cell is ``[low, low + L)``. Only relative positions matter for every
  quantity computed downstream, so formats that do not define an origin use a
  box centred on zero.
* Positions are ``float64`` arrays of shape ``(N, dim)``; particles keep their
  order (and species) through the trajectory.
* ``position_kind`` says what the stored positions are:

  ``"wrapped"``     inside the box (up to a particle that has just left it);
                    a particle more than one box length outside the box is an
                    error (usually a unit or column mistake).
  ``"unwrapped"``   absolute, continuous positions (LAMMPS ``xu yu zu``).
  ``"any-image"``   an arbitrary periodic image of each particle (H5MD without
                    ``image``): no range check.

* Unwrapping (:class:`Unwrapper`), chosen once per trajectory:

  ``"images"``          ``r + L * image`` when the file stores image flags;
  ``"file"``            the positions already are unwrapped;
  ``"minimum-image"``   otherwise, frame to frame: the displacement between
                        consecutive stored frames is taken as its minimum
                        image. This assumes that **no particle moves more than
                        half a box length (in any direction) between two stored
                        frames**; the largest observed step, as a fraction of
                        the box length, is kept in
                        :attr:`Unwrapper.max_step_fraction` for the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from diag.errors import DataError

POSITION_KINDS = ("wrapped", "unwrapped", "any-image")
#: a position farther than this many box lengths from the origin is refused, whatever its kind
MAX_BOX_LENGTHS = 1e9
UNWRAP_METHODS = ("images", "file", "minimum-image")


# --------------------------------------------------------------------------- box
@dataclass(frozen=True)
class Box:
    """An orthorhombic periodic box.

    Attributes
    ----------
    lengths : tuple of float
        Edge lengths ``(Lx, Ly)`` or ``(Lx, Ly, Lz)``.
    low : tuple of float
        The lowest corner; the periodic cell is ``[low, low + lengths)``.
    """

    lengths: tuple[float, ...]
    low: tuple[float, ...]

    @property
    def dimensions(self) -> int:
        return len(self.lengths)

    @property
    def L(self) -> np.ndarray:
        """Edge lengths as an array, shape (dim,)."""
        return np.asarray(self.lengths, dtype=np.float64)

    @property
    def lo(self) -> np.ndarray:
        """Lowest corner as an array, shape (dim,)."""
        return np.asarray(self.low, dtype=np.float64)

    @property
    def volume(self) -> float:
        return float(np.prod(self.L))

    def wrap(self, positions: np.ndarray) -> np.ndarray:
        """Positions mapped into ``[low, low + L)``, shape unchanged."""
        L, lo = self.L, self.lo
        out = lo + np.mod(np.asarray(positions, dtype=np.float64) - lo, L)
        # np.mod can return L itself for tiny negative inputs: fold it back.
        return np.where(out >= lo + L, out - L, out)

    def centred(self, positions: np.ndarray) -> np.ndarray:
        """Positions relative to the box centre, wrapped into ``[-L/2, L/2)``.

        This is the convention of freud and HOOMD boxes.
        """
        L = self.L
        x = np.asarray(positions, dtype=np.float64) - (self.lo + L / 2)
        x = x - L * np.floor(x / L + 0.5)
        return np.where(x >= L / 2, x - L, x)

    def minimum_image(self, d: np.ndarray) -> np.ndarray:
        """Minimum-image convention applied to displacements ``d`` (..., dim)."""
        L = self.L
        d = np.asarray(d, dtype=np.float64)
        return d - L * np.round(d / L)

    def to_freud(self):
        """The equivalent :class:`freud.box.Box` (imports freud)."""
        import freud

        if self.dimensions == 2:
            return freud.box.Box(Lx=self.lengths[0], Ly=self.lengths[1], is2D=True)
        return freud.box.Box(Lx=self.lengths[0], Ly=self.lengths[1], Lz=self.lengths[2])


def make_box(
    lengths: Iterable[float],
    low: Iterable[float] | None = None,
    *,
    tilts: Iterable[float] | None = None,
    periodic: Iterable[bool] | None = None,
    boundary_text: Iterable[str] | None = None,
    path: str | None = None,
    frame: int | None = None,
) -> Box:
    """Build and check a :class:`Box`; raise :class:`DataError` naming the file.

    Parameters
    ----------
    lengths : sequence of float
        Edge lengths, 2 or 3 of them.
    low : sequence of float, optional
        Lowest corner; default: a box centred on zero.
    tilts : sequence of float, optional
        Tilt factors or off-diagonal cell entries; any non-zero value means a
        triclinic box, which is refused.
    periodic : sequence of bool, optional
        Periodicity per direction; every direction must be periodic.
    boundary_text : sequence of str, optional
        The file's own spelling of the boundary flags, for the message.
    path, frame
        For messages.
    """
    where = "" if frame is None else f"frame {frame}: "
    L = np.asarray(list(lengths), dtype=np.float64)
    if L.ndim != 1 or L.size not in (2, 3):
        raise DataError(f"{where}box must have 2 or 3 edge lengths, got {L.size}", path)
    axes = "xyz"
    if not np.isfinite(L).all():
        raise DataError(f"{where}box edge lengths are not finite ({_fmt(L)})", path)
    if (L <= 0).any():
        k = int(np.argmax(L <= 0))
        raise DataError(
            f"{where}box edge length L{axes[k]} = {L[k]:g} is zero or negative; a periodic box is required",
            path,
        )
    if tilts is not None:
        t = np.asarray(list(tilts), dtype=np.float64)
        if t.size and (~np.isfinite(t) | (np.abs(t) > 0)).any():
            raise DataError(
                f"{where}triclinic box (tilt/off-diagonal values {_fmt(t)}) is not supported; "
                "only orthorhombic periodic boxes are",
                path,
            )
    if periodic is not None:
        per = [bool(p) for p in periodic]
        if not all(per):
            k = per.index(False)
            spelled = ""
            if boundary_text is not None:
                spelled = f" (boundary {' '.join(str(b) for b in boundary_text)})"
            raise DataError(
                f"{where}box is not periodic along {axes[k]}{spelled}; only fully periodic boxes are supported",
                path,
            )
    if low is None:
        lo = -L / 2
    else:
        lo = np.asarray(list(low), dtype=np.float64)
        if lo.shape != L.shape or not np.isfinite(lo).all():
            raise DataError(f"{where}box origin {_fmt(lo)} does not match the box lengths {_fmt(L)}", path)
    return Box(tuple(float(x) for x in L), tuple(float(x) for x in lo))


#: copies of one frame (float64) a reader and the unwrapping hold at once
FRAME_COPIES = 8


def check_frame_memory(n_particles: int, dimensions: int, path: str | None = None, copies: int = FRAME_COPIES) -> None:
    """Raise :class:`DataError` when frames of this size cannot fit in memory.

    For readers that learn the particle number from a header (an HDF5 shape, a
    count line) before reading any data: a damaged header must give a clear
    error, not a multi-gigabyte allocation.
    """
    from diag.resources import check_memory

    check_memory(
        float(copies) * n_particles * dimensions * 8,
        f"reading frames of {n_particles} particles in {dimensions}D",
        path,
    )


def _fmt(a) -> str:
    return "(" + ", ".join(f"{float(x):g}" for x in np.ravel(a)[:9]) + ")"


# ------------------------------------------------------------------------- frame
@dataclass
class Frame:
    """One stored frame.

    Attributes
    ----------
    index : int
        Zero-based frame number in the file.
    box : Box
    positions : ndarray, shape (N, dim), float64
        As stored (see ``position_kind``), in the trajectory's particle order.
    image : ndarray, shape (N, dim), int64, or None
        Periodic image flags, when the file stores them.
    step : int or None
        Integration step, when the file stores it.
    time : float or None
        Simulation time, when the file stores it.
    position_kind : str
        ``"wrapped"``, ``"unwrapped"`` or ``"any-image"`` (module docstring).
    """

    index: int
    box: Box
    positions: np.ndarray
    image: np.ndarray | None = None
    step: int | None = None
    time: float | None = None
    position_kind: str = "wrapped"

    def wrapped(self) -> np.ndarray:
        """Positions wrapped into the box ``[low, low + L)``, shape (N, dim)."""
        return self.box.wrap(self.positions)


# -------------------------------------------------------------------- trajectory
class Trajectory:
    """A particle trajectory read lazily, frame by frame.

    Readers construct it; users iterate it. Iterating twice reads the file
    twice. Use it as a context manager (or call :meth:`close`) to release the
    file.

    Parameters
    ----------
    path : str
        The file, for messages.
    format : str
        Reader name (``"h5md"``, ``"gsd"``, ``"lammps"``, ``"xyz"``, ...).
    n_frames : int
        Number of stored frames.
    dimensions : int
        2 or 3.
    species : sequence of str
        Species names; ``types`` indexes into it.
    types : ndarray, shape (N,), int
        Species id of every particle, constant in time.
    frames : callable
        ``frames()`` returns a fresh iterator of :class:`Frame`, in order.
    particle_ids : ndarray, shape (N,), int64, optional
        Identifiers from the file (LAMMPS ``id``, H5MD ``id``); default
        ``0..N-1``.
    position_kind : str
        What the stored positions are (module docstring).
    has_images : bool
        Whether every frame carries image flags.
    temperature : float, optional
        Temperature found in the file, if any.
    temperature_source : str, optional
        Where it was found (for the record).
    numeric_species_base : int, optional
        Set when species names are bare integers without names (LAMMPS
        ``type`` 1, 2, ...; H5MD integer ``species`` 0, 1, ...): the integer
        that corresponds to the first species of a structure configuration.
    close : callable, optional
        Releases the file.
    metadata : dict, optional
        Anything else worth recording (column names, particle group, ...).
    """

    def __init__(
        self,
        path: str,
        format: str,
        *,
        n_frames: int,
        dimensions: int,
        species: Iterable[str],
        types: np.ndarray,
        frames: Callable[[], Iterator[Frame]],
        particle_ids: np.ndarray | None = None,
        position_kind: str = "wrapped",
        has_images: bool = False,
        temperature: float | None = None,
        temperature_source: str | None = None,
        numeric_species_base: int | None = None,
        close: Callable[[], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self.path = str(path)
        self.format = format
        self.n_frames = int(n_frames)
        self.dimensions = int(dimensions)
        self.species = tuple(str(s) for s in species)
        self.types = np.asarray(types).astype(np.int64, copy=False)
        self.n_particles = int(self.types.shape[0])
        self.particle_ids = (
            np.arange(self.n_particles, dtype=np.int64)
            if particle_ids is None
            else np.asarray(particle_ids).astype(np.int64, copy=False)
        )
        if position_kind not in POSITION_KINDS:
            raise ValueError(f"position_kind must be one of {POSITION_KINDS}")
        self.position_kind = position_kind
        self.has_images = bool(has_images)
        self.temperature = None if temperature is None else float(temperature)
        self.temperature_source = temperature_source
        self.numeric_species_base = numeric_species_base
        self.metadata = dict(metadata or {})
        self._frames = frames
        self._close = close
        #: constant frame interval found while iterating (steps and time), or None
        self.frame_interval_steps: int | None = None
        self.frame_interval_time: float | None = None
        p = self.path
        if self.dimensions not in (2, 3):
            raise DataError(f"only 2D and 3D systems are supported, got dimension {self.dimensions}", p)
        if self.n_particles == 0:
            raise DataError("the trajectory has no particles", p)
        if self.n_frames <= 0:
            raise DataError("the trajectory has no frames", p)
        if self.types.ndim != 1:
            raise DataError(f"species ids must be one per particle, got shape {self.types.shape}", p)
        if self.types.min() < 0 or self.types.max() >= len(self.species):
            raise DataError("species ids do not match the species names", p)
        if self.particle_ids.shape != (self.n_particles,):
            raise DataError("particle ids must be one per particle", p)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (
            f"Trajectory({self.path!r}, format={self.format!r}, n_frames={self.n_frames}, "
            f"n_particles={self.n_particles}, dimensions={self.dimensions}, species={self.species})"
        )

    @property
    def unwrap_method(self) -> str:
        """``"images"``, ``"file"`` or ``"minimum-image"`` (module docstring)."""
        if self.has_images:
            return "images"
        if self.position_kind == "unwrapped":
            return "file"
        return "minimum-image"

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "Trajectory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Frame]:
        """Yield checked frames in order (a fresh pass over the file)."""
        from adapters.readers import DATA_EXCEPTIONS, reader_failure

        count = 0
        state: dict = {}
        self.frame_interval_steps = None
        self.frame_interval_time = None
        frames = self._frames()
        try:
            while True:
                # hostile values (NaN payloads, 1e308, ...) must give a DataError from the
                # checks below, not RuntimeWarnings on stderr
                with np.errstate(all="ignore"):
                    try:
                        frame = next(frames)
                    except StopIteration:
                        break
                    except DATA_EXCEPTIONS as exc:  # a reader that let a low-level error slip
                        raise reader_failure(exc, self.path, f"frame {count}: ") from None
                    if frame.index != count:
                        raise DataError(f"frame {count}: reader yielded frame {frame.index} out of order", self.path)
                    self.check_frame(frame)
                    self._check_interval(frame, state)
                count += 1
                yield frame
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        if count != self.n_frames:
            raise DataError(
                f"the file holds {count} complete frames, but {self.n_frames} were announced "
                "(truncated or inconsistent file?)",
                self.path,
            )

    def unwrapped(self) -> Iterator[tuple[Frame, np.ndarray]]:
        """Yield ``(frame, unwrapped positions)`` pairs in order."""
        unwrap = Unwrapper(self.unwrap_method, self.path)
        for frame in self:
            yield frame, unwrap(frame)

    def check_frame(self, frame: Frame) -> None:
        """Check one frame against the trajectory; raise :class:`DataError`."""
        p, k = self.path, frame.index
        n, d = self.n_particles, self.dimensions
        pos = frame.positions
        if not isinstance(frame.box, Box):
            raise TypeError("Frame.box must be a Box")
        if frame.box.dimensions != d:
            raise DataError(f"frame {k}: box is {frame.box.dimensions}-D in a {d}-D trajectory", p)
        if pos.shape != (n, d):
            raise DataError(f"frame {k}: positions have shape {pos.shape}, expected ({n}, {d})", p)
        if not np.isfinite(pos).all():
            i = int(np.argwhere(~np.isfinite(pos))[0, 0])
            raise DataError(f"frame {k}: position of particle {i} is not finite", p)
        far = np.abs(pos) > MAX_BOX_LENGTHS * float(np.max(frame.box.L))
        if far.any():  # whatever the kind: beyond any physical run, and p_hop would overflow
            i, a = (int(x) for x in np.argwhere(far)[0])
            raise DataError(
                f"frame {k}: particle {i} is absurdly far from the box ({'xyz'[a]} = {pos[i, a]:g}, more than "
                f"{MAX_BOX_LENGTHS:g} box lengths); damaged file or wrong units?",
                p,
            )
        if frame.image is not None:
            if frame.image.shape != (n, d):
                raise DataError(f"frame {k}: image flags have shape {frame.image.shape}, expected ({n}, {d})", p)
            if not np.issubdtype(np.asarray(frame.image).dtype, np.integer):
                raise DataError(f"frame {k}: image flags must be integers, got {frame.image.dtype}", p)
        elif self.has_images:
            raise DataError(f"frame {k}: image flags missing (present in other frames)", p)
        if frame.position_kind == "wrapped":
            L, lo = frame.box.L, frame.box.lo
            rel = (pos - lo) / L  # in [0, 1) when inside the box
            bad = (rel < -1.0) | (rel >= 2.0)
            if bad.any():
                i, a = (int(x) for x in np.argwhere(bad)[0])
                raise DataError(
                    f"frame {k}: particle {i} is more than one box length outside the box "
                    f"({'xyz'[a]} = {pos[i, a]:g}, box [{lo[a]:g}, {lo[a] + L[a]:g}))",
                    p,
                )

    def _check_interval(self, frame: Frame, state: dict) -> None:
        """Frames must be equally spaced: p_hop windows are counted in frames.

        Steps (integers) must advance by exactly the same amount. Times are
        checked only when there are no steps, with a tolerance for values
        printed with few digits; the recorded time interval is the mean one.
        """
        p, k = self.path, frame.index
        step, time = frame.step, frame.time
        if k == 0:
            state.update(step0=step, time0=time, prev_step=step, prev_time=time)
            return
        prev_step, prev_time = state["prev_step"], state["prev_time"]
        if step is not None and prev_step is not None:
            ds = int(step) - int(prev_step)
            if self.frame_interval_steps is None:
                if ds <= 0:
                    raise DataError(
                        f"frame {k}: step {step} does not increase (previous {prev_step}); "
                        "duplicate or reordered frames?",
                        p,
                    )
                self.frame_interval_steps = ds
            elif ds != self.frame_interval_steps:
                raise DataError(
                    f"frame {k}: frames are not equally spaced (step {prev_step} -> {step}, "
                    f"expected +{self.frame_interval_steps}); p_hop needs a constant frame interval",
                    p,
                )
        if time is not None and prev_time is not None and state.get("time0") is not None:
            dt = float(time) - float(prev_time)
            mean_dt = (float(time) - float(state["time0"])) / k
            if "dt0" not in state:
                if not dt > 0:
                    raise DataError(f"frame {k}: time {time:g} does not increase (previous {prev_time:g})", p)
                state["dt0"] = dt
            elif step is None:
                # two values printed with 6 significant digits: 1e-5 relative each
                tol = 1e-3 * state["dt0"] + 2e-5 * max(abs(float(time)), 1.0)
                if abs(dt - state["dt0"]) > tol:
                    raise DataError(
                        f"frame {k}: frames are not equally spaced in time ({prev_time:g} -> {time:g}, "
                        f"expected +{state['dt0']:g}); p_hop needs a constant frame interval",
                        p,
                    )
            self.frame_interval_time = mean_dt
        state["prev_step"], state["prev_time"] = step, time


# ---------------------------------------------------------------------- unwrap
class Unwrapper:
    """Turn stored positions into unwrapped positions, one frame at a time.

    Parameters
    ----------
    method : {"images", "file", "minimum-image"}
        See the module docstring.
    path : str, optional
        For messages.

    Attributes
    ----------
    max_step_fraction : float
        Largest |displacement component| / box length seen between two
        consecutive frames (minimum-image method only; 0 otherwise). Values
        near 0.5 mean the minimum-image assumption is in danger.
    """

    def __init__(self, method: str, path: str | None = None):
        if method not in UNWRAP_METHODS:
            raise ValueError(f"unwrap method must be one of {UNWRAP_METHODS}")
        self.method = method
        self.path = path
        self.max_step_fraction = 0.0
        self._prev_pos: np.ndarray | None = None
        self._prev_unwrapped: np.ndarray | None = None

    def __call__(self, frame: Frame) -> np.ndarray:
        pos = np.asarray(frame.positions, dtype=np.float64)
        if self.method == "images":
            if frame.image is None:
                raise DataError(f"frame {frame.index}: image flags missing", self.path)
            return pos + frame.image * frame.box.L
        if self.method == "file":
            return pos.copy()
        if self._prev_pos is None:
            out = pos.copy()
        else:
            step = frame.box.minimum_image(pos - self._prev_pos)
            frac = float(np.max(np.abs(step) / frame.box.L)) if step.size else 0.0
            self.max_step_fraction = max(self.max_step_fraction, frac)
            out = self._prev_unwrapped + step
        self._prev_pos = pos
        self._prev_unwrapped = out
        return out


def unwrap_positions(frames: Iterable[Frame], method: str, path: str | None = None) -> np.ndarray:
    """Unwrapped positions of a sequence of frames, shape (T, N, dim).

    A convenience for small trajectories and tests; streaming code uses
    :class:`Unwrapper` directly.
    """
    u = Unwrapper(method, path)
    return np.stack([u(f) for f in frames])


def open_trajectory(path, fmt: str | None = None, **options) -> Trajectory:
    """Open a trajectory file; see :func:`adapters.readers.open_trajectory`."""
    from adapters.readers import open_trajectory as _open

    return _open(path, fmt, **options)

