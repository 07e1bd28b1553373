"""Extended XYZ reader.

Each frame is ``N``, a comment line of ``key=value`` pairs, then ``N`` atom
lines. Read from the comment line:

``Lattice="Lx 0 0 0 Ly 0 0 0 Lz"``
    Required (plain XYZ has no periodic box). Rows are the cell vectors;
    any non-zero off-diagonal entry is a triclinic box and is refused.
``Properties=species:S:1:pos:R:3[:...]``
    Column layout (default ``species:S:1:pos:R:3``). Species come from the
    ``species`` column (or ``type``); positions from ``pos``.
``pbc="T T T"``
    Default all true. ``pbc="T T F"`` with every z of the first frame equal
    makes a 2D system; any other false entry is a non-periodic box (refused).
``Origin="x y z"``
    Optional lowest corner of the cell (default 0).
``Time=``, ``Step=`` (or ``timestep=``)
    Optional, per frame.
``Temperature=``
    Optional, read from the first frame.

Keys are matched case-insensitively. Positions are taken as wrapped (no
image flags exist in the format) and unwrapped by minimum image. The number
of particles and the species of every particle must stay the same.
"""

from __future__ import annotations

import shlex
import io
from itertools import islice

import numpy as np

from adapters.trajectory import Frame, Trajectory, make_box
from diag.errors import DataError

from . import check_complete, check_count, count_lines, parse_columns

NAME = "xyz"
EXTENSIONS = (".xyz", ".extxyz")
_DEFAULT_PROPERTIES = "species:S:1:pos:R:3"


def sniff(head: bytes) -> bool:
    lines = head.split(b"\n", 2)
    if len(lines) < 2:
        return False
    try:
        int(lines[0].strip())
    except ValueError:
        return False
    return b"lattice=" in lines[1].lower()


def parse_comment(line: str, path: str, frame: int) -> dict[str, str]:
    """``key=value`` pairs of an extended-XYZ comment line, keys lower-cased."""
    try:
        tokens = shlex.split(line, posix=True)
    except ValueError as exc:
        raise DataError(f"frame {frame}: cannot parse the comment line ({exc})", path) from None
    out: dict[str, str] = {}
    for tok in tokens:
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k.strip().lower()] = v.strip()
        else:
            out[tok.lower()] = "T"
    return out


def _properties(spec: str, path: str):
    parts = spec.split(":")
    if len(parts) % 3:
        raise DataError(f"malformed Properties '{spec}' (expected name:type:count triplets)", path)
    cols = {}
    start = 0
    for i in range(0, len(parts), 3):
        name, typ, cnt = parts[i].lower(), parts[i + 1].upper(), parts[i + 2]
        try:
            c = int(cnt)
        except ValueError:
            raise DataError(f"malformed Properties '{spec}' (count '{cnt}')", path) from None
        if not 1 <= c <= 1000:
            raise DataError(f"malformed Properties '{spec}' (count {c} for '{parts[i]}')", path)
        cols[name] = (start, typ, c)
        start += c
    if "pos" not in cols:
        raise DataError(f"Properties '{spec}' has no 'pos' column", path)
    if cols["pos"][2] not in (2, 3) or cols["pos"][1] != "R":
        raise DataError(f"Properties '{spec}': 'pos' must be R:3 (or R:2)", path)
    sp = cols.get("species") or cols.get("type") or cols.get("types")
    if sp is None:
        raise DataError(f"Properties '{spec}' has no 'species' column: cannot tell the species", path)
    return cols, sp[0], start


def _bools(text: str) -> list[bool]:
    return [w.upper() in ("T", "TRUE", "1") for w in text.replace(",", " ").split()]


def _floats(text: str, n: int, what: str, path: str, frame: int) -> np.ndarray:
    try:
        vals = np.array([float(w) for w in text.replace(",", " ").split()], dtype=np.float64)
    except ValueError:
        raise DataError(f"frame {frame}: {what} '{text[:60]}' is not a list of numbers", path) from None
    if vals.size != n:
        raise DataError(f"frame {frame}: {what} has {vals.size} numbers, expected {n}", path)
    return vals


def _raw_frames(path: str):
    with io.open(path, "r", encoding="utf-8", errors="replace") as f:
        k = 0
        while True:
            first = f.readline()
            while first and not first.strip():
                first = f.readline()
            if not first:
                return
            try:
                n = int(first.split()[0])
            except (ValueError, IndexError):
                raise DataError(f"frame {k}: expected the particle count, got {first.strip()[:40]!r}", path) from None
            check_count(n, path, k, "particles")
            comment = f.readline()
            if not comment:
                raise DataError(f"frame {k}: file ends before the comment line (truncated file?)", path)
            lines = list(islice(f, n))
            check_complete(lines, n, path, k)
            yield k, n, comment, lines
            k += 1


def open(path: str, **options) -> Trajectory:  # noqa: A001 - the reader protocol's name
    """Open an extended XYZ file; see the module docstring for what is read."""
    first = next(_raw_frames(path), None)
    if first is None:
        raise DataError("no frames in the XYZ file", path)
    _, n, comment0, lines0 = first
    keys0 = parse_comment(comment0, path, 0)
    if "lattice" not in keys0:
        raise DataError("frame 0: no Lattice= in the comment line (plain XYZ has no periodic box)", path)
    spec = keys0.get("properties", _DEFAULT_PROPERTIES)
    cols, sp_col, ncols = _properties(spec, path)
    pos_start, _, pos_n = cols["pos"]
    pos_cols = list(range(pos_start, pos_start + pos_n))

    n_lines = count_lines(path)
    if n_lines % (n + 2):
        raise DataError(
            f"{n_lines} lines do not make whole frames of {n + 2} lines (truncated file, or the "
            "particle number changes)",
            path,
        )
    n_frames = n_lines // (n + 2)

    def species_of(lines, k):
        try:
            return np.array([ln.split()[sp_col] for ln in lines])
        except IndexError:
            raise DataError(f"frame {k}: malformed atom lines (missing species column)", path) from None

    names0 = species_of(lines0, 0)
    species, types = np.unique(names0, return_inverse=True)
    pos0 = parse_columns(lines0, pos_cols, path, 0)
    pbc0 = _bools(keys0.get("pbc", "T T T"))
    if len(pbc0) != 3:
        raise DataError(f"frame 0: pbc '{keys0.get('pbc')}' must have 3 entries", path)
    dim = 3
    if pos_n == 2 or (pbc0 == [True, True, False] and np.ptp(pos0[:, 2]) == 0):
        dim = 2

    temperature = None
    source = None
    if "temperature" in keys0:
        try:
            temperature = float(keys0["temperature"])
        except ValueError:
            raise DataError(f"frame 0: Temperature '{keys0['temperature']}' is not a number", path) from None
        source = "xyz comment key 'Temperature' (frame 0)"

    def frames():
        for k, nk, comment, lines in _raw_frames(path):
            if nk != n:
                raise DataError(f"frame {k}: {nk} particles, frame 0 has {n}; the particle number must be constant", path)
            keys = parse_comment(comment, path, k)
            if "lattice" not in keys:
                raise DataError(f"frame {k}: no Lattice= in the comment line", path)
            if keys.get("properties", _DEFAULT_PROPERTIES) != spec:
                raise DataError(f"frame {k}: Properties differ from frame 0", path)
            cell = _floats(keys["lattice"], 9, "Lattice", path, k).reshape(3, 3)
            pbc = _bools(keys.get("pbc", "T T T"))
            if len(pbc) != 3:
                raise DataError(f"frame {k}: pbc '{keys.get('pbc')}' must have 3 entries", path)
            origin = _floats(keys["origin"], 3, "Origin", path, k) if "origin" in keys else np.zeros(3)
            off = cell[~np.eye(3, dtype=bool)]
            if dim == 2:
                off = np.array([cell[0, 1], cell[1, 0]])
            box = make_box(
                np.diag(cell)[:dim],
                origin[:dim],
                tilts=off,
                periodic=pbc[:dim],
                boundary_text=["T" if b else "F" for b in pbc],
                path=path,
                frame=k,
            )
            if k > 0 and not np.array_equal(species_of(lines, k), names0):
                raise DataError(f"frame {k}: particle species differ from frame 0 (order must be constant)", path)
            pos = parse_columns(lines, pos_cols, path, k)[:, :dim]
            step = time = None
            try:
                if "step" in keys or "timestep" in keys:
                    step = int(float(keys.get("step", keys.get("timestep"))))
                if "time" in keys:
                    time = float(keys["time"])
            except (ValueError, OverflowError):
                raise DataError(f"frame {k}: Step or Time is not a number", path) from None
            yield Frame(
                index=k,
                box=box,
                positions=np.ascontiguousarray(pos),
                step=step,
                time=time,
                position_kind="wrapped",
            )

    return Trajectory(
        path,
        NAME,
        n_frames=n_frames,
        dimensions=dim,
        species=[str(s) for s in species],
        types=types,
        frames=frames,
        position_kind="wrapped",
        has_images=False,
        temperature=temperature,
        temperature_source=source,
        metadata={"properties": spec},
    )
