"""H5MD 1.1 reader (via h5py).

Read from the particle group ``particles/<group>`` (the only one, or ``all``,
or the one named by the ``h5md_group`` option)::

    position/value  [T][N][D]      positions (time-dependent element; a plain
    position/step   [T] or []        [N][D] dataset is a single frame); step and
    position/time   [T] or []        time explicit, or fixed increments with an
                                     'offset' attribute (H5MD 1.1); both optional
                                     (MDAnalysis writes neither)
    image/value     [T][N][D]      optional periodic images
    species         [N] or value [T][N]
                                   Integer (named "0", "1", ...; species 0 is the
                                   first species of the structure configuration
                                   unless a species map says otherwise),
                                   Enumeration (the enum names are used), strings,
                                   or floats holding integers (znh5md: atomic
                                   numbers, named "18", ...; map them with
                                   input.species_map). Optional (H5MD 1.1): without
                                   it every particle is one species named "0".
    id              [N]            optional particle identifiers
    box             attributes 'dimension', 'boundary' (all 'periodic');
                    'edges' as an attribute, a [D] dataset, a [D][D] matrix whose
                    rows are the box vectors (triclinic allowed; a cell not in
                    freud's form is rotated with the positions), or a
                    time-dependent element edges/value of either shape

NaN padding (znh5md stores frames with fewer particles as NaN rows): rows
that are NaN in every position component and species of frame 0 are padding
and dropped; a frame whose set of padded rows differs from frame 0's has
another number of particles, which is refused.

``parameters`` (root group): attribute or scalar dataset ``temperature``.

H5MD defines no box origin, and without ``image`` a position may be any
periodic image of the particle: the box is taken centred on zero, positions
with ``image`` are range-checked, positions without it are not, and they are
unwrapped by minimum image (fractional coordinates). The dimension follows
:func:`adapters.trajectory.infer_dimensions` (a 3-D file whose z are all
equal in frame 0 is 2D).
"""

from __future__ import annotations

import numpy as np

from adapters.trajectory import (
    Frame,
    Trajectory,
    box_from_cell,
    check_frame_memory,
    flat_positions,
    infer_dimensions,
    make_box,
)
from diag.dataset import check_hdf5_heaps, check_vlen_lengths, h5_kind, read_attr
from diag.errors import DataError

NAME = "h5md"
EXTENSIONS = (".h5md", ".h5", ".hdf5", ".hdf")
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sniff(head: bytes) -> bool:
    # the HDF5 superblock may follow a user block of 512, 1024, 2048 ... bytes
    return any(head[o : o + 8] == _SIGNATURE for o in (0, 512, 1024, 2048))


def _short(exc: BaseException) -> str:
    """The first line of an exception's message (a KeyError's without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.splitlines()[0][:140] if text.strip() else type(exc).__name__


def _as_str(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _dataset(obj, what: str, path: str):
    """``obj`` if it is an HDF5 dataset, else a DataError (a group or named type in its place)."""
    import h5py

    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"'{what}' is not a dataset", path)
    return obj


def _numeric(ds, what: str, path: str, integer: bool = False) -> None:
    """Check a dataset's type before reading it (converting a damaged type can crash libhdf5)."""
    ok = h5_kind(ds.dtype) == "number" and (not integer or np.issubdtype(ds.dtype, np.integer))
    if not ok:
        raise DataError(f"'{what}' has dtype {ds.dtype}, expected {'integers' if integer else 'numbers'}", path)


def _series(elem, name: str, n: int, path: str):
    """Explicit or fixed-increment step/time of a time-dependent element, or None.

    Steps come back as int64 and times as float64; non-integral steps and
    non-finite values are errors.
    """
    if name not in elem:
        return None
    where = f"{elem.name}/{name}".lstrip("/")
    ds = _dataset(elem[name], where, path)
    _numeric(ds, where, path)
    if ds.shape == ():
        inc = np.asarray(ds[()], dtype=np.float64)
        off = read_attr(ds, "offset", "number", path)
        off = np.asarray(0 if off is None else off)
        if off.shape not in ((), (1,)) or not np.issubdtype(off.dtype, np.number):
            raise DataError(f"'{where}' attribute 'offset' is not a number", path)
        arr = float(off.ravel()[0]) + inc * np.arange(n)
    else:
        if ds.shape != (n,):
            raise DataError(f"'{where}' has shape {ds.shape}, expected ({n},)", path)
        arr = np.asarray(ds[()], dtype=np.float64)
    with np.errstate(all="ignore"):
        if not np.isfinite(arr).all():
            raise DataError(f"'{where}' holds a value that is not finite", path)
        if name == "step":
            if (np.rint(arr) != arr).any() or (np.abs(arr) >= 2.0**62).any():
                raise DataError(f"'{where}' holds a value that is not an integer step", path)
            return arr.astype(np.int64)
    return arr


def open(path: str, h5md_group: str | None = None, **options) -> Trajectory:  # noqa: A001
    """Open an H5MD file; see the module docstring for what is read."""
    import h5py

    check_hdf5_heaps(path)  # a damaged global heap would hang libhdf5
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"cannot open as HDF5 ({_short(exc)}); truncated or not an HDF5 file?", path) from None
    try:
        return _open(f, path, h5md_group)
    except DataError:
        f.close()
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, OverflowError, IndexError) as exc:
        # h5py reports damaged metadata as RuntimeError (or AttributeError when an object
        # is not the kind expected)
        f.close()
        raise DataError(f"cannot read H5MD structure ({_short(exc)})", path) from None


def _open(f, path: str, group: str | None) -> Trajectory:
    import h5py

    if "h5md" not in f:
        hint = " (it looks like a glass-diag dataset)" if "samples" in f else ""
        raise DataError(f"not an H5MD file: no 'h5md' group{hint}", path)
    if "particles" not in f or not isinstance(f["particles"], h5py.Group) or not len(f["particles"]):
        raise DataError("no 'particles' group in the H5MD file", path)
    parts = f["particles"]
    names = sorted(parts)
    if group is None:
        if len(names) == 1:
            group = names[0]
        elif "all" in names:
            group = "all"
        else:
            raise DataError(
                f"several particle groups ({', '.join(names)}); choose one with input.h5md_group in the config",
                path,
            )
    if group not in parts:
        raise DataError(f"no particle group '{group}' (have {', '.join(names)})", path)
    g = parts[group]
    where = f"particles/{group}"

    # ---------------------------------------------------------------- position
    if "position" not in g:
        raise DataError(f"no '{where}/position'", path)
    pe = g["position"]
    if isinstance(pe, h5py.Group):
        if "value" not in pe:
            raise DataError(f"no '{where}/position/value'", path)
        pval = _dataset(pe["value"], f"{where}/position/value", path)
        _numeric(pval, f"{where}/position/value", path)
        if pval.ndim != 3:
            raise DataError(f"'{where}/position/value' has shape {pval.shape}, expected (frames, N, D)", path)
        n_frames, n, dim = pval.shape
        steps = _series(pe, "step", n_frames, path)
        times = _series(pe, "time", n_frames, path)
        read_pos = lambda k: pval[k]  # noqa: E731
    else:
        _dataset(pe, f"{where}/position", path)
        _numeric(pe, f"{where}/position", path)
        if pe.ndim != 2:
            raise DataError(f"'{where}/position' has shape {pe.shape}, expected (N, D)", path)
        n_frames = 1
        n, dim = pe.shape
        steps = times = None
        read_pos = lambda k: pe[()]  # noqa: E731
    if n_frames == 0:
        raise DataError(f"'{where}/position' holds no frames", path)
    if dim not in (2, 3):
        raise DataError(f"'{where}/position' has {dim} components per particle, expected 2 or 3", path)
    if n == 0:
        raise DataError(f"'{where}/position' holds no particles", path)
    # the shape comes from the file's header: check it fits before reading anything
    check_frame_memory(n, dim, path)

    # --------------------------------------------------------------------- box
    if "box" not in g:
        raise DataError(f"no '{where}/box'", path)
    bg = g["box"]
    bdim = read_attr(bg, "dimension", "number", path)
    if bdim is not None and np.asarray(bdim).size != 1:
        raise DataError(f"box attribute 'dimension' is not one number ({np.asarray(bdim).shape})", path)
    if bdim is not None and int(np.asarray(bdim).ravel()[0]) != dim:
        raise DataError(f"box dimension {int(np.asarray(bdim).ravel()[0])} differs from the positions' {dim}", path)
    boundary = read_attr(bg, "boundary", "string", path)
    if boundary is None:
        raise DataError(f"'{where}/box' has no 'boundary' attribute", path)
    boundary = [_as_str(b).strip() for b in np.atleast_1d(boundary)]
    if len(boundary) != dim:
        raise DataError(f"box boundary {boundary} does not have {dim} entries", path)
    periodic = [b == "periodic" for b in boundary]

    if "edges" in bg.attrs:
        fixed_edges, edges_val = np.asarray(read_attr(bg, "edges", "number", path), dtype=np.float64), None
    elif "edges" in bg and isinstance(bg["edges"], h5py.Dataset):
        _numeric(bg["edges"], f"{where}/box/edges", path)
        if bg["edges"].shape not in ((dim,), (dim, dim)):
            raise DataError(
                f"box edges have shape {bg['edges'].shape}, expected ({dim},) or ({dim}, {dim})", path
            )
        fixed_edges, edges_val = np.asarray(bg["edges"][()], dtype=np.float64), None
    elif "edges" in bg and isinstance(bg["edges"], h5py.Group) and "value" in bg["edges"]:
        edges_val = _dataset(bg["edges"]["value"], f"{where}/box/edges/value", path)
        _numeric(edges_val, f"{where}/box/edges/value", path)
        fixed_edges = None
        if not edges_val.shape or edges_val.shape[0] != n_frames or edges_val.shape[1:] not in ((dim,), (dim, dim)):
            raise DataError(
                f"'{where}/box/edges/value' has shape {edges_val.shape}, expected ({n_frames}, {dim})", path
            )
    else:
        raise DataError(f"'{where}/box' has no 'edges'", path)
    if fixed_edges is not None and fixed_edges.shape not in ((dim,), (dim, dim)):
        raise DataError(f"box edges have shape {fixed_edges.shape}, expected ({dim},) or ({dim}, {dim})", path)

    def box_of(edges, k):
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim == 2:
            return box_from_cell(edges[:dim, :dim], None, periodic=periodic[:dim], boundary_text=boundary,
                                 path=path, frame=k)
        return make_box(edges[:dim], None, periodic=periodic[:dim], boundary_text=boundary, path=path, frame=k), None

    # ------------------------------------------------------------- dimension
    pos0 = np.asarray(read_pos(0), dtype=np.float64)
    file_dim = dim
    dim = infer_dimensions(pos0[np.isfinite(pos0).all(axis=1)])
    plane = None
    if dim == 2 and file_dim == 3:
        finite = pos0[np.isfinite(pos0).all(axis=1)]
        plane = float(finite[0, 2]) if finite.size else None
    fixed_box = box_of(fixed_edges, 0) if fixed_edges is not None else None

    # ----------------------------------------------------------------- species
    numeric_base = None
    species_td = False
    sval = s0 = None
    padded = np.isnan(pos0).all(axis=1)  # NaN padding rows of frame 0 (znh5md)
    if "species" not in g:
        # H5MD 1.1 makes species optional (MDAnalysis writes none): one species
        species, types, numeric_base = ["0"], np.zeros(n, dtype=np.int64), 0
    else:
        se = g["species"]
        species_td = isinstance(se, h5py.Group)
        if species_td and "value" not in se:
            raise DataError(f"no '{where}/species/value'", path)
        sval = _dataset(se["value"] if species_td else se, f"{where}/species", path)
        expect = (n_frames, n) if species_td else (n,)
        if sval.shape != expect:
            raise DataError(f"'{where}/species' has shape {sval.shape}, expected {expect} for {n} particles", path)
        if h5_kind(sval.dtype) not in ("number", "enum", "string"):
            raise DataError(f"'{where}/species' must be Integer or Enumeration, got {sval.dtype}", path)
        check_vlen_lengths(sval, path)  # string species: damaged lengths would cost gigabytes
        s0 = sval[0] if species_td else sval[()]
        enum = h5py.check_enum_dtype(sval.dtype)
        if enum is not None:
            by_value = {int(v): str(k) for k, v in enum.items()}
            codes = np.asarray(s0, dtype=np.int64)
            uniq, types = np.unique(codes, return_inverse=True)
            species = [by_value.get(int(u), str(int(u))) for u in uniq]
        elif np.issubdtype(sval.dtype, np.integer):
            uniq, types = np.unique(np.asarray(s0, dtype=np.int64), return_inverse=True)
            species = [str(int(u)) for u in uniq]
            numeric_base = 0
        elif np.issubdtype(sval.dtype, np.floating):
            # znh5md: atomic numbers as floats, NaN where a frame has fewer particles
            sf = np.asarray(s0, dtype=np.float64)
            nan_rows = np.isnan(sf)
            real = sf[~nan_rows]
            if not np.isfinite(real).all() or (np.rint(real) != real).any() or (np.abs(real) >= 2.0**53).any():
                bad = real[~np.isfinite(real) | (np.rint(real) != real) | (np.abs(real) >= 2.0**53)][0]
                raise DataError(
                    f"'{where}/species' holds {bad:g}: float species must hold integers (Integer or Enumeration "
                    "species are the H5MD standard)",
                    path,
                )
            if not np.array_equal(nan_rows, padded):
                raise DataError(f"frame 0: '{where}/species' and positions disagree on which rows are NaN padding",
                                path)
            codes = np.zeros(n, dtype=np.int64)
            codes[~nan_rows] = real.astype(np.int64)
            uniq, inv = np.unique(codes[~nan_rows], return_inverse=True)
            types = np.zeros(n, dtype=np.int64)
            types[~nan_rows] = inv
            species = [str(int(u)) for u in uniq]
            creator = ""
            if "h5md/creator" in f and "name" in f["h5md/creator"].attrs:
                creator = _as_str(f["h5md/creator"].attrs["name"]).lower()
            numeric_base = None if creator == "znh5md" else 0  # znh5md stores atomic numbers
        elif h5py.check_string_dtype(sval.dtype) is not None:
            labels = np.array([_as_str(v) for v in s0])
            uniq, types = np.unique(labels, return_inverse=True)
            species = [str(u) for u in uniq]
        else:
            raise DataError(f"'{where}/species' must be Integer or Enumeration, got {sval.dtype}", path)
    keep = np.flatnonzero(~padded)
    if keep.size == 0:
        raise DataError(f"frame 0: every row of '{where}/position' is NaN (no particles)", path)
    if keep.size < n and keep[-1] != keep.size - 1:
        raise DataError(f"frame 0: NaN rows of '{where}/position' are not at the end (not NaN padding); "
                        "a position is not finite", path)
    n_real = int(keep.size)
    types = np.asarray(types)[:n_real]

    # -------------------------------------------------------------- image, id
    img_val = None
    if "image" in g:
        ie = g["image"]
        if isinstance(ie, h5py.Group) and "value" not in ie:
            raise DataError(f"no '{where}/image/value'", path)
        img_val = _dataset(ie["value"] if isinstance(ie, h5py.Group) else ie, f"{where}/image", path)
        _numeric(img_val, f"{where}/image", path)
        expect = (n_frames, n, file_dim) if isinstance(ie, h5py.Group) else (n, file_dim)
        if img_val.shape != expect:
            raise DataError(f"'{where}/image' has shape {img_val.shape}, expected {expect}", path)
        img_td = isinstance(ie, h5py.Group)
    ids = None
    id_val = None
    if "id" in g:
        ie = g["id"]
        if isinstance(ie, h5py.Group) and "value" not in ie:
            raise DataError(f"no '{where}/id/value'", path)
        id_ds = _dataset(ie["value"] if isinstance(ie, h5py.Group) else ie, f"{where}/id", path)
        _numeric(id_ds, f"{where}/id", path, integer=True)
        id_val = id_ds if isinstance(ie, h5py.Group) else None
        expect = (n_frames, n) if id_val is not None else (n,)
        if id_ds.shape != expect:
            raise DataError(f"'{where}/id' has shape {id_ds.shape}, expected {expect}", path)
        ids = np.asarray(id_ds[0] if id_val is not None else id_ds[()], dtype=np.int64)[:n_real]
    # particles in the order of their ids (a time-dependent id element may reorder them per frame)
    order0 = None
    if ids is not None:
        order0 = np.argsort(ids, kind="stable")
        ids = ids[order0]
        if np.unique(ids).size != ids.size:
            raise DataError(f"'{where}/id' holds duplicate ids", path)
        types = types[order0]

    # ------------------------------------------------------------- temperature
    temperature = source = None
    if "parameters" in f:
        pg = f["parameters"]
        raw = None
        if "temperature" in pg.attrs:
            raw, source = read_attr(pg, "temperature", "number", path), "H5MD parameters attribute 'temperature'"
        elif "temperature" in pg and isinstance(pg["temperature"], h5py.Dataset):
            _numeric(pg["temperature"], "parameters/temperature", path)
            if pg["temperature"].size != 1:
                raise DataError(f"parameters/temperature has shape {pg['temperature'].shape}, expected one number", path)
            raw, source = pg["temperature"][()], "H5MD parameters dataset 'temperature'"
        if raw is not None:
            try:
                temperature = float(np.asarray(raw, dtype=np.float64).ravel()[0])
            except (ValueError, TypeError, IndexError):
                raise DataError(f"parameters/temperature is not a number ({raw!r})", path) from None

    def read_image(k):
        raw = np.asarray(img_val[k] if img_td else img_val[()], dtype=np.float64)[:n_real, :dim]
        if not np.isfinite(raw).all() or (np.abs(raw) >= 2.0**62).any():
            raise DataError(f"frame {k}: '{where}/image' holds a value that is not a finite integer", path)
        return np.rint(raw).astype(np.int64)

    def same_species(a, b) -> bool:
        a, b = np.asarray(a), np.asarray(b)
        if np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating):
            return np.array_equal(a, b, equal_nan=True)
        return np.array_equal(a, b)

    def frames():
        for k in range(n_frames):
            try:
                raw = np.asarray(read_pos(k), dtype=np.float64)
                if n_real < n and not np.isnan(raw[n_real:]).all():
                    raise DataError(
                        f"frame {k}: more particles than frame 0 ({n_real}; NaN padding); the particle number "
                        "must be constant",
                        path,
                    )
                pos = raw[:n_real]
                gone = np.isnan(pos).all(axis=1)
                if gone.any():
                    raise DataError(
                        f"frame {k}: {n_real - int(gone.sum())} particles (NaN padding), frame 0 has {n_real}; "
                        "the particle number must be constant",
                        path,
                    )
                box, rotation = fixed_box if fixed_box is not None else box_of(edges_val[k], k)
                img = None if img_val is None else read_image(k)
                if species_td and k > 0 and id_val is None and not same_species(sval[k], s0):
                    raise DataError(f"frame {k}: particle species differ from frame 0 (must be constant)", path)
                order = order0
                if id_val is not None and k > 0:
                    ids_k = np.asarray(id_val[k], dtype=np.int64)[:n_real]
                    order = np.argsort(ids_k, kind="stable")
                    if not np.array_equal(ids_k[order], ids):
                        raise DataError(f"frame {k}: particle ids differ from frame 0", path)
                    if species_td and not same_species(np.asarray(sval[k])[:n_real][order],
                                                       np.asarray(s0)[:n_real][order0]):
                        raise DataError(f"frame {k}: particle species differ from frame 0 (must be constant)", path)
                if order is not None:
                    pos = pos[order]
                    img = None if img is None else img[order]
                pos = flat_positions(pos, dim, plane, path, k)
                if rotation is not None:
                    pos = np.ascontiguousarray(pos @ rotation)
            except DataError:
                raise
            except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
                raise DataError(f"frame {k}: cannot read ({_short(exc)}); truncated file?", path) from None
            yield Frame(
                index=k,
                box=box,
                positions=pos,
                image=img,
                step=None if steps is None else int(steps[k]),
                time=None if times is None else float(times[k]),
                position_kind="wrapped" if img_val is not None else "any-image",
            )

    return Trajectory(
        path,
        NAME,
        n_frames=n_frames,
        dimensions=dim,
        species=species,
        types=types,
        particle_ids=ids,
        frames=frames,
        position_kind="wrapped" if img_val is not None else "any-image",
        has_images=img_val is not None,
        temperature=temperature,
        temperature_source=source,
        numeric_species_base=numeric_base,
        close=f.close,
        metadata={"particle_group": group, **({} if "species" in g else {"species": "none in the file: one species"})},
    )
