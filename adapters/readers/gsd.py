"""GSD reader (HOOMD schema), through the optional ``gsd`` package (>= 3).

Read per frame: ``particles/position``, ``particles/image``,
``configuration/box`` (``[Lx, Ly, Lz, xy, xz, yz]``; non-zero tilts are a
triclinic box and are refused), ``configuration/step``; and once
``configuration/dimensions``, ``particles/types`` and ``particles/typeid``
(which must not change). HOOMD boxes are centred on zero and periodic.

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

from adapters.trajectory import Frame, Trajectory, make_box
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


def _open(traj, path: str, hoomd) -> Trajectory:
    n_frames = len(traj)
    if n_frames == 0:
        raise DataError("the GSD file holds no frames", path)
    f0 = traj[0]
    n = int(f0.particles.N)
    if n <= 0:
        raise DataError("frame 0 has no particles", path)
    dim = int(f0.configuration.dimensions)
    if dim not in (2, 3):
        raise DataError(f"configuration/dimensions is {dim}", path)
    species = [str(t) for t in f0.particles.types]
    typeid = np.asarray(f0.particles.typeid, dtype=np.int64)
    if typeid.shape != (n,):
        raise DataError(f"particles/typeid has shape {typeid.shape}, expected ({n},)", path)
    if typeid.size and (typeid.min() < 0 or typeid.max() >= len(species)):
        raise DataError("particles/typeid refers to a type not in particles/types", path)
    gfile = traj.file
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
        vals = np.asarray(log[keys[0]], dtype=np.float64).ravel()
        if vals.size == 0 or not np.isfinite(vals).all():
            raise DataError(f"logged '{keys[0]}' is empty or not finite", path)
        temperature = float(vals.mean())
        source = f"GSD log '{keys[0][4:]}' (mean over {vals.size} frames)"

    def frames():
        for k in range(n_frames):
            try:
                fr = traj[k]
            except Exception as exc:
                raise DataError(f"frame {k}: cannot read ({_short(exc)}); truncated file?", path) from None
            if int(fr.particles.N) != n:
                raise DataError(f"frame {k}: {fr.particles.N} particles, frame 0 has {n}; must be constant", path)
            if k > 0 and gfile.chunk_exists(frame=k, name="particles/typeid"):
                if not np.array_equal(np.asarray(fr.particles.typeid, dtype=np.int64), typeid):
                    raise DataError(f"frame {k}: particle types differ from frame 0 (must be constant)", path)
            b = np.asarray(fr.configuration.box, dtype=np.float64)
            if b.shape != (6,):
                raise DataError(f"frame {k}: configuration/box has shape {b.shape}, expected (6,)", path)
            tilts = b[3:4] if dim == 2 else b[3:6]
            box = make_box(b[:dim], None, tilts=tilts, path=path, frame=k)
            pos = np.asarray(fr.particles.position, dtype=np.float64)
            if pos.ndim != 2 or pos.shape[1] != 3:
                raise DataError(f"frame {k}: particles/position has shape {pos.shape}, expected ({n}, 3)", path)
            img = None
            if has_images:
                img = np.asarray(fr.particles.image, dtype=np.int64)
                if img.ndim == 2 and img.shape[1] == 3:
                    img = img[:, :dim]
            yield Frame(
                index=k,
                box=box,
                positions=np.ascontiguousarray(pos[:, :dim]),
                image=None if img is None else np.ascontiguousarray(img),
                step=int(fr.configuration.step),
                time=None,
                position_kind="wrapped",
            )

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
