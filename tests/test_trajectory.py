import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from softness.errors import SoftnessError
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter, count_frames, read_species_names, read_trajectory


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
                       species_names=kw.pop("species_names", ("Si", "O")), dtype=np.float64,
                       observables=("potential_energy",), **kw)
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


def test_species_names_travel_with_the_trajectory(tmp_path):
    path = tmp_path / "t.h5"
    _write(path, np.random.default_rng(3), species_names=("A", "B"))
    assert read_species_names(path) == ("A", "B")
    assert read_trajectory(path).species_names == ("A", "B")


def test_unnamed_species_are_silica_only_for_bks_files_and_refused_otherwise(tmp_path):

    path = tmp_path / "t.h5"
    _write(path, np.random.default_rng(3))
    with h5py.File(path, "a") as f:
        del f["particles/all/species"].attrs["names"]
    with pytest.raises(SoftnessError, match="does not name its species"):
        read_species_names(path)
    with h5py.File(path, "a") as f:
        f.attrs["potential"] = "JAX MD BKS silica parameterisation"
    assert read_species_names(path) == ("Si", "O")


def test_a_species_number_without_a_name_is_refused(tmp_path):
    with pytest.raises(SoftnessError, match="do not all name one of the 1 species"):
        _write(tmp_path / "t.h5", np.random.default_rng(3), species_names=("Si",))


def _mdanalysis_universe(path, n_atoms, *, trajectory=True):
    import warnings

    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe.empty(n_atoms, trajectory=trajectory)
        u.load_new(str(path), format="H5MD")  # the documented way for a topology-less H5MD file
    return u


@pytest.mark.parametrize("variable_box", [False, True])
def test_mdanalysis_reads_positions_box_and_times(tmp_path, variable_box):
    path = tmp_path / "trajectory.h5"
    rng = np.random.default_rng(4)
    unwrapped, wrapped, images = _random_walk(rng)
    boxes = np.array([[10.0, 10.5, 11.0]] * 6) + (np.arange(6)[:, None] * 0.01 if variable_box else 0.0)
    wrapped = unwrapped - images * boxes[:, None, :]
    species = np.array([0, 1, 1, 0, 1])
    with atomic_h5(path, "test", {}) as f:
        w = H5MDWriter(f, species, np.ones(5), boxes[0], species_names=("A", "B"),
                       variable_box=variable_box, observables=("potential_energy",))
        w.append(np.arange(6) * 7, np.arange(6) * 25.0, wrapped, images,
                 observables={"potential_energy": np.arange(6.0)}, box_edges=boxes if variable_box else None)
    with h5py.File(path, "r") as f:  # the box is a time-dependent element, the fixed one repeated
        edges = f["particles/all/box/edges"]
        assert isinstance(edges, h5py.Group)
        assert_array_equal(edges["value"][()], boxes)
        assert edges["step"] == f["particles/all/position/step"]  # hard-linked, as H5MD allows
    assert_array_equal(read_trajectory(path).box, boxes)
    for trajectory in (True, False):
        u = _mdanalysis_universe(path, 5, trajectory=trajectory)
        assert u.trajectory.n_frames == 6
        for ts in u.trajectory:
            k = ts.frame
            np.testing.assert_allclose(ts.positions, wrapped[k], atol=1e-5)  # A, wrapped (float32)
            np.testing.assert_allclose(ts.dimensions, [*boxes[k], 90.0, 90.0, 90.0], rtol=1e-6)
            assert ts.time == pytest.approx(k * 0.025)  # ps
            assert ts.data["step"] == 7 * k and ts.data["potential_energy"] == k


def test_old_files_with_a_fixed_box_dataset_are_read_and_resumed(tmp_path):
    path = tmp_path / "old.h5"
    unwrapped = _write(path, np.random.default_rng(5))
    with h5py.File(path, "a") as f:  # the layout before the box became a time-dependent element
        box = f["particles/all/box"]
        del box["edges"]
        del box.attrs["variable_box"]
        box["edges"] = np.array([10.0] * 3)
    np.testing.assert_allclose(read_trajectory(path).unwrapped(), unwrapped, atol=1e-12)
    with h5py.File(path, "a") as f:
        w = H5MDWriter.reopen(f, 4)
        assert not w.variable_box
        w.append([99], [99.0], unwrapped[5:] % 10.0, np.floor(unwrapped[5:] / 10.0),
                 observables={"potential_energy": [9.0]})
    traj = read_trajectory(path)
    assert_array_equal(traj.step, [0, 10, 20, 30, 99])
    np.testing.assert_allclose(traj.unwrapped()[-1], unwrapped[5], atol=1e-12)
    assert traj.box.shape == (5, 3)


def test_reopen_keeps_repeating_the_fixed_box_and_requires_a_variable_one(tmp_path):
    path = tmp_path / "t.h5"
    _write(path, np.random.default_rng(6))
    with h5py.File(path, "a") as f:
        w = H5MDWriter.reopen(f, 2)
        assert not w.variable_box
        w.append([5], [5.0], np.zeros((1, 5, 3)), np.zeros((1, 5, 3)),
                 observables={"potential_energy": [0.0]})
    assert_array_equal(read_trajectory(path).box, np.full((3, 3), 10.0))
    path = tmp_path / "v.h5"
    with atomic_h5(path, "test", {}) as f:
        H5MDWriter(f, [0], [1.0], None, species_names=("A",), variable_box=True)
    with h5py.File(path, "a") as f:
        w = H5MDWriter.reopen(f, 0)
        assert w.variable_box
        with pytest.raises(ValueError, match="box_edges"):
            w.append([0], [0.0], np.zeros((1, 1, 3)), np.zeros((1, 1, 3)))
        w.append([0], [0.0], np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), box_edges=[[3.0, 4.0, 5.0]])
    assert_array_equal(read_trajectory(path).box, [[3.0, 4.0, 5.0]])
