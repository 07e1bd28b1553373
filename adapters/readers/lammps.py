"""LAMMPS text dump reader (``dump atom`` / ``dump custom``, plain or compressed).

Read per frame::

    ITEM: TIMESTEP                      -> Frame.step
    ITEM: TIME                          -> Frame.time (optional, dump_modify time yes)
    ITEM: NUMBER OF ATOMS               -> N (constant)
    ITEM: BOX BOUNDS pp pp pp           -> box; other flags (f, s, m) are refused.
    ITEM: BOX BOUNDS xy xz yz pp pp pp  -> triclinic box (restricted form: bounding
                                           box and tilts xy xz yz in length units)
    ITEM: BOX BOUNDS abc origin pp pp pp
                                        -> general triclinic box (rows: avec, bvec,
                                           cvec, each followed by one origin
                                           component); the box and the positions
                                           are rotated into freud's form
    ITEM: ATOMS id type x y z ix iy iz  -> positions, images, species

Position columns, in order of preference: ``x y z`` or ``xs ys zs`` (scaled)
with images ``ix iy iz`` (``ix iy`` suffice in 2D); ``xu yu zu`` or
``xsu ysu zsu`` (unwrapped); then ``x y z`` / ``xs ys zs`` without images
(unwrapped by minimum image, in fractional coordinates). In a triclinic box
scaled coordinates are fractional (``x = lo + xs a + ys b + zs c``) and
images add ``ix a + iy b + iz c``.

The ``id`` column is required: LAMMPS writes atoms in its internal order,
which changes between frames (atom sorting, migration between processors)
unless ``dump_modify sort id`` is set, so without ids particles cannot be
followed. Rows are sorted by ``id``; the set of ids and every particle's type
must stay the same in all frames. Species are the ``element`` column when
present, else ``typelabel`` (LAMMPS type labels), else the integer ``type``
(named "1", "2", ...; type 1 is the first species of the structure
configuration unless a species map says otherwise).

A dump has no dimension field: the dimension follows
:func:`adapters.trajectory.infer_dimensions` (2D when there is no z column,
or every z of the first frame is equal and no ``iz`` is set). Dumps carry no
temperature. Compressed dumps (``dump custom/gz``, ``.gz``, ``.bz2``, ``.xz``)
are read as they are, streaming. A last line without a final newline is
accepted when complete (see :func:`adapters.readers.check_complete`).
"""

from __future__ import annotations

from itertools import islice

import numpy as np

from adapters.trajectory import Frame, Trajectory, box_from_cell, flat_positions, infer_dimensions, make_box
from diag.errors import DataError

from . import check_complete, check_count, count_token, int_columns, open_text, parse_columns

NAME = "lammps"
TEXT = True  # read compressed too
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
    __slots__ = ("step", "time", "n", "lo", "hi", "flags", "columns", "kind", "tilt", "cell")


def _read_header(f, k: int, path: str) -> _Header | None:
    """Read the ITEM lines of frame ``k`` up to and including ``ITEM: ATOMS``.

    Returns None at a clean end of file.
    """
    h = _Header()
    h.step = h.time = h.n = None
    h.lo = h.hi = h.flags = h.columns = h.tilt = h.cell = None
    h.kind = "orthogonal"
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
                if words[:3] == ["xy", "xz", "yz"]:
                    h.kind, flags, width = "tilted", words[3:], 3
                elif words[:2] == ["abc", "origin"]:
                    h.kind, flags, width = "general", words[2:], 4
                else:
                    h.kind, flags, width = "orthogonal", words, 2
                rows = [value_line(item).split() for _ in range(3)]
                if any(len(r) != width for r in rows):
                    got = max(len(r) for r in rows) if all(len(r) >= width for r in rows) else min(len(r) for r in rows)
                    raise DataError(
                        f"frame {k}: malformed BOX BOUNDS lines ({got} values where 'ITEM: {item[:40]}' "
                        f"needs {width})",
                        path,
                    )
                vals = [[float(v) for v in r] for r in rows]
                if h.kind == "general":
                    h.cell = [r[:3] for r in vals]
                    h.lo = [r[3] for r in vals]
                    h.hi = list(h.lo)
                else:
                    h.lo = [r[0] for r in vals]
                    h.hi = [r[1] for r in vals]
                    if h.kind == "tilted":
                        h.tilt = [r[2] for r in vals]
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
    with open_text(path) as f:
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
        if "id" not in idx:
            raise DataError(
                "no 'id' column in 'ITEM: ATOMS': LAMMPS writes atoms in an order that changes between frames "
                "(atom sorting, processors; 'dump_modify sort off' is the default), so particles cannot be "
                "followed without ids; dump with 'id' (e.g. 'dump custom ... id type x y z ix iy iz')",
                path,
            )
        if "type" not in idx and "element" not in idx and "typelabel" not in idx:
            raise DataError(
                "no 'type', 'typelabel' or 'element' column in 'ITEM: ATOMS': cannot tell the species", path
            )
        self.z_plane = None

        def flat(zname: str) -> bool:
            """Frame 0 is flat in z (every value equal, no iz set): a 2D system."""
            if zname not in idx:
                return True
            usecols = [idx[zname]] + ([idx["iz"]] if "iz" in idx else [])
            data = _parse(lines, usecols, path, 0, len(lines))
            pos = np.zeros((len(lines), 3))
            pos[:, 2] = data[:, 0]
            img = None
            if "iz" in idx:
                img = np.zeros((len(lines), 3), dtype=np.int64)
                img[:, 2] = int_columns(data[:, 1], "image flags ('iz' column)", path, 0)
            return infer_dimensions(pos, None, img) == 2

        chosen = None
        for names, kind, scaled, needs_img in _POSITION_SETS:
            if names[0] not in idx or names[1] not in idx:
                continue
            if needs_img:
                if "ix" not in idx or "iy" not in idx:
                    continue
                if "iz" not in idx and not flat(names[2]):
                    continue  # 3D images need iz
            chosen = (names, kind, scaled, needs_img)
            break
        if chosen is None:
            raise DataError(
                "no position columns in 'ITEM: ATOMS' (need x y z, xs ys zs, xu yu zu or xsu ysu zsu)", path
            )
        names, self.kind, self.scaled, self.images = chosen
        self.has_z = names[2] in idx
        self.dimensions = 2 if flat(names[2]) else 3
        if self.has_z and self.dimensions == 2:
            self.z_plane = float(_parse(lines[:1], [idx[names[2]]], path, 0, 1)[0, 0])
        self.pos_cols = [idx[n] for n in names if n in idx]
        self.img_cols = [idx[c] for c in ("ix", "iy", "iz") if c in idx] if self.images else []
        self.id_col = idx.get("id")
        self.type_col = idx.get("type")
        self.label_col = idx.get("element", idx.get("typelabel"))
        self.label_name = "element" if "element" in idx else "typelabel"
        self.usecols = []
        for c in [self.id_col, self.type_col, *self.pos_cols, *self.img_cols]:
            if c is not None:
                self.usecols.append(c)
        self.position_names = [n for n in names if n in idx]

        data = _parse(lines, self.usecols, path, 0, len(lines))
        ids, types, pos, img = self._split(data, path, 0)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        if np.unique(self.ids).size != self.ids.size:
            raise DataError("frame 0: duplicate atom ids", path)
        if self.label_col is not None:
            try:
                labels = np.array([ln.split()[self.label_col] for ln in lines])
            except IndexError:
                raise DataError(f"frame 0: malformed atom lines (missing {self.label_name} column)", path) from None
            labels = labels[order]
            self.species, self.types = np.unique(labels, return_inverse=True)
            self.species = [str(s) for s in self.species]
            self.numeric_base = None
            self.labels = labels
            self.raw_types = types[order] if types is not None else None
        else:
            raw = types[order]
            uniq, inv = np.unique(raw, return_inverse=True)
            self.species = [str(int(t)) for t in uniq]
            self.types = inv
            self.numeric_base = 1
            self.raw_types = raw
            self.labels = None

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
            img = int_columns(data[:, j : j + len(self.img_cols)], "image flags ('ix iy iz' columns)", path, k)
        return ids, types, pos, img


def _box(h: _Header, dim: int, path: str, k: int):
    """The frame's Box, and the rotation its positions need (general triclinic), or None."""
    periodic = [f == "pp" for f in h.flags[:dim]]
    lo, hi = np.asarray(h.lo, dtype=np.float64), np.asarray(h.hi, dtype=np.float64)
    if h.kind == "general":
        cell = np.asarray(h.cell, dtype=np.float64)[:dim, :dim]
        return box_from_cell(cell, lo[:dim], periodic=periodic, boundary_text=h.flags, path=path, frame=k)
    tilts = None
    if h.kind == "tilted":
        xy, xz, yz = h.tilt
        # the BOX BOUNDS of a tilted box are its bounding box (LAMMPS dump documentation)
        lo = lo - np.array([min(0.0, xy, xz, xy + xz), min(0.0, yz), 0.0])
        hi = hi - np.array([max(0.0, xy, xz, xy + xz), max(0.0, yz), 0.0])
        L = hi - lo
        with np.errstate(all="ignore"):
            tilts = [xy / L[1], xz / L[2], yz / L[2]] if (L[1:] > 0).all() else None
    box = make_box(
        np.subtract(hi, lo)[:dim], lo[:dim], tilts=tilts, periodic=periodic, boundary_text=h.flags,
        path=path, frame=k,
    )
    return box, None


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
            box, rotation = _box(h, dim, path, k)
            data = _parse(lines, lay.usecols, path, k, n)
            ids, types, pos, img = lay._split(data, path, k)
            order = np.argsort(ids, kind="stable")
            if not np.array_equal(ids[order], lay.ids):
                raise DataError(f"frame {k}: atom ids differ from frame 0", path)
            pos = pos[order]
            types = types[order] if types is not None else None
            img = img[order] if img is not None else None
            if types is not None and lay.raw_types is not None and not np.array_equal(types, lay.raw_types):
                raise DataError(f"frame {k}: atom types differ from frame 0 (types must be constant)", path)
            if lay.labels is not None and k > 0:
                try:
                    labels = np.array([ln.split()[lay.label_col] for ln in lines])[order]
                except IndexError:
                    raise DataError(f"frame {k}: malformed atom lines (missing {lay.label_name} column)", path) from None
                if not np.array_equal(labels, lay.labels):
                    raise DataError(f"frame {k}: atom {lay.label_name}s differ from frame 0 (must be constant)", path)
            if pos.shape[1] < dim:
                raise DataError(f"frame {k}: positions have {pos.shape[1]} columns for a {dim}-D system", path)
            pos = flat_positions(pos, dim, lay.z_plane, path, k)
            if lay.scaled:
                pos = box.lo + pos * box.L if not box.is_triclinic else box.lo + pos @ box.matrix.T
            elif rotation is not None:
                pos = np.ascontiguousarray(pos @ rotation)
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
        metadata={"columns": lay.columns, "position_columns": lay.position_names, "box": h0.kind},
    )
