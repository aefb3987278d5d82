import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from softness.errors import SoftnessError
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter, count_frames, read_trajectory


def _random_walk(rng, n_frames=6, n_atoms=5, box=10.0):
    steps = rng.normal(scale=3.0, size=(n_frames, n_atoms, 3))
    unwrapped = rng.uniform(0, box, size=(n_atoms, 3)) + np.cumsum(steps, axis=0)
    images = np.floor(unwrapped / box).astype(np.int32)
    return unwrapped, unwrapped - images * box, images


def _write(path, rng, **kw):
    unwrapped, wrapped, images = _random_walk(rng)
    species = np.array([0, 1, 1, 0, 1])
    with atomic_h5(path, "test", {"seed": 1}) as f:
        w = H5MDWriter(f, species, np.where(species == 0, 28.0855, 15.9994), [10.0] * 3,
                       dtype=np.float64, observables=("potential_energy",), **kw)
        w.append(np.arange(3) * 10, np.arange(3) * 10.0, wrapped[:3], images[:3],
                 observables={"potential_energy": [1.0, 2.0, 3.0]})
        w.append(np.arange(3, 6) * 10, np.arange(3, 6) * 10.0, wrapped[3:], images[3:],
                 observables={"potential_energy": [4.0, 5.0, 6.0]})
    return unwrapped


def test_h5md_layout_and_exact_unwrapping(tmp_path):
    path = tmp_path / "traj.h5"
    unwrapped = _write(path, np.random.default_rng(0))
    with h5py.File(path, "r") as f:
        assert_array_equal(f["h5md"].attrs["version"], [1, 1])
        for name in ["particles/all/position/value", "particles/all/image/value",
                     "particles/all/species", "particles/all/box/edges",
                     "observables/potential_energy/value"]:
            assert name in f
        assert f["particles/all/position/value"].attrs["unit"] == "angstrom"
        assert f["particles/all/position/time"].attrs["unit"] == "fs"
        assert list(f["particles/all/box"].attrs["boundary"]) == [b"periodic"] * 3
        assert f.attrs["stage"] == "test"
    traj = read_trajectory(path)
    assert traj.n_frames == 6 and count_frames(path) == 6
    np.testing.assert_allclose(traj.unwrapped(), unwrapped, atol=1e-12)
    assert np.all((traj.positions >= 0) & (traj.positions < 10.0))
    assert_array_equal(traj.observables["potential_energy"], np.arange(1.0, 7.0))
    assert_array_equal(read_trajectory(path, frames=[1, 4]).step, [10, 40])


def test_reopen_truncates_to_the_checkpoint(tmp_path):
    path = tmp_path / "traj.h5"
    _write(path, np.random.default_rng(1))
    with h5py.File(path, "a") as f:
        w = H5MDWriter.reopen(f, 4)
        assert w.n_frames == 4
    traj = read_trajectory(path)
    assert_array_equal(traj.step, [0, 10, 20, 30])
    assert traj.observables["potential_energy"].shape == (4,)


def test_missing_image_flags_is_a_clear_error(tmp_path):
    path = tmp_path / "traj.h5"
    _write(path, np.random.default_rng(2))
    with h5py.File(path, "a") as f:
        del f["particles/all/image"]
    with pytest.raises(SoftnessError, match="no image flags"):
        read_trajectory(path)


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), atomic_h5(path, "test", {}) as f:
        f["x"] = 1
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_missing_or_foreign_input_is_a_clear_error(tmp_path):
    with pytest.raises(SoftnessError, match="does not exist"):
        read_trajectory(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(SoftnessError, match="not a readable HDF5"):
        read_trajectory(junk)
