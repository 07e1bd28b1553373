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

Labels (:class:`HopLabeller`), at sampled frames only:

* soft, R = 1: ``p_hop(i, t) > p_c``                 (default p_c = 0.2)
* hard, R = 0: ``p_hop(i, s) < p_hard`` for every frame ``s`` in
  ``[t - P, t]``                                      (default p_hard = p_c / 4,
  P = ``persistence`` = W frames)
* otherwise the particle is not sampled at that frame.

Sampled frames are ``t = W/2 + P + k * every`` (k = 0, 1, ...) up to the last
frame with a full window, so that every sampled frame can produce both labels.
The default ``every = W + 1`` makes the p_hop windows ``[t - W/2, t + W/2]`` of
consecutive samples disjoint, so one hop is not counted at two sampled
frames. A trajectory needs at least ``W + P + 1`` frames.

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
@dataclass(frozen=True)
class DynamicsConfig:
    """Window, thresholds and sampling of the rearrangement labels.

    Parameters
    ----------
    window : int
        t_R in frames, W (even, >= 2). Default 10.
    p_c : float
        Soft threshold on p_hop (length^2). Default 0.2.
    p_hard : float, optional
        Hard threshold; default ``p_c / 4``.
    persistence : int, optional
        Frames P before a sampled frame during which p_hop must stay below
        ``p_hard`` for a hard label; default ``window``.
    every : int, optional
        Spacing of sampled frames; default ``window + 1``.
    """

    window: int = 10
    p_c: float = 0.2
    p_hard: float | None = None
    persistence: int | None = None
    every: int | None = None

    def __post_init__(self) -> None:
        w = self.window
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 2 or w % 2:
            raise UsageError(f"dynamics window must be an even integer >= 2 (frames), got {w!r}")
        if not _positive(self.p_c):
            raise UsageError(f"dynamics p_c must be a positive number, got {self.p_c!r}")
        if self.p_hard is None:
            object.__setattr__(self, "p_hard", float(self.p_c) / 4)
        if not _positive(self.p_hard) or self.p_hard > self.p_c:
            raise UsageError(f"dynamics p_hard must be positive and <= p_c ({self.p_c}), got {self.p_hard!r}")
        if self.persistence is None:
            object.__setattr__(self, "persistence", int(w))
        if not _count(self.persistence, 0):
            raise UsageError(f"dynamics persistence must be an integer >= 0 (frames), got {self.persistence!r}")
        if self.every is None:
            object.__setattr__(self, "every", int(w) + 1)
        if not _count(self.every, 1):
            raise UsageError(f"--every must be an integer >= 1 (frames), got {self.every!r}")
        object.__setattr__(self, "window", int(w))
        object.__setattr__(self, "p_c", float(self.p_c))
        object.__setattr__(self, "p_hard", float(self.p_hard))
        object.__setattr__(self, "persistence", int(self.persistence))
        object.__setattr__(self, "every", int(self.every))

    @property
    def half(self) -> int:
        return self.window // 2

    @property
    def first_frame(self) -> int:
        """First sampled frame, ``W/2 + P``."""
        return self.half + self.persistence

    @property
    def min_frames(self) -> int:
        """Fewest frames that give one sampled frame, ``W + P + 1``."""
        return self.window + self.persistence + 1

    def sampled_frames(self, n_frames: int) -> range:
        """Sampled frame indices of a trajectory of ``n_frames`` frames."""
        return range(self.first_frame, n_frames - self.half, self.every)

    def is_sampled(self, t: int) -> bool:
        return t >= self.first_frame and (t - self.first_frame) % self.every == 0

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | None = None) -> "DynamicsConfig":
        if not isinstance(d, dict):
            raise UsageError("the 'dynamics' section must be a JSON object", source)
        known = {"window", "p_c", "p_hard", "persistence", "every"}
        extra = sorted(set(d) - known)
        if extra:
            raise UsageError(
                f"unknown key(s) in 'dynamics': {', '.join(extra)} (known: {', '.join(sorted(known))})", source
            )
        try:
            return cls(**d)
        except UsageError as exc:
            raise UsageError(exc.message, source) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def conventions(self) -> dict[str, Any]:
        """Everything the labels depend on, for ``Dataset.conventions``."""
        return {
            "p_hop": P_HOP_DEFINITION,
            "window_frames": self.window,
            "half_window_frames": self.half,
            "p_c": self.p_c,
            "p_hard": self.p_hard,
            "persistence_frames": self.persistence,
            "every_frames": self.every,
            "first_sampled_frame": self.first_frame,
            "soft": "p_hop(t) > p_c",
            "hard": "p_hop(s) < p_hard for every frame s in [t - persistence, t]",
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
    """Labels of one sampled frame.

    Attributes
    ----------
    frame : int
        Frame index in the trajectory.
    particles : ndarray (n,), int64
        Indices of the labelled particles, increasing.
    label : ndarray (n,), int8
        1 soft, 0 hard.
    p_hop : ndarray (n,), float32
        p_hop of those particles at this frame.
    """

    frame: int
    particles: np.ndarray
    label: np.ndarray
    p_hop: np.ndarray

    @property
    def n_soft(self) -> int:
        return int(self.label.sum())

    @property
    def n_hard(self) -> int:
        return int(self.label.size - self.label.sum())


class HopLabeller:
    """Streaming soft / hard labels: push unwrapped frames, collect labelled frames.

    Parameters
    ----------
    n_particles : int
    config : DynamicsConfig
    chunk : int, optional
        Centres evaluated per block (default ``max(W, 8)``); only memory and
        speed depend on it, never the result.

    Examples
    --------
    >>> lab = HopLabeller(n, DynamicsConfig())
    >>> out = []
    >>> for r in unwrapped_frames:
    ...     out += lab.push(r)
    >>> out += lab.finish()
    """

    def __init__(self, n_particles: int, config: DynamicsConfig, chunk: int | None = None):
        self.config = config
        self.n_particles = int(n_particles)
        self.chunk = int(chunk) if chunk else max(config.window, 8)
        self._buf: list[np.ndarray] = []
        self._buf_start = 0  # frame index of self._buf[0]
        self._next_centre = config.half  # first frame whose p_hop is still to be computed
        self._n_pushed = 0
        # last frame at which p_hop >= p_hard, per particle (-1: never)
        self._last_above = np.full(self.n_particles, -1, dtype=np.int64)
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
        """Evaluate the frames left in the buffer; call once after the last push."""
        if len(self._buf) >= self.config.window + 1 and self._next_centre <= self._n_pushed - 1 - self.config.half:
            return self._evaluate()
        return []

    def _evaluate(self) -> list[FrameLabels]:
        cfg = self.config
        h = cfg.half
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
                out.append(self._labels(t, pt))
            self._next_centre = t + 1
        # keep the last W frames: the next centre needs W/2 frames before it
        drop = len(self._buf) - cfg.window
        if drop > 0:
            del self._buf[:drop]
            self._buf_start += drop
        return out

    def _labels(self, t: int, pt: np.ndarray) -> FrameLabels:
        cfg = self.config
        soft = pt > cfg.p_c
        hard = self._last_above < t - cfg.persistence
        idx = np.flatnonzero(soft | hard)
        return FrameLabels(
            frame=t,
            particles=idx.astype(np.int64),
            label=soft[idx].astype(np.int8),
            p_hop=pt[idx].astype(np.float32),
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
        raise DataError(
            f"fewer frames ({n_frames}) than the p_hop window and hard-label persistence need "
            f"({config.min_frames} = window {config.window} + persistence {config.persistence} + 1)",
            path,
        )
