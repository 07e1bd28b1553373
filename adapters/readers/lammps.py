"""LAMMPS text dump reader (``dump atom`` / ``dump custom``).

Read per frame::

    ITEM: TIMESTEP                      -> Frame.step
    ITEM: TIME                          -> Frame.time (optional, dump_modify time yes)
    ITEM: NUMBER OF ATOMS               -> N (constant)
    ITEM: BOX BOUNDS pp pp pp           -> box; other flags (f, s, m) are refused,
                                           and so is a triclinic 'xy xz yz' box
    ITEM: ATOMS id type x y z ix iy iz  -> positions, images, species

Position columns, in order of preference: ``x y z`` or ``xs ys zs`` (scaled)
with images ``ix iy iz``; ``xu yu zu`` or ``xsu ysu zsu`` (unwrapped); then
``x y z`` / ``xs ys zs`` without images (unwrapped by minimum image). Rows are
sorted by ``id`` when the column is present; the set of ids and every
particle's type must stay the same in all frames. Species are the ``element``
column when present, else the integer ``type`` (named "1", "2", ...; type 1 is
the first species of the structure configuration unless a species map says
otherwise).

A dump has no dimension field: the system is taken as 2D when there is no z
column, or when every z coordinate of the first frame is the same (and every
``iz`` is zero). Dumps carry no temperature.
"""

from __future__ import annotations

import io
from itertools import islice

import numpy as np

from adapters.trajectory import Frame, Trajectory, make_box
from diag.errors import DataError

from . import check_complete, check_count, count_token, int_columns, parse_columns

NAME = "lammps"
EXTENSIONS = (".dump", ".lammpstrj", ".lammpsdump", ".atom")

_POSITION_SETS = (
    # (names, kind, scaled, needs images)
    (("x", "y", "z"), "wrapped", False, True),
    (("xs", "ys", "zs"), "wrapped", True, True),
    (("xu", "yu", "zu"), "unwrapped", False, False),
    (("xsu", "ysu", "zsu"), "unwrapped", True, False),
    (("x", "y", "z"), "wrapped", False, False),
    (("xs", "ys", "zs"), "wrapped", True, False),
)


def sniff(head: bytes) -> bool:
    return head.lstrip().startswith(b"ITEM:")


class _Header:
    __slots__ = ("step", "time", "n", "lo", "hi", "flags", "columns")


def _read_header(f, k: int, path: str) -> _Header | None:
    """Read the ITEM lines of frame ``k`` up to and including ``ITEM: ATOMS``.

    Returns None at a clean end of file.
    """
    h = _Header()
    h.step = h.time = h.n = None
    h.lo = h.hi = h.flags = h.columns = None
    started = False

    def value_line(item):
        line = f.readline()
        if not line:
            raise DataError(f"frame {k}: file ends inside 'ITEM: {item}' (truncated file?)", path)
        return line

    while True:
        line = f.readline()
        if not line:
            if started:
                raise DataError(f"frame {k}: file ends before 'ITEM: ATOMS' (truncated file?)", path)
            return None
        s = line.strip()
        if not s:
            continue
        if not line.endswith("\n"):
            raise DataError(f"frame {k}: file ends in the middle of a line (truncated file?)", path)
        if not s.startswith("ITEM:"):
            raise DataError(f"frame {k}: expected an 'ITEM:' line, got {s[:60]!r}", path)
        started = True
        item = s[5:].strip()
        try:
            if item == "TIMESTEP":
                h.step = int(value_line(item).split()[0])
            elif item == "TIME":
                h.time = float(value_line(item).split()[0])
            elif item == "UNITS":
                value_line(item)
            elif item == "NUMBER OF ATOMS":
                h.n = int(value_line(item).split()[0])
            elif item.startswith("BOX BOUNDS"):
                words = item.split()[2:]
                if "xy" in words or "abc" in words:
                    raise DataError(
                        f"frame {k}: triclinic box ('ITEM: {item}') is not supported; "
                        "only orthorhombic periodic boxes are",
                        path,
                    )
                flags = [w for w in words]
                rows = [value_line(item).split() for _ in range(3)]
                if any(len(r) < 2 for r in rows):
                    raise DataError(f"frame {k}: malformed BOX BOUNDS lines", path)
                if any(len(r) > 2 for r in rows):
                    raise DataError(
                        f"frame {k}: box bounds carry tilt factors (triclinic box), which is not supported", path
                    )
                h.lo = [float(r[0]) for r in rows]
                h.hi = [float(r[1]) for r in rows]
                h.flags = flags or ["pp", "pp", "pp"]
            elif item.startswith("ATOMS"):
                h.columns = item.split()[1:]
                break
            else:
                raise DataError(f"frame {k}: unexpected item 'ITEM: {item[:40]}'", path)
        except (ValueError, IndexError, OverflowError):
            raise DataError(f"frame {k}: cannot read the value of 'ITEM: {item}'", path) from None
    for what, val in (("TIMESTEP", h.step), ("NUMBER OF ATOMS", h.n), ("BOX BOUNDS", h.lo)):
        if val is None:
            raise DataError(f"frame {k}: missing 'ITEM: {what}'", path)
    check_count(h.n, path, k)
    if not h.columns:
        raise DataError(f"frame {k}: 'ITEM: ATOMS' names no columns", path)
    return h


def _parse(lines, usecols, path, k, n):
    try:
        return parse_columns(lines, usecols, path, k)
    except DataError:
        if any(ln.startswith("ITEM:") for ln in lines):
            raise DataError(
                f"frame {k}: an 'ITEM:' line among the atom lines: NUMBER OF ATOMS ({n}) does not match them",
                path,
            ) from None
        raise


def _raw_frames(path: str):
    with io.open(path, "r", encoding="utf-8", errors="replace") as f:
        k = 0
        while True:
            h = _read_header(f, k, path)
            if h is None:
                return
            lines = list(islice(f, h.n))
            check_complete(lines, h.n, path, k)
            yield k, h, lines
            k += 1


class _Layout:
    """Column choice made on frame 0 and applied to every frame."""

    def __init__(self, h: _Header, lines: list[str], path: str):
        cols = h.columns
        self.columns = list(cols)
        idx = {c: i for i, c in enumerate(cols)}
        have_img = all(c in idx for c in ("ix", "iy", "iz"))
        chosen = None
        for names, kind, scaled, needs_img in _POSITION_SETS:
            if needs_img and not have_img:
                continue
            if names[0] in idx and names[1] in idx:
                chosen = (names, kind, scaled, needs_img)
                break
        if chosen is None:
            raise DataError(
                "no position columns in 'ITEM: ATOMS' (need x y z, xs ys zs, xu yu zu or xsu ysu zsu)", path
            )
        names, self.kind, self.scaled, self.images = chosen
        if "type" not in idx and "element" not in idx:
            raise DataError("no 'type' or 'element' column in 'ITEM: ATOMS': cannot tell the species", path)
        self.pos_cols = [idx[n] for n in names if n in idx]
        self.has_z = names[2] in idx
        self.img_cols = [idx[c] for c in ("ix", "iy", "iz")] if self.images else []
        self.id_col = idx.get("id")
        self.type_col = idx.get("type")
        self.element_col = idx.get("element")
        self.usecols = []
        for c in [self.id_col, self.type_col, *self.pos_cols, *self.img_cols]:
            if c is not None:
                self.usecols.append(c)
        self.position_names = [n for n in names if n in idx]

        data = _parse(lines, self.usecols, path, 0, len(lines))
        ids, types, pos, img = self._split(data, path, 0)
        order = np.argsort(ids, kind="stable") if ids is not None else None
        self.ids = ids[order] if order is not None else np.arange(len(lines), dtype=np.int64)
        if ids is not None and np.unique(self.ids).size != self.ids.size:
            raise DataError("frame 0: duplicate atom ids", path)
        if self.element_col is not None:
            try:
                elements = np.array([ln.split()[self.element_col] for ln in lines])
            except IndexError:
                raise DataError("frame 0: malformed atom lines (missing element column)", path) from None
            if order is not None:
                elements = elements[order]
            self.species, self.types = np.unique(elements, return_inverse=True)
            self.species = [str(s) for s in self.species]
            self.numeric_base = None
            self.raw_types = types[order] if (types is not None and order is not None) else types
        else:
            raw = types[order] if order is not None else types
            uniq, inv = np.unique(raw, return_inverse=True)
            self.species = [str(int(t)) for t in uniq]
            self.types = inv
            self.numeric_base = 1
            self.raw_types = raw
        if not self.has_z:
            self.dimensions = 2
        else:
            z = pos[:, 2]
            flat = np.ptp(z) == 0 and (img is None or not img[:, 2].any())
            self.dimensions = 2 if flat else 3

    def _split(self, data: np.ndarray, path: str, k: int):
        j = 0
        ids = types = img = None
        if self.id_col is not None:
            ids = int_columns(data[:, j], "atom ids ('id' column)", path, k)
            j += 1
        if self.type_col is not None:
            types = int_columns(data[:, j], "atom types ('type' column)", path, k)
            j += 1
        npos = len(self.pos_cols)
        pos = data[:, j : j + npos]
        j += npos
        if self.images:
            img = int_columns(data[:, j : j + 3], "image flags ('ix iy iz' columns)", path, k)
        return ids, types, pos, img


def open(path: str, **options) -> Trajectory:  # noqa: A001 - the reader protocol's name
    """Open a LAMMPS dump; see the module docstring for what is read."""
    n_frames = count_token(path, b"ITEM: ATOMS")
    if n_frames == 0:
        raise DataError("not a LAMMPS dump (no 'ITEM: ATOMS' section)", path)
    first = next(_raw_frames(path), None)
    if first is None:
        raise DataError("no frames in the LAMMPS dump", path)
    _, h0, lines0 = first
    lay = _Layout(h0, lines0, path)
    n = h0.n
    dim = lay.dimensions

    def frames():
        for k, h, lines in _raw_frames(path):
            if h.n != n:
                raise DataError(f"frame {k}: {h.n} atoms, frame 0 has {n}; the particle number must be constant", path)
            if h.columns != lay.columns:
                raise DataError(f"frame {k}: ATOMS columns {h.columns} differ from frame 0", path)
            periodic = [f == "pp" for f in h.flags[:dim]]
            box = make_box(
                np.subtract(h.hi, h.lo)[:dim],
                h.lo[:dim],
                periodic=periodic,
                boundary_text=h.flags,
                path=path,
                frame=k,
            )
            data = _parse(lines, lay.usecols, path, k, n)
            ids, types, pos, img = lay._split(data, path, k)
            if ids is not None:
                order = np.argsort(ids, kind="stable")
                if not np.array_equal(ids[order], lay.ids):
                    raise DataError(f"frame {k}: atom ids differ from frame 0", path)
                pos = pos[order]
                types = types[order] if types is not None else None
                img = img[order] if img is not None else None
            if types is not None and lay.raw_types is not None and not np.array_equal(types, lay.raw_types):
                raise DataError(f"frame {k}: atom types differ from frame 0 (types must be constant)", path)
            if pos.shape[1] < dim:
                raise DataError(f"frame {k}: positions have {pos.shape[1]} columns for a {dim}-D system", path)
            pos = np.ascontiguousarray(pos[:, :dim])
            if lay.scaled:
                pos = box.lo + pos * box.L
            if img is not None:
                img = np.ascontiguousarray(img[:, :dim])
            yield Frame(
                index=k,
                box=box,
                positions=pos,
                image=img,
                step=h.step,
                time=h.time,
                position_kind=lay.kind,
            )

    return Trajectory(
        path,
        NAME,
        n_frames=n_frames,
        dimensions=dim,
        species=lay.species,
        types=lay.types,
        particle_ids=lay.ids,
        frames=frames,
        position_kind=lay.kind,
        has_images=lay.images,
        numeric_species_base=lay.numeric_base,
        metadata={"columns": lay.columns, "position_columns": lay.position_names},
    )
