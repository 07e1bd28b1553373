"""Catalogue of hostile and broken inputs to ``diag features``.

Each case runs the whole command, in-process through ``diag.cli.main`` (an uncaught
exception fails the test as a traceback would) and, for a selection, through a
subprocess ``python -m diag.cli``. Each must give one line ``diag features: error: FILE:
problem`` on stderr naming the file and the problem, exit code 1 for unusable data and 2
for a bad request, no traceback, nothing on stdout; leave every input byte-identical
(hashed); and leave no output file and no temporary file (the writer's ``.NAME.*.tmp``)
behind. The ``toy`` / ``audit`` catalogue is ``tests/test_bad_inputs.py``; the readers are
fuzzed in ``tests/test_fuzz_readers.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from diag.cli import main

from .writers import make_synthetic, write_gsd, write_h5md, write_lammps, write_xyz

STUB_STRUCTURE = {"species": ["A", "B"], "grid": [0.8, 1.0, 1.2, 1.4], "width": 0.1, "cutoff": 1.6}
REAL_STRUCTURE = {"species": ["A", "B"], "radial_r": [0.8, 1.0, 1.2], "radial_width": 0.1, "angular": []}
SMALL = {"dynamics": {"window": 4, "persistence": 4, "every": 5}}  # 9 frames are enough


def synthetic(**kw):
    dim = kw.get("dim", 3)
    e = np.zeros(dim)
    e[0] = 0.9
    kw.setdefault("n_frames", 25)
    return make_synthetic(n_side=4, hops={5: (11, e)}, **kw)


@dataclass
class Case:
    """One bad run of ``diag features``, its expected exit code and message."""

    argv: list
    code: int
    words: list  # in the message
    named: Path | None = None  # the file the message must start with (None: no single file)
    temperature: bool = True  # add --temperature 0.5
    config: bool = True  # add the default --config
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------ the catalogue
def _good(d: Path, name="good.xyz", **kw) -> Path:
    p = d / name
    write_xyz(p, synthetic(**kw))
    return p


def _h5md_edit(d: Path, name: str, edit, **kw) -> Path:
    p = d / name
    write_h5md(p, synthetic(), **kw)
    with h5py.File(p, "r+") as f:
        edit(f)
    return p


def _replace(f, key, data, **kw):
    del f[key]
    f.create_dataset(key, data=data, **kw)


def _truncated(d: Path, name: str, writer) -> Path:
    p = d / name
    writer(p, synthetic())
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) * 2 // 3])
    return p


def _corrupt_gsd(d: Path) -> Path:
    p = d / "corrupt.gsd"
    write_gsd(p, synthetic())
    raw = bytearray(p.read_bytes())
    raw[8:64] = b"\xff" * 56  # header after the magic: version, index and namelist locations
    p.write_bytes(bytes(raw))
    return p


def _corrupt_h5md(d: Path) -> Path:
    p = d / "corrupt.h5"
    write_h5md(p, synthetic())
    raw = bytearray(p.read_bytes())
    i = raw.find(b"SNOD")  # a symbol-table node: h5py raises RuntimeError on it
    raw[i : i + 4] = b"\x00\x00\x00\x00"
    p.write_bytes(bytes(raw))
    return p


def _text_edit(d: Path, name: str, writer, edit, **kw) -> Path:
    p = d / name
    writer(p, synthetic(), **kw)
    p.write_text(edit(p.read_text()))
    return p


def _lammps_atom_value(text: str, frame: int, column: int, value: str) -> str:
    """Replace one atom value in a frame of a LAMMPS dump (columns: id type x y z ix iy iz)."""
    lines = text.splitlines(keepends=True)
    heads = [i for i, ln in enumerate(lines) if ln.startswith("ITEM: ATOMS")]
    k = heads[frame] + 3
    words = lines[k].split()
    words[column] = value
    lines[k] = " ".join(words) + "\n"
    return "".join(lines)


def _xyz_atom_value(text: str, frame: int, value: str) -> str:
    """Replace the x of the third atom of a frame of an XYZ file (N + 2 lines per frame)."""
    lines = text.splitlines(keepends=True)
    n = int(lines[0])
    k = frame * (n + 2) + 2 + 2
    words = lines[k].split()
    words[1] = value
    lines[k] = " ".join(words) + "\n"
    return "".join(lines)


def _far_outside(d: Path) -> Path:
    syn = synthetic()
    w = syn.wrapped.copy()
    w[3, 2, 1] += 5 * syn.lengths[1]
    syn.stored_images, syn.stored_wrapped = syn.images.copy(), w
    p = d / "far.dump"
    write_lammps(p, syn)
    return p


def _negative_box(text: str) -> str:
    lines = text.splitlines(keepends=True)
    k = lines.index("ITEM: BOX BOUNDS pp pp pp\n") + 2  # y bounds of frame 0
    lo, hi = lines[k].split()
    lines[k] = f"{hi} {lo}\n"
    return "".join(lines)


def _fifo(d: Path, name: str) -> Path:
    p = d / name
    os.mkfifo(p)
    return p


def _dataset_file(d: Path) -> Path:
    from diag.dataset import Dataset

    p = d / "data_in.h5"
    Dataset(features=np.ones((4, 2)), label=[0, 1, 0, 1], temperature=np.ones(4), group=[0, 0, 1, 1],
            feature_names=["a", "b"]).write(p)
    return p


def _config(d: Path, content, name="bad.json") -> Path:
    p = d / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


def _stub_config(**sections) -> dict:
    return {**SMALL, "structure": STUB_STRUCTURE, **sections}


def _xyz(d: Path, name: str, **kw) -> Path:
    p = d / name
    write_xyz(p, synthetic(**kw))
    return p


def _lammps(d: Path, name: str) -> Path:
    p = d / name
    write_lammps(p, synthetic())
    return p


def _gsd_box(d: Path, box) -> Path:
    p = d / "tric.gsd"
    write_gsd(p, synthetic(), box=box)
    return p


def _bytes(d: Path, name: str, content: bytes) -> Path:
    p = d / name
    p.write_bytes(content)
    return p


def _folder(d: Path, name: str) -> Path:
    p = d / name
    p.mkdir()
    return p


def _unreadable(d: Path) -> Path:
    p = _xyz(d, "secret.xyz")
    os.chmod(p, 0)
    return p


def _locked(d: Path) -> Path:
    p = _folder(d, "locked")
    os.chmod(p, 0o555)
    return p


def _grow(text: str) -> str:
    """Append a frame of 3 particles to a 64-particle XYZ file."""
    comment = text.split("\n", 2)[1]
    return text + f"3\n{comment}\nA 0 0 0\nA 1 1 1\nA 2 2 2\n"


#: unusable data (exit code 1): name -> (make the bad file in folder d, words of the message, options)
DATA_CASES = {
    "h5md truncated": (lambda d: _truncated(d, "trunc.h5", write_h5md), ["truncated"]),
    "h5md corrupt metadata": (_corrupt_h5md, ["cannot read H5MD structure"]),
    "gsd truncated": (lambda d: _truncated(d, "trunc.gsd", write_gsd), ["GSD"]),
    "gsd corrupt header": (_corrupt_gsd, ["cannot open as GSD"]),
    "lammps truncated": (lambda d: _truncated(d, "trunc.dump", write_lammps), ["truncated"]),
    "empty h5": (lambda d: _bytes(d, "empty.h5", b""), ["file is empty"]),
    "empty dump": (lambda d: _bytes(d, "empty.dump", b""), ["file is empty"]),
    "binary garbage named .dump": (
        lambda d: _bytes(d, "garbage.dump", np.random.default_rng(0).bytes(4000)), ["not a LAMMPS dump"]
    ),
    "unknown format": (
        lambda d: _bytes(d, "notes.dat", b"some text\nthat is no trajectory\n"), ["cannot tell the trajectory format"]
    ),
    "h5md without position/value": (
        lambda d: _h5md_edit(d, "novalue.h5", lambda f: f["particles/all/position"].__delitem__("value")),
        ["no 'particles/all/position/value'"],
    ),
    "h5md misnamed position": (
        lambda d: _h5md_edit(d, "misnamed.h5", lambda f: f.move("particles/all/position", "particles/all/positions")),
        ["no 'particles/all/position'"],
    ),
    "h5md positions are strings": (
        lambda d: _h5md_edit(
            d, "strpos.h5",
            lambda f: _replace(f, "particles/all/position/value", np.full((25, 64, 3), b"x", dtype="S1")),
        ),
        ["position/value", "dtype"],
    ),
    "h5md positions with 4 components": (
        lambda d: _h5md_edit(d, "pos4.h5", lambda f: _replace(f, "particles/all/position/value", np.zeros((25, 64, 4)))),
        ["4 components per particle"],
    ),
    "h5md 1-D positions": (
        lambda d: _h5md_edit(d, "pos1d.h5", lambda f: _replace(f, "particles/all/position/value", np.zeros(25))),
        ["expected (frames, N, D)"],
    ),
    "h5md species are floats": (
        lambda d: _h5md_edit(d, "fspecies.h5", lambda f: _replace(f, "particles/all/species", np.full(64, 0.5))),
        ["float species must hold integers"],
    ),
    "h5md zero box": (
        lambda d: _h5md_edit(d, "zerobox.h5", lambda f: None, edges_value=[4.0, 0.0, 4.0]),
        ["box edge length Ly = 0 is zero or negative"],
    ),
    "lammps negative box": (lambda d: _text_edit(d, "negbox.dump", write_lammps, _negative_box), ["zero or negative"]),
    "h5md non-periodic box": (
        lambda d: _h5md_edit(d, "nonper.h5", lambda f: None, boundary=["periodic", "none", "periodic"]),
        ["not periodic along y"],
    ),
    "xyz non-periodic box": (
        lambda d: _text_edit(d, "nonper.xyz", write_xyz, lambda s: s, pbc="T F T"), ["not periodic along y"]
    ),
    "gsd absurd tilt": (lambda d: _gsd_box(d, [4, 4, 4, 1e4, 0, 0]), ["tilt factors"]),
    "xyz NaN position": (
        lambda d: _text_edit(d, "nan.xyz", write_xyz, lambda s: _xyz_atom_value(s, 7, "nan")),
        ["frame 7: position of particle 2 is not finite"],
    ),
    "lammps inf position": (
        lambda d: _text_edit(d, "inf.dump", write_lammps, lambda s: _lammps_atom_value(s, 4, 2, "inf")),
        ["frame 4", "not finite"],
    ),
    "lammps NaN image flag": (
        lambda d: _text_edit(d, "nanimg.dump", write_lammps, lambda s: _lammps_atom_value(s, 2, 6, "nan")),
        ["frame 2", "image flags"],
    ),
    "lammps fractional type": (
        lambda d: _text_edit(d, "ftype.dump", write_lammps, lambda s: _lammps_atom_value(s, 0, 1, "1.5")),
        ["atom types", "1.5"],
    ),
    "particle far outside the box": (_far_outside, ["frame 3", "more than one box length outside"]),
    "fewer frames than the p_hop window": (lambda d: _xyz(d, "short.xyz", n_frames=7), ["fewer frames (7)"]),
    "unknown species": (
        lambda d: _text_edit(d, "species.xyz", write_xyz, lambda s: s, names=["Si"] * 64), ["unknown species 'Si'"]
    ),
    "unequal frame spacing": (
        lambda d: _h5md_edit(d, "steps.h5", lambda f: f["particles/all/position/step"].__setitem__(9, 1437)),
        ["not equally spaced"],
    ),
    "particle number changes": (
        lambda d: _text_edit(d, "grow.xyz", write_xyz, _grow), ["lines do not make whole frames"]
    ),
    "h5md header claims 10^10 particles": (
        lambda d: _h5md_edit(
            d, "huge.h5",
            lambda f: (f["particles/all/position"].__delitem__("value"),
                       f.create_dataset("particles/all/position/value", shape=(25, 10**10, 3), dtype="f4",
                                        chunks=(1, 4096, 3))),
        ),
        ["reading frames of 10000000000 particles", "GiB of memory is available"],
    ),
    "a glass-diag dataset given as a trajectory": (_dataset_file, ["looks like a glass-diag dataset"]),
    "missing file": (lambda d: d / "absent.h5", ["no such file"]),
    "directory as input": (lambda d: _folder(d, "folder.h5"), ["is a directory"]),
    "pipe as input": (lambda d: _fifo(d, "pipe.dump"), ["not a regular file"]),
    "unreadable file": (_unreadable, ["permission denied"], {"skip_root": True}),
    "no temperature anywhere": (lambda d: _lammps(d, "notemp.dump"), ["no temperature in the file"],
                                {"temperature": False}),
    "wrong format forced": (lambda d: _xyz(d, "forced.xyz"), ["cannot open as HDF5"], {"args": ["--format", "h5md"]}),
}


def _out(d: Path) -> Path:
    """The default output (see ``_prepare``)."""
    return d.parent / "out" / "data.h5"


#: bad requests (exit code 2): name -> (make (argv, named file) in folder d, words of the message, options)
USAGE_CASES = {
    "output is the input": (
        lambda d: ((g := _xyz(d, "good.xyz")), ["-o", g, "--force"], g), ["overwrite the input"], {"output": False}
    ),
    "output is the config": (
        lambda d: (_xyz(d, "good.xyz"), ["-o", d / "ok.json", "--force", "--config", _config(d, _stub_config(), "ok.json")],
                   d / "ok.json"),
        ["overwrite the input"], {"output": False, "config": False},
    ),
    "output is a directory": (
        lambda d: (_xyz(d, "good.xyz"), ["-o", d.parent / "out"], d.parent / "out"), ["output path is a directory"],
        {"output": False},
    ),
    "output exists, no --force": (
        lambda d: (_xyz(d, "good.xyz"), [], _out(d)), ["output file exists (use --force to replace it)"],
        {"existing_output": True},
    ),
    "output in a missing folder": (
        lambda d: (_xyz(d, "good.xyz"), ["-o", d / "no" / "such" / "x.h5"], d / "no" / "such" / "x.h5"),
        ["output folder does not exist"], {"output": False},
    ),
    "output is a pipe": (
        lambda d: (_xyz(d, "good.xyz"), ["-o", _fifo(d, "outpipe"), "--force"], d / "outpipe"),
        ["not a regular file"], {"output": False},
    ),
    "output folder not writable": (
        lambda d: (_xyz(d, "good.xyz"), ["-o", _locked(d) / "x.h5"], d / "locked" / "x.h5"),
        ["output folder is not writable"], {"output": False, "skip_root": True},
    ),
    "config: missing file": (
        lambda d: (_xyz(d, "good.xyz"), ["--config", d / "nope.json"], d / "nope.json"),
        ["configuration file not found"], {"config": False},
    ),
    "config: a directory": (
        lambda d: (_xyz(d, "good.xyz"), ["--config", _folder(d, "conf.d")], d / "conf.d"),
        ["is a directory"], {"config": False},
    ),
    "temperature count": (
        lambda d: (_xyz(d, "good.xyz"), ["--temperature", "0.5", "0.6"], None),
        ["--temperature got 2 value(s) for 1 file(s)"], {"temperature": False},
    ),
    "--every 0": (lambda d: (_xyz(d, "good.xyz"), ["--every", "0"], None), ["--every", "positive integer"],
                  {"argparse": True}),
    "--format pdb": (lambda d: (_xyz(d, "good.xyz"), ["--format", "pdb"], None), ["--format", "invalid choice"],
                     {"argparse": True}),
    "--temperature -1": (lambda d: (_xyz(d, "good.xyz"), ["--temperature", "-1"], None), ["--temperature"],
                         {"argparse": True, "temperature": False}),
}

BAD_CONFIGS = {
    "config: invalid JSON": ("{not json", ["invalid JSON (line 1"]),
    "config: not an object": ("[1, 2]", ["must be a JSON object"]),
    "config: empty file": ("", ["invalid JSON"]),
    "config: unknown section": (json.dumps({"dynamic": {}}), ["unknown section(s) dynamic"]),
    "config: unknown dynamics key": (json.dumps({"dynamics": {"windows": 4}}), ["unknown key(s) in 'dynamics'"]),
    "config: unknown input key": (json.dumps({"input": {"group": "all"}}), ["unknown key(s) in 'input'"]),
    "config: odd window": (json.dumps({"dynamics": {"window": 5}}), ["even integer"]),
    "config: window is a string": (json.dumps({"dynamics": {"window": "10"}}), ["even integer"]),
    "config: negative p_c": (json.dumps({"dynamics": {"p_c": -0.2}}), ["p_c must be a positive number"]),
    "config: NaN p_c": ('{"dynamics": {"p_c": NaN}}', ["p_c must be a positive number"]),
    "config: p_hard above p_c": (json.dumps({"dynamics": {"p_c": 0.1, "p_hard": 0.2}}), ["p_hard"]),
    "config: species map to numbers": (json.dumps({"input": {"species_map": {"1": 2}}}), ["species_map"]),
    "config: species map to an unknown species": (
        json.dumps({**_stub_config(), "input": {"species_map": {"A": "Zr"}}}), ["'Zr'", "not a structure species"]
    ),
    "config: bad structure section": (json.dumps({"structure": [1, 2]}), ["'structure' section"]),
    "config: not UTF-8": (b'{"dynamics": {"p_c": 0.2}}\xff\xfe', ["not UTF-8"]),
    "config: nested too deeply": ("[" * 100000 + "]" * 100000, ["nested too deeply"]),
}
for _name, (_content, _words) in BAD_CONFIGS.items():
    USAGE_CASES[_name] = (
        lambda d, c=_content, n=_name: (
            _xyz(d, "good.xyz"),
            ["--config", (cf := _config(d, c, n.split(": ")[1].replace(" ", "_") + ".json"))],
            cf,
        ),
        _words,
        {"config": False},
    )


def build_case(name: str, d: Path) -> Case:
    """Make the files of a case in folder ``d``."""
    if name in DATA_CASES:
        make, words, *opts = DATA_CASES[name]
        opts = opts[0] if opts else {}
        bad = make(d)
        return Case([bad, *opts.get("args", [])], 1, words, named=bad,
                    temperature=opts.get("temperature", True), extra=opts)
    make, words, *opts = USAGE_CASES[name]
    opts = opts[0] if opts else {}
    traj, args, named = make(d)
    return Case([traj, *args], 2, words, named=named, temperature=opts.get("temperature", True),
                config=opts.get("config", True), extra=opts)


# ----------------------------------------------------------------------- helpers
def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_fifo():
            try:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            except PermissionError:  # pragma: no cover - the unreadable case when not root
                out[str(p)] = "unreadable"
    return out


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _argv(case: Case, out: Path, config: Path) -> list[str]:
    argv = ["features", *[str(a) for a in case.argv]]
    if case.extra.get("output", True):
        argv += ["-o", str(out)]
    if case.config:
        argv += ["--config", str(config)]
    if case.temperature:
        argv += ["--temperature", "0.5"]
    return [*argv, "--quiet"]


def _prepare(tmp_path: Path, name: str, config_content: dict):
    d = tmp_path / "in"
    d.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    case = build_case(name, d)
    if case.extra.get("skip_root") and os.geteuid() == 0:
        pytest.skip("root ignores file permissions (the tests run as root)")
    out = out_dir / "data.h5"
    if case.extra.get("existing_output"):
        out.write_bytes(b"precious results")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_content))
    return case, out, config


def _check(case: Case, code: int, out_text: str, err: str, out: Path, before: dict, listing: list,
           tmp_path: Path) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    if case.extra.get("argparse"):  # argparse prints its usage, then one error line
        lines = lines[-1:]
    assert len(lines) == 1, err
    line = lines[0]
    assert code == case.code, (code, line)
    assert line.startswith("diag features: error: "), line
    named = case.named
    if named is not None:
        assert line.startswith(f"diag features: error: {named}: "), line
    for w in case.words:
        assert w in line, (w, line)
    assert out_text.strip() == "", out_text
    assert _hashes(tmp_path) == before, "an input changed"
    assert _listing(tmp_path) == listing, "a file appeared or disappeared (partial output or temporary file)"
    if case.extra.get("existing_output"):
        assert out.read_bytes() == b"precious results"
    else:
        assert not out.exists()


# ------------------------------------------------------------------------- tests
DATA = sorted(DATA_CASES)
USAGE = sorted(USAGE_CASES)


def test_the_catalogue_is_large():
    assert len(DATA) >= 30 and len(USAGE) >= 25


@pytest.mark.parametrize("name", DATA + USAGE)
def test_bad_input_in_process(tmp_path, stub_structure, capsys, name):
    case, out, config = _prepare(tmp_path, name, _stub_config())
    before, listing = _hashes(tmp_path), _listing(tmp_path)
    try:
        code = main(_argv(case, out, config))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    _check(case, code, captured.out, captured.err, out, before, listing, tmp_path)


SUBPROCESS = [
    "h5md truncated",
    "h5md without position/value",
    "gsd corrupt header",
    "xyz NaN position",
    "pipe as input",
    "output is the input",
    "config: invalid JSON",
    "--every 0",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_through_a_subprocess(tmp_path, name):
    """The real entry point, with the real structure functions: one line on the real stderr."""
    case, out, config = _prepare(tmp_path, name, {**SMALL, "structure": REAL_STRUCTURE})
    before, listing = _hashes(tmp_path), _listing(tmp_path)
    argv = _argv(case, out, config)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "diag.cli", *argv], capture_output=True, text=True, env=env,
                         timeout=120, cwd=tmp_path)
    _check(case, res.returncode, res.stdout, res.stderr, out, before, listing, tmp_path)


def test_a_good_run_of_the_same_setup_succeeds(tmp_path, stub_structure, capsys):
    """The harness is sound: a good file with the same arguments writes the dataset."""
    d = tmp_path / "in"
    d.mkdir()
    good = _good(d)
    (tmp_path / "out").mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_stub_config()))
    out = tmp_path / "out" / "data.h5"
    code = main(["features", str(good), "-o", str(out), "--config", str(config), "--temperature", "0.5", "--quiet"])
    assert code == 0 and out.exists(), capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == ["data.h5"]
