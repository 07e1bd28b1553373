"""Species-resolved structure functions (radial and angular), 2D and 3D, periodic boxes.

The functions of the infinite periodic system, for any box (orthorhombic or triclinic, of any
size). For a particle ``i``, its neighbours ``j, k`` (every periodic image of every particle,
``i``'s own images included, with ``0 < r_ij < cutoff``) and species ``X, Y``::

    radial   G_X(i; r)   = sum_{j in X, j != i} exp(-(r_ij - r)^2 / (2 L^2))
    angular  Psi_XY(i; xi, lambda, zeta)
               = sum_{{j, k}} exp(-(r_ij^2 + r_ik^2 + r_jk^2) / xi^2) * (1 + lambda cos theta_jik)^zeta

The angular sum runs over **unordered** pairs ``{j, k}`` of distinct neighbours of ``i`` (both
``!= i``) with one member in ``X`` and the other in ``Y``, each pair once (so for ``X == Y`` the
ordered double sum divided by two; for ``X != Y`` each ``(j in X, k in Y)`` once).
``r_jk = |d_ik - d_ij|`` is built from the two bond vectors ``d`` seen from ``i``. When the cutoff
is below half the smallest perpendicular width of the box, the only image within it is the
minimum image; otherwise several images of a particle (and images of ``i``) are neighbours. The
brute-force definition is :mod:`adapters.structure_reference`.

The neighbour cutoffs are derived from the grid and the truncation ``tolerance`` (see
:attr:`StructureConfig.cutoff` and ``docs/structure-functions.md``); no term that the cutoff drops
exceeds ``tolerance`` times the largest value one term of that function can take.

Usage (freud style: compute, then read properties)::

    sf = StructureFunctions(StructureConfig.kob_andersen())
    X = sf.compute(box, points, types).features      # (n_query, 166) float32

The sums run in compiled numba kernels (``adapters._structure_numba``, optional extra
``glass-diag[fast]``) when numba is installed, else in numpy (``kernel=``; same results).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diag.errors import DataError, UsageError

__all__ = ["StructureConfig", "StructureFunctions", "WIDTH_CONVENTION", "ANGULAR_CONVENTION"]

CONFIG_FORMAT = "glass-diag/structure-config"
CONFIG_VERSION = 1

WIDTH_CONVENTION = "exp(-(r_ij-r)^2/(2L^2))"
ANGULAR_CONVENTION = "exp(-(r_ij^2+r_ik^2+r_jk^2)/xi^2)*(1+lambda*cos(theta_jik))^zeta"
PAIR_COUNTING = (
    "unordered pairs {j,k} of distinct neighbours of i (j != k, both != i), each pair once: "
    "X == Y counts each unordered pair once (half the ordered double sum), "
    "X != Y counts each (j in X, k in Y) once (j, k may be two periodic images of one particle); "
    "r_jk = |d_ik - d_ij| from the two bond vectors d seen from i"
)
NEIGHBOUR_CONDITION = (
    "0 < r_ij < cutoff of the family (strict), j over every periodic image of every particle, "
    "including i's own periodic images (only i itself, at r = 0, is excluded)"
)
BOUNDARY = (
    "periodic box, orthorhombic or triclinic (freud/HOOMD Lx, Ly, Lz, xy, xz, yz), any size: the "
    "functions of the infinite periodic system, every periodic image within the cutoff counts "
    "(when the cutoff is below half the smallest perpendicular box width this is the minimum image)"
)
RADIAL_CUTOFF_FORMULA = "max(radial_r) + L*sqrt(2*ln(1/tolerance))"
ANGULAR_CUTOFF_FORMULA = "max(xi)*sqrt(ln(1/tolerance)/1.5)"
TOLERANCE_MEANING = (
    "no term dropped by the neighbour cutoff exceeds tolerance times the largest value one term of "
    "that function can take (1 for radial, (1+|lambda|)^zeta for angular); angular bound uses "
    "r_ij^2+r_ik^2+r_jk^2 >= 1.5*max(r_ij,r_ik)^2"
)
#: Grid points farther than this (in units of one term's maximum) from a bond are skipped by the
#: uniform-grid radial fast path; far below float32 resolution, independent of ``tolerance``.
_RADIAL_WINDOW_EPS = 1e-12


# ----------------------------------------------------------------------------- default grid
def _ka_radial() -> tuple[float, ...]:
    return tuple(round(0.1 * k, 10) for k in range(1, 51))


def _ka_angular() -> tuple[tuple[float, float, float], ...]:
    # 1/xi^2 = k / (2 * 1.2^2), k = 2..6: xi = 1.200, 0.980, 0.849, 0.759, 0.693
    xis = [1.2 * math.sqrt(2.0 / k) for k in range(2, 7)]
    xis[0] = 1.2
    out: list[tuple[float, float, float]] = []
    for n, xi in enumerate(xis):
        if n == 0:
            out += [(xi, -1.0, 1.0), (xi, 1.0, 1.0), (xi, -1.0, 2.0), (xi, 1.0, 2.0)]
            out += [(xi, 1.0, 4.0), (xi, 1.0, 16.0)]
        else:
            out += [(xi, 1.0, z) for z in (1.0, 2.0, 4.0, 16.0)]
    return tuple(out)


# ----------------------------------------------------------------------------- config
def _fmt_unique(values: list[float], min_decimals: int = 2) -> list[str]:
    """Format floats with the fewest decimals (>= min_decimals) that keep distinct values distinct."""
    distinct = sorted(set(values))
    for dec in range(min_decimals, 13):
        labels = {v: f"{v:.{dec}f}" for v in distinct}
        if len(set(labels.values())) == len(distinct):
            return [labels[v] for v in values]
    return [repr(v) for v in values]


def _fmt_lambda(lam: float) -> str:
    return f"{int(lam):+d}" if float(lam).is_integer() else f"{lam:+g}"


def _fmt_zeta(z: float) -> str:
    return f"{int(z):d}" if float(z).is_integer() else f"{z:g}"


def _finite_float(x: Any, what: str) -> float:
    if isinstance(x, bool):
        raise UsageError(f"{what} must be a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise UsageError(f"{what} must be finite, got {x!r}")
    return v


@dataclass
class StructureConfig:
    """The structure-function grid and its truncation; everything the numbers depend on.

    Attributes
    ----------
    species : tuple of str
        Names of type ids ``0 .. n-1``.
    radial_r : tuple of float
        Grid of ``r`` for the radial functions (one block per neighbour species).
    radial_width : float
        ``L`` in ``exp(-(r_ij - r)^2 / (2 L^2))`` (``L`` is the Gaussian's standard deviation).
    angular : tuple of (xi, lambda, zeta)
        Angular triplets, computed for every pair in ``angular_pairs``. ``xi > 0``,
        ``-1 <= lambda <= 1``, ``zeta >= 1``.
    angular_pairs : tuple of (str, str) or None
        Species pairs ``(X, Y)`` of the angular functions; ``None`` means all unordered pairs in
        species order (``AA, AB, BB``). ``(Y, X)`` is the same function as ``(X, Y)`` and is stored
        in species order.
    tolerance : float
        Truncation tolerance, ``0 < tolerance < 1``, from which the neighbour cutoffs are derived
        (default ``1e-4``: typical angular-feature truncation error ~0.5%, see
        ``docs/structure-functions.md``).
    """

    species: tuple[str, ...] = ("A", "B")
    radial_r: tuple[float, ...] = field(default_factory=_ka_radial)
    radial_width: float = 0.1
    angular: tuple[tuple[float, float, float], ...] = field(default_factory=_ka_angular)
    angular_pairs: tuple[tuple[str, str], ...] | None = None
    tolerance: float = 1e-4

    def __post_init__(self):
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        sp = self.species
        if isinstance(sp, str) or not isinstance(sp, (tuple, list)):
            raise UsageError("species must be a list of names, e.g. ['A', 'B']")
        sp = tuple(sp)
        if not sp:
            raise UsageError("species must name at least one species")
        for s in sp:
            if not isinstance(s, str) or not s or any(c in s for c in "(),=_ "):
                raise UsageError(f"species name {s!r} must be a non-empty string without ( ) , = _ or spaces")
        if len(set(sp)) != len(sp):
            raise UsageError(f"species names must be distinct, got {list(sp)}")
        self.species = sp

        rr = self.radial_r
        if isinstance(rr, (str, bytes)) or not hasattr(rr, "__iter__"):
            raise UsageError("radial_r must be a list of numbers")
        rr = tuple(_finite_float(r, "radial_r entry") for r in rr)
        if any(r < 0 for r in rr):
            raise UsageError("radial_r entries must be >= 0")
        if len(set(rr)) != len(rr):
            raise UsageError("radial_r entries must be distinct")
        self.radial_r = rr
        self.radial_width = _finite_float(self.radial_width, "radial_width")
        if self.radial_width <= 0:
            raise UsageError(f"radial_width must be > 0, got {self.radial_width}")

        ang = self.angular
        if isinstance(ang, (str, bytes)) or not hasattr(ang, "__iter__"):
            raise UsageError("angular must be a list of [xi, lambda, zeta] triplets")
        trip = []
        for t in ang:
            if isinstance(t, (str, bytes)) or not hasattr(t, "__len__") or len(t) != 3:
                raise UsageError(f"angular entry {t!r} must be a [xi, lambda, zeta] triplet")
            xi = _finite_float(t[0], "angular xi")
            lam = _finite_float(t[1], "angular lambda")
            zeta = _finite_float(t[2], "angular zeta")
            if xi <= 0:
                raise UsageError(f"angular xi must be > 0, got {xi}")
            if not -1.0 <= lam <= 1.0:
                raise UsageError(f"angular lambda must be in [-1, 1], got {lam}")
            if zeta < 1.0:
                raise UsageError(f"angular zeta must be >= 1, got {zeta}")
            trip.append((xi, lam, zeta))
        if len(set(trip)) != len(trip):
            raise UsageError("angular triplets must be distinct")
        self.angular = tuple(trip)

        pairs = self.angular_pairs
        if pairs is not None:
            if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
                raise UsageError("angular_pairs must be a list of [X, Y] species pairs or null")
            norm = []
            for p in pairs:
                if isinstance(p, (str, bytes)) or not hasattr(p, "__len__") or len(p) != 2:
                    raise UsageError(f"angular_pairs entry {p!r} must be a pair of species names")
                a, b = p
                if a not in sp or b not in sp:
                    raise UsageError(f"angular_pairs entry {list(p)} names a species not in {list(sp)}")
                ia, ib = sorted((sp.index(a), sp.index(b)))
                norm.append((sp[ia], sp[ib]))
            if len(set(norm)) != len(norm):
                raise UsageError("angular_pairs contains the same unordered pair twice")
            self.angular_pairs = tuple(norm)

        tol = _finite_float(self.tolerance, "tolerance")
        if not 0.0 < tol < 1.0:
            raise UsageError(f"tolerance must be in (0, 1), got {tol}")
        self.tolerance = tol
        if self.n_features == 0:
            raise UsageError("the configuration defines no feature (empty radial_r and angular)")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def kob_andersen(cls) -> "StructureConfig":
        """Default grid for the binary Kob-Andersen mixture (166 features).

        Radial: ``r = 0.1 .. 5.0`` step 0.1 for neighbour species A and B (100), ``L = 0.1``.
        Angular: 22 triplets for each of AA, AB, BB (66), see ``docs/structure-functions.md``.
        """
        return cls()

    @classmethod
    def from_dict(cls, d: dict) -> "StructureConfig":
        """Build from a JSON-style dict (the :meth:`to_dict` format); raises ``UsageError``."""
        if not isinstance(d, dict):
            raise UsageError("structure config must be a JSON object")
        d = dict(d)
        fmt = d.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise UsageError(f"structure config format is {fmt!r}, expected {CONFIG_FORMAT!r}")
        ver = d.pop("version", CONFIG_VERSION)
        if ver != CONFIG_VERSION:
            raise UsageError(f"structure config version {ver!r} is not supported (expected {CONFIG_VERSION})")
        known = {"species", "radial_r", "radial_width", "angular", "angular_pairs", "tolerance"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"unknown structure config key(s): {', '.join(map(str, unknown))}")
        kw: dict[str, Any] = {}
        if "species" in d:
            kw["species"] = d["species"]
        if "radial_r" in d:
            kw["radial_r"] = _radial_grid_from_json(d["radial_r"])
        for key in ("radial_width", "angular", "angular_pairs", "tolerance"):
            if key in d:
                kw[key] = d[key]
        return cls(**kw)

    def to_dict(self) -> dict:
        """JSON-serialisable dict that :meth:`from_dict` turns back into an equal config."""
        return {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "species": list(self.species),
            "radial_r": [float(r) for r in self.radial_r],
            "radial_width": float(self.radial_width),
            "angular": [[float(a), float(b), float(c)] for a, b, c in self.angular],
            "angular_pairs": None if self.angular_pairs is None else [list(p) for p in self.angular_pairs],
            "tolerance": float(self.tolerance),
        }

    # ------------------------------------------------------------------ derived quantities
    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The species pairs of the angular functions (``angular_pairs`` resolved)."""
        if self.angular_pairs is not None:
            return tuple(self.angular_pairs)
        sp = self.species
        return tuple((sp[a], sp[b]) for a in range(len(sp)) for b in range(a, len(sp)))

    @property
    def radial_cutoff(self) -> float:
        """``max(radial_r) + L sqrt(2 ln(1/tolerance))``; 0 without radial functions."""
        if not self.radial_r:
            return 0.0
        return max(self.radial_r) + self.radial_width * math.sqrt(2.0 * math.log(1.0 / self.tolerance))

    @property
    def angular_cutoff(self) -> float:
        """``max(xi) sqrt(ln(1/tolerance) / 1.5)``; 0 without angular functions."""
        if not self.angular or not self.pairs:
            return 0.0
        return max(t[0] for t in self.angular) * math.sqrt(math.log(1.0 / self.tolerance) / 1.5)

    @property
    def cutoff(self) -> float:
        """Derived neighbour cutoff: the larger of :attr:`radial_cutoff` and :attr:`angular_cutoff`."""
        return max(self.radial_cutoff, self.angular_cutoff)

    @property
    def n_radial(self) -> int:
        return len(self.species) * len(self.radial_r)

    @property
    def n_angular(self) -> int:
        return len(self.pairs) * len(self.angular)

    @property
    def n_features(self) -> int:
        return self.n_radial + self.n_angular

    def feature_names(self) -> list[str]:
        """``G_A(r=1.00)`` ..., then ``Psi_AB(xi=1.20,l=+1,z=4)`` ... (radial first)."""
        rl = _fmt_unique(list(self.radial_r))
        xl = _fmt_unique([t[0] for t in self.angular])
        names = [f"G_{s}(r={lab})" for s in self.species for lab in rl]
        for x, y in self.pairs:
            for (xi, lam, z), xlab in zip(self.angular, xl):
                names.append(f"Psi_{x}{y}(xi={xlab},l={_fmt_lambda(lam)},z={_fmt_zeta(z)})")
        return names

    def feature_families(self) -> list[str]:
        return ["radial"] * self.n_radial + ["angular"] * self.n_angular

    def feature_params(self) -> list[dict]:
        rc_r, rc_a = self.radial_cutoff, self.angular_cutoff
        out: list[dict] = []
        for s in self.species:
            for r in self.radial_r:
                out.append({"r": float(r), "species": s, "width": float(self.radial_width),
                            "width_convention": WIDTH_CONVENTION, "cutoff": rc_r})
        for x, y in self.pairs:
            for xi, lam, z in self.angular:
                out.append({"xi": float(xi), "lambda": float(lam), "zeta": float(z), "species": [x, y],
                            "convention": ANGULAR_CONVENTION, "pair_counting": "unordered",
                            "cutoff": rc_a})
        return out

    def conventions(self) -> dict:
        """Everything the numbers depend on (store it with the features)."""
        return {
            "structure_functions": "glass-diag species-resolved radial + angular, v1",
            "config": self.to_dict(),
            "species_order": "type id t is species[t]",
            "radial_definition": "G_X(i;r) = sum_{j in X, j != i, r_ij < cutoff} " + WIDTH_CONVENTION,
            "width_convention": WIDTH_CONVENTION,
            "radial_width": float(self.radial_width),
            "angular_definition": "Psi_XY(i;xi,lambda,zeta) = sum over pairs " + ANGULAR_CONVENTION,
            "pair_counting": PAIR_COUNTING,
            "tolerance": float(self.tolerance),
            "tolerance_meaning": TOLERANCE_MEANING,
            "radial_cutoff": self.radial_cutoff,
            "radial_cutoff_formula": RADIAL_CUTOFF_FORMULA,
            "angular_cutoff": self.angular_cutoff,
            "angular_cutoff_formula": ANGULAR_CUTOFF_FORMULA,
            "cutoff": self.cutoff,
            "neighbour_condition": NEIGHBOUR_CONDITION,
            "boundary": BOUNDARY,
            "feature_order": "G_X for X in species (each over radial_r), then Psi_XY for (X,Y) in pairs (each over angular)",
            "radial_window_eps": _RADIAL_WINDOW_EPS,
            "radial_window_meaning": "uniform radial grids skip grid points where one term is below this",
            "dtype": "float32 (computed in float64)",
            "units": "lengths in the units of the positions",
        }


def _radial_grid_from_json(v: Any) -> Any:
    """``radial_r`` as a list, or ``{"start", "stop", "step"}`` (stop included)."""
    if isinstance(v, dict):
        if set(v) != {"start", "stop", "step"}:
            raise UsageError("radial_r as an object needs exactly the keys start, stop, step")
        a = _finite_float(v["start"], "radial_r start")
        b = _finite_float(v["stop"], "radial_r stop")
        h = _finite_float(v["step"], "radial_r step")
        if h <= 0 or b < a:
            raise UsageError("radial_r needs step > 0 and stop >= start")
        n = int(math.floor((b - a) / h + 1e-9)) + 1
        if n > 100000:
            raise UsageError(f"radial_r would have {n} points")
        return [round(a + k * h, 12) for k in range(n)]
    return v


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class _BoxGeom:
    """A periodic box: ``dim``, lengths ``(Lx, Ly[, Lz])`` and tilt factors ``(xy, xz, yz)``
    (freud / HOOMD convention; ``xz = yz = 0`` in 2D).

    The lattice vectors are the columns of :attr:`matrix`: ``a1 = (Lx, 0, 0)``,
    ``a2 = (xy Ly, Ly, 0)``, ``a3 = (xz Lz, yz Lz, Lz)``.
    """

    lengths: np.ndarray
    tilts: tuple[float, float, float]

    @property
    def dim(self) -> int:
        return int(self.lengths.size)

    @property
    def orthorhombic(self) -> bool:
        return self.tilts == (0.0, 0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        """(dim, dim) lattice vectors as columns."""
        xy, xz, yz = self.tilts
        if self.dim == 2:
            Lx, Ly = self.lengths
            return np.array([[Lx, xy * Ly], [0.0, Ly]])
        Lx, Ly, Lz = self.lengths
        return np.array([[Lx, xy * Ly, xz * Lz], [0.0, Ly, yz * Lz], [0.0, 0.0, Lz]])

    @property
    def widths(self) -> np.ndarray:
        """Perpendicular widths (distances between opposite faces), shape (dim,); the lengths
        for an orthorhombic box."""
        if self.orthorhombic:
            return self.lengths.copy()
        return 1.0 / np.linalg.norm(np.linalg.inv(self.matrix), axis=1)


_BOX_FORMS = "a freud.box.Box, (Lx, Ly), (Lx, Ly, Lz) or (Lx, Ly, Lz, xy, xz, yz)"


def _as_box(box) -> _BoxGeom:
    """The periodic box from a freud Box (or any object with ``freud_params()`` or freud's
    attributes ``Lx .. yz, is2D``), or 2, 3 or 6 numbers (``Lz = 0``: 2D); freud is not imported."""
    if hasattr(box, "freud_params") and callable(box.freud_params):
        vals = box.freud_params()
    elif all(hasattr(box, a) for a in ("Lx", "Ly", "Lz", "xy", "xz", "yz", "is2D")):
        periodic = getattr(box, "periodic", None)
        n_ax = 2 if box.is2D else 3
        if periodic is not None and not all(bool(p) for p in list(periodic)[:n_ax]):
            raise UsageError("only fully periodic boxes are supported")
        vals = (box.Lx, box.Ly, 0.0 if box.is2D else box.Lz, box.xy,
                0.0 if box.is2D else box.xz, 0.0 if box.is2D else box.yz)
    else:
        vals = box
    try:
        arr = np.asarray(vals, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UsageError(f"box must be {_BOX_FORMS}") from None
    if arr.size not in (2, 3, 6):
        raise UsageError(f"box must be {_BOX_FORMS}, got {arr.size} numbers")
    if arr.size == 2:
        arr = np.concatenate([arr, [0.0]])
    lengths = arr[:3]
    tilts = arr[3:] if arr.size == 6 else np.zeros(3)
    if not np.all(np.isfinite(lengths)):
        raise DataError(f"box lengths must be finite, got {lengths.tolist()}")
    if not np.all(np.isfinite(tilts)):
        raise DataError(f"box tilt factors must be finite, got {tilts.tolist()}")
    if lengths[2] == 0:
        if tilts[1] != 0 or tilts[2] != 0:
            raise UsageError(f"a 2D box (Lz = 0) has no xz or yz tilt, got xz={tilts[1]:g}, yz={tilts[2]:g}")
        lengths = lengths[:2]
    if np.any(lengths <= 0):
        raise DataError(f"box lengths must be positive, got {lengths.tolist()}")
    # +0.0 turns -0.0 into 0.0 (so that an orthorhombic box compares equal to (0, 0, 0))
    return _BoxGeom(lengths=lengths.copy(), tilts=tuple(float(t) + 0.0 for t in tilts))


def _freud_box(lengths: np.ndarray):
    """Orthorhombic periodic freud box of these lengths (imports freud: the freud engine only)."""
    import freud

    if lengths.size == 2:
        return freud.box.Box(float(lengths[0]), float(lengths[1]), 0.0, is2D=True)
    return freud.box.Box(float(lengths[0]), float(lengths[1]), float(lengths[2]))


def _periodic_images(geom: _BoxGeom, pts: np.ndarray, reach: float):
    """The particles and every periodic image of them within ``reach`` of the box (the images that
    can lie within ``reach`` of a particle in the box), as an open set of points in a large
    orthorhombic box in which no two of them are periodic neighbours within ``reach``.

    Parameters
    ----------
    geom : the periodic box
    pts : (N, 3) positions (z = 0 in 2D), any (wrapped here)
    reach : the neighbour cutoff

    Returns
    -------
    (P, orig, L_big): (M, 3) image positions, the first N the particles themselves (same order);
    (M,) particle of each image; (dim,) lengths of the orthorhombic box that holds them.
    """
    dim = geom.dim
    A = geom.matrix
    inv = np.linalg.inv(A)
    f = pts[:, :dim] @ inv.T
    f -= np.floor(f + 0.5)  # fractional coordinates in [-1/2, 1/2): the box, freud's centred convention
    # a neighbour within reach of a particle of the box is within reach / w_a of the box along each
    # reciprocal direction a (w_a: perpendicular width); pad the box by that in fractional units
    pad = reach * (1.0 + 1e-9) / geom.widths + 1e-9
    lim = 0.5 + pad
    kmax = [int(math.ceil(p)) + 1 for p in pad]
    axes = [sorted(range(-k, k + 1), key=abs) for k in kmax]  # the zero shift first
    keep_ax = [{n: np.abs(f[:, a] + n) <= lim[a] for n in axes[a]} for a in range(dim)]
    idx_parts, shift_parts = [], []
    for n in itertools.product(*axes):
        m = keep_ax[0][n[0]]
        for a in range(1, dim):
            m = m & keep_ax[a][n[a]]
        ix = np.flatnonzero(m)
        if ix.size:
            idx_parts.append(ix)
            shift_parts.append(np.broadcast_to(np.asarray(n, dtype=np.float64), (ix.size, dim)))
    orig = np.concatenate(idx_parts)
    G = f[orig] + np.concatenate(shift_parts)
    P = np.zeros((orig.size, 3))
    P[:, :dim] = G @ A.T
    lo, hi = P[:, :dim].min(axis=0), P[:, :dim].max(axis=0)
    P[:, :dim] -= 0.5 * (lo + hi)
    # along every axis, any wrapped copy of a point is farther than reach from every other point
    L_big = np.maximum(hi - lo + 1.25 * reach, 3.0 * reach) + 1e-6
    return P, orig.astype(np.int64), L_big


# ----------------------------------------------------------------------------- plans
class _RadialPlan:
    """Precomputed grid data for the radial functions."""

    def __init__(self, cfg: StructureConfig):
        self.r = np.asarray(cfg.radial_r, dtype=np.float64)
        self.L = float(cfg.radial_width)
        self.rc = cfg.radial_cutoff
        self.n = self.r.size
        self.uniform = False
        if self.n >= 2:
            order = np.argsort(self.r)
            rs = self.r[order]
            h = (rs[-1] - rs[0]) / (self.n - 1)
            if h > 0 and np.max(np.abs(rs - (rs[0] + h * np.arange(self.n)))) <= 1e-9 * h:
                # window half-width W: grid points beyond W steps from the nearest one are < eps
                W = int(math.ceil(self.L * math.sqrt(2.0 * math.log(1.0 / _RADIAL_WINDOW_EPS)) / h - 0.5))
                W = max(W, 1)
                # (q = exp(u h / L^2) with |u| <= h/2 must not overflow: coarse grids go direct)
                if 2 * W + 1 < self.n and W * h * h / (2.0 * self.L**2) < 300.0:
                    self.uniform = True
                    self.order = order  # sorted position -> original column
                    self.r0, self.h, self.W = float(rs[0]), float(h), W
                    w = np.arange(-W, W + 1, dtype=np.float64)
                    self.cw = np.exp(-((w * h) ** 2) / (2.0 * self.L**2))
                    self.m_lo = int(math.floor(-self.r0 / h)) - 1
                    self.m_hi = int(math.ceil((self.rc - self.r0) / h)) + 1
                    self.n_ext = (self.m_hi - self.m_lo + 1) + 2 * W


class _AngularPlan:
    """Distinct xi (Gaussian factors) and (lambda, zeta) (angular factors) of the triplets.

    Gaussian factors: with a base b such that every 1/xi^2 = k b for a small integer k, one
    exponential exp(-b S) per pair gives all of them by repeated multiplication; otherwise one
    exponential per distinct xi. Angular factors: integer zeta by repeated multiplication.
    """

    def __init__(self, cfg: StructureConfig):
        trip = cfg.angular
        self.rc = cfg.angular_cutoff
        self.n = len(trip)
        xis = sorted({t[0] for t in trip}, reverse=True)
        inv = np.array([1.0 / x**2 for x in xis])
        self.n_e = len(xis)
        self.scale = float(inv.min()) if inv.size else 1.0  # D, a are scaled by 2 * scale
        self.e_powers = None
        if inv.size:
            for g in (1, 2, 3, 4, 6, 8, 12):
                bb = inv.min() / g
                k = inv / bb
                kr = np.rint(k)
                if np.all(np.abs(k - kr) <= 1e-12 * kr) and kr.max() <= 64:
                    self.scale = float(bb)
                    self.e_powers = [int(v) for v in kr]
                    break
        self.e_ratio = inv / self.scale  # exponent multipliers when e_powers is None
        self.e_chain = _power_chain(self.e_powers) if self.e_powers else []
        qs = sorted({(t[1], t[2]) for t in trip})
        self.n_q = len(qs)
        self.q_groups = []  # (lambda, [(slot, zeta)], chain or None)
        by_lam: dict[float, list[tuple[int, float]]] = {}
        for n, (lam, z) in enumerate(qs):
            by_lam.setdefault(lam, []).append((n, z))
        for lam, items in by_lam.items():
            ints = all(float(z).is_integer() for _, z in items)
            chain = _power_chain([int(z) for _, z in items]) if ints else None
            self.q_groups.append((lam, items, chain))
        xi_index = {x: n for n, x in enumerate(xis)}
        q_index = {q: n for n, q in enumerate(qs)}
        self.e_of = np.array([xi_index[t[0]] for t in trip], dtype=np.intp)
        self.q_of = np.array([q_index[(t[1], t[2])] for t in trip], dtype=np.intp)


def _power_chain(needed: list[int]) -> list[tuple[int, int, int]]:
    """Steps (k, a, b) meaning p^k = p^a * p^b, in order, that produce every exponent in needed."""
    have = {1}
    steps: list[tuple[int, int, int]] = []
    for k in sorted(set(needed)):
        if k in have:
            continue
        pair = next(((x, k - x) for x in sorted(have, reverse=True) if (k - x) in have), None)
        if pair is not None:
            steps.append((k, pair[0], pair[1]))
            have.add(k)
            continue
        p = 1
        while p * 2 <= k:
            if p * 2 not in have:
                steps.append((p * 2, p, p))
                have.add(p * 2)
            p *= 2
        cur, rem = p, k - p
        while rem:
            bit = 1 << (rem.bit_length() - 1)
            if cur + bit not in have:
                steps.append((cur + bit, cur, bit))
                have.add(cur + bit)
            cur += bit
            rem -= bit
    return steps


class _Workspace(threading.local):
    """Per-thread reusable float64 buffers (avoids page-faulting fresh large arrays per block)."""

    def __init__(self):
        self.buf: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        n = math.prod(shape)
        a = self.buf.get(name)
        if a is None or a.size < n:
            a = np.empty(max(n, 1))
            self.buf[name] = a
        return a[:n].reshape(shape)


# ----------------------------------------------------------------------------- compute
_ENGINES = ("cells", "freud")
_KERNELS = ("auto", "numba", "numpy")
_NB_MODULE: list = []  # [(module or None, reason it is None)], filled on first use


def _numba_module():
    """``(adapters._structure_numba, "")`` if numba loads, else ``(None, reason)`` (tried once)."""
    if not _NB_MODULE:
        try:
            from adapters import _structure_numba as nb
            reason = ""
        except ImportError as e:  # numba (or llvmlite) not installed, or not for this numpy
            nb, reason = None, f"numba is not installed or does not load ({e})"
        except Exception as e:  # e.g. no writable numba cache directory: see the docs
            nb, reason = None, f"numba failed to load the kernels ({type(e).__name__}: {e})"
        _NB_MODULE.append((nb, reason))
    return _NB_MODULE[0]


class StructureFunctions:
    """Compute species-resolved radial and angular structure functions.

    Parameters
    ----------
    config : StructureConfig, optional
        Defaults to :meth:`StructureConfig.kob_andersen`.
    chunk_size : int
        Most query particles processed at once (a tile of neighbouring cells); bounds the memory
        together with the fixed work-block sizes (neighbour screening <= 262k candidate pairs per
        pass, radial <= 32k bonds per pass, angular <= 40k pairs per block).
    n_threads : int, optional (keyword)
        Worker threads over chunks (numpy releases the GIL in its kernels). Default: the
        ``GLASS_DIAG_THREADS`` environment variable, else 1.
    neighbours : {"cells", "freud"}, optional (keyword)
        Neighbour search. ``"cells"`` (default): numpy cell-list tiles screened in float32, then
        every kept bond recomputed in float64. ``"freud"``: ``freud.locality.AABBQuery`` per
        species, bonds recomputed in float64. Both give the same bonds (``0 < r_ij < cutoff`` by
        the float64 minimum image); ``"cells"`` is several times faster at these cutoffs.
    kernel : {"auto", "numba", "numpy"}, optional (keyword)
        Implementation of the sums. ``"numba"``: compiled kernels (``adapters._structure_numba``;
        the optional extra ``glass-diag[fast]``); with ``neighbours="cells"`` the neighbour
        search over the same cell list is compiled too. ``"numpy"``: the pure numpy path.
        ``"auto"`` (default): numba when it can be imported, else numpy. Both give the same
        features (equal to the brute-force reference within 1e-5 relative), so the choice is not
        part of :meth:`StructureConfig.conventions`; the kernel used is :attr:`kernel_`. The first
        numba call of a session compiles the kernels or loads them from numba's on-disk cache.
    """

    def __init__(self, config: StructureConfig | None = None, chunk_size: int = 256, *,
                 n_threads: int | None = None, neighbours: str = "cells", kernel: str = "auto"):
        if config is None:
            config = StructureConfig.kob_andersen()
        if not isinstance(config, StructureConfig):
            raise UsageError("config must be a StructureConfig")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise UsageError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if n_threads is None:
            env = os.environ.get("GLASS_DIAG_THREADS", "1")
            try:
                n_threads = int(env)
            except ValueError:
                raise UsageError(f"GLASS_DIAG_THREADS must be an integer, got {env!r}") from None
        if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
            raise UsageError(f"n_threads must be a positive integer, got {n_threads!r}")
        if neighbours not in _ENGINES:
            raise UsageError(f"neighbours must be one of {', '.join(_ENGINES)}, got {neighbours!r}")
        self.config = config
        self.chunk_size = int(chunk_size)
        self.n_threads = int(n_threads)
        if kernel not in _KERNELS:
            raise UsageError(f"kernel must be one of {', '.join(_KERNELS)}, got {kernel!r}")
        self._nb = None
        if kernel != "numpy":
            self._nb, reason = _numba_module()
            if self._nb is None and kernel == "numba":
                raise UsageError(f"kernel='numba' is unavailable: {reason}; pip install 'glass-diag[fast]'")
        self.neighbours = neighbours
        self.kernel = kernel
        self._features: np.ndarray | None = None
        self._query_indices: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def kernel_(self) -> str:
        """The kernel in use, ``"numba"`` or ``"numpy"`` (``kernel="auto"`` resolved)."""
        return "numpy" if self._nb is None else "numba"

    @property
    def features(self) -> np.ndarray:
        """``(n_query, n_features)`` float32, columns in :meth:`StructureConfig.feature_names` order."""
        if self._features is None:
            raise UsageError("no features yet: call compute() first")
        return self._features

    @property
    def query_indices(self) -> np.ndarray:
        """Indices (into ``points``) of the particles described by the rows of :attr:`features`."""
        if self._query_indices is None:
            raise UsageError("no features yet: call compute() first")
        return self._query_indices

    # ------------------------------------------------------------------ compute
    def compute(self, box, points, types, query_indices=None) -> "StructureFunctions":
        """Compute the features of ``query_indices`` (default: every particle, in order).

        Parameters
        ----------
        box : freud.box.Box, (Lx, Ly), (Lx, Ly, Lz) or (Lx, Ly, Lz, xy, xz, yz)
            Periodic box, orthorhombic or triclinic (freud / HOOMD tilt factors); ``Lz = 0`` or
            two lengths means 2D. An object with a ``freud_params()`` method returning the
            6-tuple is accepted too. Any size: when the cutoff exceeds half the box, every
            periodic image within the cutoff counts (particle ``i``'s own images included).
        points : (N, 3) array
            Positions (``z = 0`` in 2D; ``(N, 2)`` is accepted in 2D), in any periodic image
            (wrapped into the box here, freud's centred convention).
        types : (N,) int array
            Type ids in ``[0, len(config.species))``.
        query_indices : int array, optional
            Particles to describe; default all, in order.

        Returns
        -------
        self
        """
        cfg = self.config
        cfg._validate()
        geom = _as_box(box)
        dim = geom.dim
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3) or (pts.shape[1] == 2 and dim == 3):
            raise DataError(f"points must have shape (N, 3) (or (N, 2) in 2D), got {pts.shape}")
        if pts.shape[1] == 2:
            pts = np.column_stack([pts, np.zeros(len(pts))])
        n = pts.shape[0]
        if n == 0:
            raise DataError("no points")
        if not np.all(np.isfinite(pts)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(pts), axis=1))[0])
            raise DataError(f"non-finite position (particle {bad})")
        if dim == 2 and np.any(pts[:, 2] != 0):
            raise DataError("2D box but some points have z != 0")
        typ = np.asarray(types)
        if typ.shape != (n,):
            raise DataError(f"types must have shape ({n},), got {typ.shape}")
        if typ.dtype.kind not in "iu":
            if typ.dtype.kind == "f" and np.all(np.isfinite(typ)) and np.all(typ == np.rint(typ)):
                typ = typ.astype(np.int64)
            else:
                raise DataError(f"types must be integers, got dtype {typ.dtype}")
        typ = typ.astype(np.int64, copy=False)
        ns = len(cfg.species)
        if typ.min() < 0 or typ.max() >= ns:
            bad = typ[(typ < 0) | (typ >= ns)][0]
            raise DataError(f"type id {int(bad)} outside [0, {ns}) for species {list(cfg.species)}")
        if query_indices is None:
            q = np.arange(n, dtype=np.int64)
        else:
            q = np.asarray(query_indices)
            if q.ndim != 1 or (q.size and q.dtype.kind not in "iu"):
                raise UsageError("query_indices must be a 1D integer array")
            q = q.astype(np.int64, copy=False)
            if q.size and (q.min() < 0 or q.max() >= n):
                raise UsageError(f"query_indices must lie in [0, {n})")
        rc = cfg.cutoff
        lengths = geom.lengths
        if geom.orthorhombic and rc < 0.5 * float(lengths.min()):
            # the usual case: every particle has at most one image within the cutoff, the minimum
            # image; wrap into [-L/2, L/2)
            pts = pts.copy()
            pts[:, :dim] -= lengths * np.floor(pts[:, :dim] / lengths + 0.5)
            ctx = _Context(cfg, lengths, pts, typ, self.neighbours)
        else:
            # small or triclinic box: the particles and their periodic images within the cutoff of
            # the box, explicitly, in a large orthorhombic box where no wrap-around is near; the
            # queries are the particles themselves (the first n points)
            P, orig, L_big = _periodic_images(geom, pts, rc)
            ctx = _Context(cfg, L_big, P, typ[orig], self.neighbours, orig=orig,
                           density=n / abs(float(np.linalg.det(geom.matrix))))
        out = np.empty((q.size, cfg.n_features), dtype=np.float32)
        groups = ctx.groups(q, self.chunk_size)  # list of positions into q
        if self._nb is not None:
            _NumbaRun(self._nb, ctx).run(q, groups, out, self.n_threads)
            self._features = out
            self._query_indices = q
            return self

        def run(pos):
            return pos, ctx.chunk(q[pos])

        if self.n_threads > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=self.n_threads) as ex:
                for pos, res in ex.map(run, groups):
                    out[pos] = res
        else:
            for g in groups:
                pos, res = run(g)
                out[pos] = res
        self._features = out
        self._query_indices = q
        return self


class _Context:
    """One frame's data for chunked computation (shared read-only by worker threads).

    ``pts`` (N, 3) lie in the orthorhombic periodic box ``lengths`` (centred), ``rq`` below half of
    every length. With explicit periodic images (``_periodic_images``), ``orig`` maps each point to
    its particle (for messages) and ``density`` is the particles' number density (the points' own
    density in the large box is lower).
    """

    def __init__(self, cfg, lengths, pts, typ, engine, orig=None, density=None):
        self.cfg = cfg
        self.dim = dim = lengths.size
        self.L = lengths
        self.pts = pts
        self.typ = typ
        self.orig = orig
        self.density = float(len(pts) / np.prod(lengths)) if density is None else float(density)
        self.ns = len(cfg.species)
        self.rad = _RadialPlan(cfg) if cfg.n_radial else None
        self.ang = _AngularPlan(cfg) if cfg.n_angular else None
        self.rc_r = self.rad.rc if self.rad else 0.0
        self.rc_a = self.ang.rc if self.ang else 0.0
        self.rq = max(self.rc_r, self.rc_a)
        self.engine = engine
        self.sp_idx = [np.flatnonzero(typ == s) for s in range(self.ns)]
        self.pair_slots = []  # (X, Y, column offset)
        if self.ang:
            for n, (x, y) in enumerate(cfg.pairs):
                self.pair_slots.append((cfg.species.index(x), cfg.species.index(y),
                                        cfg.n_radial + n * self.ang.n))
        # Cell list. Along each axis, cells are at least rq/k wide with n_cells >= 2k+1, so every
        # neighbour of a particle lies within k cells, each candidate cell is visited once, and its
        # periodic image is fixed by the offset (no minimum-image arithmetic in the screening).
        # Axes where no k <= 8 works (box barely above 2 rq) fall back to one cell + minimum image.
        nc, kk, mi = [], [], []
        for a in range(dim):
            for k in range(1, 9):
                n_a = int(math.floor(lengths[a] * k / self.rq * (1.0 - 1e-12)))
                if n_a >= 2 * k + 1:
                    nc.append(n_a), kk.append(k), mi.append(False)
                    break
            else:
                nc.append(1), kk.append(0), mi.append(True)
        # no more cells than ~2 per particle: coarser cells keep width >= rq/k and n >= 2k+1
        while np.prod(nc, dtype=np.float64) > max(64.0, 2.0 * len(pts)):
            big = int(np.argmax([n_a / max(1, 2 * k + 1) for n_a, k in zip(nc, kk)]))
            if nc[big] <= 2 * kk[big] + 1:
                break
            nc[big] = max(2 * kk[big] + 1, nc[big] // 2)
        self.nc = np.array(nc, dtype=np.int64)
        self.minimg = np.array(mi, dtype=bool)
        self.width = lengths / self.nc
        frac = (pts[:, :dim] + 0.5 * lengths) / lengths
        cidx = np.clip(np.floor(frac * self.nc).astype(np.int64), 0, self.nc - 1)
        self.cell = np.ravel_multi_index(tuple(cidx.T), tuple(self.nc))
        self.cell_coord = cidx
        ncell = int(np.prod(self.nc))
        self.by_cell = []  # per species: (particle indices sorted by cell, start per cell)
        for s in range(self.ns):
            ix = self.sp_idx[s]
            o = ix[np.argsort(self.cell[ix], kind="stable")]
            st = np.searchsorted(self.cell[o], np.arange(ncell + 1))
            self.by_cell.append((o, st))
        offs = [np.arange(-k, k + 1) for k in kk]
        st_ = np.array(np.meshgrid(*offs, indexing="ij")).reshape(dim, -1).T
        gap = np.maximum(np.abs(st_) - 1, 0) * self.width
        self.stencil = st_[np.sum(gap * gap, axis=1) < self.rq * self.rq]
        if engine == "freud":
            import freud

            fbox = _freud_box(lengths)
            p32 = pts.astype(np.float32)
            self.aabb = [freud.locality.AABBQuery(fbox, p32[ix]) if ix.size else None for ix in self.sp_idx]

    def pid(self, i) -> int:
        """The particle index of point i (points beyond the first N are periodic images)."""
        return int(i) if self.orig is None else int(self.orig[int(i)])

    def coincident(self, i, j) -> DataError:
        return DataError(f"particles {self.pid(i)} and {self.pid(j)} are at the same position")

    # -------------------------------------------------------------- grouping
    def groups(self, q: np.ndarray, chunk: int) -> list[np.ndarray]:
        """Positions into q, grouped by cell (cells engine) and split to at most ``chunk``."""
        if q.size == 0:
            return []
        if self.engine == "freud":
            return [np.arange(s, min(q.size, s + chunk)) for s in range(0, q.size, chunk)]
        order = np.argsort(self.cell[q], kind="stable")
        cq = self.cell[q][order]
        brk = np.flatnonzero(cq[1:] != cq[:-1]) + 1
        out: list[np.ndarray] = []
        cur: list[np.ndarray] = []
        n_cur = 0
        for part in np.split(order, brk):  # consecutive cells packed into tiles of <= chunk
            for s in range(0, part.size, chunk):
                piece = part[s: s + chunk]
                if n_cur and n_cur + piece.size > chunk:
                    out.append(np.concatenate(cur))
                    cur, n_cur = [], 0
                cur.append(piece)
                n_cur += piece.size
        if cur:
            out.append(np.concatenate(cur))
        return out

    # -------------------------------------------------------------- neighbours
    _SCREEN_ENTRIES = 262_144  # query x candidate pairs screened per numpy pass

    def _candidates(self, cell_coord: np.ndarray, s: int):
        """Particles of species s in the stencil of a cell and the periodic shift of each."""
        o, st = self.by_cell[s]
        u = cell_coord[None, :] + self.stencil
        cw = u % self.nc
        shift = (u - cw) // self.nc * self.L  # image of the candidate cell seen from this cell
        cells = np.ravel_multi_index(tuple(cw.T), tuple(self.nc))
        a, b = st[cells], st[cells + 1]
        cnt = b - a
        tot = int(cnt.sum())
        if tot == 0:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim))
        first = np.repeat(a - (np.cumsum(cnt) - cnt), cnt)
        idx = o[first + np.arange(tot)]
        return idx, np.repeat(shift, cnt, axis=0)

    def _bonds(self, qidx: np.ndarray, s: int):
        """Bonds from the query particles qidx (all in one cell) to particles of species s.

        Returns (qi, vec, d2): position of the query in qidx (ascending), float64
        minimum-image vectors r_j - r_i as a (dim, n_bonds) array, and their squared lengths.
        Every bond with r < rq is there; the cells engine may also return the query itself
        (r = 0) and a few bonds just beyond rq (screening margin): callers keep 0 < r < rc.
        """
        ix = self.sp_idx[s]
        dim = self.dim
        rq2 = self.rq * self.rq
        empty = (np.empty(0, dtype=np.intp), np.empty((dim, 0)), np.empty(0))
        if ix.size == 0 or qidx.size == 0:
            return empty
        if self.engine == "freud":
            qp32 = self.pts[qidx].astype(np.float32)
            r_max = min(self.rq * (1.0 + 1e-4) + 1e-5, 0.5 * float(self.L.min()) * (1.0 - 1e-6))
            nl = self.aabb[s].query(qp32, {"r_max": r_max}).toNeighborList()
            qi = np.asarray(nl.query_point_indices, dtype=np.intp)
            pj = ix[np.asarray(nl.point_indices, dtype=np.intp)]
            vec = (self.pts[pj, :dim] - self.pts[qidx[qi], :dim]).T.copy()
            for a in range(dim):
                vec[a] -= self.L[a] * np.rint(vec[a] / self.L[a])
            d2 = np.einsum("ij,ij->j", vec, vec)
            keep = (d2 < rq2) & (pj != qidx[qi])
            qi, vec, d2, pj = qi[keep], vec[:, keep], d2[keep], pj[keep]
            if d2.size and d2.min() == 0.0:
                k = int(np.argmin(d2))
                raise self.coincident(qidx[qi[k]], pj[k])
            return qi, vec, d2
        cc = self.cell_coord[qidx[0]]
        cand, shift = self._candidates(cc, s)
        if cand.size == 0:
            return empty
        nC = cand.size
        # coordinates relative to the cell centre (small numbers), candidates in their image
        centre = (cc + 0.5) * self.width - 0.5 * self.L
        P64 = (self.pts[cand, :dim] + shift - centre).T.copy()  # (dim, nC)
        Q64 = (self.pts[qidx, :dim] - centre).T.copy()  # (dim, B)
        mi = self.minimg
        for a in np.flatnonzero(mi):  # axes with a single cell: minimum image around the centre
            P64[a] -= self.L[a] * np.rint(P64[a] / self.L[a])
        P = P64.astype(np.float32)
        Q = np.ascontiguousarray(Q64.T.astype(np.float32))
        pp = np.einsum("ij,ij->j", P, P)
        qq = np.einsum("ij,ij->i", Q, Q)
        # screen in float32 with |p - q|^2 = |p|^2 + |q|^2 - 2 p.q; the margin is far above its
        # rounding error, and every kept bond is recomputed exactly in float64 below
        lim = np.float32(rq2 + 1e-5 * (rq2 + float(pp.max()) + float(qq.max())) + 1e-6)
        if mi.any():
            lim = np.float32(max(float(lim), rq2 * (1 + 1e-4) + 1e-4 * float(np.sum(self.L[mi] ** 2))))
        step = max(1, self._SCREEN_ENTRIES // nC)
        hits = []
        for a0 in range(0, qidx.size, step):
            Qb = Q[a0: a0 + step]
            if mi.any():
                G = None
                for a in range(dim):
                    dx = np.subtract(P[a][None, :], Qb[:, a, None])
                    if mi[a]:
                        t = np.multiply(dx, np.float32(1.0 / self.L[a]))
                        np.rint(t, out=t)
                        t *= np.float32(self.L[a])
                        dx -= t
                    dx *= dx
                    G = dx if G is None else np.add(G, dx, out=G)
            else:
                G = np.matmul(Qb, P)
                G *= np.float32(-2.0)
                G += qq[a0: a0 + step, None]
                G += pp[None, :]
            f = np.flatnonzero(G < lim)
            if a0:
                f += a0 * nC
            hits.append(f)
        flat = np.concatenate(hits) if len(hits) > 1 else hits[0]
        # flat is sorted: row (query) boundaries by searchsorted instead of a division per bond
        bounds = np.searchsorted(flat, np.arange(1, qidx.size + 1) * nC)
        qi = np.repeat(np.arange(qidx.size), np.diff(bounds, prepend=0))
        cj = flat - qi * nC
        vec = np.empty((dim, flat.size))
        for a in range(dim):
            np.subtract(P64[a].take(cj), Q64[a].take(qi), out=vec[a])
            if mi[a]:
                vec[a] -= self.L[a] * np.rint(vec[a] / self.L[a])
        d2 = np.einsum("ij,ij->j", vec, vec)
        # each query meets itself once at distance exactly 0 (left in, dropped by the callers'
        # 0 < r masks); more zeros are coincident particles
        nzero = int(np.count_nonzero(d2 == 0.0))
        if nzero > int(np.count_nonzero(self.typ[qidx] == s)):
            z = np.flatnonzero(d2 == 0.0)
            pairs = [(int(qidx[qi[k]]), int(cand[cj[k]])) for k in z]
            other = next(((i, j) for i, j in pairs if i != j), pairs[0])
            raise self.coincident(*other)
        return qi, vec, d2

    # -------------------------------------------------------------- chunk
    def chunk(self, qidx: np.ndarray) -> np.ndarray:
        """Features (float64) of the query particles qidx (one tile of consecutive cells)."""
        cfg = self.cfg
        B = qidx.size
        out = np.zeros((B, cfg.n_features), dtype=np.float64)
        if self.engine == "freud":
            runs = [(0, B)]
        else:
            c = self.cell[qidx]
            brk = np.flatnonzero(c[1:] != c[:-1]) + 1
            edges = np.concatenate(([0], brk, [B]))
            runs = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
        rc_r2, rc_a2 = self.rc_r**2, self.rc_a**2
        ang_bonds = []
        for s in range(self.ns):
            parts = []
            for a, b in runs:
                qi, vec, d2 = self._bonds(qidx[a:b], s)  # may include r = 0 (self) and r >= cutoff
                if self.rad is not None and qi.size:
                    self._radial(out[a:b], b - a, s, qi, d2, rc_r2)
                if self.ang is not None and qi.size:
                    m = (d2 < rc_a2) & (d2 > 0.0)
                    parts.append(((qi[m] + a) if a else qi[m], vec[:, m], d2[m]))
            if self.ang is not None:
                if len(parts) == 1:
                    qi, vec, d2 = parts[0]
                elif parts:
                    qi = np.concatenate([p[0] for p in parts])
                    vec = np.concatenate([p[1] for p in parts], axis=1)
                    d2 = np.concatenate([p[2] for p in parts])
                else:
                    qi, vec, d2 = np.empty(0, dtype=np.intp), np.empty((self.dim, 0)), np.empty(0)
                ang_bonds.append((qi, vec, d2, np.sqrt(d2)))
        if self.ang is not None:
            self._angular(out, B, ang_bonds)
        return out

    # -------------------------------------------------------------- radial
    _RADIAL_BONDS = 32_768  # bonds per radial pass

    def _radial(self, out, B, s, qi, d2, rc2):
        """Add G_s to out (rows = queries) from bonds (qi sorted, squared lengths d2); only
        bonds with 0 < d2 < rc2 count."""
        rp = self.rad
        col0 = s * rp.n
        ok = (d2 < rc2) & (d2 > 0.0)
        if not ok.all():
            qi, d2 = qi[ok], d2[ok]
        if d2.size == 0:
            return
        d = np.sqrt(d2)
        if not rp.uniform:
            self._radial_direct(out, B, col0, qi, d)
            return
        h, W = rp.h, rp.W
        n_ext = rp.n_ext
        cols = np.arange(rp.n) - rp.m_lo + W
        c_neg = -1.0 / (2.0 * rp.L * rp.L)
        c_q = h / (rp.L * rp.L)
        # bonds are sorted by query: work on row ranges of ~_RADIAL_BONDS bonds (cache-sized)
        rows_per = max(1, int(self._RADIAL_BONDS * B / max(1, d.size)))
        for r0 in range(0, B, rows_per):
            r1 = min(B, r0 + rows_per)
            b0, b1 = np.searchsorted(qi, [r0, r1])
            if b1 == b0:
                continue
            dd = d[b0:b1]
            m = np.rint((dd - rp.r0) * (1.0 / h)).astype(np.intp)
            u = dd - (rp.r0 + m * h)
            key = (qi[b0:b1] - r0) * n_ext + (m - rp.m_lo + W)  # query row, nearest grid column
            size = (r1 - r0) * n_ext
            # window values exp(-(u - w h)^2 / (2L^2)) = g q^w c_w, w = -W..W, by repeated products;
            # each is summed per (query, nearest grid point) and added w columns further
            g = np.exp(u * u * c_neg)
            qf = np.exp(u * c_q)
            qb = 1.0 / qf
            acc = np.bincount(key, weights=g, minlength=size)
            cur_f = g
            cur_b = g.copy()
            for w in range(1, W + 1):
                cur_f = cur_f * qf if w == 1 else np.multiply(cur_f, qf, out=cur_f)
                np.multiply(cur_b, qb, out=cur_b)
                acc[w:] += rp.cw[W + w] * np.bincount(key, weights=cur_f, minlength=size)[: size - w]
                acc[: size - w] += rp.cw[W - w] * np.bincount(key, weights=cur_b, minlength=size)[w:]
            out[r0:r1, col0 + rp.order] = acc.reshape(r1 - r0, n_ext)[:, cols]

    def _radial_direct(self, out, B, col0, qi, d):
        rp = self.rad
        inv2L2 = 1.0 / (2.0 * rp.L * rp.L)
        step = max(1, (8 * 2**20) // (8 * max(1, rp.n)))
        for a in range(0, d.size, step):
            dd, qq = d[a: a + step], qi[a: a + step]
            E = np.exp(-((dd[:, None] - rp.r[None, :]) ** 2) * inv2L2)
            brk = np.flatnonzero(qq[1:] != qq[:-1]) + 1
            starts = np.concatenate(([0], brk))
            out[qq[starts], col0: col0 + rp.n] += np.add.reduceat(E, starts, axis=0)

    # -------------------------------------------------------------- angular
    _BLOCK_ENTRIES = 40_000  # pairs per block (keeps the work arrays cache-sized)

    def _angular(self, out, B, ang_bonds):
        ap = self.ang
        dim = self.dim
        ws = _WS
        c2 = 2.0 * ap.scale
        cnts = [np.bincount(qi, minlength=B) for qi, _, _, _ in ang_bonds]
        pads = []
        sc = math.sqrt(c2)
        for (qi, vec, d2, d), cnt in zip(ang_bonds, cnts):
            nmax = int(cnt.max()) if cnt.size else 0
            st = np.concatenate(([0], np.cumsum(cnt)[:-1]))
            pos = np.arange(qi.size) - st[qi]
            r = qi
            V = np.zeros((B, nmax, dim))   # bond vectors * sqrt(2 scale)
            A = np.full((B, nmax), np.inf)  # r^2 * 2 scale (inf on padding)
            R = np.zeros((B, nmax))        # 1 / r (0 on padding)
            if qi.size:
                for a in range(dim):
                    V[r, pos, a] = vec[a] * sc
                A[r, pos] = d2 * c2
                R[r, pos] = 1.0 / (d * c2)  # 1 / (2 scale r): cos = D R_j R_k * 2 scale
            pads.append((V, A, R, cnt))
        for X, Y, col in self.pair_slots:
            VX, AX, RX, cX = pads[X]
            VY, AY, RY, cY = pads[Y]
            if VX.shape[1] == 0 or VY.shape[1] == 0:
                continue
            same = X == Y
            # rows of this species pair sorted by its own pair count, so blocks pad little
            work = cX * (cX - 1) // 2 if same else cX * cY
            order = np.argsort(work, kind="stable")
            per_row = max(1, int(work[order[-1]]))
            bs = max(1, self._BLOCK_ENTRIES // per_row)
            res = np.zeros((B, ap.n))
            for a0 in range(0, B, bs):
                rows = order[a0: a0 + bs]
                nX = int(cX[rows].max())
                nY = int(cY[rows].max())
                if same:
                    if nX < 2:
                        continue
                    M = self._angular_same(ws, VX[rows, :nX], AX[rows, :nX], RX[rows, :nX], c2)
                else:
                    if nX == 0 or nY == 0:
                        continue
                    M = self._angular_cross(ws, VX[rows, :nX], AX[rows, :nX], RX[rows, :nX],
                                            VY[rows, :nY], AY[rows, :nY], RY[rows, :nY], c2)
                res[rows] = M[:, ap.e_of, ap.q_of]
            out[:, col: col + ap.n] = res

    def _angular_cross(self, ws, VX, AX, RX, VY, AY, RY, c2):
        """Every (j in X, k in Y): dense (b, nX, nY) pair arrays."""
        b_, nX, nY = VX.shape[0], VX.shape[1], VY.shape[1]
        shp = (b_, nX, nY)
        D = ws.get("D", shp)
        np.matmul(VX, VY.transpose(0, 2, 1), out=D)  # 2 scale r_ij . r_ik
        T = ws.get("T", shp)
        np.subtract(D, AX[:, :, None], out=T)
        T -= AY[:, None, :]  # -scale * S
        C = D
        C *= RX[:, :, None]
        C *= RY[:, None, :]
        C *= c2  # cos theta_jik
        return self._pair_sums(ws, T.reshape(b_, nX * nY), C.reshape(b_, nX * nY))

    def _angular_same(self, ws, VX, AX, RX, c2):
        """Unordered pairs j < k of one species: triangular gather from the dense dot products."""
        b_, nX = VX.shape[0], VX.shape[1]
        jt, kt, ft = _triangle(nX)
        D = ws.get("D", (b_, nX, nX))
        np.matmul(VX, VX.transpose(0, 2, 1), out=D)
        P = jt.size
        d = ws.get("Dt", (b_, P))
        np.take(D.reshape(b_, nX * nX), ft, axis=1, out=d)
        T = ws.get("T", (b_, P))
        np.subtract(d, np.take(AX, jt, axis=1), out=T)
        T -= np.take(AX, kt, axis=1)
        C = d
        C *= np.take(RX, jt, axis=1)
        C *= np.take(RX, kt, axis=1)
        C *= c2
        return self._pair_sums(ws, T, C)

    def _pair_sums(self, ws, T, C):
        """(b, n_xi, n_lambda_zeta) sums over pairs of exp(-S/xi^2) (1 + lambda cos)^zeta.

        T = -scale * S per pair (-inf on padding), C = cos theta_jik per pair; both (b, P).
        """
        ap = self.ang
        b_, P = T.shape
        Eall = ws.get("E", (b_, ap.n_e, P))
        if ap.e_powers is not None:
            np.exp(T, out=T)
            self._fill_powers(ws, T, ap.e_chain, {k: Eall[:, e] for e, k in enumerate(ap.e_powers)}, "e")
        else:
            for e, ratio in enumerate(ap.e_ratio):
                dst = Eall[:, e]
                np.multiply(T, ratio, out=dst)
                np.exp(dst, out=dst)
        Qall = ws.get("Q", (b_, ap.n_q, P))
        for lam, items, chain in ap.q_groups:
            # the base 1 + lambda cos goes straight into the zeta = 1 slot when there is one
            one = [qn for qn, z in items if z == 1.0 and chain is not None]
            Pb = Qall[:, one[0]] if one else ws.get("P", (b_, P))
            if lam == 1.0:
                np.add(C, 1.0, out=Pb)
            elif lam == -1.0:
                np.subtract(1.0, C, out=Pb)
            else:
                np.multiply(C, lam, out=Pb)
                Pb += 1.0
            if chain is not None:
                dest = {int(z): Qall[:, qn] for qn, z in items if not (one and qn == one[0])}
                self._fill_powers(ws, Pb, chain, dest, "q")
            else:
                np.maximum(Pb, 0.0, out=Pb)
                for qn, z in items:
                    np.power(Pb, z, out=Qall[:, qn])
        return np.matmul(Eall, Qall.transpose(0, 2, 1))

    @staticmethod
    def _fill_powers(ws, base, chain, dest, tag):
        """dest[k][...] = base**k for each k in dest, following the multiplication chain."""
        have = {1: base}
        tmp = 0
        for k, a, b in chain:
            if k in dest:
                o = dest[k]
            else:
                o = ws.get(f"{tag}tmp{tmp}", base.shape)
                tmp += 1
            np.multiply(have[a], have[b], out=o)
            have[k] = o
        if 1 in dest:
            dest[1][...] = base


_TRI: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_TRI_LOCK = threading.Lock()


def _triangle(n: int):
    """Index arrays of the pairs j < k < n (ordered by k, then j) and their flat index j*n+k."""
    t = _TRI.get(n)
    if t is None:
        kk, jj = np.tril_indices(n, -1)  # row > col: k > j, ordered by k then j
        t = (jj.astype(np.intp), kk.astype(np.intp), (jj * n + kk).astype(np.intp))
        with _TRI_LOCK:
            if len(_TRI) > 512:
                _TRI.clear()
            _TRI[n] = t
    return t


_WS = _Workspace()


# ----------------------------------------------------------------------------- numba kernel
_K_EXP, _K_MUL, _K_POW, _K_BASE = 0, 1, 2, 3  # program op kinds of adapters._structure_numba


class _NumbaPlan:
    """The grid of a config as flat arrays for the numba kernels (see ``_structure_numba``)."""

    def __init__(self, cfg: StructureConfig, rad: _RadialPlan | None, ang: _AngularPlan | None, pair_slots):
        i64, f64 = np.int64, np.float64
        self.ns = len(cfg.species)
        if rad is not None:
            self.rc_r2 = float(rad.rc) ** 2
            self.rad_n = int(rad.n)
            self.rad_uniform = bool(rad.uniform)
            self.rad_r = np.ascontiguousarray(rad.r, dtype=f64)
            self.rad_L = float(rad.L)
            if rad.uniform:
                self.rad_order = np.ascontiguousarray(rad.order, dtype=i64)
                self.rad_r0, self.rad_h, self.rad_W = float(rad.r0), float(rad.h), int(rad.W)
                self.rad_cw = np.ascontiguousarray(rad.cw, dtype=f64)
                self.rad_mlo, self.rad_next = int(rad.m_lo), int(rad.n_ext)
            else:
                self.rad_order = np.zeros(0, dtype=i64)
                self.rad_r0, self.rad_h, self.rad_W = 0.0, 0.0, 0
                self.rad_cw = np.zeros(1, dtype=f64)
                self.rad_mlo, self.rad_next = 0, 0
        else:
            self.rc_r2, self.rad_n, self.rad_uniform, self.rad_L = 0.0, 0, False, 1.0
            self.rad_r = np.zeros(0, dtype=f64)
            self.rad_order = np.zeros(0, dtype=i64)
            self.rad_r0, self.rad_h, self.rad_W = 0.0, 0.0, 0
            self.rad_cw = np.zeros(1, dtype=f64)
            self.rad_mlo, self.rad_next = 0, 0
        # angular: slots and the two programs
        e_ops: list[tuple[int, int, int, int, float]] = []
        q_ops: list[tuple[int, int, int, int, float]] = []
        e_row: list[int] = []
        q_row: list[int] = []
        if ang is not None and pair_slots:
            self.rc_a2 = float(ang.rc) ** 2
            self.c2 = 2.0 * ang.scale
            if ang.e_powers is not None:
                # row p = exp(-scale S)^p; one exp per pair, the rest by multiplication
                e_ops.append((_K_EXP, 1, 0, 0, 1.0))
                for k, a, b in ang.e_chain:
                    e_ops.append((_K_MUL, k, a, b, 0.0))
                e_row = list(ang.e_powers)
                e_nrow = max(ang.e_powers) + 1
            else:
                for e, ratio in enumerate(ang.e_ratio):  # one exp per (pair, xi)
                    e_ops.append((_K_EXP, e, 0, 0, float(ratio)))
                e_row = list(range(ang.n_e))
                e_nrow = ang.n_e
            q_row = [0] * ang.n_q
            nrow = 0
            for lam, items, chain in ang.q_groups:
                base = nrow
                nrow += 1
                q_ops.append((_K_BASE, base, 0, 0, float(lam)))
                if chain is not None:
                    row_of = {1: base}
                    for k, a, b in chain:
                        q_ops.append((_K_MUL, nrow, row_of[a], row_of[b], 0.0))
                        row_of[k] = nrow
                        nrow += 1
                    for qn, z in items:
                        q_row[qn] = row_of[int(z)]
                else:
                    for qn, z in items:
                        q_ops.append((_K_POW, nrow, base, 0, float(z)))
                        q_row[qn] = nrow
                        nrow += 1
            q_nrow = nrow
            self.slot_x = np.array([x for x, _, _ in pair_slots], dtype=i64)
            self.slot_y = np.array([y for _, y, _ in pair_slots], dtype=i64)
            self.slot_col = np.array([c for _, _, c in pair_slots], dtype=i64)
            self.t_e = np.ascontiguousarray(ang.e_of, dtype=i64)
            self.t_q = np.ascontiguousarray(ang.q_of, dtype=i64)
        else:
            self.rc_a2, self.c2 = 0.0, 0.0
            e_nrow = q_nrow = 0
            self.slot_x = self.slot_y = self.slot_col = np.zeros(0, dtype=i64)
            self.t_e = self.t_q = np.zeros(0, dtype=i64)

        def prog(ops):
            if not ops:
                return (np.zeros(0, dtype=i64),) * 4 + (np.zeros(0, dtype=f64),)
            cols = list(zip(*ops))
            return tuple(np.array(c, dtype=i64) for c in cols[:4]) + (np.array(cols[4], dtype=f64),)

        self.e_prog = prog(e_ops)
        self.q_prog = prog(q_ops)
        self.e_nrow, self.q_nrow = int(e_nrow), int(q_nrow)
        self.e_row = np.array(e_row, dtype=i64)
        self.q_row = np.array(q_row, dtype=i64)

    def sum_args(self) -> tuple:
        """The grid arguments of ``chunk_sums`` (after ``ns``), in order."""
        return (self.rc_r2, self.rad_n, self.rad_uniform, self.rad_r, self.rad_order, self.rad_r0,
                self.rad_h, self.rad_W, self.rad_cw, self.rad_mlo, self.rad_next, self.rad_L,
                self.rc_a2, self.c2, self.slot_x, self.slot_y, self.slot_col, *self.e_prog, self.e_nrow,
                self.e_row, *self.q_prog, self.q_nrow, self.q_row, self.t_e, self.t_q)


class _NumbaRun:
    """One frame through the numba kernels (cell list of ``_Context`` or freud bonds)."""

    def __init__(self, nb, ctx: "_Context"):
        self.nb = nb
        self.ctx = ctx
        cfg = ctx.cfg
        self.plan = _NumbaPlan(cfg, ctx.rad, ctx.ang, ctx.pair_slots)
        self.sargs = self.plan.sum_args()
        ball = (4.0 / 3.0 * math.pi * ctx.rq**3) if ctx.dim == 3 else (math.pi * ctx.rq**2)
        self.per_query = int(1.25 * ctx.density * ball) + 32  # expected bonds per query, with margin
        if ctx.engine == "cells":
            dim = ctx.dim
            i64 = np.int64
            pad = 3 - dim
            self.cell_of = np.ascontiguousarray(ctx.cell, dtype=i64)
            self.cell_coord = np.ascontiguousarray(np.pad(ctx.cell_coord, ((0, 0), (0, pad))), dtype=i64)
            self.nc = np.array(list(ctx.nc) + [1] * pad, dtype=i64)
            self.L3 = np.array(list(ctx.L) + [1.0] * pad, dtype=np.float64)
            self.inv_mi = np.array([1.0 / ctx.L[a] if ctx.minimg[a] else 0.0 for a in range(dim)] + [0.0] * pad)
            self.stencil = np.ascontiguousarray(np.pad(ctx.stencil, ((0, 0), (0, pad))), dtype=i64)
            o_parts, st_rows, off = [], [], 0
            for o, st in ctx.by_cell:
                o_parts.append(o)
                st_rows.append(st + off)
                off += o.size
            self.o_all = np.ascontiguousarray(np.concatenate(o_parts), dtype=i64)
            self.st_all = np.ascontiguousarray(np.stack(st_rows), dtype=i64)
            self.ps = np.ascontiguousarray(ctx.pts[self.o_all])
            self.pts = np.ascontiguousarray(ctx.pts, dtype=np.float64)
            self.rq2 = float(ctx.rq) ** 2

    def _cell_args(self) -> tuple:
        return (self.pts, self.cell_of, self.cell_coord, self.nc, self.L3, self.inv_mi, self.stencil, self.o_all,
                self.st_all, self.ps, self.rq2)

    def _raise_coincident(self, err) -> None:
        if err[0] >= 0:
            raise self.ctx.coincident(err[0], err[1])

    def chunk(self, qidx: np.ndarray, pos: np.ndarray, out: np.ndarray) -> None:
        """Features of the queries qidx into out[pos] (float32 rows)."""
        nb = self.nb
        qidx = np.ascontiguousarray(qidx, dtype=np.int64)
        pos = np.ascontiguousarray(pos, dtype=np.int64)
        err = np.full(2, -1, dtype=np.int64)
        if self.ctx.engine == "cells":
            nb.chunk_features(qidx, pos, out, qidx.size * self.per_query, *self._cell_args(), err,
                              self.plan.ns, *self.sargs)
            self._raise_coincident(err)
        else:
            nb.chunk_sums(*self._freud_csr(qidx), pos, out, self.plan.ns, *self.sargs)

    def _freud_csr(self, qidx: np.ndarray):
        """CSR bonds of qidx from the freud neighbour lists (grouped by query, then species)."""
        ctx = self.ctx
        parts = []
        for s in range(ctx.ns):
            qi, vec, d2 = ctx._bonds(qidx, s)
            ok = d2 > 0.0
            parts.append((qi[ok], vec[:, ok], d2[ok], np.full(int(ok.sum()), s, dtype=np.int64)))
        qi = np.concatenate([p[0] for p in parts])
        key = qi.astype(np.int64) * ctx.ns + np.concatenate([p[3] for p in parts])
        order = np.argsort(key, kind="stable")
        vec = np.concatenate([p[1] for p in parts], axis=1)[:, order]
        d2 = np.ascontiguousarray(np.concatenate([p[2] for p in parts])[order])
        nsp = np.ascontiguousarray(np.concatenate([p[3] for p in parts])[order])
        ptr = np.searchsorted(qi[order], np.arange(qidx.size + 1)).astype(np.int64)
        zero = np.zeros(d2.size)
        dx = np.ascontiguousarray(vec[0])
        dy = np.ascontiguousarray(vec[1])
        dz = np.ascontiguousarray(vec[2]) if ctx.dim == 3 else zero
        return ptr, nsp, dx, dy, dz, d2

    def run(self, q, groups, out, n_threads: int) -> None:
        """Every group (chunk of positions into q) into out; n_threads > 1: a thread pool over
        chunks (the kernels release the GIL)."""
        if not groups:
            return

        def one(pos):
            self.chunk(q[pos], pos, out)

        if n_threads > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=n_threads) as ex:
                for _ in ex.map(one, groups):
                    pass
        else:
            for g in groups:
                one(g)
