"""Rearrangements: the hop indicator p_hop and soft / hard labels.

p_hop (METHOD section 5), for particle ``i`` at frame ``t``::

    p_hop(i, t) = sqrt( <(r_i - <r_i>_B)^2>_A  *  <(r_i - <r_i>_A)^2>_B )

on unwrapped coordinates, with ``(.)^2`` the squared norm of the vector and
``<.>_A``, ``<.>_B`` plain averages over the stored frames of the two half
windows

    A = [t - W/2, t]      B = [t, t + W/2]        (frames, both ends included)

``W`` (``window``, an even number of frame intervals) is t_R counted in
frames: each half window holds ``W/2 + 1`` frames and frame ``t`` belongs to
both. In time, t_R = W * (frame interval). p_hop is defined for
``W/2 <= t <= T - 1 - W/2`` and has units of length^2 (sigma^2 in reduced
units). Equivalent form used by the code (one pass of cumulative sums over
frames, no loop over particles)::

    <(r - m_B)^2>_A = var_A + |m_A - m_B|^2,   <(r - m_A)^2>_B = var_B + |m_A - m_B|^2

For a particle that sits at ``0`` and jumps by a distance ``a`` between frames
``t0 - 1`` and ``t0`` (no other motion), with ``n = W/2 + 1``, ``f_A`` and
``f_B`` the fractions of frames of A and B after the jump::

    p_hop = a^2 sqrt( (f_A (1 - f_A) + (f_A - f_B)^2) (f_B (1 - f_B) + (f_A - f_B)^2) )

which peaks at ``a^2 (1 - 1/n)^(3/2)`` at ``t = t0 - 1`` and ``t = t0``.

Labels (:class:`HopLabeller`), at sampled frames, for **every** particle (METHOD section 5,
"Two populations"):

* natural label R = 1 when ``p_hop(i, t) > p_c``, else 0      (default p_c = 0.2)
* training role: soft (1) when R = 1; hard (0) when ``p_hop(i, s) < p_hard`` for every
  frame ``s`` in ``[t - P, t + P]`` (``hard_side="both"``, the default) or
  ``[t - P, t]`` (``hard_side="before"``); otherwise neither (-1), in the natural
  population only.                          (defaults: p_hard = p_c / 4, P = W)

Windows in time: ``window_time`` and ``persistence_time`` (trajectory time units) become
frames with the trajectory's frame interval (:meth:`DynamicsConfig.resolve`):
``W = 2 * round(window_time / (2 dt))``, ``P = round(persistence_time / dt)``. Default when
nothing is given: t_R = 10 time units when the frames carry times (about 10 tau for a
Kob-Andersen liquid in LJ units, METHOD section 5 and Schoenholz et al., Nat. Phys. 12,
469, 2016), else 10 frames; P = W.

Sampled frames are ``t = W/2 + P + k * every`` (k = 0, 1, ...) up to the last frame whose
windows fit (``t <= T - 1 - W/2 - P`` with ``hard_side="both"``), so that every sampled
frame can produce both roles. The default ``every = W + 1`` makes the p_hop windows
``[t - W/2, t + W/2]`` of consecutive samples disjoint, so one hop is not counted at two
sampled frames. A trajectory needs at least ``W + 2P + 1`` frames (``W + P + 1`` with
``hard_side="before"``).

Memory: :class:`HopLabeller` keeps a sliding buffer of ``chunk + W`` unwrapped
frames (``chunk = max(W, 8)``; about ``2 * (chunk + W) * N * dim * 8`` bytes at
peak while a block is evaluated) and O(N) label state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from diag.errors import DataError, UsageError

P_HOP_DEFINITION = (
    "p_hop(i,t) = sqrt(<(r_i - <r_i>_B)^2>_A * <(r_i - <r_i>_A)^2>_B), "
    "A = frames [t - W/2, t], B = frames [t, t + W/2] (inclusive), unwrapped coordinates"
)


# ------------------------------------------------------------------- settings
#: default t_R in trajectory time units when frames carry times (LJ tau for Kob-Andersen)
DEFAULT_WINDOW_TIME = 10.0
#: default t_R in frames when frames carry no times
DEFAULT_WINDOW_FRAMES = 10
HARD_SIDES = ("both", "before")


@dataclass(frozen=True)
class DynamicsConfig:
    """Window, thresholds and sampling of the rearrangement labels.

    Windows are given in frames (``window``, ``persistence``) or in trajectory time
    (``window_time``, ``persistence_time``), not both. A config with times, or with no
    window at all, is *unresolved*: :meth:`resolve` turns it into frames with a
    trajectory's frame interval. Every frame-based property needs a resolved config.

    Parameters
    ----------
    window : int, optional
        t_R in frames, W (even, >= 2).
    window_time : float, optional
        t_R in the trajectory's time units (converted with the frame interval).
        Default when neither is given: 10 time units if the frames carry times, else 10
        frames.
    p_c : float
        Soft threshold on p_hop (length^2). Default 0.2.
    p_hard : float, optional
        Hard threshold; default ``p_c / 4``.
    persistence : int, optional
        P in frames: p_hop must stay below ``p_hard`` for the frames ``[t - P, t + P]``
        (or ``[t - P, t]``, see ``hard_side``) for a hard label. Default: W.
    persistence_time : float, optional
        P in time units.
    hard_side : {"both", "before"}
        Quiet before and after the frame (default) or only before it.
    every : int, optional
        Spacing of sampled frames; default ``W + 1``.
    natural_fraction : float
        Fraction of the centre particles of each sampled frame kept as the natural
        population (seeded by ``natural_seed``; default 1: all). Soft and hard particles
        are always kept for training.
    natural_seed : int
        Seed of that subsample.
    """

    window: int | None = None
    p_c: float = 0.2
    p_hard: float | None = None
    persistence: int | None = None
    every: int | None = None
    window_time: float | None = None
    persistence_time: float | None = None
    hard_side: str = "both"
    natural_fraction: float = 1.0
    natural_seed: int = 0
    #: frame interval (time) used to resolve times into frames; None when frame-based
    frame_interval_time: float | None = None

    def __post_init__(self) -> None:
        w = self.window
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 2 or w % 2):
            raise UsageError(f"dynamics window must be an even integer >= 2 (frames), got {w!r}")
        if w is not None and self.window_time is not None:
            raise UsageError("give the dynamics window in frames (window) or in time (window_time), not both")
        if self.persistence is not None and self.persistence_time is not None:
            raise UsageError("give the persistence in frames (persistence) or in time (persistence_time), not both")
        for key in ("window_time", "persistence_time"):
            v = getattr(self, key)
            if v is not None and not (_positive(v) or (key == "persistence_time" and v == 0)):
                raise UsageError(f"dynamics {key} must be a positive number (time units), got {v!r}")
        if not _positive(self.p_c):
            raise UsageError(f"dynamics p_c must be a positive number, got {self.p_c!r}")
        if self.p_hard is None:
            object.__setattr__(self, "p_hard", float(self.p_c) / 4)
        if not _positive(self.p_hard) or self.p_hard > self.p_c:
            raise UsageError(f"dynamics p_hard must be positive and <= p_c ({self.p_c}), got {self.p_hard!r}")
        if self.persistence is not None and not _count(self.persistence, 0):
            raise UsageError(f"dynamics persistence must be an integer >= 0 (frames), got {self.persistence!r}")
        if self.every is not None and not _count(self.every, 1):
            raise UsageError(f"--every must be an integer >= 1 (frames), got {self.every!r}")
        if self.hard_side not in HARD_SIDES:
            raise UsageError(f"dynamics hard_side must be one of {', '.join(HARD_SIDES)}, got {self.hard_side!r}")
        f = self.natural_fraction
        if not (_positive(f) and f <= 1):
            raise UsageError(f"dynamics natural_fraction must be in (0, 1], got {f!r}")
        if not _count(self.natural_seed, 0):
            raise UsageError(f"dynamics natural_seed must be an integer >= 0, got {self.natural_seed!r}")
        object.__setattr__(self, "p_c", float(self.p_c))
        object.__setattr__(self, "p_hard", float(self.p_hard))
        object.__setattr__(self, "natural_fraction", float(f))
        if self.window is not None:
            object.__setattr__(self, "window", int(w))
            if self.persistence is None and self.persistence_time is None:
                object.__setattr__(self, "persistence", int(w))
            if self.every is None:
                object.__setattr__(self, "every", int(w) + 1)
        if self.persistence is not None:
            object.__setattr__(self, "persistence", int(self.persistence))
        if self.every is not None:
            object.__setattr__(self, "every", int(self.every))

    # ---------------------------------------------------------------- resolution
    @property
    def resolved(self) -> bool:
        """True when every window is in frames."""
        return self.window is not None and self.persistence is not None and self.every is not None

    def resolve(self, frame_interval_time: float | None, path: str | None = None) -> "DynamicsConfig":
        """The frame-based config for a trajectory with this frame interval (time per frame).

        Raises
        ------
        DataError
            A window is given in time but the frames carry no times, or it is shorter
            than two frame intervals.
        """
        dt = frame_interval_time
        if dt is not None and not (math.isfinite(dt) and dt > 0):
            dt = None
        if self.resolved and self.window_time is None and self.persistence_time is None:
            out = DynamicsConfig(**self.to_dict())
            object.__setattr__(out, "frame_interval_time", dt)
            return out
        d = asdict(self)
        wt = self.window_time
        if self.window is None and wt is None:
            if dt is not None:
                wt = DEFAULT_WINDOW_TIME
            else:
                d["window"] = DEFAULT_WINDOW_FRAMES
        if wt is not None:
            if dt is None:
                raise DataError(
                    f"the p_hop window is given in time ({wt:g}) but the frames carry no times; "
                    "give it in frames (--window) instead", path,
                )
            W = 2 * int(round(wt / (2 * dt)))
            if W < 2:
                raise DataError(
                    f"the p_hop window {wt:g} is shorter than two frame intervals ({dt:g} each)", path
                )
            d["window"] = W
            d["window_time"] = float(wt)
        if self.persistence_time is not None:
            if dt is None:
                raise DataError(
                    f"the hard-label persistence is given in time ({self.persistence_time:g}) but the frames "
                    "carry no times; give it in frames (--persistence) instead", path,
                )
            d["persistence"] = int(round(self.persistence_time / dt))
        d["frame_interval_time"] = dt
        out = DynamicsConfig(**{k: v for k, v in d.items() if k not in ("window_time", "persistence_time")})
        # record the time forms beside the frames
        object.__setattr__(out, "window_time", d.get("window_time"))
        object.__setattr__(out, "persistence_time", self.persistence_time)
        return out

    def _need_resolved(self) -> None:
        if not self.resolved:
            raise UsageError("the dynamics windows are not resolved into frames yet (DynamicsConfig.resolve)")

    @property
    def half(self) -> int:
        self._need_resolved()
        return self.window // 2

    @property
    def persistence_after(self) -> int:
        """Frames after a sampled frame that must stay quiet for a hard label (0 with ``before``)."""
        self._need_resolved()
        return self.persistence if self.hard_side == "both" else 0

    @property
    def first_frame(self) -> int:
        """First sampled frame, ``W/2 + P``."""
        return self.half + self.persistence

    @property
    def min_frames(self) -> int:
        """Fewest frames that give one sampled frame, ``W + P + P_after + 1``."""
        return self.window + self.persistence + self.persistence_after + 1

    def last_frame(self, n_frames: int) -> int:
        """Last frame that can be sampled in a trajectory of ``n_frames`` frames."""
        return n_frames - 1 - self.half - self.persistence_after

    def sampled_frames(self, n_frames: int) -> range:
        """Sampled frame indices of a trajectory of ``n_frames`` frames."""
        return range(self.first_frame, self.last_frame(n_frames) + 1, self.every)

    def is_sampled(self, t: int) -> bool:
        return t >= self.first_frame and (t - self.first_frame) % self.every == 0

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | None = None) -> "DynamicsConfig":
        if not isinstance(d, dict):
            raise UsageError("the 'dynamics' section must be a JSON object", source)
        known = {"window", "window_time", "p_c", "p_hard", "persistence", "persistence_time", "hard_side",
                 "every", "natural_fraction", "natural_seed"}
        extra = sorted(set(d) - known)
        if extra:
            raise UsageError(
                f"unknown key(s) in 'dynamics': {', '.join(extra)} (known: {', '.join(sorted(known))})", source
            )
        try:
            return cls(**d)
        except UsageError as exc:
            raise UsageError(exc.message, source) from None
        except TypeError as exc:
            raise UsageError(f"invalid 'dynamics' section ({exc})", source) from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("frame_interval_time")
        return d

    def replace(self, **changes) -> "DynamicsConfig":
        """A copy with some settings changed (a frame setting replaces its time form and vice versa)."""
        d = self.to_dict()
        pairs = {"window": "window_time", "window_time": "window", "persistence": "persistence_time",
                 "persistence_time": "persistence"}
        for k, v in changes.items():
            if v is None:
                continue
            d[k] = v
            if k in pairs:
                d[pairs[k]] = None
            if k == "window":
                # frame defaults that followed the old window follow the new one
                if self.persistence_time is None and changes.get("persistence") is None:
                    d["persistence"] = None if self.persistence == self.window else d["persistence"]
                if changes.get("every") is None and self.every == (self.window or 0) + 1:
                    d["every"] = None
        return DynamicsConfig(**d)

    def conventions(self) -> dict[str, Any]:
        """Everything the labels depend on, for ``Dataset.conventions`` (a resolved config)."""
        self._need_resolved()
        dt = self.frame_interval_time
        hard = (
            "p_hop(s) < p_hard for every frame s in [t - persistence, t + persistence]"
            if self.hard_side == "both" else "p_hop(s) < p_hard for every frame s in [t - persistence, t]"
        )
        return {
            "p_hop": P_HOP_DEFINITION,
            "window_frames": self.window,
            "window_time": None if dt is None else self.window * dt,
            "window_time_requested": self.window_time,
            "half_window_frames": self.half,
            "p_c": self.p_c,
            "p_hard": self.p_hard,
            "persistence_frames": self.persistence,
            "persistence_time": None if dt is None else self.persistence * dt,
            "hard_side": self.hard_side,
            "every_frames": self.every,
            "frame_interval_time": dt,
            "first_sampled_frame": self.first_frame,
            "natural_label": "R = 1 if p_hop(t) > p_c else 0, every centre particle at the sampled frames",
            "natural_fraction": self.natural_fraction,
            "natural_seed": self.natural_seed,
            "soft": "p_hop(t) > p_c",
            "hard": hard,
            "neither": "natural population only, not in the training set",
            "p_hop_units": "length^2 of the trajectory (sigma^2 in reduced units)",
        }


def _positive(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _count(x, lo: int) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= lo


# ---------------------------------------------------------------------- p_hop
def p_hop(positions: np.ndarray, window: int) -> np.ndarray:
    """The hop indicator of every particle at every frame (the reference).

    Parameters
    ----------
    positions : array_like, shape (T, N, dim)
        Unwrapped positions at equally spaced frames.
    window : int
        W, even: half windows of ``W/2 + 1`` frames (module docstring).

    Returns
    -------
    ndarray, shape (T, N), float64
        NaN at the first and last ``W/2`` frames, where the window does not fit.
    """
    if window < 2 or window % 2:
        raise ValueError("window must be an even integer >= 2")
    X = np.asarray(positions, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError("positions must have shape (frames, particles, dim)")
    T, N, _ = X.shape
    h = window // 2
    out = np.full((T, N), np.nan)
    if T < window + 1:
        return out
    # positions relative to a middle frame keep the sums small (no cancellation)
    Y = X - X[T // 2]
    c1 = np.zeros((T + 1,) + Y.shape[1:])
    np.cumsum(Y, axis=0, out=c1[1:])
    c2 = np.zeros((T + 1, N))
    np.cumsum(np.einsum("tnd,tnd->tn", Y, Y), axis=0, out=c2[1:])
    t = np.arange(h, T - h)
    n = h + 1
    mA = (c1[t + 1] - c1[t - h]) / n
    mB = (c1[t + h + 1] - c1[t]) / n
    qA = (c2[t + 1] - c2[t - h]) / n
    qB = (c2[t + h + 1] - c2[t]) / n
    varA = np.maximum(qA - np.einsum("tnd,tnd->tn", mA, mA), 0.0)
    varB = np.maximum(qB - np.einsum("tnd,tnd->tn", mB, mB), 0.0)
    dm = mA - mB
    D = np.einsum("tnd,tnd->tn", dm, dm)
    out[h : T - h] = np.sqrt((varA + D) * (varB + D))
    return out


# --------------------------------------------------------------------- labels
@dataclass
class FrameLabels:
    """Labels of every particle at one sampled frame.

    Attributes
    ----------
    frame : int
        Frame index in the trajectory.
    particles : ndarray (n,), int64
        Indices of the particles, increasing (every particle of the trajectory).
    label : ndarray (n,), int8
        Natural label R: 1 when p_hop > p_c, else 0.
    role : ndarray (n,), int8
        Training role: 1 soft, 0 hard, -1 neither.
    p_hop : ndarray (n,), float32
        p_hop of those particles at this frame.
    """

    frame: int
    particles: np.ndarray
    label: np.ndarray
    p_hop: np.ndarray
    role: np.ndarray | None = None
    natural: np.ndarray | None = None  # set by the dataset builder: 1 for the natural population

    def __post_init__(self) -> None:
        if self.role is None:
            self.role = self.label.astype(np.int8)

    @property
    def n_soft(self) -> int:
        return int((self.role == 1).sum())

    @property
    def n_hard(self) -> int:
        return int((self.role == 0).sum())

    def select(self, keep: np.ndarray) -> "FrameLabels":
        """The labels of a subset of the particles (boolean mask or positions)."""
        return FrameLabels(self.frame, self.particles[keep], self.label[keep], self.p_hop[keep], self.role[keep],
                           None if self.natural is None else self.natural[keep])


class HopLabeller:
    """Streaming labels: push unwrapped frames, collect labelled frames.

    A sampled frame ``t`` is returned once p_hop is known up to ``t + P_after`` (the
    hard rule looks after the frame too), in frame order.

    Parameters
    ----------
    n_particles : int
    config : DynamicsConfig
        Resolved into frames (an unresolved config is resolved without frame times).
    chunk : int, optional
        Centres evaluated per block (default ``max(W, 8)``); only memory and
        speed depend on it, never the result.

    Examples
    --------
    >>> lab = HopLabeller(n, DynamicsConfig(window=10))
    >>> out = []
    >>> for r in unwrapped_frames:
    ...     out += lab.push(r)
    >>> out += lab.finish()
    """

    def __init__(self, n_particles: int, config: DynamicsConfig, chunk: int | None = None):
        if not config.resolved:
            config = config.resolve(None)
        self.config = config
        self.n_particles = int(n_particles)
        self.chunk = int(chunk) if chunk else max(config.window, 8)
        self._buf: list[np.ndarray] = []
        self._buf_start = 0  # frame index of self._buf[0]
        self._next_centre = config.half  # first frame whose p_hop is still to be computed
        self._n_pushed = 0
        # last frame at which p_hop >= p_hard, per particle (-1: never)
        self._last_above = np.full(self.n_particles, -1, dtype=np.int64)
        # sampled frames waiting for the quiet window after them: frame -> p_hop
        self._waiting: dict[int, np.ndarray] = {}
        self.max_p_hop = 0.0

    @property
    def n_frames(self) -> int:
        return self._n_pushed

    def push(self, positions: np.ndarray) -> list[FrameLabels]:
        """Add the next frame's unwrapped positions, shape (N, dim)."""
        r = np.asarray(positions, dtype=np.float64)
        if r.ndim != 2 or r.shape[0] != self.n_particles:
            raise ValueError(f"expected positions of shape ({self.n_particles}, dim), got {r.shape}")
        self._buf.append(r)
        self._n_pushed += 1
        if len(self._buf) >= self.chunk + self.config.window:
            return self._evaluate()
        return []

    def finish(self) -> list[FrameLabels]:
        """Evaluate the frames left in the buffer; call once after the last push.

        Sampled frames whose quiet window after them does not fit are dropped.
        """
        out: list[FrameLabels] = []
        if len(self._buf) >= self.config.window + 1 and self._next_centre <= self._n_pushed - 1 - self.config.half:
            out = self._evaluate()
        self._waiting.clear()
        return out

    def _evaluate(self) -> list[FrameLabels]:
        cfg = self.config
        h = cfg.half
        after = cfg.persistence_after
        block = np.stack(self._buf)
        p = p_hop(block, cfg.window)
        out: list[FrameLabels] = []
        first = self._buf_start
        for j in range(h, len(self._buf) - h):
            t = first + j
            if t < self._next_centre:
                continue
            pt = p[j]
            self.max_p_hop = max(self.max_p_hop, float(np.max(pt)) if pt.size else 0.0)
            self._last_above[pt >= cfg.p_hard] = t
            if cfg.is_sampled(t):
                self._waiting[t] = pt.astype(np.float64, copy=True)
            done = t - after
            if done in self._waiting:
                out.append(self._labels(done, self._waiting.pop(done)))
            self._next_centre = t + 1
        # keep the last W frames: the next centre needs W/2 frames before it
        drop = len(self._buf) - cfg.window
        if drop > 0:
            del self._buf[:drop]
            self._buf_start += drop
        return out

    def _labels(self, t: int, pt: np.ndarray) -> FrameLabels:
        """Labels of frame ``t``, once p_hop is known up to ``t + P_after``."""
        cfg = self.config
        soft = pt > cfg.p_c
        # _last_above is monotone: no p_hop >= p_hard in [t - P, t + P_after] <=> last one before t - P
        hard = (self._last_above < t - cfg.persistence) & ~soft
        role = np.full(pt.shape, -1, dtype=np.int8)
        role[soft] = 1
        role[hard] = 0
        return FrameLabels(
            frame=t,
            particles=np.arange(pt.size, dtype=np.int64),
            label=soft.astype(np.int8),
            p_hop=pt.astype(np.float32),
            role=role,
        )


def hop_labels(positions: np.ndarray, config: DynamicsConfig, chunk: int | None = None) -> list[FrameLabels]:
    """Labels of a whole in-memory trajectory, shape (T, N, dim) (via :class:`HopLabeller`)."""
    X = np.asarray(positions, dtype=np.float64)
    lab = HopLabeller(X.shape[1], config, chunk=chunk)
    out: list[FrameLabels] = []
    for r in X:
        out += lab.push(r)
    out += lab.finish()
    return out


def check_enough_frames(n_frames: int, config: DynamicsConfig, path: str | None = None) -> None:
    """Raise :class:`DataError` when a trajectory is too short for one sampled frame."""
    if n_frames < config.min_frames:
        after = f" + {config.persistence_after} after" if config.persistence_after else ""
        raise DataError(
            f"fewer frames ({n_frames}) than the p_hop window and hard-label persistence need "
            f"({config.min_frames} = window {config.window} + persistence {config.persistence}{after} + 1)",
            path,
        )
