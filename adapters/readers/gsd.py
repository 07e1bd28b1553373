"""GSD reader (HOOMD schema), through the optional ``gsd`` package (>= 3).

Read per frame: ``particles/position``, ``particles/image``,
``configuration/box`` (``[Lx, Ly, Lz, xy, xz, yz]``, orthorhombic or
triclinic: HOOMD's tilt factors are freud's, taken as they are),
``configuration/step``; and once ``configuration/dimensions``,
``particles/types`` and ``particles/typeid`` (which must not change). HOOMD
boxes are centred on zero and periodic. The dimension follows
:func:`adapters.trajectory.infer_dimensions`: ``configuration/dimensions``
2, or every z of frame 0 equal, is 2D.

Image flags: gsd omits a chunk that equals frame 0 and readers then fall back
to frame 0, and HOOMD does not store ``particles/image`` after frame 0 unless
asked to. So the images are used only when some frame after the first stores
them; otherwise the trajectory is unwrapped by minimum image.

Temperature: the mean, over frames, of the first logged scalar (sorted by name)
whose name contains ``temperature`` (e.g.
``md/compute/ThermodynamicQuantities/kinetic_temperature``), if any.

Install the optional dependency with ``pip install 'glass-diag[gsd]'``.
"""

from __future__ import annotations

import warnings

import numpy as np

from adapters.trajectory import Frame, Trajectory, flat_positions, infer_dimensions, make_box
from diag.errors import DataError, UsageError

NAME = "gsd"
EXTENSIONS = (".gsd",)
_MAGIC = b"\xdf\x65\xdf\x65\xdf\x65\xdf\x65"


def sniff(head: bytes) -> bool:
    return head[:8] == _MAGIC


def _import_gsd(path: str):
    try:
        import gsd.hoomd
    except ImportError:
        raise UsageError(
            "reading GSD files needs the optional 'gsd' package: pip install 'glass-diag[gsd]'", path
        ) from None
    return gsd.hoomd


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:140] if str(exc) else type(exc).__name__


def open(path: str, **options) -> Trajectory:  # noqa: A001 - the reader protocol's name
    """Open a GSD file; see the module docstring for what is read."""
    hoomd = _import_gsd(path)
    try:
        traj = hoomd.open(path, "r")
    except Exception as exc:  # gsd raises RuntimeError, OSError, ValueError ... on bad files
        raise DataError(f"cannot open as GSD ({_short(exc)}); truncated or not a GSD file?", path) from None
    try:
        return _open(traj, path, hoomd)
    except DataError:
        traj.close()
        raise
    except Exception as exc:
        traj.close()
        raise DataError(f"cannot read GSD file ({_short(exc)})", path) from None


class _Chunks:
    """Chunks read straight from the file layer, with the HOOMD fallbacks.

    ``gsd.hoomd`` frames fill every missing per-particle chunk with an array of
    ``particles/N`` rows, so a corrupt ``N`` makes it allocate gigabytes before
    anything can be checked. Reading the chunks themselves is bounded by the
    file size (the file layer checks every chunk against it).
    """

    def __init__(self, gfile):
        self.gfile = gfile
        self._frame0: dict[str, object] = {}

    def get(self, k: int, name: str):
        """Chunk ``name`` of frame ``k``, else of frame 0 (HOOMD semantics), else None."""
        if k > 0 and self.gfile.chunk_exists(frame=k, name=name):
            return self.gfile.read_chunk(frame=k, name=name)
        if name not in self._frame0:
            exists = self.gfile.chunk_exists(frame=0, name=name)
            self._frame0[name] = self.gfile.read_chunk(frame=0, name=name) if exists else None
        return self._frame0[name]

    def scalar(self, k: int, name: str, default):
        c = self.get(k, name)
        if c is None:
            return default
        c = np.asarray(c).ravel()
        if c.size != 1 or not np.issubdtype(c.dtype, np.number):
            raise DataError(f"frame {k}: {name} is not one number (shape {c.shape}, {c.dtype})", self.gfile.name)
        return c[0]


def _int_array(a, what: str, path: str, k: int) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"frame {k}: {what} must hold integers, got {a.dtype}", path)
    return a.astype(np.int64)


def _type_names(raw, path: str) -> list[str]:
    a = np.asarray(raw)
    if a.ndim != 2 or a.dtype.itemsize != 1:
        raise DataError(f"particles/types has shape {a.shape} ({a.dtype}), expected (types, chars) of bytes", path)
    try:
        names = [bytes(row).split(b"\0", 1)[0].decode("utf-8") for row in a.view(np.uint8)]
    except UnicodeDecodeError:
        raise DataError("particles/types holds names that are not UTF-8 text", path) from None
    return names


def _open(traj, path: str, hoomd) -> Trajectory:
    gfile = traj.file
    n_frames = int(gfile.nframes)
    if n_frames == 0:
        raise DataError("the GSD file holds no frames", path)
    ch = _Chunks(gfile)
    n = int(ch.scalar(0, "particles/N", 0))
    if n <= 0:
        raise DataError("frame 0 has no particles", path)
    pos0 = ch.get(0, "particles/position")
    if pos0 is None:
        raise DataError("frame 0 stores no particles/position", path)
    if np.shape(pos0) != (n, 3):
        raise DataError(
            f"particles/position has shape {np.shape(pos0)} for particles/N = {n}, expected ({n}, 3)", path
        )
    dim = int(ch.scalar(0, "configuration/dimensions", 3))
    if dim not in (2, 3):
        raise DataError(f"configuration/dimensions is {dim}", path)
    pos0 = np.asarray(pos0, dtype=np.float64)
    img0 = ch.get(0, "particles/image")
    img0 = _int_array(img0, "particles/image", path, 0) if img0 is not None and np.shape(img0) == (n, 3) else None
    dim = infer_dimensions(pos0, declared=dim, images0=img0)
    plane = float(pos0[0, 2]) if dim == 2 else None
    raw_types = ch.get(0, "particles/types")
    species = ["A"] if raw_types is None else _type_names(raw_types, path)
    raw_typeid = ch.get(0, "particles/typeid")
    typeid = np.zeros(n, dtype=np.int64) if raw_typeid is None else _int_array(raw_typeid, "particles/typeid", path, 0)
    if typeid.shape != (n,):
        raise DataError(f"particles/typeid has shape {typeid.shape}, expected ({n},)", path)
    if typeid.size and (typeid.min() < 0 or typeid.max() >= len(species)):
        raise DataError("particles/typeid refers to a type not in particles/types", path)
    has_images = any(gfile.chunk_exists(frame=k, name="particles/image") for k in range(1, n_frames))

    temperature = source = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No logged data in file" is not a problem here
            log = hoomd.read_log(path, scalar_only=True)
    except Exception:  # older files without a log section
        log = {}
    keys = sorted(k for k in log if k.startswith("log/") and "temperature" in k.lower())
    if keys:
        try:
            vals = np.asarray(log[keys[0]], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise DataError(f"logged '{keys[0]}' is not numeric", path) from None
        if vals.size == 0 or not np.isfinite(vals).all():
            raise DataError(f"logged '{keys[0]}' is empty or not finite", path)
        temperature = float(vals.mean())
        source = f"GSD log '{keys[0][4:]}' (mean over {vals.size} frames)"

    def read_frame(k: int) -> Frame:
        if gfile.chunk_exists(frame=k, name="particles/N"):
            nk = int(ch.scalar(k, "particles/N", 0))
            if nk != n:
                raise DataError(f"frame {k}: {nk} particles, frame 0 has {n}; must be constant", path)
        if k > 0 and gfile.chunk_exists(frame=k, name="particles/typeid"):
            tk = _int_array(ch.get(k, "particles/typeid"), "particles/typeid", path, k)
            if not np.array_equal(tk, typeid):
                raise DataError(f"frame {k}: particle types differ from frame 0 (must be constant)", path)
        raw_box = ch.get(k, "configuration/box")
        b = np.array([1, 1, 1, 0, 0, 0], dtype=np.float64) if raw_box is None else np.asarray(raw_box, dtype=np.float64)
        if b.shape != (6,):
            raise DataError(f"frame {k}: configuration/box has shape {b.shape}, expected (6,)", path)
        box = make_box(b[:dim], None, tilts=b[3:6], path=path, frame=k)
        pos = np.asarray(ch.get(k, "particles/position"), dtype=np.float64)
        if pos.shape != (n, 3):
            raise DataError(f"frame {k}: particles/position has shape {pos.shape}, expected ({n}, 3)", path)
        img = None
        if has_images:
            raw_img = ch.get(k, "particles/image")
            if raw_img is None:
                img = np.zeros((n, dim), dtype=np.int64)
            else:
                img = _int_array(raw_img, "particles/image", path, k)
                if img.shape != (n, 3):
                    raise DataError(f"frame {k}: particles/image has shape {img.shape}, expected ({n}, 3)", path)
                img = np.ascontiguousarray(img[:, :dim])
        step = ch.scalar(k, "configuration/step", 0)
        if not np.issubdtype(np.asarray(step).dtype, np.integer):
            raise DataError(f"frame {k}: configuration/step is not an integer ({step!r})", path)
        return Frame(
            index=k,
            box=box,
            positions=flat_positions(pos, dim, plane, path, k),
            image=img,
            step=int(step),
            time=None,
            position_kind="wrapped",
        )

    def frames():
        for k in range(n_frames):
            try:
                fr = read_frame(k)
            except DataError:
                raise
            except Exception as exc:  # the gsd file layer raises RuntimeError, OSError, ValueError ...
                raise DataError(f"frame {k}: cannot read ({_short(exc)}); truncated file?", path) from None
            yield fr

    return Trajectory(
        path,
        NAME,
        n_frames=n_frames,
        dimensions=dim,
        species=species,
        types=typeid,
        frames=frames,
        position_kind="wrapped",
        has_images=has_images,
        temperature=temperature,
        temperature_source=source,
        close=traj.close,
    )
