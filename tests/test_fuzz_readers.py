"""Fuzzing the readers: a damaged file gives a typed one-line error (or reads), never a crash or a hang.

Property-based tests (hypothesis, derandomized so CI is reproducible) mutate the bytes of
valid files of every format (glass-diag dataset files and H5MD through HDF5, GSD, LAMMPS
dump, extended XYZ): bit flips, bytes overwritten with 0x00 / 0xFF, truncation at a random
offset, byte insertions and deletions, and for the text formats numbers replaced by
garbage, huge values or NaN and lines deleted, duplicated, swapped or cut. Offsets are
drawn uniformly and, for the binary formats, near the file's metadata (HDF5 object
signatures, the GSD header and index) where damage matters most.

Each example runs the reader (``adapters.readers.open_trajectory`` and every frame,
unwrapped; or ``diag.dataset.read_dataset``) in a forked child with a hard time limit:
a child still running after ``TIME_LIMIT`` seconds is killed and the example fails, so a
loop inside a C library (libhdf5 has some, see ``diag.dataset.check_hdf5_heaps``) cannot
hang the test run; a segfault fails it too. The child also arms ``signal.alarm`` a little
earlier, so a Python-level loop reports where it was. The child must either succeed or
raise a :class:`diag.errors.GlassDiagError` whose message is one line naming the file
(and not the generic safety net of ``adapters.readers``, which would mean a reader let a
low-level exception slip), emit no warning, and leave the file byte-identical.

The regression tests at the end pin the bugs this fuzzing found.
"""

from __future__ import annotations

import faulthandler
import hashlib
import os
import pickle
import random
import re
import select
import signal
import struct
import time
import traceback
import warnings
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from diag.errors import DataError, GlassDiagError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the per-example time guard forks")

#: hard limit per example (the child is killed); the slowest honest example takes ~0.2 s
TIME_LIMIT = 10.0
#: examples per format; the whole file takes about 35 s on two shared cores
EXAMPLES = 80

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    deadline=timedelta(seconds=TIME_LIMIT / 2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# ----------------------------------------------------------------------- the guard
class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm("soft time limit reached")


def run_guarded(fn, *args, limit: float = TIME_LIMIT):
    """Run ``fn(*args)`` in a forked child; return ``(outcome, exception class, text)``.

    outcome: ``"ok"``, ``"typed"`` (a GlassDiagError; text is its message), ``"leak"``
    (any other exception; text is the traceback), ``"warning"`` (a warning was emitted),
    ``"hang"`` (killed after ``limit`` seconds) or ``"crash"`` (killed by a signal).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            faulthandler.disable()  # a crash is reported by the parent, without pytest's dump
            os.close(r)
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.alarm(max(1, int(limit) - 2))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    fn(*args)
                    out = ("ok", None, "")
                except GlassDiagError as exc:
                    out = ("typed", type(exc), str(exc))
                except BaseException:
                    out = ("leak", None, traceback.format_exc()[-6000:])
            signal.alarm(0)
            if out[0] != "leak" and caught:
                out = ("warning", None, f"{caught[0].category.__name__}: {caught[0].message} ({out[2]})"[:2000])
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], limit)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return ("hang", None, f"no answer after {limit:g} s")
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ("crash", None, f"killed by signal {os.WTERMSIG(status)}")
    return pickle.loads(b"".join(chunks))


def check_outcome(path, result) -> None:
    """The property: success, or a typed one-line error naming the file."""
    outcome, cls, text = result
    if outcome == "ok":
        return
    assert outcome == "typed", f"{outcome}:\n{text}"
    assert issubclass(cls, GlassDiagError)
    assert "\n" not in text, text
    assert text.startswith(f"{path}: "), text
    assert "reader failure" not in text, f"a reader let a low-level exception through: {text}"


def read_trajectory(path: str) -> None:
    from adapters.readers import open_trajectory

    with open_trajectory(path) as tr:
        for _frame, unwrapped in tr.unwrapped():
            assert np.isfinite(unwrapped).all()


def read_data(path: str) -> None:
    from diag.dataset import read_dataset

    read_dataset(path)


# ------------------------------------------------------------------ valid sources
@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Valid small files of every format: name -> list of (bytes, suffix)."""
    from diag.dataset import Dataset
    from tests.adapters.writers import make_synthetic, write_gsd, write_h5md, write_lammps, write_xyz

    d = tmp_path_factory.mktemp("fuzz-sources")
    # a hop of 0.35 box lengths: minimum-image unwrapping refuses steps beyond 0.4 (a 0.9 hop in this
    # 2-particle-wide box would be 0.45)
    syn3 = make_synthetic(dim=3, n_side=2, n_frames=4, seed=1, hops={0: (2, np.array([-0.7, 0.0, 0.0]))})
    syn2 = make_synthetic(dim=2, n_side=3, n_frames=4, seed=2)
    makers = {
        "h5md": [
            (".h5", lambda p: write_h5md(p, syn3)),
            (".h5", lambda p: write_h5md(p, syn3, images=False, edges="time", species="enum", fixed_step=True)),
        ],
        "gsd": [(".gsd", lambda p: write_gsd(p, syn3)), (".gsd", lambda p: write_gsd(p, syn2, images=False))],
        "lammps": [
            (".dump", lambda p: write_lammps(p, syn3)),
            (".dump", lambda p: write_lammps(p, syn3, columns="xs", images=False, element=True, time=True)),
        ],
        "xyz": [(".xyz", lambda p: write_xyz(p, syn3)), (".xyz", lambda p: write_xyz(p, syn2, step=False))],
    }
    out = {}
    for name, variants in makers.items():
        out[name] = []
        for i, (suffix, make) in enumerate(variants):
            p = d / f"{name}{i}{suffix}"
            make(p)
            out[name].append((p.read_bytes(), suffix))
    rng = np.random.default_rng(3)
    n = 40
    full = Dataset(
        features=rng.normal(size=(n, 3)),
        label=np.arange(n) % 2,
        temperature=np.repeat([0.5, 0.6], n // 2),
        group=np.arange(n) // 4,
        feature_names=["G_A(r=1)", "G_B(r=1)", "q"],
        feature_families=["radial", "radial", "angular"],
        feature_params=[{"r": 1.0}, {"r": 1.0, "species": "B"}, {}],
        energy=rng.normal(size=n),
        p_hop=rng.random(n),
        species=np.arange(n) % 2,
        particle=np.arange(n),
        conventions={"train_temperature": 0.6, "window": 10},
        provenance={"generator": "fuzz", "seed": 3},
    )
    bare = Dataset(features=rng.normal(size=(12, 2)), label=np.arange(12) % 2, temperature=np.full(12, 1.0),
                   group=np.arange(12) // 3, feature_names=["a", "b"])
    out["dataset"] = []
    for i, ds in enumerate((full, bare)):
        p = d / f"data{i}.h5"
        ds.write(p)
        out["dataset"].append((p.read_bytes(), ".h5"))
    SOURCES.update(out)
    return out


# --------------------------------------------------------------------- mutations
_HDF5_MARKS = (b"\x89HDF", b"OHDR", b"OCHK", b"TREE", b"HEAP", b"SNOD", b"GCOL", b"FRHP", b"FHDB", b"BTHD", b"BTLF")
_NUMBER = re.compile(rb"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
NASTY = [
    b"nan", b"NaN", b"inf", b"-inf", b"1e400", b"-1e400", b"0", b"-0", b"-1", b"-7", b"1.5", b"0.5",
    b"99999999999999999999999", b"9223372036854775808", b"-9223372036854775809", b"1e-320", b"",
    b"x", b"0x10", b"1e", b"--1", b"1,5", "\u0661\u0662".encode(), b"\xff\xfe", b"\x00",
]


def hot_spots(data: bytes, binary: bool) -> list[int]:
    """Offsets where damage matters most.

    HDF5 object signatures and the superblock, the GSD header, index and name list, and
    for text files the starts of lines spread over the whole file (header lines included).
    """
    if not binary:
        starts = [0] + [m.end() for m in re.finditer(rb"\n", data)][:-1]
        return starts[:: max(1, len(starts) // 64)]
    spots = [40]
    for mark in _HDF5_MARKS:
        i = data.find(mark)
        while i >= 0 and len(spots) < 400:
            spots.append(i)
            i = data.find(mark, i + 1)
    if data[:8] == b"\xdf\x65\xdf\x65\xdf\x65\xdf\x65":  # GSD: header, then index and namelist
        index_location = struct.unpack("<Q", data[24:32])[0]
        namelist_location = struct.unpack("<Q", data[40:48])[0]
        spots += [x for x in (index_location, namelist_location) if x < len(data)]
        spots += list(range(0, 256, 8))
    return sorted(set(spots))


#: the valid sources, filled by the ``sources`` fixture (strategies take a format name, so
#: that hypothesis does not print whole files in its reports)
SOURCES: dict[str, list[tuple[bytes, str]]] = {}


@st.composite
def mutated(draw, fmt: str, binary: bool):
    """The bytes of one of the valid ``fmt`` sources with 1 to 3 mutations, and its suffix.

    Offsets are either uniform over the file (from a drawn seed: hypothesis would favour
    small integers, i.e. the first bytes) or drawn near a hot spot. Binary formats get
    mostly size-preserving damage (flips, overwritten bytes): a size change alone is
    caught at once by HDF5 and GSD, so it explores little.
    """
    variants = SOURCES[fmt]
    k = draw(st.integers(0, len(variants) - 1))
    data, suffix = variants[k]
    hot = hot_spots(data, binary)
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    buf = bytearray(data)
    if binary:
        kinds = ["flip", "flip", "flip", "byte", "byte", "truncate", "insert", "delete"]
    else:
        kinds = ["flip", "byte", "truncate", "insert", "delete", "number", "number", "number", "line", "line"]
    done = [f"source {fmt}[{k}]"]
    for _ in range(draw(st.integers(1, 3))):
        if not buf:
            break
        size = len(buf)
        if draw(st.booleans()):
            where = rnd.randrange(size)
        else:
            centre = min(draw(st.sampled_from(hot)), size - 1)
            where = draw(st.integers(max(0, centre - 16), min(size - 1, centre + 64)))
        kind = draw(st.sampled_from(kinds))
        if kind == "flip":
            bit = draw(st.integers(0, 7))
            buf[where] ^= 1 << bit
            done.append(f"flip bit {bit} at {where}")
        elif kind == "byte":
            value = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
            buf[where] = value
            done.append(f"byte {value:#x} at {where}")
        elif kind == "truncate":
            del buf[where:]
            done.append(f"truncate at {where}")
        elif kind == "insert":
            extra = draw(st.binary(min_size=1, max_size=16))
            buf[where:where] = extra
            done.append(f"insert {extra!r} at {where}")
        elif kind == "delete":
            n = draw(st.integers(1, 16))
            del buf[where : where + n]
            done.append(f"delete {n} bytes at {where}")
        elif kind == "number":
            spans = [m.span() for m in _NUMBER.finditer(bytes(buf))]
            if spans:
                a, b = spans[draw(st.integers(0, len(spans) - 1))] if draw(st.booleans()) else rnd.choice(spans)
                value = draw(st.sampled_from(NASTY))
                done.append(f"number {bytes(buf[a:b])!r} at {a} -> {value!r}")
                buf[a:b] = value
        else:  # a whole line: deleted, duplicated, swapped with the next one, or cut
            lines = bytes(buf).split(b"\n")
            i = rnd.randrange(len(lines))
            op = draw(st.sampled_from(["delete", "duplicate", "swap", "cut"]))
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(i, lines[i])
            elif op == "swap" and i + 1 < len(lines):
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
            elif op == "cut":
                lines = lines[: i + 1]
                lines[i] = lines[i][: rnd.randrange(len(lines[i]) + 1)]
            buf = bytearray(b"\n".join(lines))
            done.append(f"{op} line {i}")
    note("; ".join(done))
    return bytes(buf), suffix


def _fuzz_once(tmp_path, data: bytes, suffix: str, reader) -> None:
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    result = run_guarded(reader, str(path))
    event(result[0])  # pytest --hypothesis-show-statistics: how many read, how many refused
    check_outcome(str(path), result)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "the reader modified its input"


# ------------------------------------------------------------------- the properties
@pytest.mark.parametrize("fmt", ["h5md", "gsd", "lammps", "xyz"])
def test_damaged_trajectories_give_typed_errors(sources, tmp_path, fmt):
    if fmt == "gsd":
        pytest.importorskip("gsd")

    @FUZZ
    @given(case=mutated(fmt, binary=fmt in ("h5md", "gsd")))
    def prop(case):
        _fuzz_once(tmp_path, case[0], case[1], read_trajectory)

    prop()


def test_damaged_dataset_files_give_typed_errors(sources, tmp_path):
    @settings(FUZZ, max_examples=2 * EXAMPLES)  # cheaper to read than a trajectory
    @given(case=mutated("dataset", binary=True))
    def prop(case):
        _fuzz_once(tmp_path, case[0], case[1], read_data)

    prop()


def test_the_valid_sources_read(sources, tmp_path):
    """The unmutated sources succeed (so the properties above test damage, not the sources)."""
    for fmt, variants in sources.items():
        for i, (data, suffix) in enumerate(variants):
            path = tmp_path / f"{fmt}{i}{suffix}"
            path.write_bytes(data)
            reader = read_data if fmt == "dataset" else read_trajectory
            assert run_guarded(reader, str(path)) == ("ok", None, ""), (fmt, i)


def test_the_guard_catches_hangs_crashes_and_leaks():
    def spin():
        while True:
            pass

    def stuck_in_c():  # the soft alarm cannot interrupt this one: only the kill can
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(30)

    assert run_guarded(spin, limit=3)[0] == "leak"  # the soft alarm, with a traceback
    assert run_guarded(stuck_in_c, limit=3)[0] == "hang"
    assert run_guarded(lambda: os.kill(os.getpid(), signal.SIGSEGV))[0] == "crash"
    assert run_guarded(lambda: [][1])[0] == "leak"
    assert run_guarded(lambda: warnings.warn("x", RuntimeWarning))[0] == "warning"
    with pytest.raises(AssertionError):
        check_outcome("f", ("typed", DataError, "f: cannot read the file (reader failure: ValueError: x)"))


# ------------------------------------------------------- regressions found by fuzzing
def _expect_data_error(path, reader, *fragments, limit=TIME_LIMIT):
    t0 = time.monotonic()
    outcome, cls, text = run_guarded(reader, str(path), limit=limit)
    assert outcome == "typed" and issubclass(cls, DataError), (outcome, text)
    assert text.startswith(f"{path}: ") and "\n" not in text, text
    for frag in fragments:
        assert frag in text, (frag, text)
    return time.monotonic() - t0


def _zero_free_space(data: bytes) -> bytes:
    """Set the size of the free-space object of the first global heap collection to 0."""
    buf = bytearray(data)
    i = buf.find(b"GCOL\x01")
    assert i >= 0
    size = struct.unpack("<Q", buf[i + 8 : i + 16])[0]
    p = i + 16
    while p + 16 <= i + size:
        idx = struct.unpack("<H", buf[p : p + 2])[0]
        osize = struct.unpack("<Q", buf[p + 8 : p + 16])[0]
        if idx == 0:
            buf[p + 8 : p + 16] = struct.pack("<Q", 0)
            return bytes(buf)
        p += 16 + (osize + 7) // 8 * 8
    raise AssertionError("no free-space object")


def test_a_zero_size_heap_object_does_not_hang_libhdf5(sources, tmp_path):
    """libhdf5 loops for ever on it (H5HG__cache_heap_deserialize); found by fuzzing."""
    for fmt, reader in (("dataset", read_data), ("h5md", read_trajectory)):
        path = tmp_path / f"heap-{fmt}.h5"
        path.write_bytes(_zero_free_space(sources[fmt][0][0]))
        assert _expect_data_error(path, reader, "global heap", limit=5) < 4


def test_a_damaged_string_length_does_not_cost_gigabytes(sources, tmp_path):
    """libhdf5 allocates and clears a claimed 4 GiB before noticing; found by fuzzing."""
    import h5py

    data = bytearray(sources["dataset"][0][0])
    path = tmp_path / "vlen.h5"
    path.write_bytes(bytes(data))
    with h5py.File(path, "r") as f:
        off = f["features/params"].id.get_offset()
    data[off + 3] = 0xFF  # the high byte of the first string's length
    path.write_bytes(bytes(data))
    assert _expect_data_error(path, read_data, "features/params", "damaged", limit=5) < 4


def test_damaged_hdf5_metadata_is_a_data_error(sources, tmp_path):
    """h5py reports damaged B-trees and heaps as RuntimeError, which leaked; found by fuzzing."""
    for fmt, reader in (("dataset", read_data), ("h5md", read_trajectory)):
        data = bytearray(sources[fmt][0][0])
        i = data.find(b"SNOD")
        data[i : i + 4] = b"XNOD"
        path = tmp_path / f"snod-{fmt}.h5"
        path.write_bytes(bytes(data))
        _expect_data_error(path, reader, "cannot")


def test_a_named_datatype_where_a_dataset_should_be(tmp_path):
    """An h5py Datatype has no .shape (AttributeError leaked); found by fuzzing."""
    import h5py

    from tests.adapters.writers import make_synthetic, write_h5md

    path = tmp_path / "t.h5"
    write_h5md(path, make_synthetic(n_side=2, n_frames=4))
    with h5py.File(path, "r+") as f:
        del f["particles/all/position/step"]
        f["particles/all/position/step"] = np.dtype("f8")  # a committed (named) datatype
    _expect_data_error(path, read_trajectory, "position/step", "not a dataset")


def test_gsd_with_a_huge_particle_count_fails_fast(tmp_path):
    """gsd.hoomd frames allocate particles/N rows for every missing chunk (2**27 took 40 s, 3 GB)."""
    fl = pytest.importorskip("gsd.fl")
    path = tmp_path / "huge.gsd"
    with fl.open(str(path), "w", application="test", schema="hoomd", schema_version=[1, 4]) as f:
        f.write_chunk("configuration/step", np.array([0], dtype=np.uint64))
        f.write_chunk("configuration/box", np.array([4, 4, 4, 0, 0, 0], dtype=np.float32))
        f.write_chunk("particles/N", np.array([2**27], dtype=np.uint32))
        f.write_chunk("particles/position", np.zeros((8, 3), dtype=np.float32))
        f.end_frame()
    assert _expect_data_error(path, read_trajectory, "particles/position has shape (8, 3)", limit=5) < 4


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda s: s.replace("Step=1050", "Step=inf", 1), "Step"),  # OverflowError leaked
        (lambda s: s.replace("Step=1050", "Step=1e400", 1), "Step"),
        (lambda s: s.replace("species:S:1", "species:S:99999999999999999999", 1), "Properties"),  # OverflowError
        (lambda s: s.replace("8\n", "-8\n", 1), "number of particles is -8"),  # islice ValueError
        (lambda s: s.replace("8\n", "99999999999999999999999\n", 1), "absurdly large"),
    ],
    ids=["step-inf", "step-1e400", "properties-count", "negative-count", "huge-count"],
)
def test_xyz_regressions(tmp_path, edit, fragment):
    from tests.adapters.writers import make_synthetic, write_xyz

    path = tmp_path / "t.xyz"
    write_xyz(path, make_synthetic(n_side=2, n_frames=4))
    path.write_text(edit(path.read_text()))
    _expect_data_error(path, read_trajectory, fragment)


@pytest.mark.parametrize(
    "column, value, fragment",
    [(0, "nan", "atom ids"), (1, "1e400", "atom types"), (1, "2.5", "atom types"), (5, "nan", "image flags")],
)
def test_lammps_non_integer_columns(tmp_path, column, value, fragment):
    """NaN ids, types or images were cast to garbage integers with a RuntimeWarning."""
    from tests.adapters.writers import make_synthetic, write_lammps

    path = tmp_path / "t.dump"
    write_lammps(path, make_synthetic(n_side=2, n_frames=4))
    lines = path.read_text().splitlines(keepends=True)
    k = lines.index("ITEM: ATOMS id type x y z ix iy iz\n") + 3
    words = lines[k].split()
    words[column] = value
    lines[k] = " ".join(words) + "\n"
    path.write_text("".join(lines))
    _expect_data_error(path, read_trajectory, fragment)


def test_lammps_absurd_atom_count(tmp_path):
    from tests.adapters.writers import make_synthetic, write_lammps

    path = tmp_path / "t.dump"
    write_lammps(path, make_synthetic(n_side=2, n_frames=4))
    path.write_text(path.read_text().replace("NUMBER OF ATOMS\n8\n", "NUMBER OF ATOMS\n99999999999999999999\n", 1))
    _expect_data_error(path, read_trajectory, "absurdly large")


def test_a_pipe_is_refused_not_read(tmp_path):
    """Opening a FIFO for reading blocks until a writer appears: refuse non-regular files."""
    for name, reader in (("t.dump", read_trajectory), ("d.h5", read_data)):
        path = tmp_path / name
        os.mkfifo(path)
        _expect_data_error(path, reader, "not a regular file", limit=5)
