"""The dataset contract: one versioned HDF5 layout written by every producer, read by ``diag``.

Layout (schema version 2; see ``docs/dataset.md``)::

    /                       attrs: format, schema_version, conventions (JSON),
                                   provenance (JSON)
    /samples/features       float32 (n_samples, n_features), chunked
    /samples/label          int8    (n_samples,)   natural label R: 1 rearranges, 0 does not
    /samples/role           int8    (n_samples,)   training role: 1 soft, 0 hard, -1 neither
    /samples/natural        int8    (n_samples,)   1: member of the natural population sample
    /samples/temperature    float64 (n_samples,)
    /samples/group          int64   (n_samples,)   frame / trajectory / block id
    /samples/energy         float64 (n_samples,)   optional: true barrier (toy)
    /samples/p_hop          float32 (n_samples,)   optional
    /samples/species        int32   (n_samples,)   optional
    /samples/particle       int64   (n_samples,)   optional
    /features/name          str     (n_features,)
    /features/family        str     (n_features,)
    /features/params        str     (n_features,)  JSON object per feature

Producers build a :class:`Dataset` and call :meth:`Dataset.write`; consumers call
:func:`read_dataset`. Both validate through :meth:`Dataset.validate`.

Two populations live in one file (METHOD section 5): the **training set** (``role`` 1
soft / 0 hard; the SVM is trained on it) and the **natural population** (``natural == 1``:
every centre particle at the sampled frames, or a recorded subsample of them, with its
natural label R). A sample can belong to both. Schema-1 files have neither array: they are
read with ``role = label`` and every sample natural; :attr:`Dataset.training_only` then
tells whether the file holds only the training set (trajectory datasets of schema 1).
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import stat
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, GlassDiagError

FORMAT = "glass-diag/dataset"
SCHEMA_VERSION = 2

#: rows of features read at a time by a lazy :class:`FeatureStore` (whole chunks, about this many bytes)
STORE_BLOCK_BYTES = 32 << 20

#: training roles
ROLE_SOFT, ROLE_HARD, ROLE_NEITHER = 1, 0, -1

_REQUIRED = ("features", "label", "temperature", "group")
_OPTIONAL = {
    "energy": np.float64,
    "p_hop": np.float32,
    "species": np.int32,
    "particle": np.int64,
    "role": np.int8,
    "natural": np.int8,
}


@dataclass
class Dataset:
    """Samples, labels and features of one study, with their conventions.

    Attributes
    ----------
    features : ndarray, shape (n_samples, n_features), float32
    label : ndarray, shape (n_samples,), int8
        The natural label R: 1 if the particle rearranges at its frame (p_hop > p_c), else 0.
    temperature : ndarray, shape (n_samples,), float64
    group : ndarray, shape (n_samples,), int64
        Samples sharing a group (a frame, a trajectory, a block of toy samples)
        are correlated and are always kept together when splitting.
    feature_names, feature_families : list of str, length n_features
    feature_params : list of dict, length n_features
        Per-feature parameters (grid point r, species, width, ...).
    energy, p_hop, species, particle : ndarray, shape (n_samples,), optional
        ``energy`` is the true barrier, known only for synthetic data.
    role : ndarray, shape (n_samples,), int8, optional
        Training role: 1 soft, 0 hard, -1 neither (not in the training set). Default:
        ``label`` (every sample is a training sample of its class, as in the toy model).
    natural : ndarray, shape (n_samples,), int8, optional
        1 when the sample belongs to the natural population (P(R|S,T), the Arrhenius fits
        and the criterion are measured on these), 0 when it is stored only as a training
        sample (outside a subsample of the natural population). Default: all 1.
    conventions : dict
        Every convention the numbers depend on (widths, windows, thresholds).
    provenance : dict
        Generator, version, seed and parameters that produced the file.
    path : str or None
        The file the dataset was read from, for messages.
    """

    features: np.ndarray
    label: np.ndarray
    temperature: np.ndarray
    group: np.ndarray
    feature_names: list[str]
    feature_families: list[str] | None = None
    feature_params: list[dict[str, Any]] | None = None
    energy: np.ndarray | None = None
    p_hop: np.ndarray | None = None
    species: np.ndarray | None = None
    particle: np.ndarray | None = None
    role: np.ndarray | None = None
    natural: np.ndarray | None = None
    conventions: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureStore):  # a lazy store stays in the file
            self.features = np.asarray(self.features, dtype=np.float32)
        self.label = np.asarray(self.label).astype(np.int8, copy=False)
        self.temperature = np.asarray(self.temperature, dtype=np.float64)
        self.group = np.asarray(self.group).astype(np.int64, copy=False)
        self.feature_names = [str(s) for s in self.feature_names]
        d = len(self.feature_names)
        if self.feature_families is None:
            self.feature_families = ["generic"] * d
        if self.feature_params is None:
            self.feature_params = [{} for _ in range(d)]
        for key, dtype in _OPTIONAL.items():
            val = getattr(self, key)
            if val is not None:
                setattr(self, key, np.asarray(val).astype(dtype, copy=False))
        if self.role is None:
            self.role = self.label.copy()
        if self.natural is None:
            self.natural = np.ones(self.label.shape, dtype=np.int8)

    @property
    def training_only(self) -> bool:
        """True when the file holds only the training set, not the natural population.

        Schema-1 datasets made from trajectories stored only soft and hard particles;
        P(R|S,T) measured on them is distorted (METHOD section 5, "Two populations").
        """
        return self.schema_version < 2 and self.provenance.get("generator") == "glass-diag features"

    @property
    def species_names(self) -> list[str] | None:
        """Names of the species ids in ``species`` (``conventions['species_names']``), if recorded."""
        names = self.conventions.get("species_names")
        if names is None:
            st = self.conventions.get("structure")
            if isinstance(st, dict):
                names = st.get("species")
        return None if names is None else [str(x) for x in names]

    def species_name(self, sid: int) -> str:
        names = self.species_names
        return names[sid] if names is not None and 0 <= sid < len(names) else str(sid)

    def subset(self, mask: np.ndarray) -> "Dataset":
        """The samples selected by a boolean mask (or index array), same features and conventions."""
        idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask)
        kw = {}
        # a lazy store gives a lazy view of the rows (nothing read yet); an array, a copy
        feats = self.features.rows(idx) if isinstance(self.features, FeatureStore) else self.features[idx]
        for key in ("label", "temperature", "group", *_OPTIONAL):
            v = getattr(self, key)
            kw[key] = None if v is None else v[idx]
        return Dataset(
            features=feats,
            feature_names=list(self.feature_names),
            feature_families=list(self.feature_families),
            feature_params=list(self.feature_params),
            conventions=dict(self.conventions),
            provenance=dict(self.provenance),
            path=self.path,
            schema_version=self.schema_version,
            **kw,
        )

    @property
    def lazy(self) -> bool:
        """True when the features are read from the file on demand (:class:`FeatureStore`)."""
        return isinstance(self.features, FeatureStore)

    def in_memory(self) -> "Dataset":
        """This dataset with its features as an in-memory array (itself when they already are)."""
        if not self.lazy:
            return self
        from dataclasses import replace

        return replace(self, features=np.asarray(self.features))

    # ------------------------------------------------------------------ basics
    @property
    def n_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def temperatures(self) -> np.ndarray:
        """Sorted distinct temperatures, shape (n_temperatures,)."""
        return np.unique(self.temperature)

    def validate(self) -> "Dataset":
        """Check shapes, dtypes and values; raise :class:`DataError` naming the file.

        Returns
        -------
        self
        """
        p = self.path
        X = self.features
        if X.ndim != 2:
            raise DataError(f"features must be 2-D (samples x features), got shape {X.shape}", p)
        n, d = X.shape
        if n == 0:
            raise DataError("the dataset has no samples", p)
        if d == 0:
            raise DataError("the dataset has no features", p)
        for name in ("label", "temperature", "group", *_OPTIONAL):
            arr = getattr(self, name)
            if arr is None:
                continue
            if arr.shape != (n,):
                raise DataError(
                    f"samples/{name} has shape {arr.shape}, expected ({n},) to match samples/features", p
                )
        if len(self.feature_names) != d:
            raise DataError(f"features/name has {len(self.feature_names)} entries for {d} features", p)
        if len(set(self.feature_names)) != d:
            dup = sorted({s for s in self.feature_names if self.feature_names.count(s) > 1})
            raise DataError(f"duplicate feature names: {', '.join(dup[:5])}", p)
        if len(self.feature_families) != d or len(self.feature_params) != d:
            raise DataError("features/family and features/params must have one entry per feature", p)
        blocks = X.iter_blocks() if isinstance(X, FeatureStore) else [(0, X)]
        n_bad, first = 0, None
        for start, block in blocks:  # a lazy store is checked block by block
            bad = ~np.isfinite(block)
            if bad.any():
                n_bad += int(bad.sum())
                if first is None:
                    rows, cols = np.nonzero(bad)
                    first = (start + int(rows[0]), int(cols[0]))
        if n_bad:
            raise DataError(
                f"{n_bad} non-finite feature values (NaN or inf), first at sample {first[0]}, "
                f"feature '{self.feature_names[first[1]]}'",
                p,
            )
        if not np.isin(self.label, (0, 1)).all():
            raise DataError("samples/label must contain only 0 and 1", p)
        if not np.isin(self.role, (ROLE_SOFT, ROLE_HARD, ROLE_NEITHER)).all():
            raise DataError("samples/role must contain only 1 (soft), 0 (hard) and -1 (neither)", p)
        if not np.isin(self.natural, (0, 1)).all():
            raise DataError("samples/natural must contain only 0 and 1", p)
        if not self.natural.any():
            raise DataError("no sample belongs to the natural population (samples/natural is all 0)", p)
        if (self.role[self.natural == 0] == ROLE_NEITHER).any():
            raise DataError("some samples are neither natural nor in the training set (natural 0, role -1)", p)
        if not np.isfinite(self.temperature).all() or (self.temperature <= 0).any():
            raise DataError("samples/temperature must be finite and positive", p)
        for name in ("energy", "p_hop"):
            arr = getattr(self, name)
            if arr is not None and not np.isfinite(arr).all():
                raise DataError(f"samples/{name} contains NaN or inf", p)
        return self

    def select_features(self, columns) -> "Dataset":
        """A view of this dataset restricted to some feature columns.

        Parameters
        ----------
        columns : sequence of int or str
            Column indices or feature names, in the order wanted.
        """
        idx = [self.feature_names.index(c) if isinstance(c, str) else int(c) for c in columns]
        return Dataset(
            features=self.features[:, idx],
            label=self.label,
            temperature=self.temperature,
            group=self.group,
            feature_names=[self.feature_names[i] for i in idx],
            feature_families=[self.feature_families[i] for i in idx],
            feature_params=[self.feature_params[i] for i in idx],
            energy=self.energy,
            p_hop=self.p_hop,
            species=self.species,
            particle=self.particle,
            role=self.role,
            natural=self.natural,
            conventions=dict(self.conventions),
            provenance=dict(self.provenance),
            path=self.path,
            schema_version=self.schema_version,
        )

    # --------------------------------------------------------------------- I/O
    def write(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the dataset atomically (temporary file in the same folder, then rename).

        Parameters
        ----------
        path : path-like
            Destination ``.h5`` file.
        overwrite : bool
            Replace an existing file. Without it an existing file is an error.

        Returns
        -------
        Path of the written file.
        """
        import h5py

        self.validate()
        from .atomic import atomic_output, check_output_path

        path = check_output_path(path, overwrite)
        try:
            self._write_atomic(path, h5py, atomic_output)
        except (OSError, RuntimeError) as exc:  # disk full, quota, I/O error, permission denied
            reason = getattr(exc, "strerror", None) or _short(exc)
            raise GlassDiagError(f"cannot write the dataset ({reason}); nothing was written", str(path)) from None
        return path

    def _write_atomic(self, path: Path, h5py, atomic_output) -> None:
        with atomic_output(path, suffix=".h5.tmp") as tmp, held_interrupts() as interrupts:
            n, d = self.features.shape
            str_dt = h5py.string_dtype("utf-8")
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["conventions"] = json.dumps(self.conventions, sort_keys=True, default=_json_default)
                f.attrs["provenance"] = json.dumps(self.provenance, sort_keys=True, default=_json_default)
                s = f.create_group("samples")
                chunk_rows = int(max(1, min(n, (1 << 20) // max(1, 4 * d))))
                X = s.create_dataset("features", shape=(n, d), dtype=np.float32, chunks=(chunk_rows, d))
                block = chunk_rows * max(1, (64 << 20) // max(1, 4 * d * chunk_rows))  # ~64 MiB, whole chunks
                for a in range(0, n, block):  # in blocks, so that Ctrl-C is acted on within a block
                    X[a : a + block] = self.features[a : a + block]
                    interrupts.check()
                s.create_dataset("label", data=self.label)
                s.create_dataset("temperature", data=self.temperature)
                s.create_dataset("group", data=self.group)
                for key in _OPTIONAL:
                    val = getattr(self, key)
                    if val is not None:
                        s.create_dataset(key, data=val)
                interrupts.check()
                g = f.create_group("features")
                g.create_dataset("name", data=np.array(self.feature_names, dtype=object), dtype=str_dt)
                g.create_dataset("family", data=np.array(self.feature_families, dtype=object), dtype=str_dt)
                params = [json.dumps(p, sort_keys=True, default=_json_default) for p in self.feature_params]
                g.create_dataset("params", data=np.array(params, dtype=object), dtype=str_dt)


class FeatureStore:
    """The feature matrix of a dataset file, read on demand in row blocks.

    Used by :func:`read_dataset` for datasets too large to hold comfortably in memory
    (``docs/memory.md``). It behaves like a read-only ``(n_samples, n_features)`` float32
    array for the ways the audit uses one: ``store[rows]`` with an integer array
    (any order), a boolean mask, a slice or an int, ``store[rows, cols]`` and
    ``store[np.ix_(rows, cols)]``, :meth:`iter_blocks`, and ``np.asarray(store)``. Every
    request returns a new in-memory array of just the rows asked for; a request larger than
    the memory available is refused (:class:`DataError`) instead of swapping.

    Rows are read as contiguous spans of at most :attr:`block_rows` file rows (whole
    HDF5 chunks), so a scattered request costs one read per block it touches, not one per row.

    Parameters
    ----------
    path : str
        The dataset file.
    name : str
        The HDF5 dataset holding the features.
    rows : ndarray of int, shape (m,), optional
        Sorted file rows of a view (:meth:`rows`); default every row.
    block_rows : int, optional
        Rows per read; default whole chunks totalling about :data:`STORE_BLOCK_BYTES`.

    Attributes
    ----------
    shape : tuple (n_samples, n_features)
    dtype : numpy.dtype
        float32, whatever the file's numeric type (converted as the in-memory reader does).
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path: str, name: str = "samples/features", rows: np.ndarray | None = None,
                 block_rows: int | None = None):
        self.path = str(path)
        self.name = name
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._block_rows = block_rows
        self._open()

    def _open(self) -> None:
        import h5py

        try:
            self._file = h5py.File(self.path, "r")
            self._dset = self._file[self.name]
        except (OSError, KeyError) as exc:
            raise DataError(f"cannot open the features for reading ({_short(exc)})", self.path) from None
        self._n_file, d = (int(x) for x in self._dset.shape)
        n = self._n_file if self._rows is None else int(self._rows.size)
        self.shape = (n, d)
        chunk = int(self._dset.chunks[0]) if self._dset.chunks else 1024
        per = max(1, STORE_BLOCK_BYTES // max(1, 4 * d))
        self.block_rows = int(self._block_rows or max(chunk, per // chunk * chunk))

    # pickling (process schedulers): the path and the view travel, the file is reopened
    def __getstate__(self) -> dict:
        return {"path": self.path, "name": self.name, "_rows": self._rows, "_block_rows": self._block_rows}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def close(self) -> None:
        """Close the file (the store cannot be read afterwards)."""
        self._file.close()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"FeatureStore({self.path!r}, shape={self.shape})"

    def rows(self, idx) -> "FeatureStore":
        """A lazy view of some rows (sorted first: the order of ``idx`` is not kept)."""
        sel = np.unique(self._index(idx))
        return FeatureStore(self.path, self.name, sel if self._rows is None else self._rows[sel], self._block_rows)

    def _index(self, key) -> np.ndarray:
        """Row positions (into this view) of an int, slice, bool mask or int array."""
        n = self.shape[0]
        if isinstance(key, slice):
            return np.arange(n)[key]
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            return np.flatnonzero(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"rows must be integers, a slice or a boolean mask, got {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).ravel()
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def _read(self, pos: np.ndarray) -> np.ndarray:
        """Rows at positions ``pos`` (this view), shape (len(pos), d), float32, in the order asked."""
        from .resources import check_memory

        d = self.shape[1]
        check_memory(4.0 * pos.size * d, f"reading {pos.size} x {d} features", self.path)
        order = None
        if pos.size > 1 and (np.diff(pos) < 0).any():
            order = np.argsort(pos, kind="stable")
            pos = pos[order]
        rows = pos if self._rows is None else self._rows[pos]
        out = np.empty((rows.size, d), dtype=np.float32)
        B = self.block_rows
        i = 0
        while i < rows.size:
            lo = int(rows[i])
            j = int(np.searchsorted(rows, lo + B, side="left"))  # rows of the span [lo, lo + B)
            hi = int(rows[j - 1]) + 1
            out[i:j] = self._span(lo, hi)[rows[i:j] - lo]
            i = j
        if order is not None:
            res = np.empty_like(out)
            res[order] = out
            out = res
        return out

    def _span(self, lo: int, hi: int) -> np.ndarray:
        try:
            raw = self._dset[lo:hi]
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read '{self._dset.name}' ({_short(exc)}); the file may be truncated",
                            self.path) from None
        with np.errstate(all="ignore"):  # out-of-range values become inf, as in the in-memory reader
            return raw.astype(np.float32, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError("features are 2-D: index with rows or (rows, columns)")
            rk, ck = key
            if isinstance(rk, np.ndarray) and rk.ndim == 2 and np.ndim(ck) == 2:  # np.ix_(rows, cols)
                rk, ck = rk.ravel(), np.asarray(ck).ravel()
            return self[rk][:, ck]
        if isinstance(key, (int, np.integer)):
            return self._read(self._index(np.array([key])))[0]
        return self._read(self._index(key))

    def iter_blocks(self, block_rows: int | None = None):
        """Consecutive blocks of rows: yields ``(start, block)``, block of shape (m, d) float32."""
        B = int(block_rows or self.block_rows)
        for a in range(0, self.shape[0], B):
            yield a, self[a : a + B]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every row in memory (refused when it does not fit)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


class held_interrupts:
    """Hold SIGINT and SIGTERM while a file is written; act on them at safe points.

    A signal's Python handler runs at whatever Python code executes next, and while
    h5py writes that is often a weakref callback that frees an HDF5 object: there the
    KeyboardInterrupt is printed as "Exception ignored ... Traceback" and dropped, and
    the interrupted run goes on to publish its output (found by tests/test_interrupts.py).
    Inside this context manager the signals are only recorded; :meth:`check` (called by
    the writer between blocks) and the end of the block give a recorded signal the
    handling it would have had: KeyboardInterrupt for Python handlers (the CLI turns
    SIGTERM into one too), SystemExit(128 + signal) for a default SIGTERM, nothing for an
    ignored one. Used inside :func:`diag.atomic.atomic_output`, before the rename, so the
    temporary file is removed and nothing is published.

    Only the main thread can set signal handlers; elsewhere this does nothing.
    """

    def __init__(self):
        self._got: list[int] = []
        self._previous: dict = {}

    def _record(self, signum, frame) -> None:
        self._got.append(signum)

    def __enter__(self) -> "held_interrupts":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(sig)
                if handler is signal.SIG_IGN or handler is None:
                    continue  # ignored (e.g. a background job's SIGINT), or not set from Python
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def check(self) -> None:
        """Act on a signal received so far (raise), else return."""
        if not self._got:
            return
        sig = self._got[0]
        handler = self._previous.get(sig)
        if callable(handler):
            handler(sig, None)  # default_int_handler, the CLI's SIGTERM handler: KeyboardInterrupt
        raise SystemExit(128 + sig)  # a default SIGTERM: terminate, after the cleanup

    def __exit__(self, exc_type, exc, tb) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if exc_type is None:
            self.check()
        return False


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_dataset_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file in the glass-diag dataset layout (cheap: reads no data)."""
    import h5py

    p = str(path)
    if not os.path.isfile(p):
        return False
    try:
        if not h5py.is_hdf5(p):
            return False
        with h5py.File(p, "r") as f:
            fmt = f.attrs.get("format")
            if fmt is not None:
                return _as_str(fmt) == FORMAT
            return "samples" in f and "h5md" not in f
    except (OSError, ValueError):
        return False


def read_dataset(path: str | os.PathLike, lazy: bool | None = None) -> Dataset:
    """Read and validate a dataset file.

    Parameters
    ----------
    path : path-like
        An HDF5 file in the glass-diag dataset layout.
    lazy : bool, optional
        Leave the features in the file (:class:`FeatureStore`, read in row blocks) instead
        of loading them. Default: lazy when they would be large
        (:func:`diag.resources.features_lazy`, ``docs/memory.md``); the per-sample arrays
        (labels, roles, temperatures, groups, ...) are always loaded.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        With a one-line message naming the file, for a missing, unreadable,
        non-HDF5 or malformed file.
    """
    import h5py

    p = str(path)
    if not os.path.exists(p):
        raise DataError("no such file", p)
    if os.path.isdir(p):
        raise DataError("is a directory, expected an HDF5 dataset file", p)
    if not stat.S_ISREG(os.stat(p).st_mode):
        raise DataError("is not a regular file (a pipe, device or socket?); expected an HDF5 dataset file", p)
    if not os.access(p, os.R_OK):
        raise DataError("file is not readable (permission denied)", p)
    try:
        is_h5 = h5py.is_hdf5(p)
    except OSError as exc:  # pragma: no cover - depends on the OS
        raise DataError(f"cannot open: {exc}", p) from None
    if not is_h5:
        raise DataError("not an HDF5 file", p)
    check_hdf5_heaps(p)
    try:
        with h5py.File(p, "r") as f:
            fmt = read_attr(f, "format", "string", p)
            if fmt is not None and _as_str(fmt) != FORMAT:
                raise DataError(f"HDF5 file is not a glass-diag dataset (format '{_as_str(fmt)}')", p)
            version = read_attr(f, "schema_version", "number", p)
            version = SCHEMA_VERSION if version is None else int(np.asarray(version).ravel()[0])
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"schema version {version} is newer than this glass-diag understands ({SCHEMA_VERSION})", p
                )
            if "samples" not in f:
                raise DataError("missing group 'samples' (not a glass-diag dataset?)", p)
            s = f["samples"]
            if not isinstance(s, h5py.Group):
                raise DataError("'samples' is not a group (not a glass-diag dataset?)", p)
            for key in _REQUIRED:
                if key not in s or not isinstance(s[key], h5py.Dataset):
                    raise DataError(f"missing dataset 'samples/{key}'", p)
            for key in _OPTIONAL:
                if key in s and not isinstance(s[key], h5py.Dataset):
                    raise DataError(f"'samples/{key}' is not a dataset", p)
            X = s["features"]
            if X.ndim != 2:
                raise DataError(f"samples/features must be 2-D, got shape {X.shape}", p)
            if not np.issubdtype(X.dtype, np.number):
                raise DataError(f"samples/features has non-numeric dtype {X.dtype}", p)
            n, d = X.shape
            from .resources import AUDIT_MEMORY_FACTOR, check_memory, features_lazy, lazy_audit_bytes

            if lazy is None:
                lazy = features_lazy(n, d)
            if lazy:
                check_memory(lazy_audit_bytes(n, d), f"auditing {n} samples ({d} features read from the file)", p)
            else:
                check_memory(AUDIT_MEMORY_FACTOR * 4.0 * n * d, f"loading {n} x {d} features", p)
            # shapes and types before contents: a damaged header can claim any size, and
            # libhdf5 can crash converting a damaged datatype
            for key in ("label", "temperature", "group", *_OPTIONAL):
                if key in s and s[key].shape != (n,):
                    raise DataError(
                        f"samples/{key} has shape {s[key].shape}, expected ({n},) to match samples/features", p
                    )
                if key in s and h5_kind(s[key].dtype) != "number":
                    raise DataError(f"samples/{key} must be a 1-D numeric array, got {s[key].dtype}", p)
            arrays: dict[str, Any] = {"features": None if lazy else _read_array(X, p, np.float32)}
            for key in ("label", "temperature", "group"):
                arrays[key] = _read_array(s[key], p, None)
            for key in _OPTIONAL:
                if key in s:
                    arrays[key] = _read_array(s[key], p, None)
            if "features" in f and isinstance(f["features"], h5py.Group) and "name" in f["features"]:
                g = f["features"]
                for key in ("name", "family", "params"):
                    if key in g and (not isinstance(g[key], h5py.Dataset) or g[key].shape != (d,)):
                        shape = getattr(g[key], "shape", "not a dataset")
                        raise DataError(f"features/{key} has shape {shape}, expected ({d},)", p)
                for key in ("name", "family", "params"):
                    if key in g:
                        if h5_kind(g[key].dtype) != "string":
                            raise DataError(f"features/{key} must hold strings, got {g[key].dtype}", p)
                        check_vlen_lengths(g[key], p)
                names = [_as_str(v) for v in g["name"][()]]
                fam = [_as_str(v) for v in g["family"][()]] if "family" in g else None
                params = None
                if "params" in g:
                    try:
                        params = [json.loads(_as_str(v)) for v in g["params"][()]]
                    except (json.JSONDecodeError, RecursionError):
                        raise DataError("features/params holds invalid JSON", p) from None
                    if not all(isinstance(q, dict) for q in params):
                        raise DataError("features/params must hold one JSON object per feature", p)
            else:
                names, fam, params = [f"f{j}" for j in range(d)], None, None
            conventions = _json_attr(f, "conventions", p)
            provenance = _json_attr(f, "provenance", p)
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, OverflowError) as exc:
        # h5py reports damaged metadata as RuntimeError (and as AttributeError when an object
        # is not the kind expected, e.g. a named datatype where a dataset should be)
        raise DataError(f"cannot read HDF5 file ({_short(exc)})", p) from None
    for key in ("label", "temperature", "group", *_OPTIONAL):
        a = arrays.get(key)
        if a is not None and (a.ndim != 1 or not np.issubdtype(a.dtype, np.number)):
            raise DataError(f"samples/{key} must be a 1-D numeric array, got {a.dtype} {a.shape}", p)
    lab = arrays["label"]
    if lab.shape == (n,) and not np.isin(lab, (0, 1)).all():
        raise DataError("samples/label must contain only 0 and 1", p)
    if lazy:
        arrays["features"] = FeatureStore(p)
    if version < 2:
        # schema 1 had no roles: every sample was a training sample of its class, and natural
        arrays.pop("role", None)
        arrays.pop("natural", None)
    ds = Dataset(
        schema_version=version,
        feature_names=names,
        feature_families=fam,
        feature_params=params,
        conventions=conventions,
        provenance=provenance,
        path=p,
        **arrays,
    )
    return ds.validate()


def h5_kind(dtype) -> str:
    """``"number"`` (integer or real), ``"string"`` (fixed or variable length), ``"enum"`` or ``"other"``.

    Check it before reading: converting a damaged datatype (e.g. a variable-length type
    whose class bits were flipped) can crash libhdf5, while the dtype itself is safe to get.
    """
    import h5py

    dtype = np.dtype(dtype)
    if h5py.check_enum_dtype(dtype) is not None:
        return "enum"
    if h5py.check_string_dtype(dtype) is not None:
        return "string"
    if dtype.kind in "iuf" and dtype.fields is None and not dtype.shape:
        return "number"
    return "other"


def read_attr(obj, name: str, kind: str, path: str, where: str | None = None):
    """An HDF5 attribute of the expected :func:`h5_kind`, or None when absent."""
    if name not in obj.attrs:
        return None
    dtype = obj.attrs.get_id(name).dtype
    got = h5_kind(dtype)
    if got != kind and not (kind == "number" and got == "enum"):
        label = f"{where or obj.name.rstrip('/')}/{name}" if (where or obj.name != "/") else name
        raise DataError(f"attribute '{label.lstrip('/')}' must be a {kind}, got {dtype}", path)
    return obj.attrs[name]


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GCOL = b"GCOL\x01"  # global heap collection, version 1


def _length_size(m) -> int:
    """Size of lengths (bytes) from the HDF5 superblock; 8 when it cannot be read."""
    off = 0
    while off + 16 <= len(m) and off <= 1 << 20:
        if m[off : off + 8] == _HDF5_SIGNATURE:
            version = m[off + 8]
            size = m[off + 14] if version in (0, 1) else m[off + 10]
            return size if size in (2, 4, 8) else 8
        off = 512 if off == 0 else off * 2
    return 8


def check_hdf5_heaps(path: str) -> None:
    """Refuse an HDF5 file whose global heap would send libhdf5 into an endless loop.

    Variable-length data (strings) live in global heap collections. libhdf5 (up to
    at least 2.0.0) decodes a collection by stepping from object to object by each
    object's stored size, and loops for ever on a damaged collection whose free-space
    object has size 0 (found by fuzzing). Nothing can interrupt that loop, so the
    collections are checked here, the way libhdf5 walks them, before it sees them.

    Raises
    ------
    DataError
        A collection whose objects do not tile it.
    """
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                _check_collections(m, path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read ({_short(exc)})", path) from None


def _check_collections(m, path: str) -> None:
    size = len(m)
    ls = _length_size(m)
    fmt = {2: "<H", 4: "<I", 8: "<Q"}[ls]
    hdr = 8 + ls  # "GCOL", version, 3 reserved, collection size
    obj_hdr = 8 + ls  # index (2), references (2), reserved (4), object size
    # scanned a window at a time, each window's pages released after it: scanning a
    # 6.6 GB file must not make it resident in this process (docs/memory.md)
    for w0 in range(0, size, _SCAN_WINDOW):
        w1 = min(size, w0 + _SCAN_WINDOW + len(_GCOL) - 1)  # a signature starting in the window
        _scan_window(m, w0, w1, size, fmt, hdr, obj_hdr, path)
        if size > _SCAN_WINDOW and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            m.madvise(mmap.MADV_DONTNEED, w0, min(_SCAN_WINDOW, size - w0))


#: bytes of a file scanned at a time by :func:`check_hdf5_heaps` (a multiple of the page size)
_SCAN_WINDOW = 64 << 20


def _scan_window(m, w0: int, w1: int, size: int, fmt: str, hdr: int, obj_hdr: int, path: str) -> None:
    """Check the global heap collections whose signature starts in ``[w0, w1 - 4]``."""
    i = m.find(_GCOL, w0, w1)
    while i >= 0:
        if i + hdr <= size:
            (csize,) = struct.unpack(fmt, m[i + 8 : i + hdr])
            end = i + csize
            if hdr <= csize and end <= size:  # else libhdf5 refuses the collection itself
                p = i + hdr
                while p < end:
                    if p + obj_hdr > end:
                        break  # a tail too small for an object: free space
                    idx = m[p] | (m[p + 1] << 8)
                    (osize,) = struct.unpack(fmt, m[p + 8 : p + obj_hdr])
                    need = obj_hdr + ((osize + 7) // 8) * 8 if idx > 0 else osize
                    if need == 0 or need > end - p:
                        raise DataError(
                            f"damaged HDF5 global heap at byte {i} (object at byte {p} has size {osize}); "
                            "the file is corrupt and the HDF5 library cannot read it",
                            path,
                        )
                    p += need
        i = m.find(_GCOL, i + 4, w1)


def check_vlen_lengths(dset, path: str) -> None:
    """Refuse variable-length strings whose stored lengths exceed the whole file.

    libhdf5 allocates and clears each string's claimed length before it finds
    that the heap object does not match: one damaged length field (up to 4 GiB)
    per string costs seconds and gigabytes. The length fields of a contiguous
    dataset are read here first. (Other layouts are left to libhdf5.)
    """
    import h5py

    info = h5py.check_string_dtype(dset.dtype)
    if not ((info is not None and info.length is None) or h5py.check_vlen_dtype(dset.dtype) is not None):
        return
    offset = dset.id.get_offset()
    n = int(np.prod(dset.shape)) if dset.shape else 1
    if offset is None or n == 0:
        return
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        entry = 4 + _offset_size(f) + 4  # length, global heap collection address, object index
        f.seek(offset)
        raw = f.read(n * entry)
    if len(raw) < n * entry:
        return  # libhdf5 reports the truncation itself
    lengths = np.frombuffer(raw, dtype="<u4", count=n * entry // 4).reshape(n, entry // 4)[:, 0]
    total = int(lengths.astype(np.int64).sum())
    if total > file_size:
        raise DataError(
            f"'{dset.name.lstrip('/')}' is damaged: its strings claim {total} bytes in a file of {file_size} bytes",
            path,
        )


def _offset_size(f) -> int:
    """Size of file addresses from the HDF5 superblock of an open binary file; 8 if unknown."""
    off = 0
    while off <= 1 << 20:
        f.seek(off)
        head = f.read(16)
        if len(head) < 16:
            break
        if head[:8] == _HDF5_SIGNATURE:
            size = head[13] if head[8] in (0, 1) else head[9]
            return size if size in (2, 4, 8) else 8
        off = 512 if off == 0 else off * 2
    return 8


def _read_array(dset, path: str, dtype) -> np.ndarray:
    try:
        arr = dset[()]
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read '{dset.name}' ({_short(exc)}); the file may be truncated", path) from None
    arr = np.asarray(arr)
    if dtype is None:
        return arr
    try:
        with np.errstate(all="ignore"):  # out-of-range values become inf; validate() names them
            return arr.astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"cannot read '{dset.name}' as numbers ({_short(exc)})", path) from None


def _json_attr(f, key: str, path: str) -> dict:
    raw = read_attr(f, key, "string", path)
    if raw is None:
        return {}
    try:
        val = json.loads(_as_str(raw))
    except (json.JSONDecodeError, RecursionError):
        raise DataError(f"file attribute '{key}' is not valid JSON", path) from None
    if not isinstance(val, dict):
        raise DataError(f"file attribute '{key}' must be a JSON object", path)
    return val


def _as_str(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _short(exc: BaseException) -> str:
    """The first line of an exception's message (a KeyError's without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.splitlines()[0][:160] if text.strip() else type(exc).__name__
