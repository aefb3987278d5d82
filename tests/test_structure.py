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
    species_names=("Si", "O"),
)


def random_system(seed, n=42, box=BOX, n_edge=8, min_distance=0.8, n_species=2):
    """Random atoms in a periodic cube, no two closer than ``min_distance``; the first ``n_edge``
    lie within 1e-3 A of a face, an edge or a corner of the box. Two species: one third
    species 0 (Si); more: equal shares in random order."""
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
    if n_species == 2:
        species = rng.permutation(np.arange(n) % 3 != 0).astype(np.int32)  # one third Si
    else:
        species = rng.permutation(np.arange(n) % n_species).astype(np.int32)
    return pos, species


def brute_force(pos, box, species, grid, n_species=2):
    """G and Psi by explicit loops over neighbours and their periodic images (float64): the
    radial block of species 0, 1, ..., then the angular block of the pairs 00, 01, ..., 0(n-1),
    11, 12, ... (a <= b)."""
    pos = np.asarray(pos, np.float64)
    n, n_r, n_a = len(pos), grid.n_radial, grid.n_angular
    r0, w = np.array(grid.radial_r_A), np.array(grid.radial_width_A)
    xi, lam, zeta = (np.array(v) for v in (grid.angular_xi_A, grid.angular_lambda, grid.angular_zeta))
    pair_index, n_pairs = {}, 0
    for a in range(n_species):
        for b in range(a, n_species):
            pair_index[a, b] = pair_index[b, a] = n_pairs
            n_pairs += 1
    shifts = [np.array(s) * box for s in itertools.product([-1, 0, 1], repeat=3)]
    out = np.zeros((n, n_species * n_r + n_pairs * n_a))
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
                out[i, n_species * n_r + p * n_a:n_species * n_r + (p + 1) * n_a] += (
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
    grid = StructureGrid.from_config(cfg, species_names=("Si", "O"))
    assert StructureGrid.from_config(cfg) == grid  # default: the species of the config's system (silica)
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
    ({"species_names": ()}, "names no species"),
    ({"species_names": ("A", "B", "A")}, "must differ"),
    ({"species_names": ("A", "")}, "non-empty"),
    ({"species_names": "AB"}, "not the string"),
    ({"species_names": ("A", "AA", "AAA")}, "same pair name"),  # A+AAA = AA+AA
])
def test_bad_grid_is_a_clear_error(kw, match):
    args = dict(radial_r_A=[1.0, 2.0], radial_width_A=[0.1, 0.1], angular_xi_A=[2.0] * 5,
                angular_lambda=[1] * 5, angular_zeta=[1] * 5, cutoff_A=4.0, species_names=("A", "B"))
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


def write_trajectory(path, n_frames=5, nan_frame=None, species_names=("Si", "O"), n=42, system=None):
    frames = [random_system(10 + k, n=n, n_species=len(species_names)) for k in range(n_frames)]
    species = frames[0][1]
    pos = np.stack([p for p, _ in frames]).astype(np.float32)
    if nan_frame is not None:
        pos[nan_frame, 3, 1] = np.nan
    with atomic_h5(path, "run", config.resolve({})) as f:
        f.attrs["temperature_K"] = 3000.0
        if system is not None:
            f.attrs["system"] = system
        w = H5MDWriter(f, species, 20.0 + 5.0 * species, [BOX] * 3, species_names=species_names)
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
        assert [s.decode() for s in f["species_names"][()]] == ["Si", "O"] and "system" not in f.attrs
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
    assert extra["species_names"] == ("Si", "O") and extra["system"] is None


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


# ---------------------------------------------------------------------------- any number of species

XYZ = ("X", "Y", "Z")


def grid_for(species_names):
    return StructureGrid(radial_r_A=GRID.radial_r_A, radial_width_A=GRID.radial_width_A,
                         angular_xi_A=GRID.angular_xi_A, angular_lambda=GRID.angular_lambda,
                         angular_zeta=GRID.angular_zeta, cutoff_A=CUTOFF, species_names=species_names)


@pytest.mark.parametrize("species_names", [("A",), XYZ, ("P", "Q", "R", "S")])
def test_any_number_of_species_matches_brute_force_block_by_block(species_names):
    n_s = len(species_names)
    grid = grid_for(species_names)
    pos, species = random_system(20 + n_s, n=48, n_species=n_s)
    assert sorted(set(species.tolist())) == list(range(n_s))
    ref = brute_force(pos, BOX, species, grid, n_species=n_s)
    n_pairs = n_s * (n_s + 1) // 2
    assert grid.n_species == n_s and grid.n_pairs == n_pairs
    assert grid.n_features == n_s * grid.n_radial + n_pairs * grid.n_angular == ref.shape[1]
    out32 = compute_features(grid, pos, BOX, species, chunk_atoms=16)
    out64 = compute_features(grid, pos, BOX, species, dtype=np.float64)
    names = grid.feature_names()
    pairs = [species_names[a] + species_names[b] for a in range(n_s) for b in range(a, n_s)]
    assert grid.pair_names() == pairs
    blocks = [(f"G_{s}", k * grid.n_radial, grid.n_radial) for k, s in enumerate(species_names)]
    blocks += [(f"Psi_{p}", n_s * grid.n_radial + k * grid.n_angular, grid.n_angular)
               for k, p in enumerate(pairs)]
    for prefix, start, size in blocks:  # each species / pair block: its names and its values
        block = slice(start, start + size)
        assert all(name.startswith(prefix + "(") for name in names[block]), prefix
        assert ref[:, block].max() > 0.1, prefix  # populated
        assert_allclose(out64[:, block], ref[:, block], rtol=1e-10, atol=1e-12, err_msg=prefix)
        assert_allclose(out32[:, block], ref[:, block], rtol=1e-4, atol=1e-6, err_msg=prefix)
    assert len(set(names)) == len(names)


def test_three_species_grid_names_and_datasets(tmp_path):
    grid = grid_for(XYZ)
    names = grid.feature_names()
    assert names[0] == "G_X(r=0.50)" and names[grid.n_radial] == "G_Y(r=0.50)"
    assert names[2 * grid.n_radial] == "G_Z(r=0.50)"
    assert names[3 * grid.n_radial] == "Psi_XX(xi=1.5,lambda=1,zeta=1)"
    assert names[-1] == "Psi_ZZ(xi=4.0,lambda=1,zeta=1)"
    assert "Psi_XZ(xi=2.5,lambda=1,zeta=2.5)" in names and not any("Si" in n or "_O" in n for n in names)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        grid.write(f)
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert [s.decode() for s in f["grid/radial_species"][()]] == ["X", "Y", "Z"]
        assert [s.decode() for s in f["grid/angular_pair"][()]] == ["XX", "XY", "XZ", "YY", "YZ", "ZZ"]
        back = StructureGrid.read(f)
    assert back == grid and back != grid_for(("X", "Y", "W"))


def test_species_numbers_outside_the_grid_are_refused(system):
    pos, species, _ = system
    with pytest.raises(SoftnessError, match=r"2 species \(0 = Si, 1 = O\)"):
        compute_features(GRID, pos, BOX, np.where(np.arange(len(pos)) == 5, 2, species))
    with pytest.raises(SoftnessError, match=r"1 species \(0 = A\)"):
        compute_features(grid_for(("A",)), pos, BOX, species)


def test_features_stage_on_a_three_species_trajectory(tmp_path):
    pos, species = write_trajectory(tmp_path / "traj.h5", n_frames=3, species_names=XYZ, n=48,
                                    system="made_up")
    cfg = config.resolve(SMALL)
    features_file(cfg, tmp_path / "traj.h5", tmp_path / "features.h5")
    grid = StructureGrid.from_config(cfg, species_names=XYZ)
    assert grid.n_features == 3 * grid.n_radial + 6 * grid.n_angular
    with h5py.File(tmp_path / "features.h5", "r") as f:
        assert [s.decode() for s in f["species_names"][()]] == ["X", "Y", "Z"]
        assert f.attrs["system"] == "made_up"
        assert [s.decode() for s in f["grid/radial_species"][()]] == ["X", "Y", "Z"]
        assert [s.decode() for s in f["grid/angular_pair"][()]] == ["XX", "XY", "XZ", "YY", "YZ", "ZZ"]
        assert [s.decode() for s in f["feature_names"][()]] == grid.feature_names()
        assert_array_equal(f["species"][()], species)
        assert_array_equal(f["frames"][()], [0, 2])
        stored = f["features"][()]
    assert stored.shape == (2, 48, grid.n_features)
    assert_allclose(stored[1], brute_force(pos[2], BOX, species, grid, n_species=3), rtol=1e-4, atol=1e-6)
    _, read_grid, extra = read_features(tmp_path / "features.h5")
    assert read_grid == grid and extra["species_names"] == XYZ and extra["system"] == "made_up"


def test_a_species_number_without_a_name_is_refused(tmp_path):
    write_trajectory(tmp_path / "traj.h5", n_frames=1, species_names=XYZ, n=48)
    with h5py.File(tmp_path / "traj.h5", "r+") as f:
        f["particles/all/species"][7] = 3  # four species, three names
    out = tmp_path / "features.h5"
    with pytest.raises(SoftnessError, match=r"traj\.h5 holds species number 3, but names only the 3 species "
                                            r"X, Y, Z"):
        features_file(config.resolve(SMALL), tmp_path / "traj.h5", out)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_legacy_unnamed_bks_trajectory_is_read_as_silica(tmp_path):
    write_trajectory(tmp_path / "traj.h5", n_frames=1)
    with h5py.File(tmp_path / "traj.h5", "r+") as f:
        del f["particles/all/species"].attrs["names"]
        f.attrs["potential"] = "BKS (van Beest, Kramer, van Santen 1990)"
    features_file(config.resolve(SMALL), tmp_path / "traj.h5", tmp_path / "features.h5")
    _, grid, extra = read_features(tmp_path / "features.h5")
    assert grid.species_names == extra["species_names"] == ("Si", "O")
    assert extra["feature_names"][0].startswith("G_Si(")
