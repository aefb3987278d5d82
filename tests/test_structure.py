import itertools

import h5py
import numpy as np
import pytest
import yaml
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, config
from softness.errors import SoftnessError
from softness.io import atomic_h5
from softness.structure import (
    StructureGrid,
    compute_features,
    features_file,
    radial_structure_functions,
    read_features,
)
from softness.trajectory import H5MDWriter

BOX = 9.0
CUTOFF = 4.4

GRID = StructureGrid(
    radial_r_A=np.arange(0.5, 4.01, 0.25),
    radial_width_A=np.linspace(0.15, 0.4, 15),
    angular_xi_A=[1.5, 2.5, 2.5, 4.0, 4.0],
    angular_lambda=[1, -1, 1, -1, 1],
    angular_zeta=[1, 2, 2.5, 4, 1],
    cutoff_A=CUTOFF,
)


def random_system(seed, n=42, box=BOX, n_edge=8, min_distance=0.8):
    """Random atoms in a periodic cube, no two closer than ``min_distance``; the first ``n_edge``
    lie within 1e-3 A of a face, an edge or a corner of the box."""
    rng = np.random.default_rng(seed)
    pos = np.empty((0, 3))
    while len(pos) < n:
        x = rng.uniform(0, box, size=3)
        if len(pos) < n_edge:
            axes = rng.permutation(3)[: 1 + (len(pos) % 2 if len(pos) else 2)]  # one corner, then faces/edges
            x[axes] = rng.choice([1e-3, box - 1e-3], size=len(axes))
        d = pos - x
        d -= box * np.round(d / box)
        if len(pos) == 0 or np.min(np.linalg.norm(d, axis=1)) >= min_distance:
            pos = np.vstack([pos, x])
    species = rng.permutation(np.arange(n) % 3 != 0).astype(np.int32)  # one third Si
    return pos, species


def brute_force(pos, box, species, grid):
    """G and Psi by explicit loops over neighbours and their periodic images (float64)."""
    pos = np.asarray(pos, np.float64)
    n, n_r, n_a = len(pos), grid.n_radial, grid.n_angular
    r0, w = np.array(grid.radial_r_A), np.array(grid.radial_width_A)
    xi, lam, zeta = (np.array(v) for v in (grid.angular_xi_A, grid.angular_lambda, grid.angular_zeta))
    pair_index = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}
    shifts = [np.array(s) * box for s in itertools.product([-1, 0, 1], repeat=3)]
    out = np.zeros((n, 2 * n_r + 3 * n_a))
    for i in range(n):
        nbrs = []
        for j in range(n):
            for shift in shifts:
                v = pos[j] + shift - pos[i]
                if j != i and np.linalg.norm(v) < grid.cutoff_A:
                    nbrs.append((v, species[j]))
        for v, s in nbrs:
            out[i, s * n_r:(s + 1) * n_r] += np.exp(-(np.linalg.norm(v) - r0) ** 2 / (2 * w ** 2))
        for a in range(len(nbrs)):
            for b in range(a + 1, len(nbrs)):  # each unordered pair once
                (vj, sj), (vk, sk) = nbrs[a], nbrs[b]
                rj, rk, rjk = np.linalg.norm(vj), np.linalg.norm(vk), np.linalg.norm(vj - vk)
                cos = vj @ vk / (rj * rk)
                p = pair_index[sj, sk]
                out[i, 2 * n_r + p * n_a:2 * n_r + (p + 1) * n_a] += (
                    np.exp(-(rj ** 2 + rk ** 2 + rjk ** 2) / xi ** 2) * (1 + lam * cos) ** zeta)
    return out


@pytest.fixture(scope="module")
def system():
    pos, species = random_system(0)
    return pos, species, brute_force(pos, BOX, species, GRID)


def test_float32_matches_brute_force(system):
    pos, species, ref = system
    out = compute_features(GRID, pos, BOX, species, chunk_atoms=16)  # 42 atoms: padded chunks
    assert out.dtype == np.float32 and out.shape == (42, GRID.n_features)
    assert np.all(ref[:, 2 * GRID.n_radial:].max(axis=0) > 0.1)  # every angular block is populated
    assert_allclose(out, ref, rtol=1e-4, atol=1e-6)


def test_float64_matches_brute_force_without_touching_float32(system):
    import jax

    pos, species, ref = system
    before = jax.config.jax_enable_x64
    out = compute_features(GRID, pos, BOX, species, dtype=np.float64)
    assert out.dtype == np.float64
    assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    assert jax.config.jax_enable_x64 == before  # switched on only inside the call
    out32 = compute_features(GRID, pos, BOX, species)
    assert out32.dtype == np.float32
    assert_allclose(out32, ref, rtol=1e-4, atol=1e-6)


def test_selected_frames_and_atoms_and_per_frame_boxes():
    frames = [random_system(s) for s in (1, 2, 3)]
    species = frames[0][1]
    pos = np.stack([p for p, _ in frames])
    box = np.array([[BOX] * 3, [BOX, 9.5, 10.0], [BOX] * 3])
    pos[1] *= box[1] / BOX
    atoms = [40, 3, 17]
    out = compute_features(GRID, pos, box, species, frames=[1, 2], atoms=atoms)
    assert out.shape == (2, 3, GRID.n_features)
    assert_allclose(out[0], brute_force(pos[1], box[1], species, GRID)[atoms], rtol=1e-4, atol=1e-6)
    assert_allclose(out[1], compute_features(GRID, pos[2], BOX, species)[atoms], rtol=1e-6, atol=1e-7)


def test_neighbour_slots_grow_when_a_later_frame_is_denser():
    pos0, species = random_system(4)
    rng = np.random.default_rng(5)
    pos1 = pos0.copy()
    pos1[:30] = 4.5 + rng.normal(scale=0.8, size=(30, 3))  # a dense blob: far more neighbours
    out = compute_features(GRID, np.stack([pos0, pos1]), BOX, species)
    assert_allclose(out[1], brute_force(pos1, BOX, species, GRID), rtol=1e-4, atol=1e-6)


def test_splitting_same_species_pair_blocks_changes_nothing(system):
    import jax.numpy as jnp

    from softness.structure import angular_structure_functions, local_environments

    pos, species, ref = system
    args = (jnp.asarray(pos), jnp.asarray([BOX] * 3), jnp.asarray(species), jnp.arange(len(pos)))
    counts = [int(nb.count.max()) for nb in local_environments(CUTOFF, (1, 1))(*args)]
    nbrs = local_environments(CUTOFF, tuple(counts))(*args)  # no empty slots: halves hold neighbours
    assert min(counts) >= 8
    triples = (GRID.angular_xi_A, GRID.angular_lambda, GRID.angular_zeta)
    whole = angular_structure_functions(*triples, min_block=1000)(nbrs)
    split = angular_structure_functions(*triples, min_block=2)(nbrs)  # halves down to 2-3 slots
    assert_allclose(np.asarray(whole), ref[:, 2 * GRID.n_radial:], rtol=1e-4, atol=1e-6)
    assert_allclose(np.asarray(split), ref[:, 2 * GRID.n_radial:], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("op", ["rot90_z", "cyclic_axes", "translation", "permutation"])
def test_invariance_in_the_periodic_box(system, op):
    pos, species, _ = system
    base = compute_features(GRID, pos, BOX, species)
    rng = np.random.default_rng(6)
    order = np.arange(len(pos))
    if op == "rot90_z":  # (x, y, z) -> (-y, x, z) maps the cube onto itself
        moved = np.stack([-pos[:, 1], pos[:, 0], pos[:, 2]], axis=1) % BOX
    elif op == "cyclic_axes":  # 120 degrees about [111]
        moved = pos[:, [1, 2, 0]]
    elif op == "translation":
        moved = (pos + rng.uniform(-20, 20, size=3)) % BOX
    else:
        order = rng.permutation(len(pos))
        moved = pos[order]
    out = compute_features(GRID, moved, BOX, species[order])
    assert_allclose(out, base[order], rtol=1e-4, atol=1e-6)


def test_rotation_invariance_of_a_free_cluster():
    rng = np.random.default_rng(7)
    n = 30
    direction = rng.normal(size=(n, 3))
    radius = 3.0 * rng.uniform(size=(n, 1)) ** (1 / 3)  # uniform in a ball of radius 3 A
    cluster = radius * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    species = (np.arange(n) % 3 != 0).astype(np.int32)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    box = 40.0  # no periodic image comes near
    base = compute_features(GRID, cluster + 20.0, box, species, dtype=np.float64)
    out = compute_features(GRID, cluster @ rot.T + 20.0, box, species, dtype=np.float64)
    assert base[:, 2 * GRID.n_radial:].max() > 1.0
    assert_allclose(out, base, rtol=1e-9, atol=1e-12)


def test_grid_from_config_and_feature_names():
    cfg = config.resolve({})
    grid = StructureGrid.from_config(cfg)
    assert grid.n_radial == 51 and grid.radial_r_A[0] == 1.0 and grid.radial_r_A[-1] == 6.0
    assert grid.n_features == 2 * 51 + 3 * len(cfg["features"]["angular"])
    names = grid.feature_names()
    assert len(set(names)) == len(names) == grid.n_features
    assert names[0] == "G_Si(r=1.00)" and "G_O(r=1.60)" in names
    assert names[102] == "Psi_SiSi(xi=3.5,lambda=1,zeta=1)"
    assert "Psi_SiO(xi=4.5,lambda=-1,zeta=4)" in names
    assert "Psi_SiO(xi=2.5,lambda=1,zeta=2.5)" in GRID.feature_names()


@pytest.mark.parametrize("kw, match", [
    ({"radial_width_A": -0.1}, "widths must be positive"),
    ({"angular_xi_A": [0.0] * 5}, "xi must be positive"),
    ({"angular_lambda": [2, 1, 1, 1, 1]}, "lambda"),
    ({"cutoff_A": 1.5}, "beyond the cutoff"),
    ({"radial_r_A": [1.0, np.nan]}, "non-finite"),
])
def test_bad_grid_is_a_clear_error(kw, match):
    args = dict(radial_r_A=[1.0, 2.0], radial_width_A=[0.1, 0.1], angular_xi_A=[2.0] * 5,
                angular_lambda=[1] * 5, angular_zeta=[1] * 5, cutoff_A=4.0)
    args.update(kw)
    if np.ndim(args["radial_width_A"]) == 0:
        args["radial_width_A"] = [args["radial_width_A"]] * 2
    with pytest.raises(SoftnessError, match=match):
        StructureGrid(**args)
    with pytest.raises(SoftnessError, match="widths must be positive"):
        radial_structure_functions([1.0, 2.0], [0.1, -0.2])


def test_box_shorter_than_twice_the_cutoff_is_refused(system):
    pos, species, _ = system
    with pytest.raises(SoftnessError, match="twice the structure-function cutoff"):
        compute_features(GRID, pos, [BOX, BOX, 8.0], species)


# ---------------------------------------------------------------------------- the stage

SMALL = {
    "temperatures_K": [3000.0],
    "features": {
        "radial_r_min_A": 0.5, "radial_r_max_A": 4.0, "radial_dr_A": 0.25, "radial_width_A": 0.2,
        "angular": [{"xi_A": 2.5, "lambda": 1, "zeta": 1}, {"xi_A": 4.0, "lambda": -1, "zeta": 4}],
        "cutoff_A": CUTOFF, "frame_stride": 2,
    },
}


def write_trajectory(path, n_frames=5, nan_frame=None):
    frames = [random_system(10 + k) for k in range(n_frames)]
    species = frames[0][1]
    pos = np.stack([p for p, _ in frames]).astype(np.float32)
    if nan_frame is not None:
        pos[nan_frame, 3, 1] = np.nan
    with atomic_h5(path, "run", config.resolve({})) as f:
        f.attrs["temperature_K"] = 3000.0
        w = H5MDWriter(f, species, np.where(species == 0, 28.0855, 15.9994), [BOX] * 3)
        w.append(np.arange(n_frames) * 50, np.arange(n_frames) * 50.0, pos, np.zeros(pos.shape, np.int32))
    return pos, species


def test_features_file_layout_and_values(tmp_path):
    pos, species = write_trajectory(tmp_path / "traj.h5")
    cfg = config.resolve(SMALL)
    features_file(cfg, tmp_path / "traj.h5", tmp_path / "features.h5", frames_per_block=2)  # 2 blocks
    grid = StructureGrid.from_config(cfg)
    with h5py.File(tmp_path / "features.h5", "r") as f:
        assert f.attrs["stage"] == "features"
        assert f.attrs["temperature_K"] == 3000.0 and f.attrs["cutoff_A"] == CUTOFF
        assert f["features"].dtype == np.float32 and f["features"].shape == (3, 42, grid.n_features)
        assert_array_equal(f["frames"][()], [0, 2, 4])
        assert_array_equal(f["step"][()], [0, 100, 200])
        assert_array_equal(f["time_fs"][()], [0.0, 100.0, 200.0])
        assert_array_equal(f["species"][()], species)
        assert [s.decode() for s in f["feature_names"][()]] == grid.feature_names()
        assert_allclose(f["grid/radial_r_A"][()], np.arange(0.5, 4.01, 0.25))
        assert_allclose(f["grid/radial_width_A"][()], 0.2)
        assert [s.decode() for s in f["grid/radial_species"][()]] == ["Si", "O"]
        assert [s.decode() for s in f["grid/angular_pair"][()]] == ["SiSi", "SiO", "OO"]
        assert_array_equal(f["grid/angular_xi_A"][()], [2.5, 4.0])
        assert_array_equal(f["grid/angular_lambda"][()], [1, -1])
        assert_array_equal(f["grid/angular_zeta"][()], [1, 4])
        stored = f["features"][()]
    assert_allclose(stored[1], brute_force(pos[2], BOX, species, grid), rtol=1e-4, atol=1e-6)
    assert_allclose(stored[2], brute_force(pos[4], BOX, species, grid), rtol=1e-4, atol=1e-6)
    values, read_grid, extra = read_features(tmp_path / "features.h5")
    assert read_grid == grid and read_grid != GRID
    assert_array_equal(values, stored)
    assert extra["feature_names"] == grid.feature_names() and extra["temperature_K"] == 3000.0


def test_cli_features_and_bad_config_writes_nothing(tmp_path):
    write_trajectory(tmp_path / "traj.h5", n_frames=2)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(SMALL))
    assert cli.main(["features", "--config", str(good), "--trajectory", str(tmp_path / "traj.h5"),
                     "--out", str(tmp_path / "ok.h5")]) == 0
    assert (tmp_path / "ok.h5").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMALL, "features": {**SMALL["features"], "radial_width_A": -0.1}}))
    out = tmp_path / "bad.h5"
    assert cli.main(["features", "--config", str(bad), "--trajectory", str(tmp_path / "traj.h5"),
                     "--out", str(out)]) == 1
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    raw_bad = {**SMALL, "features": {**SMALL["features"], "radial_width_A": -0.1}}
    with pytest.raises(SoftnessError, match="features.radial_width_A"):
        features_file(raw_bad, tmp_path / "traj.h5", out)
    assert not out.exists()


def test_nan_in_trajectory_is_a_clear_error_and_writes_nothing(tmp_path):
    write_trajectory(tmp_path / "traj.h5", n_frames=3, nan_frame=2)
    out = tmp_path / "features.h5"
    with pytest.raises(SoftnessError, match="non-finite"):
        features_file(config.resolve(SMALL), tmp_path / "traj.h5", out)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
