"""Extended XYZ reader (plain or compressed).

Each frame is ``N``, a comment line of ``key=value`` pairs, then ``N`` atom
lines. Read from the comment line:

``Lattice="ax ay az bx by bz cx cy cz"``
    Required (plain XYZ has no periodic box): the cell vectors as rows,
    orthorhombic or triclinic. A cell not in freud's form (``a`` along x,
    ``b`` in the xy plane) is rotated into it together with the positions
    (:func:`adapters.trajectory.box_from_cell`).
``Properties=species:S:1:pos:R:3[:...]``
    Column layout (default ``species:S:1:pos:R:3``). Species come from the
    ``species`` column (or ``type``); positions from ``pos``; particle ids
    from ``id`` when present (the rows are then sorted by id in every frame,
    and the ids must stay the same).
``pbc="T T T"``
    Default all true; a false entry along a used direction is a
    non-periodic box (refused).
``Origin="x y z"``
    Optional origin corner of the cell (default 0).
``Time=``, ``Step=`` (or ``Timestep=``)
    Optional, per frame.
``Temperature=``
    Taken as the run's temperature only when it has the same value in every
    frame: writers such as LAMMPS ``dump extxyz`` and ASE store the
    instantaneous kinetic temperature of each frame there, which is not the
    temperature of the ensemble. A thermostat key (``target_temperature``,
    ``thermostat_temperature``, ``temperature_target``, ``t_target``,
    ``bath_temperature``, ``reference_temperature``) is preferred, and must be
    constant too. Otherwise no temperature is read and
    :attr:`~adapters.trajectory.Trajectory.temperature_note` says why.

Keys are matched case-insensitively. The dimension follows
:func:`adapters.trajectory.infer_dimensions`: ``pos:R:2``, or every z of the
first frame equal (LAMMPS writes 2D systems with ``pbc="T T T"``, z = 0 and a
thin Lz), is 2D. Positions are taken as wrapped (no image flags exist in the
format) and unwrapped by minimum image in fractional coordinates; without an
``id`` column the rows must keep their order (a step near half a box between
frames stops the run). The number of particles and the species of every
particle must stay the same.
"""

from __future__ import annotations

import re
import shlex
from itertools import islice

import numpy as np

from adapters.trajectory import Frame, Trajectory, box_from_cell, flat_positions, infer_dimensions
from diag.errors import DataError

from . import check_complete, check_count, count_lines, int_columns, open_binary, open_text, parse_columns

NAME = "xyz"
TEXT = True  # read compressed too
#: comment keys naming a thermostat's temperature, preferred to 'Temperature'
THERMOSTAT_KEYS = (
    "target_temperature", "thermostat_temperature", "temperature_target", "t_target", "bath_temperature",
    "reference_temperature",
)
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
    with open_text(path) as f:
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


def _key_values(path: str, key: str) -> list[str]:
    """Every value of ``key=`` in the file, in order (a byte-level scan, compressed or not)."""
    pat = re.compile(rb'(?:^|[\s])' + re.escape(key.encode()) + rb'\s*=\s*"?([^\s"]+)', re.IGNORECASE | re.MULTILINE)
    out: list[str] = []
    tail = b""
    with open_binary(path) as f:
        while True:
            chunk = f.read(1 << 24)
            if not chunk:
                break
            buf = tail + chunk
            cut = buf.rfind(b"\n") + 1  # scan whole lines only; the rest waits for the next chunk
            out += [m.group(1).decode("utf-8", "replace") for m in pat.finditer(buf, 0, cut)]
            tail = buf[cut:]
    if tail:
        out += [m.group(1).decode("utf-8", "replace") for m in pat.finditer(tail)]
    return out


def _temperature(path: str, keys0: dict, n_frames: int):
    """(temperature, source, note) under the rule of the module docstring."""
    key = next((k for k in THERMOSTAT_KEYS if k in keys0), None)
    if key is None and "temperature" in keys0:
        key = "temperature"
    if key is None:
        return None, None, None
    spelled = {"temperature": "Temperature"}.get(key, key)
    values = _key_values(path, key)
    try:
        nums = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise DataError(f"the comment key '{spelled}' holds '{bad[:30]}', not a number", path) from None
    if len(nums) != n_frames:
        return None, None, (
            f"the comment key '{spelled}' is in {len(nums)} of {n_frames} frames, so it is not the temperature "
            "of the run"
        )
    if not (nums == nums[0]).all():
        return None, None, (
            f"the comment key '{spelled}' changes between frames ({np.nanmin(nums):g} to {np.nanmax(nums):g}): an "
            "instantaneous kinetic temperature is not the temperature of the ensemble"
        )
    return float(nums[0]), f"xyz comment key '{spelled}' (the same in all {n_frames} frames)", None


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


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
    id_col = None
    if "id" in cols:
        if cols["id"][1] not in ("I", "R") or cols["id"][2] != 1:
            raise DataError(f"Properties '{spec}': 'id' must be I:1", path)
        id_col = cols["id"][0]

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

    def ids_of(lines, k):
        return int_columns(parse_columns(lines, [id_col], path, k)[:, 0], "particle ids ('id' column)", path, k)

    order0 = None
    ids0 = None
    if id_col is not None:
        raw_ids = ids_of(lines0, 0)
        order0 = np.argsort(raw_ids, kind="stable")
        ids0 = raw_ids[order0]
        if np.unique(ids0).size != ids0.size:
            raise DataError("frame 0: duplicate particle ids", path)
    names0 = species_of(lines0, 0)
    if order0 is not None:
        names0 = names0[order0]
    species, types = np.unique(names0, return_inverse=True)
    pos0 = parse_columns(lines0, pos_cols, path, 0)
    pbc0 = _bools(keys0.get("pbc", "T T T"))
    if len(pbc0) != 3:
        raise DataError(f"frame 0: pbc '{keys0.get('pbc')}' must have 3 entries", path)
    dim = infer_dimensions(pos0)
    plane = float(pos0[0, 2]) if (dim == 2 and pos_n == 3) else None
    temperature, source, note = _temperature(path, keys0, n_frames)

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
            box, rotation = box_from_cell(
                cell[:dim, :dim],
                origin[:dim],
                periodic=pbc[:dim],
                boundary_text=["T" if b else "F" for b in pbc],
                path=path,
                frame=k,
            )
            order = order0
            if id_col is not None and k > 0:
                raw_ids = ids_of(lines, k)
                order = np.argsort(raw_ids, kind="stable")
                if not np.array_equal(raw_ids[order], ids0):
                    raise DataError(f"frame {k}: particle ids differ from frame 0", path)
            if k > 0:
                names = species_of(lines, k)
                if order is not None:
                    names = names[order]
                if not np.array_equal(names, names0):
                    raise DataError(
                        f"frame {k}: particle species differ from frame 0: rows reordered between frames? "
                        "(without an 'id' column the order must be constant)",
                        path,
                    )
            pos = parse_columns(lines, pos_cols, path, k)
            if order is not None:
                pos = pos[order]
            pos = flat_positions(pos, dim, plane, path, k)
            if rotation is not None:
                pos = np.ascontiguousarray(pos @ rotation)
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
                positions=pos,
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
        particle_ids=ids0,
        frames=frames,
        position_kind="wrapped",
        has_images=False,
        temperature=temperature,
        temperature_source=source,
        temperature_note=note,
        metadata={"properties": spec},
    )
