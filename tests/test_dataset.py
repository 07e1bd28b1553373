
import h5py
import numpy as np
import pytest

from diag.dataset import Dataset, read_dataset
from diag.errors import DataError, UsageError


def _small(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(
        features=rng.normal(size=(n, d)),
        label=rng.integers(0, 2, n),
        temperature=np.repeat([0.5, 1.0], n // 2),
        group=np.arange(n) // 5,
        feature_names=[f"f{j}" for j in range(d)],
        feature_params=[{"r": 0.1 * j} for j in range(d)],
        energy=rng.normal(size=n),
        conventions={"width": 0.1},
        provenance={"seed": 3},
    )


def test_round_trip(tmp_path):
    ds = _small()
    path = ds.write(tmp_path / "d.h5")
    back = read_dataset(path)
    np.testing.assert_array_equal(back.features, ds.features)
    np.testing.assert_array_equal(back.label, ds.label)
    np.testing.assert_array_equal(back.group, ds.group)
    np.testing.assert_array_equal(back.energy, ds.energy)
    assert back.feature_names == ds.feature_names and back.feature_params == ds.feature_params
    assert back.conventions == {"width": 0.1} and back.provenance == {"seed": 3}
    assert back.p_hop is None
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]  # no temporary file left behind


def test_existing_output_needs_overwrite(tmp_path):
    ds = _small()
    ds.write(tmp_path / "d.h5")
    before = (tmp_path / "d.h5").read_bytes()
    with pytest.raises(UsageError, match="exists"):
        ds.write(tmp_path / "d.h5")
    assert (tmp_path / "d.h5").read_bytes() == before


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f["samples/features"].__setitem__((0, 0), np.nan), "non-finite"),
        (lambda f: f["samples/label"].__setitem__(0, 3), "only 0 and 1"),
        (lambda f: f["samples"].__delitem__("group"), "missing dataset 'samples/group'"),
        (lambda f: f.__delitem__("samples"), "missing group 'samples'"),
        (lambda f: (f["samples"].__delitem__("temperature"), f["samples"].create_dataset("temperature", data=np.ones(7))), "shape"),
        (lambda f: f["samples/temperature"].__setitem__(0, -1.0), "positive"),
    ],
)
def test_malformed_files_give_one_line_errors(tmp_path, mutate, message):
    path = _small().write(tmp_path / "bad.h5")
    with h5py.File(path, "r+") as f:
        mutate(f)
    before = path.read_bytes()
    with pytest.raises(DataError, match=message) as exc:
        read_dataset(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    assert path.read_bytes() == before


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(DataError, match="not an HDF5 file"):
        read_dataset(junk)
    with pytest.raises(DataError, match="directory"):
        read_dataset(tmp_path)
    trunc = tmp_path / "trunc.h5"
    full = _small(n=4000, d=20).write(tmp_path / "full.h5").read_bytes()
    trunc.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError):
        read_dataset(trunc)


def test_select_features_keeps_metadata():
    ds = _small()
    sub = ds.select_features(["f2", 0])
    assert sub.feature_names == ["f2", "f0"]
    np.testing.assert_array_equal(sub.features[:, 0], ds.features[:, 2])
    assert sub.feature_params[0] == {"r": 0.2}


def test_memory_guard_refuses_what_cannot_fit():
    from diag.resources import check_memory

    check_memory(1e6, "a small thing", available=10**9)
    with pytest.raises(DataError, match="needs about 9.3 GiB but only 0.9 GiB") as exc:
        check_memory(1e10, "loading 1 x 1 features", "big.h5", available=10**9)
    assert str(exc.value).startswith("big.h5: ")


def test_roles_and_natural_population_round_trip(tmp_path):
    ds = _small()
    role = np.where(ds.label == 1, 1, np.where(np.arange(ds.n_samples) % 3 == 0, -1, 0)).astype(np.int8)
    natural = np.ones(ds.n_samples, dtype=np.int8)
    natural[(role >= 0) & (np.arange(ds.n_samples) % 4 == 0)] = 0
    ds.role, ds.natural = role, natural
    back = read_dataset(ds.write(tmp_path / "d.h5"))
    np.testing.assert_array_equal(back.role, role)
    np.testing.assert_array_equal(back.natural, natural)
    assert back.schema_version == 2 and not back.training_only
    # defaults: the toy case, every sample natural and a training sample of its class
    plain = _small()
    np.testing.assert_array_equal(plain.role, plain.label)
    assert (plain.natural == 1).all()


@pytest.mark.parametrize(
    "role,natural,words",
    [
        ([2] * 40, None, "samples/role"),
        (None, [2] * 40, "samples/natural"),
        (None, [0] * 40, "all 0"),
        ([-1] * 40, [1] * 39 + [0], "neither natural nor in the training set"),
    ],
)
def test_bad_roles_are_refused(tmp_path, role, natural, words):
    ds = _small()
    if role is not None:
        ds.role = np.asarray(role, dtype=np.int8)
    if natural is not None:
        ds.natural = np.asarray(natural, dtype=np.int8)
    with pytest.raises(DataError, match=words):
        ds.validate()


def test_schema_1_trajectory_dataset_is_read_as_training_only(tmp_path):
    from diag.audit import AuditOptions, audit

    ds = _small(n=400)
    ds.provenance = {"generator": "glass-diag features"}
    path = ds.write(tmp_path / "old.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 1
        del f["samples/role"], f["samples/natural"]
    old = read_dataset(path)
    assert old.schema_version == 1 and old.training_only
    np.testing.assert_array_equal(old.role, old.label)
    r = audit(old, AuditOptions(n_draws=50, n_boot=50))
    assert any("schema-1 dataset from trajectories" in w for w in r.warnings)
    assert r.dataset["training_only"] is True
