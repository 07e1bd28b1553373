"""Natural populations at scale (docs/memory.md): lazy features, streamed softness, the
selection subsample. Every check is exact: a lazy dataset must give the very numbers of
the same dataset in memory."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from diag import audit as audit_mod
from diag.audit import AuditOptions, audit, fit_softness, make_split, selection_sample, streamed_softness
from diag.dataset import Dataset, FeatureStore, read_dataset
from diag.errors import DataError
from diag.report.json import audit_to_dict
from diag.resources import features_lazy, lazy_threshold
from diag.selection import SelectionOptions

# the cheapest selection run that still fits, evaluates and compares (RFE without folds)
FAST_SELECTION = dict(n_folds=0, coarsen=False, families=False, learning_curve=False, c_sweep=False,
                      eval_n_draws=20, eval_n_boot=50)


@pytest.fixture(scope="module")
def toy_roles():
    """A toy dataset with trajectory-like roles: soft = R=1, hard = half of R=0, the rest neither."""
    from toymodel import ToyModel

    ds = ToyModel().to_dataset(temperatures=(0.6, 0.8, 1.0), per_temperature=6000, seed=5, block_size=300)
    rng = np.random.default_rng(6)
    role = ds.label.astype(np.int8).copy()
    role[(ds.label == 0) & (rng.random(ds.n_samples) < 0.5)] = -1
    ds.role = role
    return ds


@pytest.fixture(scope="module")
def roles_file(tmp_path_factory, toy_roles):
    path = tmp_path_factory.mktemp("memory") / "roles.h5"
    toy_roles.write(path)
    return path


def test_feature_store_reads_what_the_array_holds(roles_file, toy_roles):
    X = toy_roles.features
    st = FeatureStore(str(roles_file), block_rows=700)  # many spans, none aligned with the requests
    rng = np.random.default_rng(0)
    n = X.shape[0]
    assert st.shape == X.shape and st.dtype == np.float32 and len(st) == n
    sorted_rows = np.sort(rng.choice(n, 900, replace=False))
    shuffled = rng.integers(0, n, 500)  # any order, repeats
    mask = rng.random(n) < 0.1
    cols = np.array([3, 0, 7])
    for key in (sorted_rows, shuffled, mask, slice(100, 2500), slice(None, None, 7), np.array([], dtype=int),
                np.array([-1, 0])):
        np.testing.assert_array_equal(st[key], X[key])
    np.testing.assert_array_equal(st[np.ix_(sorted_rows, cols)], X[np.ix_(sorted_rows, cols)])
    np.testing.assert_array_equal(st[shuffled, cols], X[shuffled][:, cols])
    np.testing.assert_array_equal(st[17], X[17])
    np.testing.assert_array_equal(np.asarray(st), X)
    blocks = list(st.iter_blocks(4000))
    assert [a for a, _ in blocks] == list(range(0, n, 4000))
    np.testing.assert_array_equal(np.vstack([b for _, b in blocks]), X)
    # a view of rows, and a view of that view
    view = st.rows(mask)
    np.testing.assert_array_equal(view[:], X[mask])
    np.testing.assert_array_equal(view.rows(np.arange(0, len(view), 3))[:], X[mask][::3])
    # it travels to worker processes by path
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(view))[5:50], X[mask][5:50])
    with pytest.raises(IndexError):
        st[np.array([n])]


def test_lazy_dataset_holds_the_same_samples(roles_file, toy_roles):
    lazy = read_dataset(roles_file, lazy=True)
    mem = read_dataset(roles_file, lazy=False)
    assert lazy.lazy and not mem.lazy and isinstance(lazy.features, FeatureStore)
    np.testing.assert_array_equal(mem.features, toy_roles.features)
    for key in ("label", "role", "natural", "temperature", "group", "energy"):
        np.testing.assert_array_equal(getattr(lazy, key), getattr(mem, key))
    sub = lazy.subset(lazy.temperature == 0.8)
    assert sub.lazy
    np.testing.assert_array_equal(sub.in_memory().features, mem.features[mem.temperature == 0.8])


def test_lazy_validation_finds_the_first_bad_value_across_blocks(tmp_path, toy_roles):
    import h5py

    path = tmp_path / "bad.h5"
    toy_roles.write(path)
    n = toy_roles.n_samples
    with h5py.File(path, "r+") as f:
        f["samples/features"][n - 3, 4] = np.nan  # in the last block
        f["samples/features"][n - 1, 2] = np.inf
    msgs = []
    for lazy in (False, True):
        with pytest.raises(DataError) as e:
            read_dataset(path, lazy=lazy)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert f"2 non-finite feature values (NaN or inf), first at sample {n - 3}, feature 'x5'" in msgs[1]


def test_streamed_softness_is_the_one_shot_softness_exactly(roles_file, toy_roles):
    ds = toy_roles
    split = make_split(ds, AuditOptions(seed=1))
    svm, _ = fit_softness(ds, split, AuditOptions(seed=1))
    rows = split.test
    one_shot = svm.softness(ds.features[rows])
    for block in (16384, 2 * 16384):
        np.testing.assert_array_equal(streamed_softness(svm, ds.features, rows, block_rows=block), one_shot)
    lazy = read_dataset(roles_file, lazy=True)
    np.testing.assert_array_equal(streamed_softness(svm, lazy.features, rows, block_rows=16384), one_shot)
    # blocks smaller than the data: the default block is a multiple of the SVM's chunk
    assert audit_mod.SOFTNESS_BLOCK_ROWS % 16384 == 0
    big = np.tile(ds.features, (3, 1))  # 54k rows: several blocks of 16384
    idx = np.arange(0, big.shape[0], 1)
    np.testing.assert_array_equal(streamed_softness(svm, big, idx, block_rows=16384), svm.softness(big))


def _json(result) -> str:
    doc = audit_to_dict(result)
    doc["dataset"].pop("path", None)
    return json.dumps(doc, sort_keys=True)


def test_lazy_and_in_memory_audits_are_identical(roles_file):
    opts = AuditOptions(seed=3, train_per_class=400, n_draws=100, n_boot=100)
    sel = SelectionOptions(**FAST_SELECTION)
    docs = [_json(audit(read_dataset(roles_file, lazy=lazy), opts, selection_options=sel)) for lazy in (False, True)]
    assert docs[0] == docs[1]
    assert json.loads(docs[0])["selection_sample"]["subsampled"] is False


@pytest.mark.parametrize("cap", [3000, 12000])  # the minimum of groups rules / the cap rules
def test_selection_subsample_is_seeded_whole_groups_and_recorded(toy_roles, cap):
    ds = toy_roles
    opts = AuditOptions(seed=4)
    split = make_split(ds, opts)
    sub, info = selection_sample(ds, split, opts, cap)
    sub2, info2 = selection_sample(ds, split, opts, cap)
    assert info == info2 and np.array_equal(sub.group, sub2.group)
    assert info["subsampled"] and info["cap"] == cap and info["seed"] == 4
    assert info["n_natural_heldout"] == split.test.size
    assert info["same_training_set"] is True
    sub_split = make_split(sub, opts)
    assert sub_split.test.size == info["n_natural"] == sum(p["n_natural"] for p in info["per_temperature"])
    assert info["n_natural"] < info["n_natural_heldout"]
    # whole groups: a chosen group brings every one of its held-out natural samples
    held = np.zeros(ds.n_samples, bool)
    held[split.test] = True
    for g in np.unique(sub.group[sub.natural == 1]):
        assert (sub.group[sub.natural == 1] == g).sum() == (held & (ds.group == g)).sum()
    for p in info["per_temperature"]:
        # the temperature's share of the cap in whole groups (of 300), but never fewer than the minimum
        quota = cap * p["n_natural_all"] / info["n_natural_heldout"]
        floor = min(audit_mod.SELECTION_MIN_GROUPS, p["n_groups_all"])
        assert p["n_groups"] == floor or p["n_natural"] <= quota < p["n_natural"] + 300
        assert p["n_groups"] >= floor and p["n_natural"] == 300 * p["n_groups"]
    # every soft and hard sample at the training temperature is kept, so the training set is the audit's
    at_train = ds.temperature == split.train_temperature
    assert (sub.role[sub.temperature == split.train_temperature] >= 0).sum() == (ds.role[at_train] >= 0).sum()
    # another seed draws other groups
    other, info3 = selection_sample(ds, make_split(ds, AuditOptions(seed=5)), AuditOptions(seed=5), cap)
    assert not np.array_equal(np.unique(other.group[other.natural == 1]), np.unique(sub.group[sub.natural == 1]))
    # under the cap: the dataset itself
    same, info4 = selection_sample(ds, split, opts, split.test.size)
    assert same is ds and info4["subsampled"] is False


def test_audit_subsamples_only_the_selection(toy_roles, monkeypatch):
    monkeypatch.setattr(audit_mod, "SELECTION_MAX_NATURAL", 7000)
    opts = AuditOptions(seed=4, train_per_class=400, n_draws=100, n_boot=100)
    res = audit(toy_roles, opts, selection_options=SelectionOptions(**FAST_SELECTION))
    info = res.extras["selection_sample"]
    assert info["subsampled"] and info["n_natural"] < info["n_natural_heldout"]
    # P(R|S,T) and the Arrhenius fits: the whole held-out natural population
    assert sum(f.n_samples for f in res.logistic) == make_split(toy_roles, opts).test.size == info["n_natural_heldout"]
    assert any("seeded subsample of whole groups" in n for n in res.selection.notes)
    doc = audit_to_dict(res)
    assert doc["selection_sample"]["seed"] == 4


def test_the_lazy_rule(monkeypatch, roles_file):
    monkeypatch.delenv("GLASS_DIAG_LAZY_BYTES", raising=False)
    assert lazy_threshold() == 2 << 30
    assert not features_lazy(10**6, 166, available=24 << 30)  # 0.66 GB: loaded, as always
    assert features_lazy(10**7, 166, available=24 << 30)  # 6.6 GB: read from the file
    assert features_lazy(10**6, 166, available=1 << 30)  # would not fit 3x: lazy rather than refused
    monkeypatch.setenv("GLASS_DIAG_LAZY_BYTES", "0")
    assert read_dataset(roles_file).lazy
    monkeypatch.setenv("GLASS_DIAG_LAZY_BYTES", "1e12")
    assert not read_dataset(roles_file).lazy


def test_small_datasets_stay_numpy(toy_roles):
    d = Dataset(features=toy_roles.features[:10], label=toy_roles.label[:10],
                temperature=toy_roles.temperature[:10], group=toy_roles.group[:10],
                feature_names=toy_roles.feature_names)
    assert isinstance(d.features, np.ndarray) and not d.lazy and d.in_memory() is d


@pytest.mark.parametrize("offset", [0, 4090, 4093, 4094, 4096, 9000])
@pytest.mark.parametrize("window", [4096, 1 << 26])
def test_heap_scan_in_windows_finds_every_collection(monkeypatch, offset, window):
    """The damaged-heap check scans big files a window at a time; a signature on a window
    boundary is still found (a zero-size free-space object: libhdf5 would loop for ever)."""
    import struct

    from diag import dataset as dmod

    monkeypatch.setattr(dmod, "_SCAN_WINDOW", window)
    buf = bytearray(16384)
    coll = b"GCOL\x01\x00\x00\x00" + struct.pack("<Q", 32) + b"\x00" * 8 + struct.pack("<Q", 0)
    buf[offset : offset + 32] = coll
    with pytest.raises(DataError, match=f"damaged HDF5 global heap at byte {offset} "):
        dmod._check_collections(bytes(buf), "x.h5")
    good = bytearray(buf)
    good[offset + 24 : offset + 32] = struct.pack("<Q", 16)  # a free-space object filling the collection
    dmod._check_collections(bytes(good), "x.h5")
